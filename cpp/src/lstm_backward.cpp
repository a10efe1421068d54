// SPDX-License-Identifier: MIT
#include "lstm_ext/lstm.h"

#include "lstm_internal.h"
#include "thread_setup.h"

#include <algorithm>
#include <vector>

namespace lstm_ext {
namespace {

// One step's element-wise backward for all N rows: from the activated gates and cell states of step t,
// the incoming dy_t, and the running dh (from step t+1) and dc, writes the pre-activation gradients
// d_gates [N, 4H] and leaves dc_{t-1} in `dc`. Row by row over contiguous runs of H values.
//   gates [N, 4H]; c_t [N, H]; c_prev [N, H] or null (zeros); dy_t [N, H] with rows dy_stride apart;
//   dh [N, H]; dc [N, H] in/out.
// tanh runs on the aligned scratch only (see GateScratch); the rest is exact arithmetic.
template <typename Scalar>
void gate_pass_backward(Index batch, Index hidden, const Scalar* gates, const Scalar* c_t,
                        const Scalar* c_prev, const Scalar* dy_t, Index dy_stride, const Scalar* dh,
                        Scalar* dc, Scalar* d_gates, detail::GateScratch<Scalar>& scratch) {
  const Index H = hidden;
  const Index G = kGatesLstm * H;
  auto& tanh_c = scratch.a;
  auto& dh_total = scratch.b;
  for (Index n = 0; n < batch; ++n) {
    const Scalar* g = gates + n * G;
    const ConstArrayMap<Scalar> gi(g, H), gf(g + H, H), gg(g + 2 * H, H), go(g + 3 * H, H);
    Scalar* dg = d_gates + n * G;
    ArrayMap<Scalar> dgi(dg, H), dgf(dg + H, H), dgg(dg + 2 * H, H), dgo(dg + 3 * H, H);
    ArrayMap<Scalar> dc_n(dc + n * H, H);

    tanh_c = ConstArrayMap<Scalar>(c_t + n * H, H).tanh();
    dh_total = ConstArrayMap<Scalar>(dy_t + n * dy_stride, H) + ConstArrayMap<Scalar>(dh + n * H, H);
    dgo = dh_total * tanh_c * go * (Scalar(1) - go);
    // dc now holds dL/dc_t: the part carried from step t+1 plus the part through h_t.
    dc_n += dh_total * go * (Scalar(1) - tanh_c.square());
    dgi = dc_n * gg * gi * (Scalar(1) - gi);
    if (c_prev != nullptr) {
      dgf = dc_n * ConstArrayMap<Scalar>(c_prev + n * H, H) * gf * (Scalar(1) - gf);
    } else {
      dgf.setZero();
    }
    dgg = dc_n * gi * (Scalar(1) - gg.square());
    dc_n *= gf;
  }
}

}  // namespace

template <typename Scalar>
void lstm_backward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                   const Scalar* h0, const Scalar* c0, const Scalar* y, const LstmCache<Scalar>& cache,
                   const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n, Scalar* dx, Scalar* dh0,
                   Scalar* dc0, const LstmWeightGrads<Scalar>& grads, const LstmLayout& layout) {
  constexpr const char* kWhere = "lstm_backward";
  detail::check_dims(kWhere, dims);
  detail::check_weights(kWhere, weights);
  require(x != nullptr && y != nullptr && dy != nullptr, kWhere, "x, y and dy are required");
  require(cache.gates != nullptr && cache.cells != nullptr, kWhere,
          "the cache of a training forward is required (cache.gates and cache.cells)");
  require(dx != nullptr && dh0 != nullptr && dc0 != nullptr, kWhere, "dx, dh0 and dc0 are required");
  require(grads.dw_ih != nullptr && grads.dw_hh != nullptr, kWhere, "dw_ih and dw_hh are required");
  require((weights.bias != nullptr) == (grads.dbias != nullptr), kWhere,
          "dbias must be given exactly when the layer has a bias");
  detail::ensure_threads_initialised();

  const Index T = dims.steps, N = dims.batch, I = dims.input, H = dims.hidden;
  const Index G = kGatesLstm * H;
  const Index step_gates = N * G;
  const Index step_state = N * H;
  const Index ldy = detail::y_stride_of(kWhere, layout, H);
  const Index step_y = N * ldy;

  // Eigen storage, so the workspace's alignment (and with it the vectorised products' summation order)
  // is the same on every call.
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> d_gates_ws(T * step_gates);
  detail::GateScratch<Scalar> scratch(H);
  Scalar* d_gates = d_gates_ws.data();

  const ConstMatrixMap<Scalar> w_ih(weights.w_ih, G, I);

  // dh0 and dc0 double as the running dh and dc: after step 0 they hold the gradients of h0 and c0.
  if (dh_n != nullptr) std::copy_n(dh_n, step_state, dh0); else std::fill_n(dh0, step_state, Scalar(0));
  if (dc_n != nullptr) std::copy_n(dc_n, step_state, dc0); else std::fill_n(dc0, step_state, Scalar(0));

  // The forward's steps s = 0 .. T-1 in the opposite order; step s is time t (see lstm_forward).
  for (Index s = T - 1; s >= 0; --s) {
    const Index t = layout.reverse ? T - 1 - s : s;
    const Index t_prev = layout.reverse ? t + 1 : t - 1;
    const Scalar* c_prev = s == 0 ? c0 : cache.cells + t_prev * step_state;
    Scalar* d_gates_t = d_gates + t * step_gates;
    gate_pass_backward(N, H, cache.gates + t * step_gates, cache.cells + t * step_state, c_prev,
                       dy + t * step_y, ldy, dh0, dc0, d_gates_t, scratch);
    detail::set_product_nn(N, G, H, d_gates_t, weights.w_hh, dh0);
  }

  // Everything below is one GEMM over all T*N rows, not T small ones.
  const ConstMatrixMap<Scalar> all_d_gates(d_gates, T * N, G);
  MatrixMap<Scalar> dx_map(dx, T * N, I);
  if (layout.accumulate_dx) {
    dx_map.noalias() += all_d_gates * w_ih;
  } else {
    dx_map.noalias() = all_d_gates * w_ih;
  }
  MatrixMap<Scalar>(grads.dw_ih, G, I).noalias() =
      all_d_gates.transpose() * ConstMatrixMap<Scalar>(x, T * N, I);

  // dW_hh pairs the gradients of time t with the state that fed it: h_{t-1} forwards (h_{t+1} in reverse),
  // so the rows of all but the first-processed step meet y shifted by one step; that step meets h0.
  MatrixMap<Scalar> dw_hh(grads.dw_hh, G, H);
  if (T > 1) {
    const Index rows = (T - 1) * N;
    const Scalar* d_gates_rows = layout.reverse ? d_gates : d_gates + step_gates;
    const Scalar* y_rows = layout.reverse ? y + step_y : y;
    dw_hh.noalias() = ConstMatrixMap<Scalar>(d_gates_rows, rows, G).transpose() *
                      ConstStridedMatrixMap<Scalar>(y_rows, rows, H, Eigen::OuterStride<>(ldy));
  } else {
    dw_hh.setZero();
  }
  if (h0 != nullptr) {
    const Index t_first = layout.reverse ? T - 1 : 0;
    dw_hh.noalias() += ConstMatrixMap<Scalar>(d_gates + t_first * step_gates, N, G).transpose() *
                       ConstMatrixMap<Scalar>(h0, N, H);
  }
  if (grads.dbias != nullptr) {
    // Summed into aligned storage first: on caller memory the scalar/vector split, which rounds differently,
    // would follow the buffer's address.
    const Eigen::Matrix<Scalar, 1, Eigen::Dynamic> dbias = all_d_gates.colwise().sum();
    RowVectorMap<Scalar>(grads.dbias, G) = dbias;
  }
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                       \
  template void lstm_backward<Scalar>(const LstmDims&, const LstmWeights<Scalar>&, const Scalar*,          \
                                      const Scalar*, const Scalar*, const Scalar*, const LstmCache<Scalar>&, \
                                      const Scalar*, const Scalar*, const Scalar*, Scalar*, Scalar*,        \
                                      Scalar*, const LstmWeightGrads<Scalar>&, const LstmLayout&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
