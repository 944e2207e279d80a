"""``regmix fit`` / ``regmix predict`` and their Python API on real LightGBM / scikit-learn."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from regmix_plugin.cli import main
from regmix_plugin.config import from_dict
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.regression import FitConfig, fit, load_model, predict_table
from regmix_plugin.regression.fitting import kfold, spearman
from regmix_plugin.tables import Table, read_table, write_table

PAPER = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "regmix_paper"
PILE_CC = "metric/the_pile_pile_cc_val_loss"
DOMAINS = ["web", "code", "books", "math"]


def _tables(num_rows: int = 60, seed: int = 0) -> tuple[Table, Table]:
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.full(len(DOMAINS), 0.6), size=num_rows)
    ids = [f"m{i:03d}" for i in range(num_rows)]
    loss_web = (
        3.0
        - 0.8 * np.log(x[:, 0] + 0.05) * -1
        + 0.3 * x[:, 1]
        + 0.02 * rng.standard_normal(num_rows)
    )
    loss_code = 2.5 - 0.5 * x[:, 1] + 0.2 * x[:, 2] * x[:, 3] + 0.02 * rng.standard_normal(num_rows)
    mixtures = Table("mixture_id", ids, list(DOMAINS), x)
    results = Table(
        "mixture_id", ids, ["val_loss/web", "val_loss/code"], np.column_stack([loss_web, loss_code])
    )
    return mixtures, results


def _config(regressor: str, **extra) -> FitConfig:
    data = {
        "regressor": regressor,
        "num_folds": 4,
        "settings": {"lightgbm": {"num_boost_round": 150}},
    }
    data.update(extra)
    return from_dict(FitConfig, data, "fit")


@pytest.mark.parametrize("regressor", ["linear", "lightgbm", "gp", "lgbm_gp"])
def test_fit_save_load_predict(tmp_path: Path, regressor: str) -> None:
    mixtures, results = _tables()
    summary = fit(mixtures, results, None, _config(regressor), tmp_path / "model")
    assert [t.target for t in summary.targets] == results.columns
    for t in summary.targets:
        assert t.num_rows == 60 and t.num_dropped == 0
        assert -1 <= t.cv.spearman_mean <= 1 and t.cv.spearman_std >= 0 and t.cv.mse_mean > 0
        assert t.cv.spearman_mean > 0.5, f"{regressor} should learn this smooth target"
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert meta["domains"] == DOMAINS and meta["regressor"] == regressor
    info = meta["targets"]["val_loss/web"]
    assert len(info["row_hash"]) == 64 and info["cv"]["num_folds"] == 4
    model = load_model(tmp_path / "model")
    x = mixtures.values
    for name in results.columns:
        pred = model.predict(x, name)
        assert pred.shape == (60,) and np.isfinite(pred).all()
        assert spearman(pred, results.column(name)) > 0.5
    # Columns are matched by name: a shuffled table gives the same predictions.
    shuffled = Table("mixture_id", mixtures.ids, DOMAINS[::-1], x[:, ::-1].copy())
    table = predict_table(model, shuffled)
    np.testing.assert_allclose(table.column("val_loss/web"), model.predict(x, "val_loss/web"))


def test_lightgbm_model_file_is_lightgbms_own(tmp_path: Path) -> None:
    mixtures, results = _tables()
    fit(mixtures, results, ["val_loss/code"], _config("lightgbm"), tmp_path / "m")
    folder = tmp_path / "m" / "val_loss__code"
    booster = lgb.Booster(model_file=str(folder / "lightgbm.txt"))
    model = load_model(tmp_path / "m")
    np.testing.assert_allclose(
        model.predict(mixtures.values), booster.predict(mixtures.values), rtol=0, atol=1e-9
    )
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    rounds = meta["targets"]["val_loss/code"]["chosen"]["num_rounds"]
    assert 1 <= rounds <= 150 and booster.num_trees() == rounds


def test_rounds_fixed_when_selection_is_off(tmp_path: Path) -> None:
    mixtures, results = _tables()
    cfg = from_dict(
        FitConfig,
        {
            "regressor": "lightgbm",
            "settings": {"lightgbm": {"num_boost_round": 40, "select_rounds": False}},
        },
        "fit",
    )
    fit(mixtures, results, ["val_loss/web"], cfg, tmp_path / "m")
    assert load_model(tmp_path / "m").model().compiled.num_trees == 40  # type: ignore[attr-defined]


def test_gp_prediction_matches_scikit_learn(tmp_path: Path) -> None:
    """Our numpy posterior mean equals scikit-learn's for the saved hyperparameters."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    mixtures, results = _tables()
    fit(mixtures, results, ["val_loss/web"], _config("gp"), tmp_path / "m")
    gp = load_model(tmp_path / "m").model()
    st = gp.state  # type: ignore[attr-defined]
    kernel = ConstantKernel(float(st["amplitude"])) * Matern(
        st["length_scale"], nu=2.5
    ) + WhiteKernel(float(st["noise"]))
    y = results.column("val_loss/web")
    ref = GaussianProcessRegressor(kernel, optimizer=None).fit(
        st["train_z"], (y - y.mean()) / y.std()
    )
    test = np.random.default_rng(9).dirichlet(np.ones(4), size=200)
    z = (np.log(test + 1e-3) - st["feature_mean"]) / st["feature_scale"]
    np.testing.assert_allclose(
        gp.predict(test), ref.predict(z) * y.std() + y.mean(), rtol=0, atol=1e-8
    )


def test_blend_weight_and_parts_recorded(tmp_path: Path) -> None:
    mixtures, results = _tables()
    summary = fit(mixtures, results, ["val_loss/web"], _config("lgbm_gp"), tmp_path / "m")
    chosen = summary.targets[0].chosen
    assert 0.0 <= chosen["weight"] <= 1.0
    model = load_model(tmp_path / "m").model()
    w = model.weight  # type: ignore[attr-defined]
    parts = np.zeros(60)
    if w > 0:
        parts += w * model.trees.predict(mixtures.values)  # type: ignore[attr-defined]
    if w < 1:
        parts += (1 - w) * model.gp.predict(mixtures.values)  # type: ignore[attr-defined]
    np.testing.assert_allclose(model.predict(mixtures.values), parts)


def test_paper_files_load_as_they_are(tmp_path: Path) -> None:
    """The paper's released CSVs (``index`` id column) fit and predict without changes."""
    mixtures = read_table(PAPER / "train_mixture_1m.csv")
    results = read_table(PAPER / "train_pile_loss_1m.csv")
    summary = fit(mixtures, results, [PILE_CC], _config("linear"), tmp_path / "m")
    assert summary.targets[0].num_rows == 512
    assert summary.targets[0].cv.spearman_mean > 0.8
    test = read_table(PAPER / "test_mixture_1m.csv")
    pred = predict_table(load_model(tmp_path / "m"), test)
    assert pred.id_column == "index" and pred.ids == test.ids
    truth = read_table(PAPER / "test_pile_loss_1m.csv").column(PILE_CC)
    assert spearman(pred.column(PILE_CC), truth) > 0.8


def test_cli_fit_and_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mixtures, results = _tables()
    write_table(tmp_path / "mixtures.csv", mixtures)
    write_table(tmp_path / "results.csv", results)
    (tmp_path / "study.yaml").write_text("fit:\n  regressor: linear\n  num_folds: 3\n")
    rc = main(
        [
            "fit",
            "--mixtures",
            str(tmp_path / "mixtures.csv"),
            "--results",
            str(tmp_path / "results.csv"),
            "--target",
            "val_loss/code",
            "--target",
            "val_loss/web",
            "--out",
            str(tmp_path / "model"),
            "--config",
            str(tmp_path / "study.yaml"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "val_loss/code" in out and "Spearman" in out and "3-fold" in out
    rc = main(
        [
            "predict",
            "--model",
            str(tmp_path / "model"),
            "--mixtures",
            str(tmp_path / "mixtures.csv"),
            "--out",
            str(tmp_path / "pred.csv"),
        ]
    )
    assert rc == 0
    header = (tmp_path / "pred.csv").read_text().splitlines()[0]
    assert header == "mixture_id,val_loss/code,val_loss/web"
    pred = read_table(tmp_path / "pred.csv")
    np.testing.assert_allclose(
        pred.column("val_loss/web"),
        load_model(tmp_path / "model").predict(mixtures.values, "val_loss/web"),
    )


def test_missing_results_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mixtures, results = _tables()
    values = results.values.copy()
    values[[3, 10, 11], 0] = np.nan
    results = Table(results.id_column, results.ids, results.columns, values)
    with caplog.at_level(logging.WARNING):
        summary = fit(mixtures, results, ["val_loss/web"], _config("linear"), tmp_path / "m")
    assert summary.targets[0].num_dropped == 3 and summary.targets[0].num_rows == 57
    assert "3 row(s) with a missing or NaN result dropped" in caplog.text
    # Results for only some mixtures: the rest are left out, and it is said.
    part = Table(results.id_column, results.ids[:40], results.columns, results.values[:40])
    with caplog.at_level(logging.WARNING):
        summary = fit(mixtures, part, ["val_loss/code"], _config("linear"), tmp_path / "m2")
    assert summary.targets[0].num_rows == 40
    assert "20 mixture(s) have no row in the results table" in caplog.text


def test_constant_target(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mixtures, results = _tables()
    values = results.values.copy()
    values[:, 1] = 2.0
    results = Table(results.id_column, results.ids, results.columns, values)
    with pytest.raises(DataError, match=r"constant \(2.0 on all 60 rows\)"):
        fit(mixtures, results, ["val_loss/code"], _config("linear"), tmp_path / "m")
    assert not (tmp_path / "m").exists()
    with caplog.at_level(logging.WARNING):
        summary = fit(mixtures, results, None, _config("linear"), tmp_path / "m")
    assert [t.target for t in summary.targets] == ["val_loss/web"]
    assert "val_loss/code" in summary.skipped and "skipped" in caplog.text


def test_too_few_rows(tmp_path: Path) -> None:
    mixtures, results = _tables(num_rows=7)
    with pytest.raises(DataError, match=r"7 usable row\(s\).*needs at least 8.*fit.num_folds"):
        fit(mixtures, results, ["val_loss/web"], _config("linear"), tmp_path / "m")


def test_small_data_lightgbm_adapts_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With LightGBM's defaults 32 rows give a constant; the fit lowers min_data_in_leaf."""
    mixtures, results = _tables(num_rows=32)
    with caplog.at_level(logging.WARNING):
        summary = fit(mixtures, results, ["val_loss/web"], _config("lightgbm"), tmp_path / "m")
    assert "min_data_in_leaf=20 allows no split" in caplog.text
    assert summary.targets[0].notes and summary.targets[0].chosen["min_data_in_leaf"] < 20
    pred = load_model(tmp_path / "m").predict(mixtures.values)
    assert np.ptp(pred) > 0, "the adapted model must not be constant"
    # Forcing the default keeps it, with a warning that the model is constant.
    cfg = from_dict(
        FitConfig,
        {"regressor": "lightgbm", "settings": {"lightgbm": {"min_data_in_leaf": 20}}},
        "fit",
    )
    with caplog.at_level(logging.WARNING):
        fit(mixtures, results, ["val_loss/web"], cfg, tmp_path / "m2")
    assert "predicts a constant" in caplog.text


def test_domain_mismatch_in_predict(tmp_path: Path) -> None:
    mixtures, results = _tables()
    fit(mixtures, results, ["val_loss/web"], _config("linear"), tmp_path / "m")
    model = load_model(tmp_path / "m")
    fewer = Table("mixture_id", mixtures.ids, DOMAINS[:3], mixtures.values[:, :3])
    with pytest.raises(DataError, match=r"missing domain\(s\) \['math'\]"):
        predict_table(model, fewer)
    more = Table(
        "mixture_id",
        mixtures.ids,
        [*DOMAINS, "wiki"],
        np.column_stack([mixtures.values, np.zeros(60)]),
    )
    with pytest.raises(DataError, match=r"not fitted on \['wiki'\]"):
        predict_table(model, more)
    with pytest.raises(DataError, match="4 columns"):
        model.predict(np.zeros((2, 5)))


def test_bad_inputs_are_clear(tmp_path: Path) -> None:
    mixtures, results = _tables()
    with pytest.raises(DataError, match="not in the results table"):
        fit(mixtures, results, ["val_loss/nope"], _config("linear"), tmp_path / "m")
    other = Table("mixture_id", [f"x{i}" for i in range(60)], results.columns, results.values)
    with pytest.raises(DataError, match="no id is in both tables"):
        fit(mixtures, other, None, _config("linear"), tmp_path / "m")
    values = mixtures.values.copy()
    values[5, 2] = np.nan
    with pytest.raises(DataError, match="non-finite weight"):
        fit(
            Table("mixture_id", mixtures.ids, DOMAINS, values),
            results,
            None,
            _config("linear"),
            tmp_path / "m",
        )
    with pytest.raises(ConfigError, match="not registered"):
        from_dict(FitConfig, {"regressor": "xgboost"}, "fit")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(FitConfig, {"settings": {"lightgbm": {"leaves": 3}}}, "fit")
    with pytest.raises(DataError, match=r"no metadata\.json"):
        load_model(tmp_path)


def test_folds_partition_the_rows() -> None:
    folds = kfold(23, 5, seed=1)
    seen = np.concatenate([v for _, v in folds])
    assert sorted(seen.tolist()) == list(range(23))
    for train, valid in folds:
        assert not set(train) & set(valid) and len(train) + len(valid) == 23
    assert [v.tolist() for _, v in kfold(23, 5, seed=1)] == [v.tolist() for _, v in folds]


def _tree_leaf_counts(text: str) -> list[int]:
    """Leaves per tree, read from LightGBM's text format independently of our parser."""
    return [
        int(line.split("=", 1)[1]) for line in text.splitlines() if line.startswith("num_leaves=")
    ]


def _param(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"[{name}: "):
            return line[len(name) + 3 : -1]
    raise AssertionError(f"{name} not in the model file")


@pytest.mark.parametrize("regressor", ["lightgbm", "lgbm_gp"])
def test_shipped_trees_are_the_validated_ones_at_40_rows(tmp_path: Path, regressor: str) -> None:
    """40 rows, 5 folds: CV trains on 32 rows per fold; the final model must use the same
    min_data_in_leaf (not LightGBM's 20, which on 40 rows allows no split: median stumps)."""
    mixtures, results = _tables(num_rows=40)
    cfg = from_dict(
        FitConfig,
        {
            "regressor": regressor,
            "num_folds": 5,
            "settings": {"lightgbm": {"num_boost_round": 200}, "blend": {"weights": [0.5]}},
        },
        "fit",
    )
    summary = fit(mixtures, results, ["val_loss/web"], cfg, tmp_path / "m")
    chosen = summary.targets[0].chosen
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    folder = tmp_path / "m" / meta["targets"]["val_loss/web"]["folder"]
    text = (folder / "lightgbm.txt").read_text()
    # The training folds hold 32 rows: the adapted minimum is 32 // 8 = 4 rows per leaf.
    recorded = (
        chosen["lightgbm"]["min_data_in_leaf"]
        if regressor == "lgbm_gp"
        else chosen["min_data_in_leaf"]
    )
    assert recorded == 4
    assert _param(text, "min_data_in_leaf") == "4", "the shipped trees used another setting"
    leaves = _tree_leaf_counts(text)
    assert leaves and max(leaves) > 1, "the shipped trees are stumps"
