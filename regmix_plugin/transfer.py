"""Rank transfer: does the proxies' ranking of mixtures hold at a larger proxy scale?

The ``transfer`` stage trains a subset of the sweep's mixtures, spread over the range of their
predicted target (:func:`spread_subset`), and the chosen mixture, at a second, larger proxy
configuration (``transfer.proxy``: overrides of the ``proxy`` section), and compares their
measured target with the one at the sweep's scale:

- Spearman's rho between the two scales (:func:`spearman`, ties ranked by their average);
- a ``level`` percentile bootstrap interval of rho: the mixtures are resampled with replacement
  ``num_resamples`` times from one ``numpy.random.default_rng(seed)``; resamples whose ranks
  are constant on one side (rho undefined) are left out and counted;
- whether the chosen mixture's rank among them holds (rank at the larger scale no worse than at
  the sweep's; rank 1 is the lowest loss).

When the interval's lower end is below ``min_rho`` the proxies are too small for this target:
their ranking is not trusted to carry over (Olmix: 1M-parameter proxies rank 1B models with
rho about 0.73, proxies of 15M and more above 0.89).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Proxy settings the larger scale must share with the sweep's (same data, same measurement).
FIXED_PROXY_KEYS = ("vocab_size", "targets", "split", "eval_seed", "num_eval_tokens")


@dataclass(kw_only=True, frozen=True)
class TransferConfig:
    """The ``transfer`` section: the rank-transfer check at a second, larger proxy scale."""

    target: str
    """Metric to rank the mixtures by, a column of the results table."""
    proxy: dict[str, Any]
    """Overrides of the ``proxy`` section for the larger scale, for example
    ``{model: {hidden_size: 128}, num_tokens: 1048576}`` (about 4x parameters and tokens);
    ``model`` is merged with the sweep's."""
    num_mixtures: int = 8
    """Sweep mixtures trained at the larger scale, spread over their predicted target."""
    level: float = 0.9
    """Coverage of the bootstrap interval of rho."""
    num_resamples: int = 2000
    """Bootstrap resamples of the mixtures."""
    seed: int = 0
    """Seed of the bootstrap."""
    min_rho: float = 0.8
    """Below this lower end of the interval the proxies are called too small for the target."""
    num_concurrent: int = 1
    """Proxies trained at once, each in its own worker process (as ``evaluate.num_concurrent``)."""

    def __post_init__(self) -> None:
        if not self.proxy:
            raise ValueError(
                "proxy is empty: give the larger scale's overrides of the proxy section, for "
                "example {model: {hidden_size: 128}, num_tokens: 1048576}"
            )
        fixed = sorted(set(self.proxy) & set(FIXED_PROXY_KEYS))
        if fixed:
            raise ValueError(
                f"proxy overrides {fixed}: the larger scale must read the same data and measure "
                "the same target sets as the sweep; override the model and training only"
            )
        if self.num_mixtures < 3:
            raise ValueError(
                f"num_mixtures must be >= 3 for a rank correlation, got {self.num_mixtures}"
            )
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        if self.num_concurrent < 1:
            raise ValueError(f"num_concurrent must be >= 1, got {self.num_concurrent}")
        if self.num_resamples < 100:
            raise ValueError(f"num_resamples must be >= 100, got {self.num_resamples}")
        if not -1.0 <= self.min_rho <= 1.0:
            raise ValueError(f"min_rho must be in [-1, 1], got {self.min_rho}")


def spread_subset(ids: Sequence[str], predicted: Sequence[float] | np.ndarray, k: int) -> list[str]:
    """``k`` ids evenly spread over the sorted predictions (the lowest and the highest included;
    all of them when there are at most ``k``), in the order of increasing prediction."""
    p = np.asarray(predicted, dtype=np.float64)
    if len(ids) != len(p):
        raise ValueError(f"{len(ids)} ids but {len(p)} predictions")
    order = np.argsort(p, kind="stable")
    if len(order) <= k:
        return [ids[i] for i in order]
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, k)).astype(np.int64))
    return [ids[order[i]] for i in picks]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN when one side is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else math.nan


@dataclass(frozen=True)
class RankTransfer:
    """The comparison of two scales' measurements of the same mixtures."""

    rho: float
    """Spearman's rho between the two scales."""
    lo: float
    """Lower end of the bootstrap interval."""
    hi: float
    """Upper end."""
    num_undefined: int
    """Resamples left out because one side's ranks were constant."""
    chosen_rank_small: int | None
    """The chosen mixture's rank (1: lowest loss) at the sweep's scale."""
    chosen_rank_large: int | None
    """Its rank at the larger scale."""
    notes: list[str] = field(default_factory=list)
    """Plain-language conclusions (proxies too small, the chosen rank does not hold)."""

    @property
    def chosen_rank_holds(self) -> bool | None:
        """True when the chosen mixture ranks no worse at the larger scale."""
        if self.chosen_rank_small is None or self.chosen_rank_large is None:
            return None
        return self.chosen_rank_large <= self.chosen_rank_small


def bootstrap_interval(
    a: np.ndarray, b: np.ndarray, level: float, num_resamples: int, seed: int
) -> tuple[float, float, int]:
    """Percentile interval of Spearman's rho over resamples of the pairs; and how many
    resamples were undefined (left out)."""
    rng = np.random.default_rng(seed)
    n = len(a)
    values = np.empty(num_resamples)
    for i in range(num_resamples):
        idx = rng.integers(0, n, n)
        values[i] = spearman(a[idx], b[idx])
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return math.nan, math.nan, num_resamples
    lo, hi = np.quantile(ok, [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi), int(num_resamples - ok.size)


def _rank(values: np.ndarray, i: int) -> int:
    """1-based rank of entry ``i`` (1: the lowest), ties sharing the best rank."""
    return int(1 + np.sum(values < values[i]))


def rank_transfer(
    small: Sequence[float],
    large: Sequence[float],
    config: TransferConfig,
    chosen_index: int | None = None,
) -> RankTransfer:
    """Compare the two scales' measurements (same order; non-finite pairs are left out)."""
    a, b = np.asarray(small, dtype=np.float64), np.asarray(large, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if int(ok.sum()) < 3:
        raise ValueError(f"need at least 3 mixtures measured at both scales, got {int(ok.sum())}")
    keep = np.flatnonzero(ok)
    a, b = a[ok], b[ok]
    rho = spearman(a, b)
    lo, hi, undefined = bootstrap_interval(a, b, config.level, config.num_resamples, config.seed)
    rank_small = rank_large = None
    if chosen_index is not None and chosen_index in keep:
        j = int(np.flatnonzero(keep == chosen_index)[0])
        rank_small, rank_large = _rank(a, j), _rank(b, j)
    notes = []
    if not lo >= config.min_rho:
        notes.append(
            f"the lower end of the {config.level:.0%} interval of rho is {lo:.2f}, below "
            f"{config.min_rho}: the proxies are too small for this target (their ranking of "
            "mixtures is not shown to hold at the larger scale)"
        )
    result = RankTransfer(rho, lo, hi, undefined, rank_small, rank_large, notes)
    if result.chosen_rank_holds is False:
        notes.append(
            f"the chosen mixture ranks {rank_large} of {len(a)} at the larger scale, "
            f"{rank_small} at the sweep's: its rank does not hold"
        )
    return result


def format_transfer(record: Mapping[str, Any]) -> str:
    """``transfer.json`` as console text."""
    iv = record["interval"]
    rank = record["chosen_rank"]
    lines = [
        f"rank transfer of {record['target']} over {rank['of']} mixtures: Spearman rho "
        f"{record['spearman_rho']:.3f}, {iv['level']:.0%} bootstrap interval "
        f"[{iv['lo']:.3f}, {iv['hi']:.3f}]",
        f"the chosen mixture ranks {rank['small']} at the sweep's scale, {rank['large']} at the "
        "larger one",
    ]
    lines += [f"  {note}" for note in record.get("notes", [])]
    return "\n".join(lines)
