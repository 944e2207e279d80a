"""Megatron's train/validation/test split strings (``--split 969,30,1``): one grammar for all.

Megatron-LM accepts the shares separated by commas or slashes (``98,2,0``, ``98/2/0``), up to
three non-negative numbers, missing ones 0, normalised by their sum. Every reader of a split in
this project (proxy data, emitted blends) uses :func:`parse_split`.
"""

from __future__ import annotations

import math
import re

_SEPARATORS = re.compile(r"[,/]")


def parse_split(split: str) -> tuple[float, float, float]:
    """The train/validation/test shares of a split string, normalised to sum 1.

    Raises ``ValueError`` (with the accepted form) for anything but up to three non-negative
    numbers separated by ``,`` or ``/`` with a positive sum.
    """
    parts = [p.strip() for p in _SEPARATORS.split(split.strip())]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 3 or any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(
            f"split {split!r} is not a Megatron split string; write up to three non-negative "
            "numbers, train,validation,test, for example '98,2,0'"
        )
    values += [0.0] * (3 - len(values))
    total = sum(values)
    if total <= 0:
        raise ValueError(f"split {split!r} has no positive share; for example '98,2,0'")
    return (values[0] / total, values[1] / total, values[2] / total)
