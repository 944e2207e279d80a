// pybind11 binding of the exact-ratio blend sampler (core in blend.h / blend.cpp).
//
// Every array argument is a plain py::array whose dtype, shape and layout are checked here:
// nothing is converted implicitly (a converted temporary would silently swallow the output),
// and a wrong argument raises ValueError naming what was expected. The core runs without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "blend.h"

namespace py = pybind11;
namespace rb = regmix::blend;

namespace {

std::string describe(const py::array& a) {
  std::string shape = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    shape += std::to_string(a.shape(i)) + (a.ndim() == 1 ? "," : (i + 1 < a.ndim() ? ", " : ""));
  }
  shape += ")";
  return "dtype " + std::string(py::str(a.dtype())) + ", shape " + shape;
}

template <typename T>
void check_array(const py::array& a, const char* name, const char* dtype_name,
                 py::ssize_t length, bool writeable) {
  if (!a.dtype().is(py::dtype::of<T>())) {
    throw py::value_error(std::string(name) + " must be a numpy array of dtype " + dtype_name +
                          ", got " + describe(a) + "; no conversion is done, pass numpy." +
                          dtype_name + " (for example numpy.zeros(n, dtype=numpy." +
                          dtype_name + "))");
  }
  if (a.ndim() != 1) {
    throw py::value_error(std::string(name) + " must be 1-D, got " + describe(a));
  }
  if (length >= 0 && a.shape(0) != length) {
    throw py::value_error(std::string(name) + " must have length " + std::to_string(length) +
                          ", got " + describe(a));
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) +
                          " must be C-contiguous; pass numpy.ascontiguousarray(...)");
  }
  if (writeable && !a.writeable()) {
    throw py::value_error(std::string(name) + " must be writeable (it receives the output)");
  }
}

// An output argument must already be a numpy array: a converted copy would be filled and lost.
py::array output_array(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::value_error(std::string(name) + " must be a numpy array (it receives the output), got " +
                          std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  return py::reinterpret_borrow<py::array>(obj);
}

rb::Plan plan_from(const py::array& weights) {
  check_array<double>(weights, "weights", "float64", -1, false);
  return rb::make_plan(static_cast<const double*>(weights.data()), weights.shape(0));
}

void check_num_samples(std::int64_t num_samples) {
  if (num_samples <= 0) {
    throw py::value_error("num_samples must be > 0, got " + std::to_string(num_samples));
  }
  if (num_samples > (std::int64_t{1} << 62)) {
    throw py::value_error("num_samples must be at most 2^62, got " +
                          std::to_string(num_samples));
  }
}

template <typename IndexT>
void build_typed(const rb::Plan& plan, std::int64_t num_samples, py::array& dataset_index,
                 py::array& dataset_sample_index, const char* dtype_name, int num_threads) {
  check_array<IndexT>(dataset_index, "dataset_index", dtype_name, num_samples, true);
  if (plan.num_domains - 1 > static_cast<std::int64_t>(std::numeric_limits<IndexT>::max())) {
    throw py::value_error("dataset_index of dtype " + std::string(dtype_name) +
                          " cannot hold the indices of " + std::to_string(plan.num_domains) +
                          " datasets; use a wider integer dtype");
  }
  auto* di = static_cast<IndexT*>(dataset_index.mutable_data());
  auto* dsi = static_cast<std::int64_t*>(dataset_sample_index.mutable_data());
  py::gil_scoped_release release;
  rb::build_indices<IndexT>(plan, num_samples, di, dsi, num_threads);
}

void build_into(const py::array& weights, std::int64_t num_samples,
                const py::object& dataset_index_obj, const py::object& dataset_sample_index_obj,
                int num_threads) {
  check_num_samples(num_samples);
  if (num_threads < 0) {
    throw py::value_error("num_threads must be >= 0 (0: one per core), got " +
                          std::to_string(num_threads));
  }
  py::array dataset_index = output_array(dataset_index_obj, "dataset_index");
  py::array dataset_sample_index = output_array(dataset_sample_index_obj, "dataset_sample_index");
  check_array<std::int64_t>(dataset_sample_index, "dataset_sample_index", "int64", num_samples,
                            true);
  rb::Plan plan = plan_from(weights);
  if (dataset_index.dtype().is(py::dtype::of<std::uint8_t>())) {
    build_typed<std::uint8_t>(plan, num_samples, dataset_index, dataset_sample_index, "uint8",
                              num_threads);
  } else if (dataset_index.dtype().is(py::dtype::of<std::int16_t>())) {
    build_typed<std::int16_t>(plan, num_samples, dataset_index, dataset_sample_index, "int16",
                              num_threads);
  } else if (dataset_index.dtype().is(py::dtype::of<std::int32_t>())) {
    build_typed<std::int32_t>(plan, num_samples, dataset_index, dataset_sample_index, "int32",
                              num_threads);
  } else {
    throw py::value_error("dataset_index must be a numpy array of dtype uint8, int16 or int32, "
                          "got " + describe(dataset_index) +
                          "; no conversion is done (regmix_plugin.blending.index_dtype(K) "
                          "gives the narrowest)");
  }
}

template <typename T>
double deviation_of(const py::array& dataset_index, const double* w, std::int64_t k) {
  const auto* di = static_cast<const T*>(dataset_index.data());
  const std::int64_t n = dataset_index.shape(0);
  double out = 0.0;
  {
    py::gil_scoped_release release;
    out = rb::max_prefix_deviation<T>(di, n, w, k);
  }
  if (out < 0.0) {
    throw py::value_error("dataset_index holds a value outside [0, " + std::to_string(k) +
                          "): it does not match the " + std::to_string(k) + " weights");
  }
  return out;
}

double max_prefix_deviation(const py::array& dataset_index, const py::array& weights) {
  rb::Plan plan = plan_from(weights);  // validates the weights the same way
  const auto* w = static_cast<const double*>(weights.data());
  const std::int64_t k = weights.shape(0);
  if (dataset_index.dtype().is(py::dtype::of<std::uint8_t>())) {
    check_array<std::uint8_t>(dataset_index, "dataset_index", "uint8", -1, false);
    return deviation_of<std::uint8_t>(dataset_index, w, k);
  }
  if (dataset_index.dtype().is(py::dtype::of<std::int16_t>())) {
    check_array<std::int16_t>(dataset_index, "dataset_index", "int16", -1, false);
    return deviation_of<std::int16_t>(dataset_index, w, k);
  }
  if (dataset_index.dtype().is(py::dtype::of<std::int64_t>())) {
    check_array<std::int64_t>(dataset_index, "dataset_index", "int64", -1, false);
    return deviation_of<std::int64_t>(dataset_index, w, k);
  }
  check_array<std::int32_t>(dataset_index, "dataset_index", "int32", -1, false);
  return deviation_of<std::int32_t>(dataset_index, w, k);
}

py::dict plan_info(const py::array& weights) {
  rb::Plan plan = plan_from(weights);
  py::array_t<std::uint64_t> quantised(static_cast<py::ssize_t>(plan.weights.size()));
  std::copy(plan.weights.begin(), plan.weights.end(), quantised.mutable_data());
  py::dict out;
  out["quantised_weights"] = quantised;
  out["total"] = py::int_(plan.total);
  out["block_size"] = plan.block_size;
  out["frac_bits"] = plan.frac_bits;
  out["index_bits"] = plan.index_bits;
  return out;
}

py::array_t<std::int64_t> boundary_counts(const py::array& weights, std::int64_t n) {
  if (n < 0) throw py::value_error("n must be >= 0, got " + std::to_string(n));
  rb::Plan plan = plan_from(weights);
  py::array_t<std::int64_t> out(static_cast<py::ssize_t>(plan.num_domains));
  rb::boundary_counts(plan, n, out.mutable_data());
  return out;
}

py::array_t<std::int64_t> counts_after(const py::array& weights, std::int64_t n) {
  if (n < 0) throw py::value_error("n must be >= 0, got " + std::to_string(n));
  rb::Plan plan = plan_from(weights);
  py::array_t<std::int64_t> out(static_cast<py::ssize_t>(plan.num_domains));
  auto* data = out.mutable_data();
  {
    py::gil_scoped_release release;
    rb::counts_after(plan, n, data);
  }
  return out;
}

class PyCursor {
 public:
  explicit PyCursor(const py::array& weights) : cursor_(plan_from(weights)) {}

  std::pair<std::int32_t, std::int64_t> lookup(std::int64_t index) {
    if (index < 0) throw py::value_error("index must be >= 0, got " + std::to_string(index));
    std::int32_t d = 0;
    std::int64_t s = 0;
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    cursor_.lookup(index, &d, &s);
    return {d, s};
  }

  void lookup_into(const py::array& indices, const py::object& dataset_obj,
                   const py::object& sample_obj) {
    py::array dataset = output_array(dataset_obj, "dataset");
    py::array sample = output_array(sample_obj, "sample");
    check_array<std::int64_t>(indices, "indices", "int64", -1, false);
    const py::ssize_t n = indices.shape(0);
    check_array<std::int32_t>(dataset, "dataset", "int32", n, true);
    check_array<std::int64_t>(sample, "sample", "int64", n, true);
    const auto* idx = static_cast<const std::int64_t*>(indices.data());
    for (py::ssize_t i = 0; i < n; ++i) {
      if (idx[i] < 0) {
        throw py::value_error("indices[" + std::to_string(i) + "] is " +
                              std::to_string(idx[i]) + "; indices must be >= 0");
      }
    }
    auto* d = static_cast<std::int32_t*>(dataset.mutable_data());
    auto* s = static_cast<std::int64_t*>(sample.mutable_data());
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    for (py::ssize_t i = 0; i < n; ++i) cursor_.lookup(idx[i], d + i, s + i);
  }

  std::int64_t block_size() const { return cursor_.plan().block_size; }

 private:
  rb::Cursor cursor_;
  std::mutex mutex_;  // the cursor caches its walk; one lookup at a time
};

}  // namespace

PYBIND11_MODULE(_blend, m) {
  m.doc() = "Exact-ratio blended sampler (C++ core). Use regmix_plugin.blending, not this.";
  m.def("build_blend_indices_into", &build_into, py::arg("weights"), py::arg("num_samples"),
        py::arg("dataset_index"), py::arg("dataset_sample_index"), py::arg("num_threads") = 0,
        "Fill dataset_index (uint8, int16 or int32) and int64 dataset_sample_index (length "
        "num_samples) with the exact-ratio blend of float64 weights.");
  m.def("max_prefix_deviation", &max_prefix_deviation, py::arg("dataset_index"),
        py::arg("weights"),
        "Largest |count_k(n) - w_k n| over every prefix n and domain k (w = weights / sum).");
  m.def("plan_info", &plan_info, py::arg("weights"),
        "The quantised weights, their total, the block size and the key layout.");
  m.def("boundary_counts", &boundary_counts, py::arg("weights"), py::arg("n"),
        "Hamilton (largest remainder) apportionment of n under the quantised weights.");
  m.def("counts_after", &counts_after, py::arg("weights"), py::arg("n"),
        "Per-dataset counts among the first n samples of the sequence (no materialisation).");
  py::class_<PyCursor>(m, "Cursor")
      .def(py::init<const py::array&>(), py::arg("weights"))
      .def("lookup", &PyCursor::lookup, py::arg("index"))
      .def("lookup_into", &PyCursor::lookup_into, py::arg("indices"), py::arg("dataset"),
           py::arg("sample"))
      .def_property_readonly("block_size", &PyCursor::block_size);
}
