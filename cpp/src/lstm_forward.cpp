// SPDX-License-Identifier: MIT
#include "lstm_ext/lstm.h"

#include "lstm_internal.h"
#include "thread_setup.h"

#include <algorithm>
#include <vector>

namespace lstm_ext {
namespace {

// One step's element-wise work for all N rows: activates the pre-activations of step t in place (kept for
// the backward when training), then c_t and h_t. Row by row, so every array is a contiguous run of values
// and vectorises without gathers; each row goes through the aligned scratch (see GateScratch).
//   gates [N, 4H] in/out; c_prev [N, H] or null (zeros); c_t [N, H] out, may equal c_prev;
//   h_t [N, H] out, rows h_stride apart.
template <typename Scalar>
void gate_pass_forward(Index batch, Index hidden, Scalar* gates, const Scalar* c_prev, Scalar* c_t,
                       Scalar* h_t, Index h_stride, detail::GateScratch<Scalar>& scratch) {
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  auto& act = scratch.gates;
  auto& c_new = scratch.a;
  auto& tanh_c = scratch.b;
  for (Index n = 0; n < batch; ++n) {
    ArrayMap<Scalar> row(gates + n * G, G);
    act = row;
    act.head(2 * H) = act.head(2 * H).logistic();  // i and f are adjacent: one logistic over both
    act.segment(2 * H, H) = act.segment(2 * H, H).tanh();
    act.tail(H) = act.tail(H).logistic();
    if (c_prev != nullptr) {
      c_new = act.segment(H, H) * ConstArrayMap<Scalar>(c_prev + n * H, H) + act.head(H) * act.segment(2 * H, H);
    } else {
      c_new = act.head(H) * act.segment(2 * H, H);
    }
    tanh_c = c_new.tanh();
    row = act;
    ArrayMap<Scalar>(c_t + n * H, H) = c_new;
    ArrayMap<Scalar>(h_t + n * h_stride, H) = act.tail(H) * tanh_c;
  }
}

}  // namespace

template <typename Scalar>
Index lstm_cache_bytes(const LstmDims& dims) {
  detail::check_dims("lstm_cache_bytes", dims);
  return checked_product("lstm_cache_bytes", {dims.steps, dims.batch, kGatesLstm + 1, dims.hidden,
                                              static_cast<Index>(sizeof(Scalar))});
}

template <typename Scalar>
void lstm_forward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                  const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                  const LstmCache<Scalar>& cache, const LstmLayout& layout) {
  constexpr const char* kWhere = "lstm_forward";
  detail::check_dims(kWhere, dims);
  detail::check_weights(kWhere, weights);
  require(x != nullptr, kWhere, "x is null");
  require(y != nullptr, kWhere, "y is null");
  require((cache.gates == nullptr) == (cache.cells == nullptr), kWhere,
          "cache.gates and cache.cells must be both set (training) or both null (inference)");
  detail::ensure_threads_initialised();

  const Index T = dims.steps, N = dims.batch, I = dims.input, H = dims.hidden;
  const Index G = kGatesLstm * H;
  const Index step_gates = N * G;
  const Index step_state = N * H;
  const bool training = cache.gates != nullptr;
  const Index ldy = detail::y_stride_of(kWhere, layout, H);
  const Index step_y = N * ldy;

  // Inference keeps nothing: the pre-activations and the running cell state live in per-call workspaces.
  // Eigen storage: aligned alike on every call, so results do not move with the allocator's addresses.
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> gates_ws;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> cell_ws;
  Scalar* gates = cache.gates;
  if (!training) {
    gates_ws.resize(T * step_gates);
    gates = gates_ws.data();
  }
  Scalar* running_c = c_n;
  if (!training && running_c == nullptr) {
    cell_ws.resize(step_state);
    running_c = cell_ws.data();
  }

  const ConstMatrixMap<Scalar> w_ih(weights.w_ih, G, I);
  detail::GateScratch<Scalar> scratch(H);

  // The input projection does not depend on the recurrence: one GEMM over all T*N rows.
  MatrixMap<Scalar> all_gates(gates, T * N, G);
  all_gates.noalias() = ConstMatrixMap<Scalar>(x, T * N, I) * w_ih.transpose();
  if (weights.bias != nullptr) all_gates.rowwise() += ConstRowVectorMap<Scalar>(weights.bias, G);

  for (Index s = 0; s < T; ++s) {
    // Step s of the recurrence is time t; a reverse layer walks time backwards.
    const Index t = layout.reverse ? T - 1 - s : s;
    const Index t_prev = layout.reverse ? t + 1 : t - 1;
    Scalar* gates_t = gates + t * step_gates;
    if (s == 0) {
      if (h0 != nullptr) detail::add_product_nt(N, H, G, h0, H, weights.w_hh, gates_t);
    } else {
      detail::add_product_nt(N, H, G, y + t_prev * step_y, ldy, weights.w_hh, gates_t);
    }
    const Scalar* c_prev;
    Scalar* c_t;
    if (training) {
      c_prev = s == 0 ? c0 : cache.cells + t_prev * step_state;
      c_t = cache.cells + t * step_state;
    } else {
      c_prev = s == 0 ? c0 : running_c;
      c_t = running_c;
    }
    gate_pass_forward(N, H, gates_t, c_prev, c_t, y + t * step_y, ldy, scratch);
  }

  const Index t_last = layout.reverse ? 0 : T - 1;
  if (h_n != nullptr) detail::copy_rows(N, H, y + t_last * step_y, ldy, h_n);
  if (training && c_n != nullptr) std::copy_n(cache.cells + t_last * step_state, step_state, c_n);
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                     \
  template Index lstm_cache_bytes<Scalar>(const LstmDims&);                                             \
  template void lstm_forward<Scalar>(const LstmDims&, const LstmWeights<Scalar>&, const Scalar*,         \
                                     const Scalar*, const Scalar*, Scalar*, Scalar*, Scalar*,            \
                                     const LstmCache<Scalar>&, const LstmLayout&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
