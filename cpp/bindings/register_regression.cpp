// Bindings of gram_meat and cluster_meat (xpcompute/regression.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "helpers.hpp"
#include "xpcompute/regression.hpp"

namespace xpcompute::bindings {

namespace {

py::tuple gram_meat_py(const py::object& x, const py::object& w, const py::object& wy, const py::object& e2) {
    const F64Array xa = as_f64(x, "gram_meat: x");
    require_ndim(xa, 2, "gram_meat: x");
    const py::ssize_t g = xa.shape(0), k = xa.shape(1);
    const F64Array wa = as_f64(w, "gram_meat: w");
    require_ndim(wa, 1, "gram_meat: w");
    require_len(wa, g, "gram_meat: w", "the rows of x");
    const F64Array wya = as_f64(wy, "gram_meat: wy");
    require_ndim(wya, 1, "gram_meat: wy");
    require_len(wya, g, "gram_meat: wy", "the rows of x");
    F64Array e2a;
    if (!e2.is_none()) {
        e2a = as_f64(e2, "gram_meat: e2");
        require_ndim(e2a, 1, "gram_meat: e2");
        require_len(e2a, g, "gram_meat: e2", "the rows of x");
    }
    py::array_t<double> xtwx({k, k}), xtwy({k});
    py::object meat = py::none();
    double* meat_ptr = nullptr;
    if (!e2.is_none()) {
        py::array_t<double> mt({k, k});
        meat_ptr = mt.mutable_data();
        meat = mt;
    }
    {
        const double* xp = xa.data();
        const double* wp = wa.data();
        const double* wyp = wya.data();
        const double* e2p = e2.is_none() ? nullptr : e2a.data();
        double* out_a = xtwx.mutable_data();
        double* out_v = xtwy.mutable_data();
        py::gil_scoped_release release;
        gram_meat(xp, g, k, wp, wyp, e2p, out_a, out_v, meat_ptr);
    }
    return py::make_tuple(xtwx, xtwy, meat);
}

py::array_t<double> cluster_meat_py(const py::object& scores, const py::object& clusters) {
    const F64Array s = as_f64(scores, "cluster_meat: scores");
    require_ndim(s, 2, "cluster_meat: scores");
    const py::ssize_t g = s.shape(0), k = s.shape(1);
    const I64Array c = as_array<I64Array>(clusters, "cluster_meat: clusters", "int64");
    require_ndim(c, 1, "cluster_meat: clusters");
    require_len(c, g, "cluster_meat: clusters", "the rows of scores");
    py::array_t<double> out({k, k});
    {
        const double* sp = s.data();
        const std::int64_t* cp = c.data();
        double* op = out.mutable_data();
        py::gil_scoped_release release;
        cluster_meat(sp, g, k, cp, op);
    }
    return out;
}

}  // namespace

void register_regression(py::module_& m) {
    m.def("gram_meat", &gram_meat_py, py::arg("x"), py::arg("w"), py::arg("wy"), py::arg("e2") = py::none(),
          "(X'WX, X'wy, X'diag(e2)X or None) in one pass over the rows of x [G, K].");
    m.def("cluster_meat", &cluster_meat_py, py::arg("scores"), py::arg("clusters"),
          "sum over clusters c of s_c s_c', s_c the summed score rows of cluster c.");
}

}  // namespace xpcompute::bindings
