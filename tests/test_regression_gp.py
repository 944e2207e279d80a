"""The compiled GP posterior mean (``regmix_plugin._trees.gp_posterior_mean``) against numpy."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from regmix_plugin import _trees  # type: ignore[attr-defined]


def _numpy_posterior(q: np.ndarray, t: np.ndarray, coef: np.ndarray, kernel: int) -> np.ndarray:
    r = np.sqrt(((q[:, None, :] - t[None, :, :]) ** 2).sum(-1))
    if kernel == 0:
        s = math.sqrt(3) * r
        k = (1 + s) * np.exp(-s)
    elif kernel == 1:
        s = math.sqrt(5) * r
        k = (1 + s + s * s / 3) * np.exp(-s)
    else:
        k = np.exp(-0.5 * r * r)
    return k @ coef


@pytest.mark.parametrize("kernel", [0, 1, 2])
@pytest.mark.parametrize(("n", "m", "d"), [(1, 1, 1), (7, 5, 3), (300, 37, 17), (1000, 64, 2)])
def test_equals_numpy(kernel: int, n: int, m: int, d: int) -> None:
    rng = np.random.default_rng(n + m + d)
    q = rng.standard_normal((n, d)) * 2
    t = rng.standard_normal((m, d)) * 2
    t[0] = q[0]  # distance exactly 0
    coef = rng.standard_normal(m) * 100
    ref = _numpy_posterior(q, t, coef, kernel)
    for threads in (1, 3):
        got = _trees.gp_posterior_mean(q, t, coef, kernel, threads)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(coef).sum())


def test_far_points_and_empty_rows() -> None:
    q = np.array([[0.0], [1e3], [-800.0]])
    t = np.array([[0.0], [30.0]])
    coef = np.array([1.0, 2.0])
    got = _trees.gp_posterior_mean(q, t, coef, 1)
    np.testing.assert_allclose(got, _numpy_posterior(q, t, coef, 1), rtol=1e-13, atol=1e-300)
    assert got[1] == pytest.approx(0.0, abs=1e-200)
    assert _trees.gp_posterior_mean(np.zeros((0, 1)), t, coef, 1).shape == (0,)


def test_bad_arguments_are_value_errors() -> None:
    q, t, c = np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(4)
    with pytest.raises(ValueError, match="same number of columns"):
        _trees.gp_posterior_mean(q, np.zeros((4, 2)), c, 1)
    with pytest.raises(ValueError, match="coef"):
        _trees.gp_posterior_mean(q, t, np.zeros(3), 1)
    with pytest.raises(ValueError, match="float64"):
        _trees.gp_posterior_mean(q.astype(np.float32), t, c, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        _trees.gp_posterior_mean(np.zeros((3, 2)).T, t, c, 1)
    with pytest.raises(ValueError, match="kernel"):
        _trees.gp_posterior_mean(q, t, c, 3)
    with pytest.raises(ValueError, match="num_threads"):
        _trees.gp_posterior_mean(q, t, c, 1, -1)


def test_kernel_compiles_cleanly_without_python() -> None:
    """gp.cpp builds warning-free with -Wall -Wextra (with and without -fno-math-errno) and
    needs no Python headers."""
    csrc = Path(__file__).resolve().parents[1] / "csrc" / "trees"
    for name in ("gp.h", "gp.cpp"):
        text = (csrc / name).read_text()
        assert "pybind11" not in text and "Python.h" not in text
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    for extra in ([], ["-fno-math-errno"]):
        cmd = [
            compiler,
            "-std=c++17",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            *extra,
            "-c",
            str(csrc / "gp.cpp"),
            "-o",
            "/dev/null",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
