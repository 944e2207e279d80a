"""Search over phase schedules: the ``phases`` section, design, proxy schedule and choice.

A study may declare phases (``phases: {names: [main, quality], shares: [0.8, 0.2]}``: shares of
the target tokens). A *schedule* is then one mixture per phase. It is written as one row of the
usual mixtures table with one column per (domain, phase), named ``domain@phase`` and holding
``share_p x w_pd``: every row still sums to 1 (the table checks hold), the regressor takes the
per-phase weights as its features (scaled by the fixed shares), and the run-average weight of a
domain is the sum of its columns, so epoch caps over the whole run are linear in the row.

- :func:`sample_schedules` draws one mixture per phase with the ``sample`` section's settings
  (a phase of share ``s`` may use a domain up to its cap ``/ s``) and keeps the schedules whose
  whole run respects every cap.
- :func:`proxy_schedule` is the schedule a proxy of ``num_samples`` samples trains on: the same
  shares, apportioned over the proxy's samples (see :mod:`regmix_plugin.blending.phases`).
- :func:`optimize_schedule` draws schedules, scores them with the fitted model and returns the
  top-k mean (phase sums and caps are kept by the mean), beside the best single mixture found by
  the same search with every phase equal.
- :func:`format_schedule` reports a schedule: weights and epochs per domain per phase and in total.

With one phase (the default, no ``phases`` section) nothing here is used and every stage behaves
as before.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from regmix_plugin.blending import apportion
from regmix_plugin.blending.phases import BlendSchedule, Phase, PhaseSchedule
from regmix_plugin.domains import Catalogue
from regmix_plugin.errors import ConfigError, DataError, InfeasibleError
from regmix_plugin.mixtures import Mixtures, SampleConfig, mixture_id, sample_mixtures
from regmix_plugin.simplex import dirichlet
from regmix_plugin.textable import format_table

#: Separates the domain from the phase in a schedule column (``web@quality``).
PHASE_SEPARATOR = "@"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

__all__ = [
    "PHASE_SEPARATOR",
    "PhasesConfig",
    "ScheduleChoice",
    "format_schedule",
    "is_schedule",
    "join_schedule",
    "optimize_schedule",
    "phase_epochs",
    "proxy_schedule",
    "run_average",
    "sample_schedules",
    "schedule_columns",
    "split_schedule",
]


@dataclass(kw_only=True, frozen=True)
class PhasesConfig:
    """The ``phases`` section: the phases a schedule has, as shares of the target tokens."""

    shares: list[float] = field(default_factory=lambda: [1.0])
    """Share of the run's tokens of each phase, in training order; they sum to 1 (within 1e-9).
    One phase (the default) is a plain mixture."""
    names: list[str] = field(default_factory=list)
    """Phase names (letters, digits, ``_.-``), one per share; default ``phase1``, ``phase2``..."""
    global_batch_size: int | None = None
    """Global batch size of the final run: turns the shares into Megatron-LM's
    ``--phase-transition-iterations`` when a schedule is emitted (required then)."""
    seq_length: int | None = None
    """Sequence length of the final run (tokens per sample), as ``global_batch_size``."""

    def __post_init__(self) -> None:
        if not self.shares:
            raise ConfigError("phases.shares is empty: give one share per phase, e.g. [0.8, 0.2]")
        for s in self.shares:
            if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 1:
                raise ConfigError(f"phases.shares must lie in (0, 1], got {self.shares}")
        if abs(math.fsum(self.shares) - 1.0) > 1e-9:
            raise ConfigError(f"phases.shares must sum to 1, got {self.shares}")
        if self.names:
            if len(self.names) != len(self.shares):
                raise ConfigError(
                    f"phases.names has {len(self.names)} names for {len(self.shares)} shares"
                )
            bad = [n for n in self.names if not isinstance(n, str) or not _NAME.match(n)]
            if bad or len(set(self.names)) != len(self.names):
                raise ConfigError(
                    f"phases.names must be unique letters/digits/'_.-' names, got {self.names}"
                )

        for f in ("global_batch_size", "seq_length"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ConfigError(f"phases.{f} must be a whole number > 0, got {v!r}")

    @property
    def phase_names(self) -> list[str]:
        """The names, defaults filled in."""
        return list(self.names) or [f"phase{i + 1}" for i in range(len(self.shares))]

    @property
    def enabled(self) -> bool:
        """Whether there is more than one phase (else: a plain mixture, today's behaviour)."""
        return len(self.shares) > 1


def schedule_columns(domains: Sequence[str], phases: Sequence[str]) -> list[str]:
    """The table columns of a schedule, phase-major: ``d1@p1, d2@p1, ..., d1@p2, ...``."""
    return [f"{d}{PHASE_SEPARATOR}{p}" for p in phases for d in domains]


def is_schedule(weights: Mapping[str, float] | Sequence[str]) -> bool:
    """Whether a mixture (or a list of column names) is a schedule."""
    return any(PHASE_SEPARATOR in str(k) for k in weights)


def join_schedule(
    phases: Sequence[str], shares: Sequence[float], mixtures: Sequence[Mapping[str, float]]
) -> dict[str, float]:
    """One table row of a schedule: ``{domain@phase: share x weight}``, phase-major."""
    out: dict[str, float] = {}
    for p, s, w in zip(phases, shares, mixtures, strict=True):
        for d, v in w.items():
            out[f"{d}{PHASE_SEPARATOR}{p}"] = float(s) * float(v)
    return out


def split_schedule(
    weights: Mapping[str, float], domains: Sequence[str]
) -> tuple[list[str], list[float], list[dict[str, float]]]:
    """``(phase names, shares, per-phase mixtures)`` of a schedule row (see the module doc).

    Phases in the order their columns first appear; each phase must name every domain. A
    phase's mixture is its columns over their sum (its share), so it sums to 1.
    """
    phases: list[str] = []
    cols: dict[str, dict[str, float]] = {}
    for key, value in weights.items():
        d, sep, p = str(key).rpartition(PHASE_SEPARATOR)
        if not sep or not d or not p:
            raise DataError(f"schedule column {key!r} is not domain{PHASE_SEPARATOR}phase")
        if p not in cols:
            phases.append(p)
            cols[p] = {}
        cols[p][d] = float(value)
    shares: list[float] = []
    mixtures: list[dict[str, float]] = []
    for p in phases:
        if sorted(cols[p]) != sorted(domains):
            raise DataError(
                f"schedule phase {p!r} names the domains {sorted(cols[p])}; every phase must name "
                f"every domain {list(domains)}"
            )
        share = math.fsum(cols[p].values())
        if not share > 0:
            raise DataError(f"schedule phase {p!r} has no weight")
        shares.append(share)
        mixtures.append({d: cols[p][d] / share for d in domains})
    total = math.fsum(shares)
    if abs(total - 1.0) > 1e-6:
        raise DataError(f"a schedule's columns must sum to 1, got {total!r}")
    return phases, shares, mixtures


def run_average(weights: Mapping[str, float], domains: Sequence[str]) -> dict[str, float]:
    """The run-average mixture of a schedule row (a plain mixture is returned as it is)."""
    if not is_schedule(weights):
        return dict(weights)
    _, shares, mixtures = split_schedule(weights, domains)
    return {d: math.fsum(s * m[d] for s, m in zip(shares, mixtures, strict=True)) for d in domains}


def proxy_schedule(
    catalogue: Catalogue, weights: Mapping[str, float], num_samples: int
) -> BlendSchedule:
    """The exact-ratio schedule a proxy of ``num_samples`` samples trains on.

    The phase lengths are the shares apportioned over ``num_samples`` (largest remainder), as
    ``end_sample`` boundaries, so the boundaries do not move with the builder's rounding.
    """
    phases, shares, mixtures = split_schedule(weights, catalogue.names)
    blends = [dict(catalogue.blend(m)) for m in mixtures]
    order = [pre for d in catalogue.domains for pre in d.prefixes]
    prefixes = [pre for pre in order if any(b.get(pre, 0.0) > 0 for b in blends)]
    lengths = apportion(np.asarray(shares), num_samples).astype(np.int64)
    if np.any(lengths <= 0):
        raise DataError(
            f"a proxy of {num_samples} samples is too short for phase shares {shares}: a phase "
            "gets no sample; raise proxy.num_steps or proxy.global_batch_size"
        )
    ends = np.cumsum(lengths).tolist()
    rows = []
    for i, (p, b) in enumerate(zip(phases, blends, strict=True)):
        end = {"end_sample": int(ends[i])} if i < len(phases) - 1 else {}
        rows.append(Phase(weights=tuple(b.get(pre, 0.0) for pre in prefixes), name=p, **end))
    domain_of = {pre: d.name for d in catalogue.domains for pre in d.prefixes}
    return BlendSchedule(
        prefixes=tuple(prefixes),
        schedule=PhaseSchedule(phases=tuple(rows)),
        domains=tuple(domain_of[pre] for pre in prefixes),
    )


def _whole_run_ok(wide: np.ndarray, num_domains: int, caps: np.ndarray) -> np.ndarray:
    """Rows whose run-average weight of every domain is within its cap."""
    total = wide.reshape(wide.shape[0], -1, num_domains).sum(axis=1)
    return np.all(total <= caps[None, :] * (1 + 1e-9), axis=1)


def sample_schedules(
    catalogue: Catalogue, config: SampleConfig, phases: PhasesConfig, *, max_rounds: int = 20
) -> Mixtures:
    """``config.num_mixtures`` schedules: one mixture per phase, whole-run caps respected.

    Each phase's mixtures come from :func:`regmix_plugin.mixtures.sample_mixtures` with its own
    seed (``config.seed + 1000 x round + phase``) and caps for the phase's tokens; the i-th draws
    of the phases form a schedule, kept if the whole run keeps every domain within its cap.
    Replicate runs (``num_anchor_mixtures``) are not drawn for schedules.
    """
    names = catalogue.names
    shares = np.asarray(phases.shares, dtype=np.float64)
    caps = catalogue.max_weights()
    kept: list[np.ndarray] = []
    seen: set[str] = set()
    ids: list[str] = []
    columns = schedule_columns(names, phases.phase_names)
    for r in range(max_rounds):
        blocks = []
        for p, s in enumerate(shares):
            cat_p = dataclasses.replace(
                catalogue, num_target_tokens=max(1, round(catalogue.num_target_tokens * s))
            )
            cfg_p = dataclasses.replace(
                config, seed=config.seed + 1000 * r + p, num_anchor_mixtures=0, num_seeds=1
            )
            blocks.append(s * sample_mixtures(cat_p, cfg_p).mixtures.weights)
        wide = np.concatenate(blocks, axis=1)
        for row in wide[_whole_run_ok(wide, len(names), caps)]:
            mid = mixture_id(dict(zip(columns, row, strict=True)))
            if mid not in seen:
                seen.add(mid)
                ids.append(mid)
                kept.append(row)
            if len(kept) == config.num_mixtures:
                return Mixtures(ids=ids, names=columns, weights=np.stack(kept))
    raise InfeasibleError(
        f"only {len(kept)} of {config.num_mixtures} schedules kept every domain within its epoch "
        f"cap over the whole run after {max_rounds} rounds; raise domains.max_epochs, lower "
        "sample.num_mixtures or change phases.shares"
    )


@dataclass(frozen=True)
class ScheduleChoice:
    """What :func:`optimize_schedule` found."""

    phases: list[str]
    """Phase names."""
    shares: list[float]
    """Phase shares."""
    mixtures: list[dict[str, float]]
    """The chosen mixture of each phase (each sums to 1)."""
    weights: dict[str, float]
    """The chosen schedule as one table row (``domain@phase``)."""
    predicted: float
    """Model prediction of the chosen schedule."""
    single: dict[str, float]
    """The best single mixture the same search finds with every phase equal."""
    single_predicted: float
    """Its prediction."""
    num_drawn: int
    """Candidates drawn (both searches)."""


def _check_model_columns(model: Any, columns: list[str]) -> list[int]:
    domains = list(model.domains)
    if sorted(domains) != sorted(columns):
        raise DataError(
            f"the model was fitted on {len(domains)} columns ({domains[:4]}...), the schedule "
            f"has {len(columns)} ({columns[:4]}...): fit it on the schedules' mixtures table"
        )
    return [columns.index(d) for d in domains]


def _top_mean(
    draw: Any, predict: Any, num: int, batch: int, top_k: int
) -> tuple[np.ndarray, float, int]:
    best_x: np.ndarray | None = None
    best_y: np.ndarray | None = None
    drawn = 0
    while drawn < num:
        x = draw(min(batch, num - drawn))
        drawn += x.shape[0]
        if x.shape[0] == 0:
            continue
        y = predict(x)
        xs = x if best_x is None else np.concatenate([best_x, x])
        ys = y if best_y is None else np.concatenate([best_y, y])
        order = np.argsort(ys, kind="stable")[:top_k]
        best_x, best_y = xs[order], ys[order]
    if best_x is None or best_y is None:
        raise InfeasibleError(
            "no candidate schedule kept every domain within its epoch cap over the whole run; "
            "raise domains.max_epochs or optimize.num_candidates"
        )
    chosen = best_x.mean(axis=0)
    return chosen, float(predict(chosen[None, :])[0]), drawn


def optimize_schedule(
    model: Any,
    target: str,
    catalogue: Catalogue,
    phases: PhasesConfig,
    *,
    num_candidates: int = 100_000,
    top_k: int = 100,
    seed: int = 0,
    min_strength: float = 0.1,
    max_strength: float = 5.0,
    batch_size: int = 50_000,
    prior: np.ndarray | None = None,
) -> ScheduleChoice:
    """Draw schedules (one ``Dirichlet(s x prior)`` per phase), score them, take the top-k mean.

    Candidates whose whole run breaks a domain's epoch cap (``catalogue.max_weights()``) are
    dropped before scoring. The same budget then searches single mixtures (every phase equal),
    for the comparison the report makes. ``model.predict(x, target)`` takes rows in
    ``model.domains`` order, which must be this schedule's ``domain@phase`` columns.
    """
    names = catalogue.names
    k = len(names)
    shares = np.asarray(phases.shares, dtype=np.float64)
    columns = schedule_columns(names, phases.phase_names)
    perm = _check_model_columns(model, columns)
    caps = catalogue.max_weights()
    base = catalogue.prior() if prior is None else np.asarray(prior, dtype=np.float64)
    rng = np.random.default_rng(seed)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.ascontiguousarray(x[:, perm]), target), dtype=float)

    def one_phase(n: int) -> np.ndarray:
        s = rng.uniform(min_strength, max_strength, size=(n, 1))
        return dirichlet(rng, s * base[None, :])

    def schedules(n: int) -> np.ndarray:
        wide = np.concatenate([s * one_phase(n) for s in shares], axis=1)
        return wide[_whole_run_ok(wide, k, caps)]

    def singles(n: int) -> np.ndarray:
        w = one_phase(n)
        wide = np.concatenate([s * w for s in shares], axis=1)
        return wide[_whole_run_ok(wide, k, caps)]

    chosen, predicted, n1 = _top_mean(schedules, predict, num_candidates, batch_size, top_k)
    single, single_pred, n2 = _top_mean(singles, predict, num_candidates, batch_size, top_k)
    blocks = chosen.reshape(len(shares), k)
    mixtures = [dict(zip(names, (b / b.sum()).tolist(), strict=True)) for b in blocks]
    s_block = single.reshape(len(shares), k).sum(axis=0)
    return ScheduleChoice(
        phases=phases.phase_names,
        shares=shares.tolist(),
        mixtures=mixtures,
        weights=dict(zip(columns, chosen.tolist(), strict=True)),
        predicted=predicted,
        single=dict(zip(names, (s_block / s_block.sum()).tolist(), strict=True)),
        single_predicted=single_pred,
        num_drawn=n1 + n2,
    )


def phase_epochs(
    catalogue: Catalogue,
    phases: Sequence[str],
    mixtures: Sequence[Mapping[str, float]],
    phase_tokens: Sequence[float],
) -> dict[str, dict[str, float]]:
    """Epochs of each domain per phase and in total: ``{domain: {phase: epochs, "total": ...}}``."""
    out: dict[str, dict[str, float]] = {}
    for d in catalogue.domains:
        row = {
            p: float(m.get(d.name, 0.0)) * t / d.num_tokens
            for p, m, t in zip(phases, mixtures, phase_tokens, strict=True)
        }
        row["total"] = math.fsum(row.values())
        out[d.name] = row
    return out


def format_schedule(
    catalogue: Catalogue,
    phases: Sequence[str],
    mixtures: Sequence[Mapping[str, float]],
    phase_tokens: Sequence[float],
) -> tuple[str, list[str]]:
    """The schedule table (weights and epochs per domain per phase, total, cap) and warnings."""
    epochs = phase_epochs(catalogue, phases, mixtures, phase_tokens)
    header = ["domain", *(f"w {p}" for p in phases), *(f"epochs {p}" for p in phases)]
    header += ["epochs total", "max_epochs", ""]
    rows = []
    warnings = []
    for d in catalogue.domains:
        e = epochs[d.name]
        over = d.max_epochs is not None and e["total"] > d.max_epochs * (1 + 1e-9)
        rows.append(
            [
                d.name,
                *(f"{float(m.get(d.name, 0.0)):.4f}" for m in mixtures),
                *(f"{e[p]:.3f}" for p in phases),
                f"{e['total']:.3f}",
                "-" if d.max_epochs is None else f"{d.max_epochs:g}",
                "OVER CAP" if over else "",
            ]
        )
        if over:
            warnings.append(
                f"WARNING: domain {d.name!r} is repeated {e['total']:.2f} times over the whole "
                f"schedule, over its cap of {d.max_epochs:g} epochs"
            )
    tokens = ", ".join(f"{p} {t:,.0f}" for p, t in zip(phases, phase_tokens, strict=True))
    text = f"tokens per phase: {tokens}\n" + format_table(header, rows, rule=False)
    return text, warnings
