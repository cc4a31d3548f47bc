// Order statistics with frequency weights: inverted-CDF weighted quantiles and the pooled
// mid-rank sum of a two-sample rank test. See xpcompute/native/reference.py.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "xpcompute/common.hpp"

namespace xpcompute {

// Row indices [0, n) stably sorted by value, NaNs last (np.argsort(kind="stable")).
inline std::vector<std::int64_t> argsort_stable(const double* values, std::int64_t n) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [values](std::int64_t i, std::int64_t j) { return nan_last_less(values[i], values[j]); });
    return order;
}

namespace detail {

// Quantiles of the rows `order[0..n)` (already sorted by value) weighted by weights[order[i]].
// Only positive weights count. Returns false (and writes nothing) when no weight is positive.
// `cum` and `vals` are scratch buffers of at least n entries.
inline bool sorted_weighted_quantiles(const double* values, const double* weights, const std::int64_t* order,
                                      std::int64_t n, const double* probs, std::int64_t n_probs, double* out,
                                      double* cum, double* vals) {
    std::int64_t kept = 0;
    double total = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t row = order[i];
        const double w = weights[row];
        if (w > 0.0) {
            total += w;
            cum[kept] = total;
            vals[kept] = values[row];
            ++kept;
        }
    }
    if (kept == 0) return false;
    for (std::int64_t q = 0; q < n_probs; ++q) {
        const double target = probs[q] * total;
        std::int64_t idx;
        if (std::isnan(target)) {
            idx = kept - 1;  // np.searchsorted puts NaN after everything; clipped to the last value
        } else {
            idx = std::lower_bound(cum, cum + kept, target) - cum;
            if (idx > kept - 1) idx = kept - 1;
        }
        out[q] = vals[idx];
    }
    return true;
}

}  // namespace detail

// Smallest value whose cumulative positive weight is >= p * total weight, for each p.
inline void weighted_quantiles(const double* values, const double* weights, std::int64_t n, const double* probs,
                               std::int64_t n_probs, double* out) {
    const std::vector<std::int64_t> order = argsort_stable(values, n);
    std::vector<double> cum(static_cast<std::size_t>(n)), vals(static_cast<std::size_t>(n));
    const bool ok =
        detail::sorted_weighted_quantiles(values, weights, order.data(), n, probs, n_probs, out, cum.data(), vals.data());
    require(ok, "weighted_quantiles: no value has a positive weight");
}

// Mid-rank sum of sample a in the pooled sample (weights are frequencies: a row of weight 3 is
// three equal values) and the tie term sum over distinct values of t^3 - t.
inline std::pair<double, double> rank_sums(const double* values_a, const double* weights_a, std::int64_t n_a,
                                           const double* values_b, const double* weights_b, std::int64_t n_b) {
    const std::int64_t n = n_a + n_b;
    auto value = [&](std::int64_t i) { return i < n_a ? values_a[i] : values_b[i - n_a]; };
    auto weight = [&](std::int64_t i) { return i < n_a ? weights_a[i] : weights_b[i - n_a]; };
    std::vector<double> pooled(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) pooled[i] = value(i);
    const std::vector<std::int64_t> order = argsort_stable(pooled.data(), n);
    double upper = 0.0, rank_sum = 0.0, ties = 0.0;
    std::int64_t pos = 0;
    while (pos < n) {
        const double v = pooled[order[pos]];
        double tot = 0.0, in_a = 0.0;
        while (pos < n && nan_equal(pooled[order[pos]], v)) {
            const std::int64_t row = order[pos];
            tot += weight(row);
            if (row < n_a) in_a += weight(row);
            ++pos;
        }
        upper += tot;
        const double mid = upper - (tot - 1.0) / 2.0;
        rank_sum += in_a * mid;
        ties += tot * tot * tot - tot;
    }
    return {rank_sum, ties};
}

}  // namespace xpcompute
