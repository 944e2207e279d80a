"""Exact-ratio blending: every domain at its mixture's ratio at every step of training.

:func:`build_blend_indices` returns the same ``(dataset_index, dataset_sample_index)`` pair as
megatron-core's ``build_blending_indices`` but with a bound Megatron's greedy rule does not
give: at every prefix ``n`` of the stream and for every domain ``k``,
``|count_k(n) - w_k n| < 1``; the final counts are an exact apportionment of ``num_samples``.
The sequence is deterministic, depends only on the weights (the first ``n`` samples are the same
for every ``num_samples >= n``), and :class:`LazyBlendIndex` gives any element of it on demand
with memory independent of its length. The Megatron dataset class that uses it lives in
:mod:`regmix_plugin.megatron`; the numpy oracle in :mod:`regmix_plugin.blending.reference`.
"""

from __future__ import annotations

import importlib
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from regmix_plugin.blending.apportionment import apportion, largest_remainder
from regmix_plugin.errors import DataError

#: Names the algorithm in cache descriptions; bump it whenever the sequence or the stored arrays
#: change (v3: the sequence of v2, with the narrowest dataset-index dtype, see :func:`index_dtype`).
ALGORITHM_VERSION = "regmix-exact-ratio-v3"

#: Largest number of samples the C++ core takes (a sample index and its arithmetic stay in int64).
MAX_SAMPLES = 2**62

#: Longest walk (in samples) a lazy lookup or :func:`counts_after` may need: weights whose block
#: (``blend_plan(weights).block_size``) is longer are rejected by the lazy forms, so that a lookup
#: takes seconds at most (the walk costs tens of nanoseconds per sample), never hours.
MAX_LAZY_WALK = 2**27

__all__ = [
    "ALGORITHM_VERSION",
    "MAX_LAZY_WALK",
    "MAX_SAMPLES",
    "BlendPlan",
    "LazyBlendIndex",
    "apportion",
    "blend_plan",
    "build_blend_indices",
    "check_weights",
    "counts_after",
    "index_dtype",
    "largest_remainder",
    "max_prefix_deviation",
]


def _core() -> Any:
    try:
        return importlib.import_module("regmix_plugin._blend")
    except ImportError as exc:  # pragma: no cover - a broken install
        raise DataError(
            f"the compiled sampler regmix_plugin._blend cannot be imported ({exc}); rebuild it "
            "with `python setup.py build_ext --inplace` or reinstall regmix-plugin"
        ) from None


def check_weights(weights: Any, *, what: str = "weights") -> np.ndarray:
    """``weights`` as a 1-D float64 array, or a :class:`DataError` that names the problem.

    Lists, tuples and real-valued numpy arrays are accepted (integers are converted exactly up to
    2**53). Negative, NaN and infinite values, an empty or all-zero list are errors. Weights
    need not sum to 1: they are normalised.
    """
    arr = np.asarray(weights)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise DataError(f"{what} must be real numbers, got {arr.dtype} values: {weights!r:.200}")
    if arr.ndim != 1:
        raise DataError(
            f"{what} must be a flat list (one weight per dataset), got shape {arr.shape}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.size == 0:
        raise DataError(f"{what} is empty: give one weight per dataset")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        k = int(bad[0])
        raise DataError(
            f"{what}[{k}] is {float(arr[k])!r}: every weight must be a finite number >= 0 "
            f"({bad.size} bad value(s); use 0 to leave a dataset out)"
        )
    if not np.any(arr > 0):
        raise DataError(f"all {arr.size} {what} are 0: give at least one dataset a positive weight")
    return arr


def _check_num_samples(num_samples: Any, *, what: str = "num_samples") -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral):
        raise DataError(f"{what} must be an integer, got {num_samples!r}")
    n = int(num_samples)
    if n <= 0:
        raise DataError(f"{what} must be > 0, got {n}")
    if n > MAX_SAMPLES:
        raise DataError(f"{what} must be at most 2**62 = {MAX_SAMPLES}, got {n}")
    return n


def _check_num_threads(num_threads: Any) -> int:
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise DataError(f"num_threads must be an integer (0: one per core), got {num_threads!r}")
    t = int(num_threads)
    if not 0 <= t <= 4096:
        raise DataError(f"num_threads must be 0 (one per core) or a count of threads, got {t}")
    return t


def index_dtype(num_datasets: int) -> np.dtype:
    """The narrowest integer dtype of a dataset index over ``num_datasets`` datasets.

    ``uint8`` up to 256 datasets, ``int16`` up to 32,768 (megatron-core's dtype), ``int32``
    beyond: the output never takes more memory than megatron-core's ``build_blending_indices``.
    """
    if num_datasets <= 2**8:
        return np.dtype(np.uint8)
    if num_datasets <= 2**15:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def _output_bytes_limit() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None


def _check_lazy_walk(block_size: int, longest: int, what: str) -> None:
    walk = min(block_size, longest)
    if walk > MAX_LAZY_WALK:
        raise DataError(
            f"{what} would walk up to {walk:,} samples per call: these weights give blocks of "
            f"{block_size:,} samples (the smallest positive weight is about 1/{block_size:,} of "
            f"the total), above the limit MAX_LAZY_WALK = 2**27; raise the smallest weights to "
            f"at least 1/{MAX_LAZY_WALK:,} of the total or set them to 0, or materialise the "
            "blend with build_blend_indices"
        )


@dataclass(frozen=True)
class BlendPlan:
    """What the sequence of a set of weights is built from (for logs, docs and tests)."""

    quantised_weights: np.ndarray
    """The integer weights ``W_k``; the exact ratios used are ``W_k / total``."""
    total: int
    """Sum of the quantised weights (below 2**61)."""
    block_size: int
    """Samples per block ``B`` (at least ``total / min W_k``): counts are closed-form at multiples
    of it, and a lazy lookup walks at most one block."""


def blend_plan(weights: Any) -> BlendPlan:
    """The quantised weights and block size the sampler uses for ``weights``."""
    w = check_weights(weights)
    try:
        info = _core().plan_info(w)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return BlendPlan(
        quantised_weights=info["quantised_weights"],
        total=int(info["total"]),
        block_size=int(info["block_size"]),
    )


def build_blend_indices(
    weights: Any,
    num_samples: int,
    *,
    dataset_sizes: Sequence[int] | None = None,
    allow_repetition: bool = True,
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact-ratio blend of ``num_samples`` samples over ``len(weights)`` datasets.

    Returns ``(dataset_index, dataset_sample_index)``: the dataset index in the narrowest dtype
    that holds it (:func:`index_dtype`: ``uint8``, ``int16`` or ``int32``; up to 2**31 - 1
    datasets) and ``int64``; sample ``i`` of the blend is sample ``dataset_sample_index[i]`` of
    dataset ``dataset_index[i]``. Weights are normalised; a zero weight gives its dataset no
    samples. With ``dataset_sizes``, a dataset asked for more samples than it holds is an error
    unless ``allow_repetition``, in which case its sample index wraps around (a new epoch).
    ``num_threads`` (0: one per core) splits the work by blocks; the result does not depend on it.
    A blend whose two arrays would not fit in the machine's memory is a :class:`DataError` that
    points to :class:`LazyBlendIndex`.
    """
    w = check_weights(weights)
    n = _check_num_samples(num_samples)
    threads = _check_num_threads(num_threads)
    dtype = index_dtype(w.size)
    need = n * (dtype.itemsize + 8)
    limit = _output_bytes_limit()
    if limit is not None and need > limit:
        raise DataError(_too_big(n, need, f"this machine's {limit / 2**30:.1f} GiB of memory"))
    try:
        dataset_index = np.empty(n, dtype=dtype)
        dataset_sample_index = np.empty(n, dtype=np.int64)
    except MemoryError:
        raise DataError(_too_big(n, need, "the memory available now")) from None
    try:
        _core().build_blend_indices_into(
            w, n, dataset_index, dataset_sample_index, num_threads=threads
        )
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if dataset_sizes is not None:
        sizes = np.asarray(dataset_sizes, dtype=np.int64)
        if sizes.shape != w.shape or np.any(sizes < 0):
            raise DataError(
                f"dataset_sizes must hold one count >= 0 per weight ({w.size}), "
                f"got {dataset_sizes!r}"
            )
        counts = np.bincount(dataset_index, minlength=w.size)
        over = np.flatnonzero(counts > sizes)
        if over.size and not allow_repetition:
            k = int(over[0])
            raise DataError(
                f"the blend asks dataset {k} for {int(counts[k])} samples but it holds "
                f"{int(sizes[k])}; lower its weight or num_samples, give it more data, or allow "
                "repetition"
            )
        for k_over in over.tolist():
            if sizes[k_over] == 0:
                raise DataError(f"dataset {k_over} is empty but has a positive weight")
            dataset_sample_index[dataset_index == k_over] %= sizes[k_over]
    return dataset_index, dataset_sample_index


def _too_big(n: int, need: int, what: str) -> str:
    return (
        f"a materialised blend of {n:,} samples needs {need / 2**30:,.1f} GiB for its two index "
        f"arrays, more than {what}; look samples up on demand with LazyBlendIndex(weights, "
        "num_samples) (memory independent of num_samples), or in megatron-core with "
        "use_exact_ratio_blending(lazy_above=...) or REGMIX_BLEND_LAZY_ABOVE"
    )


def counts_after(weights: Any, num_samples: int) -> np.ndarray:
    """Per-dataset counts among the first ``num_samples`` samples, without materialising them.

    Costs O(K) 128-bit divisions plus a walk of ``num_samples % block_size`` samples; weights
    that would need a walk above :data:`MAX_LAZY_WALK` samples are a :class:`DataError`.
    """
    w = check_weights(weights)
    n = _check_num_samples(num_samples)
    plan = blend_plan(w)
    _check_lazy_walk(plan.block_size, n % plan.block_size, f"counts_after(weights, {n})")
    try:
        counts: np.ndarray = _core().counts_after(w, n)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return counts


def max_prefix_deviation(dataset_index: np.ndarray, weights: Any) -> float:
    """Largest ``|count_k(n) - w_k n|`` over all prefixes ``n`` and datasets ``k``.

    ``dataset_index`` may be uint8, int16 (Megatron's), int32 or int64; ``w`` is ``weights``
    normalised in float64. One pass over the stream.
    """
    w = check_weights(weights)
    arr = np.ascontiguousarray(dataset_index)
    try:
        return float(_core().max_prefix_deviation(arr, w))
    except ValueError as exc:
        raise DataError(str(exc)) from None


class LazyBlendIndex:
    """The blend sequence of :func:`build_blend_indices`, element by element, on demand.

    Memory is O(number of datasets), whatever ``num_samples`` is: nothing is materialised. A
    lookup at or after the previous one in the same block (``blend_plan(weights).block_size``
    samples) continues the walk, O(log K) per sample walked; a lookup elsewhere recomputes the
    block's start counts (O(K) 128-bit divisions) and walks from the block start, at most
    ``block_size`` steps. Sequential reading therefore costs O(log K) per sample. Weights whose
    walk could exceed :data:`MAX_LAZY_WALK` samples are a :class:`DataError`.
    """

    def __init__(self, weights: Any, num_samples: int) -> None:
        self.weights = check_weights(weights)
        self.num_samples = _check_num_samples(num_samples)
        _check_lazy_walk(
            blend_plan(self.weights).block_size, self.num_samples, "a lazy blend lookup"
        )
        try:
            self._cursor = _core().Cursor(self.weights)
        except ValueError as exc:
            raise DataError(str(exc)) from None

    @property
    def block_size(self) -> int:
        """Samples per block of the sequence."""
        return int(self._cursor.block_size)

    def __len__(self) -> int:
        return self.num_samples

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"blend indices must be integers, got {index!r}")
        i = int(index)
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"blend index {index} out of range for {self.num_samples} samples")
        return i

    def __getitem__(self, index: int) -> tuple[int, int]:
        """``(dataset, sample within that dataset)`` of global sample ``index``."""
        dataset, sample = self._cursor.lookup(self._check_index(index))
        return int(dataset), int(sample)

    def lookup(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`__getitem__`: ``(dataset int32[], sample int64[])``."""
        arr = np.asarray(indices)
        if arr.dtype == object:  # Python integers beyond 64 bits (or not integers at all)
            values = arr.ravel().tolist()
            if all(isinstance(v, numbers.Integral) for v in values):
                raise IndexError(f"blend indices must lie in [0, {self.num_samples})")
            raise TypeError(f"blend indices must be integers, got {values[:3]!r}...")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"blend indices must be integers, got {arr.dtype} values")
        if arr.size and arr.dtype.kind == "u" and int(arr.max()) >= self.num_samples:
            raise IndexError(f"blend indices must lie in [0, {self.num_samples})")
        idx = arr.astype(np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise IndexError(f"blend indices must lie in [0, {self.num_samples})")
        dataset = np.empty(idx.size, dtype=np.int32)
        sample = np.empty(idx.size, dtype=np.int64)
        self._cursor.lookup_into(np.ascontiguousarray(idx), dataset, sample)
        return dataset, sample

    def __getstate__(self) -> dict[str, Any]:
        # The C++ cursor is a cache: rebuild it in the receiving process (DataLoader workers).
        return {"weights": self.weights, "num_samples": self.num_samples}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["weights"], state["num_samples"])  # type: ignore[misc]
