"""lm-evaluation-harness results as targets: ``results_*.json`` into ``eval/<task>/<metric>``.

lm-evaluation-harness (``lm_eval --output_path DIR``) writes
``DIR/<model name>/results_<timestamp>.json`` whose ``results`` maps each task to its metrics,
keyed ``<metric>,<filter>`` (``acc,none``, ``acc_stderr,none``, ``acc_norm,none``, ...) beside
``alias``, ``name`` and ``sample_len`` (not metrics: keys without a comma are skipped). Every
numeric metric becomes the column ``eval/<task>/<metric>`` (the filter is kept as
``<metric>@<filter>`` when it is not ``none``); a stderr the harness could not compute (``"N/A"``)
is left out. With several result files in one run folder they are read in name order
(their names carry the time), a later file's value replacing an earlier one's.

Nothing here imports numpy: ``regmix collect`` and the sweep worker can both use it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from regmix_plugin.errors import DataError

#: The harness's result files.
RESULTS_GLOB = "results_*.json"
#: Prefix of the columns it gives.
EVAL_PREFIX = "eval"


def column_name(task: str, key: str) -> str:
    """``eval/<task>/<metric>`` for the harness's ``<metric>,<filter>`` key."""
    metric, _, filt = key.partition(",")
    if filt and filt != "none":
        metric = f"{metric}@{filt}"
    return f"{EVAL_PREFIX}/{task}/{metric}"


def read_results_file(path: Path) -> dict[str, float]:
    """The numeric metrics of one ``results_*.json``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable lm-evaluation-harness result ({exc})") from exc
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise DataError(f"{path} has no 'results' mapping; is it an lm-evaluation-harness file?")
    out: dict[str, float] = {}
    for task, metrics in results.items():
        if not isinstance(metrics, dict):
            continue
        for key, value in metrics.items():
            # Metrics are keyed "<metric>,<filter>"; "alias", "name", "sample_len" are not.
            if "," not in key or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(float(value)):
                out[column_name(str(task), str(key))] = float(value)
    return out


def find_results(folder: Path) -> list[Path]:
    """Every ``results_*.json`` under ``folder`` (recursively), in name order."""
    return sorted(folder.rglob(RESULTS_GLOB), key=lambda p: (p.name, str(p)))


def read_run_results(folder: Path) -> dict[str, float]:
    """The merged metrics of every result file in one run folder (empty when none)."""
    out: dict[str, float] = {}
    for path in find_results(folder):
        out.update(read_results_file(path))
    return out


def read_harness_folder(folder: Path) -> dict[str, dict[str, float]]:
    """One sub-folder per run (its name the run id) -> that run's harness metrics."""
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    out = {p.name: read_run_results(p) for p in runs}
    empty = [k for k, v in out.items() if not v]
    if not out or empty:
        raise DataError(
            f"{folder}: run folder(s) {empty or '(none)'} hold no {RESULTS_GLOB} file; each "
            "run's folder needs the harness's output (lm_eval --output_path)"
        )
    return out
