"""Choose the mixture: simulate candidates, score them with the fitted model, average the best.

As in the paper, ``num_candidates`` mixtures (default 1,000,000) are drawn from Dirichlet
distributions centred on the prior (``alpha = strength * prior``, one strength per candidate,
uniform between ``min_strength`` and ``max_strength``), every candidate outside the per-domain
bounds is rejected, the model predicts the target for the rest, and the mean of the ``top_k``
(paper: 100) lowest is the chosen mixture. The mean of feasible candidates is feasible (the
bounds and the simplex are convex), so the chosen mixture honours every bound.

Bounds per domain: ``min_weights`` / ``max_weights`` from the config, and (through the study's
catalogue) the epoch caps for the target budget, ``max_epochs * tokens / num_target_tokens``.

Also reported: the best single candidate, the spread over the top k, the predicted loss of the
baselines (the token prior, uniform, the best observed proxy) and of an iterative search that
spends the same number of model evaluations resampling around its best candidates; it replaces
the simulation's answer only with ``method: iterative``, or ``method: auto`` when its predicted
loss is lower.

Python API::

    result = optimize(model, prior, names, lower, upper, OptimizeConfig(...))
    write_weights_yaml("weights.yaml", result)

Command line (:mod:`regmix_plugin.commands`)::

    regmix optimize study.yaml [--model DIR] [--out weights.yaml]      # catalogue from the study
    regmix optimize --model model/ --prior prior.yaml --out weights.yaml [--config study.yaml]
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from regmix_plugin.config import load_yaml, plain_yaml, to_dict
from regmix_plugin.domains import Catalogue
from regmix_plugin.errors import ConfigError, DataError, InfeasibleError
from regmix_plugin.io import atomic_write_text
from regmix_plugin.objectives import (
    FEASIBILITY_SAMPLE,
    ConstraintConfig,
    ObjectiveConfig,
    ObjectivePlan,
    build_plan,
    objective_lines,
    observed_objective,
)
from regmix_plugin.simplex import dirichlet
from regmix_plugin.tables import Table

log = logging.getLogger(__name__)

#: Tolerance on a prior's sum before it is an error (float noise only; no silent renormalising).
PRIOR_SUM_TOLERANCE = 1e-6


@dataclass(kw_only=True, frozen=True)
class SearchSettings:
    """The iterative search, run with the same number of model evaluations as the simulation."""

    enabled: bool = True
    """Run it (and report it beside the simulation)."""
    num_rounds: int = 5
    """Rounds; each evaluates ``num_candidates / num_rounds`` candidates. The first round draws
    from the prior like the simulation, later rounds around the best ``top_k`` so far."""
    concentration: float = 200.0
    """Dirichlet concentration around a parent (larger: children closer to the parent)."""
    floor: float = 1e-3
    """Added to each parent weight before scaling, so a domain at 0 can come back."""

    def __post_init__(self) -> None:
        if self.num_rounds < 2:
            raise ValueError(f"search.num_rounds must be >= 2, got {self.num_rounds}")
        if not self.concentration > 0:
            raise ValueError(f"search.concentration must be > 0, got {self.concentration}")
        if not self.floor > 0:
            raise ValueError(f"search.floor must be > 0, got {self.floor}")


@dataclass(kw_only=True, frozen=True)
class OptimizeConfig:
    """The ``optimize`` section."""

    target: str | None = None
    """Fitted target to minimise; unset: the model's only target (an error if it has several)."""
    num_candidates: int = 1_000_000
    """Feasible candidates to score (paper: 1,000,000)."""
    top_k: int = 100
    """The chosen mixture is the mean of the best ``top_k`` candidates (paper: 100)."""
    seed: int = 0
    """Seed of the candidate draws."""
    prior: str = "tokens"
    """Centre of the Dirichlet draws: ``tokens`` (catalogue token shares), ``catalogue`` (the
    catalogue's configured prior), ``uniform``, or a YAML file of ``domain: share``."""
    min_strength: float = 0.1
    """Smallest Dirichlet strength (``alpha = strength * prior``)."""
    max_strength: float = 5.0
    """Largest Dirichlet strength."""
    min_weights: dict[str, float] = field(default_factory=dict)
    """Per-domain lower bounds (domains not named: 0)."""
    max_weights: dict[str, float] = field(default_factory=dict)
    """Per-domain upper bounds (domains not named: 1, or the epoch cap when lower)."""
    max_draw_factor: float = 50.0
    """Give up (InfeasibleError) after drawing this many times ``num_candidates`` candidates."""
    batch_size: int = 200_000
    """Candidates drawn and scored at a time (memory: about 10 * batch * domains * 8 bytes)."""
    method: Literal["simulate", "iterative", "auto"] = "simulate"
    """Which answer becomes ``weights``: the paper's simulation, the iterative search, or
    whichever predicts the lower loss."""
    search: SearchSettings = field(default_factory=SearchSettings)
    """Settings of the iterative search."""
    objective: ObjectiveConfig | None = None
    """A weighted sum or mean of several normalised targets, each with a direction
    (:mod:`regmix_plugin.objectives`); unset: ``target`` alone, in raw units (as before)."""
    constraints: list[ConstraintConfig] = field(default_factory=list)
    """Do-no-harm bounds on fitted targets, absolute or relative to a reference mixture;
    candidates breaking one are rejected like candidates outside the bounds."""

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if not 1 <= self.top_k <= self.num_candidates:
            raise ValueError(
                f"top_k must be between 1 and num_candidates ({self.num_candidates}), "
                f"got {self.top_k}"
            )
        if not 0 < self.min_strength <= self.max_strength < math.inf:
            raise ValueError(
                "need 0 < min_strength <= max_strength, got "
                f"{self.min_strength}, {self.max_strength}"
            )
        for key, bounds in (("min_weights", self.min_weights), ("max_weights", self.max_weights)):
            for name, v in bounds.items():
                if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                    raise ValueError(f"{key}.{name} must be in [0, 1], got {v}")
        if self.max_draw_factor < 1:
            raise ValueError(f"max_draw_factor must be >= 1, got {self.max_draw_factor}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.objective is not None and self.target is not None:
            raise ValueError("set optimize.target or optimize.objective, not both")
        if self.search.enabled and self.num_candidates < self.search.num_rounds * self.top_k:
            raise ValueError(
                f"the iterative search needs num_candidates >= search.num_rounds * top_k "
                f"({self.search.num_rounds} * {self.top_k}); got {self.num_candidates}"
            )


@dataclass(frozen=True)
class Candidate:
    """A mixture and its predicted loss."""

    weights: dict[str, float]
    predicted: float


@dataclass(frozen=True)
class OptimizeResult:
    """What :func:`optimize` found (every mixture in model domain order)."""

    names: list[str]
    target: str
    method: str
    weights: dict[str, float]
    predicted: float
    simulation: Candidate
    best_single: Candidate
    top_k_predicted: dict[str, float]
    top_k_weight_std: dict[str, float]
    baselines: dict[str, dict[str, Any]]
    iterative: dict[str, Any] | None
    num_evaluations: int
    num_drawn: int
    seconds: float
    lower: dict[str, float]
    upper: dict[str, float]
    settings: dict[str, Any]
    uncertainty: dict[str, Any] | None = None
    """With an ensemble model: the chosen mixture's and each baseline's predicted interval, the
    probability that the chosen mixture beats each baseline, and the members' own choices."""
    objective: dict[str, Any] | None = None
    """With ``optimize.objective`` or ``constraints``: the objective's terms, each constraint at
    the chosen mixture, each target's predicted change against the references."""


def _as_dict(names: list[str], w: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, w, strict=True)}


def _feasible(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return np.all((x >= lower) & (x <= upper), axis=1)


class _TopK:
    """The best ``k`` rows seen so far."""

    def __init__(self, k: int, num_domains: int) -> None:
        self.k = k
        self.x = np.zeros((0, num_domains))
        self.y = np.zeros(0)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        xs = np.concatenate([self.x, x])
        ys = np.concatenate([self.y, y])
        if len(ys) > self.k:
            keep = np.argpartition(ys, self.k - 1)[: self.k]
            xs, ys = xs[keep], ys[keep]
        order = np.argsort(ys, kind="stable")
        self.x, self.y = xs[order], ys[order]


def _draw_scored(
    sample: Callable[[int], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
    num: int,
    config: OptimizeConfig,
    top: _TopK,
    what: str,
    pool: _TopK | None = None,
    accept: Callable[[np.ndarray], np.ndarray] | None = None,
) -> int:
    """Draw until ``num`` feasible candidates are scored into ``top`` (and ``pool``); returns
    draws made."""
    done = drawn = 0
    limit = int(config.max_draw_factor * num)
    while done < num:
        if drawn >= limit:
            raise InfeasibleError(
                f"{what}: only {done} of {num} candidates met the bounds after {drawn} draws "
                f"(optimize.max_draw_factor={config.max_draw_factor}); the bounds "
                "(optimize.min_weights / max_weights, epoch caps"
                + (", optimize.constraints" if accept is not None else "")
                + ") leave too little room around "
                "the prior: widen them, change optimize.prior, or raise max_draw_factor"
                + (
                    "; tight constraints leave only a neighbourhood of their reference: raise "
                    "optimize.min_strength/max_strength to draw closer to the prior"
                    if accept is not None
                    else ""
                )
            )
        want = min(config.batch_size, num - done)
        x = sample(max(want, 1024))
        drawn += len(x)
        x = x[_feasible(x, lower, upper)]
        if accept is not None and len(x):
            x = x[accept(x)]
        x = x[:want]
        if len(x):
            y = predict(x)
            top.add(x, y)
            if pool is not None:
                pool.add(x, y)
            done += len(x)
    return drawn


def check_bounds(names: list[str], lower: np.ndarray, upper: np.ndarray) -> None:
    """Bounds must leave a feasible mixture: lower <= upper and sum(lower) <= 1 <= sum(upper)."""
    bad = [n for n, lo, hi in zip(names, lower, upper, strict=True) if lo > hi]
    if bad:
        raise InfeasibleError(
            f"lower bound above upper bound for {bad}; check optimize.min_weights/max_weights "
            "and the epoch caps (domains.*.max_epochs, num_target_tokens)"
        )
    if lower.sum() > 1 + 1e-12:
        raise InfeasibleError(f"optimize.min_weights sum to {lower.sum():.6g} > 1; lower them")
    if upper.sum() < 1 - 1e-12:
        raise InfeasibleError(
            f"the upper bounds (optimize.max_weights and epoch caps) sum to {upper.sum():.6g} < 1: "
            "no mixture fits; raise max_weights or max_epochs, or lower num_target_tokens"
        )


def _aligned(
    model: Any, prior: np.ndarray, names: list[str], lower: np.ndarray, upper: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Prior and bounds reordered to the model's domains, checked."""
    domains = list(model.domains)
    if sorted(names) != sorted(domains) or len(set(names)) != len(names):
        missing = [d for d in domains if d not in names]
        extra = [n for n in names if n not in domains]
        raise DataError(
            f"the prior's domains do not match the model's: missing {missing}, not in the model "
            f"{extra}; the model was fitted on {domains}"
        )
    order = [names.index(d) for d in domains]
    prior = np.asarray(prior, dtype=np.float64)[order]
    lower = np.asarray(lower, dtype=np.float64)[order]
    upper = np.asarray(upper, dtype=np.float64)[order]
    if not (np.all(np.isfinite(prior)) and np.all(prior > 0)):
        raise DataError(
            f"the prior must be finite and > 0 for every domain, got {_as_dict(domains, prior)}"
        )
    if abs(prior.sum() - 1.0) > PRIOR_SUM_TOLERANCE:
        raise DataError(
            f"the prior (optimize.prior, or the --prior file) sums to {prior.sum():.9g}, not 1; "
            "fix the prior's shares"
        )
    check_bounds(domains, lower, upper)
    return domains, prior, lower, upper


def _target(model: Any, config: OptimizeConfig) -> str:
    """The fitted target to minimise."""
    if config.target is None:
        if len(model.targets) != 1:
            raise ConfigError(
                f"optimize.target is unset and the model has {len(model.targets)} targets; "
                f"set it to one of {model.targets}"
            )
        return str(model.targets[0])
    if config.target not in model.targets:
        raise ConfigError(
            f"optimize.target {config.target!r} is not in the model; it has {model.targets}"
        )
    return config.target


def _baselines(
    predict: Callable[[np.ndarray], np.ndarray],
    prior: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    observed: tuple[list[str], np.ndarray, np.ndarray] | None,
) -> dict[str, dict[str, Any]]:
    """Predicted target of the token prior, uniform weights and the best observed proxy."""
    k = len(prior)
    out: dict[str, dict[str, Any]] = {}
    for name, w in (("token_prior", prior), ("uniform", np.full(k, 1.0 / k))):
        out[name] = {
            "predicted": float(predict(w[None, :])[0]),
            "within_bounds": bool(_feasible(w[None, :], lower, upper)[0]),
        }
    if observed is not None:
        ids, ox, oy = observed
        ok = np.isfinite(oy)
        if ok.any():
            i = int(np.nanargmin(np.where(ok, oy, np.inf)))
            out["best_observed"] = {
                "mixture_id": ids[i],
                "observed": float(oy[i]),
                "predicted": float(predict(ox[i][None, :])[0]),
                "within_bounds": bool(_feasible(ox[i][None, :], lower, upper)[0]),
            }
    return out


def _pick(
    config: OptimizeConfig, simulation: Candidate, iterative: dict[str, Any] | None
) -> tuple[str, dict[str, float], float]:
    """Which answer becomes ``weights``: ``optimize.method`` decides."""
    if iterative is not None and (
        config.method == "iterative"
        or (config.method == "auto" and iterative["predicted"] < simulation.predicted)
    ):
        return "iterative", iterative["weights"], iterative["predicted"]
    if config.method == "iterative":
        raise ConfigError("optimize.method is 'iterative' but optimize.search.enabled is false")
    return "simulate", simulation.weights, simulation.predicted


def optimize(
    model: Any,
    prior: np.ndarray,
    names: list[str],
    lower: np.ndarray,
    upper: np.ndarray,
    config: OptimizeConfig,
    *,
    observed: tuple[list[str], np.ndarray, np.ndarray] | None = None,
    results: Table | None = None,
) -> OptimizeResult:
    """Simulate, score and choose (see the module doc).

    ``model`` is a :class:`~regmix_plugin.regression.FittedModel` (or any object with
    ``domains`` and ``predict(x, target)``). ``prior``, ``lower`` and ``upper`` are per-domain
    arrays in the order of ``names``; they are matched to the model's domains by name (a
    missing or extra domain is an error). ``observed`` = (ids, weights in model order, observed
    target) of the proxy runs, for the "best observed proxy" baseline. ``results`` (the
    training mixtures' results table) gives the spreads of ``optimize.objective``.
    """
    t0 = time.perf_counter()
    domains, prior, lower, upper = _aligned(model, prior, names, lower, upper)
    plan = _plan(model, config, prior, results)
    accept = None
    if plan is not None:
        model, accept = plan.model, plan.accept
        observed = _observed_objective(plan, observed, results)
    target = _target(model, config)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.ascontiguousarray(x), target))

    rng = np.random.default_rng(config.seed)

    def from_prior(n: int) -> np.ndarray:
        s = rng.uniform(config.min_strength, config.max_strength, size=(n, 1))
        return dirichlet(rng, s * prior[None, :])

    if plan is not None:
        _check_constraints(plan, prior, lower, upper, config)
    sim = _TopK(config.top_k, len(domains))
    pool = _TopK(max(POOL_SIZE, config.top_k), len(domains))  # for the members' own choices
    num_drawn = _draw_scored(
        from_prior,
        predict,
        lower,
        upper,
        config.num_candidates,
        config,
        sim,
        "simulation",
        pool,
        accept=accept,
    )
    chosen = sim.x.mean(axis=0)
    if plan is not None:
        chosen = plan.repair(chosen, sim.x[0])[0]
    simulation = Candidate(_as_dict(domains, chosen), float(predict(chosen[None, :])[0]))
    iterative = None
    if config.search.enabled:
        iterative, drawn = _iterative(
            from_prior, predict, lower, upper, config, rng, domains, accept=accept
        )
        num_drawn += drawn
        if plan is not None:
            _repair_iterative(plan, iterative, domains, predict)
    method, weights, predicted = _pick(config, simulation, iterative)
    baselines = _baselines(predict, prior, lower, upper, observed)
    extra = _baseline_rows(prior, observed, baselines)
    uncertainty = _uncertainty(model, target, domains, weights, extra, pool.x, config.top_k)
    return OptimizeResult(
        names=domains,
        target=target,
        method=method,
        weights=weights,
        predicted=predicted,
        simulation=simulation,
        best_single=Candidate(_as_dict(domains, sim.x[0]), float(sim.y[0])),
        top_k_predicted={
            "min": float(sim.y.min()),
            "median": float(np.median(sim.y)),
            "max": float(sim.y.max()),
        },
        top_k_weight_std=_as_dict(domains, sim.x.std(axis=0)),
        baselines=baselines,
        iterative=iterative,
        num_evaluations=config.num_candidates * (2 if config.search.enabled else 1),
        num_drawn=num_drawn,
        seconds=time.perf_counter() - t0,
        lower=_as_dict(domains, lower),
        upper=_as_dict(domains, np.minimum(upper, 1.0)),
        settings=to_dict(config),
        uncertainty=uncertainty,
        objective=None if plan is None else plan.summary(weights),
    )


def _plan(
    model: Any, config: OptimizeConfig, prior: np.ndarray, results: Table | None
) -> ObjectivePlan | None:
    """The objective and constraints (None: neither is configured, the target alone as before);
    ``prior`` in model domain order is the ``token_prior`` reference."""
    if config.objective is None and not config.constraints:
        return None
    target = "" if config.objective is not None else _target(model, config)
    plan = build_plan(model, config.objective, config.constraints, target, results)
    plan.bind(prior)
    return plan


def _observed_objective(
    plan: ObjectivePlan,
    observed: tuple[list[str], np.ndarray, np.ndarray] | None,
    results: Table | None,
) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """The observed rows with the objective in place of the single target."""
    if observed is None or results is None:
        return None if plan.model.name not in plan.base.targets else observed
    values = observed_objective(plan, results)
    ids, x, _ = observed
    return ids, x, np.array([values.get(i, math.nan) for i in ids])


def _check_constraints(
    plan: ObjectivePlan,
    prior: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    config: OptimizeConfig,
) -> None:
    """Fail early, naming the binding constraint, when no sampled in-bounds candidate (nor a
    reference mixture) meets every constraint. Its own random stream: the draws stay as they
    would be without the check."""
    rng = np.random.default_rng([config.seed, 1])
    s = rng.uniform(config.min_strength, config.max_strength, size=(FEASIBILITY_SAMPLE, 1))
    x = np.concatenate(
        [dirichlet(rng, s * prior[None, :]), *[r[None, :] for r in plan.references.values()]]
    )
    plan.check_feasible(x[_feasible(x, lower, upper)])


def _repair_iterative(
    plan: ObjectivePlan,
    iterative: dict[str, Any],
    domains: list[str],
    predict: Callable[[np.ndarray], np.ndarray],
) -> None:
    """The iterative search's top-k mean moved toward its best member until it is feasible."""
    mean = np.array([iterative["weights"][d] for d in domains])
    best = np.array([iterative["best_single_weights"][d] for d in domains])
    fixed, _ = plan.repair(mean, best)
    iterative["weights"] = _as_dict(domains, fixed)
    iterative["predicted"] = float(predict(fixed[None, :])[0])


#: Candidates kept (best by the full model) for each ensemble member to choose its own top k.
POOL_SIZE = 4000
#: Coverage of the intervals reported with an ensemble model.
INTERVAL_LEVEL = 0.9


def _baseline_rows(
    prior: np.ndarray,
    observed: tuple[list[str], np.ndarray, np.ndarray] | None,
    baselines: dict[str, dict[str, Any]],
) -> dict[str, np.ndarray]:
    """The weight vector (model domain order) of every baseline."""
    k = len(prior)
    rows = {"token_prior": prior, "uniform": np.full(k, 1.0 / k)}
    if observed is not None and "best_observed" in baselines:
        ids, ox, _ = observed
        rows["best_observed"] = ox[ids.index(baselines["best_observed"]["mixture_id"])]
    return rows


def _uncertainty(
    model: Any,
    target: str,
    domains: list[str],
    weights: dict[str, float],
    baselines: dict[str, np.ndarray],
    pool: np.ndarray,
    top_k: int,
) -> dict[str, Any] | None:
    """Intervals, paired probabilities of beating each baseline, and the stability of the
    choice (each member's own top-k mean over the best candidates), when the model has an
    ensemble of at least 2 members; None otherwise."""
    from regmix_plugin.regression.uncertainty import choice_intervals, probability_beats

    if not hasattr(model, "num_members") or model.num_members(target) < 2:
        return None
    chosen = np.array([weights[d] for d in domains])
    rows = np.stack([chosen, *baselines.values()])
    mean, lo, hi = model.predict_interval(rows, target, INTERVAL_LEVEL)
    members = model.predict_members(rows, target)
    names = ["chosen", *baselines]
    predicted = {
        n: {"mean": float(mean[i]), "lo": float(lo[i]), "hi": float(hi[i])}
        for i, n in enumerate(names)
    }
    beats = {
        n: float(probability_beats(members[:, 0], members[:, i]))
        for i, n in enumerate(names)
        if i > 0
    }
    scores = model.predict_members(pool, target)  # [members, pool]
    k = min(top_k, pool.shape[0])
    own = np.stack([pool[np.argsort(s, kind="stable")[:k]].mean(axis=0) for s in scores])
    spread = choice_intervals(own, INTERVAL_LEVEL)
    return {
        "level": INTERVAL_LEVEL,
        "num_members": int(members.shape[0]),
        "predicted": predicted,
        "probability_chosen_beats": beats,
        "choice": {
            d: {
                "median": float(spread.median[j]),
                "lo": float(spread.lo[j]),
                "hi": float(spread.hi[j]),
            }
            for j, d in enumerate(domains)
        },
        "pool_size": int(pool.shape[0]),
    }


def _iterative(
    from_prior: Callable[[int], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
    config: OptimizeConfig,
    rng: np.random.Generator,
    domains: list[str],
    accept: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[dict[str, Any], int]:
    s = config.search
    per_round = [config.num_candidates // s.num_rounds] * s.num_rounds
    per_round[0] += config.num_candidates - sum(per_round)
    top = _TopK(config.top_k, len(domains))
    drawn = _draw_scored(
        from_prior, predict, lower, upper, per_round[0], config, top, "search round 1", None, accept
    )
    history = [float(predict(top.x.mean(axis=0)[None, :])[0])]
    for r, num in enumerate(per_round[1:], start=2):
        parents = top.x.copy()

        def around(n: int, parents: np.ndarray = parents) -> np.ndarray:
            pick = parents[rng.integers(len(parents), size=n)]
            return dirichlet(rng, s.concentration * (pick + s.floor))

        drawn += _draw_scored(
            around, predict, lower, upper, num, config, top, f"search round {r}", None, accept
        )
        history.append(float(predict(top.x.mean(axis=0)[None, :])[0]))
    mean = top.x.mean(axis=0)
    return (
        {
            "weights": _as_dict(domains, mean),
            "predicted": float(predict(mean[None, :])[0]),
            "best_single": float(top.y[0]),
            "top_k_predicted_max": float(top.y.max()),
            "predicted_by_round": history,
            "num_rounds": s.num_rounds,
            **({"best_single_weights": _as_dict(domains, top.x[0])} if accept else {}),
        },
        drawn,
    )


def write_weights_yaml(path: str | Path, result: OptimizeResult) -> None:
    """Write ``weights.yaml``: ``weights`` (model domain order, sums to 1) then the report."""
    doc = {
        "weights": result.weights,
        "target": result.target,
        "method": result.method,
        "predicted": {
            "chosen": result.predicted,
            "simulation_top_k_mean": result.simulation.predicted,
            "best_single_candidate": result.best_single.predicted,
            **{name: b["predicted"] for name, b in result.baselines.items()},
            **({"iterative_top_k_mean": result.iterative["predicted"]} if result.iterative else {}),
        },
        "best_single_candidate": result.best_single.weights,
        "top_k": {
            "predicted": result.top_k_predicted,
            "weight_std": result.top_k_weight_std,
        },
        "baselines": result.baselines,
        "iterative_search": result.iterative,
        "simulation_weights": result.simulation.weights,
        "uncertainty": result.uncertainty,
        "bounds": {"lower": result.lower, "upper": result.upper},
        "num_evaluations": result.num_evaluations,
        "num_drawn": result.num_drawn,
        "settings": result.settings,
        **({"objective": result.objective} if result.objective is not None else {}),
    }
    # (plain: the chosen weights are the simulation's when the iterative search keeps them)
    atomic_write_text(path, plain_yaml(doc))


# -- the study's prior, bounds and observed rows ---------------------------------------------------


def read_prior_file(path: str | Path) -> dict[str, float]:
    """A prior from YAML: a ``domain: share`` mapping, or a file with a ``weights:`` mapping."""
    data: Any = load_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("weights"), dict):
        data = data["weights"]
    if not data:
        raise DataError(f"{path}: expected a mapping of domain: share")
    out = {}
    for name, v in data.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise DataError(f"{path}: share of {name!r} is {v!r}, not a number")
        out[str(name)] = float(v)
    return out


def bound_arrays(names: list[str], config: OptimizeConfig) -> tuple[np.ndarray, np.ndarray]:
    """``optimize.min_weights`` / ``max_weights`` as arrays in the order of ``names``."""
    unknown = sorted((set(config.min_weights) | set(config.max_weights)) - set(names))
    if unknown:
        raise ConfigError(
            f"optimize.min_weights/max_weights name unknown domain(s) {unknown}; the domains "
            f"are {names}"
        )
    lower = np.array([config.min_weights.get(n, 0.0) for n in names])
    upper = np.array([config.max_weights.get(n, 1.0) for n in names])
    return lower, upper


def prior_vector(config: OptimizeConfig, catalogue: Catalogue) -> np.ndarray:
    """The centre of the simulation's draws (``optimize.prior``), in catalogue order."""
    names = list(catalogue.names)
    if config.prior == "tokens":
        return catalogue.token_shares()
    if config.prior == "catalogue":
        return catalogue.prior()
    if config.prior == "uniform":
        return np.full(len(names), 1.0 / len(names))
    shares = read_prior_file(config.prior)
    missing = [n for n in names if n not in shares]
    extra = [n for n in shares if n not in names]
    if missing or extra:
        raise DataError(
            f"prior {config.prior}: missing domain(s) {missing}, unknown domain(s) {extra}"
        )
    return np.array([shares[n] for n in names], dtype=np.float64)


def observed_rows(
    model: Any, target: str | None, mixtures: Table, results: Table, results_source: str
) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(ids, weights in model order, observed target) of the proxy runs, for the best-observed
    baseline; None (with a warning) when the results have no such column."""
    from regmix_plugin.regression import align_columns
    from regmix_plugin.regression.fitting import join_tables

    name = target or model.targets[0]
    if name not in results.columns:
        log.warning(
            "no best-observed baseline: %s has no column %r (columns: %s)",
            results_source,
            name,
            results.columns,
        )
        return None
    ids, x, y, _ = join_tables(mixtures, results)
    ordered = align_columns(Table(mixtures.id_column, ids, mixtures.columns, x), model.domains)
    return ids, ordered, y[:, results.columns.index(name)]


def format_result(result: OptimizeResult) -> str:
    """A short text report (for the CLI)."""
    lines = [
        f"target {result.target}: {result.num_evaluations:,} model evaluations "
        f"({result.num_drawn:,} draws); answer from {result.method}",
        f"  chosen (top-k mean)       predicted {result.predicted:.5f}",
        f"  simulation top-k mean     predicted {result.simulation.predicted:.5f}",
        f"  best single candidate     predicted {result.best_single.predicted:.5f}",
        f"  top-k predicted range     {result.top_k_predicted['min']:.5f} .. "
        f"{result.top_k_predicted['max']:.5f}",
    ]
    if result.iterative:
        lines.append(f"  iterative top-k mean      predicted {result.iterative['predicted']:.5f}")
    for name, b in result.baselines.items():
        extra = f" (observed {b['observed']:.5f}, id {b['mixture_id']})" if "observed" in b else ""
        lines.append(f"  baseline {name:16s} predicted {b['predicted']:.5f}{extra}")
    u = result.uncertainty
    if u is not None:
        level = f"{100 * u['level']:.0f}%"
        for name, p in u["predicted"].items():
            beats = u["probability_chosen_beats"].get(name)
            extra = "" if beats is None else f", P(chosen beats it) {beats:.2f}"
            lines.append(
                f"  {name:24s}  {p['mean']:.5f}  {level} interval [{p['lo']:.5f}, {p['hi']:.5f}]"
                f"{extra}"
            )
    if result.objective is not None:
        lines += objective_lines(result.objective)
    top = sorted(result.weights.items(), key=lambda kv: -kv[1])[:8]
    lines.append("  weights: " + ", ".join(f"{n} {w:.4f}" for n, w in top))
    if u is not None:
        lines.append(
            f"  each of the {u['num_members']} members' own choice, {level} per domain: "
            + ", ".join(f"{n} [{c['lo']:.3f}, {c['hi']:.3f}]" for n, c in u["choice"].items())
        )
    return "\n".join(lines)
