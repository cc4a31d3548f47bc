// Random numbers of the bootstrap: xoshiro256** streams seeded by splitmix64 from (seed, replicate),
// and exact Poisson samplers (inversion for small means, Hörmann's PTRS for large ones).
// Everything here is deterministic given (seed, replicate), whatever the number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace xpcompute {

inline std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// xoshiro256** 1.0 (Blackman & Vigna), a fast 64-bit generator with 256 bits of state.
class Xoshiro256 {
public:
    // The stream of replicate `stream` under `seed`: a function of (seed, stream) only.
    Xoshiro256(std::uint64_t seed, std::uint64_t stream) {
        std::uint64_t a = seed;
        std::uint64_t mixed = splitmix64(a);
        std::uint64_t b = stream ^ 0xD1B54A32D192ED03ULL;
        mixed ^= splitmix64(b) * 0x2545F4914F6CDD1DULL;
        for (auto& word : s_) word = splitmix64(mixed);
    }

    std::uint64_t next() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform on [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4];
};

// log(Gamma(x)) for x >= 1 by Stirling's series (as in NumPy's random_loggam); thread-safe,
// unlike std::lgamma which may write the global signgam.
inline double log_gamma(double x) {
    static const double a[10] = {8.333333333333333e-02, -2.777777777777778e-03, 7.936507936507937e-04,
                                 -5.952380952380952e-04, 8.417508417508418e-04, -1.917526917526918e-03,
                                 6.410256410256410e-03, -2.955065359477124e-02, 1.796443723688307e-01,
                                 -1.39243221690590e+00};
    if (x == 1.0 || x == 2.0) return 0.0;
    const int n = x < 7.0 ? static_cast<int>(7.0 - x) : 0;
    double x0 = x + n;
    const double x2 = (1.0 / x0) * (1.0 / x0);
    double gl0 = a[9];
    for (int k = 8; k >= 0; --k) gl0 = gl0 * x2 + a[k];
    const double lg2pi = 1.8378770664093453e+00;
    double gl = gl0 / x0 + 0.5 * lg2pi + (x0 - 0.5) * std::log(x0) - x0;
    for (int k = 1; k <= n; ++k) {
        gl -= std::log(x0 - 1.0);
        x0 -= 1.0;
    }
    return gl;
}

namespace detail {

// 1/k for the inversion sampler's recurrence p_k = p_{k-1} * lambda / k (a multiply, not a divide).
struct Reciprocals {
    static constexpr int kSize = 128;
    double inv[kSize];
    Reciprocals() {
        inv[0] = 0.0;
        for (int k = 1; k < kSize; ++k) inv[k] = 1.0 / k;
    }
};

inline const Reciprocals& reciprocals() {
    static const Reciprocals table;
    return table;
}

}  // namespace detail

// Poisson samplers for many means at once (one per compressed row), with the per-mean constants
// computed once: a bootstrap draws every mean once per replicate.
//
// Means below 10 are drawn by inversion with one uniform u: the draw is the first k whose summed
// CDF (p_0 = e^-lambda, p_k = p_{k-1} * lambda / k) reaches u, and u in the rounding-sized gap
// above the saturated sum is drawn again. For up to kMaxTables distinct means the CDF is tabulated
// and searched without branches; otherwise it is summed on the fly. Both give the same draw for the
// same u. Means of 10 and more use Hörmann's PTRS (transformed rejection with squeeze), as NumPy
// does. A zero mean draws 0 without using the stream.
class PoissonTable {
public:
    static constexpr double kSmall = 10.0;
    static constexpr int kMaxK = detail::Reciprocals::kSize - 1;  // P(X > 127 | lambda < 10) < 1e-100
    static constexpr std::size_t kMaxTables = 1024;

    PoissonTable() = default;
    PoissonTable(const PoissonTable&) = delete;  // tables_ point into cdf_
    PoissonTable& operator=(const PoissonTable&) = delete;
    PoissonTable(PoissonTable&&) = default;  // moving a vector keeps its buffer
    PoissonTable& operator=(PoissonTable&&) = default;

    // Samplers for means[0..n) (finite and >= 0: checked by the caller).
    PoissonTable(const double* means, std::size_t n) {
        entries_.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            const double lam = means[i];
            Entry& e = entries_[i];
            e.lam = lam;
            if (lam <= 0.0) {
                e.kind = kZero;
            } else if (lam < kSmall) {
                e.kind = kSearch;
                e.exp_neg = std::exp(-lam);
            } else {
                e.kind = kPtrs;
                e.index = static_cast<std::int32_t>(ptrs_.size());
                ptrs_.push_back(make_ptrs(lam));
            }
        }
        // tabulate the CDFs when the small means take few distinct values (integer counts do)
        std::vector<double> distinct;
        for (const Entry& e : entries_)
            if (e.kind == kSearch) distinct.push_back(e.lam);
        std::sort(distinct.begin(), distinct.end());
        distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
        if (distinct.empty() || distinct.size() > kMaxTables) return;
        std::vector<std::int32_t> table_of(distinct.size());
        for (std::size_t t = 0; t < distinct.size(); ++t) table_of[t] = add_table(distinct[t]);
        for (Cdf& t : tables_) t.data = cdf_.data() + t.offset;
        for (Entry& e : entries_) {
            if (e.kind != kSearch) continue;
            const auto t = std::lower_bound(distinct.begin(), distinct.end(), e.lam) - distinct.begin();
            e.kind = kTable;
            e.index = table_of[static_cast<std::size_t>(t)];
        }
    }

    std::size_t size() const { return entries_.size(); }

    // A draw for row i from `rng`.
    double draw(std::size_t i, Xoshiro256& rng) const {
        const Entry& e = entries_[i];
        switch (e.kind) {
            case kTable:
                return table_draw(tables_[static_cast<std::size_t>(e.index)], rng);
            case kSearch:
                return search_draw(e.lam, e.exp_neg, rng);
            case kPtrs:
                return ptrs_draw(ptrs_[static_cast<std::size_t>(e.index)], rng);
            default:
                return 0.0;
        }
    }

private:
    enum Kind : std::int32_t { kZero = 0, kTable = 1, kSearch = 2, kPtrs = 3 };
    struct Entry {
        double lam = 0.0;
        double exp_neg = 1.0;
        std::int32_t kind = kZero;
        std::int32_t index = 0;
    };
    struct Cdf {
        std::size_t offset;  // into cdf_
        int n;               // entries before the sum saturates (the search's reachable draws)
        int padded;          // n rounded up to a multiple of 4, padded with 2.0 (never below u)
        const double* data = nullptr;
    };
    struct Ptrs {
        double lam, loglam, b, a, log_invalpha, vr;
    };

    static Ptrs make_ptrs(double lam) {
        Ptrs p;
        p.lam = lam;
        const double slam = std::sqrt(lam);
        p.loglam = std::log(lam);
        p.b = 0.931 + 2.53 * slam;
        p.a = -0.059 + 0.02483 * p.b;
        p.log_invalpha = std::log(1.1239 + 1.1328 / (p.b - 3.4));
        p.vr = 0.9277 - 3.6224 / (p.b - 2.0);
        return p;
    }

    std::int32_t add_table(double lam) {
        const double* inv = detail::reciprocals().inv;
        std::vector<double> cdf;
        double p = std::exp(-lam);
        double c = p;
        cdf.push_back(c);
        // the search stops at the first k with u <= cdf[k]; once the sum stops growing no later
        // k can be reached (such u are drawn again), so the table ends there
        for (int k = 1; k < kMaxK; ++k) {
            p *= lam * inv[k];
            const double next = c + p;
            if (next == c && k > lam) break;
            c = next;
            cdf.push_back(c);
        }
        Cdf t;
        t.offset = cdf_.size();
        t.n = static_cast<int>(cdf.size());
        t.padded = (t.n + 3) & ~3;
        cdf.resize(static_cast<std::size_t>(t.padded), 2.0);
        cdf_.insert(cdf_.end(), cdf.begin(), cdf.end());
        tables_.push_back(t);
        return static_cast<std::int32_t>(tables_.size() - 1);
    }

    static double table_draw(const Cdf& t, Xoshiro256& rng) {
        for (;;) {
            const double u = rng.uniform();
            int k = 0;
            for (int j = 0; j < t.padded; ++j) k += static_cast<int>(u > t.data[j]);
            if (k < t.n) return static_cast<double>(k);
        }
    }

    static double search_draw(double lam, double exp_neg, Xoshiro256& rng) {
        const double* inv = detail::reciprocals().inv;
        for (;;) {
            const double u = rng.uniform();
            double p = exp_neg;
            double cdf = p;
            int k = 0;
            bool saturated = false;
            while (u > cdf) {
                ++k;
                p *= lam * inv[k];
                const double next = cdf + p;
                if ((next == cdf && k > lam) || k >= kMaxK) {
                    saturated = true;
                    break;
                }
                cdf = next;
            }
            if (!saturated) return static_cast<double>(k);
        }
    }

    static double ptrs_draw(const Ptrs& c, Xoshiro256& rng) {
        for (;;) {
            const double u = rng.uniform() - 0.5;
            const double v = rng.uniform();
            const double us = 0.5 - std::fabs(u);
            if (us <= 0.0) continue;
            const double k = std::floor((2.0 * c.a / us + c.b) * u + c.lam + 0.43);
            if (us >= 0.07 && v <= c.vr) return k;
            if (k < 0.0 || !std::isfinite(k) || (us < 0.013 && v > us)) continue;
            if (std::log(v) + c.log_invalpha - std::log(c.a / (us * us) + c.b) <=
                -c.lam + k * c.loglam - log_gamma(k + 1.0)) {
                return k;
            }
        }
    }

    std::vector<Entry> entries_;
    std::vector<Cdf> tables_;
    std::vector<double> cdf_;
    std::vector<Ptrs> ptrs_;
};

}  // namespace xpcompute
