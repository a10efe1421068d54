// SPDX-License-Identifier: MIT
// Internal to the GRU kernels: precondition checks.
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

}  // namespace lstm_ext::detail
