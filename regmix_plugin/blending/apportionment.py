"""Largest-remainder (Hamilton) apportionment: whole units in proportion to real weights.

One implementation for every caller: the mixture grid (``mixtures.py``), the split of an
evaluation set over its parts (``proxy/data.py``), and whatever else needs integers that sum to
a total. Rule: each part gets the floor of its quota; the units left over go one each to the
parts with the largest fractional parts, ties to the lower index (a stable sort).

Float64 arithmetic, vectorised over rows. The sampler's own apportionment
(:func:`regmix_plugin.blending.counts_after` at a block boundary, in C++) works on 61-bit
quantised integer weights instead; it is exact for those weights but can differ from the float
quotas here at near-ties, so it does not back these functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from regmix_plugin.errors import DataError

__all__ = ["apportion", "largest_remainder"]


def largest_remainder(quotas: Any, total: Any) -> np.ndarray:
    """Round real ``quotas`` to int64 units that sum to ``total`` (per row), largest remainder.

    ``quotas``: 1-D (one row) or 2-D (one apportionment per row), finite and >= 0, each row
    summing to its ``total`` up to float rounding. ``total``: an integer, or one per row.
    Each part gets ``floor(q)``; the ``total - sum(floor(q))`` units left go to the parts with
    the largest ``q - floor(q)``, ties to the lower index. A row whose floors exceed its total or
    leave more units than it has parts is a :class:`DataError` (its quotas do not sum to it).
    """
    q = np.asarray(quotas, dtype=np.float64)
    if q.ndim not in (1, 2) or q.shape[-1] == 0:
        raise DataError(f"quotas must be a non-empty 1-D or 2-D array, got shape {q.shape}")
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise DataError("quotas must be finite numbers >= 0")
    rows = q if q.ndim == 2 else q[None, :]
    totals = np.broadcast_to(np.asarray(total, dtype=np.int64), (rows.shape[0],))
    base = np.floor(rows)
    rem = rows - base
    short = totals - base.sum(axis=1).astype(np.int64)
    if np.any(short < 0) or np.any(short > rows.shape[1]):
        bad = int(np.flatnonzero((short < 0) | (short > rows.shape[1]))[0])
        raise DataError(
            f"quotas of row {bad} sum to {float(rows[bad].sum())!r}, not to its total "
            f"{int(totals[bad])}: scale them by total / sum first (or use apportion)"
        )
    order = np.argsort(-rem, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(rows.shape[1])[None, :].repeat(len(rows), 0), axis=1)
    units = base.astype(np.int64) + (ranks < short[:, None])
    return units if q.ndim == 2 else units[0]


def apportion(weights: Any, total: Any) -> np.ndarray:
    """Split ``total`` whole units over parts in proportion to ``weights`` (largest remainder).

    ``weights``: 1-D or 2-D (rows), finite, >= 0, each row with a positive sum; ``total``: an
    integer >= 0 or one per row. The quotas are ``weights * total / row sum`` in float64, then
    :func:`largest_remainder` (ties to the lower index). Returns int64 units of the same shape,
    each row summing to its total.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim not in (1, 2) or w.shape[-1] == 0:
        raise DataError(f"weights must be a non-empty 1-D or 2-D array, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DataError("weights must be finite numbers >= 0")
    t = np.asarray(total)
    if not np.issubdtype(t.dtype, np.integer) or np.any(t < 0):
        raise DataError(f"total must be an integer >= 0 (or one per row), got {total!r}")
    sums = w.sum(axis=-1, keepdims=True)
    if np.any(sums <= 0):
        raise DataError("every row of weights needs a positive sum")
    scale = t.astype(np.float64)[..., None] if w.ndim == 2 and t.ndim == 1 else t
    return largest_remainder(w * scale / sums, t)
