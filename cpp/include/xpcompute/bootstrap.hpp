// Poisson bootstrap on compressed rows: replicate weights and per-group weighted quantiles.
//
// Replicate b draws out[b, g] ~ Poisson(counts[g]) for g = 0..G-1 in order from the stream
// Xoshiro256(seed, b), so every result is a function of (seed, b) only, whatever the threads.
// bootstrap_quantiles draws the very same weights (poisson_row below), so it equals
// weighted_quantiles applied per group to the rows of poisson_weights with the same seed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "xpcompute/common.hpp"
#include "xpcompute/ranks.hpp"
#include "xpcompute/rng.hpp"

namespace xpcompute {

// One sampler per compressed row; validates the means.
inline PoissonTable poisson_samplers(const double* counts, std::int64_t g) {
    for (std::int64_t i = 0; i < g; ++i) {
        const double lam = counts[i];
        if (!(std::isfinite(lam) && lam >= 0.0 && lam < 1e15))
            throw std::invalid_argument("poisson bootstrap: counts must be finite and >= 0, got " +
                                        std::to_string(lam) + " at row " + std::to_string(i));
    }
    return PoissonTable(counts, static_cast<std::size_t>(g));
}

// Replicate b's weights for every row: out[g] ~ Poisson(counts[g]).
inline void poisson_row(const PoissonTable& samplers, std::uint64_t seed, std::int64_t b, double* out) {
    Xoshiro256 rng(seed, static_cast<std::uint64_t>(b));
    const std::size_t g = samplers.size();
    for (std::size_t i = 0; i < g; ++i) out[i] = samplers.draw(i, rng);
}

// out: row-major [reps, g].
inline void poisson_weights(const double* counts, std::int64_t g, std::int64_t reps, std::uint64_t seed,
                            std::int64_t threads, double* out) {
    require(g >= 0, "poisson_weights: negative number of rows");
    require(reps >= 0, "poisson_weights: reps must be >= 0, got " + std::to_string(reps));
    const std::size_t workers = resolve_threads(threads, reps);
    const auto samplers = poisson_samplers(counts, g);
    parallel_for(reps, workers, [&](std::int64_t b, std::size_t) { poisson_row(samplers, seed, b, out + b * g); });
}

// out: row-major [reps, n_groups, n_probs]; NaN where a replicate leaves a group without weight.
// Rows whose group is outside [0, n_groups) take part in no group (but still draw their weight).
inline void bootstrap_quantiles(const double* values, const double* counts, const std::int32_t* groups,
                                std::int64_t g, std::int64_t n_groups, const double* probs, std::int64_t n_probs,
                                std::int64_t reps, std::uint64_t seed, std::int64_t threads, double* out) {
    require(g >= 0, "bootstrap_quantiles: negative number of rows");
    require(n_groups >= 0, "bootstrap_quantiles: n_groups must be >= 0, got " + std::to_string(n_groups));
    require(reps >= 0, "bootstrap_quantiles: reps must be >= 0, got " + std::to_string(reps));
    const std::size_t workers = resolve_threads(threads, reps);
    const auto samplers = poisson_samplers(counts, g);

    // rows of each group sorted by value once (stable, NaN last): order[offset[k] .. offset[k+1])
    std::vector<std::int64_t> offset(static_cast<std::size_t>(n_groups) + 1, 0);
    for (std::int64_t i = 0; i < g; ++i)
        if (groups[i] >= 0 && groups[i] < n_groups) ++offset[static_cast<std::size_t>(groups[i]) + 1];
    for (std::int64_t k = 0; k < n_groups; ++k) offset[k + 1] += offset[k];
    std::vector<std::int64_t> order(static_cast<std::size_t>(offset[n_groups]));
    {
        std::vector<std::int64_t> fill(offset.begin(), offset.end() - 1);
        for (std::int64_t i = 0; i < g; ++i)
            if (groups[i] >= 0 && groups[i] < n_groups) order[fill[groups[i]]++] = i;
    }
    std::int64_t largest = 0;
    for (std::int64_t k = 0; k < n_groups; ++k) {
        auto first = order.begin() + offset[k], last = order.begin() + offset[k + 1];
        std::stable_sort(first, last, [values](std::int64_t i, std::int64_t j) {
            return nan_last_less(values[i], values[j]);
        });
        largest = std::max(largest, offset[k + 1] - offset[k]);
    }

    struct Scratch {
        std::vector<double> weights, cum, vals;
    };
    std::vector<Scratch> scratch(workers);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::int64_t per_rep = n_groups * n_probs;
    parallel_for(reps, workers, [&](std::int64_t b, std::size_t worker) {
        Scratch& s = scratch[worker];
        if (s.weights.empty() && g > 0) {
            s.weights.resize(static_cast<std::size_t>(g));
            s.cum.resize(static_cast<std::size_t>(std::max<std::int64_t>(largest, 1)));
            s.vals.resize(s.cum.size());
        }
        poisson_row(samplers, seed, b, s.weights.data());
        for (std::int64_t k = 0; k < n_groups; ++k) {
            double* dst = out + b * per_rep + k * n_probs;
            const bool ok = detail::sorted_weighted_quantiles(values, s.weights.data(), order.data() + offset[k],
                                                              offset[k + 1] - offset[k], probs, n_probs, dst,
                                                              s.cum.data(), s.vals.data());
            if (!ok) std::fill(dst, dst + n_probs, nan);
        }
    });
}

}  // namespace xpcompute
