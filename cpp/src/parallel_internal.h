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
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lstm_ext::detail {

// Fewer rows than this per thread and the per-step products get too thin to beat one thread on all rows.
constexpr Index kMinSliceRows = 8;
// The unit split (below): at least this many hidden units per thread, so that a step's work per thread
// (4 * units * H multiply-adds) outweighs the barrier that ends it. Measured at N = 1, T = 100, 2 threads over
// 1: H = 512 0.60x, H = 256 (N = 4) 0.59x, but H = 128 only 0.92x, with much wider spread (a barrier per step
// waits whenever the other core is late), so H = 128 stays on one thread.
constexpr Index kMinSliceUnits = 128;
// Unit ranges start at multiples of this (a cache line of floats): threads never write the same line.
constexpr Index kUnitGrain = 16;

// A spin-wait's pause: lets the other hyperthread run and saves power while a flag is polled.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

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

// How many slices for_each_batch_slice cuts a batch into: one per thread, each of at least kMinSliceRows
// sequences, and 1 inside a parallel region.
inline Index batch_slice_parts(Index batch) {
  return in_parallel_region() ? 1 : std::max<Index>(1, std::min<Index>(get_num_threads(), batch / kMinSliceRows));
}

// Runs fn(first, count) on contiguous slices of the batch, one per thread, when threads are available (not
// already inside a parallel region) and every slice gets at least kMinSliceRows sequences; otherwise
// fn(0, batch) on the calling thread. Exceptions thrown by fn are rethrown here (the first one).
template <typename Fn>
void for_each_batch_slice(Index batch, Index steps, const std::int64_t* batch_sizes, Fn&& fn) {
  const Index parts = batch_slice_parts(batch);
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

// How many threads a batch too small for the batch split (fewer than 2 * kMinSliceRows sequences) should split
// each step's hidden units over: each thread keeps its units' rows of the recurrent weights (4 * units * H,
// half of w_hh for two threads) in its own L2, where one thread would stream all of w_hh from L2 or L3 every
// step; at N = 1 the recurrent product is a matrix-vector product bound by that bandwidth. The price is one
// barrier per step. 1 means no unit split.
inline Index unit_split_parts(Index batch, Index hidden) {
  if (in_parallel_region() || batch >= 2 * kMinSliceRows) return 1;
  return std::max<Index>(1, std::min<Index>(get_num_threads(), hidden / kMinSliceUnits));
}

// Unit j's range [bounds[j], bounds[j + 1]) of `parts` ranges over `hidden` units, starting at multiples of
// kUnitGrain.
inline std::vector<Index> unit_bounds(Index hidden, Index parts) {
  std::vector<Index> bounds(static_cast<size_t>(parts + 1), hidden);
  for (Index j = 0; j < parts; ++j) {
    const Index raw = hidden * j / parts;
    bounds[j] = raw - raw % kUnitGrain;
  }
  return bounds;
}

// Runs step(j, s) for every step s = 0 .. steps-1 and part j = 0 .. parts-1, all parts of step s before any of
// step s + 1, the parts of one step on different threads at once (a barrier between steps). step must not
// throw: a thread leaving early would leave the others waiting at the barrier; whatever can fail (allocation)
// is done before. With fewer threads than parts (the OpenMP runtime may give fewer), a thread runs several.
//
// A barrier per step is only as fast as the slowest thread: when another process takes a core, a thread
// waits a scheduler slice (milliseconds) at every step. So the first thread watches its waits; when over a
// window of steps it waited longer than it worked, it runs the remaining steps alone (all parts, no barrier)
// and the others stop: at worst one window of slow steps, then one thread's speed.
template <typename Fn>
void for_each_step_in_parts(Index parts, Index steps, Fn&& step) noexcept {
#if defined(_OPENMP)
  using Clock = std::chrono::steady_clock;
  constexpr Index kWindow = 8;
  std::atomic<Index> alone_after{-1};  // the step after whose barrier the first thread goes on alone
#pragma omp parallel num_threads(static_cast<int>(parts))
  {
    const Index team = omp_get_num_threads(), me = omp_get_thread_num();
    Clock::duration worked{}, waited{};
    Index s = 0;
    for (; s < steps; ++s) {
      const Clock::time_point start = Clock::now();
      for (Index j = me; j < parts; j += team) step(j, s);
      const Clock::time_point done = Clock::now();
      if (me == 0 && (s + 1) % kWindow == 0) {
        // Written before this step's barrier and compared with this step's index after it: every thread reads
        // the same decision at the same step (one that is written during step s + 1 cannot equal s).
        if (waited > worked) alone_after.store(s);
        worked = waited = Clock::duration{};
      }
#pragma omp barrier
      if (me == 0) {
        worked += done - start;
        waited += Clock::now() - done;
      }
      if (alone_after.load() == s) break;
    }
    if (me == 0) {
      for (++s; s < steps; ++s)
        for (Index j = 0; j < parts; ++j) step(j, s);
    }
  }
#else
  for (Index s = 0; s < steps; ++s)
    for (Index j = 0; j < parts; ++j) step(j, s);
#endif
}

// Whether a forward whose time loop runs on one thread (a batch too small for the batch split and the unit
// split: parts == 1) should have a second thread compute the input projection of the next chunks of steps
// while the first runs the recurrence of this one (run_ahead). At N = 1 the projection is about a fifth of an
// inference forward (s1: 60 of 290 us on one core).
inline bool projection_ahead(Index time_loop_parts) {
  return time_loop_parts == 1 && !in_parallel_region() && get_num_threads() >= 2;
}

// Runs produce(c, ...) and then consume(c) for every chunk c = 0 .. count-1, consume in order of c on the
// calling thread, with a second thread producing ahead of it; a chunk's produce never starts before
// consume(c - window) has returned (the chunks' buffers are a ring of `window`). Each chunk is produced once:
// the consumer produces a chunk itself when the helper has not started it, so a helper that is late
// (descheduled: another process on its core) never holds up more than the chunk it is working on. Exceptions
// are rethrown here (the first one); the other thread stops at its next chunk.
//
// Each side prepares what it reads, so that no core writes memory that the other core read last (the same
// blocks come back from the memory cache call after call, and each such line waits on the other core: packing
// 256 KB took 41 us against 9 us on an EPYC guest, and 150 us when the host placed the two vCPUs far apart):
// setup() runs on the consumer before its first chunk (the weights the time loop reads, packed); prepare()
// runs on the helper before its first chunk (the weights its products read, packed), and the helper then
// calls produce(c, true), the consumer produce(c, false), which must give the same result without them.
template <typename Setup, typename Prepare, typename Produce, typename Consume>
void run_ahead(Index count, Index window, Setup&& setup, Prepare&& prepare, Produce&& produce, Consume&& consume) {
  enum : int { kFree = 0, kBusy = 1, kDone = 2 };
  std::unique_ptr<std::atomic<int>[]> state(new std::atomic<int>[static_cast<size_t>(std::max<Index>(count, 1))]);
  for (Index c = 0; c < count; ++c) state[c].store(kFree, std::memory_order_relaxed);
  std::atomic<Index> consumed{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto fail = [&] {
    const std::lock_guard<std::mutex> lock(error_mutex);
    if (!error) error = std::current_exception();
    failed.store(true);
  };
  auto claim = [&](Index c) {
    int expected = kFree;
    return state[c].compare_exchange_strong(expected, kBusy, std::memory_order_acq_rel);
  };
  auto consumer = [&] {
    try {
      setup();
      for (Index c = 0; c < count && !failed.load(std::memory_order_relaxed); ++c) {
        if (claim(c)) {
          produce(c, false);
          state[c].store(kDone, std::memory_order_release);
        }
        while (state[c].load(std::memory_order_acquire) != kDone) {
          if (failed.load(std::memory_order_relaxed)) return;
          cpu_relax();
        }
        consume(c);
        consumed.store(c + 1, std::memory_order_release);
      }
    } catch (...) {
      fail();
    }
  };
  auto helper = [&] {
    try {
      prepare();
      for (Index c = 0; c < count && !failed.load(std::memory_order_relaxed); ++c) {
        while (c - consumed.load(std::memory_order_acquire) >= window) {  // its buffer is still in use
          if (failed.load(std::memory_order_relaxed)) return;
          cpu_relax();
        }
        if (!claim(c)) continue;  // the consumer got there first
        produce(c, true);
        state[c].store(kDone, std::memory_order_release);
      }
    } catch (...) {
      fail();
    }
  };
#if defined(_OPENMP)
#pragma omp parallel num_threads(2)
  {
    if (omp_get_thread_num() == 0) consumer();
    else helper();
  }
#else
  consumer();
#endif
  if (error) std::rethrow_exception(error);
}

// Runs fn(0), ..., fn(parts - 1) on up to `parts` threads when available (not inside a parallel region), else
// one after the other on the calling thread; parts spread statically over the threads. Exceptions thrown by fn
// are rethrown here (the first one).
template <typename Fn>
void for_each_part(Index parts, Fn&& fn) {
  const Index team = in_parallel_region() ? 1 : std::min<Index>(parts, get_num_threads());
  if (team <= 1) {
    for (Index j = 0; j < parts; ++j) fn(j);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#if defined(_OPENMP)
#pragma omp parallel for num_threads(static_cast<int>(team)) schedule(static)
#endif
  for (Index j = 0; j < parts; ++j) {
    try {
      fn(j);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Runs fn(0) and fn(1) (the two directions of a bidirectional layer) on two threads when available, else
// one after the other.
template <typename Fn>
void for_each_direction(Index directions, Fn&& fn) {
  for_each_part(directions, fn);
}

}  // namespace lstm_ext::detail
