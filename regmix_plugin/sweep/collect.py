"""``regmix collect DIR``: the results table ``regmix fit`` reads, one row per mixture id.

From a regmix sweep folder, a run's metrics are the flat ``metrics`` of its ``metrics.json``,
taken only when its ``DONE`` marker exists. From a folder of runs a team launched with its own
Megatron-LM or NeMo scripts (one sub-folder per mixture id), the per-dataset validation losses
are parsed from the logs and TensorBoard event files (:mod:`regmix_plugin.sweep.parsers`).

Every expected mixture gets a row: a missing, failed or unfinished run is a row of NaN (an
empty cell) and is listed with the reason, never dropped. The list is also written beside the
table as ``<results>.missing.json``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regmix_plugin.errors import DataError
from regmix_plugin.io import atomic_write_json
from regmix_plugin.layout import DONE_FILE, METRICS_FILE, SWEEP_FILE, RunLayout, missing_file
from regmix_plugin.sweep.config import CollectSettings
from regmix_plugin.sweep.harness import read_run_results
from regmix_plugin.sweep.parsers import run_metrics
from regmix_plugin.sweep.registry import (
    read_json,
    read_run,
    runs_dir,
    sweep_mixture_ids,
)
from regmix_plugin.tables import ID_COLUMN, Table, write_table


@dataclass
class Collected:
    """The results table plus what is missing from it and where each row came from."""

    table: Table
    missing: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_complete(self) -> int:
        """Rows without a missing value."""
        return int((~np.isnan(self.table.values)).all(axis=1).sum()) if self.table.columns else 0


def _is_sweep(path: Path) -> Path | None:
    if (path / SWEEP_FILE).is_file():
        return path
    if (RunLayout(path).sweep_dir / SWEEP_FILE).is_file():
        return RunLayout(path).sweep_dir
    return None


def _plugin_metrics(folder: Path) -> dict[str, float]:
    data = read_json(folder / METRICS_FILE)
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        raise DataError(f"{folder / METRICS_FILE} has no 'metrics' mapping; rerun this proxy")
    return {str(k): float(v) for k, v in metrics.items()}


def _failure(folder: Path) -> str:
    """Why a proxy's ``metrics.json`` is not a result (empty when it is one)."""
    data = read_json(folder / METRICS_FILE)
    if not isinstance(data, dict):
        return f"{folder / METRICS_FILE} is not a JSON object"
    if data.get("complete") is False:
        return f"the proxy failed: {data.get('failure') or 'incomplete metrics.json'}"
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        bad = [
            k for k, v in metrics.items() if not (isinstance(v, int | float) and math.isfinite(v))
        ]
        if bad:
            return f"diverged: metric(s) {bad} are not finite numbers"
    return ""


def collect_runs(
    source: str | os.PathLike[str],
    *,
    settings: CollectSettings | None = None,
    mixture_ids: list[str] | None = None,
) -> Collected:
    """Gather every run's metrics under ``source`` (a sweep folder, its run_dir, or a folder of
    externally launched runs) into one table; ``mixture_ids`` are the rows expected."""
    settings = settings or CollectSettings()
    src = Path(source)
    if not src.is_dir():
        raise DataError(f"{str(src)!r} is not a folder; pass a sweep folder or a folder of runs")
    sweep_dir = _is_sweep(src)
    rows: dict[str, dict[str, float]] = {}
    missing: dict[str, str] = {}
    sources: dict[str, list[str]] = {}
    if sweep_dir is not None:
        ids = sweep_mixture_ids(sweep_dir) if mixture_ids is None else list(mixture_ids)
        for mid in ids:
            folder = runs_dir(sweep_dir) / mid
            if (folder / DONE_FILE).is_file() and (folder / METRICS_FILE).is_file():
                rows[mid] = _plugin_metrics(folder)
                sources[mid] = [str(folder / METRICS_FILE)]
                continue
            rec = read_run(sweep_dir, mid)
            if rec.state == "failed":
                missing[mid] = (
                    f"failed after {rec.num_attempts} attempt(s), exit code {rec.exit_code}: "
                    f"{rec.error or 'see train.log'}"
                )
            elif rec.state == "running":
                missing[mid] = "still running"
            elif not folder.is_dir():
                missing[mid] = "never launched"
            else:
                missing[mid] = "not finished (no DONE marker)"
    else:
        found = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
        ids = found if mixture_ids is None else list(mixture_ids)
        if not ids:
            raise DataError(f"{src} holds no run folders; name each run's folder by its mixture id")
        for mid in ids:
            folder = src / mid
            if not folder.is_dir():
                missing[mid] = f"no run folder {folder}"
                continue
            if (folder / METRICS_FILE).is_file():
                failure = _failure(folder)
                if failure:
                    missing[mid] = failure
                    continue
                rows[mid] = _plugin_metrics(folder)
                sources[mid] = [str(folder / METRICS_FILE)]
                continue
            metrics, read = run_metrics(folder, settings)
            if not metrics and settings.harness_results:
                metrics = read_run_results(folder)
            if metrics:
                rows[mid] = metrics
                sources[mid] = read
            else:
                missing[mid] = (
                    f"no validation loss found in {folder} (logs {settings.log_globs}"
                    f"{', TensorBoard' if settings.tensorboard else ''})"
                )
    if settings.harness_results:  # lm-evaluation-harness results_*.json: eval/<task>/<metric>
        base = runs_dir(sweep_dir) if sweep_dir is not None else src
        for mid in rows:
            rows[mid].update(read_run_results(base / mid))
    columns = sorted({k for r in rows.values() for k in r})
    values = np.full((len(ids), len(columns)), math.nan)
    for i, mid in enumerate(ids):
        for j, col in enumerate(columns):
            values[i, j] = rows.get(mid, {}).get(col, math.nan)
        if mid in rows:
            lacking = [c for c in columns if c not in rows[mid]]
            if lacking:
                missing[mid] = f"lacks metric(s) {lacking}"
    return Collected(Table(ID_COLUMN, list(ids), columns, values), missing, sources)


def collect(
    source: str | os.PathLike[str],
    *,
    settings: CollectSettings | None = None,
    mixture_ids: list[str] | None = None,
) -> Table:
    """The results table of ``source`` (see :func:`collect_runs`); missing runs are NaN rows."""
    return collect_runs(source, settings=settings, mixture_ids=mixture_ids).table


def write_results(collected: Collected | Table, path: str | os.PathLike[str]) -> Path:
    """Write the table (``regmix_plugin.tables``) and ``<path>.missing.json`` beside it.

    Given a bare :class:`Table`, its rows with a missing value are what the list holds.
    """
    if isinstance(collected, Table):
        t = collected
        missing = {
            mid: "missing value(s)"
            for mid, row in zip(t.ids, t.values, strict=True)
            if np.isnan(row).any()
        }
        collected = Collected(t, missing)
    if not collected.table.columns:
        raise DataError(
            "no run has results yet: "
            + "; ".join(f"{k}: {v}" for k, v in list(collected.missing.items())[:5])
        )
    out = Path(path)
    write_table(out, collected.table)
    atomic_write_json(missing_file(out), collected.missing)
    return out


def default_results_path(source: Path, settings: CollectSettings) -> Path:
    """``sweep.collect.results``, else the run_dir's results table, else ``DIR/results.csv``."""
    if settings.results is not None:
        return settings.results
    sweep_dir = _is_sweep(source)
    return RunLayout(sweep_dir.parent if sweep_dir is not None else source).results
