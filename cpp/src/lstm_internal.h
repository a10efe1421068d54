// SPDX-License-Identifier: MIT
// Internal to the LSTM kernels: precondition checks, the gate passes' scratch and the forward gate pass.
#pragma once

#include "lstm_ext/lstm.h"
#include "activations_internal.h"
#include "sequence_internal.h"

#include <string>

namespace lstm_ext::detail {

inline std::string dims_string(const SequenceDims& d) {
  return "(T=" + std::to_string(d.steps) + ", N=" + std::to_string(d.batch) + ", I=" + std::to_string(d.input) +
         ", H=" + std::to_string(d.hidden) + (d.proj > 0 ? ", P=" + std::to_string(d.proj) : std::string()) + ")";
}

// Every size >= 1 (P >= 0) and every buffer size representable: T*N*G and T*N*I must not overflow Index.
inline void check_dims(const char* where, const SequenceDims& d, Index gates) {
  require(d.steps >= 1 && d.batch >= 1 && d.input >= 1 && d.hidden >= 1 && d.proj >= 0, where,
          [&] { return "all dimensions must be >= 1, got " + dims_string(d); });
  const Index out = d.proj > 0 ? d.proj : d.hidden;
  checked_product(where, {d.steps, d.batch, gates, d.hidden});
  checked_product(where, {d.steps, d.batch, d.input});
  checked_product(where, {d.steps, d.batch, out});
  checked_product(where, {gates, d.hidden, d.input});
  checked_product(where, {gates, d.hidden, out});
}

template <typename Scalar>
void check_weights(const char* where, const LstmWeights<Scalar>& w, const LstmDims& d) {
  require(w.w_ih != nullptr, where, "w_ih is null");
  require(w.w_hh != nullptr, where, "w_hh is null");
  require((w.w_hr != nullptr) == (d.proj > 0), where, "w_hr must be given exactly when dims.proj > 0");
}

// Per-call scratch of the gate passes; Eigen::Array storage is aligned. The transcendental functions run only
// on these buffers: Eigen vectorises an array from its first aligned element, so on caller memory the split
// between scalar and vector code (which round differently) would move with the buffer's address, and two
// identical calls could differ in the last bit.
template <typename Scalar>
struct GateScratch {
  GateScratch(Index gates_width, Index hidden) : gates(gates_width), a(hidden), b(hidden) {}
  Eigen::Array<Scalar, Eigen::Dynamic, 1> gates;  // [G]
  Eigen::Array<Scalar, Eigen::Dynamic, 1> a;      // [H]
  Eigen::Array<Scalar, Eigen::Dynamic, 1> b;      // [H]
};

// One step's element-wise work for all N rows, on hidden units [u0, u1) (u1 < 0: all H): activates the
// pre-activations of step t in place (kept for the backward when training), then c_t and h_t. Row by row, so
// every array is a contiguous run of values and vectorises without gathers; each row goes through the aligned
// scratch (see GateScratch). A pass on a range of units touches only those units' columns, so threads may
// run disjoint ranges of one step at once (parallel_internal.h, for_each_unit_slice).
//   gates [N, 4H] in/out; c_prev [N, H] or null (zeros); c_t [N, H] out, may equal c_prev;
//   h_t [N, H] out, rows h_stride apart.
template <typename Scalar>
void gate_pass_forward(Index batch, Index hidden, Scalar* gates, const Scalar* c_prev, Scalar* c_t,
                       Scalar* h_t, Index h_stride, GateScratch<Scalar>& scratch, Index u0 = 0, Index u1 = -1) {
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  const Index w = (u1 < 0 ? H : u1) - u0;
  auto act = scratch.gates.head(kGatesLstm * w);
  auto c_new = scratch.a.head(w);
  auto tanh_c = scratch.b.head(w);
  for (Index n = 0; n < batch; ++n) {
    Scalar* row = gates + n * G + u0;
    for (Index q = 0; q < kGatesLstm; ++q) act.segment(q * w, w) = ConstArrayMap<Scalar>(row + q * H, w);
    sigmoid_inplace(act.head(2 * w));  // i and f are adjacent: one logistic over both
    act.segment(2 * w, w) = act.segment(2 * w, w).tanh();
    sigmoid_inplace(act.tail(w));
    if (c_prev != nullptr) {
      c_new = act.segment(w, w) * ConstArrayMap<Scalar>(c_prev + n * H + u0, w) + act.head(w) * act.segment(2 * w, w);
    } else {
      c_new = act.head(w) * act.segment(2 * w, w);
    }
    tanh_c = c_new.tanh();
    for (Index q = 0; q < kGatesLstm; ++q) ArrayMap<Scalar>(row + q * H, w) = act.segment(q * w, w);
    ArrayMap<Scalar>(c_t + n * H + u0, w) = c_new;
    ArrayMap<Scalar>(h_t + n * h_stride + u0, w) = act.tail(w) * tanh_c;
  }
}

// float: the same pass fused into one sweep per row, every value in registers between the load of the
// pre-activations and the stores of the activations, c_t and h_t (no scratch round trips).
inline void gate_pass_forward(Index batch, Index hidden, float* gates, const float* c_prev, float* c_t, float* h_t,
                              Index h_stride, GateScratch<float>& /*unused: no scratch needed*/, Index u0 = 0,
                              Index u1 = -1) {
  using namespace Eigen::internal;
  using P = FloatPacket;
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  const Index w = (u1 < 0 ? H : u1) - u0;
  const bool has_prev = c_prev != nullptr;
  for (Index n = 0; n < batch; ++n) {
    float* g = gates + n * G + u0;
    const float* const in[1] = {has_prev ? c_prev + n * H + u0 : nullptr};
    float* const out[6] = {g, g + H, g + 2 * H, g + 3 * H, c_t + n * H + u0, h_t + n * h_stride + u0};
    for_each_packet<1, 6>(w, in, out, [&](Index j, const float* const* src, float* const* dst) {
      const P i = psigmoid(ploadu<P>(dst[0] + j)), f = psigmoid(ploadu<P>(dst[1] + j));
      const P gg = ptanh(ploadu<P>(dst[2] + j)), o = psigmoid(ploadu<P>(dst[3] + j));
      // c_t = f * c_prev + i * g, rounded as the generic pass rounds it (two products, one sum).
      const P c = has_prev ? padd(pmul(f, ploadu<P>(src[0] + j)), pmul(i, gg)) : pmul(i, gg);
      pstoreu(dst[0] + j, i);
      pstoreu(dst[1] + j, f);
      pstoreu(dst[2] + j, gg);
      pstoreu(dst[3] + j, o);
      pstoreu(dst[4] + j, c);
      pstoreu(dst[5] + j, pmul(o, ptanh(c)));
    });
  }
}

// One step's element-wise backward for `batch` rows: from the activated gates and cell states of step t and the
// gradient reaching h_full (dh_a, rows lda apart, plus dh_b when given), writes the pre-activation gradients
// d_gates [batch, 4H] and turns `dc` from dL/dc_t (the part carried from step t+1) into dL/dc_{t-1}.
//   gates [batch, 4H]; c_t [batch, H]; c_prev [batch, H] (the kernels pass zeros for a null c0); dh_b [batch, H]
//   or null;
//   dc [batch, H] in/out; h_full [batch, H] out (o * tanh(c_t), for the projection's gradient) or null.
// tanh runs on the aligned scratch only (see GateScratch); the rest is exact arithmetic.
template <typename Scalar>
void gate_pass_backward(Index batch, Index hidden, const Scalar* gates, const Scalar* c_t,
                        const Scalar* c_prev, const Scalar* dh_a, Index lda, const Scalar* dh_b,
                        Scalar* dc, Scalar* d_gates, Scalar* h_full, GateScratch<Scalar>& scratch) {
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  auto& tanh_c = scratch.a;
  auto& dh_total = scratch.b;
  for (Index n = 0; n < batch; ++n) {
    const Scalar* g = gates + n * G;
    const ConstArrayMap<Scalar> gi(g, H), gf(g + H, H), gg(g + 2 * H, H), go(g + 3 * H, H);
    Scalar* dg = d_gates + n * G;
    ArrayMap<Scalar> dgi(dg, H), dgf(dg + H, H), dgg(dg + 2 * H, H), dgo(dg + 3 * H, H);
    ArrayMap<Scalar> dc_n(dc + n * H, H);

    tanh_c = ConstArrayMap<Scalar>(c_t + n * H, H).tanh();
    if (h_full != nullptr) ArrayMap<Scalar>(h_full + n * H, H) = go * tanh_c;
    dh_total = ConstArrayMap<Scalar>(dh_a + n * lda, H);
    if (dh_b != nullptr) dh_total += ConstArrayMap<Scalar>(dh_b + n * H, H);
    dgo = dh_total * tanh_c * go * (Scalar(1) - go);
    // dc now holds dL/dc_t: the part carried from step t+1 plus the part through h_t.
    dc_n += dh_total * go * (Scalar(1) - tanh_c.square());
    dgi = dc_n * gg * gi * (Scalar(1) - gi);
    dgf = dc_n * ConstArrayMap<Scalar>(c_prev + n * H, H) * gf * (Scalar(1) - gf);
    dgg = dc_n * gi * (Scalar(1) - gg.square());
    dc_n *= gf;
  }
}

// float: the same pass fused into one sweep per row (see gate_pass_forward).
inline void gate_pass_backward(Index batch, Index hidden, const float* gates, const float* c_t, const float* c_prev,
                               const float* dh_a, Index lda, const float* dh_b, float* dc, float* d_gates,
                               float* h_full, GateScratch<float>& /*unused: no scratch needed*/) {
  using namespace Eigen::internal;
  using P = FloatPacket;
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  const bool has_b = dh_b != nullptr, has_full = h_full != nullptr;
  const P one = pset1<P>(1.0f);
  for (Index n = 0; n < batch; ++n) {
    const float* g = gates + n * G;
    float* dg = d_gates + n * G;
    const float* const in[8] = {g, g + H, g + 2 * H, g + 3 * H, c_t + n * H, dh_a + n * lda,
                                has_b ? dh_b + n * H : nullptr, c_prev + n * H};
    float* const out[6] = {dg, dg + H, dg + 2 * H, dg + 3 * H, dc + n * H, has_full ? h_full + n * H : nullptr};
    for_each_packet<8, 6>(H, in, out, [&](Index j, const float* const* src, float* const* dst) {
      const P gi = ploadu<P>(src[0] + j), gf = ploadu<P>(src[1] + j), gg = ploadu<P>(src[2] + j);
      const P go = ploadu<P>(src[3] + j);
      const P tanh_c = ptanh(ploadu<P>(src[4] + j));
      P dh = ploadu<P>(src[5] + j);
      if (has_b) dh = padd(dh, ploadu<P>(src[6] + j));
      if (has_full) pstoreu(dst[5] + j, pmul(go, tanh_c));
      // The generic pass's expressions, evaluated left to right as Eigen does.
      pstoreu(dst[3] + j, pmul(pmul(pmul(dh, tanh_c), go), psub(one, go)));
      P dcv = padd(ploadu<P>(dst[4] + j), pmul(pmul(dh, go), psub(one, pmul(tanh_c, tanh_c))));
      pstoreu(dst[0] + j, pmul(pmul(pmul(dcv, gg), gi), psub(one, gi)));
      pstoreu(dst[1] + j, pmul(pmul(pmul(dcv, ploadu<P>(src[7] + j)), gf), psub(one, gf)));
      pstoreu(dst[2] + j, pmul(pmul(dcv, gi), psub(one, pmul(gg, gg))));
      pstoreu(dst[4] + j, pmul(dcv, gf));
    });
  }
}

}  // namespace lstm_ext::detail
