// SPDX-License-Identifier: MIT
#include "lstm_ext/lstm.h"

#include "gemm_internal.h"
#include "lstm_internal.h"
#include "packed_gemm_internal.h"
#include "panel_gemm_internal.h"
#include "parallel_internal.h"
#include "thread_setup.h"

#include <algorithm>
#include <vector>

namespace lstm_ext {

using detail::gate_pass_backward;

template <typename Scalar>
void lstm_backward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                   const Scalar* h0, const Scalar* c0, const Scalar* y, const LstmCache<Scalar>& cache,
                   const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n, Scalar* dx, Scalar* dh0,
                   Scalar* dc0, const LstmWeightGrads<Scalar>& grads, const LstmLayout& layout,
                   const DropoutMasks<Scalar>& masks) {
  constexpr const char* kWhere = "lstm_backward";
  detail::check_dims(kWhere, dims, kGatesLstm);
  detail::check_weights(kWhere, weights, dims);
  require(x != nullptr && y != nullptr && dy != nullptr, kWhere, "x, y and dy are required");
  require(cache.gates != nullptr && cache.cells != nullptr, kWhere,
          "the cache of a training forward is required (cache.gates and cache.cells)");
  require(dx != nullptr && dh0 != nullptr && dc0 != nullptr, kWhere, "dx, dh0 and dc0 are required");
  require(grads.dw_ih != nullptr && grads.dw_hh != nullptr, kWhere, "dw_ih and dw_hh are required");
  require((weights.bias != nullptr) == (grads.dbias != nullptr), kWhere,
          "dbias must be given exactly when the layer has a bias");
  require((grads.dw_hr != nullptr) == (dims.proj > 0), kWhere, "dw_hr must be given exactly when dims.proj > 0");
  detail::ensure_threads_initialised();

  const Index N = dims.batch, I = dims.input, H = dims.hidden, P = dims.proj;
  const Index O = P > 0 ? P : H;
  const Index G = kGatesLstm * H;
  detail::Workspace<Scalar> zero_h0, zero_c0;
  h0 = detail::zeros_if_null(h0, N * O, zero_h0);
  c0 = detail::zeros_if_null(c0, N * H, zero_c0);
  const Index ldy = detail::y_stride_of(kWhere, layout, O);
  const detail::Schedule sched(kWhere, dims.steps, N, dims.batch_sizes, layout.reverse);
  const Index R = sched.rows();

  // Per call, never in the loop: the gate gradients and the (masked) previous states of every row, for the
  // weight GEMMs after the loop; with a projection also dL/dh and h_full of every row.
  detail::Workspace<Scalar> d_gates_ws(R * G), prev_all(R * O), dh_all(P > 0 ? R * P : 0), full_all(P > 0 ? R * H : 0);
  Scalar* d_gates = d_gates_ws.data();

  // dh0 and dc0 double as the running dh and dc, one row per sequence: a row is touched only while its
  // sequence is active, and after its first step (in time order) holds the gradients of h0 and c0.
  if (dh_n != nullptr) std::copy_n(dh_n, N * O, dh0); else std::fill_n(dh0, N * O, Scalar(0));
  if (dc_n != nullptr) std::copy_n(dc_n, N * H, dc0); else std::fill_n(dc0, N * H, Scalar(0));

  // dL/dh_{t-1} = d_gates w_hh: the weights packed once for all steps and threads; one sequence over a few
  // steps uses them as they are (matrix-vector products, as the forward: sequence_internal.h).
  const bool unpacked = detail::unpacked_recurrence(dims.steps, N);
  const detail::RecurrentWeights<Scalar> w_hh(weights.w_hh, unpacked ? 0 : O, G, O, true);
  const detail::RecurrentWeights<Scalar> w_hr(weights.w_hr, P > 0 && !unpacked ? H : 0, P, H, true);  // dL/dh w_hr
  auto times_w_hh = [&](Index n, const Scalar* d_gates_t, Scalar* out, Scalar* scratch) {
    if (unpacked) detail::row_times_w(G, O, weights.w_hh, d_gates_t, out);  // n == 1
    else w_hh.multiply(n, d_gates_t, G, out, O, scratch);
  };

  // The recurrence of sequences [first, first + count), the forward's steps in the opposite order.
  auto recur = [&](Index first, Index count) {
    const detail::Schedule slice = sched.slice(kWhere, first, count);
    const Scalar* h0_s = detail::offset(h0, first * O);
    const Scalar* c0_s = detail::offset(c0, first * H);
    const Scalar* mask_s = detail::offset(masks.recurrent, first * O);
    Scalar* dh = dh0 + first * O;
    Scalar* dc = dc0 + first * H;
    detail::Workspace<Scalar> d_full(P > 0 ? count * H : 0), d_prev(mask_s != nullptr ? count * O : 0);
    detail::Workspace<Scalar> pack_ws(std::max(w_hh.scratch_size(), w_hr.scratch_size()));
    detail::GateScratch<Scalar> scratch(G, H);

    for (Index s = slice.steps() - 1; s >= 0; --s) {
      const detail::Step st = slice.step(s);
      const Index n = st.rows, m = st.carried;
      if (n == 0) continue;
      const Scalar* gates_t = cache.gates + st.offset * G;
      const Scalar* cells_t = cache.cells + st.offset * H;
      Scalar* d_gates_t = d_gates + st.offset * G;
      const Scalar* dy_t = dy + st.offset * ldy;

      // dL/dh_t = dy_t + the part from step t+1. With a projection, dL/dh_full = dL/dh_t w_hr.
      const Scalar *dh_a = dy_t, *dh_b = dh;
      Index lda = ldy;
      Scalar* full_t = nullptr;
      if (P > 0) {
        Scalar* dh_t = dh_all.data() + st.offset * P;
        for (Index r = 0; r < n; ++r)
          ArrayMap<Scalar>(dh_t + r * P, P) = ConstArrayMap<Scalar>(dy_t + r * ldy, P) + ConstArrayMap<Scalar>(dh + r * P, P);
        if (unpacked) detail::row_times_w(P, H, weights.w_hr, dh_t, d_full.data());
        else w_hr.multiply(n, dh_t, P, d_full.data(), H, pack_ws.data());
        dh_a = d_full.data();
        lda = H;
        dh_b = nullptr;
        full_t = full_all.data() + st.offset * H;
      }
      gate_pass_backward(m, H, gates_t, cells_t, cache.cells + st.prev_offset * H, dh_a, lda, dh_b, dc, d_gates_t,
                         full_t, scratch);
      gate_pass_backward(n - m, H, gates_t + m * G, cells_t + m * H, detail::offset(c0_s, m * H), dh_a + m * lda,
                         lda, detail::offset(dh_b, m * O), dc + m * H, d_gates_t + m * G,
                         detail::offset(full_t, m * H), scratch);

      // dL/dh_{t-1} through the recurrent product (times the recurrent mask), and the states that product read.
      if (mask_s == nullptr) {
        times_w_hh(n, d_gates_t, dh, pack_ws.data());
      } else {
        times_w_hh(n, d_gates_t, d_prev.data(), pack_ws.data());
        for (Index r = 0; r < n; ++r)
          ArrayMap<Scalar>(dh + r * O, O) =
              ConstArrayMap<Scalar>(d_prev.data() + r * O, O) * ConstArrayMap<Scalar>(mask_s + r * O, O);
      }
      detail::gather_previous(st, O, y, ldy, h0_s, mask_s, prev_all.data() + st.offset * O);
    }
  };
  detail::for_each_batch_slice(N, dims.steps, dims.batch_sizes, recur);

  // Everything below is one GEMM over all rows, not one per step.
  detail::input_side_backward(sched, I, G, x, weights.w_ih, masks.input, d_gates, layout.accumulate_dx, dx,
                              grads.dw_ih, grads.dbias);
  detail::gemm(true, false, G, O, R, d_gates, G, prev_all.data(), O, false, grads.dw_hh, O);
  if (P > 0) detail::gemm(true, false, P, H, R, dh_all.data(), P, full_all.data(), H, false, grads.dw_hr, H);
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                       \
  template void lstm_backward<Scalar>(const LstmDims&, const LstmWeights<Scalar>&, const Scalar*,          \
                                      const Scalar*, const Scalar*, const Scalar*, const LstmCache<Scalar>&, \
                                      const Scalar*, const Scalar*, const Scalar*, Scalar*, Scalar*,        \
                                      Scalar*, const LstmWeightGrads<Scalar>&, const LstmLayout&,           \
                                      const DropoutMasks<Scalar>&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
