// SPDX-License-Identifier: MIT
// Which library computes the products over all time steps: the input projection, dx and the weight gradients.
// The per-step recurrent products always run on weights packed once per call, float on lstm_ext's own kernel
// (cpp/src/panel_gemm_internal.h), double on Eigen's (cpp/src/packed_gemm_internal.h); a BLAS call per step
// would re-pack the weights every step.
#pragma once

#include <string>

namespace lstm_ext {

enum class GemmBackend {
  kEigen,     // Eigen's GEMM, always available
  kOpenBlas,  // OpenBLAS from the scipy-openblas32 wheel, when the core was built with it (LSTM_EXT_BLAS)
  kNative,    // float: lstm_ext's own register-blocked kernel (the per-step products' kernel); double: Eigen
};

// Whether this build can use OpenBLAS.
bool openblas_available();

// The backend for subsequent calls, process-wide; the default is kNative, always available (on a Zen 5 guest
// it measured 220-245 GFLOP/s per core on the grid's products, against 200-216 for OpenBLAS's AVX-512 kernels
// and 126-160 for Eigen's, see BENCHMARKS.md). Throws std::invalid_argument for OpenBLAS in a build without
// it. Results differ between backends by float rounding only.
void set_gemm_backend(GemmBackend backend);
GemmBackend get_gemm_backend();

// "eigen 3.4.1", "openblas <OpenBLAS's own configuration string>" or "native (...)", for bug reports and
// benchmark tables.
std::string gemm_backend_description(GemmBackend backend);

}  // namespace lstm_ext
