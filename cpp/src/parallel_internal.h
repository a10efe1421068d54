// SPDX-License-Identifier: MIT
// Internal to the kernels: how a call spreads over threads without a barrier per time step.
//
// The sequences of a batch never interact, so each thread can run the whole time loop on its own slice of
// them (the DeepCPU / ONNX Runtime split): no synchronisation between steps, each thread's recurrent product
// on its own rows. The products over all rows (the input projection, the weight gradients) stay outside the
// time loop and use Eigen's own threads. Inside a parallel region Eigen runs single-threaded by itself.
#pragma once

#include "lstm_ext/common.h"
#include "lstm_ext/threads.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lstm_ext::detail {

// Fewer rows than this per thread and the per-step products get too thin to beat one thread on all rows.
constexpr Index kMinSliceRows = 8;

inline bool in_parallel_region() {
#if defined(_OPENMP)
  return omp_in_parallel() != 0;
#else
  return true;  // no threads to spread over
#endif
}

// The first sequence of each of `parts` slices (and N at the end), balanced by rows: a packed batch is sorted
// by decreasing length, so equal counts of sequences would give the first thread the most work.
inline std::vector<Index> slice_bounds(Index batch, Index parts, Index steps, const std::int64_t* batch_sizes) {
  std::vector<Index> bounds(static_cast<size_t>(parts + 1), batch);
  bounds[0] = 0;
  if (batch_sizes == nullptr) {
    for (Index j = 1; j < parts; ++j) bounds[j] = batch * j / parts;
    return bounds;
  }
  // length[b]: the steps where sequence b is active (batch_sizes[t] > b).
  std::vector<Index> length(static_cast<size_t>(batch), 0);
  Index rows = 0;
  for (Index t = 0; t < steps; ++t) {
    rows += batch_sizes[t];
    for (Index b = 0; b < batch_sizes[t]; ++b) ++length[b];
  }
  Index acc = 0, b = 0;
  for (Index j = 1; j < parts; ++j) {
    // At least one sequence per slice before and after this bound.
    while (b < batch - (parts - j) && (acc + length[b]) * parts <= rows * j) acc += length[b++];
    if (b == bounds[j - 1]) acc += length[b++];
    bounds[j] = b;
  }
  return bounds;
}

// Runs fn(first, count) on contiguous slices of the batch, one per thread, when threads are available (not
// already inside a parallel region) and every slice gets at least kMinSliceRows sequences; otherwise
// fn(0, batch) on the calling thread. Exceptions thrown by fn are rethrown here (the first one).
template <typename Fn>
void for_each_batch_slice(Index batch, Index steps, const std::int64_t* batch_sizes, Fn&& fn) {
  Index parts = in_parallel_region() ? 1 : std::min<Index>(get_num_threads(), batch / kMinSliceRows);
  if (parts <= 1) {
    fn(Index(0), batch);
    return;
  }
  const std::vector<Index> bounds = slice_bounds(batch, parts, steps, batch_sizes);
  std::exception_ptr error;
  std::mutex error_mutex;
#if defined(_OPENMP)
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
#endif
  for (Index j = 0; j < parts; ++j) {
    try {
      fn(bounds[j], bounds[j + 1] - bounds[j]);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Runs fn(0) and fn(1) (the two directions of a bidirectional layer) on two threads when available, else
// one after the other. Exceptions as above.
template <typename Fn>
void for_each_direction(Index directions, Fn&& fn) {
  const bool parallel = directions == 2 && !in_parallel_region() && get_num_threads() >= 2;
  if (!parallel) {
    for (Index d = 0; d < directions; ++d) fn(d);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#if defined(_OPENMP)
#pragma omp parallel for num_threads(2) schedule(static, 1)
#endif
  for (Index d = 0; d < 2; ++d) {
    try {
      fn(d);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace lstm_ext::detail
