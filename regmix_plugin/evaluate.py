"""The evaluate stage's settings and its comparison: proxies trained on the chosen mixture and
the baselines, measured on the same target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BASELINES = ("token_prior", "uniform", "best_proxy")


@dataclass(kw_only=True, frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section: train proxies on the chosen mixture and the baselines, compare.

    Each is trained with the study's ``proxy`` settings (the same seed as the sweep), and their
    measured ``target`` loss is compared. The best sweep proxy is not retrained: its metrics, from
    the same settings and seed, are reused.
    """

    target: str
    """Metric to compare, a column of the results table (e.g. ``target_loss/target``)."""
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    """Baselines to train beside the chosen mixture: token_prior, uniform, best_proxy."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ValueError(f"baselines {unknown} are unknown; choose from {', '.join(BASELINES)}")


def l1_distance(weights: Mapping[str, float], other: Mapping[str, float]) -> float:
    """Sum of absolute weight differences over the domains of ``other``."""
    return float(sum(abs(weights.get(n, 0.0) - other[n]) for n in other))


def format_evaluation(ev: Mapping[str, Any]) -> str:
    """The comparison as console text."""
    lines = [f"measured {ev['target']} of proxies trained on each mixture:"]
    for name, r in ev["runs"].items():
        extra = f"  L1 to planted optimum {r['l1_to_planted']:.3f}" if "l1_to_planted" in r else ""
        lines.append(f"  {name:<12} {r['target_loss']:.4f}{extra}")
    lines.append(
        "the chosen mixture "
        + ("beats" if ev["chosen_beats_all"] else "does NOT beat")
        + " every baseline"
    )
    return "\n".join(lines)
