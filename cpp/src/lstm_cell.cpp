// SPDX-License-Identifier: MIT
#include "lstm_ext/cell.h"

#include "cell_internal.h"
#include "lstm_internal.h"

#include <algorithm>
#include <type_traits>

namespace lstm_ext {
namespace {

// The float gate passes need no scratch; the generic ones run their transcendental functions on it.
template <typename Scalar>
detail::GateScratch<Scalar> make_scratch(Index G, Index H) {
  if constexpr (std::is_same_v<Scalar, float>) return detail::GateScratch<Scalar>(0, 0);
  else return detail::GateScratch<Scalar>(G, H);
}

// One step's element-wise backward for `batch` rows, the expressions of lstm_backward.cpp's gate pass (so the
// same rounding) with what a cell step has: c0 given, no projection, dh = dh1 only. c1 is recomputed from the
// activated gates and c0 as the forward computed it (two products and a sum: the same bits), so the forward
// keeps nothing but the gates.
//   gates [batch, 4H]; c0 [batch, H]; dh [batch, H]; dc [batch, H] in: dL/dc1, out: dL/dc0;
//   d_gates [batch, 4H] out.
template <typename Scalar>
void cell_gates_backward(Index batch, Index hidden, const Scalar* gates, const Scalar* c0, const Scalar* dh,
                         Scalar* dc, Scalar* d_gates, detail::GateScratch<Scalar>& scratch) {
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  auto& tanh_c = scratch.a;
  auto& dh_total = scratch.b;
  for (Index n = 0; n < batch; ++n) {
    const Scalar* g = gates + n * G;
    const ConstArrayMap<Scalar> gi(g, H), gf(g + H, H), gg(g + 2 * H, H), go(g + 3 * H, H);
    const ConstArrayMap<Scalar> c_prev(c0 + n * H, H);
    Scalar* dg = d_gates + n * G;
    ArrayMap<Scalar> dgi(dg, H), dgf(dg + H, H), dgg(dg + 2 * H, H), dgo(dg + 3 * H, H);
    ArrayMap<Scalar> dc_n(dc + n * H, H);

    tanh_c = gf * c_prev + gi * gg;
    tanh_c = tanh_c.tanh();
    dh_total = ConstArrayMap<Scalar>(dh + n * H, H);
    dgo = dh_total * tanh_c * go * (Scalar(1) - go);
    dc_n += dh_total * go * (Scalar(1) - tanh_c.square());
    dgi = dc_n * gg * gi * (Scalar(1) - gi);
    dgf = dc_n * c_prev * gf * (Scalar(1) - gf);
    dgg = dc_n * gi * (Scalar(1) - gg.square());
    dc_n *= gf;
  }
}

// float: fused into one sweep per row, as lstm_backward.cpp's float pass.
void cell_gates_backward(Index batch, Index hidden, const float* gates, const float* c0, const float* dh, float* dc,
                         float* d_gates, detail::GateScratch<float>& /*unused: no scratch needed*/) {
  using namespace Eigen::internal;
  using P = detail::FloatPacket;
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  const P one = pset1<P>(1.0f);
  for (Index n = 0; n < batch; ++n) {
    const float* g = gates + n * G;
    float* dg = d_gates + n * G;
    const float* const in[6] = {g, g + H, g + 2 * H, g + 3 * H, c0 + n * H, dh + n * H};
    float* const out[5] = {dg, dg + H, dg + 2 * H, dg + 3 * H, dc + n * H};
    detail::for_each_packet<6, 5>(H, in, out, [&](Index j, const float* const* src, float* const* dst) {
      const P gi = ploadu<P>(src[0] + j), gf = ploadu<P>(src[1] + j), gg = ploadu<P>(src[2] + j);
      const P go = ploadu<P>(src[3] + j), c_prev = ploadu<P>(src[4] + j);
      // c1 as gate_pass_forward computed it, then the backward pass's expressions, left to right.
      const P tanh_c = ptanh(padd(pmul(gf, c_prev), pmul(gi, gg)));
      const P dhv = ploadu<P>(src[5] + j);
      pstoreu(dst[3] + j, pmul(pmul(pmul(dhv, tanh_c), go), psub(one, go)));
      const P dcv = padd(ploadu<P>(dst[4] + j), pmul(pmul(dhv, go), psub(one, pmul(tanh_c, tanh_c))));
      pstoreu(dst[0] + j, pmul(pmul(pmul(dcv, gg), gi), psub(one, gi)));
      pstoreu(dst[1] + j, pmul(pmul(pmul(dcv, c_prev), gf), psub(one, gf)));
      pstoreu(dst[2] + j, pmul(pmul(dcv, gi), psub(one, pmul(gg, gg))));
      pstoreu(dst[4] + j, pmul(dcv, gf));
    });
  }
}

}  // namespace

template <typename Scalar>
void lstm_cell_forward(const CellDims& dims, const CellWeights<Scalar>& weights, const Scalar* x,
                       const Scalar* h0, const Scalar* c0, Scalar* h1, Scalar* c1, Scalar* gates) {
  constexpr const char* kWhere = "lstm_cell_forward";
  detail::check_cell(kWhere, dims, weights, kGatesLstm);
  require(x != nullptr && h0 != nullptr && c0 != nullptr, kWhere, "x, h0 and c0 are required (pass zeros)");
  require(h1 != nullptr && c1 != nullptr, kWhere, "h1 and c1 are required");

  const Index N = dims.batch, I = dims.input, H = dims.hidden;
  const Index G = kGatesLstm * H;
  detail::Buffer<Scalar> pre(N * G);  // aligned (see cell_internal.h); copied to `gates` when training

  // In the sequence kernels' order: input side, bias (b_ih + b_hh first, as the layers sum it), recurrent side.
  detail::product_wt(N, G, I, x, weights.w_ih, pre);
  if (weights.b_ih != nullptr) {
    MatrixMap<Scalar>(pre.data(), N, G).rowwise() +=
        ConstRowVectorMap<Scalar>(weights.b_ih, G) + ConstRowVectorMap<Scalar>(weights.b_hh, G);
  }
  detail::product_wt_add(N, G, H, h0, weights.w_hh, pre);

  detail::GateScratch<Scalar> scratch = make_scratch<Scalar>(G, H);
  detail::gate_pass_forward(N, H, pre.data(), c0, c1, h1, H, scratch);
  if (gates != nullptr) std::copy_n(pre.data(), N * G, gates);
}

template <typename Scalar>
void lstm_cell_backward(const CellDims& dims, const CellWeights<Scalar>& weights, const Scalar* x,
                        const Scalar* h0, const Scalar* c0, const Scalar* gates, const Scalar* dh1,
                        const Scalar* dc1, Scalar* dx, Scalar* dh0, Scalar* dc0, const CellGrads<Scalar>& grads,
                        bool accumulate) {
  constexpr const char* kWhere = "lstm_cell_backward";
  detail::check_cell(kWhere, dims, weights, kGatesLstm);
  require(x != nullptr && h0 != nullptr && c0 != nullptr && gates != nullptr, kWhere,
          "x, h0, c0 and gates are required");
  require(dh1 != nullptr, kWhere, "dh1 is required");
  require(dx != nullptr && dh0 != nullptr && dc0 != nullptr, kWhere, "dx, dh0 and dc0 are required");
  detail::check_cell_grads(kWhere, weights, grads);

  const Index N = dims.batch, I = dims.input, H = dims.hidden;
  const Index G = kGatesLstm * H;
  detail::Buffer<Scalar> d_gates(N * G);

  // dc0 doubles as the running dc: dL/dc1 in, dL/dc0 out.
  if (dc1 != nullptr) std::copy_n(dc1, N * H, dc0); else std::fill_n(dc0, N * H, Scalar(0));
  detail::GateScratch<Scalar> scratch = make_scratch<Scalar>(G, H);
  cell_gates_backward(N, H, gates, c0, dh1, dc0, d_gates.data(), scratch);

  detail::product_w(N, G, I, d_gates.data(), weights.w_ih, dx);
  detail::product_w(N, G, H, d_gates.data(), weights.w_hh, dh0);
  detail::weight_grad(N, G, I, d_gates.data(), x, accumulate, grads.dw_ih);
  detail::weight_grad(N, G, H, d_gates.data(), h0, accumulate, grads.dw_hh);
  if (grads.db_ih != nullptr) {
    // b_ih and b_hh enter the gates alike: the same gradient for both.
    detail::bias_grad(N, G, d_gates.data(), accumulate, grads.db_ih);
    detail::bias_grad(N, G, d_gates.data(), accumulate, grads.db_hh);
  }
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                          \
  template void lstm_cell_forward<Scalar>(const CellDims&, const CellWeights<Scalar>&, const Scalar*,        \
                                          const Scalar*, const Scalar*, Scalar*, Scalar*, Scalar*);          \
  template void lstm_cell_backward<Scalar>(const CellDims&, const CellWeights<Scalar>&, const Scalar*,       \
                                           const Scalar*, const Scalar*, const Scalar*, const Scalar*,       \
                                           const Scalar*, Scalar*, Scalar*, Scalar*, const CellGrads<Scalar>&, \
                                           bool);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
