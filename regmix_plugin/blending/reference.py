"""Pure numpy / Python-integer reference of the exact-ratio blend sequence: the test oracle.

It defines the same sequence as the C++ core (``csrc/blend``) by its definition rather than by
the core's data structures: at every slot a linear scan over the domains picks the released one
with the earliest deadline slot, where the C++ build places jobs in key order into a bitmap of
free slots and its lazy walk keeps a heap. All arithmetic that decides the sequence is exact
(numpy ``uint64`` and Python integers), so they agree bit for bit. It is slow (microseconds per
sample): use it for tests, not for training.

The construction (also in ``docs/blending.md``):

1. Quantise: ``W_k = rint(ldexp(x_k, s))`` with ``s`` chosen so that the largest ``W_k`` is
   below ``2**(61 - index_bits)``; the exact ratios are ``W_k / T`` with ``T = sum(W)``.
2. Blocks of ``B >= T / min(W_k > 0)`` samples. At ``n = b * B`` the counts are the
   largest-remainder (Hamilton) apportionment of ``n``, ties to the lower index.
3. Inside a block, slot ``u`` goes to the domain, among those with ``c_k < w_k (n0 + u)`` and
   ``c_k`` below the next boundary count, whose next deadline slot ``ceil((c_k + 1) / w_k - n0)``
   is earliest, ties to the lower index (earliest-deadline-first on integer deadlines).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Mirrors the constants of ``csrc/blend/blend.h``.
MIN_BLOCK_SIZE = 4096
BLOCK_SAMPLES_PER_DOMAIN = 32


@dataclass(frozen=True)
class ReferencePlan:
    """The weight-only part of the sequence (the same fields as the C++ ``Plan``)."""

    weights: tuple[int, ...]
    """Quantised integer weights ``W_k``."""
    total: int
    """``T = sum(W_k)``."""
    block_size: int
    """``B``: samples per block."""
    index_bits: int
    """Bits of a composite key that hold the domain index."""
    frac_bits: int
    """``F``: fractional bits of the fixed-point deadlines."""


def quantise_weights(weights: np.ndarray) -> np.ndarray:
    """The integer weights ``W_k`` (``uint64``) of float64 ``weights`` (already validated)."""
    w = np.asarray(weights, dtype=np.float64)
    index_bits = int(len(w) - 1).bit_length()
    precision = 61 - index_bits
    _, exponent = np.frexp(w.max())
    scaled = np.rint(np.ldexp(w, precision - int(exponent)))
    return scaled.astype(np.uint64)


def make_plan(weights: np.ndarray) -> ReferencePlan:
    """The plan of float64 ``weights`` (finite, >= 0, not all zero; none dropped by rounding)."""
    q = quantise_weights(weights)
    if np.any((np.asarray(weights) > 0) & (q == 0)):
        raise ValueError("a positive weight quantises to 0")
    ints = tuple(int(x) for x in q)
    total = sum(ints)
    smallest = min(x for x in ints if x > 0)
    num_positive = sum(1 for x in ints if x > 0)
    block = max(-(-total // smallest), MIN_BLOCK_SIZE, BLOCK_SAMPLES_PER_DOMAIN * num_positive)
    index_bits = int(len(ints) - 1).bit_length()
    frac_bits = 62 - block.bit_length() - index_bits
    if frac_bits < 0:
        raise ValueError("weights too extreme for 64-bit keys")
    return ReferencePlan(ints, total, block, index_bits, frac_bits)


def hamilton(plan: ReferencePlan, n: int) -> list[int]:
    """Largest-remainder apportionment of ``n`` under ``W / T``; ties go to the lower index."""
    prods = [w * n for w in plan.weights]
    counts = [p // plan.total for p in prods]
    rems = [p % plan.total for p in prods]
    left = n - sum(counts)
    for k in sorted(range(len(counts)), key=lambda k: (-rems[k], k))[:left]:
        counts[k] += 1
    return counts


def _walk_block(
    plan: ReferencePlan, block: int, length: int, out_index: np.ndarray, out_sample: np.ndarray
) -> list[int]:
    """Fill ``length`` slots of ``block``; return the counts at the end of the walk."""
    n0 = block * plan.block_size
    start = hamilton(plan, n0)
    end = hamilton(plan, n0 + plan.block_size)
    big_t, kb = plan.total, plan.index_bits
    K = len(plan.weights)
    counts = list(start)
    # Per domain: numerator of the next job's deadline (over W_k), its release slot and its key.
    num = [0] * K
    release = np.full(K, np.iinfo(np.uint64).max, dtype=np.uint64)
    keys = np.full(K, np.iinfo(np.uint64).max, dtype=np.uint64)
    for k, w in enumerate(plan.weights):
        if w == 0 or start[k] >= end[k]:
            continue
        # The deadline of job start+1, relative to the block start, is num / w exactly.
        num[k] = (start[k] + 1) * big_t - n0 * w
        prev = start[k] * big_t - n0 * w
        release[k] = prev // w + 1 if prev > 0 else 1
        keys[k] = (-(-num[k] // w) << kb) | k  # (deadline slot ceil(num / w), index)
    for u in range(1, length + 1):
        eligible = release <= np.uint64(u)
        k = int(np.argmin(np.where(eligible, keys, np.iinfo(np.uint64).max)))
        if not eligible[k]:
            raise AssertionError(f"reference: no domain can take slot {u} of block {block}")
        pos = n0 + u - 1
        out_index[pos] = k
        out_sample[pos] = counts[k]
        counts[k] += 1
        if counts[k] >= end[k]:
            release[k] = np.iinfo(np.uint64).max
            continue
        w = plan.weights[k]
        # The next job is released one slot after the floor of this deadline and is due one
        # period T / W_k later.
        release[k] = num[k] // w + 1
        num[k] += big_t
        keys[k] = (-(-num[k] // w) << kb) | k
    return counts


def build_blend_indices_reference(
    weights: np.ndarray, num_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """The same ``(dataset_index int32, dataset_sample_index int64)`` as the C++ core."""
    plan = make_plan(weights)
    out_index = np.zeros(num_samples, dtype=np.int32)
    out_sample = np.zeros(num_samples, dtype=np.int64)
    num_blocks = -(-num_samples // plan.block_size)
    for b in range(num_blocks):
        length = min(plan.block_size, num_samples - b * plan.block_size)
        counts = _walk_block(plan, b, length, out_index, out_sample)
        if length == plan.block_size and counts != hamilton(plan, (b + 1) * plan.block_size):
            raise AssertionError(f"reference: block {b} missed its boundary counts")
    return out_index, out_sample


def prefix_deviations(dataset_index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``count_k(n) - w_k n`` for every prefix ``n = 1..N`` (rows) and domain ``k`` (columns).

    ``w`` is ``weights / weights.sum()`` in float64. Memory ``N * K``: for small tests only.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    onehot = np.zeros((len(dataset_index), len(w)), dtype=np.int64)
    onehot[np.arange(len(dataset_index)), dataset_index] = 1
    n = np.arange(1, len(dataset_index) + 1, dtype=np.float64)[:, None]
    return np.cumsum(onehot, axis=0) - w[None, :] * n
