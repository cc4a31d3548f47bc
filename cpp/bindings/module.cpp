// The private extension module xpcompute._core: one register_<area>() per area of primitives.
// Its typed face is xpcompute/native/__init__.py (stub: xpcompute/native/_core.pyi).
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace xpcompute::bindings {
void register_groupby(py::module_& m);
void register_regression(py::module_& m);
void register_linalg(py::module_& m);
void register_ranks(py::module_& m);
void register_bootstrap(py::module_& m);
void register_cluster_bootstrap(py::module_& m);
}  // namespace xpcompute::bindings

PYBIND11_MODULE(_core, m) {
    m.doc() = "xpcompute's C++ primitives (private: call them through xpcompute.native).";
    xpcompute::bindings::register_groupby(m);
    xpcompute::bindings::register_regression(m);
    xpcompute::bindings::register_linalg(m);
    xpcompute::bindings::register_ranks(m);
    xpcompute::bindings::register_bootstrap(m);
    xpcompute::bindings::register_cluster_bootstrap(m);
}
