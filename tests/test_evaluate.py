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


def test_report_leads_with_the_answer(tmp_path) -> None:
    """The first section gives the mixture, the noise (with the warning below report.min_snr),
    the rank transfer (too small below min_rho) and the measured evaluation, from the run's
    artifacts (a model folder that holds only metadata gives no interval, and no failure)."""
    import json

    import yaml

    from regmix_plugin.layout import RunLayout
    from regmix_plugin.report import ReportConfig, write_report

    layout = RunLayout(tmp_path)
    layout.weights.write_text(
        yaml.safe_dump(
            {"weights": {"a": 0.7, "b": 0.3}, "target": "t", "predicted": {"chosen": 2.5}}
        )
    )
    layout.model_dir.mkdir()
    noise = {"sigma": 0.02, "dof": 4, "num_groups": 2, "spread": 0.03, "snr": 1.5}
    meta = {"domains": ["a", "b"], "targets": {"t": {"folder": "t", "noise": noise}}}
    layout.model_metadata.write_text(json.dumps(meta))
    layout.transfer.write_text(
        json.dumps(
            {
                "target": "t",
                "spearman_rho": 0.7,
                "interval": {"level": 0.9, "lo": 0.2, "hi": 0.95},
                "chosen_rank": {"small": 1, "large": 2, "of": 9},
                "proxies_too_small": True,
                "min_rho": 0.8,
            }
        )
    )
    runs = {"chosen": {"mean": 2.31, "std": 0.01}, "uniform": {"mean": 2.36, "std": 0.02}}
    comparison = {"mean_difference": 0.05, "lo": 0.01, "hi": 0.09, "verdict": "beats"}
    layout.evaluation.write_text(
        json.dumps(
            {"target": "t", "num_seeds": 3, "runs": runs, "comparisons": {"uniform": comparison}}
        )
    )
    _, md_path = write_report(layout, ReportConfig())
    answer = md_path.read_text().split("## ")[1]
    assert answer.startswith("The answer")
    assert "Recommended mixture: a 0.700, b 0.300" in answer
    assert "Predicted t: 2.5000 (no interval" in answer
    assert "sigma 0.0200 (from 2 replicated mixtures); signal-to-noise 1.5" in answer
    assert "Warning: signal-to-noise 1.5 is below 2.0" in answer
    assert "Spearman rho 0.700, 90% interval [0.200, 0.950] over 9 mixtures" in answer
    assert "The proxies are too small for this target" in answer
    assert "uniform 2.3600 ± 0.0200 (beats: uniform - chosen [+0.0100, +0.0900])" in answer
    _, md_path = write_report(layout, ReportConfig(min_snr=1.0))
    assert "Warning" not in md_path.read_text().split("## ")[1]
