// SPDX-License-Identifier: MIT
// Internal to the LSTM kernels: shared precondition checks.
#pragma once

#include "lstm_ext/lstm.h"

#include <string>

namespace lstm_ext::detail {

inline std::string dims_string(const LstmDims& d) {
  return "(T=" + std::to_string(d.steps) + ", N=" + std::to_string(d.batch) +
         ", I=" + std::to_string(d.input) + ", H=" + std::to_string(d.hidden) + ")";
}

// Every size >= 1 and every buffer size representable: T*N*4H and T*N*I must not overflow Index.
inline void check_dims(const char* where, const LstmDims& d) {
  require(d.steps >= 1 && d.batch >= 1 && d.input >= 1 && d.hidden >= 1, where,
          "all dimensions must be >= 1, got " + dims_string(d));
  checked_product(where, {d.steps, d.batch, kGatesLstm, d.hidden});
  checked_product(where, {d.steps, d.batch, d.input});
  checked_product(where, {kGatesLstm, d.hidden, d.input});
  checked_product(where, {kGatesLstm, d.hidden, d.hidden});
}

template <typename Scalar>
void check_weights(const char* where, const LstmWeights<Scalar>& w) {
  require(w.w_ih != nullptr, where, "w_ih is null");
  require(w.w_hh != nullptr, where, "w_hh is null");
}

}  // namespace lstm_ext::detail
