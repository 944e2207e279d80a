"""Edges of the blending API: bounded work, clear errors, the index dtype, apportionment."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regmix_plugin import _blend
from regmix_plugin.blending import (
    MAX_LAZY_WALK,
    LazyBlendIndex,
    apportion,
    blend_plan,
    build_blend_indices,
    counts_after,
    index_dtype,
    largest_remainder,
    max_prefix_deviation,
)
from regmix_plugin.errors import DataError

TINY = [1e-17, 1.0]  # accepted weights whose blocks are ~1e17 samples long


def test_tiny_weights_bound_the_work_of_the_lazy_forms() -> None:
    assert blend_plan(TINY).block_size > MAX_LAZY_WALK
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="MAX_LAZY_WALK") as err:
        counts_after(TINY, 10**18)
    assert "smallest weights" in str(err.value)
    with pytest.raises(DataError, match="MAX_LAZY_WALK"):
        LazyBlendIndex(TINY, 10**18)
    assert time.perf_counter() - t0 < 5.0  # rejected up front, not after a walk
    # Short walks with the same weights stay allowed, and agree with the materialised blend.
    index, sample = build_blend_indices(TINY, 5000)
    np.testing.assert_array_equal(counts_after(TINY, 5000), np.bincount(index, minlength=2))
    lazy = LazyBlendIndex(TINY, 5000)
    assert [lazy[i] for i in range(4990, 5000)] == list(
        zip(index[4990:].tolist(), sample[4990:].tolist(), strict=True)
    )
    # counts_after at a block boundary needs no walk at all.
    b = blend_plan(TINY).block_size
    np.testing.assert_array_equal(
        counts_after(TINY, 3 * b), _blend.boundary_counts(np.asarray(TINY), 3 * b)
    )


def test_a_blend_too_big_for_memory_points_to_the_lazy_form() -> None:
    with pytest.raises(DataError, match="LazyBlendIndex") as err:
        build_blend_indices([0.5, 0.5], 10**12)
    assert "GiB" in str(err.value) and "lazy_above" in str(err.value)


@pytest.mark.parametrize("threads", [-3, -1, 1.5, "2", True, 10**6])
def test_bad_thread_counts_are_rejected(threads: object) -> None:
    with pytest.raises(DataError, match="num_threads"):
        build_blend_indices([0.5, 0.5], 100, num_threads=threads)  # type: ignore[arg-type]


def test_the_binding_rejects_negative_thread_counts() -> None:
    index, sample = np.zeros(10, np.uint8), np.zeros(10, np.int64)
    with pytest.raises(ValueError, match="num_threads must be >= 0"):
        _blend.build_blend_indices_into(np.array([0.5, 0.5]), 10, index, sample, num_threads=-3)


@pytest.mark.parametrize("n", [2**64, 2**63, 2**62 + 1, -(2**64)])
def test_huge_sample_counts_are_value_errors(n: int) -> None:
    for call in (
        lambda: build_blend_indices([0.5, 0.5], n),
        lambda: counts_after([0.5, 0.5], n),
        lambda: LazyBlendIndex([0.5, 0.5], n),
    ):
        with pytest.raises(DataError, match="num_samples"):
            call()


def test_huge_lookups_are_index_errors() -> None:
    lazy = LazyBlendIndex([0.5, 0.5], 1000)
    for bad in (2**64, 2**63, -(2**64)):
        with pytest.raises(IndexError):
            lazy[bad]
        with pytest.raises(IndexError):
            lazy.lookup([bad])
    with pytest.raises(IndexError):
        lazy.lookup(np.array([2**63], dtype=np.uint64))
    with pytest.raises(TypeError):
        lazy.lookup([0.5])


def test_index_dtype_is_the_narrowest_that_holds_k() -> None:
    assert [index_dtype(k) for k in (1, 256, 257, 32768, 32769)] == [
        np.uint8,
        np.uint8,
        np.int16,
        np.int16,
        np.int32,
    ]
    for k in (256, 257):
        w = np.random.default_rng(k).dirichlet(np.ones(k))
        index, sample = build_blend_indices(w, 20_000)
        assert index.dtype == index_dtype(k)
        wide, wide_sample = np.empty(20_000, np.int32), np.empty(20_000, np.int64)
        _blend.build_blend_indices_into(w, 20_000, wide, wide_sample)
        np.testing.assert_array_equal(index.astype(np.int32), wide)
        np.testing.assert_array_equal(sample, wide_sample)
        assert int(index.max()) == int(wide.max())
        assert max_prefix_deviation(index, w) == max_prefix_deviation(wide, w) < 1.0


@pytest.mark.parametrize(
    ("k", "dtype"),
    [
        (255, np.uint8),
        (256, np.uint8),  # index 255: uint8's largest value
        (257, np.int16),
        (32767, np.int16),
        (32768, np.int16),  # index 32767: int16's largest value (Megatron's dtype)
        (32769, np.int32),
    ],
)
def test_index_dtype_at_the_boundaries_holds_every_index(k: int, dtype: type) -> None:
    # Equal weights and N = 2K: every dataset appears exactly twice, so the largest index
    # K - 1 is written; a dtype one bit too narrow would wrap it (255 -> -1 in int8,
    # 32768 -> -32768 in int16) and the counts below would fail.
    assert index_dtype(k) == np.dtype(dtype)
    index, sample = build_blend_indices(np.ones(k), 2 * k)
    assert index.dtype == np.dtype(dtype)
    assert index.itemsize <= 2 or k > 32768  # never wider than megatron-core's int16 up to 32768
    assert int(index.min()) == 0 and int(index.max()) == k - 1
    np.testing.assert_array_equal(np.bincount(index.astype(np.int64), minlength=k), np.full(k, 2))
    wide, wide_sample = np.empty(2 * k, np.int32), np.empty(2 * k, np.int64)
    _blend.build_blend_indices_into(np.ones(k), 2 * k, wide, wide_sample)
    np.testing.assert_array_equal(index.astype(np.int32), wide)
    np.testing.assert_array_equal(sample, wide_sample)


def _largest_remainder_oracle(quotas: list[float], total: int) -> list[int]:
    """Plain-Python largest remainder: floors, then leftovers by remainder, lower index first."""
    floors = [math.floor(q) for q in quotas]
    left = total - sum(floors)
    ranked = sorted(range(len(quotas)), key=lambda k: (-(quotas[k] - floors[k]), k))
    for k in ranked[:left]:
        floors[k] += 1
    return floors


weight_lists = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-6, 1e3), st.sampled_from([0.25, 0.5, 1.0, 3.0])),
    min_size=1,
    max_size=12,
).filter(lambda w: sum(w) > 0)


@settings(max_examples=300, deadline=None)
@given(weight_lists, st.integers(0, 10**6))
def test_apportion_matches_a_plain_python_oracle(weights: list[float], total: int) -> None:
    w = np.asarray(weights)
    quotas = (w * float(total) / w.sum()).tolist()
    got = apportion(w, total)
    assert got.dtype == np.int64 and int(got.sum()) == total
    assert got.tolist() == _largest_remainder_oracle(quotas, total)
    assert np.all(np.abs(got - np.asarray(quotas)) < 1.0 + 1e-9)


def test_ties_go_to_the_lower_index_and_rows_are_independent() -> None:
    # Three equal quotas of 1/3 of 4: one unit left, to index 0; exact ties of 1/2 the same.
    assert apportion([1, 1, 1], 4).tolist() == [2, 1, 1]
    assert apportion([1, 1, 1, 1], 2).tolist() == [1, 1, 0, 0]
    rows = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    got = apportion(rows, np.array([4, 7, 3]))
    assert got.tolist() == [[2, 1, 1], [0, 5, 2], [3, 0, 0]]
    np.testing.assert_array_equal(apportion(rows, 10), [apportion(r, 10) for r in rows])


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: apportion([1.0, -1.0], 3), ">= 0"),
        (lambda: apportion([0.0, 0.0], 3), "positive sum"),
        (lambda: apportion([1.0, float("nan")], 3), "finite"),
        (lambda: apportion([1.0, 1.0], 2.5), "total must be an integer"),
        (lambda: apportion([], 3), "non-empty"),
        (lambda: largest_remainder([1.5, 1.5], 7), "not to its total 7"),
    ],
)
def test_apportionment_errors(call: object, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("weights", [[1e-6, 1.0], [0.3, 0.7], [1.0, 0.0, 2.0, 1e-5]])
def test_the_merge_path_of_few_domains_equals_the_lazy_walk(weights: list[float]) -> None:
    """Two domains (or blocks where two remain) sort chunks by merging: same sequence."""
    b = blend_plan(weights).block_size
    n = 2 * b + b // 2 + 7  # several blocks, many chunks per block when b is large
    index, sample = build_blend_indices(weights, n, num_threads=1)
    picks = np.unique(
        np.concatenate([np.arange(0, 3000), np.arange(n - 3000, n), np.arange(b - 50, b + 50)])
    )
    d, s = LazyBlendIndex(weights, n).lookup(picks)
    np.testing.assert_array_equal(index[picks], d)
    np.testing.assert_array_equal(sample[picks], s)
    np.testing.assert_array_equal(
        np.bincount(index, minlength=len(weights)), counts_after(weights, n)
    )
