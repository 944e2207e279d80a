"""Lazy lookups of the blend sequence, and the errors bad input gets."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from regmix_plugin import _blend
from regmix_plugin.blending import LazyBlendIndex, blend_plan, build_blend_indices
from regmix_plugin.errors import DataError


def test_lazy_lookup_equals_materialised_in_any_order() -> None:
    rng = np.random.default_rng(2)
    w = rng.dirichlet(np.ones(9))
    n = 3 * blend_plan(w).block_size + 123
    index, sample = build_blend_indices(w, n)
    lazy = LazyBlendIndex(w, n)
    assert len(lazy) == n
    # Sequential, random (back and forth across blocks), and vectorised lookups.
    for i in range(0, 2000):
        assert lazy[i] == (index[i], sample[i])
    picks = rng.integers(0, n, size=300)
    for i in picks:
        assert lazy[int(i)] == (index[i], sample[i])
    d, s = lazy.lookup(picks)
    np.testing.assert_array_equal(d, index[picks])
    np.testing.assert_array_equal(s, sample[picks])
    assert lazy[-1] == (index[-1], sample[-1])
    with pytest.raises(IndexError):
        lazy[n]


def test_lazy_lookup_of_a_trillion_token_run_needs_no_index() -> None:
    w = np.array([0.6, 0.3, 0.1])
    n = 10**12  # ~4e15 tokens at seq 4096: no index could be materialised
    lazy = LazyBlendIndex(w, n)
    far = n - 5
    got = [lazy[i] for i in range(far, n)]
    # Counts before `far` are within 1 of w * far, so the per-dataset sample ids are too.
    for k, s in got:
        assert abs(s - w[k] * far) < 6
    clone = pickle.loads(pickle.dumps(lazy))
    assert [clone[i] for i in range(far, n)] == got


@pytest.mark.parametrize(
    ("weights", "needle"),
    [
        ([0.5, -0.1], "weights[1] is -0.1"),
        ([0.5, float("nan")], "weights[1] is nan"),
        ([float("inf"), 1.0], "weights[0] is inf"),
        ([0.0, 0.0], "all 2 weights are 0"),
        ([], "empty"),
        (["a", "b"], "must be real numbers"),
        ([[0.5, 0.5]], "flat list"),
        ([1.0, 1e-30], "would never be sampled"),
    ],
)
def test_bad_weights_are_clear_errors(weights: list, needle: str) -> None:
    with pytest.raises(DataError) as err:
        build_blend_indices(weights, 10)
    assert needle in str(err.value)


@pytest.mark.parametrize("num_samples", [0, -5, 2.5, True])
def test_bad_num_samples(num_samples: object) -> None:
    with pytest.raises(DataError, match="num_samples"):
        build_blend_indices([1.0, 2.0], num_samples)  # type: ignore[arg-type]


def test_binding_checks_dtypes_shapes_and_never_converts() -> None:
    w = np.array([0.5, 0.5])
    good_i, good_s = np.zeros(8, np.int32), np.zeros(8, np.int64)
    cases = [
        (w.astype(np.float32), good_i, good_s, "weights must be a numpy array of dtype float64"),
        (np.array([1, 1]), good_i, good_s, "dtype float64"),
        (w, np.zeros(8, np.int64), good_s, "dtype uint8, int16 or int32"),
        (np.ones(300), np.zeros(8, np.uint8), good_s, "uint8 cannot hold the indices of 300"),
        (w, good_i, np.zeros(8, np.int32), "dataset_sample_index must be a numpy array"),
        (w, np.zeros(7, np.int32), good_s, "must have length 8"),
        (w, [0] * 8, good_s, "must be a numpy array (it receives the output)"),
        (w, np.zeros((8, 1), np.int32), good_s, "must be 1-D"),
        (w, np.zeros(16, np.int32)[::2], good_s, "C-contiguous"),
    ]
    for weights, index, sample, needle in cases:
        with pytest.raises(ValueError) as err:
            _blend.build_blend_indices_into(weights, 8, index, sample)
        assert needle in str(err.value)
    frozen = np.zeros(8, np.int32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _blend.build_blend_indices_into(w, 8, frozen, good_s)
    with pytest.raises(ValueError, match="num_samples must be > 0"):
        _blend.build_blend_indices_into(w, 0, good_i[:0], good_s[:0])
    _blend.build_blend_indices_into(w, 8, good_i, good_s)
    np.testing.assert_array_equal(np.bincount(good_i), [4, 4])


def test_repetition_is_an_error_unless_allowed() -> None:
    with pytest.raises(DataError, match="asks dataset 1 for 50 samples but it holds 20"):
        build_blend_indices([0.5, 0.5], 100, dataset_sizes=[100, 20], allow_repetition=False)
    index, sample = build_blend_indices(
        [0.5, 0.5], 100, dataset_sizes=[100, 20], allow_repetition=True
    )
    assert sample[index == 1].max() == 19  # wrapped into a new epoch
    assert np.bincount(sample[index == 1]).tolist() == [3] * 10 + [2] * 10
