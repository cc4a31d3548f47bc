// Shared helpers of the xpcompute C++ primitives: argument checks, NaN-aware ordering,
// and a small deterministic thread pool. Pure C++17, no Python.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace xpcompute {

// Throws std::invalid_argument (a Python ValueError through pybind11) when cond is false.
inline void require(bool cond, const std::string& message) {
    if (!cond) throw std::invalid_argument(message);
}

// Strict weak order on doubles with NaN after every number (NumPy's sort order).
inline bool nan_last_less(double a, double b) {
    if (std::isnan(a)) return false;
    if (std::isnan(b)) return true;
    return a < b;
}

// Equality under which all NaNs are one value (np.unique's default).
inline bool nan_equal(double a, double b) {
    return a == b || (std::isnan(a) && std::isnan(b));
}

// Number of worker threads: 0 means the hardware concurrency; never more than n_tasks.
inline std::size_t resolve_threads(std::int64_t threads, std::int64_t n_tasks) {
    require(threads >= 0, "threads must be >= 0 (0 = use every hardware thread), got " + std::to_string(threads));
    std::size_t t = threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : static_cast<std::size_t>(threads);
    if (n_tasks < 1) return 1;
    return std::min<std::size_t>(t, static_cast<std::size_t>(n_tasks));
}

// Runs fn(task, worker) for task in [0, n_tasks) on n_workers threads (the caller's thread is
// worker 0). Tasks are handed out dynamically; results must therefore depend on the task index
// only. The first exception thrown by any task is rethrown here after all threads have joined.
template <class Fn>
void parallel_for(std::int64_t n_tasks, std::size_t n_workers, Fn&& fn) {
    if (n_tasks <= 0) return;
    if (n_workers <= 1) {
        for (std::int64_t t = 0; t < n_tasks; ++t) fn(t, std::size_t{0});
        return;
    }
    std::atomic<std::int64_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&](std::size_t worker) {
        try {
            for (;;) {
                if (failed.load(std::memory_order_relaxed)) return;
                const std::int64_t t = next.fetch_add(1, std::memory_order_relaxed);
                if (t >= n_tasks) return;
                fn(t, worker);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed.store(true);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(n_workers - 1);
    for (std::size_t w = 1; w < n_workers; ++w) {
        try {
            pool.emplace_back(work, w);
        } catch (const std::system_error&) {
            break;  // could not start another thread: the ones running share the tasks
        }
    }
    work(0);
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace xpcompute
