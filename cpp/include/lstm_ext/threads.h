// SPDX-License-Identifier: MIT
// The number of threads the kernels may use: the one piece of global state in the core.
#pragma once

namespace lstm_ext {

// Number of CPUs this process may run on (its affinity mask where the OS has one); at least 1.
int default_num_threads();

// Threads used by subsequent kernel calls, process-wide. n >= 1, else std::invalid_argument.
// Results do not depend on it beyond float rounding.
void set_num_threads(int n);

// The current setting; default_num_threads() until set_num_threads is called.
int get_num_threads();

}  // namespace lstm_ext
