"""Rank transfer's statistics: the spread subset, Spearman's rho and its bootstrap interval
(against scipy and a loop written here), the chosen mixture's rank, and the settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from regmix_plugin import stages
from regmix_plugin.config import from_dict
from regmix_plugin.errors import ConfigError
from regmix_plugin.study import load_study
from regmix_plugin.transfer import (
    TransferConfig,
    format_transfer,
    rank_transfer,
    spearman,
    spread_subset,
)


def _cfg(**kw: object) -> TransferConfig:
    return from_dict(TransferConfig, {"target": "t", "proxy": {"num_tokens": 1024}, **kw}, "x")


def test_spread_subset_takes_both_ends_and_even_steps() -> None:
    ids = [f"m{i}" for i in range(10)]
    predicted = [9.0, 0.0, 8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0]  # m1 lowest, m0 highest
    # sorted by prediction: m1 m3 m5 m7 m9 m8 m6 m4 m2 m0; positions 0, 3, 6, 9 (k = 4)
    assert spread_subset(ids, predicted, 4) == ["m1", "m7", "m6", "m0"]
    assert spread_subset(ids[:3], predicted[:3], 8) == ["m1", "m2", "m0"]


def test_spearman_matches_scipy_with_ties_and_is_nan_when_constant() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    a = rng.normal(size=12)
    b = a + rng.normal(scale=0.8, size=12)
    b[3] = b[4]  # a tie
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert math.isnan(spearman(a, np.ones(12)))


def test_bootstrap_interval_recomputed_by_a_loop_here() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    small = rng.normal(size=9)
    large = small + rng.normal(scale=0.5, size=9)
    cfg = _cfg(num_resamples=500, seed=11, level=0.9)
    result = rank_transfer(small, large, cfg, chosen_index=8)
    boot = np.random.default_rng(11)
    values = []
    for _ in range(500):
        idx = boot.integers(0, 9, 9)
        a, b = small[idx], large[idx]
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        values.append(spearmanr(a, b).statistic)
    lo, hi = np.quantile(values, [0.05, 0.95])
    assert result.rho == pytest.approx(spearmanr(small, large).statistic)
    assert (result.lo, result.hi) == (pytest.approx(lo), pytest.approx(hi))
    assert result.num_undefined == 500 - len(values)
    # The chosen mixture (index 8): its rank is 1 + how many are lower, at each scale.
    assert result.chosen_rank_small == 1 + int(np.sum(small < small[8]))
    assert result.chosen_rank_large == 1 + int(np.sum(large < large[8]))


def test_too_small_and_a_rank_that_does_not_hold_are_said_plainly() -> None:
    small = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    large = [6.0, 1.0, 5.0, 2.0, 4.0, 3.0]  # unrelated order; the chosen (index 0) drops to last
    result = rank_transfer(small, large, _cfg(), chosen_index=0)
    assert result.lo < 0.8 and result.chosen_rank_small == 1 and result.chosen_rank_large == 6
    assert result.chosen_rank_holds is False
    assert any("too small for this target" in n for n in result.notes)
    assert any("does not hold" in n for n in result.notes)
    perfect = rank_transfer(small, [x * 2 for x in small], _cfg(), chosen_index=0)
    assert perfect.rho == pytest.approx(1.0) and perfect.chosen_rank_holds and not perfect.notes
    record = {
        "target": "t",
        "spearman_rho": perfect.rho,
        "interval": {"level": 0.9, "lo": perfect.lo, "hi": perfect.hi},
        "chosen_rank": {"small": 1, "large": 1, "of": 6},
        "notes": [],
    }
    assert "Spearman rho 1.000" in format_transfer(record)


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"target": "t", "proxy": {}}, "proxy is empty"),
        ({"target": "t", "proxy": {"targets": {}}}, "same data"),
        ({"target": "t", "proxy": {"num_tokens": 8}, "num_mixtures": 2}, "num_mixtures"),
        ({"target": "t", "proxy": {"num_tokens": 8}, "level": 0}, "level must be in"),
    ],
)
def test_bad_settings(section: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_dict(TransferConfig, section, "transfer")


def test_larger_proxy_merges_the_model_and_checks_the_overrides(tmp_path) -> None:
    path = tmp_path / "study.yaml"
    study = {
        "run_dir": "run",
        "proxy": {"vocab_size": 16, "model": {"num_layers": 2}, "num_tokens": 4096},
        "transfer": {"target": "t", "proxy": {"model": {"hidden_size": 128}, "num_tokens": 16384}},
    }
    path.write_text(yaml.safe_dump(study))
    large = stages.larger_proxy(load_study(path))
    assert large.model == {"num_layers": 2, "hidden_size": 128} and large.num_tokens == 16384
    study["transfer"]["proxy"] = {"num_tokens": -5}
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError, match=r"transfer\.proxy"):
        stages.larger_proxy(load_study(path))
