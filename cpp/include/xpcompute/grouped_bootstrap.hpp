// Poisson bootstrap of grouped-data (n-tile) quantiles: for every replicate and group, the quantile
// found by linear interpolation of the CDF inside the bucket that holds it (the grouped-data ogive).
//
// Replicate b draws the weights of poisson_weights with the same seed (poisson_row), so the result
// equals the NumPy spec (reference.grouped_quantiles applied per group to poisson_weights' rows)
// draw for draw. Rows of one group with the same value are one bucket (their weights are summed; the
// bucket's range is that of its first row in stable value order, as the spec takes it). For prob p
// the bucket j is the first whose cumulative weight reaches p * total (clipped to the last bucket),
// and the quantile is lower_j + clip((p * total - F_{j-1}) / w_j, 0, 1) * (upper_j - lower_j);
// a replicate that leaves a group without weight gives NaN.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "xpcompute/bootstrap.hpp"
#include "xpcompute/common.hpp"
#include "xpcompute/ranks.hpp"
#include "xpcompute/rng.hpp"

namespace xpcompute {

namespace detail {

// The buckets of one group: rows[row_start[j] .. row_start[j + 1]) of `rows` hold bucket j's rows.
struct GroupBuckets {
    std::vector<std::int64_t> rows;       // the group's rows, sorted by value (stable, NaN last)
    std::vector<std::int64_t> row_start;  // n_buckets + 1 offsets into rows
    std::vector<double> lo, width;        // per bucket: lower bound and upper - lower
};

// Quantiles of one group under one weighting (the ogive); false when the group has no weight.
inline bool ogive_quantiles(const GroupBuckets& gb, const double* weights, const double* probs, std::int64_t n_probs,
                            double* out, double* mass, double* cum) {
    const std::size_t nb = gb.lo.size();
    if (nb == 0) return false;
    double total = 0.0;
    for (std::size_t j = 0; j < nb; ++j) {
        double m = 0.0;
        for (std::int64_t r = gb.row_start[j]; r < gb.row_start[j + 1]; ++r) m += weights[gb.rows[r]];
        mass[j] = m;
        total += m;
        cum[j] = total;
    }
    if (!(total > 0.0)) return false;
    for (std::int64_t q = 0; q < n_probs; ++q) {
        const double target = total * probs[q];
        std::size_t j = static_cast<std::size_t>(std::lower_bound(cum, cum + nb, target) - cum);
        if (j > nb - 1) j = nb - 1;
        const double prev = j > 0 ? cum[j - 1] : 0.0;
        double frac = mass[j] > 0.0 ? (target - prev) / mass[j] : 1.0;
        frac = std::min(std::max(frac, 0.0), 1.0);
        out[q] = gb.lo[j] + frac * gb.width[j];
    }
    return true;
}

}  // namespace detail

// out: row-major [reps, n_groups, n_probs]. Rows whose group is outside [0, n_groups) take part in
// no group (but still draw their weight, so the other rows' weights do not change).
inline void bootstrap_grouped_quantiles(const double* values, const double* lower, const double* upper,
                                        const double* counts, const std::int32_t* groups, std::int64_t g,
                                        std::int64_t n_groups, const double* probs, std::int64_t n_probs,
                                        std::int64_t reps, std::uint64_t seed, std::int64_t threads, double* out) {
    require(g >= 0, "bootstrap_grouped_quantiles: negative number of rows");
    require(n_groups >= 0, "bootstrap_grouped_quantiles: n_groups must be >= 0, got " + std::to_string(n_groups));
    require(reps >= 0, "bootstrap_grouped_quantiles: reps must be >= 0, got " + std::to_string(reps));
    for (std::int64_t i = 0; i < g; ++i)
        if (!(lower[i] <= upper[i]))
            throw std::invalid_argument("bootstrap_grouped_quantiles: lower must be <= upper on every row, got [" +
                                        std::to_string(lower[i]) + ", " + std::to_string(upper[i]) + "] at row " +
                                        std::to_string(i));
    const std::size_t workers = resolve_threads(threads, reps);
    const auto samplers = poisson_samplers(counts, g);

    std::vector<detail::GroupBuckets> buckets(static_cast<std::size_t>(n_groups));
    for (std::int64_t i = 0; i < g; ++i)
        if (groups[i] >= 0 && groups[i] < n_groups) buckets[static_cast<std::size_t>(groups[i])].rows.push_back(i);
    std::size_t largest = 1;
    for (auto& gb : buckets) {
        std::stable_sort(gb.rows.begin(), gb.rows.end(),
                         [values](std::int64_t i, std::int64_t j) { return nan_last_less(values[i], values[j]); });
        for (std::size_t r = 0; r < gb.rows.size(); ++r) {
            const double v = values[gb.rows[r]];
            // a new bucket where the value changes (NaN != NaN: every NaN row is its own bucket, as in NumPy)
            if (r == 0 || !(v == values[gb.rows[r - 1]])) {
                gb.row_start.push_back(static_cast<std::int64_t>(r));
                gb.lo.push_back(lower[gb.rows[r]]);
                gb.width.push_back(upper[gb.rows[r]] - lower[gb.rows[r]]);
            }
        }
        gb.row_start.push_back(static_cast<std::int64_t>(gb.rows.size()));
        largest = std::max(largest, gb.lo.size());
    }

    struct Scratch {
        std::vector<double> weights, mass, cum;
    };
    std::vector<Scratch> scratch(workers);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::int64_t per_rep = n_groups * n_probs;
    parallel_for(reps, workers, [&](std::int64_t b, std::size_t worker) {
        Scratch& s = scratch[worker];
        if (s.mass.empty()) {
            s.weights.resize(static_cast<std::size_t>(std::max<std::int64_t>(g, 1)));
            s.mass.resize(largest);
            s.cum.resize(largest);
        }
        poisson_row(samplers, seed, b, s.weights.data());
        for (std::int64_t k = 0; k < n_groups; ++k) {
            double* dst = out + b * per_rep + k * n_probs;
            if (!detail::ogive_quantiles(buckets[static_cast<std::size_t>(k)], s.weights.data(), probs, n_probs, dst,
                                         s.mass.data(), s.cum.data()))
                std::fill(dst, dst + n_probs, nan);
        }
    });
}

}  // namespace xpcompute
