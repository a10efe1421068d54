// SPDX-License-Identifier: MIT
// Internal to the cell kernels (cell.h): precondition checks and the products of one step, written as the
// sequence kernels write theirs (sequence_internal.h) so that both round alike where the kernels coincide.
#pragma once

#include "lstm_ext/cell.h"
#include "sequence_internal.h"

#include <string>

namespace lstm_ext::detail {

inline std::string cell_dims_string(const CellDims& d) {
  return "(N=" + std::to_string(d.batch) + ", I=" + std::to_string(d.input) + ", H=" + std::to_string(d.hidden) +
         ")";
}

// Sizes >= 1, every buffer size representable, the weights given and the biases both or neither.
template <typename Scalar>
void check_cell(const char* where, const CellDims& d, const CellWeights<Scalar>& w, Index gates) {
  require(d.batch >= 1 && d.input >= 1 && d.hidden >= 1, where,
          "all dimensions must be >= 1, got " + cell_dims_string(d));
  checked_product(where, {d.batch, gates, d.hidden});
  checked_product(where, {d.batch, d.input});
  checked_product(where, {gates, d.hidden, d.input});
  checked_product(where, {gates, d.hidden, d.hidden});
  require(w.w_ih != nullptr, where, "w_ih is null");
  require(w.w_hh != nullptr, where, "w_hh is null");
  require((w.b_ih == nullptr) == (w.b_hh == nullptr), where, "b_ih and b_hh must be both given or both null");
}

template <typename Scalar>
void check_cell_grads(const char* where, const CellWeights<Scalar>& w, const CellGrads<Scalar>& g) {
  require(g.dw_ih != nullptr && g.dw_hh != nullptr, where, "dw_ih and dw_hh are required");
  require((g.db_ih != nullptr) == (w.b_ih != nullptr) && (g.db_hh != nullptr) == (w.b_hh != nullptr), where,
          "db_ih and db_hh must be given exactly when the cell has biases");
}

// out [N, G] = a [N, K] w^T, w [G, K]. At N = 1 Eigen evaluates this as a matrix-vector product (the same
// expression as the sequence kernels' input projection, so the same kernel there).
template <typename Scalar>
void product_wt(Index n, Index g, Index k, const Scalar* a, const Scalar* w, Scalar* out) {
  MatrixMap<Scalar>(out, n, g).noalias() = ConstMatrixMap<Scalar>(a, n, k) * ConstMatrixMap<Scalar>(w, g, k).transpose();
}

// out [N, G] += a [N, K] w^T.
template <typename Scalar>
void product_wt_add(Index n, Index g, Index k, const Scalar* a, const Scalar* w, Scalar* out) {
  MatrixMap<Scalar>(out, n, g).noalias() += ConstMatrixMap<Scalar>(a, n, k) * ConstMatrixMap<Scalar>(w, g, k).transpose();
}

// out [N, K] = d [N, G] w, w [G, K]: the gradient through a product with w^T.
template <typename Scalar>
void product_w(Index n, Index g, Index k, const Scalar* d, const Scalar* w, Scalar* out) {
  MatrixMap<Scalar>(out, n, k).noalias() = ConstMatrixMap<Scalar>(d, n, g) * ConstMatrixMap<Scalar>(w, g, k);
}

// dw [G, K] (+)= d [N, G]^T a [N, K]. At N = 1 an outer product, row by row: each element is one rounded
// product (plus the old value), as the sequence kernels' GEMM of depth 1 followed by the layer's `+=` gives.
template <typename Scalar>
void weight_grad(Index n, Index g, Index k, const Scalar* d, const Scalar* a, bool accumulate, Scalar* dw) {
  MatrixMap<Scalar> out(dw, g, k);
  if (n == 1) {
    const ConstRowVectorMap<Scalar> row(a, k);
    for (Index i = 0; i < g; ++i) {
      if (accumulate) out.row(i) += d[i] * row;
      else out.row(i) = d[i] * row;
    }
    return;
  }
  const auto product = ConstMatrixMap<Scalar>(d, n, g).transpose() * ConstMatrixMap<Scalar>(a, n, k);
  if (accumulate) out.noalias() += product;
  else out.noalias() = product;
}

// db [G] (+)= the column sums of d [N, G], summed into aligned storage first (see input_side_backward).
template <typename Scalar>
void bias_grad(Index n, Index g, const Scalar* d, bool accumulate, Scalar* db) {
  RowVectorMap<Scalar> out(db, g);
  if (n == 1) {
    if (accumulate) out += ConstRowVectorMap<Scalar>(d, g);
    else out = ConstRowVectorMap<Scalar>(d, g);
    return;
  }
  const Eigen::Matrix<Scalar, 1, Eigen::Dynamic> sums = ConstMatrixMap<Scalar>(d, n, g).colwise().sum();
  if (accumulate) out += sums;
  else out = sums;
}

}  // namespace lstm_ext::detail
