"""Builds the compiled extensions only; everything else is in pyproject.toml.

A failed compile fails the install: there is no silent pure-Python fallback.
"""

from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

_FLAGS = ["-O3", "-Wall", "-Wextra", "-Werror=return-type"]


def _extension(name: str, folder: str, flags: tuple[str, ...] = ()) -> Pybind11Extension:
    return Pybind11Extension(
        f"regmix_plugin.{name}",
        sorted(glob(f"csrc/{folder}/*.cpp")),
        include_dirs=[f"csrc/{folder}"],
        cxx_std=17,
        extra_compile_args=[*_FLAGS, *flags],
    )


setup(
    # _trees: -fno-math-errno lets the GP kernel's square roots vectorise (inputs are >= 0);
    # -ffp-contract=off keeps the compiler from fusing a * b + c where the source did not ask
    # for it, so the GP kernel's bits are the same on every CPU and compiler (see gp.cpp);
    # -Wno-psabi: GCC's note on passing 32-byte vectors (the helpers are inlined: no ABI use).
    ext_modules=[
        _extension("_blend", "blend"),
        _extension("_trees", "trees", ("-fno-math-errno", "-ffp-contract=off", "-Wno-psabi")),
    ],
    cmdclass={"build_ext": build_ext},
)
