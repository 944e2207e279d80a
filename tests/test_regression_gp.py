"""The compiled GP posterior mean (``regmix_plugin._trees.gp_posterior_mean``) against numpy."""

from __future__ import annotations

import itertools
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
    """gp.cpp and gp_fit.cpp build warning-free with -Wall -Wextra (with and without
    -fno-math-errno) and need no Python headers."""
    csrc = Path(__file__).resolve().parents[1] / "csrc" / "trees"
    for name in ("gp.h", "gp.cpp", "gp_fit.h", "gp_fit.cpp"):
        text = (csrc / name).read_text()
        assert "pybind11" not in text and "Python.h" not in text
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    for extra, source in itertools.product(([], ["-fno-math-errno"]), ("gp.cpp", "gp_fit.cpp")):
        cmd = [
            compiler,
            "-std=c++17",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            *extra,
            "-c",
            str(csrc / source),
            "-o",
            "/dev/null",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


def test_rows_score_the_same_alone_in_any_tile_and_on_any_thread_count() -> None:
    """Candidate rows go through the kernel six at a time; a row's score must not depend on
    its neighbours, its position in a tile or the thread split."""
    rng = np.random.default_rng(5)
    q = rng.standard_normal((1003, 17))
    t = rng.standard_normal((45, 17))
    coef = rng.standard_normal(45)
    for kernel in (0, 1, 2):
        whole = _trees.gp_posterior_mean(q, t, coef, kernel, 1)
        assert np.array_equal(whole, _trees.gp_posterior_mean(q, t, coef, kernel, 3))
        for lo, hi in ((0, 1), (5, 6), (7, 18), (997, 1003)):
            alone = _trees.gp_posterior_mean(np.ascontiguousarray(q[lo:hi]), t, coef, kernel, 1)
            assert np.array_equal(alone, whole[lo:hi])


_C_WRAPPER = """
#include "gp.h"
extern "C" void posterior(const double* q, long n, const double* t, long m, long d,
                          const double* c, int k, double* out) {
    regmix::gp::posterior_mean(q, n, t, m, d, c, static_cast<regmix::gp::Kernel>(k), out, 1);
}
"""


def test_plain_build_gives_the_same_bits_as_the_dispatched_one(tmp_path: Path) -> None:
    """The kernel's only fused multiply-adds are explicit, so a build without run-time dispatch
    (baseline x86-64 here: fma() from libm) scores bit-for-bit like the installed extension
    (the AVX2 + FMA or AVX-512 clone on most machines)."""
    import ctypes

    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    csrc = Path(__file__).resolve().parents[1] / "csrc" / "trees"
    (tmp_path / "wrap.cpp").write_text(_C_WRAPPER)
    lib = tmp_path / "plain.so"
    cmd = [
        compiler,
        "-std=c++17",
        "-O3",
        "-fno-math-errno",
        "-ffp-contract=off",
        "-DREGMIX_GP_TARGET_CLONES=",
        "-fPIC",
        "-shared",
        f"-I{csrc}",
        str(csrc / "gp.cpp"),
        str(tmp_path / "wrap.cpp"),
        "-o",
        str(lib),
        "-lpthread",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    plain = ctypes.CDLL(str(lib))
    rng = np.random.default_rng(9)
    q = rng.standard_normal((301, 17))
    t = rng.standard_normal((64, 17)) * 2
    coef = rng.standard_normal(64)
    ptr = ctypes.c_void_p
    for kernel in (0, 1, 2):
        out = np.empty(len(q))
        plain.posterior(
            ptr(q.ctypes.data), ctypes.c_long(len(q)), ptr(t.ctypes.data),
            ctypes.c_long(len(t)), ctypes.c_long(17), ptr(coef.ctypes.data),
            ctypes.c_int(kernel), ptr(out.ctypes.data),
        )  # fmt: skip
        assert np.array_equal(out, _trees.gp_posterior_mean(q, t, coef, kernel, 1)), kernel
