// SPDX-License-Identifier: MIT
// Internal to the GRU kernels: precondition checks and the element-wise work of a forward row (shared by the
// sequence and cell kernels, so both round alike).
#pragma once

#include "lstm_ext/gru.h"
#include "lstm_internal.h"

namespace lstm_ext::detail {

template <typename Scalar>
void check_gru(const char* where, const GruDims& d, const GruWeights<Scalar>& w) {
  check_dims(where, d, kGatesGru);
  require(d.proj == 0, where, "a GRU has no projection: dims.proj must be 0");
  require(w.w_ih != nullptr, where, "w_ih is null");
  require(w.w_hh != nullptr, where, "w_hh is null");
  require((w.b_ih == nullptr) == (w.b_hh == nullptr), where, "b_ih and b_hh must be both given or both null");
}

// A row of `width` values of a [rows, width] block whose rows are `stride` apart; nullptr stays nullptr (zeros).
template <typename Scalar>
const Scalar* row_of(const Scalar* p, Index row, Index stride) {
  return p == nullptr ? nullptr : p + row * stride;
}

// r and z of one row, activated in the aligned scratch (see GateScratch): act = sigmoid(gx + hp) over 2H.
template <typename Scalar>
void activate_rz(Index H, const Scalar* gx, const Scalar* hp, detail::GateScratch<Scalar>& scratch) {
  auto rz = scratch.gates.head(2 * H);
  rz = ConstArrayMap<Scalar>(gx, 2 * H) + ConstArrayMap<Scalar>(hp, 2 * H);
  detail::sigmoid_inplace(rz);
}

// n and h_t of one row once r, z are in scratch.gates: n = tanh(gx_n + a) with a = r * hp_n (reset after) or
// hp_n (reset before); h = (1 - z) * n + z * h_prev (h_prev nullptr: zeros). Writes r, z, n back to `gates`.
template <typename Scalar>
void finish_row(Index H, bool reset_after, Scalar* gates, const Scalar* hp_n, const Scalar* h_prev, Scalar* h_t,
                detail::GateScratch<Scalar>& scratch) {
  auto& act = scratch.gates;
  auto n = act.tail(H);
  if (reset_after) {
    n = ConstArrayMap<Scalar>(gates + 2 * H, H) + act.head(H) * ConstArrayMap<Scalar>(hp_n, H);
  } else {
    n = ConstArrayMap<Scalar>(gates + 2 * H, H) + ConstArrayMap<Scalar>(hp_n, H);
  }
  n = n.tanh();
  const auto z = act.segment(H, H);
  if (h_prev != nullptr) {
    ArrayMap<Scalar>(h_t, H) = (Scalar(1) - z) * n + z * ConstArrayMap<Scalar>(h_prev, H);
  } else {
    ArrayMap<Scalar>(h_t, H) = (Scalar(1) - z) * n;
  }
  ArrayMap<Scalar>(gates, 3 * H) = act;
}

}  // namespace lstm_ext::detail
