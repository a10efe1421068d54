// SPDX-License-Identifier: MIT
// Internal to the LSTM and GRU kernels: one float time step for a few rows, the recurrent product and the gate
// math fused in registers.
//
// At small batches a step is a matrix-vector product: Eigen's GEBP runs it with its 4-column micro-kernel
// mostly empty, writes the pre-activations to memory, and the gate pass reads them back. Here the recurrent
// weights are packed once per call by blocks of P hidden units (P = the packet width), each block holding the
// gates' rows of those units interleaved by k (LSTM: i, f, g, o; GRU: r, z, n):
//   block b, column k: [ w_gate0(units) | w_gate1(units) | ... ]   (one packet per gate, contiguous)
// so one pass over k leaves every gate's recurrent sum of a block's units in registers, and the gate math
// runs on them before anything is stored. Each sum is one chain of multiply-adds over k = 0..K-1, whatever
// the blocking, the rows grouped with it or the unit range a thread owns: results do not depend on the
// thread split.
#pragma once

#include "lstm_ext/gru.h"
#include "lstm_ext/lstm.h"
#include "activations_internal.h"
#include "sequence_internal.h"
#include "transpose_internal.h"

#include <algorithm>

// The epilogues are lambdas called once per block: inlined, their constants stay in registers across blocks.
#if defined(__GNUC__)
#define LSTM_EXT_INLINE_LAMBDA __attribute__((always_inline))
#else
#define LSTM_EXT_INLINE_LAMBDA
#endif

namespace lstm_ext::detail {

// Float batches of at most this many rows run their steps fused. Measured one LSTM step, 1 thread (bench_parts
// FusedStep against PackedStep, the packed product then the gate pass): N = 1..4 0.7-1.0x the time (H = 64
// at N = 1 ties: the weights' trip from L2 bounds both), N = 8 0.9-1.15x; from N = 16 no gain.
constexpr Index kMaxFusedRows = 8;

// The recurrent product of kGates gate blocks on units [u0, u1), handing each block of sums to an epilogue.
template <int kGates>
class FusedRecurrence {
 public:
  using P = FloatPacket;
  static constexpr Index kWidth = kFloatPacket;
  // The sums of one block of one row: sums[q][j] for gate q, unit u + j.
  using Sums = float[kGates][kWidth];

  // w: row-major [kGates * H, K] (PyTorch's layout); packs the rows of units [u0, u1).
  FusedRecurrence(const float* w, Index hidden, Index k, Index u0, Index u1)
      : hidden_(hidden), k_(k), u0_(u0), u1_(u1), blocks_((u1 - u0 + kWidth - 1) / kWidth) {
    packed_.setZero(blocks_ * k_ * kGates * kWidth);  // padding units: zero weights
    // Block b, gate q: the rows of its units, transposed into k-major packets kGates packets apart.
    for (Index q = 0; q < kGates; ++q) {
      for (Index b = 0; b < blocks_; ++b) {
        const Index unit = u0_ + b * kWidth, units = std::min(kWidth, u1_ - unit);
        transpose_copy(units, k_, w + (q * hidden_ + unit) * k_, k_, packed_.data() + (b * k_ * kGates + q) * kWidth,
                       kGates * kWidth);
      }
    }
  }

  // For rows [0, rows) of prev [rows, K] (row stride ld_prev; null: zeros) and every block of units:
  // epilogue(row, u, width, sums) with sums = prev[row] w^T for units [u, u + width), width <= kWidth.
  template <typename Epilogue>
  void run(Index rows, const float* prev, Index ld_prev, Epilogue&& epilogue) const {
    Index r = 0;
    for (; r + kTileRows <= rows; r += kTileRows) run_rows<kTileRows>(r, prev, ld_prev, epilogue);
    switch (rows - r) {
      case 3: run_rows<3 % kTileRows>(r, prev, ld_prev, epilogue); break;
      case 2: run_rows<2>(r, prev, ld_prev, epilogue); break;
      case 1: run_rows<1>(r, prev, ld_prev, epilogue); break;
      default: break;
    }
  }

 private:
  // Register budget of a tile: R rows x B blocks x kGates sums, plus R broadcasts and a weight packet. With 32
  // registers: rows in 4s, B = 4 / R (LSTM: 16 sums; at N = 1 one pass over k covers 4 blocks). With 16
  // (AVX2) that spilled the sums (16 + 2 registers at N = 1): rows in 3s and at most 12 sums (LSTM N = 1:
  // 3 blocks; one LSTM step on a Zen 3 guest, 1 thread, bench_parts FusedStep: N = 4, H = 128 14.2 -> 9.0 us,
  // N = 8, H = 512 531 -> 259 us).
  static constexpr int kTileRows = kWideRegisterFile ? 4 : 3;
  template <int R>
  static constexpr int kTileBlocks = std::max(1, kWideRegisterFile ? 4 / R : 12 / (R * kGates));

  // Rows [r, r + R): blocks in groups of kTileBlocks<R>.
  template <int R, typename Epilogue>
  void run_rows(Index r, const float* prev, Index ld_prev, Epilogue& epilogue) const {
    if constexpr (R > 0) {  // R == 0: the remainder 3 that rows in 3s never leave
      constexpr int B = kTileBlocks<R>;
      Index b = 0;
      for (; b + B <= blocks_; b += B) run_tile<R, B>(r, b, prev, ld_prev, epilogue);
      for (; b < blocks_; ++b) run_tile<R, 1>(r, b, prev, ld_prev, epilogue);
    }
  }

  template <int R, int B, typename Epilogue>
  void run_tile(Index r, Index b0, const float* prev, Index ld_prev, Epilogue& epilogue) const {
    using namespace Eigen::internal;
    constexpr Index kStep = kGates * kWidth;  // floats per k in a block
    P acc[R][B][kGates];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < B; ++j)
        for (int q = 0; q < kGates; ++q) acc[i][j][q] = pset1<P>(0.0f);
    if (prev != nullptr) {
      const float* w[B];
      for (int j = 0; j < B; ++j) w[j] = packed_.data() + (b0 + j) * k_ * kStep;
      const float* a = prev + r * ld_prev;
      for (Index kk = 0; kk < k_; ++kk) {
        P x[R];
        for (int i = 0; i < R; ++i) x[i] = pset1<P>(a[i * ld_prev + kk]);
        for (int j = 0; j < B; ++j) {
          for (int q = 0; q < kGates; ++q) {
            P wv = pload<P>(w[j] + kk * kStep + q * kWidth);
            if (R > 1) keep_in_register(wv);
            for (int i = 0; i < R; ++i) acc[i][j][q] = pmadd(wv, x[i], acc[i][j][q]);
          }
        }
      }
    }
    // The epilogue reads the sums back from L1: taking the accumulators' address would keep them out of
    // registers in the loop above.
    alignas(64) float sums[R][B][kGates][kWidth];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < B; ++j)
        for (int q = 0; q < kGates; ++q) pstore(sums[i][j][q], acc[i][j][q]);
    for (int i = 0; i < R; ++i) {
      for (int j = 0; j < B; ++j) {
        const Index u = u0_ + (b0 + j) * kWidth;
        epilogue(r + i, u, std::min(kWidth, u1_ - u), sums[i][j]);
      }
    }
  }

  Index hidden_, k_, u0_, u1_, blocks_;
  Workspace<float> packed_;  // [blocks][K][kGates][P], 64-byte aligned
};

// The LSTM step (gates i, f, g, o; no projection inside: K is the recurrent width, H or P).
class FusedLstmStep {
 public:
  using P = FloatPacket;

  FusedLstmStep(const float* w_hh, Index hidden, Index k, Index u0, Index u1)
      : hidden_(hidden), product_(w_hh, hidden, k, u0, u1) {}

  // One step for `rows` rows:
  //   pre = gates (the input projection, row stride 4H) + prev [rows, K] (row stride ld_prev; null: zeros) w^T
  //   gates <- the activations i, f, g, o (what the backward reads); c_t = f c_prev + i g; h_t = o tanh(c_t)
  // on units [u0, u1) only. c_prev and c_t have row stride H (c_t may equal c_prev), h_t row stride ld_h.
  // The element-wise operations and their order are those of the fused float gate_pass_forward; the
  // pre-activation is rounded as GEBP's accumulate-into-output rounds it (projection + sum).
  void run(Index rows, const float* prev, Index ld_prev, float* gates, const float* c_prev, float* c_t,
           float* h_t, Index ld_h) const {
    using namespace Eigen::internal;
    const Index H = hidden_, G = kGatesLstm * hidden_;
    product_.run(rows, prev, ld_prev, [&](Index row, Index u, Index width, const FusedRecurrence<kGatesLstm>::Sums& sums) LSTM_EXT_INLINE_LAMBDA {
      float* g = gates + row * G + u;
      const float* cp = c_prev + row * H + u;
      float* ct = c_t + row * H + u;
      float* ht = h_t + row * ld_h + u;
      if (width == kFloatPacket) {
        packet(sums, cp, g, H, ct, ht);
        return;
      }
      // A last, partial block runs the same vector code on padded copies, as for_each_packet does; calling
      // for_each_packet here (even for the tail only) made the whole step 30-45% slower at N = 1, H = 32-128 (measured:
      // its lambda is not inlined and the epilogue's constants are reloaded per block).
      alignas(64) float tail_g[kGatesLstm][kFloatPacket] = {}, tail_cp[kFloatPacket] = {};
      alignas(64) float tail_ct[kFloatPacket], tail_ht[kFloatPacket];
      for (int q = 0; q < kGatesLstm; ++q) std::copy_n(g + q * H, width, tail_g[q]);
      std::copy_n(cp, width, tail_cp);
      packet(sums, tail_cp, tail_g[0], kFloatPacket, tail_ct, tail_ht);
      for (int q = 0; q < kGatesLstm; ++q) std::copy_n(tail_g[q], width, g + q * H);
      std::copy_n(tail_ct, width, ct);
      std::copy_n(tail_ht, width, ht);
    });
  }

 private:
  // One packet of units: gate q's projection at g + q * ld_g.
  EIGEN_ALWAYS_INLINE static void packet(const float (&sums)[kGatesLstm][kFloatPacket], const float* c_prev,
                                         float* g, Index ld_g, float* c_t, float* h_t) {
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

  Index hidden_;
  FusedRecurrence<kGatesLstm> product_;
};

// The GRU step with the reset gate applied after the product (PyTorch's GRU; gates r, z, n).
class FusedGruStep {
 public:
  using P = FloatPacket;

  FusedGruStep(const float* w_hh, Index hidden) : hidden_(hidden), product_(w_hh, hidden, hidden, 0, hidden) {}

  // One step for `rows` rows, hp = hm w_hh^T + b_hh (hm [rows, H], row stride ld_m, the masked previous
  // states; null: zeros):
  //   r = sigmoid(gx_r + hp_r), z = sigmoid(gx_z + hp_z), n = tanh(gx_n + r hp_n), h_t = (1 - z) n + z hu
  // with gx = gates (the input projection with b_ih, row stride 3H; overwritten with r, z, n), hu the
  // unmasked previous states (row stride ld_u; null: zeros), b_hh null: zeros. hidden_n (row stride H, or
  // null) receives hp_n, which the backward needs. The operations are those of activate_rz and finish_row.
  void run(Index rows, const float* hm, Index ld_m, const float* hu, Index ld_u, const float* b_hh, float* gates,
           float* hidden_n, float* h_t, Index ld_h) const {
    using namespace Eigen::internal;
    const Index H = hidden_, G = kGatesGru * hidden_;
    product_.run(rows, hm, ld_m, [&](Index row, Index u, Index width, const FusedRecurrence<kGatesGru>::Sums& sums) LSTM_EXT_INLINE_LAMBDA {
      float* g = gates + row * G + u;
      const float* b = b_hh != nullptr ? b_hh + u : nullptr;
      const float* h_prev = hu != nullptr ? hu + row * ld_u + u : nullptr;
      float* hn = hidden_n != nullptr ? hidden_n + row * H + u : nullptr;
      float* ht = h_t + row * ld_h + u;
      if (width == kFloatPacket) {
        packet(sums, b, H, h_prev, g, H, hn, ht);
        return;
      }
      // A last, partial block runs the same vector code on padded copies.
      alignas(64) float tail_g[kGatesGru][kFloatPacket] = {}, tail_b[kGatesGru][kFloatPacket] = {};
      alignas(64) float tail_prev[kFloatPacket] = {}, tail_hn[kFloatPacket], tail_ht[kFloatPacket];
      for (int q = 0; q < kGatesGru; ++q) {
        std::copy_n(g + q * H, width, tail_g[q]);
        if (b != nullptr) std::copy_n(b + q * H, width, tail_b[q]);
      }
      if (h_prev != nullptr) std::copy_n(h_prev, width, tail_prev);
      packet(sums, b != nullptr ? tail_b[0] : nullptr, kFloatPacket, h_prev != nullptr ? tail_prev : nullptr,
             tail_g[0], kFloatPacket, hn != nullptr ? tail_hn : nullptr, tail_ht);
      for (int q = 0; q < kGatesGru; ++q) std::copy_n(tail_g[q], width, g + q * H);
      if (hn != nullptr) std::copy_n(tail_hn, width, hn);
      std::copy_n(tail_ht, width, ht);
    });
  }

 private:
  // One packet of units: gate q's projection at g + q * ld_g and bias at b + q * ld_b (b null: zeros).
  EIGEN_ALWAYS_INLINE static void packet(const float (&sums)[kGatesGru][kFloatPacket], const float* b, Index ld_b,
                                         const float* h_prev, float* g, Index ld_g, float* hidden_n, float* h_t) {
    using namespace Eigen::internal;
    const P zero = pset1<P>(0.0f);
    // hp = b_hh + sum, as GEBP accumulates the product into the bias-initialised rows.
    const P hp_r = padd(b != nullptr ? ploadu<P>(b) : zero, pload<P>(sums[0]));
    const P hp_z = padd(b != nullptr ? ploadu<P>(b + ld_b) : zero, pload<P>(sums[1]));
    const P hp_n = padd(b != nullptr ? ploadu<P>(b + 2 * ld_b) : zero, pload<P>(sums[2]));
    const P rg = psigmoid(padd(ploadu<P>(g), hp_r));
    const P zg = psigmoid(padd(ploadu<P>(g + ld_g), hp_z));
    const P ng = ptanh(padd(ploadu<P>(g + 2 * ld_g), pmul(rg, hp_n)));
    const P hp = h_prev != nullptr ? ploadu<P>(h_prev) : zero;
    pstoreu(g, rg);
    pstoreu(g + ld_g, zg);
    pstoreu(g + 2 * ld_g, ng);
    if (hidden_n != nullptr) pstoreu(hidden_n, hp_n);
    pstoreu(h_t, padd(pmul(psub(pset1<P>(1.0f), zg), ng), pmul(zg, hp)));
  }

  Index hidden_;
  FusedRecurrence<kGatesGru> product_;
};

}  // namespace lstm_ext::detail
