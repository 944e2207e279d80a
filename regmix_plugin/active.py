"""Sequential (active) mixture design: a space-filling first round, then batches picked by the
fitted ensemble (``sample.strategy: active``; docs/active.md).

Round 0 is the Dirichlet design of :func:`regmix_plugin.mixtures.sample_mixtures`, optionally
drawn ``pool_multiplier`` times too large and thinned to a space-filling subset
(:func:`thin_space_filling`: greedy maximin in Hellinger distance, seeded by the first draw).

Every later round (:func:`propose_round`) takes the bootstrap ensemble fitted on the finished
runs and:

1. simulates candidates (:func:`draw_candidates`): ``1 - local_fraction`` of them from the
   Dirichlet prior as ``regmix optimize`` draws them, the rest around the ``top_k`` best of
   those by the ensemble mean; every
   candidate is rounded to the design's grid and kept only inside the bounds (the epoch caps
   and any ``optimize`` bounds), so every pick respects them;
2. scores every candidate with every member (``[members, candidates]``);
3. picks the batch by **batch Thompson sampling** over the members (:func:`thompson_batch`):
   slot ``b`` takes member ``perm[b mod M]`` (a seeded permutation) as a draw from the
   posterior and picks that member's lowest candidate that lies at least ``min_distance`` (L1)
   from every finished mixture and every earlier pick of the batch. Members agree near a clear
   optimum (the picks crowd it); where they disagree, different members send picks to
   different places, and the distance rule spreads the batch.

Each round also records the chosen mixture before its picks (the mean of the ``top_k``
candidates with the lowest ensemble mean, as ``regmix optimize`` chooses), its predicted value
and the members' interval there: the stop rule compares them between rounds.

Everything random comes from ``numpy.random.default_rng`` seeded by ``(seed, round)``: the same
finished results give the same picks.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.blending.apportionment import largest_remainder
from regmix_plugin.domains import Catalogue
from regmix_plugin.errors import DataError
from regmix_plugin.io import atomic_write_json
from regmix_plugin.mixtures import (
    ActiveSettings,
    Mixtures,
    SampleConfig,
    SampleResult,
    add_replicates,
    mixture_id,
    sample_mixtures,
)
from regmix_plugin.simplex import dirichlet, dirichlet_mixed_strengths

#: ``members(x) -> [members, rows]``: the ensemble's predictions of the target.
MembersFn = Callable[[np.ndarray], np.ndarray]


# -- round 0 ---------------------------------------------------------------------------------------


def hellinger_features(x: np.ndarray) -> np.ndarray:
    """``sqrt(w) / sqrt(2)``: Euclidean distance between these is the Hellinger distance."""
    return np.sqrt(np.clip(x, 0.0, None) / 2.0)


def thin_space_filling(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` rows of ``x`` spread out: greedy maximin (each next row the one
    farthest, in Hellinger distance, from those taken), starting from row 0; sorted."""
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"cannot thin {n} rows to {k}")
    f = hellinger_features(x)
    taken = [0]
    dist = np.sum((f - f[0]) ** 2, axis=1)
    for _ in range(k - 1):
        i = int(np.argmax(dist))
        taken.append(i)
        dist = np.minimum(dist, np.sum((f - f[i]) ** 2, axis=1))
    return np.sort(np.asarray(taken, dtype=np.int64))


def initial_design(catalogue: Catalogue, config: SampleConfig) -> SampleResult:
    """Round 0 of ``strategy: active``: ``config.initial_size()`` Dirichlet mixtures, thinned
    from ``active.pool_multiplier`` times as many (1: the plain Dirichlet design), with the
    anchors' replicates as :func:`sample_mixtures` adds them."""
    n = config.initial_size()
    pool_config = replace(
        config,
        strategy="dirichlet",
        num_mixtures=n * config.active.pool_multiplier,
        num_anchor_mixtures=0,
        num_seeds=1,
    )
    pool = sample_mixtures(catalogue, pool_config)
    keep = np.arange(n) if config.active.pool_multiplier == 1 else None
    if keep is None:
        keep = thin_space_filling(pool.mixtures.weights, n)
    design = Mixtures(
        ids=[pool.mixtures.ids[i] for i in keep],
        names=list(pool.mixtures.names),
        weights=pool.mixtures.weights[keep],
    )
    summary = dict(pool.summary)
    summary["num_mixtures"] = n
    summary["active"] = {"round": 0, "pool_size": len(pool.mixtures), "thinned_to": n}
    table, reps = add_replicates(design, config.num_anchor_mixtures, config.num_seeds)
    return SampleResult(mixtures=table, summary=summary, replicates=reps)


# -- candidates and choice -------------------------------------------------------------------------


def to_grid(x: np.ndarray, num_units: int, min_weight: float = 0.0) -> np.ndarray:
    """Rows dropped below ``min_weight``, renormalised and rounded to multiples of
    ``1 / num_units`` (largest remainder, as the Dirichlet design rounds)."""
    w = np.where(x < min_weight, 0.0, x)
    w = w / w.sum(axis=1, keepdims=True)
    return largest_remainder(w * num_units, num_units) / float(num_units)


def feasible(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Rows inside ``lower <= w <= upper`` (a float slack of 1e-12)."""
    return np.all((x >= lower - 1e-12) & (x <= upper * (1 + 1e-12) + 1e-12), axis=1)


def draw_candidates(
    rng: np.random.Generator,
    prior: np.ndarray,
    strengths: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    num: int,
    *,
    centres: np.ndarray | None = None,
    local_fraction: float = 0.5,
    concentration: float = 50.0,
    num_units: int | None = None,
    min_weight: float = 0.0,
) -> np.ndarray:
    """About ``num`` feasible candidates: ``1 - local_fraction`` of them from
    ``Dirichlet(s * prior)`` (``s`` from ``strengths``), the rest from
    ``Dirichlet(concentration * c + 0.01)`` around the rows ``c`` of ``centres``; rounded to the
    grid when ``num_units`` is given; only rows inside the bounds are returned."""
    num_local = 0 if centres is None or len(centres) == 0 else round(num * local_fraction)
    parts = [dirichlet_mixed_strengths(rng, prior, strengths, num - num_local)]
    if num_local and centres is not None:
        which = rng.integers(len(centres), size=num_local)
        parts.append(dirichlet(rng, concentration * centres[which] + 0.01))
    x = np.concatenate(parts)
    if num_units is not None:
        x = to_grid(x, num_units, min_weight)
    return np.asarray(x[feasible(x, lower, upper)])


def choose_mixture(mean: np.ndarray, candidates: np.ndarray, top_k: int) -> np.ndarray:
    """The mean of the ``top_k`` candidates with the lowest predicted ``mean`` (feasible when
    they are: the bounds and the simplex are convex)."""
    k = min(top_k, len(candidates))
    order = np.argsort(mean, kind="stable")[:k]
    return np.asarray(candidates[order].mean(axis=0))


def thompson_batch(
    members: np.ndarray,
    candidates: np.ndarray,
    existing: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    min_distance: float,
) -> list[int]:
    """Batch Thompson sampling over ensemble members (module doc): indices into ``candidates``.

    ``members``: ``[M, N]`` predictions (lower is better). Slot ``b`` uses member
    ``perm[b mod M]`` and takes its lowest candidate at L1 distance >= ``min_distance`` from
    ``existing`` and from earlier picks. Fewer than ``batch_size`` when too few candidates are
    far enough."""
    m = members.shape[0]
    allowed = np.ones(len(candidates), dtype=bool)
    for row in existing:
        allowed &= np.abs(candidates - row).sum(axis=1) >= min_distance
    perm = rng.permutation(m)
    picks: list[int] = []
    for b in range(batch_size):
        if not allowed.any():
            break
        score = np.where(allowed, members[perm[b % m]], np.inf)
        i = int(np.argmin(score))
        picks.append(i)
        allowed &= np.abs(candidates - candidates[i]).sum(axis=1) >= min_distance
    return picks


# -- one round -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundProposal:
    """What one later round decided: the picks and the choice they were made around."""

    picks: np.ndarray
    """``[batch, domains]``: the mixtures to train next (grid-rounded, inside the bounds)."""
    chosen: np.ndarray
    """The chosen mixture of the ensemble fitted on the finished runs (before the picks)."""
    predicted: float
    """The ensemble mean's prediction at ``chosen``."""
    interval: tuple[float, float]
    """The members' central ``level`` interval at ``chosen`` (spread of the mean, no noise)."""
    num_candidates: int
    """Feasible candidates scored."""


def propose_round(
    members_fn: MembersFn,
    observed: np.ndarray,
    *,
    prior: np.ndarray,
    strengths: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    settings: ActiveSettings,
    batch_size: int,
    seed: int,
    round_index: int,
    num_units: int | None = None,
    min_weight: float = 0.0,
    level: float = 0.9,
) -> RoundProposal:
    """Pick one round's batch (module doc): candidates from the prior, then around the ensemble
    mean's best, scored by every member; the chosen mixture before the picks and its interval.

    ``observed``: the finished mixtures ``[rows, domains]`` (picks keep ``min_distance`` from
    them). Seeded by ``(seed, round_index)``."""
    rng = np.random.default_rng([seed, round_index])
    num_local = round(settings.num_candidates * settings.local_fraction)
    glob = draw_candidates(
        rng,
        prior,
        strengths,
        lower,
        upper,
        max(settings.num_candidates - num_local, settings.top_k),
        num_units=num_units,
        min_weight=min_weight,
    )
    if len(glob) == 0:
        raise ValueError("no candidate mixture lies inside the bounds")
    mean_glob = members_fn(glob).mean(axis=0)
    centres = glob[np.argsort(mean_glob, kind="stable")[: settings.top_k]]
    local = draw_candidates(
        rng,
        prior,
        strengths,
        lower,
        upper,
        num_local,
        centres=centres,
        local_fraction=1.0,
        concentration=settings.local_concentration,
        num_units=num_units,
        min_weight=min_weight,
    )
    cands = np.concatenate([glob, local])
    preds = members_fn(cands)
    mean = preds.mean(axis=0)
    chosen = choose_mixture(mean, cands, settings.top_k)
    at_chosen = members_fn(chosen[None, :])[:, 0]
    lo, hi = np.quantile(at_chosen, [0.5 - level / 2, 0.5 + level / 2])
    picks = thompson_batch(preds, cands, observed, batch_size, rng, settings.min_distance)
    return RoundProposal(
        picks=cands[picks],
        chosen=chosen,
        predicted=float(at_chosen.mean()),
        interval=(float(lo), float(hi)),
        num_candidates=len(cands),
    )


def has_stopped(
    previous: dict[str, Any] | None, proposal: RoundProposal, names: list[str], s: ActiveSettings
) -> bool:
    """The stop rule: with ``stop_weight_tolerance`` > 0, the chosen mixture moved by at most
    it (L1) and its prediction by at most ``stop_value_tolerance`` since ``previous`` (a round
    record with ``chosen`` as ``{domain: weight}`` and ``predicted``)."""
    if s.stop_weight_tolerance <= 0 or previous is None or previous.get("chosen") is None:
        return False
    before = np.array([float(previous["chosen"][n]) for n in names])
    moved = float(np.abs(before - proposal.chosen).sum())
    shift = abs(float(previous["predicted"]) - proposal.predicted)
    return moved <= s.stop_weight_tolerance and shift <= s.stop_value_tolerance


# -- the rounds record (``RunLayout.rounds``) ------------------------------------------------------


def new_record(round0: Mixtures) -> dict[str, Any]:
    """The rounds record after round 0: its rows (replicates included) and the domains."""
    return {"names": list(round0.names), "rounds": [{"round": 0, "ids": list(round0.ids)}]}


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The rounds record, or None without the file; a malformed one is a DataError."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{p}: not valid JSON ({exc}); delete it and rerun the sample stage"
        ) from None
    ok = isinstance(data, dict) and isinstance(data.get("rounds"), list) and data["rounds"]
    if not ok or not isinstance(data.get("names"), list):
        raise DataError(
            f"{p}: expected {{'names': [...], 'rounds': [...]}}; delete it and resample"
        )
    return dict(data)


def write_record(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Write the rounds record atomically."""
    atomic_write_json(Path(path), record)


def round_entry(index: int, picks: Mixtures, proposal: RoundProposal) -> dict[str, Any]:
    """One later round as recorded: its picks and the choice before them."""
    names = picks.names
    return {
        "round": index,
        "ids": list(picks.ids),
        "weights": {i: _as_dict(names, w) for i, w in zip(picks.ids, picks.weights, strict=True)},
        "chosen": _as_dict(names, proposal.chosen),
        "predicted": proposal.predicted,
        "interval": list(proposal.interval),
        "num_candidates": proposal.num_candidates,
    }


def _as_dict(names: list[str], w: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, w, strict=True)}


def full_table(round0: Mixtures, record: dict[str, Any]) -> Mixtures:
    """Round 0's table followed by every later round's picks, in round order."""
    names = list(round0.names)
    ids, rows = list(round0.ids), [round0.weights]
    for entry in record["rounds"][1:]:
        for mid in entry["ids"]:
            ids.append(mid)
            rows.append(np.array([[float(entry["weights"][mid][n]) for n in names]]))
    return Mixtures(ids=ids, names=names, weights=np.concatenate(rows))


def spent(record: dict[str, Any], replicate_rows: int) -> int:
    """Distinct mixtures of every round so far (replicate runs not counted)."""
    return sum(len(e["ids"]) for e in record["rounds"]) - replicate_rows


def picks_table(picks: np.ndarray, names: list[str]) -> Mixtures:
    """The picks as a mixtures table with their ids (:func:`mixture_id`)."""
    ids = [mixture_id(dict(zip(names, r, strict=True))) for r in picks]
    return Mixtures(ids=ids, names=list(names), weights=np.asarray(picks, dtype=np.float64))


def interval_width(record: dict[str, Any]) -> float:
    """Width of a round record's interval (nan without one)."""
    iv = record.get("interval")
    return math.nan if not iv else float(iv[1]) - float(iv[0])
