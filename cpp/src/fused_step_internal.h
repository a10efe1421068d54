// SPDX-License-Identifier: MIT
// Internal to the LSTM kernels: one float time step for a few rows, the recurrent product and the gate pass
// fused in registers.
//
// At small batches a step is a matrix-vector product: Eigen's GEBP runs it with its 4-column micro-kernel
// mostly empty, writes the pre-activations to memory, and the gate pass reads them back. Here the recurrent
// weights are packed once per call by blocks of P hidden units (P = the packet width), each block holding the
// four gates' rows of those units interleaved by k:
//   block b, column k: [ w_i(units) | w_f(units) | w_g(units) | w_o(units) ]   (4 packets, contiguous)
// so one pass over k leaves every gate's pre-activation of a block's units in registers, and the gate math
// (the same operations, in the same order, as the fused gate_pass_forward) runs on them before anything is
// stored. Each pre-activation is one chain of multiply-adds over k = 0..K-1, whatever the blocking, the rows
// grouped with it or the unit range a thread owns: results do not depend on the thread split.
#pragma once

#include "lstm_ext/lstm.h"
#include "activations_internal.h"
#include "sequence_internal.h"

#include <algorithm>

namespace lstm_ext::detail {

class FusedLstmStep {
 public:
  using P = FloatPacket;
  static constexpr Index kWidth = kFloatPacket;

  // w_hh: row-major [4H, K] (PyTorch's layout, gates i, f, g, o); packs the rows of units [u0, u1).
  FusedLstmStep(const float* w_hh, Index hidden, Index k, Index u0, Index u1)
      : hidden_(hidden), k_(k), u0_(u0), u1_(u1), blocks_((u1 - u0 + kWidth - 1) / kWidth) {
    packed_.setZero(blocks_ * k_ * kGatesLstm * kWidth);  // padding units: zero weights
    for (Index q = 0; q < kGatesLstm; ++q) {
      for (Index unit = u0_; unit < u1_; ++unit) {
        const float* src = w_hh + (q * hidden_ + unit) * k_;  // read each row of w_hh in order
        const Index b = (unit - u0_) / kWidth, j = (unit - u0_) % kWidth;
        float* dst = packed_.data() + (b * k_ * kGatesLstm + q) * kWidth + j;
        for (Index kk = 0; kk < k_; ++kk) dst[kk * kGatesLstm * kWidth] = src[kk];
      }
    }
  }

  // One step for `rows` rows:
  //   pre = gates (the input projection, row stride 4H) + prev [rows, K] (row stride ld_prev; null: zeros) w^T
  //   gates <- the activations i, f, g, o (what the backward reads); c_t = f c_prev + i g; h_t = o tanh(c_t)
  // on units [u0, u1) only. c_prev and c_t have row stride H (c_t may equal c_prev), h_t row stride ld_h.
  void run(Index rows, const float* prev, Index ld_prev, float* gates, const float* c_prev, float* c_t,
           float* h_t, Index ld_h) const {
    Index r = 0;
    for (; r + 4 <= rows; r += 4) run_rows<4>(r, prev, ld_prev, gates, c_prev, c_t, h_t, ld_h);
    switch (rows - r) {
      case 3: run_rows<3>(r, prev, ld_prev, gates, c_prev, c_t, h_t, ld_h); break;
      case 2: run_rows<2>(r, prev, ld_prev, gates, c_prev, c_t, h_t, ld_h); break;
      case 1: run_rows<1>(r, prev, ld_prev, gates, c_prev, c_t, h_t, ld_h); break;
      default: break;
    }
  }

 private:
  // Rows [r, r + R): blocks in groups of B, R * B * 4 accumulators (16, half the AVX-512 registers).
  template <int R>
  void run_rows(Index r, const float* prev, Index ld_prev, float* gates, const float* c_prev, float* c_t,
                float* h_t, Index ld_h) const {
    constexpr int B = 4 / R > 0 ? 4 / R : 1;
    Index b = 0;
    for (; b + B <= blocks_; b += B) run_tile<R, B>(r, b, prev, ld_prev, gates, c_prev, c_t, h_t, ld_h);
    for (; b < blocks_; ++b) run_tile<R, 1>(r, b, prev, ld_prev, gates, c_prev, c_t, h_t, ld_h);
  }

  template <int R, int B>
  void run_tile(Index r, Index b0, const float* prev, Index ld_prev, float* gates, const float* c_prev,
                float* c_t, float* h_t, Index ld_h) const {
    using namespace Eigen::internal;
    constexpr Index kStep = kGatesLstm * kWidth;  // floats per k in a block
    P acc[R][B][kGatesLstm];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < B; ++j)
        for (int q = 0; q < kGatesLstm; ++q) acc[i][j][q] = pset1<P>(0.0f);
    if (prev != nullptr) {
      const float* w[B];
      for (int j = 0; j < B; ++j) w[j] = packed_.data() + (b0 + j) * k_ * kStep;
      const float* a = prev + r * ld_prev;
      for (Index kk = 0; kk < k_; ++kk) {
        P x[R];
        for (int i = 0; i < R; ++i) x[i] = pset1<P>(a[i * ld_prev + kk]);
        for (int j = 0; j < B; ++j) {
          for (int q = 0; q < kGatesLstm; ++q) {
            const P wv = pload<P>(w[j] + kk * kStep + q * kWidth);
            for (int i = 0; i < R; ++i) acc[i][j][q] = pmadd(wv, x[i], acc[i][j][q]);
          }
        }
      }
    }
    // The epilogue reads the sums back from L1: taking the accumulators' address would keep them out of
    // registers in the loop above.
    alignas(64) float sums[R][B][kGatesLstm][kWidth];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < B; ++j)
        for (int q = 0; q < kGatesLstm; ++q) pstore(sums[i][j][q], acc[i][j][q]);
    const Index H = hidden_, G = kGatesLstm * hidden_;
    for (int i = 0; i < R; ++i) {
      const Index row = r + i;
      for (int j = 0; j < B; ++j) {
        const Index u = u0_ + (b0 + j) * kWidth;
        const Index width = std::min(kWidth, u1_ - u);
        float* g = gates + row * G + u;
        const float* cp = c_prev + row * H + u;
        float* ct = c_t + row * H + u;
        float* ht = h_t + row * ld_h + u;
        if (width == kWidth) {
          epilogue(sums[i][j], cp, g, H, ct, ht);
          continue;
        }
        // A last, partial block runs the same vector code on padded copies (as for_each_packet does).
        alignas(64) float tail_g[kGatesLstm][kWidth] = {}, tail_cp[kWidth] = {}, tail_ct[kWidth], tail_ht[kWidth];
        for (int q = 0; q < kGatesLstm; ++q) std::copy_n(g + q * H, width, tail_g[q]);
        std::copy_n(cp, width, tail_cp);
        epilogue(sums[i][j], tail_cp, tail_g[0], kWidth, tail_ct, tail_ht);
        for (int q = 0; q < kGatesLstm; ++q) std::copy_n(tail_g[q], width, g + q * H);
        std::copy_n(tail_ct, width, ct);
        std::copy_n(tail_ht, width, ht);
      }
    }
  }

  // One packet of units: pre-activation = projection (in g, gate q at g + q * ld_g) + recurrent sum, rounded
  // as GEBP's accumulate-into-output rounds it; then exactly the fused gate_pass_forward's operations.
  EIGEN_ALWAYS_INLINE static void epilogue(const float (&sums)[kGatesLstm][kWidth], const float* c_prev, float* g,
                                           Index ld_g, float* c_t, float* h_t) {
    using namespace Eigen::internal;
    const P ig = psigmoid(padd(ploadu<P>(g), pload<P>(sums[0])));
    const P fg = psigmoid(padd(ploadu<P>(g + ld_g), pload<P>(sums[1])));
    const P gg = ptanh(padd(ploadu<P>(g + 2 * ld_g), pload<P>(sums[2])));
    const P og = psigmoid(padd(ploadu<P>(g + 3 * ld_g), pload<P>(sums[3])));
    const P c = padd(pmul(fg, ploadu<P>(c_prev)), pmul(ig, gg));
    pstoreu(g, ig);
    pstoreu(g + ld_g, fg);
    pstoreu(g + 2 * ld_g, gg);
    pstoreu(g + 3 * ld_g, og);
    pstoreu(c_t, c);
    pstoreu(h_t, pmul(og, ptanh(c)));
  }

  Index hidden_, k_, u0_, u1_, blocks_;
  Buffer<float> packed_;  // [blocks][K][4][P], 64-byte aligned
};

}  // namespace lstm_ext::detail
