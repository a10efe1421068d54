// SPDX-License-Identifier: MIT
// Internal to the kernels: the recurrent product with its weights packed once per call.
//
// Each time step multiplies a few rows of states by the same recurrent weights. Eigen's GEMM packs both
// operands into its panel layout on every call; for [N, H] x [H, 4H] at N = 8..128 re-packing the [4H, H]
// weights costs about as much as the arithmetic. This class packs the weights once (per call of a kernel, so
// the weights are never cached across calls) in the layout of Eigen's own GEBP micro-kernel, and each step
// then only packs its small states operand and runs that micro-kernel: the same arithmetic as
// `out += a * w^T` through Eigen's GEMM, without the per-step weight traffic.
//
// It uses Eigen's internal GEMM building blocks (gemm_pack_lhs, gemm_pack_rhs, gebp_kernel, as Eigen's own
// general_matrix_matrix_product composes them); the C++ tests compare it with the plain Eigen product.
#pragma once

#include "lstm_ext/common.h"

#include <Eigen/Core>

#include <algorithm>
#include <vector>

namespace lstm_ext::detail {

// out[m, g] += a[m, k] * op(w)  for m rows of `a` (rows lda apart) into `out` (rows ldo apart), where
//   transposed == false: w is row-major [g, k] and op(w) = w^T  (the forward:  h w_hh^T)
//   transposed == true:  w is row-major [k, g] and op(w) = w    (the backward: d_gates w_hh)
// Row-major `out` is the column-major out^T = op(w)^T a^T, so the weights are GEBP's left-hand side.
template <typename Scalar>
class PackedWeights {
 public:
  // w's rows are ldw apart (a block of rows or columns of a larger matrix may be packed).
  PackedWeights(const Scalar* w, Index g, Index k, Index ldw, bool transposed) : g_(g), k_(k) {
    if (g == 0 || k == 0) return;  // an unused product (e.g. a block that this formulation does not have)
    Index kc = k, mc = g, nc = kMaxRows;
    Eigen::internal::computeProductBlockingSizes<Scalar, Scalar, 1, Index>(kc, mc, nc, Index(1));
    kc_ = std::max<Index>(1, std::min(kc, k));
    mc_ = std::max<Index>(1, std::min(mc, g));
    packed_.resize(g * k);
    Index at = 0;
    for (Index i2 = 0; i2 < g_; i2 += mc_) {
      const Index mc = std::min(i2 + mc_, g_) - i2;
      for (Index k2 = 0; k2 < k_; k2 += kc_) {
        const Index kc = std::min(k2 + kc_, k_) - k2;
        if (transposed) {
          // op(w)^T = w^T [g, k]: element (i, kk) is w[kk * ldw + i]: column-major with stride ldw.
          const ColMapper lhs(w, ldw);
          PackLhsCol()(packed_.data() + at, lhs.getSubMapper(i2, k2), kc, mc);
        } else {
          const RowMapper lhs(w, ldw);
          PackLhsRow()(packed_.data() + at, lhs.getSubMapper(i2, k2), kc, mc);
        }
        at += mc * kc;
      }
    }
  }

  // out[m, :g] += a[m, :k] * op(w); m >= 1. `scratch`: scratch_size() elements, 64-byte aligned (a Buffer),
  // one per thread; the packed weights themselves are only read, so threads may share one object.
  void multiply_add(Index m, const Scalar* a, Index lda, Scalar* out, Index ldo, Scalar* scratch) const {
    const ResMapper res(out, ldo);
    const ColMapper rhs(a, lda);  // a^T [k, m] is column-major with stride lda
    for (Index j2 = 0; j2 < m; j2 += kMaxRows) {
      const Index nc = std::min(j2 + kMaxRows, m) - j2;
      Index at = 0;
      for (Index i2 = 0; i2 < g_; i2 += mc_) {
        const Index mc = std::min(i2 + mc_, g_) - i2;
        for (Index k2 = 0; k2 < k_; k2 += kc_) {
          const Index kc = std::min(k2 + kc_, k_) - k2;
          // The states block is tiny (kc x nc) and packed again per weights block: it stays in L1.
          PackRhs()(scratch, rhs.getSubMapper(k2, j2), kc, nc);
          Gebp()(res.getSubMapper(i2, j2), packed_.data() + at, scratch, mc, kc, nc, Scalar(1));
          at += mc * kc;
        }
      }
    }
  }

  // out[m, :g] = a[m, :k] * op(w): multiply_add on zeroed rows.
  void multiply(Index m, const Scalar* a, Index lda, Scalar* out, Index ldo, Scalar* scratch) const {
    for (Index r = 0; r < m; ++r) std::fill_n(out + r * ldo, g_, Scalar(0));
    multiply_add(m, a, lda, out, ldo, scratch);
  }

  // Elements of the per-step scratch multiply_add needs.
  Index scratch_size() const { return kc_ * kMaxRows; }

 private:
  // Rows of `a` handled per GEBP call; more are processed in blocks of this many.
  static constexpr Index kMaxRows = 128;

  using Traits = Eigen::internal::gebp_traits<Scalar, Scalar>;
  using RowMapper = Eigen::internal::const_blas_data_mapper<Scalar, Index, Eigen::RowMajor>;
  using ColMapper = Eigen::internal::const_blas_data_mapper<Scalar, Index, Eigen::ColMajor>;
  using ResMapper = Eigen::internal::blas_data_mapper<Scalar, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
  using PackLhsRow = Eigen::internal::gemm_pack_lhs<Scalar, Index, RowMapper, Traits::mr, Traits::LhsProgress,
                                                    typename Traits::LhsPacket4Packing, Eigen::RowMajor>;
  using PackLhsCol = Eigen::internal::gemm_pack_lhs<Scalar, Index, ColMapper, Traits::mr, Traits::LhsProgress,
                                                    typename Traits::LhsPacket4Packing, Eigen::ColMajor>;
  using PackRhs = Eigen::internal::gemm_pack_rhs<Scalar, Index, ColMapper, Traits::nr, Eigen::ColMajor>;
  using Gebp = Eigen::internal::gebp_kernel<Scalar, Scalar, Index, ResMapper, Traits::mr, Traits::nr, false, false>;

  Index g_, k_, kc_ = 1, mc_ = 1;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> packed_;  // aligned, as GEBP's loads want
};

}  // namespace lstm_ext::detail
