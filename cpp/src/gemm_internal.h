// SPDX-License-Identifier: MIT
// Internal to the kernels: the products over all rows of a sequence (not the per-step recurrent ones).
#pragma once

#include "lstm_ext/backend.h"
#include "lstm_ext/common.h"

namespace lstm_ext::detail {

// C (+)= op(A) op(B), row-major: op(A) is m x k, op(B) is k x n, C is m x n with row strides lda, ldb, ldc.
// A is stored k x m when trans_a (likewise B), as in BLAS. `accumulate` adds to C instead of overwriting it.
// Runs on the current backend, spread over get_num_threads() threads unless already inside a parallel region
// (or the product is too small to pay for a fork).
template <typename Scalar>
void gemm(bool trans_a, bool trans_b, Index m, Index n, Index k, const Scalar* a, Index lda, const Scalar* b,
          Index ldb, bool accumulate, Scalar* c, Index ldc);

// The same on a given backend (the tests compare the two).
template <typename Scalar>
void gemm_on(GemmBackend backend, bool trans_a, bool trans_b, Index m, Index n, Index k, const Scalar* a, Index lda,
             const Scalar* b, Index ldb, bool accumulate, Scalar* c, Index ldc);

}  // namespace lstm_ext::detail
