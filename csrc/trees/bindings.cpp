// pybind11 binding of the compiled tree-ensemble evaluator (core in trees.h / trees.cpp).
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_trees, m) { m.doc() = "Compiled evaluator for LightGBM tree ensembles."; }
