"""Fit one regressor per target metric, report cross-validated quality, save and load models.

The Python API the pipeline calls:

- :func:`fit` (mixtures table, results table, targets, :class:`FitConfig`, out_dir) ->
  :class:`FitSummary`: joins the tables on their id column, drops rows without a result (and
  says how many), chooses each regressor's settings by k-fold cross-validation on those rows
  only, reports cross-validated Spearman, Pearson and MSE (mean and spread over folds), refits
  on every row and writes ``out_dir`` atomically (one folder per target + ``metadata.json``).
- :func:`load_model` (model dir) -> :class:`FittedModel`, whose ``predict(x, target)`` scores a
  weight matrix in the model's domain order, and :func:`predict_table` scores a mixtures table
  by domain name (a missing or extra domain is an error).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.config import from_dict, to_dict
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.io import atomic_write_json
from regmix_plugin.layout import MODEL_METADATA_FILE
from regmix_plugin.regression.regressors import (
    REGRESSORS,
    Regressor,
    RegressorSettings,
    load_regressor,
    make_regressor,
    tune_and_fit,
)
from regmix_plugin.regression.uncertainty import (
    NoiseEstimate,
    bootstrap_counts,
    calibrated_residual_sd,
    estimate_noise,
    out_of_bag,
    pearson,
    predictive_interval,
    spearman,
)
from regmix_plugin.tables import Table, write_table

log = logging.getLogger(__name__)

#: Version of the model folder layout (``metadata.json`` ``format_version``). 2: per-file
#: checksums and tree counts, ensemble members, residual spread, seed noise.
FORMAT_VERSION = 2
#: Per target folder: the out-of-fold predictions of the cross-validation.
CV_PREDICTIONS_FILE = "cv_predictions.csv"
#: Per target folder (with an ensemble): out-of-bag residuals and member variances of the
#: training rows, which calibrate the intervals.
OOB_FILE = "out_of_bag.csv"
#: Regressor used when the config names none ("ours").
DEFAULT_REGRESSOR = "lgbm_gp"


@dataclass(kw_only=True, frozen=True)
class FitConfig:
    """The ``fit`` section: which regressor, its settings, and the cross-validation."""

    regressor: str = DEFAULT_REGRESSOR
    """Registered regressor: ``lgbm_gp`` (ours), ``lightgbm`` (paper), ``linear``, ``gp``."""
    settings: RegressorSettings = field(default_factory=RegressorSettings)
    """Per-regressor settings (``settings.lightgbm``, ``settings.linear``, ``settings.gp``,
    ``settings.blend``)."""
    num_folds: int = 5
    """Folds of the k-fold cross-validation that chooses settings and reports quality."""
    seed: int = 42
    """Seed of the fold assignment."""
    targets: list[str] = field(default_factory=list)
    """Metric columns to fit; empty: every column of the results table."""
    num_members: int = 32
    """Bootstrap ensemble (for prediction intervals and paired comparisons): this many models,
    each fitted on a seeded resample of the rows with the settings chosen for the model of
    every row; 0: no ensemble. Each member costs about one fit of the LightGBM part."""
    num_threads: int = 0
    """Ensemble members trained at the same time (0: one per core)."""

    def __post_init__(self) -> None:
        if self.num_members < 0 or self.num_members == 1:
            raise ValueError(f"num_members must be 0 or >= 2, got {self.num_members}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")
        if self.regressor not in REGRESSORS:
            raise ValueError(
                f"regressor {self.regressor!r} is not registered; "
                f"choose one of {sorted(REGRESSORS)}"
            )
        if self.num_folds < 2:
            raise ValueError(f"num_folds must be >= 2, got {self.num_folds}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets lists a column twice: {self.targets}")


@dataclass(frozen=True)
class CVMetrics:
    """Cross-validated quality of one target's regressor: mean and spread over folds."""

    spearman_mean: float
    spearman_std: float
    pearson_mean: float
    pearson_std: float
    mse_mean: float
    mse_std: float
    num_folds: int


@dataclass(frozen=True)
class TargetSummary:
    """What ``fit`` did for one target."""

    target: str
    num_rows: int
    num_dropped: int
    row_hash: str
    cv: CVMetrics
    chosen: dict[str, Any]
    notes: list[str]
    num_members: int = 0
    residual_sd: float = math.nan
    oof_rmse: float = math.nan
    noise: NoiseEstimate | None = None


@dataclass(frozen=True)
class FitSummary:
    """What ``fit`` wrote: the model folder, the domains, one summary per target."""

    out_dir: Path
    regressor: str
    domains: list[str]
    targets: list[TargetSummary]
    skipped: dict[str, str]

    def table(self) -> str:
        """A plain-text table of the cross-validated metrics (for the CLI)."""
        lines = [
            f"{'target':48s} {'rows':>5s} {'Spearman x100':>15s} {'Pearson x100':>15s} {'MSE':>19s}"
        ]
        for t in self.targets:
            c = t.cv
            lines.append(
                f"{t.target:48s} {t.num_rows:5d} "
                f"{100 * c.spearman_mean:8.2f} ±{100 * c.spearman_std:5.2f} "
                f"{100 * c.pearson_mean:8.2f} ±{100 * c.pearson_std:5.2f} "
                f"{c.mse_mean:10.3g} ± {c.mse_std:<8.2g}"
            )
        return "\n".join(lines)


def kfold(
    num_rows: int, num_folds: int, seed: int, groups: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled k-fold split: (train indices, validation indices) per fold.

    ``groups``: a label per row; rows with one label (replicates of one mixture) always fall in
    the same fold, so that no fold validates on a mixture it trained on. None: every row is
    its own group (the plain split)."""
    if groups is None:
        order = np.random.default_rng(seed).permutation(num_rows)
        parts = np.array_split(order, num_folds)
    else:
        labels, inverse = np.unique(groups, return_inverse=True)
        shuffled = np.random.default_rng(seed).permutation(len(labels))
        fold_of = np.empty(len(labels), dtype=np.int64)
        for i, part in enumerate(np.array_split(shuffled, num_folds)):
            fold_of[part] = i
        parts = [np.flatnonzero(fold_of[inverse] == i) for i in range(num_folds)]
    return [
        (np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i])), np.sort(parts[i]))
        for i in range(num_folds)
    ]


def cv_metrics(
    y: np.ndarray, oof: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
) -> CVMetrics:
    """Spearman, Pearson and MSE on each fold's held-out rows; mean and std over folds."""
    s, p, m = [], [], []
    for _, valid in folds:
        s.append(spearman(oof[valid], y[valid]))
        p.append(pearson(oof[valid], y[valid]))
        m.append(float(np.mean((oof[valid] - y[valid]) ** 2)))

    def mean_std(values: list[float]) -> tuple[float, float]:
        # A fold whose predictions are constant has no correlation (NaN): leave it out.
        v = np.asarray(values)
        v = v[np.isfinite(v)]
        return (float(v.mean()), float(v.std())) if v.size else (math.nan, math.nan)

    (s_mean, s_std), (p_mean, p_std) = mean_std(s), mean_std(p)
    return CVMetrics(
        spearman_mean=s_mean,
        spearman_std=s_std,
        pearson_mean=p_mean,
        pearson_std=p_std,
        mse_mean=float(np.mean(m)),
        mse_std=float(np.std(m)),
        num_folds=len(folds),
    )


def row_hash(ids: list[str], x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of the training rows (ids, weights, target values) in their exact float form."""
    h = hashlib.sha256()
    for rid, row, value in zip(ids, x, y, strict=True):
        h.update(rid.encode())
        h.update(b"\0")
        h.update(np.ascontiguousarray(row, dtype="<f8").tobytes())
        h.update(np.float64(value).astype("<f8").tobytes())
    return h.hexdigest()


def target_slug(target: str) -> str:
    """A folder name for a target column (``metric/x_loss`` -> ``metric__x_loss``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "__", target).strip("_.") or "target"
    return slug


def join_tables(
    mixtures: Table, results: Table
) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Rows of both tables joined on the id (mixtures order); the weight matrix must be clean.

    Returns ``(ids, weights, results matrix, warnings)``.
    """
    if mixtures.values.shape[1] < 1:
        raise DataError("the mixtures table has no domain columns")
    bad = np.argwhere(~np.isfinite(mixtures.values))
    if len(bad):
        r, c = bad[0]
        raise DataError(
            f"mixtures table: {len(bad)} empty or non-finite weight(s), first at id "
            f"{mixtures.ids[r]!r} column {mixtures.columns[c]!r}; every weight must be a number"
        )
    if (mixtures.values < 0).any():
        r, c = np.argwhere(mixtures.values < 0)[0]
        raise DataError(
            f"mixtures table: negative weight {mixtures.values[r, c]} at id {mixtures.ids[r]!r} "
            f"column {mixtures.columns[c]!r}"
        )
    notes = []
    where = {rid: i for i, rid in enumerate(results.ids)}
    keep = [i for i, rid in enumerate(mixtures.ids) if rid in where]
    if not keep:
        raise DataError(
            f"no id is in both tables (mixtures id column {mixtures.id_column!r}, e.g. "
            f"{mixtures.ids[:3]}; results id column {results.id_column!r}, e.g. {results.ids[:3]})"
        )
    missing = len(mixtures.ids) - len(keep)
    if missing:
        notes.append(f"{missing} mixture(s) have no row in the results table and are left out")
    extra = len(results.ids) - len(keep)
    if extra:
        notes.append(f"{extra} result row(s) have no mixture and are left out")
    ids = [mixtures.ids[i] for i in keep]
    x = mixtures.values[keep]
    y = results.values[[where[rid] for rid in ids]]
    return ids, x, y, notes


def _check_replicates(
    replicates: Sequence[Sequence[str]] | None, ids: list[str]
) -> list[list[str]] | None:
    """Replicate groups as lists; an id in two groups or unknown to the tables is an error."""
    if replicates is None:
        return None
    known = set(ids)
    seen: set[str] = set()
    groups = []
    for group in replicates:
        g = [str(rid) for rid in group]
        twice = sorted(seen & set(g))
        unknown = sorted(set(g) - known)
        if twice or len(set(g)) != len(g):
            raise DataError(f"replicate groups: id(s) {twice or g} appear in more than one place")
        if unknown:
            raise DataError(
                f"replicate groups: id(s) {unknown[:5]} are in neither the mixtures nor the "
                "results table"
            )
        seen.update(g)
        groups.append(g)
    return groups


def _group_labels(ids: list[str], replicates: list[list[str]] | None) -> np.ndarray | None:
    """A label per row: the replicate group's first id, or the row's own id (None: none)."""
    if not replicates:
        return None
    label = {rid: group[0] for group in replicates for rid in group}
    return np.asarray([label.get(rid, rid) for rid in ids])


def _file_records(folder: Path, chosen: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """SHA-256, size and (LightGBM files) tree count of every file of a target's folder."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        rec: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        if path.suffix == ".txt":
            rec["trees"] = _count_trees(data)
        records[path.relative_to(folder).as_posix()] = rec
    return records


def _count_trees(data: bytes) -> int:
    """Trees in a LightGBM text model: its ``Tree=N`` lines (independent of the parser)."""
    return data.count(b"\nTree=") + data.startswith(b"Tree=")


def verify_files(folder: Path, records: dict[str, dict[str, Any]]) -> None:
    """Check every file of a target folder against ``metadata.json``: present, its tree count
    (LightGBM files), its size and SHA-256. A damaged file is a DataError naming it."""
    if not isinstance(records, dict) or not records:
        raise DataError(f"{folder}: metadata.json lists no model files; refit with `regmix fit`")
    for name, rec in records.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"model file {str(path)!r} is missing; refit with `regmix fit`")
        data = path.read_bytes()
        if "trees" in rec and _count_trees(data) != rec["trees"]:
            raise DataError(
                f"model file {str(path)!r} holds {_count_trees(data)} of the {rec['trees']} "
                "trees metadata.json records: it is cut or damaged; refit with `regmix fit`"
            )
        if len(data) != rec.get("bytes") or hashlib.sha256(data).hexdigest() != rec.get("sha256"):
            raise DataError(
                f"model file {str(path)!r} does not match the checksum in metadata.json "
                f"({len(data)} bytes, {rec.get('bytes')} recorded): it is damaged or was "
                "changed; refit with `regmix fit`"
            )


def min_rows(num_folds: int) -> int:
    """The fewest usable rows a target needs for ``num_folds``-fold cross-validation."""
    return max(2 * num_folds, 8)


def _fit_target(
    name: str,
    ids: list[str],
    x: np.ndarray,
    y: np.ndarray,
    config: FitConfig,
    folder: Path,
    notes: list[str],
    replicates: list[list[str]] | None,
) -> TargetSummary:
    ok = np.isfinite(y)
    num_dropped = int((~ok).sum())
    if num_dropped:
        text = f"{name}: {num_dropped} row(s) with a missing or NaN result dropped"
        log.warning("%s", text)
        notes = [*notes, text]
    ids = [rid for rid, k in zip(ids, ok, strict=True) if k]
    x, y = x[ok], y[ok]
    need = min_rows(config.num_folds)
    if len(y) < need:
        raise DataError(
            f"target {name!r}: {len(y)} usable row(s), {config.num_folds}-fold cross-validation "
            f"needs at least {need}; run more proxies or lower fit.num_folds"
        )
    if float(np.ptp(y)) == 0.0:
        raise DataError(
            f"target {name!r} is constant ({float(y[0])!r} on all {len(y)} rows): nothing to fit; "
            "remove it from fit.targets / --target"
        )
    folds = kfold(len(y), config.num_folds, config.seed, _group_labels(ids, replicates))
    model = make_regressor(config.regressor, config.settings)
    counts = (
        bootstrap_counts(len(y), config.num_members, config.seed) if config.num_members else None
    )
    oof = tune_and_fit(model, x, y, folds, counts, config.num_threads)
    metrics = cv_metrics(y, oof, folds)
    oof_rmse = math.sqrt(float(np.mean((oof - y) ** 2)))
    residual_sd = math.nan
    folder.mkdir(parents=True, exist_ok=True)
    if counts is not None:
        resid, var = out_of_bag(model.predict_members(x), counts, y)
        residual_sd = calibrated_residual_sd(resid, var, 0.9)
        write_table(
            folder / OOB_FILE,
            Table(
                "row",
                [str(i) for i in range(len(resid))],
                ["residual", "variance"],
                np.column_stack([resid, var]),
            ),
        )
    chosen = model.save(folder)
    noise = None
    if replicates is not None:
        noise = estimate_noise(ids, y, replicates)
        if noise is None:
            text = f"{name}: no replicated mixture with two finite results: seed noise unknown"
            log.warning("%s", text)
            notes = [*notes, text]
    # Out-of-fold predictions, for the report's predicted-vs-measured plot.
    write_table(
        folder / CV_PREDICTIONS_FILE,
        Table("mixture_id", ids, ["measured", "predicted"], np.column_stack([y, oof])),
    )
    notes = [*notes, *model.notes()]
    return TargetSummary(
        target=name,
        num_rows=len(y),
        num_dropped=num_dropped,
        row_hash=row_hash(ids, x, y),
        cv=metrics,
        chosen=chosen,
        notes=notes,
        num_members=config.num_members,
        residual_sd=residual_sd,
        oof_rmse=oof_rmse,
        noise=noise,
    )


def _wanted_targets(
    targets: list[str] | None, config: FitConfig, results: Table
) -> tuple[list[str], bool]:
    """The targets to fit, and whether they were named (named ones may not be skipped)."""
    wanted = list(targets) if targets else list(config.targets)
    explicit = bool(wanted)
    if not wanted:
        wanted = list(results.columns)
    missing = [t for t in wanted if t not in results.columns]
    if missing:
        raise DataError(
            f"target column(s) {missing} not in the results table; "
            f"its columns are {results.columns}"
        )
    return wanted, explicit


def _metadata(
    config: FitConfig,
    mixtures: Table,
    summaries: list[TargetSummary],
    skipped: dict[str, str],
    tmp: Path,
) -> dict[str, Any]:
    """``metadata.json``: settings, per target its CV quality, ensemble, noise and file records."""
    return {
        "format_version": FORMAT_VERSION,
        "regressor": config.regressor,
        "domains": list(mixtures.columns),
        "id_column": mixtures.id_column,
        "config": to_dict(config),
        "targets": {
            s.target: {
                "folder": target_slug(s.target),
                "num_rows": s.num_rows,
                "num_dropped": s.num_dropped,
                "row_hash": s.row_hash,
                "cv": to_dict(s.cv),
                "chosen": s.chosen,
                "notes": s.notes,
                "ensemble": {
                    "num_members": s.num_members,
                    "residual_sd": None if math.isnan(s.residual_sd) else s.residual_sd,
                    "oof_rmse": s.oof_rmse,
                },
                "noise": None if s.noise is None else to_dict(s.noise),
                "files": _file_records(tmp / target_slug(s.target), s.chosen),
            }
            for s in summaries
        },
        "skipped": skipped,
    }


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the folder built aside into place (the old one aside first, then removed)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def fit(
    mixtures: Table,
    results: Table,
    targets: list[str] | None,
    config: FitConfig,
    out_dir: str | Path,
    *,
    replicates: Sequence[Sequence[str]] | None = None,
) -> FitSummary:
    """Fit ``config.regressor`` for each target and write the model folder ``out_dir``.

    ``targets`` overrides ``config.targets``; both empty: every results column. Named targets
    that are missing or constant are errors; with every column implied, a constant column is
    skipped with a warning. The folder is built beside ``out_dir`` and moved into place whole.

    ``replicates``: groups of mixture ids that share one mixture (proxies trained with
    different seeds; :func:`~regmix_plugin.regression.uncertainty.find_replicates` finds the
    rows with identical weights). With them, each target's seed noise and signal-to-noise
    ratio are estimated and stored in ``metadata.json``; None: not estimated.
    """
    wanted, explicit = _wanted_targets(targets, config, results)
    ids, x, yall, notes = join_tables(mixtures, results)
    for text in notes:
        log.warning("%s", text)
    groups = _check_replicates(replicates, ids)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        summaries: list[TargetSummary] = []
        skipped: dict[str, str] = {}
        for name in wanted:
            y = yall[:, results.columns.index(name)]
            finite = y[np.isfinite(y)]
            if not explicit and finite.size and float(np.ptp(finite)) == 0.0:
                reason = f"constant ({float(finite[0])!r}) on every row"
                log.warning("target %s skipped: %s", name, reason)
                skipped[name] = reason
                continue
            summaries.append(
                _fit_target(name, ids, x, y, config, tmp / target_slug(name), list(notes), groups)
            )
        if not summaries:
            raise DataError(f"no target left to fit (skipped: {skipped})")
        slugs = [target_slug(s.target) for s in summaries]
        if len(set(slugs)) != len(slugs):
            raise DataError(f"two targets map to the same folder name: {slugs}")
        atomic_write_json(
            tmp / MODEL_METADATA_FILE, _metadata(config, mixtures, summaries, skipped, tmp)
        )
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FitSummary(
        out_dir=out,
        regressor=config.regressor,
        domains=list(mixtures.columns),
        targets=summaries,
        skipped=skipped,
    )


class FittedModel:
    """A loaded model folder: ``domains``, ``targets`` and ``predict``."""

    def __init__(self, path: Path, meta: dict[str, Any], models: dict[str, Regressor]) -> None:
        self.path = path
        self.meta = meta
        self.domains: list[str] = list(meta["domains"])
        self.regressor: str = meta["regressor"]
        self._models = models
        self._oob: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def targets(self) -> list[str]:
        """The fitted targets, in fit order."""
        return list(self._models)

    def model(self, target: str | None = None) -> Regressor:
        """The regressor of one target (``None``: the only one)."""
        return self._models[self._target(target)]

    def _target(self, target: str | None) -> str:
        if target is None:
            if len(self._models) != 1:
                raise DataError(
                    f"model {str(self.path)!r} holds {len(self._models)} targets; name one of "
                    f"{self.targets}"
                )
            return next(iter(self._models))
        if target not in self._models:
            raise DataError(
                f"target {target!r} is not in model {str(self.path)!r}; it has {self.targets}"
            )
        return target

    def predict(self, x: np.ndarray, target: str | None = None) -> np.ndarray:
        """Predictions for a weight matrix whose columns are ``self.domains``, in that order."""
        return self._models[self._target(target)].predict(self._rows(x))

    def _rows(self, x: np.ndarray) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self.domains):
            raise DataError(
                f"expected a matrix with {len(self.domains)} columns (the model's domains "
                f"{self.domains}), got shape {arr.shape}"
            )
        return np.ascontiguousarray(arr)

    def num_members(self, target: str | None = None) -> int:
        """Bootstrap members of a target's ensemble (0: fitted without one)."""
        info = self.meta["targets"][self._target(target)]
        return int(info.get("ensemble", {}).get("num_members", 0))

    def predict_members(self, x: np.ndarray, target: str | None = None) -> np.ndarray:
        """Each ensemble member's predictions: ``[members, rows]``."""
        name = self._target(target)
        if self.num_members(name) < 2:
            raise DataError(
                f"model {str(self.path)!r} was fitted without an ensemble (fit.num_members 0); "
                "refit with fit.num_members >= 2 for intervals"
            )
        return self._models[name].predict_members(self._rows(x))

    def predict_interval(
        self, x: np.ndarray, target: str | None = None, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ensemble mean and central ``level`` predictive interval per row: normal, with the
        members' variance plus a residual variance calibrated so that ``level`` of the
        training rows' out-of-bag intervals cover them
        (:func:`~regmix_plugin.regression.uncertainty.calibrated_residual_sd`):
        ``(mean, lo, hi)``."""
        name = self._target(target)
        members = self.predict_members(x, name)
        if name not in self._oob:
            from regmix_plugin.tables import read_table

            table = read_table(self.path / self.meta["targets"][name]["folder"] / OOB_FILE)
            self._oob[name] = (table.column("residual"), table.column("variance"))
        sd = calibrated_residual_sd(*self._oob[name], level)
        return predictive_interval(members, sd, level)

    def noise(self, target: str | None = None) -> NoiseEstimate | None:
        """The target's seed noise estimate (None: fitted without replicates)."""
        data = self.meta["targets"][self._target(target)].get("noise")
        return None if data is None else NoiseEstimate(**data)


def load_model(path: str | Path) -> FittedModel:
    """Load a model folder written by :func:`fit`."""
    p = Path(path)
    meta_path = p / MODEL_METADATA_FILE
    if not meta_path.is_file():
        raise DataError(f"{str(p)!r} is not a model folder (no metadata.json); run `regmix fit`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc}); refit the model") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, this version reads "
            f"{FORMAT_VERSION}; refit the model"
        )
    try:
        config = from_dict(FitConfig, meta["config"], f"{meta_path}: config")
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    models = {}
    try:
        for target, info in meta["targets"].items():
            verify_files(p / info["folder"], info["files"])
            models[target] = load_regressor(
                meta["regressor"], p / info["folder"], info["chosen"], config.settings
            )
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{meta_path}: an entry is missing or malformed ({exc!r}); refit the model"
        ) from exc
    return FittedModel(p, meta, models)


def align_columns(table: Table, domains: list[str], source: str = "mixtures table") -> np.ndarray:
    """The weight matrix of ``table`` in the order of ``domains``, matched by name.

    A domain of the model missing from the table, or a table column the model does not know, is
    an error: scoring with a domain silently dropped or zero-filled would be wrong.
    """
    missing = [d for d in domains if d not in table.columns]
    extra = [c for c in table.columns if c not in domains]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing domain(s) {missing}")
        if extra:
            parts.append(f"domain(s) the model was not fitted on {extra}")
        raise DataError(
            f"{source}: {'; '.join(parts)}. The model's domains are {domains}; score tables with "
            "exactly those columns (any order) or refit the model"
        )
    x = table.select(domains)
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        r, c = bad[0]
        raise DataError(
            f"{source}: empty or non-finite weight at id {table.ids[r]!r} domain {domains[c]!r}"
        )
    return np.ascontiguousarray(x)


def predict_table(model: FittedModel, mixtures: Table, targets: list[str] | None = None) -> Table:
    """Predictions for every row of ``mixtures``: the id column, then one column per target."""
    names = list(targets) if targets else model.targets
    x = align_columns(mixtures, model.domains)
    cols = [model.predict(x, t) for t in names]
    values = np.stack(cols, axis=1) if cols else np.zeros((len(mixtures.ids), 0))
    return Table(mixtures.id_column, list(mixtures.ids), names, values)
