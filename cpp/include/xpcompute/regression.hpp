// Cross-products of regressions on compressed rows: X'WX, X'wy and sandwich "meats".
// Inputs and outputs are row-major buffers owned by the caller. See xpcompute/native/reference.py.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "xpcompute/common.hpp"

namespace xpcompute {

namespace detail {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows per block: a block of X (and its weighted copy) stays in cache, and the GEMM depth is long.
inline std::int64_t row_block(std::int64_t k) {
    return std::clamp<std::int64_t>((std::int64_t{1} << 17) / std::max<std::int64_t>(k, 1), 256, 2048);
}

// Copies the lower triangle of a symmetric K x K matrix into a full row-major buffer.
inline void store_symmetric(const Eigen::MatrixXd& lower, double* out) {
    const Eigen::Index k = lower.rows();
    for (Eigen::Index i = 0; i < k; ++i)
        for (Eigen::Index j = 0; j <= i; ++j) {
            out[i * k + j] = lower(i, j);
            out[j * k + i] = lower(i, j);
        }
}

}  // namespace detail

// X'diag(w)X -> xtwx [K*K], X'wy -> xtwy [K], and X'diag(e2)X -> meat [K*K] when e2 is given.
inline void gram_meat(const double* x, std::int64_t g, std::int64_t k, const double* w, const double* wy,
                      const double* e2, double* xtwx, double* xtwy, double* meat) {
    using detail::RowMatrix;
    require(g >= 0 && k >= 0, "gram_meat: negative shape");
    Eigen::Map<const RowMatrix> X(x, g, k);
    Eigen::MatrixXd a = Eigen::MatrixXd::Zero(k, k);
    Eigen::MatrixXd mt;
    if (e2) mt = Eigen::MatrixXd::Zero(k, k);
    Eigen::VectorXd v = Eigen::VectorXd::Zero(k);
    const std::int64_t block = detail::row_block(k);
    RowMatrix scaled(std::min(block, g), k);
    for (std::int64_t r0 = 0; r0 < g; r0 += block) {
        const std::int64_t nb = std::min(block, g - r0);
        const auto xb = X.middleRows(r0, nb);
        auto sb = scaled.topRows(nb);
        sb.noalias() = Eigen::Map<const Eigen::VectorXd>(w + r0, nb).asDiagonal() * xb;
        a.triangularView<Eigen::Lower>() += xb.transpose() * sb;
        v.noalias() += xb.transpose() * Eigen::Map<const Eigen::VectorXd>(wy + r0, nb);
        if (e2) {
            sb.noalias() = Eigen::Map<const Eigen::VectorXd>(e2 + r0, nb).asDiagonal() * xb;
            mt.triangularView<Eigen::Lower>() += xb.transpose() * sb;
        }
    }
    detail::store_symmetric(a, xtwx);
    std::copy(v.data(), v.data() + k, xtwy);
    if (e2) detail::store_symmetric(mt, meat);
}

// sum_c s_c s_c' where s_c sums the score rows of cluster c -> out [K*K]. Clusters are taken in
// ascending id order and each cluster's rows in input order (as the reference does).
inline void cluster_meat(const double* scores, std::int64_t g, std::int64_t k, const std::int64_t* clusters,
                         double* out) {
    using detail::RowMatrix;
    require(g >= 0 && k >= 0, "cluster_meat: negative shape");
    Eigen::Map<const RowMatrix> S(scores, g, k);
    std::vector<std::int64_t> order;
    const bool sorted = std::is_sorted(clusters, clusters + g);
    if (!sorted) {
        order.resize(static_cast<std::size_t>(g));
        std::iota(order.begin(), order.end(), std::int64_t{0});
        std::stable_sort(order.begin(), order.end(),
                         [clusters](std::int64_t i, std::int64_t j) { return clusters[i] < clusters[j]; });
    }
    auto row_at = [&](std::int64_t pos) { return sorted ? pos : order[static_cast<std::size_t>(pos)]; };

    Eigen::MatrixXd m = Eigen::MatrixXd::Zero(k, k);
    const std::int64_t block = detail::row_block(k);
    RowMatrix sums = RowMatrix::Zero(std::min<std::int64_t>(block, std::max<std::int64_t>(g, 1)), k);
    std::int64_t filled = 0;
    auto flush = [&]() {
        if (filled == 0) return;
        m.selfadjointView<Eigen::Lower>().rankUpdate(sums.topRows(filled).transpose());
        sums.topRows(filled).setZero();
        filled = 0;
    };
    std::int64_t pos = 0;
    while (pos < g) {
        const std::int64_t id = clusters[row_at(pos)];
        if (filled == sums.rows()) flush();
        auto dst = sums.row(filled);
        while (pos < g && clusters[row_at(pos)] == id) {
            dst += S.row(row_at(pos));
            ++pos;
        }
        ++filled;
    }
    flush();
    detail::store_symmetric(m, out);
}

}  // namespace xpcompute
