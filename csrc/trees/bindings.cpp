// pybind11 binding of the compiled tree-ensemble evaluator (core in trees.h / trees.cpp).
// Checks dtypes, shapes and contiguity (ValueError, never assert), copies nothing it does not
// need to, and releases the GIL around the evaluation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <string_view>
#include <stdexcept>
#include <string>

#include "gp.h"
#include "gp_fit.h"
#include "lgbm_text.h"
#include "trees.h"

namespace py = pybind11;
using regmix::trees::Forest;
using regmix::trees::ForestArrays;

namespace {

template <typename T>
const T* checked(const py::array& a, const char* name, const char* dtype_name, py::ssize_t expected_len) {
    if (!a.dtype().is(py::dtype::of<T>())) {
        throw std::invalid_argument(std::string(name) + ": expected dtype " + dtype_name + ", got " +
                                    std::string(py::str(a.dtype())));
    }
    if (a.ndim() != 1) {
        throw std::invalid_argument(std::string(name) + ": expected a 1-d array, got " +
                                    std::to_string(a.ndim()) + " dimensions");
    }
    if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": must be C-contiguous");
    if (expected_len >= 0 && a.shape(0) != expected_len) {
        throw std::invalid_argument(std::string(name) + ": expected length " + std::to_string(expected_len) +
                                    ", got " + std::to_string(a.shape(0)));
    }
    return static_cast<const T*>(a.data());
}

std::unique_ptr<Forest> make_forest(int64_t num_features, const py::array& node_offset, const py::array& leaf_offset,
                                    const py::array& split_feature, const py::array& threshold,
                                    const py::array& decision_type, const py::array& left_child,
                                    const py::array& right_child, const py::array& leaf_value) {
    ForestArrays fa;
    fa.num_features = num_features;
    fa.node_offset = checked<int64_t>(node_offset, "node_offset", "int64", -1);
    fa.num_trees = static_cast<int64_t>(node_offset.shape(0)) - 1;
    if (fa.num_trees < 0) throw std::invalid_argument("node_offset: needs at least one entry (0)");
    fa.leaf_offset = checked<int64_t>(leaf_offset, "leaf_offset", "int64", fa.num_trees + 1);
    const int64_t num_nodes = fa.node_offset[fa.num_trees];
    const int64_t num_leaves = fa.leaf_offset[fa.num_trees];
    if (num_nodes < 0 || num_leaves < 0) throw std::invalid_argument("offsets must not be negative");
    fa.split_feature = checked<int32_t>(split_feature, "split_feature", "int32", num_nodes);
    fa.threshold = checked<double>(threshold, "threshold", "float64", num_nodes);
    fa.decision_type = checked<int32_t>(decision_type, "decision_type", "int32", num_nodes);
    fa.left_child = checked<int32_t>(left_child, "left_child", "int32", num_nodes);
    fa.right_child = checked<int32_t>(right_child, "right_child", "int32", num_nodes);
    fa.leaf_value = checked<double>(leaf_value, "leaf_value", "float64", num_leaves);
    return std::make_unique<Forest>(fa);
}

const double* checked_rows(const py::array& x, const Forest& f, int64_t* num_rows) {
    if (!x.dtype().is(py::dtype::of<double>())) {
        throw std::invalid_argument("x: expected dtype float64, got " + std::string(py::str(x.dtype())));
    }
    if (x.ndim() != 2 || x.shape(1) != f.num_features()) {
        throw std::invalid_argument("x: expected shape (rows, " + std::to_string(f.num_features()) + "), got " +
                                    std::to_string(x.ndim()) + " dimensions" +
                                    (x.ndim() == 2 ? " with " + std::to_string(x.shape(1)) + " columns" : ""));
    }
    if (!(x.flags() & py::array::c_style)) throw std::invalid_argument("x: must be C-contiguous (np.ascontiguousarray)");
    *num_rows = static_cast<int64_t>(x.shape(0));
    return static_cast<const double*>(x.data());
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
}

}  // namespace

PYBIND11_MODULE(_trees, m) {
    m.doc() = "Compiled evaluator for LightGBM tree ensembles (numerical splits).";
    py::class_<Forest>(m, "Forest", "A validated tree ensemble compiled for fast scoring.")
        .def(py::init(&make_forest), py::arg("num_features"), py::arg("node_offset"), py::arg("leaf_offset"),
             py::arg("split_feature"), py::arg("threshold"), py::arg("decision_type"), py::arg("left_child"),
             py::arg("right_child"), py::arg("leaf_value"),
             "Build from flat arrays (int64 offsets, int32 node fields, float64 thresholds and leaf values).")
        .def_property_readonly("num_features", &Forest::num_features)
        .def_property_readonly("num_trees", &Forest::num_trees)
        .def_property_readonly("num_nodes", &Forest::num_nodes)
        .def_property_readonly("num_leaves", &Forest::num_leaves)
        .def_property_readonly("max_leaves_per_tree", &Forest::max_leaves_per_tree)
        .def(
            "predict",
            [](const Forest& f, const py::array& x, int num_threads) {
                int64_t n = 0;
                const double* px = checked_rows(x, f, &n);
                if (num_threads < 0) throw std::invalid_argument("num_threads must be >= 0 (0: all cores)");
                py::array_t<double> out(static_cast<py::ssize_t>(n));
                double* po = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    f.predict(px, n, po, num_threads);
                }
                return out;
            },
            py::arg("x"), py::arg("num_threads") = 0, "Scores of the rows of x (float64, C order).")
        .def(
            "predict_reference",
            [](const Forest& f, const py::array& x) {
                int64_t n = 0;
                const double* px = checked_rows(x, f, &n);
                py::array_t<double> out(static_cast<py::ssize_t>(n));
                double* po = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    f.predict_reference(px, n, po);
                }
                return out;
            },
            py::arg("x"), "Scores by plain node-by-node traversal (the test oracle).");
    m.def(
        "read_tree_section",
        [](std::string_view body) -> py::object {
            regmix::trees::TreeSection ts;
            bool ok = false;
            {
                py::gil_scoped_release release;
                ok = regmix::trees::read_tree_section(body, ts);
            }
            if (!ok) return py::none();
            return py::make_tuple(to_array(ts.node_offset), to_array(ts.leaf_offset), to_array(ts.split_feature),
                                  to_array(ts.threshold), to_array(ts.decision_type), to_array(ts.left_child),
                                  to_array(ts.right_child), to_array(ts.leaf_value));
        },
        py::arg("body"),
        "The tree section of a LightGBM text model (from the first 'Tree=' line to 'end of trees') as "
        "(node_offset, leaf_offset, split_feature, threshold, decision_type, left_child, right_child, "
        "leaf_value), or None where it is not exactly as LightGBM writes it.");
    m.def(
        "gp_kernel_matrix",
        [](const py::array& u, int kernel, double amplitude, double noise) {
            if (!u.dtype().is(py::dtype::of<double>()) || u.ndim() != 2 || !(u.flags() & py::array::c_style)) {
                throw std::invalid_argument("u: expected a C-contiguous 2-d float64 array");
            }
            if (kernel < 0 || kernel > 2) throw std::invalid_argument("kernel: 0 (Matern 3/2), 1 (5/2) or 2 (RBF)");
            const int64_t n = u.shape(0), d = u.shape(1);
            py::array_t<double> k({n, n}), factor({n, n});
            const double* pu = static_cast<const double*>(u.data());
            double* pk = k.mutable_data();
            double* pf = factor.mutable_data();
            {
                py::gil_scoped_release release;
                regmix::gp::kernel_matrix(pu, n, d, static_cast<regmix::gp::Kernel>(kernel), amplitude, noise, pk, pf);
            }
            return py::make_tuple(k, factor);
        },
        py::arg("u"), py::arg("kernel"), py::arg("amplitude"), py::arg("noise"),
        "(K, F) of length-scaled rows u [n, d]: K = amplitude * k(r) + noise I (both triangles), "
        "F_ij (i > j) with dk_ij / dlog(l_c) = F_ij (u_ic - u_jc)^2.");
    m.def(
        "gp_nll_gradient",
        [](const py::array& k, const py::array& factor, const py::array& inv, bool inv_upper, const py::array& alpha,
           const py::array& u, double amplitude, double noise) {
            if (!u.dtype().is(py::dtype::of<double>()) || u.ndim() != 2 || !(u.flags() & py::array::c_style)) {
                throw std::invalid_argument("u: expected a C-contiguous 2-d float64 array");
            }
            const int64_t n = u.shape(0), d = u.shape(1);
            for (const auto* pair : {&k, &factor, &inv}) {
                const py::array& a = *pair;
                if (!a.dtype().is(py::dtype::of<double>()) || a.ndim() != 2 || a.shape(0) != n || a.shape(1) != n ||
                    !(a.flags() & py::array::c_style)) {
                    throw std::invalid_argument("k, factor, inv: expected C-contiguous float64 [n, n] arrays");
                }
            }
            const double* pa = checked<double>(alpha, "alpha", "float64", n);
            py::array_t<double> grad(static_cast<py::ssize_t>(d + 2));
            const double* pk = static_cast<const double*>(k.data());
            const double* pf = static_cast<const double*>(factor.data());
            const double* pi = static_cast<const double*>(inv.data());
            const double* pu = static_cast<const double*>(u.data());
            double* pg = grad.mutable_data();
            {
                py::gil_scoped_release release;
                regmix::gp::nll_gradient(pk, pf, pi, inv_upper, pa, pu, n, d, amplitude, noise, pg);
            }
            return grad;
        },
        py::arg("k"), py::arg("factor"), py::arg("inv"), py::arg("inv_upper"), py::arg("alpha"), py::arg("u"),
        py::arg("amplitude"), py::arg("noise"),
        "Gradient of the log marginal likelihood in log(amplitude), log(length scales), log(noise).");
    m.def(
        "gp_posterior_mean",
        [](const py::array& q, const py::array& t, const py::array& coef, int kernel, int num_threads) {
            auto matrix = [](const py::array& a, const char* name) {
                if (!a.dtype().is(py::dtype::of<double>())) {
                    throw std::invalid_argument(std::string(name) + ": expected dtype float64");
                }
                if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + ": expected a 2-d array");
                if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": must be C-contiguous");
                return static_cast<const double*>(a.data());
            };
            const double* pq = matrix(q, "q");
            const double* pt = matrix(t, "t");
            if (q.shape(1) != t.shape(1)) throw std::invalid_argument("q and t must have the same number of columns");
            if (t.shape(0) < 1 || t.shape(1) < 1) throw std::invalid_argument("t: needs at least one point and column");
            const double* pc = checked<double>(coef, "coef", "float64", t.shape(0));
            if (kernel < 0 || kernel > 2) throw std::invalid_argument("kernel: 0 (Matern 3/2), 1 (5/2) or 2 (RBF)");
            if (num_threads < 0) throw std::invalid_argument("num_threads must be >= 0 (0: all cores)");
            const int64_t n = q.shape(0);
            py::array_t<double> out(static_cast<py::ssize_t>(n));
            double* po = out.mutable_data();
            {
                py::gil_scoped_release release;
                regmix::gp::posterior_mean(pq, n, pt, t.shape(0), t.shape(1), pc,
                                           static_cast<regmix::gp::Kernel>(kernel), po, num_threads);
            }
            return out;
        },
        py::arg("q"), py::arg("t"), py::arg("coef"), py::arg("kernel"), py::arg("num_threads") = 0,
        "sum_j coef[j] * k(|q_i - t_j|) for length-scaled rows q [n, d] and points t [m, d].");
}
