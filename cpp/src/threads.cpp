// SPDX-License-Identifier: MIT
#include "lstm_ext/threads.h"

#include "lstm_ext/common.h"
#include "thread_setup.h"

#include <Eigen/Core>

#include <atomic>
#include <mutex>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

namespace lstm_ext {
namespace {

std::atomic<int> g_num_threads{0};  // 0: not set, use default_num_threads()
std::once_flag g_eigen_init;

}  // namespace

int default_num_threads() {
#if defined(__linux__)
  // The affinity mask, not the machine: under taskset or a container's cpuset the two differ.
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

void set_num_threads(int n) {
  require(n >= 1, "set_num_threads", [&] { return "n must be >= 1, got " + std::to_string(n); });
  g_num_threads.store(n);
  // Eigen's own default is OMP_NUM_THREADS; ours is the CPU count, so Eigen is always told explicitly.
  Eigen::setNbThreads(n);
}

int get_num_threads() {
  const int n = g_num_threads.load();
  return n > 0 ? n : default_num_threads();
}

namespace detail {

void ensure_threads_initialised() {
  std::call_once(g_eigen_init, [] {
    if (g_num_threads.load() == 0) Eigen::setNbThreads(default_num_threads());
  });
}

}  // namespace detail
}  // namespace lstm_ext
