// Binding of bootstrap_cluster_quantiles (xpcompute/cluster_quantiles.hpp): the event-level quantile
// bootstrap clustered by unit, on (group, bucket, cluster) event histograms.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "helpers.hpp"
#include "xpcompute/cluster_quantiles.hpp"

namespace xpcompute::bindings {

namespace {

std::int64_t as_size(const py::object& obj, const std::string& what) {
    const std::int64_t v = as_int64(obj, what);
    if (v < 0) throw std::invalid_argument(what + " must be >= 0, got " + std::to_string(v));
    return v;
}

py::array_t<double> bootstrap_cluster_quantiles_py(const py::object& groups, const py::object& buckets,
                                                   const py::object& clusters, const py::object& counts,
                                                   const py::object& lower, const py::object& upper,
                                                   const py::object& n_groups, const py::object& n_buckets,
                                                   const py::object& n_clusters, const py::object& probs,
                                                   const py::object& reps, const py::object& seed,
                                                   const py::object& threads) {
    const std::string fn = "bootstrap_cluster_quantiles: ";
    const I32Array g = as_array<I32Array>(groups, fn + "groups", "int32");
    require_ndim(g, 1, fn + "groups");
    const py::ssize_t n = g.shape(0);
    const I32Array bk = as_array<I32Array>(buckets, fn + "buckets", "int32");
    require_ndim(bk, 1, fn + "buckets");
    require_len(bk, n, fn + "buckets", "the length of groups");
    const I32Array cl = as_array<I32Array>(clusters, fn + "clusters", "int32");
    require_ndim(cl, 1, fn + "clusters");
    require_len(cl, n, fn + "clusters", "the length of groups");
    const F64Array c = as_f64(counts, fn + "counts");
    require_ndim(c, 1, fn + "counts");
    require_len(c, n, fn + "counts", "the length of groups");
    const F64Array lo = as_f64(lower, fn + "lower");
    require_ndim(lo, 1, fn + "lower");
    require_len(lo, n, fn + "lower", "the length of groups");
    const F64Array hi = as_f64(upper, fn + "upper");
    require_ndim(hi, 1, fn + "upper");
    require_len(hi, n, fn + "upper", "the length of groups");
    const F64Array p = as_f64(probs, fn + "probs");
    require_ndim(p, 1, fn + "probs");
    const std::int64_t k = as_size(n_groups, fn + "n_groups");
    const std::int64_t nb = as_size(n_buckets, fn + "n_buckets");
    const std::int64_t m = as_size(n_clusters, fn + "n_clusters");
    const std::int64_t n_reps = as_size(reps, fn + "reps");
    const std::int64_t n_threads = as_size(threads, fn + "threads");
    const std::uint64_t s = as_seed(seed);
    const py::ssize_t n_probs = p.size();
    py::array_t<double> out({static_cast<py::ssize_t>(n_reps), static_cast<py::ssize_t>(k), n_probs});
    {
        const std::int32_t* gp = g.data();
        const std::int32_t* bp = bk.data();
        const std::int32_t* cp = cl.data();
        const double* np_ = c.data();
        const double* lp = lo.data();
        const double* hp = hi.data();
        const double* pp = p.data();
        double* op = out.mutable_data();
        py::gil_scoped_release release;
        bootstrap_cluster_quantiles(gp, bp, cp, np_, lp, hp, n, k, nb, m, pp, n_probs, n_reps, s, n_threads, op);
    }
    return out;
}

}  // namespace

void register_cluster_bootstrap(py::module_& m) {
    m.def("bootstrap_cluster_quantiles", &bootstrap_cluster_quantiles_py, py::arg("groups"), py::arg("buckets"),
          py::arg("clusters"), py::arg("counts"), py::arg("lower"), py::arg("upper"), py::arg("n_groups"),
          py::arg("n_buckets"), py::arg("n_clusters"), py::arg("probs"), py::arg("reps"), py::arg("seed"),
          py::arg("threads") = 0,
          "Event-level quantiles per group under a Poisson(1) bootstrap of (group, cluster) pairs, by linear "
          "interpolation inside the value bucket that holds each [reps, n_groups, n_probs]; the weights are row b "
          "of poisson_weights(ones(n_groups * n_clusters)) with the same seed; NaN for a group left without weight.");
}

}  // namespace xpcompute::bindings
