"""The Megatron indexed-dataset index (``.idx``): the one reader of its header in this project.

A Megatron prefix is ``<prefix>.bin`` (tokens) plus ``<prefix>.idx`` (header, sequence lengths,
pointers, document boundaries). :func:`read_index_counts` reads counts from the ``.idx`` alone and
checks it against the ``.bin``'s size, so a truncated or mismatched pair is caught before any
training starts.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regmix_plugin.errors import DataError

#: Magic bytes that open every Megatron ``.idx`` file, and its only version.
_IDX_MAGIC = b"MMIDIDX\x00\x00"
_IDX_VERSION = 1
#: Header bytes: magic (9), version <Q (8), dtype code <B (1), sequence count <Q (8),
#: document count <Q (8).
_IDX_HEADER_BYTES = 34
#: Megatron's ``DType`` codes -> token size in bytes (uint8, int8, int16, int32, int64, float64,
#: float32, uint16).
_IDX_DTYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 8, 7: 4, 8: 2}


@dataclass(frozen=True)
class IndexCounts:
    """What a ``.idx`` header says about one Megatron prefix."""

    num_sequences: int
    """Sequences (Megatron's unit of storage; one per document for text data)."""
    num_documents: int
    """Documents."""
    num_tokens: int
    """Tokens (the sum of the sequence lengths)."""
    token_bytes: int
    """Bytes per token in the ``.bin`` file."""


def read_index_counts(prefix: str | os.PathLike[str]) -> IndexCounts:
    """Token and document counts of a Megatron prefix, from its ``.idx`` file alone.

    The ``.bin`` is not read; its size is compared with the header's token count, so a truncated
    or mismatched pair is caught here. Raises :class:`DataError` naming the file and the problem.
    """
    idx = Path(f"{prefix}.idx")
    binf = Path(f"{prefix}.bin")
    if not idx.is_file():
        raise DataError(f"{idx}: index file not found")
    if not binf.is_file():
        raise DataError(f"{binf}: data file not found (its index {idx.name} exists)")
    size = idx.stat().st_size
    fix = "rebuild the prefix with Megatron's preprocess_data.py or IndexedDatasetBuilder"
    with idx.open("rb") as f:
        head = f.read(_IDX_HEADER_BYTES)
    if len(head) < _IDX_HEADER_BYTES or head[:9] != _IDX_MAGIC:
        raise DataError(
            f"{idx}: not a Megatron index (header {head[:9]!r}, expected {_IDX_MAGIC!r}); {fix}"
        )
    version, code, num_seq, num_doc_idx = struct.unpack("<QBQQ", head[9:])
    if version != _IDX_VERSION:
        raise DataError(f"{idx}: index version {version}, only {_IDX_VERSION} is known; {fix}")
    if code not in _IDX_DTYPE_BYTES:
        raise DataError(
            f"{idx}: token dtype code {code} is unknown (known: {sorted(_IDX_DTYPE_BYTES)}); {fix}"
        )
    expected = _IDX_HEADER_BYTES + 12 * num_seq + 8 * num_doc_idx
    # Multimodal indexes carry one extra byte per sequence (the sequence modes).
    if size not in (expected, expected + num_seq):
        raise DataError(
            f"{idx}: the header announces {num_seq} sequences and {num_doc_idx} document "
            f"boundaries ({expected} bytes), but the file has {size} bytes: it is truncated or "
            f"corrupt; {fix}"
        )
    if num_doc_idx < 1:
        raise DataError(f"{idx}: no document boundaries in the header; {fix}")
    mm = np.memmap(idx, dtype=np.uint8, mode="r")
    lengths = np.frombuffer(mm, dtype=np.int32, count=num_seq, offset=_IDX_HEADER_BYTES)
    doc_idx = np.frombuffer(
        mm, dtype=np.int64, count=num_doc_idx, offset=_IDX_HEADER_BYTES + 12 * num_seq
    )
    if num_seq and int(lengths.min()) < 0:
        raise DataError(f"{idx}: negative sequence length in the index; {fix}")
    if int(doc_idx[0]) != 0 or int(doc_idx[-1]) != num_seq or np.any(np.diff(doc_idx) < 0):
        raise DataError(
            f"{idx}: document boundaries are inconsistent (first {int(doc_idx[0])}, last "
            f"{int(doc_idx[-1])}, {num_seq} sequences); {fix}"
        )
    num_tokens = int(lengths.sum(dtype=np.int64))
    token_bytes = _IDX_DTYPE_BYTES[code]
    pointers = np.frombuffer(
        mm, dtype=np.int64, count=num_seq, offset=_IDX_HEADER_BYTES + 4 * num_seq
    )
    if num_seq and (
        int(pointers[0]) != 0
        or np.any(np.diff(pointers) != lengths[:-1].astype(np.int64) * token_bytes)
    ):
        raise DataError(
            f"{idx}: the sequence pointers disagree with the sequence lengths (the index is "
            f"corrupt); {fix}"
        )
    bin_size = binf.stat().st_size
    if bin_size != num_tokens * token_bytes:
        raise DataError(
            f"{binf}: {bin_size} bytes, but its index describes {num_tokens} tokens of "
            f"{token_bytes} bytes ({num_tokens * token_bytes} bytes): the pair does not match "
            f"(truncated copy?); {fix}"
        )
    del mm
    return IndexCounts(
        num_sequences=int(num_seq),
        num_documents=int(num_doc_idx) - 1,
        num_tokens=num_tokens,
        token_bytes=token_bytes,
    )


def read_sequence_lengths(prefix: str | os.PathLike[str]) -> np.ndarray:
    """The sequence lengths (int64) of a Megatron prefix, from its ``.idx`` file, after
    :func:`read_index_counts` has checked the pair (no megatron-core import, no log lines)."""
    counts = read_index_counts(prefix)
    idx = Path(f"{prefix}.idx")
    with idx.open("rb") as f:
        f.seek(_IDX_HEADER_BYTES)
        raw = f.read(4 * counts.num_sequences)
    return np.frombuffer(raw, dtype=np.int32).astype(np.int64)
