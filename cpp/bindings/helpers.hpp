// Helpers shared by the pybind11 bindings: NumPy views without copies where the input is already
// C-contiguous and of the right dtype, checked shapes, and vectors handed to NumPy without a copy.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace xpcompute::bindings {

namespace py = pybind11;

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using I32Array = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>;

// A C-contiguous view of `obj` with dtype T: the same buffer when it already is one, else a copy.
template <class Array>
Array as_array(const py::handle& obj, const std::string& what, const char* dtype_name) {
    if (obj.is_none()) throw std::invalid_argument(what + ": expected an array of " + dtype_name + ", got None");
    Array arr = Array::ensure(obj);
    if (!arr) throw std::invalid_argument(what + ": cannot be read as an array of " + dtype_name);
    return arr;
}

inline F64Array as_f64(const py::handle& obj, const std::string& what) {
    return as_array<F64Array>(obj, what, "float64");
}

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    if (a.ndim() == 1) s += ",";
    return s + ")";
}

inline void require_ndim(const py::array& a, py::ssize_t ndim, const std::string& what) {
    if (a.ndim() != ndim)
        throw std::invalid_argument(what + ": expected a " + std::to_string(ndim) + "-d array, got shape " +
                                    shape_str(a));
}

inline void require_len(const py::array& a, py::ssize_t n, const std::string& what, const std::string& against) {
    if (a.shape(0) != n)
        throw std::invalid_argument(what + ": length " + std::to_string(a.shape(0)) + " does not match " + against +
                                    " (" + std::to_string(n) + ")");
}

// Moves a vector into a NumPy array of the given shape without copying its data.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
    auto* owned = new std::vector<T>(std::move(v));
    py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(std::move(shape), owned->data(), owner);
}

// A Python integer (or NumPy integer) that fits in int64.
inline std::int64_t as_int64(const py::handle& obj, const std::string& what) {
    try {
        return py::cast<std::int64_t>(obj);
    } catch (const py::cast_error&) {
        throw std::invalid_argument(what + ": expected an integer that fits in 64 bits, got " +
                                    std::string(py::repr(obj)));
    }
}

// The items of a Python sequence (list, tuple, ...) as a list.
inline py::list as_list(const py::handle& obj, const std::string& what) {
    if (obj.is_none() || !py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
        throw std::invalid_argument(what + ": expected a list of arrays, got " +
                                    std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    return py::list(py::reinterpret_borrow<py::object>(obj));
}

// A Python int (any size, any sign) reduced modulo 2^64, for seeds.
inline std::uint64_t as_seed(const py::handle& obj) {
    if (!py::isinstance<py::int_>(obj) && !py::hasattr(obj, "__index__"))
        throw std::invalid_argument("seed: expected an integer, got " + std::string(py::repr(obj)));
    py::int_ value(py::reinterpret_borrow<py::object>(obj));
    const unsigned long long s = PyLong_AsUnsignedLongLongMask(value.ptr());
    if (PyErr_Occurred()) throw py::error_already_set();
    return static_cast<std::uint64_t>(s);
}

// The dataclasses of xpcompute.native.types (imported at call time: no import cycle at load).
inline py::object native_type(const char* name) {
    return py::module_::import("xpcompute.native.types").attr(name);
}

}  // namespace xpcompute::bindings
