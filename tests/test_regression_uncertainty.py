"""Ensembles, intervals, paired comparisons, seed noise: the pure helpers against values
computed here by other means, and the ensemble of real fitted models against independent
refits (numpy least squares, scikit-learn's GP)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from regmix_plugin.config import from_dict
from regmix_plugin.errors import DataError
from regmix_plugin.regression import FitConfig, fit, load_model
from regmix_plugin.regression.fitting import kfold
from regmix_plugin.regression.regressors import (
    SOR_JITTER,
    GPRegressor,
    GPSettings,
    gp_negative_log_likelihood,
)
from regmix_plugin.regression.uncertainty import (
    bootstrap_counts,
    calibrated_residual_sd,
    choice_intervals,
    estimate_noise,
    find_replicates,
    paired_spearman_difference,
    predictive_interval,
    probability_beats,
)
from regmix_plugin.tables import Table, read_table

DOMAINS = ["web", "code", "books"]


def _tables(num_rows: int = 48, seed: int = 3) -> tuple[Table, Table]:
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.ones(len(DOMAINS)), size=num_rows)
    y = 2.0 + 0.7 * x[:, 0] - 0.4 * x[:, 1] ** 2 + 0.03 * rng.standard_normal(num_rows)
    ids = [f"m{i:03d}" for i in range(num_rows)]
    return Table("mixture_id", ids, DOMAINS, x), Table("mixture_id", ids, ["loss"], y[:, None])


def _config(regressor: str, members: int = 8) -> FitConfig:
    return from_dict(
        FitConfig,
        {
            "regressor": regressor,
            "num_folds": 4,
            "num_members": members,
            "num_threads": 1,
            "settings": {"lightgbm": {"num_boost_round": 60}},
        },
        "fit",
    )


# --- pure helpers -----------------------------------------------------------------------------


def test_predictive_interval_is_normal_with_both_variances() -> None:
    members = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [6.0, 10.0]])
    mean, lo, hi = predictive_interval(members, residual_sd=0.5, level=0.8)
    z = statistics.NormalDist().inv_cdf(0.9)
    for col in range(2):
        values = list(members[:, col])
        sd = math.sqrt(statistics.variance(values) + 0.25)
        assert mean[col] == pytest.approx(statistics.fmean(values))
        assert lo[col] == pytest.approx(statistics.fmean(values) - z * sd)
        assert hi[col] == pytest.approx(statistics.fmean(values) + z * sd)
    with pytest.raises(ValueError, match="level"):
        predictive_interval(members, 0.1, level=1.0)
    with pytest.raises(ValueError, match="members"):
        predictive_interval(members[:1], 0.1)


def test_probability_beats_pairs_members_and_counts_ties_half() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([2.0, 2.0, 2.0, 2.0])
    # Member by member: 1<2 win, 2=2 tie, 3>2 loss, 4>2 loss -> (1 + 0.5) / 4.
    assert probability_beats(a, b) == pytest.approx(0.375)
    assert probability_beats(a, b, lower_is_better=False) == pytest.approx(0.625)
    # Paired, not marginal: every member prefers A although the marginal ranges overlap.
    a2, b2 = np.array([1.0, 5.0, 9.0]), np.array([1.5, 5.5, 9.5])
    assert probability_beats(a2, b2) == 1.0
    rows = probability_beats(np.stack([a, a2[[0, 1, 2, 2]]], 1), np.stack([b, b2[[0, 1, 2, 2]]], 1))
    np.testing.assert_allclose(rows, [0.375, 1.0])
    with pytest.raises(ValueError, match="same shape"):
        probability_beats(a, a2)


def test_choice_intervals_are_the_members_quantiles() -> None:
    chosen = np.column_stack([np.arange(11.0) / 10, 1 - np.arange(11.0) / 10])
    ci = choice_intervals(chosen, level=0.9)
    # 11 sorted values v_0..v_10, linear interpolation: q(p) = v at position 10 p.
    np.testing.assert_allclose(ci.lo, [0.05, 0.05])
    np.testing.assert_allclose(ci.median, [0.5, 0.5])
    np.testing.assert_allclose(ci.hi, [0.95, 0.95])


def test_bootstrap_counts_are_seeded_resamples() -> None:
    c = bootstrap_counts(50, 6, seed=1)
    assert c.shape == (6, 50) and (c.sum(axis=1) == 50).all() and (c >= 0).all()
    np.testing.assert_array_equal(c, bootstrap_counts(50, 6, seed=1))
    assert not np.array_equal(c, bootstrap_counts(50, 6, seed=2))
    assert len({tuple(r) for r in c}) == 6


def test_noise_is_pooled_within_group_sd_and_snr_over_distinct_mixtures() -> None:
    ids = ["a1", "a2", "a3", "b1", "b2", "c", "d", "e"]
    v = np.array([2.0, 2.2, 2.4, 3.0, 3.1, 2.5, 2.9, np.nan])
    est = estimate_noise(ids, v, [["a1", "a2", "a3"], ["b1", "b2"], ["e", "c"]])
    assert est is not None
    # Group a: mean 2.2, squares 0.04 + 0 + 0.04; group b: mean 3.05, 0.0025 * 2; dof 2 + 1.
    sigma = math.sqrt((0.08 + 0.005) / 3)
    assert est.sigma == pytest.approx(sigma) and est.dof == 3 and est.num_groups == 2
    distinct = [2.2, 3.05, 2.5, 2.9]  # group means (e is NaN, so group e/c is just c), then d
    assert est.num_mixtures == 4
    assert est.spread == pytest.approx(statistics.stdev(distinct))
    assert est.snr == pytest.approx(statistics.stdev(distinct) / sigma)
    assert estimate_noise(ids, v, [["c", "d"]]) is not None
    assert estimate_noise(ids, v, [["c"], ["e"]]) is None


def test_find_replicates_groups_identical_rows() -> None:
    w = np.array([[0.5, 0.5], [0.2, 0.8], [0.5, 0.5], [0.2, 0.8 + 1e-16], [0.5, 0.5]])
    assert find_replicates(["a", "b", "c", "d", "e"], w) == [["a", "c", "e"]]


# --- GP likelihood ----------------------------------------------------------------------------


@pytest.mark.parametrize("nu", [1.5, 2.5, math.inf])
def test_gp_likelihood_equals_scikit_learn_and_gradient_is_exact(nu: float) -> None:
    """150 rows: the compiled kernel matrix's mirrored blocks of 64 end inside the matrix."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    rng = np.random.default_rng(0)
    z = rng.standard_normal((150, 3))
    y = np.sin(z[:, 0]) + 0.1 * rng.standard_normal(150)
    theta = np.log([1.7, 0.8, 2.0, 5.0, 0.03])
    kernel = ConstantKernel(1.0) * Matern(np.ones(3), nu=nu) + WhiteKernel(1.0)
    gp = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None).fit(z, y)
    ref, ref_grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    nll, grad = gp_negative_log_likelihood(theta, z, y, nu)
    assert nll == pytest.approx(-ref, rel=1e-10)
    np.testing.assert_allclose(grad, -ref_grad, rtol=1e-7, atol=1e-9)


def test_gp_fit_reaches_scikit_learns_optimum() -> None:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    mixtures, results = _tables()
    x, y = mixtures.values, results.values[:, 0]
    ours = GPRegressor(GPSettings())
    ours.fit(x, y)
    st = ours.state
    z = st["train_z"]
    ys = (y - y.mean()) / y.std()
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        np.full(3, 3.0), (1e-2, 1e3), nu=2.5
    ) + WhiteKernel(1e-2, (1e-6, 1.0))
    ref = GaussianProcessRegressor(kernel).fit(z, ys)
    theta = np.log([float(st["amplitude"]), *st["length_scale"], float(st["noise"])])
    assert (
        -gp_negative_log_likelihood(theta, z, ys, 2.5)[0]
        >= ref.log_marginal_likelihood_value_ - 1e-3
    )


def test_gp_inputs_are_the_standardised_log_weights_in_any_block_and_thread_count() -> None:
    mixtures, results = _tables()
    gp = GPRegressor(GPSettings())
    gp.fit(mixtures.values, results.values[:, 0])
    st = gp.state
    x = np.random.default_rng(3).dirichlet(np.ones(3), size=1001)
    f = np.log(mixtures.values + GPSettings().log_epsilon)
    scale = f.std(axis=0)
    by_hand = (np.log(x + GPSettings().log_epsilon) - f.mean(axis=0)) / scale
    np.testing.assert_allclose(st["feature_scale"], scale, rtol=0)
    np.testing.assert_array_equal(gp._z(x), by_hand)
    scaled = by_hand / st["length_scale"]
    for chunk, threads in ((65536, 1), (100, 2), (7, 3)):
        np.testing.assert_array_equal(gp._scaled_inputs(x, threads, chunk), scaled)


# --- ensembles of fitted models ---------------------------------------------------------------


def test_linear_members_are_least_squares_on_the_resamples(tmp_path: Path) -> None:
    mixtures, results = _tables()
    fit(mixtures, results, None, _config("linear"), tmp_path / "m")
    model = load_model(tmp_path / "m")
    test = np.random.default_rng(5).dirichlet(np.ones(3), size=7)
    members = model.predict_members(test, "loss")
    counts = bootstrap_counts(48, 8, seed=42)  # FitConfig.seed
    for j in range(8):
        xr = np.repeat(mixtures.values, counts[j], axis=0)
        yr = np.repeat(results.values[:, 0], counts[j])
        design = np.column_stack([np.ones(len(xr)), xr[:, :-1]])  # weights sum to 1: drop one
        beta, *_ = np.linalg.lstsq(design, yr, rcond=None)
        expected = np.column_stack([np.ones(7), test[:, :-1]]) @ beta
        np.testing.assert_allclose(members[j], expected, atol=1e-8)
    mean, lo, hi = model.predict_interval(test, "loss", level=0.9)
    np.testing.assert_allclose(mean, members.mean(axis=0))
    assert (lo < mean).all() and (mean < hi).all()


def test_gp_members_equal_scikit_learn_on_the_resampled_rows(tmp_path: Path) -> None:
    """A row drawn c times is c observations: scikit-learn's GP on the repeated rows, with the
    saved hyperparameters, gives each member's prediction."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    mixtures, results = _tables()
    fit(mixtures, results, None, _config("gp", members=3), tmp_path / "m")
    model = load_model(tmp_path / "m")
    st = model.model().state  # type: ignore[attr-defined]
    test = np.random.default_rng(6).dirichlet(np.ones(3), size=9)
    members = model.predict_members(test)
    y = results.values[:, 0]
    ys = (y - y.mean()) / y.std()
    zt = (np.log(test + 1e-3) - st["feature_mean"]) / st["feature_scale"]
    kernel = ConstantKernel(float(st["amplitude"])) * Matern(
        st["length_scale"], nu=2.5
    ) + WhiteKernel(float(st["noise"]))
    for j, c in enumerate(bootstrap_counts(48, 3, seed=42)):
        ref = GaussianProcessRegressor(kernel, optimizer=None).fit(
            np.repeat(st["train_z"], c, axis=0), np.repeat(ys, c)
        )
        np.testing.assert_allclose(members[j], ref.predict(zt) * y.std() + y.mean(), atol=1e-7)


def test_blend_members_and_intervals(tmp_path: Path) -> None:
    mixtures, results = _tables()
    summary = fit(mixtures, results, None, _config("lgbm_gp"), tmp_path / "m")
    t = summary.targets[0]
    assert t.num_members == 8
    model = load_model(tmp_path / "m")
    members = model.predict_members(mixtures.values)
    assert members.shape == (8, 48)
    assert np.ptp(members, axis=0).min() > 0, "bootstrap members must differ"
    # The members' mean is close to the model of every row.
    assert np.abs(members.mean(0) - model.predict(mixtures.values)).max() < 0.05
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    ens = meta["targets"]["loss"]["ensemble"]
    oof = read_table(tmp_path / "m" / "loss" / "cv_predictions.csv")
    resid = oof.column("measured") - oof.column("predicted")
    assert ens["oof_rmse"] == pytest.approx(math.sqrt(np.mean(resid**2)))
    # The residual term: out-of-bag means/variances of the training rows, recomputed here
    # member by member, and the 90% interval covers exactly the smallest s reaching 90%.
    y = results.values[:, 0]
    counts = bootstrap_counts(48, 8, seed=42)
    r, v = [], []
    for i in range(48):
        out = [members[j, i] for j in range(8) if counts[j, i] == 0]
        if len(out) >= 2:
            r.append(y[i] - statistics.fmean(out))
            v.append(statistics.variance(out))
    z = statistics.NormalDist().inv_cdf(0.95)

    def coverage(s: float) -> float:
        return float(
            np.mean([abs(a) <= z * math.sqrt(b + s * s) for a, b in zip(r, v, strict=True)])
        )

    s = ens["residual_sd"]
    assert coverage(s * (1 + 1e-9)) >= 0.9 and (s == 0 or coverage(s * (1 - 1e-6)) < 0.9)
    mean, _lo, hi = model.predict_interval(mixtures.values[:5], level=0.9)
    half = z * np.sqrt(members[:, :5].var(axis=0, ddof=1) + s * s)
    np.testing.assert_allclose(hi - mean, half, rtol=1e-9)
    # Same seed, same members.
    fit(mixtures, results, None, _config("lgbm_gp"), tmp_path / "m2")
    np.testing.assert_array_equal(
        load_model(tmp_path / "m2").predict_members(mixtures.values), members
    )


def test_no_ensemble_is_a_clear_error(tmp_path: Path) -> None:
    mixtures, results = _tables()
    fit(mixtures, results, None, _config("linear", members=0), tmp_path / "m")
    with pytest.raises(DataError, match="without an ensemble"):
        load_model(tmp_path / "m").predict_interval(mixtures.values)


def test_fit_stores_seed_noise_of_replicates(tmp_path: Path) -> None:
    mixtures, results = _tables()
    x, y = mixtures.values.copy(), results.values[:, 0].copy()
    # Rows 1, 2 repeat row 0's mixture and rows 4, 5 row 3's, each with its own "seed".
    x[[1, 2]] = x[0]
    x[[4, 5]] = x[3]
    y[[0, 1, 2]] = [2.10, 2.14, 2.12]
    y[[3, 4, 5]] = [2.50, 2.46, 2.48]
    mix = Table("mixture_id", mixtures.ids, DOMAINS, x)
    res = Table("mixture_id", results.ids, ["loss"], y[:, None])
    groups = find_replicates(mix.ids, x)
    assert groups == [["m000", "m001", "m002"], ["m003", "m004", "m005"]]
    summary = fit(mix, res, None, _config("linear", members=0), tmp_path / "m", replicates=groups)
    sigma = math.sqrt((0.02**2 * 2 + 0.02**2 * 2) / 4)
    distinct = [2.12, 2.48, *y[6:]]
    noise = summary.targets[0].noise
    assert noise is not None and noise.sigma == pytest.approx(sigma)
    assert noise.snr == pytest.approx(statistics.stdev(distinct) / sigma)
    stored = load_model(tmp_path / "m").noise()
    assert stored is not None and stored.sigma == pytest.approx(sigma) and stored.dof == 4
    assert load_model(tmp_path / "m").noise() == noise
    with pytest.raises(DataError, match="neither"):
        fit(mix, res, None, _config("linear", 0), tmp_path / "x", replicates=[["m000", "zz"]])
    with pytest.raises(DataError, match="more than one place"):
        fit(
            mix,
            res,
            None,
            _config("linear", 0),
            tmp_path / "x",
            replicates=[["m000"], ["m000", "m001"]],
        )
    # Without replicates, nothing is estimated (today's behaviour).
    fit(mix, res, None, _config("linear", 0), tmp_path / "n")
    assert load_model(tmp_path / "n").noise() is None


def test_paired_spearman_difference() -> None:
    rng = np.random.default_rng(0)
    truth = rng.standard_normal(200)
    good = truth + 0.3 * rng.standard_normal(200)
    bad = truth + 1.5 * rng.standard_normal(200)
    d, lo, hi = paired_spearman_difference(good, bad, truth)
    from scipy.stats import spearmanr

    expected = spearmanr(good, truth).statistic - spearmanr(bad, truth).statistic
    assert d == pytest.approx(expected) and 0 < lo < d < hi
    # The same predictions on both sides: every resample's difference is exactly 0.
    assert paired_spearman_difference(good, good, truth) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="one length"):
        paired_spearman_difference(good, bad[:10], truth)


def test_calibrated_residual_sd_by_hand() -> None:
    residuals = np.array([0.0, 1.0, -2.0, 3.0])

    def z(level: float) -> float:
        return statistics.NormalDist().inv_cdf(0.5 + level / 2)

    # No member variance: row i is covered once s >= |r_i| / z; level 0.5 needs 2 of 4 rows.
    assert calibrated_residual_sd(residuals, np.zeros(4), 0.5) == pytest.approx(1.0 / z(0.5))
    assert calibrated_residual_sd(residuals, np.zeros(4), 0.75) == pytest.approx(2.0 / z(0.75))
    # Member variance covers part: s^2 >= (r / z)^2 - v, never below 0.
    v = np.array([0.0, 1.0, 4.0, 5.0])
    need = sorted(max(0.0, (r / z(0.99)) ** 2 - b) for r, b in zip(residuals, v, strict=True))
    assert calibrated_residual_sd(residuals, v, 0.99) == pytest.approx(math.sqrt(need[3]))
    assert calibrated_residual_sd(residuals, np.full(4, 100.0), 0.9) == 0.0


def test_replicates_share_a_fold() -> None:
    groups = np.array(["a", "a", "a", "b", "c", "c", "d", "e", "f", "g", "h", "h"])
    folds = kfold(12, 4, seed=3, groups=groups)
    seen = np.sort(np.concatenate([v for _, v in folds]))
    np.testing.assert_array_equal(seen, np.arange(12))
    for train, valid in folds:
        assert not set(groups[train]) & set(groups[valid])
        assert len(np.intersect1d(train, valid)) == 0 and len(train) + len(valid) == 12
    # Without groups: the plain split of today.
    assert all(
        np.array_equal(a[1], b[1])
        for a, b in zip(kfold(12, 4, 3), kfold(12, 4, 3, None), strict=True)
    )


def test_gp_above_max_rows_is_subset_of_regressors(tmp_path: Path) -> None:
    """Above gp.max_rows: the saved points are a subset of the rows, and the prediction is the
    subset-of-regressors mean K_*m (noise K_mm + K_mn K_nm)^-1 K_mn y (K_mm with the jitter),
    recomputed here with scikit-learn's kernel through an SVD-based least-squares solve."""
    from sklearn.gaussian_process.kernels import Matern

    mixtures, results = _tables(num_rows=80)
    cfg = from_dict(
        FitConfig,
        {"regressor": "gp", "num_folds": 4, "num_members": 0, "settings": {"gp": {"max_rows": 25}}},
        "fit",
    )
    summary = fit(mixtures, results, None, cfg, tmp_path / "m")
    assert any("subset of regressors" in n for n in summary.targets[0].notes)
    gp = load_model(tmp_path / "m").model()
    st = gp.state  # type: ignore[attr-defined]
    assert st["train_z"].shape == (25, 3)
    y = results.values[:, 0]
    f = np.log(mixtures.values + 1e-3)
    z = (f - f.mean(0)) / f.std(0)
    # The points are rows of z.
    assert all(np.isclose(z, p).all(axis=1).any() for p in st["train_z"])
    kern = Matern(st["length_scale"], nu=2.5)
    amp, noise = float(st["amplitude"]), float(st["noise"])
    kmn = amp * kern(st["train_z"], z)
    kmm = amp * kern(st["train_z"]) + SOR_JITTER * amp * np.eye(25)
    # The same mean as a ridge problem: min |y - K_nm a|^2 + noise a^T K_mm a, solved by
    # least squares on the stacked system [K_nm; sqrt(noise) R] a = [y; 0], K_mm = R^T R.
    r = np.linalg.cholesky(kmm).T
    stacked = np.vstack([kmn.T, math.sqrt(noise) * r])
    target = np.concatenate([(y - y.mean()) / y.std(), np.zeros(25)])
    coef = np.linalg.lstsq(stacked, target, rcond=None)[0]
    test = np.random.default_rng(2).dirichlet(np.ones(3), size=30)
    zt = (np.log(test + 1e-3) - f.mean(0)) / f.std(0)
    expected = amp * kern(zt, st["train_z"]) @ coef * y.std() + y.mean()
    np.testing.assert_allclose(gp.predict(test), expected, rtol=0, atol=1e-6)
    assert spearman_of(gp.predict(mixtures.values), y) > 0.8


def spearman_of(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)
