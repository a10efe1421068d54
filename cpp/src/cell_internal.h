// SPDX-License-Identifier: MIT
// Internal to the cell kernels (cell.h): precondition checks and the products of one step, written as the
// sequence kernels write theirs (sequence_internal.h) so that both round alike where the kernels coincide.
#pragma once

#include "lstm_ext/cell.h"
#include "cell_row_internal.h"
#include "parallel_internal.h"
#include "sequence_internal.h"

#include <algorithm>
#include <string>
#include <type_traits>

namespace lstm_ext::detail {

inline std::string cell_dims_string(const CellDims& d) {
  return "(N=" + std::to_string(d.batch) + ", I=" + std::to_string(d.input) + ", H=" + std::to_string(d.hidden) +
         ")";
}

// Sizes >= 1, every buffer size representable, the weights given and the biases both or neither.
template <typename Scalar>
void check_cell(const char* where, const CellDims& d, const CellWeights<Scalar>& w, Index gates) {
  require(d.batch >= 1 && d.input >= 1 && d.hidden >= 1, where,
          [&] { return "all dimensions must be >= 1, got " + cell_dims_string(d); });
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

// The products write into aligned storage (Buffer) only: at N = 1 Eigen evaluates them as matrix-vector
// products, whose split between vector code and a scalar remainder (which round differently: the scalar
// multiply-add is not fused) follows the destination's address, so the same step into two numpy arrays could
// differ in the last bit.

// out [N, G] = a [N, K] w^T, w [G, K]; `out` aligned. The expression of the sequence kernels' input projection.
template <typename Scalar>
void product_wt(Index n, Index g, Index k, const Scalar* a, const Scalar* w, Buffer<Scalar>& out) {
  MatrixMap<Scalar>(out.data(), n, g).noalias() =
      ConstMatrixMap<Scalar>(a, n, k) * ConstMatrixMap<Scalar>(w, g, k).transpose();
}

// out [N, G] += a [N, K] w^T; `out` aligned.
template <typename Scalar>
void product_wt_add(Index n, Index g, Index k, const Scalar* a, const Scalar* w, Buffer<Scalar>& out) {
  MatrixMap<Scalar>(out.data(), n, g).noalias() +=
      ConstMatrixMap<Scalar>(a, n, k) * ConstMatrixMap<Scalar>(w, g, k).transpose();
}

// out [N, K] = d [N, G] w, w [G, K] (the gradient through a product with w^T), via an aligned buffer.
template <typename Scalar>
void product_w(Index n, Index g, Index k, const Scalar* d, const Scalar* w, Scalar* out) {
  Buffer<Scalar> result(n * k);
  MatrixMap<Scalar>(result.data(), n, k).noalias() = ConstMatrixMap<Scalar>(d, n, g) * ConstMatrixMap<Scalar>(w, g, k);
  std::copy_n(result.data(), n * k, out);
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

// The backward through one product a w^T: out [N, K] = d [N, G] w and dw [G, K] (+)= d^T a [N, K]. A float
// row (N = 1) takes one pass over w and dw (cell_row_internal.h).
template <typename Scalar>
void backward_products(Index n, Index g, Index k, const Scalar* d, const Scalar* w, const Scalar* a,
                       bool accumulate, Scalar* out, Scalar* dw) {
  if constexpr (std::is_same_v<Scalar, float>) {
    if (n == 1) {
      cell_row_backward_product(g, k, d, w, a, accumulate, out, dw);
      return;
    }
  }
  product_w(n, g, k, d, w, out);
  weight_grad(n, g, k, d, a, accumulate, dw);
}

// Whether a cell step of this shape computes its two sides (the products with w_ih and with w_hh) as two
// independent parts, which for_each_part runs on two threads when there are two: a small batch (its products
// are bound by moving the weights from L2, and each core then moves only its side's) with at least this many
// weights on each side. Chosen by shape alone, so that a step's bits do not depend on the thread count.
// Measured at N = 1, I = H = 128 on this guest (bench_parts Cell*), two threads over one: the backward
// 11.8 -> 8.2 us, the forward 4.8 -> 4.5 us (a fork and join costs about 1 us).
constexpr Index kMaxSplitCellRows = 16;
constexpr Index kMinSplitCellSideWeights = 32768;

inline bool cell_split_sides(Index n, Index g, Index input, Index hidden) {
  return n <= kMaxSplitCellRows && g * std::min(input, hidden) >= kMinSplitCellSideWeights;
}

// Runs side(0) (the input side) and side(1) (the recurrent side) of a cell step: as two parts when `split`
// (cell_split_sides), else one after the other on this thread, never forking.
template <typename Fn>
void for_each_cell_side(bool split, Fn&& side) {
  if (split) {
    for_each_part(2, side);
    return;
  }
  side(0);
  side(1);
}

// One side of a cell's backward: the product with w [G, K] of the step's input a [N, K], its gradients d [N, G].
template <typename Scalar>
struct CellProductSide {
  Index k;          // K
  const Scalar* d;  // [N, G]
  const Scalar* w;  // [G, K]
  const Scalar* a;  // [N, K]
  Scalar* out;      // [N, K]: d w
  Scalar* dw;       // [G, K]: (+)= d^T a
};

// Both products of a cell's backward (backward_products on each side), the two sides as parts (see
// cell_split_sides): each side is the same chain of operations either way.
template <typename Scalar>
void cell_backward_products(Index n, Index g, const CellProductSide<Scalar>& input,
                            const CellProductSide<Scalar>& recurrent, bool accumulate) {
  auto side = [&](const CellProductSide<Scalar>& s) {
    backward_products(n, g, s.k, s.d, s.w, s.a, accumulate, s.out, s.dw);
  };
  for_each_cell_side(cell_split_sides(n, g, input.k, recurrent.k),
                     [&](Index j) { side(j == 0 ? input : recurrent); });
}

}  // namespace lstm_ext::detail
