// Binding of group_moments (xpcompute/groupby.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "xpcompute/groupby.hpp"

namespace xpcompute::bindings {

namespace {

py::object group_moments_py(const py::object& keys, const py::object& radices, const py::object& columns,
                            const py::object& exponents, const py::object& weights, const py::object& n_rows) {
    const py::list key_list = as_list(keys, "group_moments: keys");
    const py::list radix_list = as_list(radices, "group_moments: radices");
    const py::list column_list = as_list(columns, "group_moments: columns");
    if (key_list.size() != radix_list.size())
        throw std::invalid_argument("group_moments: " + std::to_string(key_list.size()) + " key columns but " +
                                    std::to_string(radix_list.size()) + " radices");

    std::vector<py::array> alive;  // every buffer read below stays referenced while the GIL is released
    GroupMomentsInput in;
    std::vector<py::ssize_t> key_len;
    for (std::size_t i = 0; i < key_list.size(); ++i) {
        const std::string what = "group_moments: keys[" + std::to_string(i) + "]";
        if (key_list[i].is_none()) throw std::invalid_argument(what + ": expected an integer array, got None");
        py::array raw = py::array::ensure(key_list[i]);
        if (!raw) throw std::invalid_argument(what + ": cannot be read as an array");
        require_ndim(raw, 1, what);
        const char kind = raw.dtype().kind();
        if (kind != 'i' && kind != 'u' && !(kind == 'b' && raw.size() == 0))
            throw std::invalid_argument(what + ": dictionary indices must be integers, got dtype " +
                                        std::string(py::str(raw.dtype())));
        KeyColumn key;
        key.radix = as_int64(radix_list[i], "group_moments: radices[" + std::to_string(i) + "]");
        if (key.radix < 0)
            throw std::invalid_argument("group_moments: radices[" + std::to_string(i) + "] must be >= 0, got " +
                                        std::to_string(key.radix));
        const bool contiguous = (raw.flags() & py::array::c_style) != 0;
        if (contiguous && raw.dtype().is(py::dtype::of<std::int32_t>())) {
            key.i32 = static_cast<const std::int32_t*>(raw.data());
            alive.push_back(raw);
        } else {
            I64Array arr = as_array<I64Array>(raw, what, "int64");  // no copy when already int64
            key.i64 = arr.data();
            alive.push_back(arr);
        }
        key_len.push_back(raw.shape(0));
        in.keys.push_back(key);
    }

    std::vector<py::ssize_t> column_len;
    for (std::size_t c = 0; c < column_list.size(); ++c) {
        const std::string what = "group_moments: columns[" + std::to_string(c) + "]";
        F64Array arr = as_f64(column_list[c], what);
        require_ndim(arr, 1, what);
        in.columns.push_back(arr.data());
        column_len.push_back(arr.shape(0));
        alive.push_back(arr);
    }
    const std::size_t n_cols = in.columns.size();
    if (n_cols > 0) {
        I32Array exps = as_array<I32Array>(exponents, "group_moments: exponents", "int32");
        if (exps.ndim() != 2 || static_cast<std::size_t>(exps.shape(1)) != n_cols)
            throw std::invalid_argument("group_moments: exponents must have shape [n_monomials, " +
                                        std::to_string(n_cols) + "] (one column per value column), got " +
                                        shape_str(exps));
        in.n_monomials = exps.shape(0);
        in.exponents.assign(exps.data(), exps.data() + exps.size());
    }

    const double* w = nullptr;
    std::optional<py::ssize_t> w_len;
    if (!weights.is_none()) {
        F64Array arr = as_f64(weights, "group_moments: weights");
        require_ndim(arr, 1, "group_moments: weights");
        w = arr.data();
        w_len = arr.shape(0);
        alive.push_back(arr);
    }
    in.weights = w;

    std::int64_t n;
    if (!n_rows.is_none()) {
        n = as_int64(n_rows, "group_moments: n_rows");
        if (n < 0) throw std::invalid_argument("group_moments: n_rows must be >= 0, got " + std::to_string(n));
    } else if (!column_len.empty()) {
        n = column_len[0];
    } else if (!key_len.empty()) {
        n = key_len[0];
    } else {
        n = w_len.value_or(0);
    }
    in.n_rows = n;
    for (std::size_t i = 0; i < key_len.size(); ++i)
        if (key_len[i] != n)
            throw std::invalid_argument("group_moments: keys[" + std::to_string(i) + "] has " +
                                        std::to_string(key_len[i]) + " rows, expected " + std::to_string(n));
    for (std::size_t c = 0; c < column_len.size(); ++c)
        if (column_len[c] != n)
            throw std::invalid_argument("group_moments: columns[" + std::to_string(c) + "] has " +
                                        std::to_string(column_len[c]) + " rows, expected " + std::to_string(n));
    if (w_len && *w_len != n)
        throw std::invalid_argument("group_moments: weights has " + std::to_string(*w_len) + " rows, expected " +
                                    std::to_string(n));

    GroupMomentsResult res;
    {
        py::gil_scoped_release release;
        res = group_moments(in);
    }
    const auto n_groups = static_cast<py::ssize_t>(res.codes.size());
    const auto m = static_cast<py::ssize_t>(res.n_monomials);
    py::array codes = to_numpy(std::move(res.codes), {n_groups});
    py::array counts = to_numpy(std::move(res.counts), {n_groups});
    py::array sums = to_numpy(std::move(res.sums), {n_groups, m});
    return native_type("GroupMoments")(py::arg("codes") = codes, py::arg("counts") = counts,
                                       py::arg("sums") = sums, py::arg("dropped") = res.dropped);
}

}  // namespace

void register_groupby(py::module_& m) {
    m.def("group_moments", &group_moments_py, py::arg("keys"), py::arg("radices"), py::arg("columns"),
          py::arg("exponents"), py::arg("weights") = py::none(), py::arg("n_rows") = py::none(),
          "Hash group-by of weighted monomials -> xpcompute.native.types.GroupMoments "
          "(see xpcompute.native.reference.group_moments).");
}

}  // namespace xpcompute::bindings
