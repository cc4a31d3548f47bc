// Event histogram accumulation: one pass over events (cell code, unit cluster, value) adding to
// counts[(cell * n_clusters + cluster) * n_buckets + bucket] and to the per-(cell, bucket) smallest and largest
// value lo/hi[cell * n_buckets + bucket], where bucket = upper_bound(edges, value) (edges ascending; bucket i holds
// edges[i-1] <= v < edges[i]; n_buckets = n_edges + 1). Non-finite values do not count.
//
// The bucket comes from a guide on the doubles' order keys (IEEE bits, negative ones flipped: exponent then
// mantissa, so about log-spaced): a grid cell holds the number of edges at or below its start; one step either
// way; a value still outside its bucket's edges (two edges in one cell) is placed by upper_bound. Exact.
//
// Threads: thread t owns the clusters [t * M / T, (t + 1) * M / T): it reads every event's cluster and adds the
// events of its own clusters straight into `counts` (no shared writes, nothing to merge), value ranges into a
// private lo/hi merged at the end. Counts are integers and ranges are min/max, so the result does not depend on
// the number of threads. A cell or cluster out of range throws (std::invalid_argument) after the pass; the
// outputs are then unspecified.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "xpcompute/common.hpp"

namespace xpcompute {

namespace detail {

inline std::int64_t order_key(double v) {
    std::int64_t u;
    std::memcpy(&u, &v, sizeof u);
    return u ^ ((u >> 63) & std::numeric_limits<std::int64_t>::max());
}

struct BitGuide {
    std::vector<double> padded;          // -inf, edges..., +inf
    std::vector<std::int32_t> first;     // per grid cell: edges at or below its start
    std::vector<double> below, above;    // padded[first], padded[first + 1]
    std::int64_t start = 0;
    int shift = 63;
    std::int64_t n_edges = 0;

    BitGuide(const double* edges, std::int64_t n, std::int64_t per_bucket = 32) : n_edges(n) {
        const double inf = std::numeric_limits<double>::infinity();
        padded.reserve(static_cast<std::size_t>(n) + 2);
        padded.push_back(-inf);
        padded.insert(padded.end(), edges, edges + n);
        padded.push_back(inf);
        if (n == 0) {
            first.assign(1, 0);
            below.assign(1, -inf);
            above.assign(1, inf);
            return;
        }
        start = order_key(edges[0]);
        const std::uint64_t span = static_cast<std::uint64_t>(order_key(edges[n - 1])) - static_cast<std::uint64_t>(start);
        const std::uint64_t target = static_cast<std::uint64_t>(per_bucket) * static_cast<std::uint64_t>(n + 1);
        shift = 0;
        while ((span >> shift) > target) ++shift;
        const std::uint64_t cells = (span >> shift) + 1;
        first.resize(cells);
        below.resize(cells);
        above.resize(cells);
        std::int64_t j = 0;  // edges with key <= the cell's start
        for (std::uint64_t c = 0; c < cells; ++c) {
            const std::uint64_t s = static_cast<std::uint64_t>(start) + (c << shift);
            while (j < n && static_cast<std::uint64_t>(order_key(edges[j])) - static_cast<std::uint64_t>(start) <=
                                s - static_cast<std::uint64_t>(start))
                ++j;
            first[c] = static_cast<std::int32_t>(j);
            below[c] = padded[static_cast<std::size_t>(j)];
            above[c] = padded[static_cast<std::size_t>(j) + 1];
        }
    }

    std::int64_t bucket(double v) const {
        const std::int64_t key = order_key(v);
        std::uint64_t c = 0;
        if (key > start) {
            c = (static_cast<std::uint64_t>(key) - static_cast<std::uint64_t>(start)) >> shift;
            if (c >= first.size()) c = first.size() - 1;
        }
        std::int64_t b = first[c] - (v < below[c] ? 1 : 0) + (v >= above[c] ? 1 : 0);
        if (b < 0) b = 0;
        if (b > n_edges) b = n_edges;
        if (v < padded[static_cast<std::size_t>(b)] || v >= padded[static_cast<std::size_t>(b) + 1])
            b = std::upper_bound(padded.begin() + 1, padded.end() - 1, v) - (padded.begin() + 1);
        return b;
    }
};

}  // namespace detail

// Adds n events to counts [n_cells * n_clusters * (n_edges + 1)] and lo/hi [n_cells * (n_edges + 1)].
template <class Code>
inline void event_histogram(const Code* cells, const Code* clusters, const double* values, std::int64_t n,
                            const double* edges, std::int64_t n_edges, std::int64_t n_cells, std::int64_t n_clusters,
                            std::int64_t* counts, double* lo, double* hi, std::int64_t threads) {
    require(n >= 0 && n_edges >= 0, "event_histogram: sizes must be >= 0");
    require(n_cells >= 1, "event_histogram: n_cells must be >= 1, got " + std::to_string(n_cells));
    require(n_clusters >= 1, "event_histogram: n_clusters must be >= 1, got " + std::to_string(n_clusters));
    for (std::int64_t i = 1; i < n_edges; ++i)
        require(edges[i - 1] < edges[i], "event_histogram: edges must be strictly increasing");
    for (std::int64_t i = 0; i < n_edges; ++i) require(std::isfinite(edges[i]), "event_histogram: edges must be finite");
    const detail::BitGuide guide(edges, n_edges);
    const std::int64_t nb = n_edges + 1;
    const std::int64_t ranges = n_cells * nb;
    // fewer threads on small inputs: each reads every event's cluster
    const std::size_t workers = resolve_threads(threads, std::max<std::int64_t>(1, std::min(n_clusters, n / 200000)));
    std::vector<std::vector<double>> t_lo(workers), t_hi(workers);
    std::vector<char> bad(workers, 0);
    auto work = [&, n, n_cells, n_clusters, nb](std::size_t t) {
        const detail::BitGuide gd = guide;  // a local copy: the stores below cannot alias its members
        const std::int64_t c0 = n_clusters * static_cast<std::int64_t>(t) / static_cast<std::int64_t>(workers);
        const std::int64_t c1 = n_clusters * static_cast<std::int64_t>(t + 1) / static_cast<std::int64_t>(workers);
        std::vector<double>& my_lo = t_lo[t];
        std::vector<double>& my_hi = t_hi[t];
        my_lo.assign(static_cast<std::size_t>(ranges), std::numeric_limits<double>::infinity());
        my_hi.assign(static_cast<std::size_t>(ranges), -std::numeric_limits<double>::infinity());
        bool wrong = false;
        // two passes per block of events: the owned events' buckets first (the guide's lookups overlap freely),
        // then the counts and ranges (their scattered writes overlap freely): faster than one fused loop
        constexpr std::int64_t block = 4096;
        std::vector<std::int64_t> slot(block), range(block);
        std::vector<double> value(block);
        for (std::int64_t s0 = 0; s0 < n; s0 += block) {
            const std::int64_t s1 = std::min(n, s0 + block);
            std::int64_t kept = 0;
            for (std::int64_t i = s0; i < s1; ++i) {
                const std::int64_t c = static_cast<std::int64_t>(clusters[i]);
                if (c < c0 || c >= c1) {
                    if (t == 0 && (c < 0 || c >= n_clusters)) wrong = true;
                    continue;
                }
                const double v = values[i];
                if (!std::isfinite(v)) continue;
                const std::int64_t g = static_cast<std::int64_t>(cells[i]);
                if (g < 0 || g >= n_cells) {
                    wrong = true;
                    continue;
                }
                const std::int64_t b = gd.bucket(v);
                slot[static_cast<std::size_t>(kept)] = (g * n_clusters + c) * nb + b;
                range[static_cast<std::size_t>(kept)] = g * nb + b;
                value[static_cast<std::size_t>(kept)] = v;
                ++kept;
            }
            for (std::int64_t j = 0; j < kept; ++j) {
                const std::size_t u = static_cast<std::size_t>(j);
                const double v = value[u];
                counts[slot[u]] += 1;
                const std::size_t r = static_cast<std::size_t>(range[u]);
                my_lo[r] = std::min(my_lo[r], v);
                my_hi[r] = std::max(my_hi[r], v);
            }
        }
        bad[t] = wrong ? 1 : 0;
    };
    if (workers <= 1) {
        work(0);
    } else {
        std::vector<std::thread> pool;
        pool.reserve(workers - 1);
        std::size_t started = 1;
        for (; started < workers; ++started) {
            try {
                pool.emplace_back(work, started);
            } catch (const std::system_error&) {
                break;  // could not start another thread: this one does the rest of the clusters
            }
        }
        work(0);
        for (std::size_t t = started; t < workers; ++t) work(t);
        for (auto& th : pool) th.join();
    }
    for (std::size_t t = 0; t < workers; ++t) {
        require(!bad[t], "event_histogram: a cell code outside [0, n_cells) or a cluster outside [0, n_clusters)");
        for (std::int64_t r = 0; r < ranges; ++r) {
            lo[r] = std::min(lo[r], t_lo[t][static_cast<std::size_t>(r)]);
            hi[r] = std::max(hi[r], t_hi[t][static_cast<std::size_t>(r)]);
        }
    }
}

}  // namespace xpcompute
