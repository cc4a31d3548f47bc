// Binding of cholesky_solve (xpcompute/linalg.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "helpers.hpp"
#include "xpcompute/linalg.hpp"

namespace xpcompute::bindings {

namespace {

py::object cholesky_solve_py(const py::object& a, const py::object& b, double tol) {
    const F64Array aa = as_f64(a, "cholesky_solve: a");
    require_ndim(aa, 2, "cholesky_solve: a");
    const py::ssize_t k = aa.shape(0);
    if (aa.shape(1) != k) throw std::invalid_argument("cholesky_solve: a must be square, got shape " + shape_str(aa));
    const F64Array ba = as_f64(b, "cholesky_solve: b");
    if (ba.ndim() != 1 && ba.ndim() != 2)
        throw std::invalid_argument("cholesky_solve: b must have shape [K] or [K, m], got shape " + shape_str(ba));
    require_len(ba, k, "cholesky_solve: b", "the size of a");
    const py::ssize_t n_rhs = ba.ndim() == 2 ? ba.shape(1) : 1;
    std::vector<py::ssize_t> x_shape{k};
    if (ba.ndim() == 2) x_shape.push_back(n_rhs);
    py::array_t<double> x(x_shape), inverse({k, k});
    CholeskyResult res;
    {
        const double* ap = aa.data();
        const double* bp = ba.data();
        double* xp = x.mutable_data();
        double* ip = inverse.mutable_data();
        py::gil_scoped_release release;
        res = cholesky_solve(ap, k, bp, n_rhs, tol, xp, ip);
    }
    const auto n_dropped = static_cast<py::ssize_t>(res.dropped.size());
    py::array dropped = to_numpy(std::move(res.dropped), {n_dropped});
    return native_type("SolveResult")(py::arg("x") = x, py::arg("inverse") = inverse, py::arg("rank") = res.rank,
                                      py::arg("dropped") = dropped);
}

}  // namespace

void register_linalg(py::module_& m) {
    m.def("cholesky_solve", &cholesky_solve_py, py::arg("a"), py::arg("b"), py::arg("tol") = 1e-10,
          "Solve the symmetric PSD system a x = b dropping collinear columns in order -> "
          "xpcompute.native.types.SolveResult.");
}

}  // namespace xpcompute::bindings
