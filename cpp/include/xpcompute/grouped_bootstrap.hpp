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
//
// bootstrap_grouped_quantiles_windowed draws the same bootstrap with far fewer Poisson draws. A
// bucket's weight is Poisson(its count), independent of the others, so the summed weight of any run
// of buckets is one Poisson draw of the summed count. Around each prob's quantile it draws the
// buckets one by one, in a window of +-window_sd * sqrt(total count) of cumulative count (the
// replicate's crossing point p * T - F_j has sd <= sqrt(total)), and each gap between windows as
// one draw. When the crossing falls in a window the quantile is the one the full draw would give
// for those weights; when it falls in a gap (probability below 2 Phi(-window_sd) per prob and
// replicate, 1.5e-23 at 10) that group's replicate is drawn again bucket by bucket from a stream of
// its own, so the output differs in law from the full bootstrap by at most that probability (total
// variation). At 10M rows in 2 x 1000 buckets this is ~45 draws per group and replicate, not 1000.
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

namespace detail {

// One group's windowed plan: segments in bucket order, each a single bucket (kind 1) or a gap of
// buckets [first, last) drawn as one (kind 0), with the Poisson mean of each.
struct WindowPlan {
    std::vector<std::int64_t> first, last;
    std::vector<std::uint8_t> single;
    std::vector<double> mean;
};

inline WindowPlan window_plan(const std::vector<double>& bucket_mean, const double* probs, std::int64_t n_probs,
                              double window_sd) {
    const std::size_t nb = bucket_mean.size();
    std::vector<double> cum(nb);
    double total = 0.0;
    for (std::size_t j = 0; j < nb; ++j) cum[j] = (total += bucket_mean[j]);
    std::vector<std::uint8_t> in_window(nb, 0);
    const double half = window_sd * std::sqrt(total) + 1.0;
    for (std::int64_t q = 0; q < n_probs; ++q) {
        const double centre = probs[q] * total;
        for (std::size_t j = 0; j < nb; ++j) {
            const double lo = j > 0 ? cum[j - 1] : 0.0;  // bucket j spans cumulative count [lo, cum[j]]
            if (cum[j] >= centre - half && lo <= centre + half) in_window[j] = 1;
        }
    }
    WindowPlan plan;
    std::size_t j = 0;
    while (j < nb) {
        if (in_window[j]) {
            plan.first.push_back(static_cast<std::int64_t>(j));
            plan.last.push_back(static_cast<std::int64_t>(j + 1));
            plan.single.push_back(1);
            plan.mean.push_back(bucket_mean[j]);
            ++j;
            continue;
        }
        const std::size_t start = j;
        double m = 0.0;
        while (j < nb && !in_window[j]) m += bucket_mean[j++];
        plan.first.push_back(static_cast<std::int64_t>(start));
        plan.last.push_back(static_cast<std::int64_t>(j));
        plan.single.push_back(0);
        plan.mean.push_back(m);
    }
    return plan;
}

}  // namespace detail

// As bootstrap_grouped_quantiles, with the windowed draws described at the top (window_sd > 0).
// fallbacks (may be null) receives how many (replicate, group) pairs were redrawn bucket by bucket.
inline void bootstrap_grouped_quantiles_windowed(const double* values, const double* lower, const double* upper,
                                                 const double* counts, const std::int32_t* groups, std::int64_t g,
                                                 std::int64_t n_groups, const double* probs, std::int64_t n_probs,
                                                 std::int64_t reps, std::uint64_t seed, std::int64_t threads,
                                                 double window_sd, double* out, std::int64_t* fallbacks) {
    require(g >= 0, "bootstrap_grouped_quantiles: negative number of rows");
    require(n_groups >= 0, "bootstrap_grouped_quantiles: n_groups must be >= 0, got " + std::to_string(n_groups));
    require(reps >= 0, "bootstrap_grouped_quantiles: reps must be >= 0, got " + std::to_string(reps));
    require(window_sd > 0.0 && std::isfinite(window_sd),
            "bootstrap_grouped_quantiles: window_sd must be a positive number of standard deviations, e.g. 10");
    for (std::int64_t i = 0; i < g; ++i)
        if (!(lower[i] <= upper[i]))
            throw std::invalid_argument("bootstrap_grouped_quantiles: lower must be <= upper on every row, got [" +
                                        std::to_string(lower[i]) + ", " + std::to_string(upper[i]) + "] at row " +
                                        std::to_string(i));
    poisson_samplers(counts, g);  // validates the counts
    const std::size_t workers = resolve_threads(threads, reps);

    // buckets per group (rows with one value merged, as in the full version), their means, the plan
    std::vector<detail::GroupBuckets> buckets(static_cast<std::size_t>(n_groups));
    for (std::int64_t i = 0; i < g; ++i)
        if (groups[i] >= 0 && groups[i] < n_groups) buckets[static_cast<std::size_t>(groups[i])].rows.push_back(i);
    std::vector<detail::WindowPlan> plans;
    std::vector<PoissonTable> segment_samplers, bucket_samplers;
    std::size_t largest = 1;
    for (auto& gb : buckets) {
        std::stable_sort(gb.rows.begin(), gb.rows.end(),
                         [values](std::int64_t i, std::int64_t j) { return nan_last_less(values[i], values[j]); });
        std::vector<double> mean;
        for (std::size_t r = 0; r < gb.rows.size(); ++r) {
            const double v = values[gb.rows[r]];
            if (r == 0 || !(v == values[gb.rows[r - 1]])) {
                gb.row_start.push_back(static_cast<std::int64_t>(r));
                gb.lo.push_back(lower[gb.rows[r]]);
                gb.width.push_back(upper[gb.rows[r]] - lower[gb.rows[r]]);
                mean.push_back(0.0);
            }
            mean.back() += counts[gb.rows[r]];
        }
        gb.row_start.push_back(static_cast<std::int64_t>(gb.rows.size()));
        largest = std::max(largest, gb.lo.size());
        plans.push_back(detail::window_plan(mean, probs, n_probs, window_sd));
        segment_samplers.push_back(poisson_samplers(plans.back().mean.data(),
                                                    static_cast<std::int64_t>(plans.back().mean.size())));
        bucket_samplers.push_back(poisson_samplers(mean.data(), static_cast<std::int64_t>(mean.size())));
    }

    struct Scratch {
        std::vector<double> seg_w, seg_cum, weights, mass, cum;
        std::int64_t fallbacks = 0;
    };
    std::vector<Scratch> scratch(workers);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::int64_t per_rep = n_groups * n_probs;
    parallel_for(reps, workers, [&](std::int64_t b, std::size_t worker) {
        Scratch& s = scratch[worker];
        if (s.mass.empty()) {
            s.seg_w.resize(largest);
            s.seg_cum.resize(largest);
            s.weights.resize(largest);
            s.mass.resize(largest);
            s.cum.resize(largest);
        }
        Xoshiro256 rng(seed, static_cast<std::uint64_t>(b));
        for (std::int64_t k = 0; k < n_groups; ++k) {
            const auto& plan = plans[static_cast<std::size_t>(k)];
            const auto& gb = buckets[static_cast<std::size_t>(k)];
            double* dst = out + b * per_rep + k * n_probs;
            const std::size_t ns = plan.mean.size();
            double total = 0.0;
            for (std::size_t t = 0; t < ns; ++t) {
                s.seg_w[t] = segment_samplers[static_cast<std::size_t>(k)].draw(t, rng);
                s.seg_cum[t] = (total += s.seg_w[t]);
            }
            if (!(total > 0.0)) {
                std::fill(dst, dst + n_probs, nan);
                continue;
            }
            bool redraw = false;
            for (std::int64_t q = 0; q < n_probs && !redraw; ++q) {
                const double target = total * probs[q];
                std::size_t t = static_cast<std::size_t>(std::lower_bound(s.seg_cum.data(), s.seg_cum.data() + ns,
                                                                          target) - s.seg_cum.data());
                if (t > ns - 1) t = ns - 1;
                if (!plan.single[t]) {
                    redraw = true;
                    break;
                }
                const std::size_t j = static_cast<std::size_t>(plan.first[t]);
                const double prev = t > 0 ? s.seg_cum[t - 1] : 0.0;
                const double m = s.seg_w[t];
                double frac = m > 0.0 ? (target - prev) / m : 1.0;
                frac = std::min(std::max(frac, 0.0), 1.0);
                dst[q] = gb.lo[j] + frac * gb.width[j];
            }
            if (!redraw) continue;
            // the crossing fell in a gap: this group's replicate again, bucket by bucket, from its own stream
            ++s.fallbacks;
            Xoshiro256 own(seed ^ 0x9E3779B97F4A7C15ULL, static_cast<std::uint64_t>(b * n_groups + k));
            const auto& sampler = bucket_samplers[static_cast<std::size_t>(k)];
            const std::size_t nb = gb.lo.size();
            double tot = 0.0;
            for (std::size_t j = 0; j < nb; ++j) {
                s.mass[j] = sampler.draw(j, own);
                s.cum[j] = (tot += s.mass[j]);
            }
            if (!(tot > 0.0)) {
                std::fill(dst, dst + n_probs, nan);
                continue;
            }
            for (std::int64_t q = 0; q < n_probs; ++q) {
                const double target = tot * probs[q];
                std::size_t j = static_cast<std::size_t>(std::lower_bound(s.cum.data(), s.cum.data() + nb, target) -
                                                         s.cum.data());
                if (j > nb - 1) j = nb - 1;
                const double prev = j > 0 ? s.cum[j - 1] : 0.0;
                double frac = s.mass[j] > 0.0 ? (target - prev) / s.mass[j] : 1.0;
                frac = std::min(std::max(frac, 0.0), 1.0);
                dst[q] = gb.lo[j] + frac * gb.width[j];
            }
        }
    });
    if (fallbacks != nullptr) {
        std::int64_t n = 0;
        for (const auto& s : scratch) n += s.fallbacks;
        *fallbacks = n;
    }
}

}  // namespace xpcompute
