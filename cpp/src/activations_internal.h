// SPDX-License-Identifier: MIT
// Internal to the kernels: the gate activations, shared by the LSTM and GRU passes.
#pragma once

#include <Eigen/Core>

#include <limits>

namespace lstm_ext::detail {

// sigmoid in place. Eigen's float logistic clamps its argument before exp, so sigmoid(-inf) would be about
// 1e-38 instead of 0: its derivative s(1-s) is then not 0, and a gradient that should be 0 * inf = NaN (as
// in torch and IEEE arithmetic) comes out as inf. Saturating -inf exactly keeps NaN/Inf propagation as torch's.
template <typename ArrayRef>
void sigmoid_inplace(ArrayRef&& a) {
  using Scalar = typename Eigen::internal::remove_all<ArrayRef>::type::Scalar;
  a = (a == -std::numeric_limits<Scalar>::infinity()).select(Scalar(0), a.logistic());
}

}  // namespace lstm_ext::detail
