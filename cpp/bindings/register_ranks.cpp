// Bindings of weighted_quantiles and rank_sums (xpcompute/ranks.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "helpers.hpp"
#include "xpcompute/ranks.hpp"

namespace xpcompute::bindings {

namespace {

py::array_t<double> weighted_quantiles_py(const py::object& values, const py::object& weights,
                                          const py::object& probs) {
    const F64Array v = as_f64(values, "weighted_quantiles: values");
    require_ndim(v, 1, "weighted_quantiles: values");
    const F64Array w = as_f64(weights, "weighted_quantiles: weights");
    require_ndim(w, 1, "weighted_quantiles: weights");
    require_len(w, v.shape(0), "weighted_quantiles: weights", "the length of values");
    const F64Array p = as_f64(probs, "weighted_quantiles: probs");
    std::vector<py::ssize_t> shape(p.shape(), p.shape() + p.ndim());
    py::array_t<double> out(shape);
    {
        const double* vp = v.data();
        const double* wp = w.data();
        const double* pp = p.data();
        double* op = out.mutable_data();
        const py::ssize_t n = v.shape(0), n_probs = p.size();
        py::gil_scoped_release release;
        weighted_quantiles(vp, wp, n, pp, n_probs, op);
    }
    return out;
}

py::tuple rank_sums_py(const py::object& values_a, const py::object& weights_a, const py::object& values_b,
                       const py::object& weights_b) {
    const F64Array va = as_f64(values_a, "rank_sums: values_a");
    require_ndim(va, 1, "rank_sums: values_a");
    const F64Array wa = as_f64(weights_a, "rank_sums: weights_a");
    require_ndim(wa, 1, "rank_sums: weights_a");
    require_len(wa, va.shape(0), "rank_sums: weights_a", "the length of values_a");
    const F64Array vb = as_f64(values_b, "rank_sums: values_b");
    require_ndim(vb, 1, "rank_sums: values_b");
    const F64Array wb = as_f64(weights_b, "rank_sums: weights_b");
    require_ndim(wb, 1, "rank_sums: weights_b");
    require_len(wb, vb.shape(0), "rank_sums: weights_b", "the length of values_b");
    std::pair<double, double> res;
    {
        const double *vap = va.data(), *wap = wa.data(), *vbp = vb.data(), *wbp = wb.data();
        const py::ssize_t na = va.shape(0), nb = vb.shape(0);
        py::gil_scoped_release release;
        res = rank_sums(vap, wap, na, vbp, wbp, nb);
    }
    return py::make_tuple(res.first, res.second);
}

}  // namespace

void register_ranks(py::module_& m) {
    m.def("weighted_quantiles", &weighted_quantiles_py, py::arg("values"), py::arg("weights"), py::arg("probs"),
          "Inverted-CDF weighted quantiles (output has the shape of probs).");
    m.def("rank_sums", &rank_sums_py, py::arg("values_a"), py::arg("weights_a"), py::arg("values_b"),
          py::arg("weights_b"), "(mid-rank sum of sample a in the pooled sample, tie term sum(t^3 - t)).");
}

}  // namespace xpcompute::bindings
