// SPDX-License-Identifier: MIT
// Internal to the kernels: the products over all rows of a sequence (not the per-step recurrent ones).
#pragma once

#include "lstm_ext/backend.h"
#include "lstm_ext/common.h"

#include <memory>

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

class PanelWeights;

// op(B) of several products C (+)= op(A) op(B) that share it (the chunks of an inference pass, each an input
// projection with w_ih): on the native float backend op(B) is packed once, here, instead of once per product
// (at s4 w_ih is 16 MB: 13 chunks packed it 13 times into a fresh mapping). Otherwise, and for double, each
// product is a gemm call, as it is when `uses` (the products expected) is 1: gemm packs into a buffer its thread
// keeps, where a single product pays no fresh allocation. Either way a product gives the bits gemm gives. The
// backend is read when this is built; b must outlive it.
template <typename Scalar>
class SharedRhs {
 public:
  SharedRhs(bool trans_b, Index n, Index k, const Scalar* b, Index ldb, Index uses);
  ~SharedRhs();
  SharedRhs(const SharedRhs&) = delete;
  SharedRhs& operator=(const SharedRhs&) = delete;

  // C [m, n] (+)= op(A) op(B), as gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc).
  void product(bool trans_a, Index m, const Scalar* a, Index lda, bool accumulate, Scalar* c, Index ldc) const;

 private:
  bool trans_b_;
  Index n_, k_;
  const Scalar* b_;
  Index ldb_;
  std::unique_ptr<PanelWeights> packed_;  // float on the native backend only
};

}  // namespace lstm_ext::detail
