"""The evaluate stage's settings and its comparison: proxies trained on the chosen mixture and
the baselines with several seeds, measured on the same target, compared paired by seed.

Every compared mixture is trained with the same ``num_seeds`` proxy seeds, so that run ``k`` of
the chosen mixture and run ``k`` of a baseline share their initial weights and data order. The
comparison of a baseline B with the chosen mixture C is over the paired differences
``d_k = loss(B, k) - loss(C, k)`` (positive: the chosen mixture is better): their mean, their
standard deviation, and the two-sided ``level`` Student t-interval ``mean +- t_{n-1} sd / sqrt(n)``.
The verdict is ``beats`` only when the interval lies above zero, ``loses`` when it lies below,
``within noise`` otherwise (and with a single seed, where no interval exists).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BASELINES = ("token_prior", "uniform", "best_proxy")
#: The label of the planted weights (a ``synthetic`` study's ``hidden_weights``).
PLANTED = "planted"
#: The label of the mixture the optimizer chose.
CHOSEN = "chosen"
#: How the intervals are computed (written into ``evaluation.json``).
INTERVAL_METHOD = (
    "two-sided Student t-interval over the per-seed paired differences baseline - chosen"
)


@dataclass(kw_only=True, frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section: train proxies on the chosen mixture and the baselines, compare.

    Each is trained with the study's ``proxy`` settings and ``num_seeds`` proxy seeds, the same
    seeds for every mixture; a ``synthetic`` study's planted weights are compared as well.
    """

    target: str
    """Metric to compare, a column of the results table (e.g. ``target_loss/target``)."""
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    """Baselines to train beside the chosen mixture: token_prior, uniform, best_proxy (the
    sweep mixture with the lowest measured target, replicates averaged)."""
    num_seeds: int = 3
    """Proxy seeds per compared mixture; the statistics need at least 2."""
    seed_offset: int = 1000
    """Seed ``k`` of the evaluation is ``proxy.seed + seed_offset + k``: seeds the sweep did not
    use, so the best sweep proxy is not measured on the seed it was selected with."""
    level: float = 0.95
    """Coverage of the paired intervals."""
    num_concurrent: int = 1
    """Proxies trained at once, each in its own worker process (1: one after the other in the
    ``regmix run`` process). The results do not depend on it; give each proxy
    ``proxy.num_threads`` threads so that ``num_concurrent * num_threads`` fits the cores."""

    def __post_init__(self) -> None:
        if self.num_concurrent < 1:
            raise ValueError(f"num_concurrent must be >= 1, got {self.num_concurrent}")
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ValueError(f"baselines {unknown} are unknown; choose from {', '.join(BASELINES)}")
        if self.num_seeds < 1:
            raise ValueError(f"num_seeds must be >= 1, got {self.num_seeds}")
        if self.seed_offset < 0:
            raise ValueError(f"seed_offset must be >= 0, got {self.seed_offset}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level}")

    def seeds(self, proxy_seed: int) -> list[int]:
        """The proxy seeds of the evaluation runs."""
        return [proxy_seed + self.seed_offset + k for k in range(self.num_seeds)]


def l1_distance(weights: Mapping[str, float], other: Mapping[str, float]) -> float:
    """Sum of absolute weight differences over the domains of ``other``."""
    return float(sum(abs(weights.get(n, 0.0) - other[n]) for n in other))


def summarize_runs(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof 1; None with one value) and count of the finite
    values of one mixture's runs."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "std": None, "num_seeds": 0}
    std = float(v.std(ddof=1)) if v.size > 1 else None
    return {"mean": float(v.mean()), "std": std, "num_seeds": int(v.size)}


@dataclass(frozen=True)
class PairedComparison:
    """A baseline against the chosen mixture, paired by seed."""

    mean_difference: float
    """Mean of baseline - chosen over the seeds (positive: the chosen mixture is better)."""
    std_difference: float | None
    """Sample standard deviation of the differences (None with one pair)."""
    lo: float | None
    """Lower end of the interval (None with one pair)."""
    hi: float | None
    """Upper end of the interval."""
    num_pairs: int
    """Seeds where both were measured."""
    verdict: str
    """``beats`` (interval above 0), ``loses`` (below 0) or ``within noise``."""


def paired_comparison(
    baseline: Sequence[float], chosen: Sequence[float], level: float = 0.95
) -> PairedComparison:
    """Compare a baseline's per-seed losses with the chosen mixture's (same seed order); pairs
    with a non-finite side are left out (see the module doc for the interval)."""
    from scipy.stats import t

    b, c = np.asarray(baseline, dtype=np.float64), np.asarray(chosen, dtype=np.float64)
    if b.shape != c.shape or b.ndim != 1:
        raise ValueError(f"baseline and chosen must be 1-d of one length, got {b.shape}, {c.shape}")
    ok = np.isfinite(b) & np.isfinite(c)
    d = b[ok] - c[ok]
    n = int(d.size)
    if n == 0:
        raise ValueError("no seed where both the baseline and the chosen mixture were measured")
    mean = float(d.mean())
    if n < 2:
        return PairedComparison(mean, None, None, None, n, "within noise")
    sd = float(d.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    verdict = "beats" if lo > 0 else "loses" if hi < 0 else "within noise"
    return PairedComparison(mean, sd, lo, hi, n, verdict)


def compare(
    runs: Mapping[str, Sequence[float]], level: float = 0.95
) -> dict[str, PairedComparison]:
    """Every label but ``chosen`` against ``chosen`` (``runs``: label -> per-seed losses)."""
    return {
        label: paired_comparison(values, runs[CHOSEN], level)
        for label, values in runs.items()
        if label != CHOSEN
    }


def _pm(r: Mapping[str, Any]) -> str:
    if r.get("mean") is None:
        return "not measured"
    std = r.get("std")
    return f"{r['mean']:.4f}" + ("" if std is None else f" ± {std:.4f}")


def format_evaluation(ev: Mapping[str, Any]) -> str:
    """The comparison as console text."""
    n = ev.get("num_seeds", 1)
    lines = [
        f"measured {ev['target']} of proxies trained on each mixture ({n} seed(s), mean ± std):"
    ]
    for name, r in ev["runs"].items():
        extra = f"  L1 to planted {r['l1_to_planted']:.3f}" if "l1_to_planted" in r else ""
        lines.append(f"  {name:<12} {_pm(r)}{extra}")
    level = ev.get("level", 0.95)
    for name, c in (ev.get("comparisons") or {}).items():
        if c["lo"] is None:
            interval = "no interval (one seed)"
        else:
            interval = f"{level:.0%} interval [{c['lo']:+.4f}, {c['hi']:+.4f}]"
        lines.append(
            f"  chosen vs {name:<12} {name} - chosen = {c['mean_difference']:+.4f}, {interval}: "
            f"{c['verdict']}"
        )
    lines.append(
        "the chosen mixture "
        + ("beats" if ev["chosen_beats_all"] else "does NOT beat")
        + " every baseline (paired intervals that exclude zero)"
    )
    return "\n".join(lines)
