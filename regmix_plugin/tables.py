"""CSV tables keyed by an id column: mixtures tables and results tables.

Both have the same shape: the first column is the id (``mixture_id`` in the project's own
files, ``index`` in the paper's released files), every other column is numeric. A mixtures table
holds one weight column per domain; a results table one column per metric. Empty cells and
``nan`` read as NaN (a missing result); anything else non-numeric is an error naming the cell.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regmix_plugin.errors import DataError
from regmix_plugin.io import atomic_open

ID_COLUMN = "mixture_id"
#: How far the weights of a mixture may sum away from 1 before it is an error (float noise only:
#: nothing is renormalised silently). The paper's released tables, rounded to 3 decimals, need
#: a looser tolerance, passed explicitly by their reader.
WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Table:
    """A CSV table: ids, column names and a float64 matrix ``[len(ids), len(columns)]``."""

    id_column: str
    ids: list[str]
    columns: list[str]
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.ids), len(self.columns)):
            raise DataError(
                f"table shape {self.values.shape} does not match "
                f"{len(self.ids)} ids x {len(self.columns)} columns"
            )

    def column(self, name: str) -> np.ndarray:
        """The values of one column; a missing name is a :class:`DataError` listing the columns."""
        try:
            return self.values[:, self.columns.index(name)]
        except ValueError:
            raise DataError(f"column {name!r} not found; columns are {self.columns}") from None

    def row(self, mixture_id: str) -> np.ndarray:
        """The values of one row by id."""
        try:
            return self.values[self.ids.index(mixture_id)]
        except ValueError:
            raise DataError(
                f"id {mixture_id!r} not found in the table ({len(self.ids)} rows)"
            ) from None

    def select(self, columns: list[str]) -> np.ndarray:
        """The matrix of the named columns, in that order."""
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise DataError(f"column(s) {missing} not found; columns are {self.columns}")
        return self.values[:, [self.columns.index(c) for c in columns]]


def read_table(path: str | os.PathLike[str]) -> Table:
    """Read a CSV whose first column is an id and whose other columns are numbers."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"table {str(p)!r} is a directory; pass the path of a CSV file")
    if not p.is_file():
        raise DataError(f"table {str(p)!r} does not exist")
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise DataError(f"{p}: not UTF-8 text; pass a CSV table") from None
    except csv.Error as exc:
        raise DataError(f"{p}: not a CSV table ({exc})") from None
    if not rows or not rows[0]:
        raise DataError(f"{p}: empty file, expected a header row")
    header = [h.strip() for h in rows[0]]
    if len(header) < 2:
        raise DataError(f"{p}: expected an id column and at least one value column, got {header}")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{p}: duplicate column name(s) {dup}")
    ids: list[str] = []
    values: list[list[float]] = []
    seen: set[str] = set()
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{p}:{lineno}: {len(row)} cells, the header has {len(header)}")
        rid = row[0].strip()
        if not rid:
            raise DataError(f"{p}:{lineno}: empty id in column {header[0]!r}")
        if rid in seen:
            raise DataError(f"{p}:{lineno}: duplicate id {rid!r}; ids must be unique")
        seen.add(rid)
        ids.append(rid)
        out = []
        for name, cell in zip(header[1:], row[1:], strict=True):
            c = cell.strip()
            if c == "" or c.lower() == "nan":
                out.append(math.nan)
                continue
            try:
                out.append(float(c))
            except ValueError:
                raise DataError(
                    f"{p}:{lineno}: column {name!r} holds {c!r}, not a number"
                ) from None
        values.append(out)
    arr = np.asarray(values, dtype=np.float64).reshape(len(ids), len(header) - 1)
    return Table(header[0], ids, header[1:], arr)


def format_number(x: float) -> str:
    """Shortest text that reads back to the same float (``repr``); NaN as an empty cell."""
    return "" if math.isnan(x) else repr(float(x))


def write_table(path: str | os.PathLike[str], table: Table) -> None:
    """Write a table atomically, floats in their shortest round-trip form."""
    with atomic_open(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([table.id_column, *table.columns])
        for rid, row in zip(table.ids, table.values, strict=True):
            w.writerow([rid, *(format_number(x) for x in row)])


def check_weights_table(
    table: Table,
    source: str | os.PathLike[str],
    *,
    domains: list[str] | None = None,
    tolerance: float = WEIGHT_SUM_TOLERANCE,
) -> None:
    """The one validator of a mixtures (weights) table, shared by every command that reads one.

    Checks: at least one row; with ``domains``, exactly those columns (any order); every weight
    finite and >= 0; no all-zero row; every row sums to 1 within ``tolerance``. Raises
    :class:`DataError` naming ``source``, the row and what to fix. Nothing is renormalised.
    """
    if domains is not None:
        missing = [d for d in domains if d not in table.columns]
        extra = [c for c in table.columns if c not in domains]
        if missing or extra:
            raise DataError(
                f"{source} does not match the domains: columns missing {missing}, not a domain "
                f"{extra} (domains: {domains}). Redraw it with `regmix sample CONFIG`, or fix "
                "the domains section of the config"
            )
    if not table.ids:
        raise DataError(
            f"{source} has no mixtures (a header and no rows); draw some with `regmix sample`"
        )
    w = table.values
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(
            f"{source}: mixture {table.ids[i]!r}, domain {table.columns[j]!r}: weight "
            f"{'empty' if np.isnan(w[i, j]) else w[i, j]} is not a finite number >= 0"
        )
    sums = w.sum(axis=1)
    zero = sums == 0
    if zero.any():
        raise DataError(
            f"{source}: mixture {table.ids[int(np.argmax(zero))]!r} has every weight 0; a mixture "
            "needs at least one domain"
        )
    off = np.abs(sums - 1.0) > tolerance
    if off.any():
        i = int(np.argmax(off))
        raise DataError(
            f"{source}: the weights of mixture {table.ids[i]!r} sum to {float(sums[i])!r}, not 1 "
            f"(tolerance {tolerance:g}; {int(off.sum())} row(s) are off); fix the rows, nothing "
            "is renormalised silently"
        )
