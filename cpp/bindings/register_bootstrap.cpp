// Bindings of poisson_weights and bootstrap_quantiles (xpcompute/bootstrap.hpp) and of
// bootstrap_grouped_quantiles (xpcompute/grouped_bootstrap.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "helpers.hpp"
#include "xpcompute/bootstrap.hpp"
#include "xpcompute/grouped_bootstrap.hpp"

namespace xpcompute::bindings {

namespace {

std::int64_t as_count(const py::object& obj, const std::string& what) {
    const std::int64_t v = as_int64(obj, what);
    if (v < 0) throw std::invalid_argument(what + " must be >= 0, got " + std::to_string(v));
    return v;
}

py::array_t<double> poisson_weights_py(const py::object& counts, const py::object& reps, const py::object& seed,
                                       const py::object& threads) {
    const F64Array c = as_f64(counts, "poisson_weights: counts");
    require_ndim(c, 1, "poisson_weights: counts");
    const std::int64_t n_reps = as_count(reps, "poisson_weights: reps");
    const std::int64_t n_threads = as_count(threads, "poisson_weights: threads");
    const std::uint64_t s = as_seed(seed);
    const py::ssize_t g = c.shape(0);
    py::array_t<double> out({static_cast<py::ssize_t>(n_reps), g});
    {
        const double* cp = c.data();
        double* op = out.mutable_data();
        py::gil_scoped_release release;
        poisson_weights(cp, g, n_reps, s, n_threads, op);
    }
    return out;
}

py::array_t<double> bootstrap_quantiles_py(const py::object& values, const py::object& counts,
                                           const py::object& groups, const py::object& n_groups,
                                           const py::object& probs, const py::object& reps, const py::object& seed,
                                           const py::object& threads) {
    const F64Array v = as_f64(values, "bootstrap_quantiles: values");
    require_ndim(v, 1, "bootstrap_quantiles: values");
    const py::ssize_t g = v.shape(0);
    const F64Array c = as_f64(counts, "bootstrap_quantiles: counts");
    require_ndim(c, 1, "bootstrap_quantiles: counts");
    require_len(c, g, "bootstrap_quantiles: counts", "the length of values");
    const I32Array gr = as_array<I32Array>(groups, "bootstrap_quantiles: groups", "int32");
    require_ndim(gr, 1, "bootstrap_quantiles: groups");
    require_len(gr, g, "bootstrap_quantiles: groups", "the length of values");
    const F64Array p = as_f64(probs, "bootstrap_quantiles: probs");
    if (p.ndim() > 1)
        throw std::invalid_argument("bootstrap_quantiles: probs must be 1-d, got shape " + shape_str(p));
    const std::int64_t k = as_count(n_groups, "bootstrap_quantiles: n_groups");
    const std::int64_t n_reps = as_count(reps, "bootstrap_quantiles: reps");
    const std::int64_t n_threads = as_count(threads, "bootstrap_quantiles: threads");
    const std::uint64_t s = as_seed(seed);
    const py::ssize_t n_probs = p.size();
    py::array_t<double> out({static_cast<py::ssize_t>(n_reps), static_cast<py::ssize_t>(k), n_probs});
    {
        const double* vp = v.data();
        const double* cp = c.data();
        const std::int32_t* gp = gr.data();
        const double* pp = p.data();
        double* op = out.mutable_data();
        py::gil_scoped_release release;
        bootstrap_quantiles(vp, cp, gp, g, k, pp, n_probs, n_reps, s, n_threads, op);
    }
    return out;
}

py::array_t<double> bootstrap_grouped_quantiles_py(const py::object& values, const py::object& lower,
                                                   const py::object& upper, const py::object& counts,
                                                   const py::object& groups, const py::object& n_groups,
                                                   const py::object& probs, const py::object& reps,
                                                   const py::object& seed, const py::object& threads,
                                                   const py::object& window_sd) {
    const std::string fn = "bootstrap_grouped_quantiles: ";
    const F64Array v = as_f64(values, fn + "values");
    require_ndim(v, 1, fn + "values");
    const py::ssize_t g = v.shape(0);
    const F64Array lo = as_f64(lower, fn + "lower");
    require_ndim(lo, 1, fn + "lower");
    require_len(lo, g, fn + "lower", "the length of values");
    const F64Array hi = as_f64(upper, fn + "upper");
    require_ndim(hi, 1, fn + "upper");
    require_len(hi, g, fn + "upper", "the length of values");
    const F64Array c = as_f64(counts, fn + "counts");
    require_ndim(c, 1, fn + "counts");
    require_len(c, g, fn + "counts", "the length of values");
    const I32Array gr = as_array<I32Array>(groups, fn + "groups", "int32");
    require_ndim(gr, 1, fn + "groups");
    require_len(gr, g, fn + "groups", "the length of values");
    const F64Array p = as_f64(probs, fn + "probs");
    require_ndim(p, 1, fn + "probs");
    for (py::ssize_t i = 0; i < p.size(); ++i)
        if (!(p.data()[i] >= 0.0 && p.data()[i] <= 1.0))
            throw std::invalid_argument(fn + "probs must lie in [0, 1], got " + std::to_string(p.data()[i]));
    const std::int64_t k = as_count(n_groups, fn + "n_groups");
    const std::int64_t n_reps = as_count(reps, fn + "reps");
    const std::int64_t n_threads = as_count(threads, fn + "threads");
    const std::uint64_t s = as_seed(seed);
    double sd = 0.0;
    try {
        sd = py::cast<double>(window_sd);
    } catch (const py::cast_error&) {
        throw std::invalid_argument(fn + "window_sd must be a number, got " + std::string(py::repr(window_sd)));
    }
    if (!(sd >= 0.0) || !std::isfinite(sd))
        throw std::invalid_argument(fn + "window_sd must be 0 (every bucket drawn) or a positive number of standard "
                                    "deviations, e.g. 10; got " + std::to_string(sd));
    const py::ssize_t n_probs = p.size();
    py::array_t<double> out({static_cast<py::ssize_t>(n_reps), static_cast<py::ssize_t>(k), n_probs});
    {
        const double* vp = v.data();
        const double* lp = lo.data();
        const double* hp = hi.data();
        const double* cp = c.data();
        const std::int32_t* gp = gr.data();
        const double* pp = p.data();
        double* op = out.mutable_data();
        py::gil_scoped_release release;
        if (sd > 0.0)
            bootstrap_grouped_quantiles_windowed(vp, lp, hp, cp, gp, g, k, pp, n_probs, n_reps, s, n_threads, sd, op,
                                                 nullptr);
        else
            bootstrap_grouped_quantiles(vp, lp, hp, cp, gp, g, k, pp, n_probs, n_reps, s, n_threads, op);
    }
    return out;
}

}  // namespace

void register_bootstrap(py::module_& m) {
    m.def("poisson_weights", &poisson_weights_py, py::arg("counts"), py::arg("reps"), py::arg("seed"),
          py::arg("threads") = 0,
          "Poisson bootstrap weights [reps, G], out[b, g] ~ Poisson(counts[g]); replicate b depends on "
          "(seed, b) only, never on threads.");
    m.def("bootstrap_quantiles", &bootstrap_quantiles_py, py::arg("values"), py::arg("counts"), py::arg("groups"),
          py::arg("n_groups"), py::arg("probs"), py::arg("reps"), py::arg("seed"), py::arg("threads") = 0,
          "Per-group weighted quantiles under each Poisson replicate [reps, n_groups, n_probs] "
          "(the weights of poisson_weights with the same seed; NaN for a group left empty).");
    m.def("bootstrap_grouped_quantiles", &bootstrap_grouped_quantiles_py, py::arg("values"), py::arg("lower"),
          py::arg("upper"), py::arg("counts"), py::arg("groups"), py::arg("n_groups"), py::arg("probs"),
          py::arg("reps"), py::arg("seed"), py::arg("threads") = 0, py::arg("window_sd") = 0.0,
          "Per-group grouped-data (n-tile) quantiles, linear inside the bucket that holds each, under each "
          "Poisson replicate [reps, n_groups, n_probs]; NaN for a group left without weight. window_sd = 0: the "
          "weights of poisson_weights with the same seed; > 0: the same bootstrap in law with one Poisson draw "
          "per gap between windows of +-window_sd sd around each quantile.");
}

}  // namespace xpcompute::bindings
