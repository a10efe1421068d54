// SPDX-License-Identifier: MIT
#include "lstm_ext/gru.h"

#include "gru_internal.h"
#include "packed_gemm_internal.h"
#include "panel_gemm_internal.h"
#include "parallel_internal.h"
#include "thread_setup.h"

#include <algorithm>

namespace lstm_ext {

template <typename Scalar>
void gru_backward(const GruDims& dims, const GruWeights<Scalar>& weights, const Scalar* x, const Scalar* h0,
                  const Scalar* y, const GruCache<Scalar>& cache, const Scalar* dy, const Scalar* dh_n, Scalar* dx,
                  Scalar* dh0, const GruWeightGrads<Scalar>& grads, const SequenceLayout& layout,
                  const DropoutMasks<Scalar>& masks) {
  constexpr const char* kWhere = "gru_backward";
  detail::check_gru(kWhere, dims, weights);
  require(x != nullptr && y != nullptr && dy != nullptr, kWhere, "x, y and dy are required");
  require(cache.gates != nullptr && (cache.hidden_n != nullptr) == weights.reset_after, kWhere,
          "the cache of a training forward is required (gates; hidden_n exactly when reset_after)");
  require(dx != nullptr && dh0 != nullptr, kWhere, "dx and dh0 are required");
  require(grads.dw_ih != nullptr && grads.dw_hh != nullptr, kWhere, "dw_ih and dw_hh are required");
  require((grads.db_ih != nullptr) == (weights.b_ih != nullptr) && (grads.db_hh != nullptr) == (weights.b_hh != nullptr),
          kWhere, "db_ih and db_hh must be given exactly when the layer has biases");
  detail::ensure_threads_initialised();

  const Index N = dims.batch, I = dims.input, H = dims.hidden;
  detail::Workspace<Scalar> zero_h0;
  h0 = detail::zeros_if_null(h0, N * H, zero_h0);
  const Index G = kGatesGru * H;
  const bool after = weights.reset_after;
  const Index ldy = detail::y_stride_of(kWhere, layout, H);
  const detail::Schedule sched(kWhere, dims.steps, N, dims.batch_sizes, layout.reverse);
  const Index R = sched.rows();
  const Scalar* mask = masks.recurrent;

  // Per call: the gradients of the input-side and recurrent-side pre-activations of every row, and the states
  // the recurrent products read (reset before: also r * hm), for the weight GEMMs after the loop.
  detail::Workspace<Scalar> d_gates_ws(R * G), d_hp_ws(R * G), prev_all(R * H), rh_all(after ? 0 : R * H);

  // dh0 doubles as the running dh, one row per sequence (see lstm_backward).
  if (dh_n != nullptr) std::copy_n(dh_n, N * H, dh0); else std::fill_n(dh0, N * H, Scalar(0));

  // dL/dhm = d_hp w_hh (reset after); reset before: d(r * hm) = d_hp_n w_hn and d_hp_rz w_hrz. The weights
  // packed once for all steps and threads; one sequence over a few steps uses them as they are (matrix-vector
  // products, as the forward: sequence_internal.h).
  const bool unpacked = detail::unpacked_recurrence(dims.steps, N);
  const Index hh_rows = after ? G : 2 * H;
  const detail::RecurrentWeights<Scalar> w_hh(weights.w_hh, unpacked ? 0 : H, hh_rows, H, true);
  const detail::RecurrentWeights<Scalar> w_hn(weights.w_hh + 2 * H * H, after || unpacked ? 0 : H, H, H, true);
  // out = d w over the first `rows` rows of w_hh starting at row `row0`: one row when unpacked (n == 1).
  auto times = [&](const detail::RecurrentWeights<Scalar>& packed, Index row0, Index rows, Index n,
                   const Scalar* d, Scalar* out, Scalar* scratch) {
    if (unpacked) detail::row_times_w(rows, H, weights.w_hh + row0 * H, d, out);
    else packed.multiply(n, d, G, out, H, scratch);
  };

  // The recurrence of sequences [first, first + count), the forward's steps in the opposite order.
  auto recur = [&](Index first, Index count) {
    const detail::Schedule slice = sched.slice(kWhere, first, count);
    const Scalar* h0_s = detail::offset(h0, first * H);
    const Scalar* mask_s = detail::offset(mask, first * H);
    Scalar* dh_run = dh0 + first * H;
    detail::Workspace<Scalar> prev_u(count * H), direct(count * H), d_prev(count * H), d_rh(after ? 0 : count * H);
    detail::Workspace<Scalar> pack_ws(std::max(w_hh.scratch_size(), w_hn.scratch_size()));
    detail::GateScratch<Scalar> scratch(G, H);
    auto& dh_t = scratch.a;

    for (Index s = slice.steps() - 1; s >= 0; --s) {
      const detail::Step st = slice.step(s);
      const Index n = st.rows;
      if (n == 0) continue;
      const Scalar* gates_t = cache.gates + st.offset * G;
      Scalar* d_gates_t = d_gates_ws.data() + st.offset * G;
      Scalar* d_hp_t = d_hp_ws.data() + st.offset * G;
      Scalar* hm_t = prev_all.data() + st.offset * H;  // masked previous states, dense
      Index ldu = 0;
      const Scalar* hu =
          detail::previous_states(st, H, y, ldy, h0_s, static_cast<const Scalar*>(nullptr), prev_u.data(), ldu);
      detail::gather_previous(st, H, y, ldy, h0_s, mask_s, hm_t);

      // Pass 1, per row: everything but r's gradient when the reset comes before the product.
      for (Index r = 0; r < n; ++r) {
        const Scalar* g = gates_t + r * G;
        const ConstArrayMap<Scalar> gr(g, H), gz(g + H, H), gn(g + 2 * H, H);
        Scalar* dg = d_gates_t + r * G;
        ArrayMap<Scalar> dgr(dg, H), dgz(dg + H, H), dgn(dg + 2 * H, H);
        Scalar* dp = d_hp_t + r * G;
        dh_t = ConstArrayMap<Scalar>(dy + (st.offset + r) * ldy, H) + ConstArrayMap<Scalar>(dh_run + r * H, H);
        dgn = dh_t * (Scalar(1) - gz) * (Scalar(1) - gn.square());
        if (hu != nullptr) {
          dgz = dh_t * (ConstArrayMap<Scalar>(hu + r * ldu, H) - gn) * gz * (Scalar(1) - gz);
        } else {
          dgz = -dh_t * gn * gz * (Scalar(1) - gz);
        }
        ArrayMap<Scalar>(direct.data() + r * H, H) = dh_t * gz;
        ArrayMap<Scalar>(dp + H, H) = dgz;
        if (after) {
          const ConstArrayMap<Scalar> hp_n(cache.hidden_n + (st.offset + r) * H, H);
          dgr = dgn * hp_n * gr * (Scalar(1) - gr);
          ArrayMap<Scalar>(dp, H) = dgr;
          ArrayMap<Scalar>(dp + 2 * H, H) = dgn * gr;
        } else {
          ArrayMap<Scalar>(dp + 2 * H, H) = dgn;
        }
      }

      if (after) {
        times(w_hh, 0, hh_rows, n, d_hp_t, d_prev.data(), pack_ws.data());
      } else {
        // d(r * hm) = dn_pre w_hn; then r's gradient, and the r * hm the forward's product read.
        times(w_hn, 2 * H, H, n, d_hp_t + 2 * H, d_rh.data(), pack_ws.data());
        for (Index r = 0; r < n; ++r) {
          const ConstArrayMap<Scalar> gr(gates_t + r * G, H), hm(hm_t + r * H, H), drh(d_rh.data() + r * H, H);
          ArrayMap<Scalar> dgr(d_gates_t + r * G, H);
          dgr = drh * hm * gr * (Scalar(1) - gr);
          ArrayMap<Scalar>(d_hp_t + r * G, H) = dgr;
          ArrayMap<Scalar>(rh_all.data() + (st.offset + r) * H, H) = gr * hm;
        }
        times(w_hh, 0, hh_rows, n, d_hp_t, d_prev.data(), pack_ws.data());
        for (Index r = 0; r < n; ++r)
          ArrayMap<Scalar>(d_prev.data() + r * H, H) +=
              ConstArrayMap<Scalar>(d_rh.data() + r * H, H) * ConstArrayMap<Scalar>(gates_t + r * G, H);
      }
      // dL/dh_{t-1}: through the recurrent product (times the mask) and directly through z * h_{t-1}.
      for (Index r = 0; r < n; ++r) {
        ArrayMap<Scalar> dh(dh_run + r * H, H);
        if (mask_s != nullptr) {
          dh = ConstArrayMap<Scalar>(d_prev.data() + r * H, H) * ConstArrayMap<Scalar>(mask_s + r * H, H) +
               ConstArrayMap<Scalar>(direct.data() + r * H, H);
        } else {
          dh = ConstArrayMap<Scalar>(d_prev.data() + r * H, H) + ConstArrayMap<Scalar>(direct.data() + r * H, H);
        }
      }
    }
  };
  detail::for_each_batch_slice(N, dims.steps, dims.batch_sizes, recur);

  // One GEMM each over all rows.
  detail::input_side_backward(sched, I, G, x, weights.w_ih, masks.input, d_gates_ws.data(), layout.accumulate_dx,
                              dx, grads.dw_ih, grads.db_ih);
  const Scalar* d_hp_all = d_hp_ws.data();
  if (after) {
    detail::gemm(true, false, G, H, R, d_hp_all, G, prev_all.data(), H, false, grads.dw_hh, H);
  } else {  // the candidate's rows see r * h, the other gates' see h
    detail::gemm(true, false, 2 * H, H, R, d_hp_all, G, prev_all.data(), H, false, grads.dw_hh, H);
    detail::gemm(true, false, H, H, R, d_hp_all + 2 * H, G, rh_all.data(), H, false, grads.dw_hh + 2 * H * H, H);
  }
  const ConstMatrixMap<Scalar> d_hp(d_hp_all, R, G);
  if (grads.db_hh != nullptr) {
    const Eigen::Matrix<Scalar, 1, Eigen::Dynamic> sums = d_hp.colwise().sum();  // aligned, see lstm_backward
    RowVectorMap<Scalar>(grads.db_hh, G) = sums;
  }
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                        \
  template void gru_backward<Scalar>(const GruDims&, const GruWeights<Scalar>&, const Scalar*, const Scalar*, \
                                     const Scalar*, const GruCache<Scalar>&, const Scalar*, const Scalar*,    \
                                     Scalar*, Scalar*, const GruWeightGrads<Scalar>&, const SequenceLayout&,  \
                                     const DropoutMasks<Scalar>&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
