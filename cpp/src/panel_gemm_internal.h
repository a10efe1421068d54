// SPDX-License-Identifier: MIT
// Internal to the kernels: the float recurrent product on weights packed once per call into column panels,
// with a register-blocked micro-kernel of our own.
//
// Eigen's GEBP micro-kernel (packed_gemm_internal.h) runs a 3-packet x 4-row tile: 12 of AVX-512's 32 registers
// hold sums, and every weight packet loaded serves 4 rows. Measured on a 2-core Zen 5 guest, one thread, a
// step's product [N, H] x [H, 4H] at N = 32..128: 165-174 GFLOP/s on GEBP, 225-253 on this kernel's 8-row tile
// (24 sums; the same loop in a standalone probe), about the rate of OpenBLAS's own AVX-512 kernels. On a
// 2-core Zen 3 guest (AVX2, 16 registers: a 4-row tile, 12 sums) the same step runs at 86-94 GFLOP/s, 85-93%
// of its FMA loop's 101 (GEBP: 50-63), once the weight packets are held in registers (keep_in_register).
//
// Layout: op(w) [k, g] is cut into panels of kPanel columns (kBlocks packets), each panel stored k-major:
//   panel p, row kk: [ op(w)(kk, p * kPanel + 0 .. kPanel - 1) ]   (zero past the last column)
// A tile of R rows of `a` runs one pass over (a block of) k: per k it loads the panel's kBlocks packets once
// and multiply-adds them into R * kBlocks sums with a[row, kk] broadcast. Each output element is one chain of
// multiply-adds per block of k, added to the output at the block's end: results do not depend on how rows or
// panels are grouped into tiles or split over threads. The same kernel runs the products over all steps
// (the "native" GEMM backend, gemm.cpp), on op(B) packed per call.
#pragma once

#include "activations_internal.h"
#include "packed_gemm_internal.h"
#include "sequence_internal.h"
#include "transpose_internal.h"

#include <Eigen/Core>

#include <algorithm>

namespace lstm_ext::detail {

class PanelWeights {
 public:
  using P = FloatPacket;
  static constexpr Index kWidth = kFloatPacket;
  static constexpr int kBlocks = 3;
  static constexpr Index kPanel = kBlocks * kWidth;
  // Rows per tile: R * kBlocks sums, kBlocks weight packets and a broadcast must fit the register file
  // (32 registers with AVX-512 or NEON: 8 rows; 16 with AVX2: 4 rows).
  static constexpr int kRows = kWideRegisterFile ? 8 : 4;

  // out[m, g] += a[m, k] * op(w), as PackedWeights:
  //   transposed == false: w is row-major [g, k] (rows ldw apart) and op(w) = w^T  (the forward:  h w_hh^T)
  //   transposed == true:  w is row-major [k, g] (rows ldw apart) and op(w) = w    (the backward: d_gates w_hh)
  PanelWeights(const float* w, Index g, Index k, Index ldw, bool transposed) : PanelWeights(g, k) {
    pack(w, ldw, transposed, 0, panels_);
  }

  // Room for the packed weights; pack() fills them (threads may pack disjoint ranges of panels).
  PanelWeights(Index g, Index k) : g_(g), k_(k), panels_((g + kPanel - 1) / kPanel) {
    owned_.resize(size());
    data_ = owned_.data();
  }

  // The same in `storage`, grown when smaller and otherwise reused: a caller that keeps it between calls
  // saves the allocation and its page faults (a fresh mapping each call cost more than a small product).
  PanelWeights(Index g, Index k, Workspace<float>& storage) : g_(g), k_(k), panels_((g + kPanel - 1) / kPanel) {
    if (storage.size() < size()) storage.resize(size());
    data_ = storage.data();
  }

  // data_ may point into owned_: not copied or moved.
  PanelWeights(const PanelWeights&) = delete;
  PanelWeights& operator=(const PanelWeights&) = delete;

  // Floats the packed weights take.
  Index size() const { return panels_ * k_ * kPanel; }

  // Packs panels [p0, p1) of op(w) (w as in the first constructor), zeros past the last column included.
  void pack(const float* w, Index ldw, bool transposed, Index p0, Index p1) {
    for (Index p = p0; p < p1; ++p) {
      const Index c0 = p * kPanel, cols = std::min(kPanel, g_ - c0);
      float* dst = data_ + p * k_ * kPanel;
      if (transposed) {  // row kk of the panel is a piece of row kk of w
        for (Index kk = 0; kk < k_; ++kk) std::copy_n(w + kk * ldw + c0, cols, dst + kk * kPanel);
      } else {  // column c of the panel is a piece of row c0 + c of w
        transpose_copy(cols, k_, w + c0 * ldw, ldw, dst, kPanel);
      }
      if (cols < kPanel)
        for (Index kk = 0; kk < k_; ++kk) std::fill(dst + kk * kPanel + cols, dst + (kk + 1) * kPanel, 0.0f);
    }
  }

  // out[m, :g] += a[m, :k] * op(w) for rows of a lda apart and of out ldo apart; m >= 0. The packed weights
  // are only read: threads may share one object. `scratch` is unused (the signature is PackedWeights').
  void multiply_add(Index m, const float* a, Index lda, float* out, Index ldo, float* /*scratch*/ = nullptr) const {
    product(true, false, 0, m, 0, panels_, a, lda, out, ldo);
  }

  // out[m, :g] = a[m, :k] * op(w).
  void multiply(Index m, const float* a, Index lda, float* out, Index ldo, float* /*scratch*/ = nullptr) const {
    product(false, false, 0, m, 0, panels_, a, lda, out, ldo);
  }

  Index scratch_size() const { return 0; }
  Index panels() const { return panels_; }

  // The general form, for a part of the product (a thread's share): rows [r0, r1) of out and the columns of
  // panels [p0, p1), out (+)= op(a) op(w), where op(a)(i, kk) is a[i * lda + kk], or a[kk * lda + i] when
  // trans_a (a stored [k, m]). out points at row 0, column 0. Sums run over k in blocks of kDepth (fixed
  // boundaries: the same rounding for every split of rows or panels).
  void product(bool accumulate, bool trans_a, Index r0, Index r1, Index p0, Index p1, const float* a, Index lda,
               float* out, Index ldo) const {
    if (r1 <= r0 || p1 <= p0) return;
    if (k_ == 0) {  // an empty sum
      if (!accumulate) {
        const Index c0 = p0 * kPanel, c1 = std::min(g_, p1 * kPanel);
        for (Index r = r0; r < r1; ++r) std::fill(out + r * ldo + c0, out + r * ldo + c1, 0.0f);
      }
      return;
    }
    // Each block of rows takes every block of k in turn, so its part of out is added to while it is in cache
    // (k outermost would stream all of out through memory once per block of k: 105 MB at s4's input GEMM).
    // trans_a (the weight gradients, a = dG [k, m] with m = 4H) would read a tile's kRows floats of each k from
    // a different row of a, 16 KB apart at s4: a page per k, 16 bytes per cache line. So each block of rows is
    // first copied, per block of k, into tiles of kRows rows, k-major (pack_rows): one contiguous run per tile.
    // Measured on a Zen 3 guest (AVX2), s4's weight gradient 52-68 -> 153 GFLOP/s on 2 threads (OpenBLAS 154).
    thread_local Workspace<float> packed_a;
    if (trans_a && packed_a.size() < kBlockRows * kDepth) packed_a.resize(kBlockRows * kDepth);
    for (Index b0 = r0; b0 < r1; b0 += kBlockRows) {
      const Index b1 = std::min(r1, b0 + kBlockRows);
      for (Index k0 = 0; k0 < k_; k0 += kDepth) {
        const Index depth = std::min(kDepth, k_ - k0);
        const bool add = accumulate || k0 > 0;
        if (trans_a) {
          pack_rows(b1 - b0, depth, a + k0 * lda + b0, lda, packed_a.data());
          if (add) panels<true, true>(b0, b1, p0, p1, k0, depth, packed_a.data(), 0, out, ldo);
          else panels<false, true>(b0, b1, p0, p1, k0, depth, packed_a.data(), 0, out, ldo);
        } else {
          const float* a_k = a + k0;
          if (add) panels<true, false>(b0, b1, p0, p1, k0, depth, a_k, lda, out, ldo);
          else panels<false, false>(b0, b1, p0, p1, k0, depth, a_k, lda, out, ldo);
        }
      }
    }
  }

 private:
  // Sums over at most this many k at a time: a panel's share (kDepth x kPanel floats, 96 KB with AVX-512) and
  // a block of kBlockRows rows of a (256 KB) stay in L2 while the tiles pass over them.
  static constexpr Index kDepth = 512;
  static constexpr Index kBlockRows = 128;

  // Rows [0, m) of a stored [depth, m] (rows lda apart) into tiles of kRows rows (the last one of m % kRows),
  // each k-major: tile t holds (row t * kRows + i, kk) at t * kRows * depth + kk * rows_in_tile + i.
  static void pack_rows(Index m, Index depth, const float* a, Index lda, float* dst) {
    for (Index t0 = 0; t0 < m; t0 += kRows) {
      const Index rows = std::min<Index>(kRows, m - t0);
      float* tile = dst + t0 * depth;
      for (Index kk = 0; kk < depth; ++kk) std::copy_n(a + kk * lda + t0, rows, tile + kk * rows);
    }
  }

  // Rows [b0, b1) of out, panels [p0, p1), k from k0 (a points at k0). kTransA: a holds rows [b0, b1) packed
  // by pack_rows, and lda is unused.
  template <bool kAccumulate, bool kTransA>
  void panels(Index b0, Index b1, Index p0, Index p1, Index k0, Index depth, const float* a, Index lda, float* out,
              Index ldo) const {
    for (Index p = p0; p < p1; ++p) {
      const Index c0 = p * kPanel, cols = std::min(kPanel, g_ - c0);
      const float* w = data_ + (p * k_ + k0) * kPanel;
      // The next panel's share, fetched into L2 while the first tile runs on this one.
      const float* next = p + 1 < p1 ? w + k_ * kPanel : nullptr;
      if (cols > 2 * kWidth) rows<kAccumulate, kTransA, kBlocks>(b0, b1, depth, a, lda, w, cols, out + c0, ldo, next);
      else if (cols > kWidth) rows<kAccumulate, kTransA, 2>(b0, b1, depth, a, lda, w, cols, out + c0, ldo, next);
      else rows<kAccumulate, kTransA, 1>(b0, b1, depth, a, lda, w, cols, out + c0, ldo, next);
    }
  }

  // Rows [r0, r1) in tiles of kRows, then one tile of the remainder.
  template <bool kAccumulate, bool kTransA, int B>
  void rows(Index r0, Index r1, Index depth, const float* a, Index lda, const float* w, Index cols, float* out,
            Index ldo, const float* next) const {
    Index r = r0;
    // kTransA: the tile of row r starts at a + (r - r0) * depth, with its rows' floats of each k adjacent
    // (trans_a's layout, lda = the tile's row count).
    auto at = [&](Index row) { return kTransA ? a + (row - r0) * depth : a + row * lda; };
    if (next != nullptr && r + kRows <= r1) {
      tile<kAccumulate, kTransA, kRows, B, true>(depth, at(r), kTransA ? kRows : lda, w, cols, out + r * ldo, ldo,
                                                 next);
      r += kRows;
    }
    for (; r + kRows <= r1; r += kRows)
      tile<kAccumulate, kTransA, kRows, B>(depth, at(r), kTransA ? kRows : lda, w, cols, out + r * ldo, ldo);
    if (kTransA) lda = r1 - r;  // the last tile's rows
    switch (r1 - r) {
      case 7: tile<kAccumulate, kTransA, 7 % kRows, B>(depth, at(r), lda, w, cols, out + r * ldo, ldo); break;
      case 6: tile<kAccumulate, kTransA, 6 % kRows, B>(depth, at(r), lda, w, cols, out + r * ldo, ldo); break;
      case 5: tile<kAccumulate, kTransA, 5 % kRows, B>(depth, at(r), lda, w, cols, out + r * ldo, ldo); break;
      case 4: tile<kAccumulate, kTransA, 4 % kRows, B>(depth, at(r), lda, w, cols, out + r * ldo, ldo); break;
      case 3: tile<kAccumulate, kTransA, 3, B>(depth, at(r), lda, w, cols, out + r * ldo, ldo); break;
      case 2: tile<kAccumulate, kTransA, 2, B>(depth, at(r), lda, w, cols, out + r * ldo, ldo); break;
      case 1: tile<kAccumulate, kTransA, 1, B>(depth, at(r), lda, w, cols, out + r * ldo, ldo); break;
      default: break;
    }
  }

  // R rows x B packets of the panel at w (cols <= B * kWidth of them real), over `depth` values of k. R == 0:
  // nothing (the remainders above kRows - 1 that a 4-row tile never leaves).
  template <bool kAccumulate, bool kTransA, int R, int B, bool kPrefetch = false>
  EIGEN_ALWAYS_INLINE void tile(Index depth, const float* a, Index lda, const float* w, Index cols, float* out,
                                Index ldo, const float* next = nullptr) const {
    using namespace Eigen::internal;
    if constexpr (R > 0) {
      // op(a)(i, kk): row i's values lda apart (kTransA: a[kk * lda + i], the tile packed by pack_rows).
      const Index row_stride = kTransA ? 1 : lda, k_stride = kTransA ? lda : 1;
      P acc[R][B];
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < B; ++j) acc[i][j] = pset1<P>(0.0f);
      for (Index kk = 0; kk < depth; ++kk) {
        P wv[B];
        for (int j = 0; j < B; ++j) {
          wv[j] = pload<P>(w + kk * kPanel + j * kWidth);
          keep_in_register(wv[j]);
        }
        if constexpr (kPrefetch) {
          for (int j = 0; j < B; ++j) __builtin_prefetch(next + kk * kPanel + j * kWidth, 0, 2);
        }
        const float* a_k = a + kk * k_stride;
        for (int i = 0; i < R; ++i) {
          const P x = pset1<P>(a_k[i * row_stride]);
          for (int j = 0; j < B; ++j) acc[i][j] = pmadd(wv[j], x, acc[i][j]);
        }
      }
      if (cols == B * kWidth) {
        for (int i = 0; i < R; ++i) {
          for (int j = 0; j < B; ++j) {
            float* o = out + i * ldo + j * kWidth;
            pstoreu(o, kAccumulate ? padd(ploadu<P>(o), acc[i][j]) : acc[i][j]);
          }
        }
        return;
      }
      // The last, partial panel: the sums go through L1 and only the real columns are written.
      alignas(64) float sums[B * kWidth];
      for (int i = 0; i < R; ++i) {
        for (int j = 0; j < B; ++j) pstore(sums + j * kWidth, acc[i][j]);
        float* o = out + i * ldo;
        for (Index c = 0; c < cols; ++c) o[c] = kAccumulate ? o[c] + sums[c] : sums[c];
      }
    }
  }

  Index g_, k_, panels_;
  Workspace<float> owned_;      // the packed weights unless the caller gave storage
  float* data_ = nullptr;    // [panels][k][kPanel], 64-byte aligned

};

// The per-step products' packed weights: this kernel for float, Eigen's GEBP for double (the same interface).
template <typename Scalar>
struct RecurrentWeightsOf {
  using type = PackedWeights<Scalar>;
};
template <>
struct RecurrentWeightsOf<float> {
  using type = PanelWeights;
};
template <typename Scalar>
using RecurrentWeights = typename RecurrentWeightsOf<Scalar>::type;

}  // namespace lstm_ext::detail
