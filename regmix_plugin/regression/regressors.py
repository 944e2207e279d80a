"""Regressors from mixture weights to a metric, and the registry that names them.

Each regressor has a settings dataclass (a section of the ``fit`` config) and implements:

- ``tune(x, y, folds)``: choose its own settings (boosting rounds, blend weight) by k-fold
  cross-validation on the rows it is given, and return the out-of-fold predictions made with
  those settings (the cross-validated metrics are computed from them);
- ``fit(x, y)``: fit on every row with the chosen settings;
- ``predict(x)``; ``save(folder) -> dict`` (files + resolved settings for ``metadata.json``) and
  ``load(folder, meta)``.

Registered names (``fit.regressor``): ``lightgbm`` (the paper's settings), ``linear`` (the
paper's linear baseline; ridge when ``alpha > 0``), ``gp`` (a Gaussian process on log-weights) and
``lgbm_gp`` (ours: LightGBM and the GP blended with a weight chosen by cross-validation).
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from regmix_plugin.errors import ConfigError, DataError, require
from regmix_plugin.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------------------------------
# Settings (sections of the ``fit`` config)


@dataclass(kw_only=True, frozen=True)
class LightGBMSettings:
    """LightGBM; the defaults are the paper's (learning rate 0.01, up to 1000 rounds, seed 42)."""

    learning_rate: float = 0.01
    """Shrinkage per boosting round."""
    num_boost_round: int = 1000
    """Boosting rounds (the upper limit when ``select_rounds`` is on)."""
    select_rounds: bool = True
    """Choose the number of rounds (at most ``num_boost_round``) by k-fold cross-validation on
    the training rows; off: always ``num_boost_round`` rounds."""
    num_leaves: int = 31
    """Maximum leaves per tree (LightGBM's default)."""
    min_data_in_leaf: int | None = None
    """Minimum rows per leaf; unset: LightGBM's 20, lowered (with a warning) when there are too
    few rows for any split (LightGBM would predict a constant)."""
    seed: int = 42
    """LightGBM's seed."""
    num_threads: int = 1
    """Threads for training (the models are small; 1 keeps runs reproducible and polite)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any other LightGBM parameter, passed as is (for example ``{lambda_l2: 1.0}``)."""

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"lightgbm.learning_rate must be > 0, got {self.learning_rate}")
        if self.num_boost_round < 1:
            raise ValueError(f"lightgbm.num_boost_round must be >= 1, got {self.num_boost_round}")
        if self.num_leaves < 2:
            raise ValueError(f"lightgbm.num_leaves must be >= 2, got {self.num_leaves}")
        if self.min_data_in_leaf is not None and self.min_data_in_leaf < 1:
            raise ValueError(f"lightgbm.min_data_in_leaf must be >= 1, got {self.min_data_in_leaf}")
        if self.num_threads < 0:
            raise ValueError(f"lightgbm.num_threads must be >= 0, got {self.num_threads}")
        owned = {"learning_rate", "num_leaves", "min_data_in_leaf", "seed", "num_threads"}
        clash = sorted(owned & set(self.extra))
        if clash:
            raise ValueError(f"lightgbm.extra must not set {clash}; use the fields of that name")


@dataclass(kw_only=True, frozen=True)
class LinearSettings:
    """Linear regression on the mixture weights (the paper's linear baseline)."""

    alpha: float = 0.0
    """Ridge penalty; 0 is ordinary least squares."""
    log_features: bool = False
    """Regress on log(weight + log_epsilon) instead of the weights."""
    log_epsilon: float = 1e-3
    """Offset inside the log (weights are often exactly 0)."""

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"linear.alpha must be >= 0, got {self.alpha}")
        if not self.log_epsilon > 0:
            raise ValueError(f"linear.log_epsilon must be > 0, got {self.log_epsilon}")


@dataclass(kw_only=True, frozen=True)
class GPSettings:
    """Gaussian process on standardised log(weight + log_epsilon), Matérn 5/2 kernel with one
    length scale per domain plus a noise term, hyperparameters by maximum marginal likelihood."""

    log_epsilon: float = 1e-3
    """Offset inside the log (weights are often exactly 0)."""
    nu: float = 2.5
    """Matérn smoothness: 1.5, 2.5, or inf (squared exponential)."""
    num_restarts: int = 0
    """Extra random restarts of the hyperparameter search."""
    seed: int = 0
    """Seed of the restarts."""

    def __post_init__(self) -> None:
        if not self.log_epsilon > 0:
            raise ValueError(f"gp.log_epsilon must be > 0, got {self.log_epsilon}")
        if self.nu not in (1.5, 2.5, float("inf")):
            raise ValueError(f"gp.nu must be 1.5, 2.5 or .inf, got {self.nu}")
        if self.num_restarts < 0:
            raise ValueError(f"gp.num_restarts must be >= 0, got {self.num_restarts}")


@dataclass(kw_only=True, frozen=True)
class BlendSettings:
    """``lgbm_gp``: ``w * LightGBM + (1 - w) * GP``, w chosen by cross-validation."""

    weights: list[float] = field(default_factory=lambda: [i / 10 for i in range(11)])
    """Candidate values of w; the one with the lowest out-of-fold MSE is used."""

    def __post_init__(self) -> None:
        if not self.weights or any(not 0.0 <= w <= 1.0 for w in self.weights):
            raise ValueError(
                f"blend.weights must be a non-empty list in [0, 1], got {self.weights}"
            )


@dataclass(kw_only=True, frozen=True)
class RegressorSettings:
    """The settings of every regressor (only the chosen one's are used)."""

    lightgbm: LightGBMSettings = field(default_factory=LightGBMSettings)
    """Settings of ``lightgbm`` (and of the LightGBM part of ``lgbm_gp``)."""
    linear: LinearSettings = field(default_factory=LinearSettings)
    """Settings of ``linear``."""
    gp: GPSettings = field(default_factory=GPSettings)
    """Settings of ``gp`` (and of the GP part of ``lgbm_gp``)."""
    blend: BlendSettings = field(default_factory=BlendSettings)
    """Settings of ``lgbm_gp``'s blend."""


# ---------------------------------------------------------------------------------------------
# Protocol and registry


class Regressor(Protocol):
    """What ``fit``/``predict`` need from a regressor."""

    name: ClassVar[str]

    def tune(self, x: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray: ...
    def fit(self, x: np.ndarray, y: np.ndarray) -> None: ...
    def predict(self, x: np.ndarray) -> np.ndarray: ...
    def save(self, folder: Path) -> dict[str, Any]: ...
    def notes(self) -> list[str]: ...


def _out_of_fold(
    make: Callable[[], Regressor], x: np.ndarray, y: np.ndarray, folds: Folds
) -> np.ndarray:
    oof = np.full(len(y), np.nan)
    for train, valid in folds:
        model = make()
        model.fit(x[train], y[train])
        oof[valid] = model.predict(x[valid])
    return oof


class LightGBMRegressor:
    """Gradient-boosted trees (LightGBM); prediction through the compiled evaluator."""

    name: ClassVar[str] = "lightgbm"

    def __init__(self, settings: LightGBMSettings) -> None:
        self.settings = settings
        self.num_rounds = settings.num_boost_round
        self._min_data_in_leaf: int | None = None
        self._notes: list[str] = []
        self._text: str | None = None
        self._compiled: Any = None

    def notes(self) -> list[str]:
        """Warnings raised while fitting (also logged)."""
        return list(self._notes)

    def _resolve_min_data(self, num_rows: int) -> int:
        """``min_data_in_leaf`` for fits on ``num_rows`` rows (the smallest training fold)."""
        mdl = self.settings.min_data_in_leaf
        if mdl is None:
            # LightGBM's default of 20 rows per leaf allows no split below 40 rows: every
            # prediction would be the mean. Adapt, and say so.
            mdl = 20
            if num_rows < 2 * mdl:
                mdl = max(2, num_rows // 8)
                self._note(
                    f"a cross-validation fold of only {num_rows} rows: LightGBM's default "
                    f"min_data_in_leaf=20 allows no split (the model would predict a constant); "
                    f"using min_data_in_leaf={mdl} for the folds and the final model alike "
                    "(set fit.lightgbm.min_data_in_leaf to choose)"
                )
        elif num_rows < 2 * mdl:
            self._note(
                f"only {num_rows} rows with fit.lightgbm.min_data_in_leaf={mdl}: no tree can "
                "split, the model predicts a constant; lower min_data_in_leaf"
            )
        return mdl

    def _params(self, num_rows: int) -> dict[str, Any]:
        """LightGBM parameters. ``min_data_in_leaf`` is fixed by :meth:`tune` (from the
        smallest training fold) so that the final model is the one that was validated; a fit
        without tuning resolves it from ``num_rows``."""
        s = self.settings
        if self._min_data_in_leaf is None:
            self._min_data_in_leaf = self._resolve_min_data(num_rows)
        mdl = self._min_data_in_leaf
        return {
            "objective": "regression",
            "learning_rate": s.learning_rate,
            "num_leaves": s.num_leaves,
            "min_data_in_leaf": mdl,
            "min_data_in_bin": min(3, mdl),
            "seed": s.seed,
            "num_threads": s.num_threads,
            "verbosity": -1,
            "deterministic": True,
            "force_col_wise": True,
            **s.extra,
        }

    def _note(self, text: str) -> None:
        if text not in self._notes:
            self._notes.append(text)
            log.warning("%s", text)

    def tune(self, x: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray:
        """Pick the number of rounds by the mean validation MSE over the folds."""
        lgb = require("lightgbm")
        s = self.settings
        self._min_data_in_leaf = self._resolve_min_data(min(len(train) for train, _ in folds))
        curves = []
        boosters = []
        for train, valid in folds:
            params = self._params(len(train))
            evals: dict[str, Any] = {}
            booster = lgb.train(
                {**params, "metric": "l2"},
                lgb.Dataset(x[train], y[train], params={"verbosity": -1}),
                num_boost_round=s.num_boost_round,
                valid_sets=[lgb.Dataset(x[valid], y[valid], params={"verbosity": -1})],
                valid_names=["valid"],
                callbacks=[lgb.record_evaluation(evals)],
            )
            curves.append(np.asarray(evals["valid"]["l2"], dtype=np.float64))
            boosters.append(booster)
        if s.select_rounds:
            mean_curve = np.mean(np.stack(curves), axis=0)
            self.num_rounds = int(np.argmin(mean_curve)) + 1
        else:
            self.num_rounds = s.num_boost_round
        oof = np.full(len(y), np.nan)
        for booster, (_, valid) in zip(boosters, folds, strict=True):
            oof[valid] = booster.predict(x[valid], num_iteration=self.num_rounds)
        return oof

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Train ``num_rounds`` rounds on every row."""
        lgb = require("lightgbm")
        from regmix_plugin.regression.trees import CompiledTrees

        booster = lgb.train(
            self._params(len(y)),
            lgb.Dataset(x, y, params={"verbosity": -1}),
            num_boost_round=self.num_rounds,
        )
        self._text = booster.model_to_string()
        self._compiled = CompiledTrees.from_text(self._text)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions through the compiled evaluator (equal to ``Booster.predict``)."""
        if self._compiled is None:
            raise RuntimeError("fit or load the model first")
        return np.asarray(self._compiled.predict(x))

    @property
    def compiled(self) -> Any:
        """The compiled trees (``regmix_plugin.regression.trees.CompiledTrees``)."""
        return self._compiled

    def save(self, folder: Path) -> dict[str, Any]:
        """Write ``lightgbm.txt`` (LightGBM's own text format)."""
        if self._text is None:
            raise RuntimeError("fit the model first")
        atomic_write_text(folder / "lightgbm.txt", self._text)
        return {
            "files": ["lightgbm.txt"],
            "num_rounds": self.num_rounds,
            "min_data_in_leaf": self._min_data_in_leaf,
        }

    @classmethod
    def load(
        cls, folder: Path, meta: dict[str, Any], settings: LightGBMSettings
    ) -> LightGBMRegressor:
        """Read ``lightgbm.txt`` and compile it."""
        from regmix_plugin.regression.trees import CompiledTrees

        model = cls(settings)
        path = folder / "lightgbm.txt"
        if not path.is_file():
            raise DataError(f"model file {str(path)!r} is missing; refit with `regmix fit`")
        model._text = path.read_text(encoding="utf-8")
        model._compiled = CompiledTrees.from_text(model._text, str(path))
        model.num_rounds = int(meta.get("num_rounds", model._compiled.num_trees))
        return model


class LinearRegressor:
    """Least squares (ridge when ``alpha > 0``) on the weights or their logs."""

    name: ClassVar[str] = "linear"

    def __init__(self, settings: LinearSettings) -> None:
        self.settings = settings
        self.coef: np.ndarray | None = None
        self.intercept = 0.0

    def notes(self) -> list[str]:
        """Nothing to report."""
        return []

    def _features(self, x: np.ndarray) -> np.ndarray:
        s = self.settings
        return np.log(x + s.log_epsilon) if s.log_features else x

    def tune(self, x: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray:
        """No settings to choose; out-of-fold predictions."""
        return _out_of_fold(lambda: LinearRegressor(self.settings), x, y, folds)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Closed-form fit with an unpenalised intercept."""
        f = self._features(x)
        mu = f.mean(axis=0)
        ym = float(y.mean())
        fc = f - mu
        gram = fc.T @ fc + self.settings.alpha * np.eye(f.shape[1])
        coef, *_ = np.linalg.lstsq(gram, fc.T @ (y - ym), rcond=None)
        self.coef = coef
        self.intercept = ym - float(mu @ coef)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Linear predictions."""
        if self.coef is None:
            raise RuntimeError("fit or load the model first")
        return np.asarray(self._features(x) @ self.coef + self.intercept)

    def save(self, folder: Path) -> dict[str, Any]:
        """Write ``linear.json``."""
        if self.coef is None:
            raise RuntimeError("fit the model first")
        atomic_write_json(
            folder / "linear.json", {"coef": self.coef.tolist(), "intercept": self.intercept}
        )
        return {"files": ["linear.json"]}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], settings: LinearSettings) -> LinearRegressor:
        """Read ``linear.json``."""
        path = folder / "linear.json"
        if not path.is_file():
            raise DataError(f"model file {str(path)!r} is missing; refit with `regmix fit`")
        data = json.loads(path.read_text(encoding="utf-8"))
        model = cls(settings)
        model.coef = np.asarray(data["coef"], dtype=np.float64)
        model.intercept = float(data["intercept"])
        return model


def _matern_inplace(d2: np.ndarray, nu: float) -> np.ndarray:
    """The Matérn kernel of squared scaled distances, computed in place of ``d2``."""
    np.maximum(d2, 0.0, out=d2)
    if nu == float("inf"):
        d2 *= -0.5
        return np.exp(d2, out=d2)
    np.sqrt(d2, out=d2)
    d2 *= math.sqrt(3.0) if nu == 1.5 else math.sqrt(5.0)  # d2 now holds s = sqrt(3 or 5) r
    decay = np.exp(-d2)
    if nu == 1.5:
        d2 += 1.0  # 1 + s
    else:
        poly = d2 * d2
        poly *= 1.0 / 3.0
        poly += d2
        poly += 1.0  # 1 + s + s^2 / 3
        d2 = poly
    d2 *= decay
    return d2


class GPRegressor:
    """Gaussian process regression on standardised log-weights (fitted with scikit-learn,
    predicted with numpy from the saved hyperparameters and dual coefficients)."""

    name: ClassVar[str] = "gp"

    def __init__(self, settings: GPSettings) -> None:
        self.settings = settings
        self.state: dict[str, np.ndarray] = {}

    def notes(self) -> list[str]:
        """Nothing to report."""
        return []

    def _z(self, x: np.ndarray) -> np.ndarray:
        st = self.state
        return (np.log(x + self.settings.log_epsilon) - st["feature_mean"]) / st["feature_scale"]

    def tune(self, x: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray:
        """Hyperparameters come from the marginal likelihood; out-of-fold predictions."""
        return _out_of_fold(lambda: GPRegressor(self.settings), x, y, folds)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Maximum-likelihood hyperparameters, then the dual coefficients."""
        gpm = require("sklearn.gaussian_process", "scikit-learn")
        kernels = require("sklearn.gaussian_process.kernels", "scikit-learn")
        from sklearn.exceptions import ConvergenceWarning

        s = self.settings
        f = np.log(x + s.log_epsilon)
        mean = f.mean(axis=0)
        scale = f.std(axis=0)
        scale[scale == 0] = 1.0
        z = (f - mean) / scale
        y_mean, y_scale = float(y.mean()), float(y.std()) or 1.0
        kernel = kernels.ConstantKernel(1.0, (1e-3, 1e3)) * kernels.Matern(
            length_scale=np.full(x.shape[1], 3.0), length_scale_bounds=(1e-2, 1e3), nu=s.nu
        ) + kernels.WhiteKernel(1e-2, (1e-6, 1.0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp = gpm.GaussianProcessRegressor(
                kernel, normalize_y=False, n_restarts_optimizer=s.num_restarts, random_state=s.seed
            ).fit(z, (y - y_mean) / y_scale)
        k = gp.kernel_
        self.state = {
            "feature_mean": mean,
            "feature_scale": scale,
            "length_scale": np.atleast_1d(np.asarray(k.k1.k2.length_scale, dtype=np.float64)),
            "amplitude": np.asarray(float(k.k1.k1.constant_value)),
            "noise": np.asarray(float(k.k2.noise_level)),
            "train_z": z,
            "dual_coef": np.asarray(gp.alpha_, dtype=np.float64).ravel(),
            "y_mean": np.asarray(y_mean),
            "y_scale": np.asarray(y_scale),
        }

    def predict(self, x: np.ndarray, chunk: int = 8192, num_threads: int = 0) -> np.ndarray:
        """Posterior mean, in chunks of rows (distances through one matrix product), the chunks
        spread over ``num_threads`` threads (0: every core; numpy releases the GIL)."""
        if not self.state:
            raise RuntimeError("fit or load the model first")
        st = self.state
        ls = st["length_scale"]
        t = st["train_z"] / ls
        t2 = np.einsum("ij,ij->i", t, t)
        minus_2t = -2.0 * t.T
        alpha = st["dual_coef"] * float(st["amplitude"])
        out = np.empty(len(x))

        def one(b: int) -> None:
            q = self._z(x[b : b + chunk]) / ls
            d2 = q @ minus_2t
            d2 += np.einsum("ij,ij->i", q, q)[:, None]
            d2 += t2[None, :]
            out[b : b + chunk] = _matern_inplace(d2, self.settings.nu) @ alpha

        starts = range(0, len(x), chunk)
        workers = num_threads or os.cpu_count() or 1
        if workers == 1 or len(starts) < 2:
            for b in starts:
                one(b)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
                list(pool.map(one, starts))
        return out * float(st["y_scale"]) + float(st["y_mean"])

    def save(self, folder: Path) -> dict[str, Any]:
        """Write ``gp.npz`` (hyperparameters, training inputs, dual coefficients)."""
        import io

        if not self.state:
            raise RuntimeError("fit the model first")
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **self.state)
        from regmix_plugin.io import atomic_write_bytes

        atomic_write_bytes(folder / "gp.npz", buf.getvalue())
        return {
            "files": ["gp.npz"],
            "length_scale": self.state["length_scale"].tolist(),
            "amplitude": float(self.state["amplitude"]),
            "noise": float(self.state["noise"]),
        }

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], settings: GPSettings) -> GPRegressor:
        """Read ``gp.npz``."""
        path = folder / "gp.npz"
        if not path.is_file():
            raise DataError(f"model file {str(path)!r} is missing; refit with `regmix fit`")
        model = cls(settings)
        with np.load(path) as data:
            model.state = {k: np.asarray(data[k]) for k in data.files}
        return model


class BlendRegressor:
    """Ours: ``w * LightGBM + (1 - w) * GP``; LightGBM's rounds and w by cross-validation."""

    name: ClassVar[str] = "lgbm_gp"

    def __init__(self, settings: RegressorSettings) -> None:
        self.settings = settings
        self.trees = LightGBMRegressor(settings.lightgbm)
        self.gp = GPRegressor(settings.gp)
        self.weight = 0.5

    def notes(self) -> list[str]:
        """The LightGBM part's warnings."""
        return self.trees.notes()

    def tune(self, x: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray:
        """Tune both parts, then pick the blend weight with the lowest out-of-fold MSE."""
        a = self.trees.tune(x, y, folds)
        b = self.gp.tune(x, y, folds)
        errors = [
            float(np.mean((w * a + (1 - w) * b - y) ** 2)) for w in self.settings.blend.weights
        ]
        self.weight = float(self.settings.blend.weights[int(np.argmin(errors))])
        return self.weight * a + (1 - self.weight) * b

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit both parts on every row."""
        if self.weight > 0:
            self.trees.fit(x, y)
        if self.weight < 1:
            self.gp.fit(x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The blend (a part with weight 0 is skipped)."""
        out = np.zeros(len(x))
        if self.weight > 0:
            out += self.weight * self.trees.predict(x)
        if self.weight < 1:
            out += (1 - self.weight) * self.gp.predict(x)
        return out

    def save(self, folder: Path) -> dict[str, Any]:
        """Both parts' files, and the weight."""
        meta: dict[str, Any] = {"weight": self.weight, "files": []}
        if self.weight > 0:
            part = self.trees.save(folder)
            meta["lightgbm"] = part
            meta["files"] += part["files"]
        if self.weight < 1:
            part = self.gp.save(folder)
            meta["gp"] = part
            meta["files"] += part["files"]
        return meta

    @classmethod
    def load(
        cls, folder: Path, meta: dict[str, Any], settings: RegressorSettings
    ) -> BlendRegressor:
        """Read both parts."""
        model = cls(settings)
        model.weight = float(meta["weight"])
        if model.weight > 0:
            model.trees = LightGBMRegressor.load(folder, meta["lightgbm"], settings.lightgbm)
        if model.weight < 1:
            model.gp = GPRegressor.load(folder, meta.get("gp", {}), settings.gp)
        return model


#: Registered regressors: name -> one-line description.
REGRESSORS: dict[str, str] = {
    "lightgbm": "LightGBM, the paper's settings (rounds chosen by k-fold CV unless turned off)",
    "linear": "least squares on the weights (ridge with alpha > 0, log-weights optional)",
    "gp": "Gaussian process, Matérn 5/2 with one length scale per domain, on log-weights",
    "lgbm_gp": "ours: LightGBM + GP blended with a weight chosen by k-fold CV",
}


def make_regressor(name: str, settings: RegressorSettings) -> Regressor:
    """A fresh regressor by registered name."""
    if name == "lightgbm":
        return LightGBMRegressor(settings.lightgbm)
    if name == "linear":
        return LinearRegressor(settings.linear)
    if name == "gp":
        return GPRegressor(settings.gp)
    if name == "lgbm_gp":
        return BlendRegressor(settings)
    raise ConfigError(
        f"fit.regressor: unknown regressor {name!r}; choose one of {sorted(REGRESSORS)}"
    )


def load_regressor(
    name: str, folder: Path, meta: dict[str, Any], settings: RegressorSettings
) -> Regressor:
    """A saved regressor by registered name."""
    if name == "lightgbm":
        return LightGBMRegressor.load(folder, meta, settings.lightgbm)
    if name == "linear":
        return LinearRegressor.load(folder, meta, settings.linear)
    if name == "gp":
        return GPRegressor.load(folder, meta, settings.gp)
    if name == "lgbm_gp":
        return BlendRegressor.load(folder, meta, settings)
    raise DataError(f"{folder}: unknown regressor {name!r} in metadata.json; refit the model")
