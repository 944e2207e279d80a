// pybind11 binding of the exact-ratio blend sampler (core in blend.h / blend.cpp).
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_blend, m) { m.doc() = "Exact-ratio blended sampler (C++ core)."; }
