// Rank-revealing Cholesky solve of symmetric PSD systems (normal equations).
//
// Columns are taken in order; column j is dropped when a[j, j] <= 0, when its entries against the
// kept columns are not finite, or when its pivot left after eliminating the kept columns,
// a[j, j] - v' S^-1 v (S: kept block, v = a[kept, j]), is <= tol * a[j, j]. Dropped coefficients
// and their rows/columns of the inverse are 0. See xpcompute/native/reference.py.
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <vector>

#include "xpcompute/common.hpp"

namespace xpcompute {

struct CholeskyResult {
    std::int64_t rank = 0;
    std::vector<std::int64_t> dropped;
};

// a: row-major [k, k]; b: row-major [k, n_rhs]; x: [k, n_rhs]; inverse: [k, k] (both written fully).
inline CholeskyResult cholesky_solve(const double* a, std::int64_t k, const double* b, std::int64_t n_rhs,
                                     double tol, double* x, double* inverse) {
    require(k >= 0 && n_rhs >= 0, "cholesky_solve: negative shape");
    CholeskyResult res;
    std::vector<std::int64_t> keep;
    keep.reserve(static_cast<std::size_t>(k));
    // factor of the kept block, row-major with row stride k: S = L L'
    std::vector<double> l(static_cast<std::size_t>(k * k), 0.0);
    std::vector<double> z(static_cast<std::size_t>(k), 0.0);
    auto at = [&](std::int64_t i, std::int64_t j) { return a[i * k + j]; };
    for (std::int64_t j = 0; j < k; ++j) {
        const double diag = at(j, j);
        if (!(diag > 0.0) || !std::isfinite(diag)) {  // NaN or inf diagonals make the block non-finite too
            res.dropped.push_back(j);
            continue;
        }
        const std::size_t r = keep.size();
        bool finite = true;
        for (std::size_t i = 0; i < r; ++i)
            finite = finite && std::isfinite(at(keep[i], j)) && std::isfinite(at(j, keep[i]));
        if (!finite) {
            res.dropped.push_back(j);
            continue;
        }
        // forward substitution L z = a[kept, j]; the remaining pivot is diag - z'z
        double zz = 0.0;
        for (std::size_t i = 0; i < r; ++i) {
            const double* li = &l[i * static_cast<std::size_t>(k)];
            double s = at(keep[i], j);
            for (std::size_t q = 0; q < i; ++q) s -= li[q] * z[q];
            z[i] = s / li[i];
            zz += z[i] * z[i];
        }
        const double resid = diag - zz;
        if (!(resid > tol * diag)) {
            res.dropped.push_back(j);
            continue;
        }
        double* lr = &l[r * static_cast<std::size_t>(k)];
        for (std::size_t i = 0; i < r; ++i) lr[i] = z[i];
        lr[r] = std::sqrt(resid);
        keep.push_back(j);
    }
    const auto rank = static_cast<Eigen::Index>(keep.size());
    res.rank = rank;

    std::fill(x, x + k * n_rhs, 0.0);
    std::fill(inverse, inverse + k * k, 0.0);
    if (rank == 0) return res;

    using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>> lmap(l.data(), rank, rank, Eigen::OuterStride<>(k));
    const Eigen::MatrixXd lk = lmap;
    const auto tri = lk.triangularView<Eigen::Lower>();
    // inverse of the kept block: L^-T L^-1
    Eigen::MatrixXd linv = Eigen::MatrixXd::Identity(rank, rank);
    tri.solveInPlace(linv);
    Eigen::MatrixXd inv = Eigen::MatrixXd::Zero(rank, rank);
    inv.selfadjointView<Eigen::Lower>().rankUpdate(linv.transpose());
    for (Eigen::Index i = 0; i < rank; ++i)
        for (Eigen::Index q = 0; q <= i; ++q) {
            const double v = inv(i, q);
            inverse[keep[i] * k + keep[q]] = v;
            inverse[keep[q] * k + keep[i]] = v;
        }
    // x = S^-1 b[kept] by two triangular solves
    Eigen::MatrixXd rhs(rank, n_rhs);
    for (Eigen::Index i = 0; i < rank; ++i)
        for (std::int64_t c = 0; c < n_rhs; ++c) rhs(i, c) = b[keep[i] * n_rhs + c];
    tri.solveInPlace(rhs);
    tri.transpose().solveInPlace(rhs);
    for (Eigen::Index i = 0; i < rank; ++i)
        for (std::int64_t c = 0; c < n_rhs; ++c) x[keep[i] * n_rhs + c] = rhs(i, c);
    return res;
}

}  // namespace xpcompute
