// SPDX-License-Identifier: MIT
#include "lstm_ext/lstm.h"

#include "lstm_internal.h"
#include "thread_setup.h"

#include <algorithm>
#include <vector>

namespace lstm_ext {
namespace {

// One step's element-wise work for all N rows, in place on the pre-activations of step t:
// activates the gates (kept for the backward when training), then c_t and h_t. Row by row, so every
// array below is a contiguous run of H values and vectorises without gathers.
//   gates [N, 4H] in/out; c_prev [N, H] or null (zeros); c_t, h_t [N, H] out. c_prev may equal c_t.
template <typename Scalar>
void gate_pass_forward(Index batch, Index hidden, Scalar* gates, const Scalar* c_prev, Scalar* c_t,
                       Scalar* h_t) {
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  for (Index n = 0; n < batch; ++n) {
    Scalar* g = gates + n * G;
    ArrayMap<Scalar> sig_if(g, 2 * H);  // i and f are adjacent: one logistic over both
    ArrayMap<Scalar> gg(g + 2 * H, H);
    ArrayMap<Scalar> go(g + 3 * H, H);
    sig_if = sig_if.logistic();
    gg = gg.tanh();
    go = go.logistic();
    ArrayMap<Scalar> gi(g, H);
    ArrayMap<Scalar> gf(g + H, H);
    ArrayMap<Scalar> c(c_t + n * H, H);
    if (c_prev != nullptr) {
      c = gf * ConstArrayMap<Scalar>(c_prev + n * H, H) + gi * gg;
    } else {
      c = gi * gg;
    }
    ArrayMap<Scalar>(h_t + n * H, H) = go * c.tanh();
  }
}

}  // namespace

template <typename Scalar>
Index lstm_cache_bytes(const LstmDims& dims) {
  detail::check_dims("lstm_cache_bytes", dims);
  const Index per_step = dims.batch * (kGatesLstm + 1) * dims.hidden;
  return checked_product("lstm_cache_bytes", {dims.steps, per_step, static_cast<Index>(sizeof(Scalar))});
}

template <typename Scalar>
void lstm_forward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                  const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                  const LstmCache<Scalar>& cache) {
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

  // Inference keeps nothing: the pre-activations and the running cell state live in per-call workspaces.
  std::vector<Scalar> gates_ws;
  std::vector<Scalar> cell_ws;
  Scalar* gates = cache.gates;
  if (!training) {
    gates_ws.resize(static_cast<size_t>(T * step_gates));
    gates = gates_ws.data();
  }
  Scalar* running_c = c_n;
  if (!training && running_c == nullptr) {
    cell_ws.resize(static_cast<size_t>(step_state));
    running_c = cell_ws.data();
  }

  const ConstMatrixMap<Scalar> w_ih(weights.w_ih, G, I);

  // The input projection does not depend on the recurrence: one GEMM over all T*N rows.
  MatrixMap<Scalar> all_gates(gates, T * N, G);
  all_gates.noalias() = ConstMatrixMap<Scalar>(x, T * N, I) * w_ih.transpose();
  if (weights.bias != nullptr) all_gates.rowwise() += ConstRowVectorMap<Scalar>(weights.bias, G);

  for (Index t = 0; t < T; ++t) {
    Scalar* gates_t = gates + t * step_gates;
    const Scalar* h_prev = t == 0 ? h0 : y + (t - 1) * step_state;
    if (h_prev != nullptr) detail::add_product_nt(N, H, G, h_prev, weights.w_hh, gates_t);
    const Scalar* c_prev;
    Scalar* c_t;
    if (training) {
      c_prev = t == 0 ? c0 : cache.cells + (t - 1) * step_state;
      c_t = cache.cells + t * step_state;
    } else {
      c_prev = t == 0 ? c0 : running_c;
      c_t = running_c;
    }
    gate_pass_forward(N, H, gates_t, c_prev, c_t, y + t * step_state);
  }

  if (h_n != nullptr) std::copy_n(y + (T - 1) * step_state, step_state, h_n);
  if (training && c_n != nullptr) std::copy_n(cache.cells + (T - 1) * step_state, step_state, c_n);
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                     \
  template Index lstm_cache_bytes<Scalar>(const LstmDims&);                                             \
  template void lstm_forward<Scalar>(const LstmDims&, const LstmWeights<Scalar>&, const Scalar*,         \
                                     const Scalar*, const Scalar*, Scalar*, Scalar*, Scalar*,            \
                                     const LstmCache<Scalar>&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
