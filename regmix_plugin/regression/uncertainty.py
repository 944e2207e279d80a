"""Uncertainty of a fitted model: intervals, paired comparisons, the stability of a choice,
and the proxies' seed noise.

Pure functions of arrays (no model, no files), so that ``optimize``, ``predict`` and the report
can share them:

- :func:`predictive_interval`: mean and central interval from the ensemble members'
  predictions plus the residual spread the members do not see;
- :func:`probability_beats`: how often A is better than B, paired over the members;
- :func:`choice_intervals`: per-domain interval of each member's own chosen weights;
- :func:`bootstrap_counts`: the seeded bootstrap resamples of the ensemble;
- :func:`out_of_bag`, :func:`calibrated_residual_sd`: the residual term of the interval,
  calibrated on the training rows' out-of-bag predictions;
- :func:`estimate_noise`: seed noise sigma and signal-to-noise ratio from replicated mixtures;
- :func:`paired_spearman_difference`: a paired bootstrap interval on a Spearman difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _rank(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(a), dtype=np.float64)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    return pearson(_rank(a), _rank(b))


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def predictive_interval(
    members: np.ndarray, residual_sd: float, level: float = 0.9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and central ``level`` interval of the predictive distribution.

    ``members``: ``[members, rows]`` predictions of the bootstrap ensemble (the spread of the
    model); ``residual_sd``: the spread of the measured value around a model's prediction that
    the members do not capture (the proxies' noise and the error common to every member).
    The predictive distribution is taken as normal with variance ``var(members) +
    residual_sd^2``. Returns ``(mean, lo, hi)``, each of length ``rows``.
    """
    _check_level(level)
    m = np.asarray(members, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 2:
        raise ValueError(f"members must be [members >= 2, rows], got shape {m.shape}")
    if not residual_sd >= 0:
        raise ValueError(f"residual_sd must be >= 0, got {residual_sd}")
    mean = m.mean(axis=0)
    sd = np.sqrt(m.var(axis=0, ddof=1) + residual_sd**2)
    half = _normal_quantile(0.5 + level / 2) * sd
    return mean, mean - half, mean + half


def probability_beats(
    a: np.ndarray, b: np.ndarray, lower_is_better: bool = True
) -> float | np.ndarray:
    """Share of members whose prediction for A is better than for B (ties count half).

    ``a``, ``b``: ``[members]`` or ``[members, rows]`` predictions of the same members
    (paired: member j's A against member j's B). Returns a float, or one per row.
    """
    pa, pb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if pa.shape != pb.shape or pa.ndim not in (1, 2) or pa.shape[0] < 1:
        raise ValueError(
            f"a and b must have the same shape [members(, rows)], got {pa.shape} / {pb.shape}"
        )
    wins = (pa < pb) if lower_is_better else (pa > pb)
    score = wins.mean(axis=0) + 0.5 * (pa == pb).mean(axis=0)
    return float(score) if pa.ndim == 1 else np.asarray(score)


@dataclass(frozen=True)
class ChoiceIntervals:
    """Per-domain spread of the members' own chosen weights."""

    median: np.ndarray
    """Per domain: the median over members."""
    lo: np.ndarray
    """Per domain: the lower end of the central interval."""
    hi: np.ndarray
    """Per domain: the upper end."""
    level: float
    """Coverage of [lo, hi] over the members."""


def choice_intervals(chosen: np.ndarray, level: float = 0.9) -> ChoiceIntervals:
    """Central ``level`` interval, per domain, of the weight vectors each member chose.

    ``chosen``: ``[members, domains]``. Quantiles are the empirical ones of the members
    (numpy's default linear interpolation).
    """
    _check_level(level)
    c = np.asarray(chosen, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] < 1:
        raise ValueError(f"chosen must be [members, domains], got shape {c.shape}")
    lo, med, hi = np.quantile(c, [0.5 - level / 2, 0.5, 0.5 + level / 2], axis=0)
    return ChoiceIntervals(median=med, lo=lo, hi=hi, level=level)


def bootstrap_counts(num_rows: int, num_members: int, seed: int) -> np.ndarray:
    """``[num_members, num_rows]``: how often each row is drawn in each bootstrap resample
    (``num_rows`` draws with replacement per member, from one seeded generator)."""
    if num_rows < 1 or num_members < 0:
        raise ValueError(f"need num_rows >= 1 and num_members >= 0, got {num_rows}, {num_members}")
    rng = np.random.default_rng(seed)
    out = np.empty((num_members, num_rows), dtype=np.int64)
    for j in range(num_members):
        out[j] = np.bincount(rng.integers(0, num_rows, size=num_rows), minlength=num_rows)
    return out


@dataclass(frozen=True)
class NoiseEstimate:
    """A target's seed noise, from mixtures measured more than once."""

    sigma: float
    """Pooled within-mixture standard deviation (the seed noise of one measurement)."""
    dof: int
    """Degrees of freedom of ``sigma``: measurements minus replicated mixtures."""
    num_groups: int
    """Replicated mixtures (groups of at least two measurements) used."""
    spread: float
    """Standard deviation of the target across distinct mixtures (a replicated mixture counts
    once, with its mean)."""
    snr: float
    """``spread / sigma`` (inf when sigma is 0)."""
    num_mixtures: int
    """Distinct mixtures behind ``spread``."""


def estimate_noise(
    ids: Sequence[str], values: np.ndarray, groups: Sequence[Sequence[str]]
) -> NoiseEstimate | None:
    """Seed noise and signal-to-noise of one target.

    ``ids``/``values``: the measured rows (NaN rows are ignored); ``groups``: ids that share a
    mixture (measured with different seeds). Rows in no group are distinct mixtures of their
    own. None when fewer than one group keeps two finite measurements.
    """
    v = np.asarray(values, dtype=np.float64)
    where = {rid: i for i, rid in enumerate(ids)}
    grouped: set[str] = set()
    sq, dof, means = 0.0, 0, []
    used = 0
    for group in groups:
        rows = [where[g] for g in group if g in where and np.isfinite(v[where[g]])]
        grouped.update(group)
        if not rows:
            continue
        vals = v[rows]
        means.append(float(vals.mean()))
        if len(rows) >= 2:
            sq += float(((vals - vals.mean()) ** 2).sum())
            dof += len(rows) - 1
            used += 1
    if dof == 0:
        return None
    singles = [float(v[i]) for rid, i in where.items() if rid not in grouped and np.isfinite(v[i])]
    distinct = np.asarray(means + singles)
    sigma = math.sqrt(sq / dof)
    spread = float(distinct.std(ddof=1)) if len(distinct) > 1 else 0.0
    return NoiseEstimate(
        sigma=sigma,
        dof=dof,
        num_groups=used,
        spread=spread,
        snr=spread / sigma if sigma > 0 else math.inf,
        num_mixtures=len(distinct),
    )


def find_replicates(ids: Sequence[str], weights: np.ndarray) -> list[list[str]]:
    """Groups of ids whose weight rows are identical (bit for bit): the same mixture measured
    more than once. Groups of one are left out."""
    by_row: dict[bytes, list[str]] = {}
    w = np.ascontiguousarray(weights, dtype="<f8")
    for rid, row in zip(ids, w, strict=True):
        by_row.setdefault(row.tobytes(), []).append(rid)
    return [g for g in by_row.values() if len(g) > 1]


def paired_spearman_difference(
    a: np.ndarray,
    b: np.ndarray,
    truth: np.ndarray,
    level: float = 0.9,
    num_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Spearman(a, truth) - Spearman(b, truth), and its central ``level`` percentile interval
    over bootstrap resamples of the rows (the same resample for both sides: paired)."""

    _check_level(level)
    pa, pb, t = (np.asarray(v, dtype=np.float64) for v in (a, b, truth))
    if not pa.shape == pb.shape == t.shape or pa.ndim != 1 or len(t) < 3:
        raise ValueError(
            f"a, b and truth must be 1-d of one length >= 3, got {pa.shape}, {pb.shape}, {t.shape}"
        )
    rng = np.random.default_rng(seed)
    diffs = np.empty(num_resamples)
    for i in range(num_resamples):
        idx = rng.integers(0, len(t), len(t))
        diffs[i] = spearman(pa[idx], t[idx]) - spearman(pb[idx], t[idx])
    lo, hi = np.quantile(diffs[np.isfinite(diffs)], [0.5 - level / 2, 0.5 + level / 2])
    return spearman(pa, t) - spearman(pb, t), float(lo), float(hi)


def out_of_bag(
    members: np.ndarray, counts: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per training row: ``y`` minus the mean of the members whose resample did not draw it,
    and those members' variance. Rows with fewer than two such members are left out.
    ``members``: ``[members, rows]`` predictions at the training rows; ``counts`` likewise."""
    m = np.asarray(members, dtype=np.float64)
    c = np.asarray(counts)
    if m.shape != c.shape or m.shape[1] != len(y):
        raise ValueError(f"members {m.shape}, counts {c.shape} and y ({len(y)}) disagree")
    out = c == 0
    ok = out.sum(axis=0) >= 2
    if not ok.any():
        raise ValueError("no row is out of bag for two members: use more members")
    masked = np.where(out[:, ok], m[:, ok], np.nan)
    return np.asarray(y, dtype=np.float64)[ok] - np.nanmean(masked, axis=0), np.nanvar(
        masked, axis=0, ddof=1
    )


def calibrated_residual_sd(residuals: np.ndarray, variances: np.ndarray, level: float) -> float:
    """The smallest ``s`` such that a share ``level`` of the out-of-bag rows lies inside its
    normal interval ``+- z sqrt(variance + s^2)`` (``z``: the normal quantile of ``level``).

    A calibration on the training rows only: each row's interval is the one the model would
    give a new mixture (the mean and spread of members that did not see it), widened just
    enough to cover ``level`` of them (the idea of out-of-bag conformal calibration)."""
    _check_level(level)
    r, v = np.abs(np.asarray(residuals, dtype=np.float64)), np.asarray(variances, dtype=np.float64)
    if r.shape != v.shape or r.ndim != 1 or len(r) < 1:
        raise ValueError(
            f"residuals and variances must be 1-d of one length, got {r.shape}, {v.shape}"
        )
    z = _normal_quantile(0.5 + level / 2)
    # Row i is covered iff s^2 >= (r_i / z)^2 - v_i: take the level-quantile of that need.
    need = np.sort((r / z) ** 2 - v)
    k = math.ceil(level * len(need)) - 1
    return math.sqrt(max(0.0, float(need[max(k, 0)])))
