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

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
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
    """Seed of the restarts and of the row subset (``max_rows``)."""
    num_threads: int = 1
    """BLAS threads of the GP's linear algebra during the fit (1 avoids oversubscribing a
    shared machine, where OpenBLAS's waiting threads slowed the fit 10x; 0: numpy's
    default)."""
    max_rows: int = 1024
    """Rows of the exact GP. With more training rows, the hyperparameters are fitted on a
    seeded random subset of this many rows, which then serve as the inducing points of a
    subset-of-regressors posterior mean over every row (fit cost linear in the rows, scoring
    cost that of ``max_rows`` rows)."""

    def __post_init__(self) -> None:
        if not self.log_epsilon > 0:
            raise ValueError(f"gp.log_epsilon must be > 0, got {self.log_epsilon}")
        if self.num_threads < 0:
            raise ValueError(f"gp.num_threads must be >= 0, got {self.num_threads}")
        if self.max_rows < 2:
            raise ValueError(f"gp.max_rows must be >= 2, got {self.max_rows}")
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
    def fit_members(
        self, x: np.ndarray, y: np.ndarray, counts: np.ndarray, num_threads: int = 0
    ) -> None: ...
    def predict_members(self, x: np.ndarray) -> np.ndarray: ...
    def save(self, folder: Path) -> dict[str, Any]: ...
    def notes(self) -> list[str]: ...


@contextlib.contextmanager
def _blas_threads(num_threads: int) -> Iterator[None]:
    """Limit BLAS/LAPACK threads inside the block (0: leave numpy's default)."""
    if num_threads == 0:
        yield
        return
    threadpoolctl = require("threadpoolctl", "scikit-learn")
    # threadpoolctl limits the BLAS libraries loaded when the block starts. SciPy ships its own
    # OpenBLAS, loaded by the first ``import scipy.linalg``: imported lazily inside the block, it
    # escaped the limit, and the first GP fit of a process then ran LAPACK on every core, whose
    # last bits depend on the thread count (`regmix fit` alone and within `regmix run` differed).
    import scipy.linalg  # noqa: F401

    with threadpoolctl.threadpool_limits(num_threads, user_api="blas"):
        yield


def _resample(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a bootstrap resample (row i repeated ``counts[i]`` times)."""
    return np.repeat(x, counts, axis=0), np.repeat(y, counts)


def _no_members(where: str) -> RuntimeError:
    return RuntimeError(f"{where}: this model has no ensemble members (fit.num_members 0)")


def _train_booster(params: dict[str, Any], data: Any, num_rounds: int, **kwargs: Any) -> Any:
    """``lightgbm.train`` keeping its training booster. The default (``keep_training_booster
    =False``) ends by passing the model through its text form and back to free the training
    data: at 1,000 trees a fifth of a member's fit (the text is built twice, see
    :func:`model_text`), for the same trees. Our boosters are dropped as soon as their text is
    taken, so the training data goes with them."""
    lgb = require("lightgbm")
    return lgb.train(params, data, num_rounds, keep_training_booster=True, **kwargs)


def model_text(booster: Any) -> str:
    """``booster.model_to_string()``, the same text at half the cost: LightGBM's Python wrapper
    (4.x) serialises a model larger than its first 1 MiB buffer twice, ``save_model`` once."""
    with tempfile.TemporaryDirectory(prefix="regmix-lightgbm-") as tmp:
        path = Path(tmp) / "model.txt"
        booster.save_model(str(path))
        return path.read_text(encoding="utf-8")


def _map_threads(fn: Callable[[int], Any], count: int, num_threads: int) -> list[Any]:
    """``[fn(i) for i in range(count)]`` on ``num_threads`` threads (0: every core)."""
    workers = min(count, num_threads or os.cpu_count() or 1)
    if workers <= 1:
        return [fn(i) for i in range(count)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, range(count)))


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
    #: Cross-validation folds trained at the same time (0: one per core). The result does not
    #: depend on it.
    fold_threads: ClassVar[int] = 0

    def __init__(self, settings: LightGBMSettings) -> None:
        self.settings = settings
        self.num_rounds = settings.num_boost_round
        self._min_data_in_leaf: int | None = None
        self._notes: list[str] = []
        self._text: str | None = None
        self._compiled: Any = None
        self._member_texts: list[str] = []
        self._members: list[Any] = []

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
        fold_list = list(folds)
        params = [self._params(len(train)) for train, _ in fold_list]

        def one(i: int) -> tuple[np.ndarray, Any]:
            train, valid = fold_list[i]
            evals: dict[str, Any] = {}
            booster = _train_booster(
                {**params[i], "metric": "l2"},
                lgb.Dataset(x[train], y[train], params={"verbosity": -1}),
                s.num_boost_round,
                valid_sets=[lgb.Dataset(x[valid], y[valid], params={"verbosity": -1})],
                valid_names=["valid"],
                callbacks=[lgb.record_evaluation(evals)],
            )
            return np.asarray(evals["valid"]["l2"], dtype=np.float64), booster

        # The folds train at the same time (each booster is single-threaded and seeded, so
        # the curves do not depend on the order or the thread).
        trained = _map_threads(one, len(fold_list), self.fold_threads)
        curves = [c for c, _ in trained]
        boosters = [b for _, b in trained]
        if s.select_rounds:
            mean_curve = np.mean(np.stack(curves), axis=0)
            self.num_rounds = int(np.argmin(mean_curve)) + 1
        else:
            self.num_rounds = s.num_boost_round
        oof = np.full(len(y), np.nan)
        for booster, (_, valid) in zip(boosters, fold_list, strict=True):
            oof[valid] = booster.predict(x[valid], num_iteration=self.num_rounds)
        return oof

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Train ``num_rounds`` rounds on every row."""
        lgb = require("lightgbm")
        from regmix_plugin.regression.trees import CompiledTrees

        booster = _train_booster(
            self._params(len(y)), lgb.Dataset(x, y, params={"verbosity": -1}), self.num_rounds
        )
        self._text = model_text(booster)
        self._compiled = CompiledTrees.from_text(self._text)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions through the compiled evaluator (equal to ``Booster.predict``)."""
        if self._compiled is None:
            raise RuntimeError("fit or load the model first")
        return np.asarray(self._compiled.predict(x))

    def fit_members(
        self, x: np.ndarray, y: np.ndarray, counts: np.ndarray, num_threads: int = 0
    ) -> None:
        """One model per bootstrap resample (a row of ``counts``), with the settings chosen for
        the model of every row (rounds, ``min_data_in_leaf``); ``num_threads`` members at a
        time (0: one per core), each on LightGBM's ``num_threads``."""
        lgb = require("lightgbm")
        from regmix_plugin.regression.trees import CompiledTrees

        params = self._params(len(y))

        def one(j: int) -> tuple[str, Any]:
            xr, yr = _resample(x, y, counts[j])
            booster = _train_booster(
                params, lgb.Dataset(xr, yr, params={"verbosity": -1}), self.num_rounds
            )
            text = model_text(booster)
            # Compiled here, while the other threads train (LightGBM releases the GIL).
            return text, CompiledTrees.from_text(text)

        done = _map_threads(one, len(counts), num_threads)
        self._member_texts = [t for t, _ in done]
        self._members = [c for _, c in done]

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """Each member's predictions: ``[members, rows]``."""
        if not self._members:
            raise _no_members("lightgbm")
        return np.stack([np.asarray(m.predict(x)) for m in self._members])

    @property
    def compiled(self) -> Any:
        """The compiled trees (``regmix_plugin.regression.trees.CompiledTrees``)."""
        return self._compiled

    def save(self, folder: Path) -> dict[str, Any]:
        """Write ``lightgbm.txt`` (LightGBM's own text format)."""
        if self._text is None:
            raise RuntimeError("fit the model first")
        atomic_write_text(folder / "lightgbm.txt", self._text)
        files = ["lightgbm.txt"]
        for j, text in enumerate(self._member_texts):
            name = f"members/lightgbm_{j:03d}.txt"
            (folder / "members").mkdir(exist_ok=True)
            atomic_write_text(folder / name, text)
            files.append(name)
        return {
            "files": files,
            "num_rounds": self.num_rounds,
            "min_data_in_leaf": self._min_data_in_leaf,
            "num_members": len(self._member_texts),
        }

    @classmethod
    def load(
        cls, folder: Path, meta: dict[str, Any], settings: LightGBMSettings
    ) -> LightGBMRegressor:
        """Read ``lightgbm.txt`` and compile it."""

        model = cls(settings)
        model.num_rounds = int(meta.get("num_rounds", settings.num_boost_round))
        model._text, model._compiled = _read_trees(folder / "lightgbm.txt", model.num_rounds)
        for j in range(int(meta.get("num_members", 0))):
            text, compiled = _read_trees(folder / f"members/lightgbm_{j:03d}.txt", model.num_rounds)
            model._member_texts.append(text)
            model._members.append(compiled)
        return model


def _read_trees(path: Path, num_trees: int) -> tuple[str, Any]:
    """Read and compile a LightGBM model file that must hold ``num_trees`` trees."""
    from regmix_plugin.regression.trees import CompiledTrees

    if not path.is_file():
        raise DataError(f"model file {str(path)!r} is missing; refit with `regmix fit`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"model file {str(path)!r} is damaged ({exc}); refit with `regmix fit`"
        ) from exc
    try:
        compiled = CompiledTrees.from_text(text, str(path))
    except DataError as exc:
        raise DataError(f"{exc}; the model file is damaged: refit with `regmix fit`") from exc
    if compiled.num_trees != num_trees:
        raise DataError(
            f"model file {str(path)!r} holds {compiled.num_trees} trees, metadata.json records "
            f"{num_trees}: the file is damaged or cut; refit with `regmix fit`"
        )
    return text, compiled


class LinearRegressor:
    """Least squares (ridge when ``alpha > 0``) on the weights or their logs."""

    name: ClassVar[str] = "linear"

    def __init__(self, settings: LinearSettings) -> None:
        self.settings = settings
        self.coef: np.ndarray | None = None
        self.intercept = 0.0
        self.member_coef: np.ndarray | None = None
        self.member_intercept: np.ndarray | None = None

    def notes(self) -> list[str]:
        """Nothing to report."""
        return []

    def _features(self, x: np.ndarray) -> np.ndarray:
        s = self.settings
        return np.log(x + s.log_epsilon) if s.log_features else x

    def tune(self, x: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray:
        """No settings to choose; out-of-fold predictions."""
        return _out_of_fold(lambda: LinearRegressor(self.settings), x, y, folds)

    def _solve(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        f = self._features(x)
        mu = f.mean(axis=0)
        ym = float(y.mean())
        fc = f - mu
        gram = fc.T @ fc + self.settings.alpha * np.eye(f.shape[1])
        coef, *_ = np.linalg.lstsq(gram, fc.T @ (y - ym), rcond=None)
        return coef, ym - float(mu @ coef)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Closed-form fit with an unpenalised intercept."""
        self.coef, self.intercept = self._solve(x, y)

    def fit_members(
        self, x: np.ndarray, y: np.ndarray, counts: np.ndarray, num_threads: int = 0
    ) -> None:
        """One fit per bootstrap resample."""
        fits = [self._solve(*_resample(x, y, c)) for c in counts]
        self.member_coef = np.stack([f[0] for f in fits])
        self.member_intercept = np.asarray([f[1] for f in fits])

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """Each member's predictions: ``[members, rows]``."""
        if self.member_coef is None or self.member_intercept is None:
            raise _no_members("linear")
        return np.asarray(self.member_coef @ self._features(x).T + self.member_intercept[:, None])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Linear predictions."""
        if self.coef is None:
            raise RuntimeError("fit or load the model first")
        return np.asarray(self._features(x) @ self.coef + self.intercept)

    def save(self, folder: Path) -> dict[str, Any]:
        """Write ``linear.json``."""
        if self.coef is None:
            raise RuntimeError("fit the model first")
        data: dict[str, Any] = {"coef": self.coef.tolist(), "intercept": self.intercept}
        if self.member_coef is not None and self.member_intercept is not None:
            data["member_coef"] = self.member_coef.tolist()
            data["member_intercept"] = self.member_intercept.tolist()
        atomic_write_json(folder / "linear.json", data)
        return {"files": ["linear.json"], "num_members": len(data.get("member_coef", []))}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], settings: LinearSettings) -> LinearRegressor:
        """Read ``linear.json``."""
        path = folder / "linear.json"
        if not path.is_file():
            raise DataError(f"model file {str(path)!r} is missing; refit with `regmix fit`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            model = cls(settings)
            model.coef = np.asarray(data["coef"], dtype=np.float64)
            model.intercept = float(data["intercept"])
            if "member_coef" in data:
                model.member_coef = np.asarray(data["member_coef"], dtype=np.float64)
                model.member_intercept = np.asarray(data["member_intercept"], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"model file {str(path)!r} is damaged ({exc}); refit with `regmix fit`"
            ) from exc
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


#: The compiled kernels' numbers (``_trees``): Matérn 3/2, Matérn 5/2, squared exponential.
_KERNEL_IDS = {1.5: 0, 2.5: 1, float("inf"): 2}
#: Bounds of the GP hyperparameters (natural scale): amplitude, length scales, noise.
_GP_BOUNDS = ((1e-3, 1e3), (1e-2, 1e3), (1e-6, 1.0))
#: Relative jitter on the inducing points' kernel matrix (subset of regressors).
SOR_JITTER = 1e-8
#: Starting point of the hyperparameter search: amplitude, length scale, noise.
_GP_START = (1.0, 3.0, 1e-2)


def _sq_dists(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    d2 = -2.0 * (u @ v.T)
    d2 += np.einsum("ij,ij->i", u, u)[:, None]
    d2 += np.einsum("ij,ij->i", v, v)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def gp_negative_log_likelihood(
    theta: np.ndarray, z: np.ndarray, y: np.ndarray, nu: float
) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood of a GP (amplitude x Matérn with one length scale per
    column, plus white noise) and its gradient, at ``theta = log([amplitude, *length_scales,
    noise])``. The kernel matrix and the gradient's n x n sums are compiled
    (``regmix_plugin._trees``); the Cholesky factorisation and the inverse are LAPACK's."""
    import importlib

    from scipy.linalg import LinAlgError, cho_solve, cholesky
    from scipy.linalg.lapack import dpotri

    _trees = importlib.import_module("regmix_plugin._trees")
    n, d = z.shape
    amp, ls, noise = math.exp(theta[0]), np.exp(theta[1 : d + 1]), math.exp(theta[d + 1])
    u = np.ascontiguousarray(z / ls)
    k, factor = _trees.gp_kernel_matrix(u, _KERNEL_IDS[nu], amp, noise)
    try:
        low = cholesky(k, lower=True, check_finite=False)
    except LinAlgError:
        return 1e25, np.zeros_like(theta)
    alpha = np.ascontiguousarray(cho_solve((low, True), y, check_finite=False))
    nll = (
        0.5 * float(y @ alpha) + float(np.log(np.diag(low)).sum()) + 0.5 * n * math.log(2 * math.pi)
    )
    inv, info = dpotri(low, lower=1, overwrite_c=1)
    if info != 0:
        return 1e25, np.zeros_like(theta)
    # LAPACK fills the lower triangle in column-major order: the upper one of the transpose.
    upper = not inv.flags.c_contiguous
    grad = _trees.gp_nll_gradient(
        k, factor, np.ascontiguousarray(inv.T if upper else inv), upper, alpha, u, amp, noise
    )
    return nll, -np.asarray(grad)


def gp_hyperparameters(
    z: np.ndarray,
    y: np.ndarray,
    nu: float,
    start: np.ndarray | None = None,
    num_restarts: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Maximum marginal likelihood hyperparameters (log scale), by L-BFGS-B within bounds from
    ``start`` (default: amplitude 1, length scales 3, noise 0.01) and ``num_restarts`` seeded
    random starts."""
    from scipy.optimize import minimize

    d = z.shape[1]
    (a_lo, a_hi), (l_lo, l_hi), (n_lo, n_hi) = _GP_BOUNDS
    bounds = np.log([(a_lo, a_hi)] + [(l_lo, l_hi)] * d + [(n_lo, n_hi)])
    if start is None:
        a0, l0, n0 = _GP_START
        start = np.log([a0] + [l0] * d + [n0])
    starts = [np.clip(start, bounds[:, 0], bounds[:, 1])]
    rng = np.random.default_rng(seed)
    starts += [rng.uniform(bounds[:, 0], bounds[:, 1]) for _ in range(num_restarts)]
    best: tuple[float, np.ndarray] | None = None
    for s0 in starts:
        res = minimize(
            gp_negative_log_likelihood,
            s0,
            args=(z, y, nu),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
        )
        if best is None or float(res.fun) < best[0]:
            best = (float(res.fun), np.asarray(res.x, dtype=np.float64))
    assert best is not None
    return best[1]


def gp_kernel(u: np.ndarray, v: np.ndarray, nu: float) -> np.ndarray:
    """Unit-amplitude Matérn kernel between rows of already length-scaled inputs."""
    return _matern_inplace(_sq_dists(u, v), nu)


def gp_dual_coefficients(
    u: np.ndarray,
    y: np.ndarray,
    amplitude: float,
    noise: float,
    nu: float,
    counts: np.ndarray | None = None,
    inducing: np.ndarray | None = None,
) -> np.ndarray:
    """Dual coefficients ``a`` of the posterior mean ``amplitude * k(x, points) @ a``.

    Exact GP on the rows ``u`` (length-scaled) when ``inducing`` is None; otherwise the
    subset-of-regressors mean with the ``inducing`` rows as points. ``counts`` weighs each row
    (a bootstrap resample: a row drawn c times is one observation with noise / c; 0 leaves it
    out)."""
    from scipy.linalg import cho_factor, cho_solve

    c = np.ones(len(y)) if counts is None else np.asarray(counts, dtype=np.float64)
    if inducing is None:
        keep = c > 0
        coef = np.zeros(len(y))
        k = amplitude * gp_kernel(u[keep], u[keep], nu)
        k.flat[:: keep.sum() + 1] += noise / c[keep]
        coef[keep] = cho_solve(cho_factor(k, lower=True, check_finite=False), y[keep])
        return coef
    # Subset of regressors, in the stable form: with K_mm + jitter = L L^T and V = L^-1 K_mn,
    # the mean's coefficients are L^-T (noise I + V C V^T)^-1 V C y (C: the counts).
    from scipy.linalg import solve_triangular

    kmn = amplitude * gp_kernel(inducing, u, nu)
    kmm = amplitude * gp_kernel(inducing, inducing, nu)
    kmm.flat[:: len(inducing) + 1] += SOR_JITTER * amplitude
    low = np.linalg.cholesky(kmm)
    v = solve_triangular(low, kmn, lower=True, check_finite=False)
    a = (v * c[None, :]) @ v.T
    a.flat[:: len(inducing) + 1] += noise
    b = cho_solve(cho_factor(a, lower=True, check_finite=False), v @ (c * y))
    return np.asarray(solve_triangular(low.T, b, lower=False, check_finite=False))


class GPRegressor:
    """Gaussian process regression on standardised log-weights: hyperparameters by maximum
    marginal likelihood (analytic gradient, L-BFGS-B), posterior mean in numpy from the saved
    hyperparameters and dual coefficients."""

    name: ClassVar[str] = "gp"
    #: Cross-validation folds fitted at the same time (0: one per core). The result does not
    #: depend on it.
    fold_threads: ClassVar[int] = 0

    def __init__(self, settings: GPSettings) -> None:
        self.settings = settings
        self.state: dict[str, np.ndarray] = {}
        self._theta: np.ndarray | None = None
        self._notes: list[str] = []

    def notes(self) -> list[str]:
        """Whether the subset-of-regressors approximation was used."""
        return list(self._notes)

    def _z(self, x: np.ndarray, out: np.ndarray | None = None, scaled: bool = False) -> np.ndarray:
        """Standardised log-weights, divided by the length scales when ``scaled``: computed in
        place in ``out`` (a new float64 array when None), with no temporaries."""
        st = self.state
        buf = np.empty(np.shape(x)) if out is None else out
        np.add(np.asarray(x, dtype=np.float64), self.settings.log_epsilon, out=buf)
        np.log(buf, out=buf)
        buf -= st["feature_mean"]
        buf /= st["feature_scale"]
        if scaled:
            buf /= st["length_scale"]
        return buf

    def tune(self, x: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray:
        """Hyperparameters of every row first; each fold's GP then re-fits its own, starting
        from those (the marginal likelihood of its training rows alone decides); out-of-fold
        predictions."""
        fold_list = list(folds)
        # The BLAS limit is set here, around the threads, so that the folds' own (nested)
        # limits never restore a higher thread count while another fold runs.
        with _blas_threads(self.settings.num_threads):
            self._theta = self._fit_theta(x, y, None)
            theta = self._theta

            def one(i: int) -> np.ndarray:
                train, valid = fold_list[i]
                part = GPRegressor(self.settings)
                part.fit(x[train], y[train], start=theta)
                return part.predict(x[valid], num_threads=1)

            # The folds fit at the same time (single-threaded BLAS each: the same numbers as
            # one after the other).
            preds = _map_threads(one, len(fold_list), self.fold_threads)
        oof = np.full(len(y), np.nan)
        for (_, valid), p in zip(fold_list, preds, strict=True):
            oof[valid] = p
        return oof

    def _standardise(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = np.log(x + self.settings.log_epsilon)
        mean = f.mean(axis=0)
        scale = f.std(axis=0)
        scale[scale == 0] = 1.0
        y_mean, y_scale = float(y.mean()), float(y.std()) or 1.0
        self.state = {
            "feature_mean": mean,
            "feature_scale": scale,
            "y_mean": np.asarray(y_mean),
            "y_scale": np.asarray(y_scale),
        }
        return (f - mean) / scale, (y - y_mean) / y_scale

    def _subset(self, num_rows: int) -> np.ndarray | None:
        if num_rows <= self.settings.max_rows:
            return None
        rng = np.random.default_rng(self.settings.seed)
        return np.sort(rng.choice(num_rows, self.settings.max_rows, replace=False))

    def _fit_theta(self, x: np.ndarray, y: np.ndarray, start: np.ndarray | None) -> np.ndarray:
        z, ys = self._standardise(x, y)
        sub = self._subset(len(y))
        if sub is not None:
            z, ys = z[sub], ys[sub]
        s = self.settings
        restarts = s.num_restarts if start is None else 0
        return gp_hyperparameters(z, ys, s.nu, start, restarts, s.seed)

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        start: np.ndarray | None = None,
        counts: np.ndarray | None = None,
    ) -> None:
        """Maximum-likelihood hyperparameters (those found by :meth:`tune` on the same rows
        are reused; ``start``: the search's starting point), then the dual coefficients."""
        with _blas_threads(self.settings.num_threads):
            self._fit(x, y, start, counts)

    def _fit(
        self, x: np.ndarray, y: np.ndarray, start: np.ndarray | None, counts: np.ndarray | None
    ) -> None:
        if self._theta is None or start is not None:
            self._theta = self._fit_theta(x, y, start)
        z, ys = self._standardise(x, y)
        d = x.shape[1]
        theta = self._theta
        amp, ls, noise = math.exp(theta[0]), np.exp(theta[1 : d + 1]), math.exp(theta[d + 1])
        u = z / ls
        sub = self._subset(len(y))
        points = z if sub is None else z[sub]
        if sub is not None:
            text = (
                f"{len(y)} rows > gp.max_rows={self.settings.max_rows}: GP hyperparameters from "
                "a random subset of that many rows, posterior mean by subset of regressors"
            )
            if text not in self._notes:
                self._notes.append(text)
                log.info("%s", text)
        coef = gp_dual_coefficients(
            u, ys, amp, noise, self.settings.nu, counts, None if sub is None else u[sub]
        )
        self.state.update(
            {
                "length_scale": ls,
                "amplitude": np.asarray(amp),
                "noise": np.asarray(noise),
                "train_z": points,
                "dual_coef": coef,
            }
        )

    def fit_members(
        self, x: np.ndarray, y: np.ndarray, counts: np.ndarray, num_threads: int = 0
    ) -> None:
        """One posterior mean per bootstrap resample (a row of ``counts``), with the
        hyperparameters of the model of every row: only the dual coefficients change (a row
        drawn c times counts as one observation with the noise divided by c)."""
        if not self.state:
            raise RuntimeError("fit the model first")
        st = self.state
        u = self._z(x, scaled=True)
        ys = (y - float(st["y_mean"])) / float(st["y_scale"])
        sub = self._subset(len(y))
        amp, noise = float(st["amplitude"]), float(st["noise"])
        with _blas_threads(self.settings.num_threads):
            self.state["member_dual_coef"] = np.stack(
                [
                    gp_dual_coefficients(
                        u, ys, amp, noise, self.settings.nu, c, None if sub is None else u[sub]
                    )
                    for c in counts
                ]
            )

    def predict(self, x: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Posterior mean through the compiled kernel (``regmix_plugin._trees``), rows spread
        over ``num_threads`` threads (0: every core)."""
        import importlib

        if not self.state:
            raise RuntimeError("fit or load the model first")
        st = self.state
        _trees = importlib.import_module("regmix_plugin._trees")
        ls = st["length_scale"]
        kernel = _KERNEL_IDS[self.settings.nu]
        out = _trees.gp_posterior_mean(
            self._scaled_inputs(x, num_threads),
            np.ascontiguousarray(st["train_z"] / ls),
            np.ascontiguousarray(st["dual_coef"] * float(st["amplitude"])),
            kernel,
            num_threads,
        )
        return np.asarray(out) * float(st["y_scale"]) + float(st["y_mean"])

    def _scaled_inputs(self, x: np.ndarray, num_threads: int, chunk: int = 65536) -> np.ndarray:
        """``self._z(x, scaled=True)`` in row blocks over ``num_threads`` threads (numpy
        releases the GIL): at a million candidates this step costs as much as a third of the
        compiled kernel."""
        buf = np.empty(np.shape(x))

        def one(b: int) -> None:
            rows = slice(b * chunk, (b + 1) * chunk)
            self._z(x[rows], out=buf[rows], scaled=True)

        _map_threads(one, -(-len(buf) // chunk), num_threads)
        return buf

    def predict_numpy(self, x: np.ndarray, chunk: int = 8192, num_threads: int = 0) -> np.ndarray:
        """Posterior mean in numpy (the reference of :meth:`predict`), in chunks of rows
        (distances through one matrix product) spread over ``num_threads`` threads."""
        if not self.state:
            raise RuntimeError("fit or load the model first")
        return self._posterior(x, self.state["dual_coef"][:, None], chunk, num_threads)[:, 0]

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """Each member's posterior mean: ``[members, rows]`` (one kernel pass for all)."""
        if "member_dual_coef" not in self.state:
            raise _no_members("gp")
        return self._posterior(x, self.state["member_dual_coef"].T, 2048, 0).T

    def _posterior(
        self, x: np.ndarray, coef: np.ndarray, chunk: int, num_threads: int
    ) -> np.ndarray:
        st = self.state
        ls = st["length_scale"]
        t = st["train_z"] / ls
        t2 = np.einsum("ij,ij->i", t, t)
        minus_2t = -2.0 * t.T
        alpha = np.ascontiguousarray(coef * float(st["amplitude"]))
        out = np.empty((len(x), alpha.shape[1]))

        def one(b: int) -> None:
            q = self._z(x[b : b + chunk], scaled=True)
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

        from regmix_plugin.io import atomic_write_bytes

        if not self.state:
            raise RuntimeError("fit the model first")
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **self.state)
        atomic_write_bytes(folder / "gp.npz", buf.getvalue())
        members = self.state.get("member_dual_coef")
        return {
            "files": ["gp.npz"],
            "length_scale": self.state["length_scale"].tolist(),
            "amplitude": float(self.state["amplitude"]),
            "noise": float(self.state["noise"]),
            "num_points": len(self.state["train_z"]),
            "num_members": 0 if members is None else len(members),
        }

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], settings: GPSettings) -> GPRegressor:
        """Read ``gp.npz`` and check its arrays' shapes."""
        import zipfile

        path = folder / "gp.npz"
        if not path.is_file():
            raise DataError(f"model file {str(path)!r} is missing; refit with `regmix fit`")
        model = cls(settings)
        try:
            with np.load(path, allow_pickle=False) as data:
                model.state = {k: np.asarray(data[k]) for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"model file {str(path)!r} is not a readable GP file ({exc}); "
                "refit with `regmix fit`"
            ) from exc
        problem = _gp_state_problem(model.state, meta)
        if problem:
            raise DataError(
                f"model file {str(path)!r} is damaged: {problem}; refit with `regmix fit`"
            )
        return model


def _gp_state_problem(state: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """What is wrong with a loaded ``gp.npz`` (empty: nothing)."""
    need = ["feature_mean", "feature_scale", "length_scale", "amplitude", "noise", "train_z"]
    missing = [k for k in [*need, "dual_coef", "y_mean", "y_scale"] if k not in state]
    if missing:
        return f"arrays {missing} are missing"
    if any(state[k].dtype != np.float64 for k in state):
        return "an array is not float64"
    z = state["train_z"]
    d = len(state["length_scale"])
    if z.ndim != 2 or z.shape[1] != d or state["dual_coef"].shape != (len(z),):
        return (
            f"inconsistent shapes (points {z.shape}, dual coefficients {state['dual_coef'].shape})"
        )
    if "num_points" in meta and len(z) != int(meta["num_points"]):
        return f"{len(z)} points, metadata.json records {meta['num_points']}"
    members = state.get("member_dual_coef")
    num_members = int(meta.get("num_members", 0 if members is None else len(members)))
    if num_members and (members is None or members.shape != (num_members, len(z))):
        return f"the ensemble's coefficients do not have the shape ({num_members}, {len(z)})"
    if not all(np.isfinite(state[k]).all() for k in state):
        return "non-finite values"
    return ""


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
        # The two parts tune at the same time (independent, each deterministic); their folds
        # share the cores.
        fold_list = list(folds)
        a, b = _map_threads(
            lambda i: (self.trees, self.gp)[i].tune(x, y, fold_list), 2, self._part_threads()
        )
        return self._choose_weight(a, b, y)

    def _part_threads(self) -> int:
        return min(2, self.trees.fold_threads or os.cpu_count() or 1)

    def _choose_weight(self, a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The blend weight with the lowest out-of-fold MSE; the blend's out-of-fold
        predictions."""
        errors = [
            float(np.mean((w * a + (1 - w) * b - y) ** 2)) for w in self.settings.blend.weights
        ]
        self.weight = float(self.settings.blend.weights[int(np.argmin(errors))])
        return self.weight * a + (1 - self.weight) * b

    def tune_and_fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        folds: Folds,
        counts: np.ndarray | None,
        num_threads: int = 0,
    ) -> np.ndarray:
        """:meth:`tune`, :meth:`fit` and (given ``counts``) :meth:`fit_members`, with the same
        results, but each part's chain (tune, fit, members) runs beside the other's: the
        LightGBM members train while the GP is still tuning. A part whose weight comes out 0
        was fitted for nothing (the only cost of not waiting for the weight)."""
        fold_list = list(folds)
        a, b = _map_threads(
            lambda i: tune_and_fit((self.trees, self.gp)[i], x, y, fold_list, counts, num_threads),
            2,
            self._part_threads(),
        )
        return self._choose_weight(a, b, y)

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

    def fit_members(
        self, x: np.ndarray, y: np.ndarray, counts: np.ndarray, num_threads: int = 0
    ) -> None:
        """Both parts' members on the same resamples, blended with the same weight."""
        if self.weight > 0:
            self.trees.fit_members(x, y, counts, num_threads)
        if self.weight < 1:
            self.gp.fit_members(x, y, counts, num_threads)

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """Each member's blend: ``[members, rows]``."""
        out: np.ndarray | None = None
        if self.weight > 0:
            out = self.weight * self.trees.predict_members(x)
        if self.weight < 1:
            part = (1 - self.weight) * self.gp.predict_members(x)
            out = part if out is None else out + part
        assert out is not None
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


def tune_and_fit(
    model: Regressor,
    x: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    counts: np.ndarray | None,
    num_threads: int = 0,
) -> np.ndarray:
    """``model.tune``, then ``fit``, then (given ``counts``) ``fit_members``; the out-of-fold
    predictions of the tuning. ``lgbm_gp`` runs its parts' chains side by side."""
    if isinstance(model, BlendRegressor):
        return model.tune_and_fit(x, y, folds, counts, num_threads)
    oof = model.tune(x, y, folds)
    model.fit(x, y)
    if counts is not None:
        model.fit_members(x, y, counts, num_threads)
    return oof


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
