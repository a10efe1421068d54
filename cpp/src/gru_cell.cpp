// SPDX-License-Identifier: MIT
#include "lstm_ext/cell.h"

#include "cell_internal.h"
#include "gru_internal.h"

#include <algorithm>

namespace lstm_ext {

template <typename Scalar>
void gru_cell_forward(const CellDims& dims, const CellWeights<Scalar>& weights, const Scalar* x,
                      const Scalar* h0, Scalar* h1, Scalar* gates, Scalar* hidden_n) {
  constexpr const char* kWhere = "gru_cell_forward";
  detail::check_cell(kWhere, dims, weights, kGatesGru);
  require(x != nullptr && h0 != nullptr, kWhere, "x and h0 are required (pass zeros)");
  require(h1 != nullptr, kWhere, "h1 is required");
  require((gates == nullptr) == (hidden_n == nullptr), kWhere,
          "gates and hidden_n must be both set (training) or both null (inference)");

  const Index N = dims.batch, I = dims.input, H = dims.hidden;
  const Index G = kGatesGru * H;
  // The pre-activations of the gates (copied to `gates` when training) and hp = h0 w_hh^T + b_hh for all three
  // blocks, in aligned storage (see cell_internal.h).
  detail::Buffer<Scalar> pre_ws(N * G), hp_ws(N * G);
  Scalar* pre = pre_ws.data();
  Scalar* hp = hp_ws.data();

  // As gru_forward: the input side with b_ih; hp starts from b_hh and the recurrent product is added to it.
  // The two sides share nothing: two parts (cell_split_sides) for a shape that asks for it.
  auto side = [&](Index j) {
    if (j == 0) {
      detail::product_wt(N, G, I, x, weights.w_ih, pre_ws);
      if (weights.b_ih != nullptr) MatrixMap<Scalar>(pre, N, G).rowwise() += ConstRowVectorMap<Scalar>(weights.b_ih, G);
      return;
    }
    MatrixMap<Scalar> hp_map(hp, N, G);
    if (weights.b_hh != nullptr) hp_map.rowwise() = ConstRowVectorMap<Scalar>(weights.b_hh, G);
    else hp_map.setZero();
    detail::product_wt_add(N, G, H, h0, weights.w_hh, hp_ws);
  };
  detail::for_each_cell_side(detail::cell_split_sides(N, G, I, H), side);

  detail::GateScratch<Scalar> scratch(G, 0);  // the row passes use only its gates part
  for (Index r = 0; r < N; ++r) {
    Scalar* g = pre + r * G;
    const Scalar* hp_r = hp + r * G;
    detail::activate_rz(H, g, hp_r, scratch);
    detail::finish_row(H, true, g, hp_r + 2 * H, h0 + r * H, h1 + r * H, scratch);
    if (hidden_n != nullptr) std::copy_n(hp_r + 2 * H, H, hidden_n + r * H);
  }
  if (gates != nullptr) std::copy_n(pre, N * G, gates);
}

template <typename Scalar>
void gru_cell_backward(const CellDims& dims, const CellWeights<Scalar>& weights, const Scalar* x,
                       const Scalar* h0, const Scalar* gates, const Scalar* hidden_n, const Scalar* dh1, Scalar* dx,
                       Scalar* dh0, const CellGrads<Scalar>& grads, bool accumulate) {
  constexpr const char* kWhere = "gru_cell_backward";
  detail::check_cell(kWhere, dims, weights, kGatesGru);
  require(x != nullptr && h0 != nullptr && gates != nullptr && hidden_n != nullptr, kWhere,
          "x, h0, gates and hidden_n are required");
  require(dh1 != nullptr, kWhere, "dh1 is required");
  require(dx != nullptr && dh0 != nullptr, kWhere, "dx and dh0 are required");
  detail::check_cell_grads(kWhere, weights, grads);

  const Index N = dims.batch, I = dims.input, H = dims.hidden;
  const Index G = kGatesGru * H;
  // The gradients of the input-side and of the recurrent-side pre-activations (they differ in the n block).
  detail::Buffer<Scalar> d_gates_ws(N * G), d_hp_ws(N * G);
  Scalar* d_gates = d_gates_ws.data();
  Scalar* d_hp = d_hp_ws.data();

  // gru_backward's per-row expressions (reset after), with dL/dh1 as the only gradient reaching h1.
  for (Index r = 0; r < N; ++r) {
    const Scalar* g = gates + r * G;
    const ConstArrayMap<Scalar> gr(g, H), gz(g + H, H), gn(g + 2 * H, H);
    const ConstArrayMap<Scalar> dh_t(dh1 + r * H, H), hu(h0 + r * H, H), hp_n(hidden_n + r * H, H);
    Scalar* dg = d_gates + r * G;
    ArrayMap<Scalar> dgr(dg, H), dgz(dg + H, H), dgn(dg + 2 * H, H);
    Scalar* dp = d_hp + r * G;
    dgn = dh_t * (Scalar(1) - gz) * (Scalar(1) - gn.square());
    dgz = dh_t * (hu - gn) * gz * (Scalar(1) - gz);
    dgr = dgn * hp_n * gr * (Scalar(1) - gr);
    ArrayMap<Scalar>(dp, 2 * H) = ConstArrayMap<Scalar>(dg, 2 * H);
    ArrayMap<Scalar>(dp + 2 * H, H) = dgn * gr;
  }

  // dL/dh0: through the recurrent product, plus directly through z * h0.
  detail::cell_backward_products<Scalar>(N, G, {I, d_gates, weights.w_ih, x, dx, grads.dw_ih},
                                         {H, d_hp, weights.w_hh, h0, dh0, grads.dw_hh}, accumulate);
  for (Index r = 0; r < N; ++r) {
    ArrayMap<Scalar>(dh0 + r * H, H) +=
        ConstArrayMap<Scalar>(dh1 + r * H, H) * ConstArrayMap<Scalar>(gates + r * G + H, H);
  }
  if (grads.db_ih != nullptr) {
    detail::bias_grad(N, G, d_gates, accumulate, grads.db_ih);
    detail::bias_grad(N, G, d_hp, accumulate, grads.db_hh);
  }
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                           \
  template void gru_cell_forward<Scalar>(const CellDims&, const CellWeights<Scalar>&, const Scalar*,           \
                                         const Scalar*, Scalar*, Scalar*, Scalar*);                            \
  template void gru_cell_backward<Scalar>(const CellDims&, const CellWeights<Scalar>&, const Scalar*,          \
                                          const Scalar*, const Scalar*, const Scalar*, const Scalar*, Scalar*, \
                                          Scalar*, const CellGrads<Scalar>&, bool);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
