"""The evaluate stage's statistics: per-mixture mean and std, and the paired comparison with the
chosen mixture (t-interval over the per-seed differences), against values worked out here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regmix_plugin.config import from_dict
from regmix_plugin.errors import ConfigError
from regmix_plugin.evaluate import (
    EvaluateConfig,
    compare,
    format_evaluation,
    paired_comparison,
    summarize_runs,
)


def test_paired_interval_by_hand() -> None:
    chosen = [2.30, 2.32, 2.31]
    baseline = [2.35, 2.36, 2.37]
    # differences 0.05, 0.04, 0.06: mean 0.05, sd 0.01; t_{0.975, 2} = 4.302652729911275
    c = paired_comparison(baseline, chosen, 0.95)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert c.mean_difference == pytest.approx(0.05)
    assert c.std_difference == pytest.approx(0.01)
    assert (c.lo, c.hi) == (pytest.approx(0.05 - half), pytest.approx(0.05 + half))
    assert c.num_pairs == 3 and c.verdict == "beats"


def test_verdicts_follow_the_interval_not_the_means() -> None:
    chosen = [2.30, 2.40, 2.20]
    # Lower on average (mean difference +0.01) but noisy: the interval holds zero.
    noisy = [2.35, 2.38, 2.20]
    c = paired_comparison(noisy, chosen)
    assert c.mean_difference > 0 and c.lo is not None and c.lo < 0 < c.hi
    assert c.verdict == "within noise"
    worse = paired_comparison([2.20, 2.30, 2.11], chosen)  # chosen higher by 0.1, 0.1, 0.09
    assert worse.verdict == "loses" and worse.hi is not None and worse.hi < 0


def test_pairs_with_a_missing_side_are_left_out_and_one_pair_gives_no_interval() -> None:
    c = paired_comparison([2.4, math.nan, 2.5], [2.3, 2.3, math.nan])
    assert c.num_pairs == 1 and c.lo is None and c.hi is None and c.verdict == "within noise"
    assert c.mean_difference == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no seed where both"):
        paired_comparison([math.nan], [2.0])


def test_summary_and_compare_match_numpy_and_scipy() -> None:
    from scipy import stats

    rng = np.random.default_rng(7)
    chosen = rng.normal(2.3, 0.01, 5)
    runs = {"chosen": list(chosen), "uniform": list(chosen + rng.normal(0.02, 0.01, 5))}
    summary = summarize_runs(runs["uniform"])
    assert summary["mean"] == pytest.approx(np.mean(runs["uniform"]))
    assert summary["std"] == pytest.approx(np.std(runs["uniform"], ddof=1))
    assert summary["num_seeds"] == 5
    assert summarize_runs([2.0])["std"] is None
    c = compare(runs, 0.9)["uniform"]
    d = np.asarray(runs["uniform"]) - chosen
    lo, hi = stats.t.interval(0.9, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (c.lo, c.hi) == (pytest.approx(lo), pytest.approx(hi))
    assert set(compare(runs)) == {"uniform"}


def test_settings_and_seeds() -> None:
    cfg = from_dict(EvaluateConfig, {"target": "t"}, "evaluate")
    assert cfg.num_seeds == 3 and cfg.seeds(1234) == [2234, 2235, 2236]
    for bad, needle in [
        ({"num_seeds": 0}, "num_seeds must be >= 1"),
        ({"level": 1.0}, "level must be in"),
        ({"baselines": ["planted"]}, "unknown"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            from_dict(EvaluateConfig, {"target": "t", **bad}, "evaluate")


def test_console_text_names_each_verdict() -> None:
    ev = {
        "target": "target_loss/target",
        "num_seeds": 3,
        "level": 0.95,
        "runs": {"chosen": {"mean": 2.31, "std": 0.01}, "uniform": {"mean": 2.36, "std": 0.01}},
        "comparisons": {
            "uniform": {"mean_difference": 0.05, "lo": 0.03, "hi": 0.07, "verdict": "beats"}
        },
        "chosen_beats_all": True,
    }
    text = format_evaluation(ev)
    assert "2.3100 ± 0.0100" in text and "[+0.0300, +0.0700]: beats" in text
