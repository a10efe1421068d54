// SPDX-License-Identifier: MIT
// Internal to the LSTM kernels: shared precondition checks.
#pragma once

#include "lstm_ext/lstm.h"

#include <algorithm>
#include <string>

namespace lstm_ext::detail {

inline std::string dims_string(const LstmDims& d) {
  return "(T=" + std::to_string(d.steps) + ", N=" + std::to_string(d.batch) +
         ", I=" + std::to_string(d.input) + ", H=" + std::to_string(d.hidden) + ")";
}

// Every size >= 1 and every buffer size representable: T*N*4H and T*N*I must not overflow Index.
inline void check_dims(const char* where, const LstmDims& d) {
  require(d.steps >= 1 && d.batch >= 1 && d.input >= 1 && d.hidden >= 1, where,
          "all dimensions must be >= 1, got " + dims_string(d));
  checked_product(where, {d.steps, d.batch, kGatesLstm, d.hidden});
  checked_product(where, {d.steps, d.batch, d.input});
  checked_product(where, {kGatesLstm, d.hidden, d.input});
  checked_product(where, {kGatesLstm, d.hidden, d.hidden});
}

template <typename Scalar>
void check_weights(const char* where, const LstmWeights<Scalar>& w) {
  require(w.w_ih != nullptr, where, "w_ih is null");
  require(w.w_hh != nullptr, where, "w_hh is null");
}

// Per-call scratch of the gate passes; Eigen::Array storage is aligned. The transcendental functions run only
// on these buffers: Eigen vectorises an array from its first aligned element, so on caller memory the split
// between scalar and vector code (which round differently) would move with the buffer's address, and two
// identical calls could differ in the last bit.
template <typename Scalar>
struct GateScratch {
  explicit GateScratch(Index hidden) : gates(kGatesLstm * hidden), a(hidden), b(hidden) {}
  Eigen::Array<Scalar, Eigen::Dynamic, 1> gates;  // [4H]
  Eigen::Array<Scalar, Eigen::Dynamic, 1> a;      // [H]
  Eigen::Array<Scalar, Eigen::Dynamic, 1> b;      // [H]
};

// out[M, G] += a[M, K] * w[G, K]^T, the recurrent product of the forward; rows of a are lda apart.
// A single row (N = 1) goes to a matrix-vector product: Eigen's GEMM path would repack all of w on every
// call, costing more than the math.
template <typename Scalar>
void add_product_nt(Index m, Index k, Index g, const Scalar* a, Index lda, const Scalar* w, Scalar* out) {
  const ConstMatrixMap<Scalar> w_map(w, g, k);
  if (m == 1) {
    RowVectorMap<Scalar>(out, g).noalias() += ConstRowVectorMap<Scalar>(a, k) * w_map.transpose();
  } else {
    MatrixMap<Scalar>(out, m, g).noalias() +=
        ConstStridedMatrixMap<Scalar>(a, m, k, Eigen::OuterStride<>(lda)) * w_map.transpose();
  }
}

// Row stride of y for a layout (0 means dense); checked against H.
inline Index y_stride_of(const char* where, const LstmLayout& layout, Index hidden) {
  const Index stride = layout.y_stride == 0 ? hidden : layout.y_stride;
  require(stride >= hidden, where, "layout.y_stride must be 0 or >= H");
  return stride;
}

// Rows of a [rows, cols] block with row stride `stride` copied to a dense [rows, cols] buffer.
template <typename Scalar>
void copy_rows(Index rows, Index cols, const Scalar* src, Index stride, Scalar* dst) {
  for (Index r = 0; r < rows; ++r) std::copy_n(src + r * stride, cols, dst + r * cols);
}

// out[M, H] = a[M, G] * w[G, H], the recurrent product of the backward; N = 1 as above.
template <typename Scalar>
void set_product_nn(Index m, Index g, Index h, const Scalar* a, const Scalar* w, Scalar* out) {
  const ConstMatrixMap<Scalar> w_map(w, g, h);
  if (m == 1) {
    RowVectorMap<Scalar>(out, h).noalias() = ConstRowVectorMap<Scalar>(a, g) * w_map;
  } else {
    MatrixMap<Scalar>(out, m, h).noalias() = ConstMatrixMap<Scalar>(a, m, g) * w_map;
  }
}

}  // namespace lstm_ext::detail
