// SPDX-License-Identifier: MIT
// Internal to the LSTM kernels: precondition checks and the gate passes' scratch.
#pragma once

#include "lstm_ext/lstm.h"
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
          "all dimensions must be >= 1, got " + dims_string(d));
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

}  // namespace lstm_ext::detail
