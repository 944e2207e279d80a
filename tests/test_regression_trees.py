"""The compiled tree evaluator against real LightGBM boosters: equal predictions, clear refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regmix_plugin.errors import DataError
from regmix_plugin.regression.trees import CompiledTrees, ForestArrays, parse_lightgbm_model


def _booster(x: np.ndarray, y: np.ndarray, rounds: int = 30, **params) -> lgb.Booster:
    base = {"objective": "regression", "verbosity": -1, "num_threads": 1, "seed": 3}
    return lgb.train({**base, **params}, lgb.Dataset(x, y), num_boost_round=rounds)


def _mixtures(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    x = rng.dirichlet(np.full(k, 0.4), size=n)
    x[rng.random(x.shape) < 0.2] = 0.0  # exact zeros, as in real mixtures
    return x


def _target(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.log(x[:, 0] + 0.01) - 2 * x[:, 1] * x[:, 2] + 0.05 * rng.standard_normal(len(x))


@pytest.mark.parametrize("num_leaves", [2, 7, 31, 48, 90])
def test_equals_lightgbm(num_leaves: int) -> None:
    """Trees of every size class (<=32 leaves, <=64, bigger: node-by-node) match LightGBM."""
    rng = np.random.default_rng(num_leaves)
    x = _mixtures(rng, 600, 6)
    y = _target(x, rng)
    booster = _booster(x, y, num_leaves=num_leaves, min_data_in_leaf=3, learning_rate=0.1)
    compiled = CompiledTrees.from_booster(booster)
    test = _mixtures(rng, 3000, 6)
    test[:50] = x[:50]  # values equal to thresholds' neighbours from the training data
    want = booster.predict(test)
    np.testing.assert_allclose(compiled.predict(test), want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(compiled.predict_reference(test), want, rtol=0, atol=1e-9)
    assert compiled.num_trees == booster.num_trees()


def test_threads_and_odd_sizes_agree() -> None:
    rng = np.random.default_rng(1)
    x = _mixtures(rng, 400, 5)
    booster = _booster(x, _target(x, rng), rounds=40, min_data_in_leaf=5)
    compiled = CompiledTrees.from_booster(booster)
    test = _mixtures(rng, 20_001, 5)
    one = compiled.predict(test, num_threads=1)
    two = compiled.predict(test, num_threads=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, booster.predict(test), rtol=0, atol=1e-9)
    for n in (0, 1, 255, 257):
        np.testing.assert_allclose(
            compiled.predict(test[:n]), booster.predict(test[:n]) if n else [], atol=1e-9
        )


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_missing_values_follow_lightgbm(zero_as_missing: bool) -> None:
    """NaN (and, with zero_as_missing, 0) take LightGBM's default direction."""
    rng = np.random.default_rng(7)
    x = _mixtures(rng, 800, 4)
    y = _target(x, rng)
    x[rng.random(x.shape) < 0.1] = np.nan
    booster = _booster(
        x, y, rounds=25, min_data_in_leaf=5, zero_as_missing=zero_as_missing, num_leaves=15
    )
    arrays = parse_lightgbm_model(booster.model_to_string())
    missing_types = set(((arrays.decision_type >> 2) & 3).tolist())
    assert missing_types & {1, 2}, "the model should carry missing-value splits"
    compiled = CompiledTrees(arrays)
    test = _mixtures(rng, 2000, 4)
    test[rng.random(test.shape) < 0.15] = np.nan
    np.testing.assert_allclose(compiled.predict(test), booster.predict(test), rtol=0, atol=1e-9)


def test_nan_without_missing_splits_reads_as_zero() -> None:
    rng = np.random.default_rng(2)
    x = _mixtures(rng, 300, 3)
    booster = _booster(x, _target(x, rng), min_data_in_leaf=5)
    compiled = CompiledTrees.from_booster(booster)
    test = _mixtures(rng, 100, 3)
    test[::3, 0] = np.nan
    np.testing.assert_allclose(compiled.predict(test), booster.predict(test), atol=1e-9)


def test_constant_trees() -> None:
    """Trees that cannot split (one leaf) contribute their constant."""
    rng = np.random.default_rng(4)
    x = _mixtures(rng, 30, 3)
    booster = _booster(x, _target(x, rng), rounds=5, min_data_in_leaf=100)
    compiled = CompiledTrees.from_booster(booster)
    test = _mixtures(rng, 10, 3)
    np.testing.assert_allclose(compiled.predict(test), booster.predict(test), atol=1e-12)


def test_refuses_categorical_multiclass_and_transformed_objectives() -> None:
    rng = np.random.default_rng(5)
    x = np.column_stack([rng.integers(0, 6, 400), rng.random(400)])
    y = x[:, 0] % 2 + x[:, 1]
    cat = lgb.train(
        {"objective": "regression", "verbosity": -1, "min_data_in_leaf": 5},
        lgb.Dataset(x, y, categorical_feature=[0]),
        num_boost_round=5,
    )
    if "num_cat=0" not in cat.model_to_string().replace("num_cat=0\n", "", 0) or any(
        line.startswith("num_cat=") and line != "num_cat=0"
        for line in cat.model_to_string().splitlines()
    ):
        with pytest.raises(DataError, match="categorical"):
            CompiledTrees.from_booster(cat)
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1, "min_data_in_leaf": 5},
        lgb.Dataset(x, (x[:, 0] % 3).astype(int)),
        num_boost_round=3,
    )
    with pytest.raises(DataError, match="single-output"):
        CompiledTrees.from_booster(multi)
    pois = _booster(x, y + 1, rounds=3, objective="poisson")
    with pytest.raises(DataError, match="poisson"):
        CompiledTrees.from_booster(pois)
    with pytest.raises(DataError, match="not a LightGBM text model"):
        CompiledTrees.from_text("hello")


def test_binding_checks_dtypes_and_shapes() -> None:
    rng = np.random.default_rng(6)
    x = _mixtures(rng, 200, 3)
    booster = _booster(x, _target(x, rng), rounds=3, min_data_in_leaf=5)
    arrays = parse_lightgbm_model(booster.model_to_string())
    from regmix_plugin import _trees

    forest = _trees.Forest(
        arrays.num_features,
        arrays.node_offset,
        arrays.leaf_offset,
        arrays.split_feature,
        arrays.threshold,
        arrays.decision_type,
        arrays.left_child,
        arrays.right_child,
        arrays.leaf_value,
    )
    with pytest.raises(ValueError, match="float64"):
        forest.predict(x.astype(np.float32))
    with pytest.raises(ValueError, match="3"):
        forest.predict(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="C-contiguous"):
        forest.predict(np.asfortranarray(np.zeros((4, 3))))
    with pytest.raises(ValueError, match="int32"):
        _trees.Forest(
            arrays.num_features,
            arrays.node_offset,
            arrays.leaf_offset,
            arrays.split_feature.astype(np.int64),
            arrays.threshold,
            arrays.decision_type,
            arrays.left_child,
            arrays.right_child,
            arrays.leaf_value,
        )
    bad_child = arrays.left_child.copy()
    bad_child[0] = 10_000
    with pytest.raises(ValueError, match="out of range"):
        _trees.Forest(
            arrays.num_features,
            arrays.node_offset,
            arrays.leaf_offset,
            arrays.split_feature,
            arrays.threshold,
            arrays.decision_type,
            bad_child,
            arrays.right_child,
            arrays.leaf_value,
        )
    with pytest.raises(DataError, match="feature columns"):
        CompiledTrees(arrays).predict(np.zeros((2, 5)))


CSRC = Path(__file__).resolve().parents[1] / "csrc" / "trees"


def _compile(source: str, *extra: str) -> subprocess.CompletedProcess[str]:
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    flags = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{CSRC}", *extra]
    cmd = [compiler, *flags, "-c", str(CSRC / source), "-o", os.devnull]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_core_compiles_cleanly_without_python() -> None:
    """trees.cpp builds warning-free with -Wall -Wextra and needs no Python headers."""
    for name in ("trees.h", "trees.cpp"):
        text = (CSRC / name).read_text()
        assert "pybind11" not in text and "Python.h" not in text
    result = _compile("trees.cpp")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # the pybind11 binding takes ~20 s to compile on 2 cores
def test_binding_compiles_cleanly() -> None:
    pybind11 = pytest.importorskip("pybind11")
    include = f"-I{sysconfig.get_paths()['include']}"
    result = _compile("bindings.cpp", include, f"-I{pybind11.get_include()}")
    assert result.returncode == 0, result.stderr


def _random_forest(rng: np.random.Generator, num_features: int, grid: np.ndarray) -> ForestArrays:
    """Random trees in LightGBM's layout: random shapes, thresholds on a small grid (ties with
    the inputs happen), every decision type (default left/right, missing none/zero/NaN)."""
    node_offset, leaf_offset = [0], [0]
    feats, thrs, dts, lefts, rights, leaves = [], [], [], [], [], []
    for _ in range(int(rng.integers(1, 12))):
        num_leaves = int(rng.choice([1, 2, 5, 17, 32, 33, 64, 65, 100]))
        # Grow by splitting a random leaf: node i's children are nodes or leaves (~index).
        left, right = [], []
        slots: list[tuple[int, int]] = []  # (node, side) holding a leaf
        for node in range(num_leaves - 1):
            left.append(0)
            right.append(0)
            if slots:
                parent, side = slots.pop(int(rng.integers(len(slots))))
                (left if side == 0 else right)[parent] = node
            slots += [(node, 0), (node, 1)]
        for leaf, (parent, side) in enumerate(slots):
            (left if side == 0 else right)[parent] = ~leaf
        n = num_leaves - 1
        feats.append(rng.integers(0, num_features, n))
        thrs.append(rng.choice(grid, n))
        dts.append(rng.choice([0, 2, 4, 6, 8, 10], n))
        lefts.append(np.asarray(left, dtype=np.int32))
        rights.append(np.asarray(right, dtype=np.int32))
        leaves.append(rng.standard_normal(num_leaves))
        node_offset.append(node_offset[-1] + n)
        leaf_offset.append(leaf_offset[-1] + num_leaves)
    return ForestArrays(
        num_features=num_features,
        node_offset=np.asarray(node_offset, dtype=np.int64),
        leaf_offset=np.asarray(leaf_offset, dtype=np.int64),
        split_feature=np.concatenate(feats).astype(np.int32),
        threshold=np.concatenate(thrs).astype(np.float64),
        decision_type=np.concatenate(dts).astype(np.int32),
        left_child=np.concatenate(lefts).astype(np.int32),
        right_child=np.concatenate(rights).astype(np.int32),
        leaf_value=np.concatenate(leaves).astype(np.float64),
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_fast_path_equals_node_by_node(seed: int) -> None:
    """Property: the mask kernel over bins equals plain traversal, bit for bit."""
    rng = np.random.default_rng(seed)
    grid = np.array([-1.0, -1e-36, 0.0, 1e-36, 0.1, 0.25, 0.5, 0.75, 1.0])
    arrays = _random_forest(rng, num_features=4, grid=grid)
    compiled = CompiledTrees(arrays)
    x = rng.choice(np.append(grid, [np.nan, 0.3, 2.0]), size=(600, 4))
    np.testing.assert_array_equal(compiled.predict(x, num_threads=1), compiled.predict_reference(x))
