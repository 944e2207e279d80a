"""Writing real Megatron ``.bin/.idx`` datasets with megatron-core's own writer.

Used by the quickstart's synthetic corpus and by the tests. Files are written under temporary
names and renamed into place (``.bin`` first, ``.idx`` last), so a crash never leaves a prefix
whose ``.idx`` describes a partial ``.bin``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def write_indexed_dataset(
    prefix: str | os.PathLike[str],
    documents: Iterable[np.ndarray],
    *,
    dtype: type[np.number] = np.int32,
) -> int:
    """Write ``documents`` (1-D token arrays) as ``prefix.bin``/``prefix.idx``; return total tokens.

    ``dtype`` is the on-disk token type (Megatron uses ``uint16`` for vocabularies under 65,500,
    ``int32`` otherwise).
    """
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp = prefix.with_name(f".{prefix.name}.tmp{os.getpid()}")
    bin_tmp, idx_tmp = Path(f"{tmp}.bin"), Path(f"{tmp}.idx")
    total = 0
    try:
        builder = IndexedDatasetBuilder(str(bin_tmp), dtype=dtype)
        for doc in documents:
            arr = np.asarray(doc)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(
                    f"each document must be a non-empty 1-D array, got shape {arr.shape}"
                )
            builder.add_document(torch.from_numpy(arr.astype(np.int64)), [int(arr.size)])
            total += int(arr.size)
        builder.finalize(str(idx_tmp))
        os.replace(bin_tmp, f"{prefix}.bin")
        os.replace(idx_tmp, f"{prefix}.idx")
    finally:
        for leftover in (bin_tmp, idx_tmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return total
