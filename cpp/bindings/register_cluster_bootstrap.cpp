// Bindings of the event-level quantile primitives: bootstrap_cluster_quantiles (xpcompute/cluster_quantiles.hpp),
// the bootstrap clustered by unit on (group, bucket, cluster) event histograms, and event_histogram
// (xpcompute/event_histogram.hpp), which accumulates those histograms from events.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "helpers.hpp"
#include "xpcompute/cluster_quantiles.hpp"
#include "xpcompute/event_histogram.hpp"

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

using I16Array = py::array_t<std::int16_t, py::array::c_style>;

// An output array written in place: exactly dtype T, C-contiguous, writeable, of length n (no copy, no cast).
template <class T>
py::array_t<T, py::array::c_style> inplace(const py::object& obj, py::ssize_t n, const std::string& what,
                                           const char* dtype_name) {
    if (!py::isinstance<py::array_t<T, py::array::c_style>>(obj))
        throw std::invalid_argument(what + ": expected a C-contiguous " + dtype_name + " array (updated in place)");
    auto arr = py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(obj);
    if (!arr.writeable()) throw std::invalid_argument(what + ": the array is read-only");
    require_ndim(arr, 1, what);
    require_len(arr, n, what, "the histogram's size");
    return arr;
}

void event_histogram_py(const py::object& cells, const py::object& clusters, const py::object& values,
                        const py::object& edges, const py::object& n_cells, const py::object& n_clusters,
                        const py::object& counts, const py::object& lower, const py::object& upper,
                        const py::object& threads) {
    const std::string fn = "event_histogram: ";
    const F64Array v = as_f64(values, fn + "values");
    require_ndim(v, 1, fn + "values");
    const py::ssize_t n = v.shape(0);
    const F64Array e = as_f64(edges, fn + "edges");
    require_ndim(e, 1, fn + "edges");
    const std::int64_t g = as_size(n_cells, fn + "n_cells");
    const std::int64_t m = as_size(n_clusters, fn + "n_clusters");
    const std::int64_t n_threads = as_size(threads, fn + "threads");
    const py::ssize_t nb = e.shape(0) + 1;
    auto out = inplace<std::int64_t>(counts, static_cast<py::ssize_t>(g * m) * nb, fn + "counts", "int64");
    auto lo = inplace<double>(lower, static_cast<py::ssize_t>(g) * nb, fn + "lower", "float64");
    auto hi = inplace<double>(upper, static_cast<py::ssize_t>(g) * nb, fn + "upper", "float64");
    // int16 codes (as the events table stores them) are read as they are; any other integers as int32
    const bool narrow = py::isinstance<I16Array>(cells) && py::isinstance<I16Array>(clusters);
    if (narrow) {
        const auto c = py::reinterpret_borrow<I16Array>(cells);
        const auto k = py::reinterpret_borrow<I16Array>(clusters);
        require_ndim(c, 1, fn + "cells");
        require_len(c, n, fn + "cells", "the length of values");
        require_ndim(k, 1, fn + "clusters");
        require_len(k, n, fn + "clusters", "the length of values");
        const std::int16_t* cp = c.data();
        const std::int16_t* kp = k.data();
        const double* vp = v.data();
        const double* ep = e.data();
        std::int64_t* op = out.mutable_data();
        double* lp = lo.mutable_data();
        double* hp = hi.mutable_data();
        py::gil_scoped_release release;
        event_histogram(cp, kp, vp, n, ep, nb - 1, g, m, op, lp, hp, n_threads);
        return;
    }
    const I32Array c = as_array<I32Array>(cells, fn + "cells", "int32");
    require_ndim(c, 1, fn + "cells");
    require_len(c, n, fn + "cells", "the length of values");
    const I32Array k = as_array<I32Array>(clusters, fn + "clusters", "int32");
    require_ndim(k, 1, fn + "clusters");
    require_len(k, n, fn + "clusters", "the length of values");
    const std::int32_t* cp = c.data();
    const std::int32_t* kp = k.data();
    const double* vp = v.data();
    const double* ep = e.data();
    std::int64_t* op = out.mutable_data();
    double* lp = lo.mutable_data();
    double* hp = hi.mutable_data();
    py::gil_scoped_release release;
    event_histogram(cp, kp, vp, n, ep, nb - 1, g, m, op, lp, hp, n_threads);
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
    m.def("event_histogram", &event_histogram_py, py::arg("cells"), py::arg("clusters"), py::arg("values"),
          py::arg("edges"), py::arg("n_cells"), py::arg("n_clusters"), py::arg("counts"), py::arg("lower"),
          py::arg("upper"), py::arg("threads") = 0,
          "Adds events (cell code, unit cluster, value) to counts [n_cells * n_clusters * (len(edges) + 1)] and "
          "to the per-(cell, bucket) smallest/largest value lower/upper [n_cells * (len(edges) + 1)], in place; "
          "bucket = searchsorted(edges, value, side='right'); non-finite values do not count.");
}

}  // namespace xpcompute::bindings
