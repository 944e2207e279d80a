"""Results of swarms run by other tools, as the mixtures and results tables ``regmix fit`` reads.

Three sources (``regmix collect --import KIND``):

* **CLIMB** (NeMo Curator's ``nemotron-climb-data-curation`` tutorial): a folder of mixture files
  ``n1.sh``, ``n2.sh``, ... each printing ``weight prefix`` lines (the list Megatron-LM's
  ``--train-data-path`` takes; zero weights are left out, so a domain a file does not name has
  weight 0), and an evaluation table: a CSV with one row per run (the run id in ``run_id`` or
  ``mixture_id``, or CLIMB's ``model_benchmark_path`` whose last path part is the mixture file's
  stem) and numeric metric columns, or a folder with one sub-folder per run holding
  lm-evaluation-harness ``results_*.json`` files (:mod:`regmix_plugin.sweep.harness`). A prefix
  maps to a domain by ``prefix_domains`` (the full prefix or its last path part), else by its last
  path part.
* **Olmix**: ``ratios.csv`` (``run_id``, optional ``name``, one column per domain) and
  ``metrics.csv`` (``run_id``, optional ``name``, one column per metric).
* **plain**: one CSV, an id column first, the domains' weight columns, every other column a
  metric.

Checked, never fixed silently: every domain is known (``domains``: the catalogue's), no run id
repeats, every run has both weights and results, every weight is finite and >= 0, every row sums
to 1 within ``tolerance``. CLIMB writes weights rounded to 5 decimals, so its rows may miss 1 by
a few 1e-5: rows within ``tolerance`` (default 1e-4) but outside the tables' own 1e-6 are divided
by their sum and each such row is listed in :attr:`Imported.rescaled` (and logged); a row further
off is an error.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regmix_plugin.errors import DataError
from regmix_plugin.sweep.harness import read_harness_folder
from regmix_plugin.tables import ID_COLUMN, WEIGHT_SUM_TOLERANCE, Table, write_table

log = logging.getLogger(__name__)

#: Default tolerance on an imported row's sum (CLIMB rounds each weight to 5 decimals).
IMPORT_SUM_TOLERANCE = 1e-4
#: Id columns recognised in evaluation / metrics tables, in order.
ID_COLUMNS = ("run_id", "mixture_id", "model_benchmark_path", "run", "id")
#: CLIMB's mixture files.
CLIMB_FILE = re.compile(r"^n(\d+)\.sh$")


@dataclass
class Imported:
    """The imported mixtures and results (rows in the same order) and what was adjusted."""

    mixtures: Table
    results: Table
    rescaled: dict[str, float] = field(default_factory=dict)
    """Run id -> the row's sum before it was divided by it (within the tolerance only)."""

    def write(self, mixtures_path: str | Path, results_path: str | Path) -> None:
        """Write both tables (``regmix_plugin.tables``, atomically)."""
        write_table(mixtures_path, self.mixtures)
        write_table(results_path, self.results)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path} is empty; expected a header and one row per run")
    header = [h.strip() for h in rows[0]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataError(f"{path}: column(s) {dup} appear more than once in the header")
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise DataError(f"{path} line {i}: {len(r)} cells, the header has {len(header)}")
    return header, [[c.strip() for c in r] for r in rows[1:]]


def _number(text: str, where: str) -> float:
    if text == "" or text.lower() in ("nan", "n/a", "na"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a number") from None


def _id_column(header: list[str], path: Path, wanted: str | None = None) -> int:
    names = (wanted,) if wanted else ID_COLUMNS
    for name in names:
        if name in header:
            return header.index(name)
    raise DataError(f"{path}: no id column; name one of {list(names)} (columns: {header})")


def _run_id(cell: str, column: str) -> str:
    """CLIMB's ``model_benchmark_path`` is a folder per run: its last part is the run id."""
    return Path(cell).name if column == "model_benchmark_path" else cell


def _unique(ids: Sequence[str], where: str) -> None:
    seen: set[str] = set()
    dup = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dup:
        raise DataError(f"{where}: run id(s) {dup} appear more than once; each run once")


def _check_rows(
    ids: list[str], weights: np.ndarray, domains: list[str], where: str, tolerance: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Weights finite and >= 0, rows summing to 1 within ``tolerance`` (see the module doc)."""
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(f"{where}: run {ids[i]!r}, domain {domains[j]!r}: weight {weights[i, j]}")
    sums = weights.sum(axis=1)
    off = np.abs(sums - 1.0)
    if (off > tolerance).any():
        i = int(np.argmax(off))
        raise DataError(
            f"{where}: the weights of run {ids[i]!r} sum to {sums[i]:.9g}, not 1 (tolerance "
            f"{tolerance:g}); fix the file — nothing is renormalised"
        )
    rescaled = {ids[i]: float(sums[i]) for i in np.flatnonzero(off > WEIGHT_SUM_TOLERANCE)}
    for rid, s in rescaled.items():
        log.warning("%s: run %r sums to %.9g (rounded weights): divided by its sum", where, rid, s)
    return weights / sums[:, None], rescaled


def _join(
    weights: dict[str, dict[str, float]],
    metrics: dict[str, dict[str, float]],
    domains: list[str],
    where: str,
    tolerance: float,
) -> Imported:
    """Both sides must name the same runs; the tables keep the weights' run order."""
    only_w = [r for r in weights if r not in metrics]
    only_m = [r for r in metrics if r not in weights]
    if only_w or only_m:
        raise DataError(
            f"{where}: runs with weights but no results {only_w[:10]}, results but no weights "
            f"{only_m[:10]}; every run needs both"
        )
    ids = list(weights)
    w = np.array([[weights[r].get(d, 0.0) for d in domains] for r in ids]).reshape(len(ids), -1)
    w, rescaled = _check_rows(ids, w, domains, where, tolerance)
    columns = sorted({k for m in metrics.values() for k in m})
    y = np.array([[metrics[r].get(c, math.nan) for c in columns] for r in ids]).reshape(
        len(ids), len(columns)
    )
    return Imported(
        Table(ID_COLUMN, ids, list(domains), w), Table(ID_COLUMN, ids, columns, y), rescaled
    )


def _domain_of(prefix: str, prefix_domains: Mapping[str, str]) -> str:
    stem = Path(prefix).name.removesuffix(".bin")
    return prefix_domains.get(prefix, prefix_domains.get(stem, stem))


def read_climb_mixture(
    path: Path, domains: Sequence[str] | None, prefix_domains: Mapping[str, str]
) -> dict[str, float]:
    """One ``nN.sh``: ``weight prefix`` lines between the shell lines; domain -> weight."""
    out: dict[str, float] = {}
    for num, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("cat ") or line == "EOF":
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{path} line {num}: expected 'weight prefix', got {line!r}")
        weight = _number(parts[0], f"{path} line {num}")
        domain = _domain_of(parts[1], prefix_domains)
        if domains is not None and domain not in domains:
            raise DataError(
                f"{path} line {num}: prefix {parts[1]!r} is domain {domain!r}, which is not in "
                f"the catalogue {list(domains)}; map it with prefix_domains"
            )
        if domain in out:
            raise DataError(f"{path} line {num}: domain {domain!r} is listed twice")
        out[domain] = weight
    if not out:
        raise DataError(f"{path}: no 'weight prefix' lines")
    return out


def _metrics_csv(path: Path, skip: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    header, rows = _read_csv(path)
    k = _id_column(header, path)
    keep = [j for j, h in enumerate(header) if j != k and h != "name" and h not in skip]
    ids = [_run_id(r[k], header[k]) for r in rows]
    _unique(ids, str(path))
    return {
        rid: {header[j]: _number(r[j], f"{path} run {rid!r}, {header[j]}") for j in keep}
        for rid, r in zip(ids, rows, strict=True)
    }


def import_climb(
    mixtures_dir: str | Path,
    evaluation: str | Path,
    *,
    domains: Sequence[str] | None = None,
    prefix_domains: Mapping[str, str] | None = None,
    tolerance: float = IMPORT_SUM_TOLERANCE,
) -> Imported:
    """A CLIMB swarm: ``nN.sh`` mixture files and their evaluation (CSV or harness folders)."""
    folder, prefix_domains = Path(mixtures_dir), dict(prefix_domains or {})
    files = sorted(
        (p for p in folder.iterdir() if CLIMB_FILE.match(p.name)),
        key=lambda p: int(CLIMB_FILE.match(p.name).group(1)),  # type: ignore[union-attr]
    )
    if not files:
        raise DataError(f"{folder} holds no CLIMB mixture files (n1.sh, n2.sh, ...)")
    weights = {p.stem: read_climb_mixture(p, domains, prefix_domains) for p in files}
    names = (
        list(domains) if domains is not None else sorted({d for w in weights.values() for d in w})
    )
    ev = Path(evaluation)
    not_metrics = [*names, *(Path(k).name for k in prefix_domains)]  # CLIMB repeats the weights
    metrics = read_harness_folder(ev) if ev.is_dir() else _metrics_csv(ev, skip=not_metrics)
    return _join(weights, metrics, names, f"CLIMB swarm {folder} + {ev}", tolerance)


def _weights_csv(
    path: Path, domains: Sequence[str] | None, id_column: str | None = None
) -> tuple[dict[str, dict[str, float]], list[str], list[str]]:
    """(run -> domain -> weight, domain columns, other columns) of a ratios / plain CSV."""
    header, rows = _read_csv(path)
    k = _id_column(header, path, id_column)
    others = [h for j, h in enumerate(header) if j != k and h != "name"]
    if domains is None:
        cols = others
    else:
        missing = [d for d in domains if d not in header]
        if missing:
            raise DataError(
                f"{path}: no column for domain(s) {missing}; the catalogue's domains are "
                f"{list(domains)}"
            )
        cols = list(domains)
    ids = [r[k] for r in rows]
    _unique(ids, str(path))
    out = {
        rid: {c: _number(r[header.index(c)], f"{path} run {rid!r}, {c}") for c in cols}
        for rid, r in zip(ids, rows, strict=True)
    }
    return out, cols, [h for h in others if h not in cols]


def import_olmix(
    ratios: str | Path,
    metrics: str | Path,
    *,
    domains: Sequence[str] | None = None,
    tolerance: float = IMPORT_SUM_TOLERANCE,
) -> Imported:
    """An Olmix-style ``ratios.csv`` / ``metrics.csv`` pair, joined on ``run_id``."""
    rpath, mpath = Path(ratios), Path(metrics)
    w, cols, _ = _weights_csv(rpath, None, "run_id")
    if domains is not None and sorted(cols) != sorted(domains):
        missing = [d for d in domains if d not in cols]
        unknown = [c for c in cols if c not in domains]
        raise DataError(
            f"{rpath}: its domains do not match the catalogue's: missing {missing}, unknown "
            f"{unknown}; rename the columns to the catalogue's domains"
        )
    return _join(w, _metrics_csv(mpath), list(domains or cols), f"{rpath} + {mpath}", tolerance)


def import_plain(
    path: str | Path,
    *,
    domains: Sequence[str],
    tolerance: float = IMPORT_SUM_TOLERANCE,
) -> Imported:
    """One CSV: the id column first, the ``domains`` as weight columns, the rest metrics."""
    p = Path(path)
    header, _ = _read_csv(p)
    w, cols, metric_cols = _weights_csv(p, domains, header[0])
    if not metric_cols:
        raise DataError(f"{p}: no metric columns besides the domains {list(domains)}")
    header, rows = _read_csv(p)
    metrics = {
        r[0]: {c: _number(r[header.index(c)], f"{p} run {r[0]!r}, {c}") for c in metric_cols}
        for r in rows
    }
    return _join(w, metrics, cols, str(p), tolerance)
