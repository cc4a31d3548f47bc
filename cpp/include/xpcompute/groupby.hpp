// Group-by of weighted monomials (the lossless compressor's kernel).
//
// For every distinct mixed-radix key code g (sorted ascending) and monomial j:
//   sums[g, j] = sum_i w_i * prod_c columns[c][i] ** exponents[j, c],   counts[g] = sum_i w_i.
// Rows with a key index outside [0, radix) or a NaN in any column or in the weight are dropped.
// Rows are summed in input order within each group. See xpcompute/native/reference.py.
// Up to 2^22 possible codes a direct-indexed table maps codes to groups; above, the valid rows are
// radix-sorted by code (memory-bound but without a hash table's random probes).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "xpcompute/common.hpp"

namespace xpcompute {

// One key column: dictionary indices (int32 or int64) and the size of their dictionary.
struct KeyColumn {
    const std::int32_t* i32 = nullptr;
    const std::int64_t* i64 = nullptr;
    std::int64_t radix = 0;
};

struct GroupMomentsInput {
    std::vector<KeyColumn> keys;
    std::vector<const double*> columns;
    std::vector<std::int32_t> exponents;  // row-major [n_monomials, columns.size()]
    std::int64_t n_monomials = 0;
    const double* weights = nullptr;  // nullptr: every row weighs 1
    std::int64_t n_rows = 0;
};

struct GroupMomentsResult {
    std::vector<std::int64_t> codes;  // [n_groups], ascending
    std::vector<double> counts;       // [n_groups]
    std::vector<double> sums;         // row-major [n_groups, n_monomials]
    std::int64_t n_monomials = 0;
    std::int64_t dropped = 0;
};

namespace detail {

// Product of the radices, or -1 when it exceeds 2^62 (the codes would not fit comfortably).
inline std::int64_t radix_product(const std::vector<KeyColumn>& keys) {
    std::int64_t product = 1;
    for (const auto& k : keys) {
        if (k.radix == 0) return 0;
        if (product > (std::int64_t{1} << 62) / k.radix) return -1;
        product *= k.radix;
    }
    return product;
}

constexpr std::int64_t kBlock = 256;                      // rows per block of the pipeline
constexpr std::int64_t kDenseCodes = std::int64_t{1} << 22;  // direct-indexed table up to this many codes

// Mixed-radix codes and validity of rows [start, start + nb): code[r], valid[r] (vectorisable).
inline void block_codes(const GroupMomentsInput& in, std::int64_t start, std::int64_t nb, std::int64_t* code,
                        unsigned char* valid) {
    std::fill(code, code + nb, 0);
    std::fill(valid, valid + nb, 1);
    for (const auto& k : in.keys) {
        const std::uint64_t radix = static_cast<std::uint64_t>(k.radix);
        auto fold = [&](const auto* src) {
            for (std::int64_t r = 0; r < nb; ++r) {
                const std::int64_t v = src[r];
                valid[r] &= static_cast<unsigned char>(v >= 0 && v < k.radix);
                code[r] = static_cast<std::int64_t>(static_cast<std::uint64_t>(code[r]) * radix +
                                                    static_cast<std::uint64_t>(v >= 0 ? v : 0));
            }
        };
        if (k.i32)
            fold(k.i32 + start);
        else
            fold(k.i64 + start);
    }
    for (const double* col : in.columns) {
        const double* src = col + start;
        for (std::int64_t r = 0; r < nb; ++r) valid[r] &= static_cast<unsigned char>(!std::isnan(src[r]));
    }
    if (in.weights) {
        const double* src = in.weights + start;
        for (std::int64_t r = 0; r < nb; ++r) valid[r] &= static_cast<unsigned char>(!std::isnan(src[r]));
    }
}

// Evaluates the monomials of up to kBlock rows and adds them to their groups' accumulator rows
// ([count, sums...], `stride` doubles each). Rows are added in the order given.
class MonomialAccumulator {
public:
    MonomialAccumulator(const GroupMomentsInput& in, std::int64_t m) : in_(in), m_(m), n_cols_(in.columns.size()) {
        max_exp_.assign(n_cols_, 0);
        for (std::int64_t j = 0; j < m_; ++j)
            for (std::size_t c = 0; c < n_cols_; ++c) {
                max_exp_[c] = std::max<int>(max_exp_[c], in.exponents[j * n_cols_ + c]);
            }
        // power table rows: pw[(offset[c] + e - 1) * B + i] = columns[c][row i] ** e for e >= 1
        pw_offset_.assign(n_cols_, 0);
        std::size_t n_pw = 0;
        for (std::size_t c = 0; c < n_cols_; ++c) {
            pw_offset_[c] = n_pw;
            n_pw += static_cast<std::size_t>(max_exp_[c]);
        }
        factors_.resize(static_cast<std::size_t>(m_));
        for (std::int64_t j = 0; j < m_; ++j)
            for (std::size_t c = 0; c < n_cols_; ++c) {
                const std::int32_t e = in.exponents[j * n_cols_ + c];
                if (e > 0) factors_[j].push_back(pw_offset_[c] + static_cast<std::size_t>(e) - 1);
            }
        w_.resize(kBlock);
        pw_.resize(n_pw * kBlock);
        terms_.resize(static_cast<std::size_t>(m_) * kBlock);
    }

    // Adds rows row(0..nv) to groups slot(0..nv): counts[slot] += w, sums[slot * m + j] += term_j.
    template <class RowAt, class SlotAt>
    void add(RowAt row, SlotAt slot, std::int64_t nv, double* counts, double* sums) {
        constexpr std::int64_t B = kBlock;
        if (in_.weights) {
            for (std::int64_t i = 0; i < nv; ++i) w_[i] = in_.weights[row(i)];
        } else {
            std::fill(w_.begin(), w_.begin() + nv, 1.0);
        }
        for (std::size_t c = 0; c < n_cols_; ++c) {
            if (max_exp_[c] == 0) continue;
            const double* src = in_.columns[c];
            double* p1 = &pw_[pw_offset_[c] * B];
            for (std::int64_t i = 0; i < nv; ++i) p1[i] = src[row(i)];
            for (int e = 2; e <= max_exp_[c]; ++e) {
                double* pe = p1 + static_cast<std::size_t>(e - 1) * B;
                const double* half = p1 + static_cast<std::size_t>(e / 2 - 1) * B;
                const double* rest = p1 + static_cast<std::size_t>(e - e / 2 - 1) * B;
                for (std::int64_t i = 0; i < nv; ++i) pe[i] = half[i] * rest[i];
            }
        }
        // term_j = w * x_c1^e1 * x_c2^e2 * ..., multiplied in column order as the reference does
        for (std::int64_t j = 0; j < m_; ++j) {
            double* t = &terms_[static_cast<std::size_t>(j) * B];
            std::copy(w_.begin(), w_.begin() + nv, t);
            for (std::size_t f : factors_[j]) {
                const double* p = &pw_[f * B];
                for (std::int64_t i = 0; i < nv; ++i) t[i] *= p[i];
            }
        }
        for (std::int64_t i = 0; i < nv; ++i) {
            const std::int64_t s = slot(i);
            counts[s] += w_[i];
            double* dst = sums + s * m_;
            const double* t = &terms_[static_cast<std::size_t>(i)];
            for (std::int64_t j = 0; j < m_; ++j) dst[j] += t[static_cast<std::size_t>(j) * B];
        }
    }

private:
    const GroupMomentsInput& in_;
    std::int64_t m_;
    std::size_t n_cols_;
    std::vector<int> max_exp_;
    std::vector<std::size_t> pw_offset_;
    std::vector<std::vector<std::size_t>> factors_;
    std::vector<double> w_, pw_, terms_;
};

// Stable LSD radix sort of (code, row) pairs by code, 11 bits per pass, codes < 2^bits.
struct CodeRow {
    std::uint64_t code;
    std::int64_t row;
};

inline void radix_sort(std::vector<CodeRow>& items, int bits) {
    constexpr int kDigit = 11;
    constexpr std::size_t kBuckets = std::size_t{1} << kDigit;
    std::vector<CodeRow> buffer(items.size());
    std::vector<std::size_t> count(kBuckets);
    for (int shift = 0; shift < bits; shift += kDigit) {
        std::fill(count.begin(), count.end(), 0);
        for (const CodeRow& it : items) ++count[(it.code >> shift) & (kBuckets - 1)];
        if (*std::max_element(count.begin(), count.end()) == items.size()) continue;  // one digit value: no-op
        std::size_t sum = 0;
        for (auto& c : count) {
            const std::size_t here = c;
            c = sum;
            sum += here;
        }
        for (const CodeRow& it : items) buffer[count[(it.code >> shift) & (kBuckets - 1)]++] = it;
        items.swap(buffer);
    }
}

// Groups with codes up to kDenseCodes: a direct-indexed code -> slot table, slots in order of first
// appearance, rows accumulated block by block, groups put in code order at the end.
inline GroupMomentsResult group_moments_dense(const GroupMomentsInput& in, std::int64_t m, std::int64_t n_codes) {
    const std::int64_t n = in.n_rows;
    MonomialAccumulator accumulator(in, m);
    std::vector<std::int32_t> slot_of(static_cast<std::size_t>(n_codes), -1);
    std::vector<double> counts, sums;
    std::int64_t n_groups = 0, dropped = 0;
    std::vector<std::int64_t> code(kBlock), rows(kBlock);
    std::vector<unsigned char> valid(kBlock);
    std::vector<std::int32_t> slots(kBlock);
    for (std::int64_t start = 0; start < n; start += kBlock) {
        const std::int64_t nb = std::min<std::int64_t>(kBlock, n - start);
        block_codes(in, start, nb, code.data(), valid.data());
        std::int64_t nv = 0;
        for (std::int64_t r = 0; r < nb; ++r) {
            if (!valid[r]) continue;
            std::int32_t& s = slot_of[static_cast<std::size_t>(code[r])];
            if (s < 0) {
                s = static_cast<std::int32_t>(n_groups++);
                counts.push_back(0.0);
                sums.resize(sums.size() + static_cast<std::size_t>(m), 0.0);
            }
            rows[nv] = start + r;
            slots[nv] = s;
            ++nv;
        }
        dropped += nb - nv;
        if (nv > 0)
            accumulator.add([&](std::int64_t i) { return rows[i]; }, [&](std::int64_t i) { return slots[i]; }, nv,
                            counts.data(), sums.data());
    }
    // groups from first-appearance order to code order
    GroupMomentsResult out;
    out.n_monomials = m;
    out.dropped = dropped;
    out.codes.resize(static_cast<std::size_t>(n_groups));
    out.counts.resize(static_cast<std::size_t>(n_groups));
    out.sums.resize(static_cast<std::size_t>(n_groups * m));
    std::int64_t g = 0;
    for (std::int64_t c = 0; c < n_codes && g < n_groups; ++c) {
        const std::int32_t s = slot_of[static_cast<std::size_t>(c)];
        if (s < 0) continue;
        out.codes[g] = c;
        out.counts[g] = counts[s];
        std::copy(sums.data() + s * m, sums.data() + (s + 1) * m, out.sums.data() + g * m);
        ++g;
    }
    return out;
}

// Many possible codes: the valid rows' (code, row) pairs are radix-sorted (stably, so rows of a
// group keep their input order), then accumulated group after group straight into code order.
inline GroupMomentsResult group_moments_sorted(const GroupMomentsInput& in, std::int64_t m, std::int64_t n_codes) {
    const std::int64_t n = in.n_rows;
    std::vector<CodeRow> items;
    items.reserve(static_cast<std::size_t>(n));
    std::vector<std::int64_t> code(kBlock);
    std::vector<unsigned char> valid(kBlock);
    for (std::int64_t start = 0; start < n; start += kBlock) {
        const std::int64_t nb = std::min<std::int64_t>(kBlock, n - start);
        block_codes(in, start, nb, code.data(), valid.data());
        for (std::int64_t r = 0; r < nb; ++r)
            if (valid[r]) items.push_back(CodeRow{static_cast<std::uint64_t>(code[r]), start + r});
    }
    int bits = 0;
    while (bits < 63 && (std::uint64_t{1} << bits) < static_cast<std::uint64_t>(n_codes)) ++bits;
    radix_sort(items, bits);

    GroupMomentsResult out;
    out.n_monomials = m;
    out.dropped = n - static_cast<std::int64_t>(items.size());
    // codes become group indices in place
    const std::size_t nv = items.size();
    std::int64_t n_groups = 0;
    std::uint64_t previous = 0;
    for (std::size_t i = 0; i < nv; ++i) {
        const std::uint64_t c = items[i].code;
        if (i == 0 || c != previous) {
            out.codes.push_back(static_cast<std::int64_t>(c));
            ++n_groups;
            previous = c;
        }
        items[i].code = static_cast<std::uint64_t>(n_groups - 1);
    }
    out.counts.assign(static_cast<std::size_t>(n_groups), 0.0);
    out.sums.assign(static_cast<std::size_t>(n_groups * m), 0.0);
    MonomialAccumulator accumulator(in, m);
    for (std::size_t i = 0; i < nv; i += kBlock) {
        const CodeRow* chunk = items.data() + i;
        const std::int64_t nb = std::min<std::int64_t>(kBlock, static_cast<std::int64_t>(nv - i));
        accumulator.add([chunk](std::int64_t k) { return chunk[k].row; },
                        [chunk](std::int64_t k) { return static_cast<std::int64_t>(chunk[k].code); }, nb,
                        out.counts.data(), out.sums.data());
    }
    return out;
}

}  // namespace detail

inline GroupMomentsResult group_moments(const GroupMomentsInput& in) {
    const std::int64_t n = in.n_rows;
    const std::size_t n_cols = in.columns.size();
    const std::int64_t m = n_cols == 0 ? 0 : in.n_monomials;
    require(n >= 0, "group_moments: n_rows must be >= 0");
    for (const auto& k : in.keys) {
        if (k.radix < 0)
            throw std::invalid_argument("group_moments: radices must be >= 0, got " + std::to_string(k.radix));
        require((k.i32 != nullptr) != (k.i64 != nullptr) || n == 0, "group_moments: a key column has no data");
    }
    require(m >= 0, "group_moments: negative number of monomials");
    require(in.exponents.size() >= static_cast<std::size_t>(m) * n_cols,
            "group_moments: exponents must have shape [n_monomials, len(columns)]");
    for (std::size_t i = 0; i < static_cast<std::size_t>(m) * n_cols; ++i)
        if (in.exponents[i] < 0 || in.exponents[i] > 64)
            throw std::invalid_argument("group_moments: exponents must be in [0, 64], got " +
                                        std::to_string(in.exponents[i]));
    const std::int64_t n_codes = detail::radix_product(in.keys);
    require(n_codes >= 0, "group_moments: the product of the radices exceeds 2^62; drop a high-cardinality key");
    if (n_codes <= detail::kDenseCodes) return detail::group_moments_dense(in, m, n_codes);
    return detail::group_moments_sorted(in, m, n_codes);
}

}  // namespace xpcompute
