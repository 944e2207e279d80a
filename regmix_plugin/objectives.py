"""What ``regmix optimize`` minimises: one target, or a weighted objective over several, under
do-no-harm constraints.

**Objective.** ``optimize.objective`` names fitted targets, each with a weight and a direction
(``minimize`` for losses, ``maximize`` for accuracies). With ``normalise: spread`` (the default)
each target is centred and scaled by its spread over the training mixtures (the mean and the
standard deviation, ``ddof=0``, of its observed values in the results table), so a term reads
"how many training-set standard deviations above the average mixture" and units do not decide
the weights::

    J(x) = sum_i  w_i * s_i * (y_i(x) - mean_i) / std_i     (combine: sum)
    J(x) = the same divided by sum_i w_i                  (combine: mean)

with ``s_i = +1`` for ``minimize`` and ``-1`` for ``maximize``; ``J`` is always minimised.
``normalise: none`` drops the centring and scaling (``J = sum w_i s_i y_i``). Without an
``objective`` the single ``optimize.target`` is minimised exactly as before (raw units).

**Constraints.** ``optimize.constraints`` bound fitted targets at every candidate: absolute
(``max`` / ``min``) or relative to a reference mixture's prediction (``max_increase: 0.01``: at
most 1% above the reference, ``y(x) <= y(ref) + 0.01 * |y(ref)|``; ``max_decrease`` likewise
below). References: ``token_prior`` (the simulation's prior, the mixture the ``token_prior``
baseline names), ``uniform``, or a YAML file of ``domain: share`` (or a ``weights:`` mapping, as
``weights.yaml``), which must name every domain and sum to 1. Candidates that break a constraint
are rejected like candidates outside the bounds. Before drawing, a sample of in-bounds candidates
is checked; if none meets every constraint, :class:`~regmix_plugin.errors.InfeasibleError` names
the binding constraint and by how much it is missed. Because the top-k mean of feasible
candidates need not be feasible for a nonlinear model, the chosen mixture is moved toward the
best single (feasible) candidate, in steps of a tenth, until every constraint holds at it.

This module takes explicit data (a fitted model, tables) and knows nothing of the study.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from regmix_plugin.config import load_yaml
from regmix_plugin.errors import ConfigError, DataError, InfeasibleError
from regmix_plugin.tables import Table

log = logging.getLogger(__name__)

#: Tolerance on a reference mixture's sum before it is an error (no silent renormalising).
REFERENCE_SUM_TOLERANCE = 1e-6
#: In-bounds candidates checked against the constraints before the simulation.
FEASIBILITY_SAMPLE = 20_000
#: A constraint "binds" at the chosen mixture when its slack is within this share of its limit.
BINDING_TOLERANCE = 1e-3
#: Built-in reference mixtures.
BUILTIN_REFERENCES = ("token_prior", "uniform")


@dataclass(kw_only=True, frozen=True)
class ObjectiveTerm:
    """One fitted target in the objective."""

    target: str
    """A fitted target (a column of the results table the model was fitted on)."""
    weight: float = 1.0
    """Its weight (> 0), applied after normalisation."""
    direction: Literal["minimize", "maximize"] = "minimize"
    """``minimize`` (losses) or ``maximize`` (accuracies)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"objective weight of {self.target!r} must be > 0, got {self.weight}")


@dataclass(kw_only=True, frozen=True)
class ObjectiveConfig:
    """``optimize.objective``: a weighted sum or mean of several fitted targets."""

    terms: list[ObjectiveTerm] = field(default_factory=list)
    """The targets, their weights and directions (at least one, each target once)."""
    combine: Literal["mean", "sum"] = "mean"
    """``mean``: the weighted sum divided by the sum of the weights; ``sum``: not divided."""
    normalise: Literal["spread", "none"] = "spread"
    """``spread``: each target centred and divided by its standard deviation over the training
    mixtures (the results table), so units do not decide the weights; ``none``: raw values."""

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("objective.terms must name at least one target")
        names = [t.target for t in self.terms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"objective.terms name target(s) {dup} more than once")


@dataclass(kw_only=True, frozen=True)
class ConstraintConfig:
    """One entry of ``optimize.constraints``: a bound on a fitted target at every candidate."""

    target: str
    """The fitted target bounded."""
    max: float | None = None
    """Absolute upper bound on the predicted target."""
    min: float | None = None
    """Absolute lower bound on the predicted target."""
    max_increase: float | None = None
    """Relative upper bound: at most this fraction above the reference's prediction
    (``0.01``: ``y <= y_ref + 0.01 * |y_ref|``)."""
    max_decrease: float | None = None
    """Relative lower bound: at most this fraction below the reference's prediction."""
    reference: str = "token_prior"
    """The reference mixture of the relative bounds: ``token_prior``, ``uniform`` or a YAML file
    of ``domain: share`` (or with a ``weights:`` mapping)."""

    def __post_init__(self) -> None:
        given = [
            k
            for k in ("max", "min", "max_increase", "max_decrease")
            if getattr(self, k) is not None
        ]
        if not given:
            raise ValueError(
                f"constraint on {self.target!r} sets no bound; set max, min, max_increase or "
                "max_decrease"
            )
        for k in given:
            if not math.isfinite(getattr(self, k)):
                raise ValueError(f"constraint on {self.target!r}: {k} must be finite")
        for k in ("max_increase", "max_decrease"):
            v = getattr(self, k)
            if v is not None and v < 0:
                raise ValueError(f"constraint on {self.target!r}: {k} must be >= 0, got {v}")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(
                f"constraint on {self.target!r}: min {self.min} is above max {self.max}"
            )

    def describe(self) -> str:
        """The constraint in words (used in messages and the report)."""
        parts = []
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max_increase is not None:
            parts.append(f"at most {100 * self.max_increase:g}% above {self.reference}")
        if self.max_decrease is not None:
            parts.append(f"at most {100 * self.max_decrease:g}% below {self.reference}")
        return f"{self.target} " + " and ".join(parts)


@dataclass(frozen=True)
class _Term:
    target: str
    coefficient: float
    centre: float
    spread: float
    weight: float
    direction: str


def target_spreads(results: Table, targets: Sequence[str], source: str) -> dict[str, tuple]:
    """Per target, (mean, standard deviation) of its finite values in the results table."""
    out: dict[str, tuple] = {}
    for t in targets:
        if t not in results.columns:
            raise DataError(
                f"{source} has no column {t!r} (named in optimize.objective); its columns are "
                f"{results.columns}"
            )
        y = results.column(t)
        y = y[np.isfinite(y)]
        sd = float(y.std()) if len(y) >= 2 else 0.0
        if not sd > 0:
            raise DataError(
                f"{source}: column {t!r} has no spread over the training mixtures ({len(y)} "
                "finite values), so optimize.objective.normalise: spread cannot scale it; use "
                "normalise: none or drop the target"
            )
        out[t] = (float(y.mean()), sd)
    return out


class ObjectiveModel:
    """A fitted model seen through the objective: one target, :attr:`name`, whose prediction is
    the objective. Offers what ``optimize`` uses of a model (``domains``, ``targets``,
    ``predict``, and with ensembles ``num_members``, ``predict_members``,
    ``predict_interval``)."""

    def __init__(self, model: Any, name: str, terms: list[_Term]) -> None:
        self.base = model
        self.name = name
        self.terms = terms
        self.domains: list[str] = list(model.domains)
        self.targets = [name]

    def _check(self, target: str | None) -> None:
        if target not in (None, self.name):
            raise ConfigError(f"the objective model has one target, {self.name!r}, not {target!r}")

    def predict(self, x: np.ndarray, target: str | None = None) -> np.ndarray:
        """The objective at each row of ``x`` (columns: :attr:`domains`)."""
        self._check(target)
        out = np.zeros(len(x))
        for t in self.terms:
            out += t.coefficient * (np.asarray(self.base.predict(x, t.target)) - t.centre)
        return out

    def num_members(self, target: str | None = None) -> int:
        """Ensemble members shared by every term (0 if any term has none)."""
        self._check(target)
        fn = getattr(self.base, "num_members", None)
        if fn is None:
            return 0
        counts = {int(fn(t.target)) for t in self.terms}
        return counts.pop() if len(counts) == 1 else 0

    def predict_members(self, x: np.ndarray, target: str | None = None) -> np.ndarray:
        """Member-wise objective, ``[members, rows]`` (member m of every target combined)."""
        self._check(target)
        total = None
        for t in self.terms:
            m = t.coefficient * (np.asarray(self.base.predict_members(x, t.target)) - t.centre)
            total = m if total is None else total + m
        assert total is not None
        return total

    def predict_interval(
        self, x: np.ndarray, target: str | None = None, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Members' objective plus a residual sd that adds the terms' calibrated residual sds
        (weighted by ``|coefficient|``: the conservative, fully correlated case)."""
        from regmix_plugin.regression.uncertainty import predictive_interval

        self._check(target)
        z = _normal_quantile(0.5 + level / 2)
        sd = 0.0
        for t in self.terms:
            members = np.asarray(self.base.predict_members(x, t.target))
            _, lo, hi = self.base.predict_interval(x, t.target, level)
            half = (np.asarray(hi) - np.asarray(lo)) / 2
            resid2 = (half / z) ** 2 - members.var(axis=0, ddof=1)
            sd += abs(t.coefficient) * math.sqrt(max(0.0, float(np.max(resid2))))
        return predictive_interval(self.predict_members(x), sd, level)


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return float(NormalDist().inv_cdf(p))


@dataclass
class _Bound:
    config: ConstraintConfig
    reference_predicted: float | None
    lower: float
    upper: float
    rejected: int = 0


class ObjectivePlan:
    """The objective and constraints of one ``optimize`` call, bound to a model."""

    def __init__(
        self,
        model: Any,
        objective: ObjectiveModel,
        constraints: Sequence[ConstraintConfig],
        normalise: str,
        combine: str,
    ) -> None:
        self.base = model
        self.model = objective
        self.constraints = list(constraints)
        self.normalise = normalise
        self.combine = combine
        self._bounds: list[_Bound] = []
        self.references: dict[str, np.ndarray] = {}
        self.checked = 0

    # -- binding to a prior --------------------------------------------------------------------

    def bind(
        self, prior: np.ndarray, reference_files: Mapping[str, np.ndarray] | None = None
    ) -> None:
        """Resolve the references (``prior`` in model domain order) and the constraints' limits."""
        k = len(self.model.domains)
        self.references = {"token_prior": np.asarray(prior, float), "uniform": np.full(k, 1 / k)}
        for name in {c.reference for c in self.constraints} - set(self.references):
            if reference_files and name in reference_files:
                self.references[name] = np.asarray(reference_files[name], float)
            else:
                self.references[name] = read_reference(name, self.model.domains)
        self._bounds = []
        for c in self.constraints:
            ref = None
            lo, hi = -math.inf, math.inf
            if c.max_increase is not None or c.max_decrease is not None:
                ref = float(self.base.predict(self.references[c.reference][None, :], c.target)[0])
                if c.max_increase is not None:
                    hi = ref + c.max_increase * abs(ref)
                if c.max_decrease is not None:
                    lo = ref - c.max_decrease * abs(ref)
            if c.max is not None:
                hi = min(hi, c.max)
            if c.min is not None:
                lo = max(lo, c.min)
            self._bounds.append(_Bound(c, ref, lo, hi))

    # -- acceptance ------------------------------------------------------------------------------

    def _values(self, x: np.ndarray) -> np.ndarray:
        """``[constraints, rows]`` predicted constrained targets."""
        cache: dict[str, np.ndarray] = {}
        rows = []
        for b in self._bounds:
            t = b.config.target
            if t not in cache:
                cache[t] = np.asarray(self.base.predict(np.ascontiguousarray(x), t))
            rows.append(cache[t])
        return np.array(rows).reshape(len(self._bounds), len(x))

    def accept(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` that meet every constraint (counts each constraint's rejections)."""
        if not self._bounds:
            return np.ones(len(x), dtype=bool)
        v = self._values(x)
        ok = np.ones(len(x), dtype=bool)
        for i, b in enumerate(self._bounds):
            good = (v[i] >= b.lower) & (v[i] <= b.upper)
            b.rejected += int((~good).sum())
            ok &= good
        self.checked += len(x)
        return ok

    def violations(self, x: np.ndarray) -> np.ndarray:
        """``[constraints, rows]``: how far each row misses each limit (0 when met)."""
        v = self._values(x)
        lo = np.array([b.lower for b in self._bounds])[:, None]
        hi = np.array([b.upper for b in self._bounds])[:, None]
        return np.maximum(0.0, np.maximum(v - hi, lo - v))

    def check_feasible(self, candidates: np.ndarray) -> None:
        """Raise :class:`InfeasibleError` (naming the binding constraint and by how much) when
        no candidate (in-bounds mixtures, rows of ``candidates``) meets every constraint."""
        if not self._bounds or not len(candidates):
            return
        miss = self.violations(candidates)
        if (miss.max(axis=0) == 0).any():
            return
        scale = np.array(
            [max(abs(b.upper if b.upper < math.inf else b.lower), 1e-12) for b in self._bounds]
        )[:, None]
        lines = []
        alone = miss.min(axis=1)
        for i in np.flatnonzero(alone > 0):
            lines.append(
                self._miss_line(int(i), candidates, miss, int(np.argmin(miss[i])), "alone")
            )
        if not lines:  # each can be met alone, not all together: the least-violating candidate
            j = int(np.argmin((miss / scale).sum(axis=0)))
            for i in np.flatnonzero(miss[:, j] > 0):
                lines.append(self._miss_line(int(i), candidates, miss, j, "together"))
        raise InfeasibleError(
            f"optimize.constraints cannot all be met: none of {len(candidates):,} in-bounds "
            "candidates meets them. " + "; ".join(lines) + ". Loosen the binding constraint(s), "
            "widen optimize.min_weights/max_weights, or change optimize.prior"
        )

    def _miss_line(self, i: int, cand: np.ndarray, miss: np.ndarray, j: int, how: str) -> str:
        b = self._bounds[i]
        value = self._values(cand[j : j + 1])[i, 0]
        limit = b.upper if value > b.upper else b.lower
        rel = f" ({100 * miss[i, j] / abs(limit):.3g}%)" if limit != 0 else ""
        where = (
            "even the best candidate for it alone"
            if how == "alone"
            else ("the candidate that misses them least")
        )
        return (
            f"constraint optimize.constraints[{i}] ({b.config.describe()}, limit {limit:.6g}) "
            f"binds: {where} predicts {value:.6g}, missing it by {miss[i, j]:.3g}{rel}"
        )

    def repair(self, weights: np.ndarray, fallback: np.ndarray) -> tuple[np.ndarray, float]:
        """``weights`` moved toward the feasible ``fallback`` in steps of a tenth until every
        constraint holds; returns the mixture and the share of ``weights`` kept."""
        if not self._bounds:
            return weights, 1.0
        for keep in np.linspace(1.0, 0.0, 11):
            w = keep * weights + (1 - keep) * fallback
            if self.violations(w[None, :]).max() == 0:
                return w, float(keep)
        return fallback, 0.0

    # -- what the report shows -------------------------------------------------------------------

    def summary(self, chosen: Mapping[str, float]) -> dict[str, Any]:
        """The objective, each constraint at the chosen mixture (value, limit, slack, binds,
        share of candidates it rejected) and each target's predicted change against the
        references."""
        domains = self.model.domains
        x = np.array([[chosen[d] for d in domains]])
        terms = [
            {
                "target": t.target,
                "weight": t.weight,
                "direction": t.direction,
                "centre": t.centre,
                "spread": t.spread,
                "coefficient": t.coefficient,
            }
            for t in self.model.terms
        ]
        constraints = []
        for b in self._bounds:
            value = float(self.base.predict(x, b.config.target)[0])
            slack = min(b.upper - value, value - b.lower)
            limit = b.upper if b.upper - value <= value - b.lower else b.lower
            constraints.append(
                {
                    "constraint": b.config.describe(),
                    "target": b.config.target,
                    "reference": b.config.reference if b.reference_predicted is not None else None,
                    "reference_predicted": b.reference_predicted,
                    "lower": None if b.lower == -math.inf else b.lower,
                    "upper": None if b.upper == math.inf else b.upper,
                    "chosen_predicted": value,
                    "slack": slack,
                    "holds": bool(slack >= 0),
                    "binds": bool(
                        slack >= 0 and slack <= BINDING_TOLERANCE * max(abs(limit), 1e-12)
                    ),
                    "rejected_share": b.rejected / self.checked if self.checked else 0.0,
                }
            )
        targets = list(
            dict.fromkeys(
                [t.target for t in self.model.terms] + [b.config.target for b in self._bounds]
            )
        )
        changes: dict[str, dict[str, Any]] = {}
        for t in targets:
            at_chosen = float(self.base.predict(x, t)[0])
            row: dict[str, Any] = {"chosen": at_chosen}
            for name, ref in self.references.items():
                at_ref = float(self.base.predict(ref[None, :], t)[0])
                row[name] = {
                    "predicted": at_ref,
                    "change": at_chosen - at_ref,
                    "relative_change": (at_chosen - at_ref) / abs(at_ref) if at_ref else None,
                }
            changes[t] = row
        return {
            "name": self.model.name,
            "combine": self.combine,
            "normalise": self.normalise,
            "terms": terms,
            "constraints": constraints,
            "per_target": changes,
            "references": {
                n: dict(zip(domains, map(float, r), strict=True))
                for n, r in self.references.items()
            },
        }


def read_reference(path: str, domains: Sequence[str]) -> np.ndarray:
    """A reference mixture from YAML (``domain: share`` or a ``weights:`` mapping), in the order
    of ``domains``; every domain named, shares >= 0 summing to 1 (never renormalised)."""
    if not Path(path).is_file():
        raise ConfigError(
            f"optimize.constraints: reference {path!r} is neither {list(BUILTIN_REFERENCES)} nor "
            "a weights file"
        )
    data: Any = load_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("weights"), dict):
        data = data["weights"]
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of domain: share, got {type(data).__name__}")
    missing = [d for d in domains if d not in data]
    extra = [str(n) for n in data if n not in domains]
    if missing or extra:
        raise DataError(f"{path}: missing domain(s) {missing}, unknown domain(s) {extra}")
    w = []
    for d in domains:
        v = data[d]
        if isinstance(v, bool) or not isinstance(v, int | float) or not (0 <= v < math.inf):
            raise DataError(f"{path}: share of {d!r} is {v!r}, not a number >= 0")
        w.append(float(v))
    total = sum(w)
    if abs(total - 1.0) > REFERENCE_SUM_TOLERANCE:
        raise DataError(f"{path}: the shares sum to {total:.9g}, not 1; fix the file")
    return np.array(w)


def objective_targets(
    objective: ObjectiveConfig | None, constraints: Sequence[ConstraintConfig]
) -> list[str]:
    """Every fitted target the objective and the constraints read."""
    names = [t.target for t in objective.terms] if objective else []
    return list(dict.fromkeys(names + [c.target for c in constraints]))


def build_plan(
    model: Any,
    objective: ObjectiveConfig | None,
    constraints: Sequence[ConstraintConfig],
    target: str,
    results: Table | None = None,
    results_source: str = "the results table",
) -> ObjectivePlan:
    """The plan for ``model``: with ``objective`` its normalised combination (``results``: the
    training mixtures' results, needed by ``normalise: spread``), else the single ``target`` in
    raw units; every named target must be fitted."""
    unknown = [t for t in objective_targets(objective, constraints) if t not in model.targets]
    if unknown:
        raise ConfigError(
            f"optimize.objective/constraints name target(s) {unknown} that the model was not "
            f"fitted on; it has {list(model.targets)} (add them to fit.targets)"
        )
    if objective is None:
        obj = ObjectiveModel(model, target, [_Term(target, 1.0, 0.0, 1.0, 1.0, "minimize")])
        return ObjectivePlan(model, obj, constraints, "none", "single")
    names = [t.target for t in objective.terms]
    if objective.normalise == "spread":
        if results is None:
            raise ConfigError(
                "optimize.objective.normalise: spread needs the results table of the training "
                "mixtures; pass it, or set normalise: none"
            )
        spreads = target_spreads(results, names, results_source)
    else:
        spreads = {n: (0.0, 1.0) for n in names}
    total = sum(t.weight for t in objective.terms) if objective.combine == "mean" else 1.0
    terms = [
        _Term(
            t.target,
            (1 if t.direction == "minimize" else -1) * t.weight / total / spreads[t.target][1],
            spreads[t.target][0],
            spreads[t.target][1],
            t.weight,
            t.direction,
        )
        for t in objective.terms
    ]
    name = (
        f"objective ({objective.combine} of {len(terms)} target(s), "
        f"normalise {objective.normalise})"
    )
    return ObjectivePlan(
        model,
        ObjectiveModel(model, name, terms),
        constraints,
        objective.normalise,
        objective.combine,
    )


def observed_objective(plan: ObjectivePlan, results: Table) -> dict[str, float]:
    """The objective of each results row whose terms are all finite (id -> value)."""
    out = {}
    cols = {
        t.target: results.column(t.target) for t in plan.model.terms if t.target in results.columns
    }
    if len(cols) != len(plan.model.terms):
        return {}
    for i, rid in enumerate(results.ids):
        v = sum(t.coefficient * (cols[t.target][i] - t.centre) for t in plan.model.terms)
        if math.isfinite(v):
            out[rid] = float(v)
    return out


def objective_lines(summary: Mapping[str, Any]) -> list[str]:
    """The objective block of ``weights.yaml`` as text lines (the CLI and the report)."""
    lines = [f"objective: {summary['name']}"]
    for t in summary.get("terms") or []:
        lines.append(
            f"  term {t['target']}: weight {t['weight']:g}, {t['direction']}, centre "
            f"{t['centre']:.6g}, spread {t['spread']:.6g} (coefficient {t['coefficient']:.6g})"
        )
    for i, c in enumerate(summary.get("constraints") or []):
        state = "binds" if c["binds"] else ("holds" if c["holds"] else "VIOLATED")
        lines.append(
            f"  constraint [{i}] {c['constraint']}: chosen {c['chosen_predicted']:.6g}, slack "
            f"{c['slack']:.3g}, {state}; rejected {100 * c['rejected_share']:.1f}% of candidates"
        )
    for target, row in (summary.get("per_target") or {}).items():
        refs = ", ".join(
            f"vs {name} {v['change']:+.4g}"
            + ("" if v["relative_change"] is None else f" ({100 * v['relative_change']:+.2f}%)")
            for name, v in row.items()
            if isinstance(v, Mapping)
        )
        lines.append(f"  {target}: chosen {row['chosen']:.6g}; {refs}")
    return lines


def objective_table(
    summary: Mapping[str, Any],
) -> tuple[list[str], tuple[list[str], list[list[str]]]]:
    """The report's view of the objective block: paragraphs (the objective, its terms, each
    constraint) and a table of each target's predicted value and change against the references."""
    paragraphs = [f"Objective: {summary['name']} (minimised)."]
    for t in summary.get("terms") or []:
        paragraphs.append(
            f"Term {t['target']}: weight {t['weight']:g}, {t['direction']}; centred at "
            f"{t['centre']:.5g} and divided by its spread {t['spread']:.5g} over the training "
            "mixtures"
            if summary.get("normalise") == "spread"
            else f"Term {t['target']}: weight {t['weight']:g}, {t['direction']}, raw units"
        )
    for i, c in enumerate(summary.get("constraints") or []):
        state = "binds" if c["binds"] else ("holds with slack" if c["holds"] else "is VIOLATED")
        limits = " and ".join(
            f"{name} {c[key]:.5g}"
            for key, name in (("lower", ">="), ("upper", "<="))
            if c[key] is not None
        )
        paragraphs.append(
            f"Constraint {i}: {c['constraint']} ({limits}): at the chosen mixture "
            f"{c['chosen_predicted']:.5g}, it {state} (slack {c['slack']:.3g}); it rejected "
            f"{100 * c['rejected_share']:.1f}% of the in-bounds candidates."
        )
    refs = sorted(
        {k for row in (summary.get("per_target") or {}).values() for k in row if k != "chosen"}
    )
    header = ["target", "chosen", *[f"vs {r}" for r in refs]]
    rows = []
    for target, row in (summary.get("per_target") or {}).items():
        cells = [target, f"{row['chosen']:.5g}"]
        for r in refs:
            v = row[r]
            rel = "" if v["relative_change"] is None else f" ({100 * v['relative_change']:+.2f}%)"
            cells.append(f"{v['change']:+.4g}{rel}")
        rows.append(cells)
    return paragraphs, (header, rows)
