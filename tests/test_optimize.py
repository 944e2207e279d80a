"""``regmix optimize``: simulation, bounds, top-k mean, baselines, iterative search, YAML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from regmix_plugin import stages
from regmix_plugin.cli import main
from regmix_plugin.config import from_dict
from regmix_plugin.domains import load_catalogue
from regmix_plugin.errors import ConfigError, DataError, InfeasibleError
from regmix_plugin.layout import RunLayout
from regmix_plugin.mixtures import load_weights_yaml
from regmix_plugin.optimize import (
    OptimizeConfig,
    dirichlet,
    format_result,
    optimize,
    write_weights_yaml,
)
from regmix_plugin.regression import FitConfig, FittedModel, fit, load_model
from regmix_plugin.study import load_study
from regmix_plugin.tables import Table, write_table

DOMAINS = ["web", "code", "books", "math"]
TARGET = "val_loss/web"


def _tables(num_rows: int = 64, seed: int = 0) -> tuple[Table, Table]:
    """A loss that falls with more web and more books (books helps less): easy to check."""
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.full(len(DOMAINS), 0.7), size=num_rows)
    y = 3.0 - 1.0 * x[:, 0] - 0.4 * x[:, 2] + 0.01 * rng.standard_normal(num_rows)
    ids = [f"m{i:03d}" for i in range(num_rows)]
    return (
        Table("mixture_id", ids, list(DOMAINS), x),
        Table("mixture_id", ids, [TARGET], y[:, None]),
    )


@pytest.fixture
def linear_model(tmp_path: Path) -> FittedModel:
    mixtures, results = _tables()
    cfg = from_dict(FitConfig, {"regressor": "linear", "num_folds": 4}, "fit")
    fit(mixtures, results, None, cfg, tmp_path / "model")
    return load_model(tmp_path / "model")


def _cfg(**kw) -> OptimizeConfig:
    data = {"num_candidates": 20_000, "top_k": 50, "seed": 1, "search": {"num_rounds": 4}}
    data.update(kw)
    return from_dict(OptimizeConfig, data, "optimize")


PRIOR = np.array([0.4, 0.3, 0.2, 0.1])


def test_top_k_mean_under_bounds(linear_model: FittedModel) -> None:
    lower = np.array([0.0, 0.1, 0.0, 0.0])
    upper = np.array([0.5, 1.0, 1.0, 1.0])
    result = optimize(linear_model, PRIOR, DOMAINS, lower, upper, _cfg())
    w = np.array([result.weights[d] for d in DOMAINS])
    assert abs(w.sum() - 1) < 1e-12
    assert np.all(w >= lower - 1e-12) and np.all(w <= upper + 1e-12)
    # The model says web then books lower the loss: the choice leans on them, within the cap.
    assert w[0] > 0.35 and w[0] + w[2] > 0.6
    assert result.best_single.predicted <= result.top_k_predicted["max"]
    assert result.predicted < result.baselines["token_prior"]["predicted"]
    assert result.predicted < result.baselines["uniform"]["predicted"]
    assert result.baselines["uniform"]["within_bounds"] is True
    assert result.method == "simulate" and result.iterative is not None
    assert result.num_evaluations == 40_000 and result.num_drawn >= 40_000
    assert set(result.top_k_weight_std) == set(DOMAINS)


def test_iterative_search_and_auto(linear_model: FittedModel) -> None:
    auto = optimize(linear_model, PRIOR, DOMAINS, np.zeros(4), np.ones(4), _cfg(method="auto"))
    assert auto.iterative is not None
    rounds = auto.iterative["predicted_by_round"]
    assert len(rounds) == 4
    better = auto.iterative["predicted"] < auto.simulation.predicted
    assert auto.method == ("iterative" if better else "simulate")
    assert auto.predicted == min(auto.iterative["predicted"], auto.simulation.predicted)
    off = optimize(
        linear_model, PRIOR, DOMAINS, np.zeros(4), np.ones(4), _cfg(search={"enabled": False})
    )
    assert off.iterative is None and off.num_evaluations == 20_000
    with pytest.raises(ConfigError, match=r"search\.enabled is false"):
        optimize(
            linear_model,
            PRIOR,
            DOMAINS,
            np.zeros(4),
            np.ones(4),
            _cfg(method="iterative", search={"enabled": False}),
        )


def test_same_seed_same_answer_and_name_matching(linear_model: FittedModel) -> None:
    a = optimize(
        linear_model, PRIOR, DOMAINS, np.zeros(4), np.ones(4), _cfg(search={"enabled": False})
    )
    # The prior given in another order, matched by name.
    perm = [2, 0, 3, 1]
    b = optimize(
        linear_model,
        PRIOR[perm],
        [DOMAINS[i] for i in perm],
        np.zeros(4),
        np.ones(4),
        _cfg(search={"enabled": False}),
    )
    assert list(b.weights) == DOMAINS  # model domain order
    np.testing.assert_allclose(list(a.weights.values()), list(b.weights.values()))


def test_infeasible_and_mismatched_inputs(linear_model: FittedModel) -> None:
    with pytest.raises(InfeasibleError, match=r"sum to 0\.8 < 1"):
        optimize(linear_model, PRIOR, DOMAINS, np.zeros(4), np.full(4, 0.2), _cfg())
    with pytest.raises(InfeasibleError, match=r"min_weights sum to 1\.2"):
        optimize(linear_model, PRIOR, DOMAINS, np.full(4, 0.3), np.ones(4), _cfg())
    with pytest.raises(InfeasibleError, match="lower bound above upper"):
        optimize(
            linear_model, PRIOR, DOMAINS, np.array([0.6, 0, 0, 0]), np.array([0.5, 1, 1, 1]), _cfg()
        )
    # Feasible but far from the prior: rejection sampling gives up with a clear message.
    with pytest.raises(InfeasibleError, match="max_draw_factor"):
        optimize(
            linear_model,
            np.array([0.97, 0.01, 0.01, 0.01]),
            DOMAINS,
            np.zeros(4),
            np.array([0.01, 1, 1, 1]),
            _cfg(max_draw_factor=2, min_strength=50, max_strength=50),
        )
    with pytest.raises(DataError, match=r"missing \['math'\]"):
        optimize(
            linear_model, PRIOR[:3] / PRIOR[:3].sum(), DOMAINS[:3], np.zeros(3), np.ones(3), _cfg()
        )
    with pytest.raises(DataError, match=r"sums to 1\.1"):
        optimize(linear_model, PRIOR + 0.025, DOMAINS, np.zeros(4), np.ones(4), _cfg())
    with pytest.raises(ConfigError, match=r"optimize\.target 'nope'"):
        optimize(linear_model, PRIOR, DOMAINS, np.zeros(4), np.ones(4), _cfg(target="nope"))
    with pytest.raises(ConfigError, match="top_k"):
        _cfg(top_k=30_000)


def test_dirichlet_tiny_concentrations_never_degenerate() -> None:
    rng = np.random.default_rng(0)
    x = dirichlet(rng, np.full((10_000, 5), 1e-4))
    assert np.isfinite(x).all() and np.allclose(x.sum(axis=1), 1.0)


def test_weights_yaml_round_trip(linear_model: FittedModel, tmp_path: Path) -> None:
    result = optimize(linear_model, PRIOR, DOMAINS, np.zeros(4), np.ones(4), _cfg())
    write_weights_yaml(tmp_path / "weights.yaml", result)
    weights = load_weights_yaml(tmp_path / "weights.yaml")
    assert list(weights) == DOMAINS and abs(sum(weights.values()) - 1) < 1e-12
    doc = yaml.safe_load((tmp_path / "weights.yaml").read_text())
    assert doc["predicted"]["chosen"] == pytest.approx(result.predicted)
    assert {"token_prior", "uniform"} <= set(doc["baselines"])
    assert doc["settings"]["num_candidates"] == 20_000
    # The chosen weights are the simulation's here (no iterative search): written out twice,
    # with no YAML anchor or alias a reader of the file would have to resolve.
    assert (
        result.weights is result.simulation.weights or result.weights == result.simulation.weights
    )
    text = (tmp_path / "weights.yaml").read_text()
    assert "&id" not in text and "*id" not in text
    assert doc["simulation_weights"] == doc["weights"]


def _study(tmp_path: Path, caps: str = "") -> Path:
    text = f"""
domains:
  num_target_tokens: 1000000
  entries:
    - {{name: web, num_tokens: 400000}}
    - {{name: code, num_tokens: 300000}}
    - {{name: books, num_tokens: 200000{caps}}}
    - {{name: math, num_tokens: 100000}}
optimize:
  num_candidates: 20000
  top_k: 50
  max_weights: {{web: 0.45}}
  search: {{num_rounds: 4}}
"""
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_study_uses_catalogue_caps_and_observed_baseline(tmp_path: Path) -> None:
    mixtures, results = _tables()
    write_table(tmp_path / "mixtures.csv", mixtures)
    write_table(tmp_path / "results.csv", results)
    fit(
        mixtures,
        results,
        None,
        from_dict(FitConfig, {"regressor": "linear"}, "fit"),
        tmp_path / "model",
    )
    # books: 200k tokens, at most 1 epoch of a 1M-token run -> weight <= 0.2.
    study = load_study(_study(tmp_path, caps=", max_epochs: 1"))
    result = stages.optimize(study, RunLayout(tmp_path), load_catalogue(study.domains))
    assert result.weights["books"] <= 0.2 + 1e-12 and result.weights["web"] <= 0.45 + 1e-12
    assert result.upper["books"] == pytest.approx(0.2)
    best = result.baselines["best_observed"]
    assert best["observed"] == pytest.approx(results.column(TARGET).min())
    assert load_weights_yaml(tmp_path / "weights.yaml") == result.weights


def test_cli_with_study_and_with_prior_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixtures, results = _tables()
    fit(
        mixtures,
        results,
        None,
        from_dict(FitConfig, {"regressor": "linear"}, "fit"),
        tmp_path / "model",
    )
    study = _study(tmp_path)
    rc = main(
        [
            "optimize",
            str(study),
            "--model",
            str(tmp_path / "model"),
            "--out",
            str(tmp_path / "a.yaml"),
        ]
    )
    assert rc == 0 and "chosen (top-k mean)" in capsys.readouterr().out
    assert load_weights_yaml(tmp_path / "a.yaml")["web"] <= 0.45 + 1e-12
    (tmp_path / "prior.yaml").write_text("web: 0.4\ncode: 0.3\nbooks: 0.2\nmath: 0.1\n")
    rc = main(
        [
            "optimize",
            "--model",
            str(tmp_path / "model"),
            "--prior",
            str(tmp_path / "prior.yaml"),
            "--config",
            str(study),
            "--out",
            str(tmp_path / "b.yaml"),
        ]
    )
    assert rc == 0
    assert set(load_weights_yaml(tmp_path / "b.yaml")) == set(DOMAINS)
    (tmp_path / "bad.yaml").write_text("web: 0.4\ncode: 0.3\n")
    rc = main(
        [
            "optimize",
            "--model",
            str(tmp_path / "model"),
            "--prior",
            str(tmp_path / "bad.yaml"),
            "--out",
            str(tmp_path / "c.yaml"),
        ]
    )
    assert rc == 2 and "missing ['books', 'math']" in capsys.readouterr().err
    assert not (tmp_path / "c.yaml").exists()


def test_ensemble_gives_intervals_paired_probabilities_and_choice_spread(
    linear_model: FittedModel,
) -> None:
    """The linear fixture fits 32 bootstrap members by default: optimize reports, for the chosen
    mixture and each baseline, an interval, and P(chosen beats it) paired over the members."""
    assert linear_model.num_members(TARGET) >= 2
    result = optimize(linear_model, PRIOR, DOMAINS, np.zeros(4), np.ones(4), _cfg())
    u = result.uncertainty
    assert u is not None and u["level"] == 0.9
    chosen = np.array([result.weights[d] for d in DOMAINS])
    uniform = np.full(4, 0.25)
    members = linear_model.predict_members(np.stack([chosen, uniform, PRIOR]), TARGET)
    # Paired over members, computed here: the share of members that score chosen below uniform.
    expected = float(
        np.mean(members[:, 0] < members[:, 1]) + 0.5 * np.mean(members[:, 0] == members[:, 1])
    )
    assert u["probability_chosen_beats"]["uniform"] == pytest.approx(expected)
    assert u["probability_chosen_beats"]["uniform"] > 0.9  # more web and books: clearly better
    for p in u["predicted"].values():
        assert p["lo"] < p["mean"] < p["hi"]
    assert u["predicted"]["chosen"]["hi"] < u["predicted"]["token_prior"]["hi"]
    for d in DOMAINS:
        c = u["choice"][d]
        assert 0.0 <= c["lo"] <= c["median"] <= c["hi"] <= 1.0
    assert "P(chosen beats it)" in format_result(result)


def test_predict_writes_interval_columns(linear_model: FittedModel, tmp_path: Path) -> None:
    mixtures, _ = _tables(num_rows=5, seed=3)
    write_table(tmp_path / "cands.csv", mixtures)
    out = tmp_path / "pred.csv"
    args = ["predict", "--model", str(linear_model.path), "--mixtures", str(tmp_path / "cands.csv")]
    assert main([*args, "--out", str(out), "--interval", "0.9"]) == 0
    from regmix_plugin.tables import read_table

    table = read_table(out)
    assert table.columns == [TARGET, f"{TARGET}/lo", f"{TARGET}/hi"]
    lo, hi = table.column(f"{TARGET}/lo"), table.column(f"{TARGET}/hi")
    assert np.all(lo < hi)
    assert main([*args, "--out", str(tmp_path / "bad.csv"), "--interval", "1.5"]) == 2
    assert not (tmp_path / "bad.csv").exists()
