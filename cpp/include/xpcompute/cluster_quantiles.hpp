// Poisson bootstrap, clustered by unit, of event-level quantiles on compressed event histograms.
//
// Input rows are (group, bucket, cluster, count, lower, upper): `count` events of group (cell) `group`
// whose values fall in value bucket `bucket` (buckets ordered by value, edges shared by every group)
// and whose units hash to `cluster` (0 <= cluster < n_clusters; a unit is never split across clusters).
// lower/upper are the smallest and largest value of those events. Per group, a bucket's range is the
// smallest lower and the largest upper over its rows.
//
// Replicate b gives every (group, cluster) pair a weight w ~ Poisson(1), drawn in the order
// k = 0..n_groups-1, c = 0..n_clusters-1 from Xoshiro256(seed, b) (= poisson_row on n_groups * n_clusters
// means of 1, i.e. the row b of poisson_weights(ones)), so results depend on (seed, b) only. Group k's
// weighted CDF at bucket j is F(j) = sum_c w_kc * C_kc(j), with C_kc(j) the count of cluster c's events in
// buckets 0..j. For prob p the bucket is the first j with F(j) >= p * F(last), and the quantile is the
// grouped-data ogive lower_j + clip((p * F(last) - F(j - 1)) / (F(j) - F(j - 1)), 0, 1) * (upper_j - lower_j),
// as in grouped_bootstrap.hpp. A replicate that leaves a group without weight gives NaN.
//
// Speed: per group, a replicate needs F at the bucket of the point estimate (unit weights) of each prob, one dot
// product of the M weights with that bucket's cumulative counts per cluster (kept dense for those buckets only),
// and the total F(last) likewise; from there the search steps bucket by bucket, each step adding or removing one
// bucket's weighted count from its sparse (cluster, count) rows. A replicate's quantile moves a few buckets at
// most, so a replicate costs O(M * (1 + probs)) plus a few buckets' rows, whatever the number of buckets, and
// setting up costs O(rows + probs * M). Counts and weights are whole numbers, so every F(j) is exact (below
// 2**53) and the result does not depend on summation order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "xpcompute/common.hpp"
#include "xpcompute/rng.hpp"

namespace xpcompute {

namespace detail {

// One group's histogram: its non-empty buckets in value order, each bucket's (cluster, count) rows, and dense
// cumulative counts per cluster at the point estimate's bucket of each prob and at the last bucket.
struct ClusterHistogram {
    std::vector<double> lo, hi;          // per non-empty bucket
    std::vector<std::int64_t> row_ptr;   // nb + 1 offsets into cluster/count
    std::vector<std::int32_t> cluster;   // the bucket's rows
    std::vector<double> count;
    std::vector<std::size_t> start;      // per prob: the bucket of the point estimate (unit weights)
    std::vector<double> cum_start;       // [n_probs, M]: counts per cluster in buckets <= start[q]
    std::vector<double> total;           // [M]: counts per cluster in every bucket
    std::size_t nb = 0;
};

// sum of w[cluster] * count over one bucket's rows
inline double bucket_mass(const ClusterHistogram& h, std::size_t j, const double* w) {
    double s = 0.0;
    for (std::int64_t r = h.row_ptr[j]; r < h.row_ptr[j + 1]; ++r) s += w[h.cluster[static_cast<std::size_t>(r)]] * h.count[static_cast<std::size_t>(r)];
    return s;
}

inline double dot_row(const double* w, const double* row, std::int64_t m) {
    // four running sums: the products are whole numbers below 2**53, so any order gives the same exact sum
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    std::int64_t c = 0;
    for (; c + 4 <= m; c += 4) {
        s0 += w[c] * row[c];
        s1 += w[c + 1] * row[c + 1];
        s2 += w[c + 2] * row[c + 2];
        s3 += w[c + 3] * row[c + 3];
    }
    for (; c < m; ++c) s0 += w[c] * row[c];
    return (s0 + s1) + (s2 + s3);
}

}  // namespace detail

// out: row-major [reps, n_groups, n_probs].
inline void bootstrap_cluster_quantiles(const std::int32_t* groups, const std::int32_t* buckets,
                                        const std::int32_t* clusters, const double* counts, const double* lower,
                                        const double* upper, std::int64_t n, std::int64_t n_groups,
                                        std::int64_t n_buckets, std::int64_t n_clusters, const double* probs,
                                        std::int64_t n_probs, std::int64_t reps, std::uint64_t seed,
                                        std::int64_t threads, double* out) {
    const std::string fn = "bootstrap_cluster_quantiles: ";
    require(n >= 0, fn + "negative number of rows");
    require(n_groups >= 0, fn + "n_groups must be >= 0, got " + std::to_string(n_groups));
    require(n_buckets >= 0, fn + "n_buckets must be >= 0, got " + std::to_string(n_buckets));
    require(n_clusters >= 1, fn + "n_clusters must be >= 1, got " + std::to_string(n_clusters));
    require(reps >= 0, fn + "reps must be >= 0, got " + std::to_string(reps));
    require(n_groups * n_buckets * n_clusters <= (std::int64_t{1} << 31),
            fn + "n_groups * n_buckets * n_clusters is too large for a dense histogram (at most 2**31)");
    for (std::int64_t q = 0; q < n_probs; ++q)
        require(probs[q] > 0.0 && probs[q] < 1.0, fn + "probs must lie in (0, 1), got " + std::to_string(probs[q]));
    for (std::int64_t i = 0; i < n; ++i) {  // messages are built only on failure (this loop runs per row)
        if (!(groups[i] >= 0 && groups[i] < n_groups))
            throw std::invalid_argument(fn + "group " + std::to_string(groups[i]) + " at row " + std::to_string(i) +
                                        " is outside [0, n_groups)");
        if (!(buckets[i] >= 0 && buckets[i] < n_buckets))
            throw std::invalid_argument(fn + "bucket " + std::to_string(buckets[i]) + " at row " + std::to_string(i) +
                                        " is outside [0, n_buckets)");
        if (!(clusters[i] >= 0 && clusters[i] < n_clusters))
            throw std::invalid_argument(fn + "cluster " + std::to_string(clusters[i]) + " at row " +
                                        std::to_string(i) + " is outside [0, n_clusters)");
        if (!(std::isfinite(counts[i]) && counts[i] >= 0.0 && counts[i] == std::floor(counts[i]) && counts[i] < 9e15))
            throw std::invalid_argument(fn + "counts must be whole numbers >= 0, got " + std::to_string(counts[i]) +
                                        " at row " + std::to_string(i));
        if (!(lower[i] <= upper[i]))
            throw std::invalid_argument(fn + "lower must be <= upper on every row, got [" + std::to_string(lower[i]) +
                                        ", " + std::to_string(upper[i]) + "] at row " + std::to_string(i));
    }
    const std::int64_t m = n_clusters;
    const std::size_t B = static_cast<std::size_t>(n_buckets);
    const double inf = std::numeric_limits<double>::infinity();

    // per group: rows grouped by bucket (counting sort), the non-empty buckets, the dense rows at the starts
    std::vector<detail::ClusterHistogram> hist(static_cast<std::size_t>(n_groups));
    {
        std::vector<std::vector<std::int64_t>> rows_of(static_cast<std::size_t>(n_groups));
        for (std::int64_t i = 0; i < n; ++i)
            if (counts[i] > 0.0) rows_of[static_cast<std::size_t>(groups[i])].push_back(i);
        std::vector<std::int64_t> per_bucket, next;
        std::vector<double> lo, hi, mass;
        for (std::int64_t k = 0; k < n_groups; ++k) {
            const auto& rows = rows_of[static_cast<std::size_t>(k)];
            per_bucket.assign(B + 1, 0);
            lo.assign(B, inf);
            hi.assign(B, -inf);
            mass.assign(B, 0.0);
            for (const std::int64_t i : rows) {
                const std::size_t j = static_cast<std::size_t>(buckets[i]);
                ++per_bucket[j + 1];
                lo[j] = std::min(lo[j], lower[i]);
                hi[j] = std::max(hi[j], upper[i]);
                mass[j] += counts[i];
            }
            for (std::size_t j = 0; j < B; ++j) per_bucket[j + 1] += per_bucket[j];
            auto& h = hist[static_cast<std::size_t>(k)];
            h.cluster.resize(rows.size());
            h.count.resize(rows.size());
            next.assign(per_bucket.begin(), per_bucket.end() - 1);
            for (const std::int64_t i : rows) {
                const std::size_t at = static_cast<std::size_t>(next[static_cast<std::size_t>(buckets[i])]++);
                h.cluster[at] = clusters[i];
                h.count[at] = counts[i];
            }
            std::vector<double> cum_total;
            double t = 0.0;
            for (std::size_t j = 0; j < B; ++j) {
                if (!(mass[j] > 0.0)) continue;
                h.lo.push_back(lo[j]);
                h.hi.push_back(hi[j]);
                h.row_ptr.push_back(per_bucket[j]);
                cum_total.push_back(t += mass[j]);
            }
            h.row_ptr.push_back(static_cast<std::int64_t>(rows.size()));
            h.nb = h.lo.size();
            if (h.nb == 0) continue;
            h.total.assign(static_cast<std::size_t>(m), 0.0);
            for (std::size_t r = 0; r < h.cluster.size(); ++r) h.total[static_cast<std::size_t>(h.cluster[r])] += h.count[r];
            h.cum_start.assign(static_cast<std::size_t>(n_probs * m), 0.0);
            for (std::int64_t q = 0; q < n_probs; ++q) {
                const double target = probs[q] * t;
                std::size_t j = static_cast<std::size_t>(std::lower_bound(cum_total.begin(), cum_total.end(), target) -
                                                         cum_total.begin());
                j = std::min(j, h.nb - 1);
                h.start.push_back(j);
                double* dst = h.cum_start.data() + q * m;
                for (std::int64_t r = 0; r < h.row_ptr[j + 1]; ++r)
                    dst[h.cluster[static_cast<std::size_t>(r)]] += h.count[static_cast<std::size_t>(r)];
            }
        }
    }

    const std::size_t workers = resolve_threads(threads, reps);
    const std::vector<double> ones(static_cast<std::size_t>(n_groups * m), 1.0);
    const PoissonTable sampler(ones.data(), ones.size());
    std::vector<std::vector<double>> scratch(workers);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::int64_t per_rep = n_groups * n_probs;
    parallel_for(reps, workers, [&](std::int64_t b, std::size_t worker) {
        std::vector<double>& w = scratch[worker];
        if (w.size() != ones.size()) w.resize(ones.size());
        Xoshiro256 rng(seed, static_cast<std::uint64_t>(b));
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = sampler.draw(i, rng);
        for (std::int64_t k = 0; k < n_groups; ++k) {
            const auto& h = hist[static_cast<std::size_t>(k)];
            double* dst = out + b * per_rep + k * n_probs;
            const double* wk = w.data() + k * m;
            if (h.nb == 0) {
                std::fill(dst, dst + n_probs, nan);
                continue;
            }
            const double total = detail::dot_row(wk, h.total.data(), m);
            if (!(total > 0.0)) {
                std::fill(dst, dst + n_probs, nan);
                continue;
            }
            for (std::int64_t q = 0; q < n_probs; ++q) {
                const double target = probs[q] * total;
                std::size_t j = h.start[static_cast<std::size_t>(q)];
                double fj = detail::dot_row(wk, h.cum_start.data() + q * m, m);
                double prev = 0.0;
                if (fj >= target) {  // step down while the buckets below still reach the target
                    prev = fj - detail::bucket_mass(h, j, wk);
                    while (j > 0 && prev >= target) {
                        fj = prev;
                        --j;
                        prev = fj - detail::bucket_mass(h, j, wk);
                    }
                } else {  // step up until the target is reached (the last bucket always reaches it)
                    while (fj < target && j + 1 < h.nb) {
                        prev = fj;
                        fj += detail::bucket_mass(h, ++j, wk);
                    }
                }
                const double mass = fj - prev;
                double frac = mass > 0.0 ? (target - prev) / mass : 1.0;
                frac = std::min(std::max(frac, 0.0), 1.0);
                dst[q] = h.lo[j] + frac * (h.hi[j] - h.lo[j]);
            }
        }
    });
}

}  // namespace xpcompute
