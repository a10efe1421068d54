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

// c1 [batch, H] recomputed from the activated gates and c0 as the forward computed it (two products and a sum:
// the same bits), so the forward keeps nothing but the gates.
template <typename Scalar>
void recompute_cells(Index batch, Index hidden, const Scalar* gates, const Scalar* c0, Scalar* c1) {
  const Index H = hidden, G = kGatesLstm * H;
  for (Index n = 0; n < batch; ++n) {
    const Scalar* g = gates + n * G;
    ArrayMap<Scalar>(c1 + n * H, H) = ConstArrayMap<Scalar>(g + H, H) * ConstArrayMap<Scalar>(c0 + n * H, H) +
                                      ConstArrayMap<Scalar>(g, H) * ConstArrayMap<Scalar>(g + 2 * H, H);
  }
}

// float: with the packet operations of the fused gate_pass_forward.
void recompute_cells(Index batch, Index hidden, const float* gates, const float* c0, float* c1) {
  using namespace Eigen::internal;
  using P = detail::FloatPacket;
  const Index H = hidden, G = kGatesLstm * H;
  for (Index n = 0; n < batch; ++n) {
    const float* g = gates + n * G;
    const float* const in[4] = {g, g + H, g + 2 * H, c0 + n * H};
    float* const out[1] = {c1 + n * H};
    detail::for_each_packet<4, 1>(H, in, out, [&](Index j, const float* const* src, float* const* dst) {
      const P gi = ploadu<P>(src[0] + j), gf = ploadu<P>(src[1] + j), gg = ploadu<P>(src[2] + j);
      pstoreu(dst[0] + j, padd(pmul(gf, ploadu<P>(src[3] + j)), pmul(gi, gg)));
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
  auto input_side = [&] {
    detail::product_wt(N, G, I, x, weights.w_ih, pre);
    if (weights.b_ih != nullptr) {
      MatrixMap<Scalar>(pre.data(), N, G).rowwise() +=
          ConstRowVectorMap<Scalar>(weights.b_ih, G) + ConstRowVectorMap<Scalar>(weights.b_hh, G);
    }
  };
  if (detail::cell_split_sides(N, G, I, H)) {
    // The recurrent side as a part of its own, into its own buffer, added after.
    detail::Buffer<Scalar> recurrent(N * G);
    detail::for_each_part(2, [&](Index j) {
      if (j == 0) input_side();
      else detail::product_wt(N, G, H, h0, weights.w_hh, recurrent);
    });
    pre += recurrent;
  } else {
    input_side();
    detail::product_wt_add(N, G, H, h0, weights.w_hh, pre);
  }

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
  detail::Buffer<Scalar> d_gates(N * G), c1(N * H);

  // dc0 doubles as the running dc: dL/dc1 in, dL/dc0 out. The sequence backward's gate pass, on one step.
  if (dc1 != nullptr) std::copy_n(dc1, N * H, dc0); else std::fill_n(dc0, N * H, Scalar(0));
  detail::GateScratch<Scalar> scratch = make_scratch<Scalar>(G, H);
  recompute_cells(N, H, gates, c0, c1.data());
  detail::gate_pass_backward(N, H, gates, c1.data(), c0, dh1, H, static_cast<const Scalar*>(nullptr), dc0,
                             d_gates.data(), static_cast<Scalar*>(nullptr), scratch);

  detail::cell_backward_products<Scalar>(N, G, {I, d_gates.data(), weights.w_ih, x, dx, grads.dw_ih},
                                         {H, d_gates.data(), weights.w_hh, h0, dh0, grads.dw_hh}, accumulate);
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
