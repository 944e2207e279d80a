"""The sampler's C++ compiles warning-free with -Wall -Wextra (and the core has no Python)."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "csrc" / "blend"


@pytest.mark.slow  # compiling the pybind11 binding takes ~20 s on 2 cores
@pytest.mark.parametrize("source", ["blend.cpp", "bindings.cpp"])
def test_compiles_without_warnings(source: str) -> None:
    pybind11 = pytest.importorskip("pybind11")
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    cmd = [
        compiler,
        "-std=c++17",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fsyntax-only",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{pybind11.get_include()}",
        f"-I{CSRC}",
        str(CSRC / source),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_core_has_no_python_headers() -> None:
    for name in ("blend.h", "blend.cpp"):
        text = (CSRC / name).read_text()
        assert "pybind11" not in text and "Python.h" not in text
