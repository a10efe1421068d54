// SPDX-License-Identifier: MIT
#include "lstm_ext/gru.h"

#include "activations_internal.h"
#include "fused_step_internal.h"
#include "gru_internal.h"
#include "packed_gemm_internal.h"
#include "panel_gemm_internal.h"
#include "parallel_internal.h"
#include "thread_setup.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <type_traits>

namespace lstm_ext {

using detail::activate_rz;
using detail::finish_row;

template <typename Scalar>
void gru_forward(const GruDims& dims, const GruWeights<Scalar>& weights, const Scalar* x, const Scalar* h0,
                 Scalar* y, Scalar* h_n, const GruCache<Scalar>& cache, const SequenceLayout& layout,
                 const DropoutMasks<Scalar>& masks) {
  constexpr const char* kWhere = "gru_forward";
  detail::check_gru(kWhere, dims, weights);
  require(x != nullptr && y != nullptr, kWhere, "x and y are required");
  const bool training = cache.gates != nullptr;
  require(!training || (cache.hidden_n != nullptr) == weights.reset_after, kWhere,
          "a training forward keeps cache.hidden_n exactly when reset_after");
  require(training || cache.hidden_n == nullptr, kWhere, "cache.hidden_n without cache.gates");
  detail::ensure_threads_initialised();

  const Index N = dims.batch, I = dims.input, H = dims.hidden;
  detail::Workspace<Scalar> zero_h0;
  h0 = detail::zeros_if_null(h0, N * H, zero_h0);
  const Index G = kGatesGru * H;
  const bool after = weights.reset_after;
  const Index ldy = detail::y_stride_of(kWhere, layout, H);
  const detail::Schedule sched(kWhere, dims.steps, N, dims.batch_sizes, layout.reverse);
  const Index R = sched.rows();

  detail::Workspace<Scalar> gates_ws(training ? 0 : R * G);
  Scalar* gates = training ? cache.gates : gates_ws.data();

  // The recurrent weights packed once for all steps and threads (RecurrentWeights, panel_gemm_internal.h):
  // all three blocks (reset after), or r, z and, apart, n (reset before: n's product reads r * hm).
  const Index hp_cols = after ? G : 2 * H;
  // A float batch of a few rows with the reset gate after the product runs each step fused instead
  // (fused_step_internal.h), on weights packed for it and shared by the threads.
  constexpr bool kFloat = std::is_same_v<Scalar, float>;
  // One sequence over a few steps: matrix-vector products on w_hh as it is (sequence_internal.h).
  const bool unpacked = detail::unpacked_recurrence(dims.steps, N);
  const bool fuse = !unpacked && kFloat && after && N <= detail::kMaxFusedRows;
  const detail::RecurrentWeights<Scalar> w_hh(weights.w_hh, fuse || unpacked ? 0 : hp_cols, H, H, false);
  // A time loop on one thread (a small batch) has the second thread project chunks of kAheadRows rows ahead of
  // it (run_ahead, as the LSTM forward); see below.
  constexpr Index kAheadRows = 16;
  const bool ahead = !unpacked && detail::projection_ahead(detail::batch_slice_parts(N));
  std::unique_ptr<const detail::FusedGruStep> fused;
  auto pack_fused = [&] {  // with the projection ahead, by the time loop's thread as it starts (run_ahead)
    if constexpr (kFloat) {
      if (fuse) fused = std::make_unique<const detail::FusedGruStep>(weights.w_hh, H);
    }
  };
  if (!ahead) pack_fused();
  const detail::RecurrentWeights<Scalar> w_hn(weights.w_hh + 2 * H * H, after || unpacked ? 0 : H, H, H, false);

  // The recurrence of sequences [first, first + count) over steps [s0, s1): per-sequence buffers are offset to
  // the slice; its workspaces are the caller's (one set for the whole call with the projection ahead).
  Index s0 = 0, s1 = dims.steps;
  struct SliceBuffers {
    SliceBuffers(Index hp, Index state, Index rh, Index pack, Index G, Index H)
        : hp(hp), prev_u(state), prev_m(state), rh(rh), pack(pack), scratch(G, H) {}
    detail::Workspace<Scalar> hp, prev_u, prev_m, rh, pack;
    detail::GateScratch<Scalar> scratch;
  };
  auto buffers_for = [&](Index count) {
    return std::make_unique<SliceBuffers>(fuse ? 0 : count * G, count * H, after ? 0 : count * H,
                                          std::max(w_hh.scratch_size(), w_hn.scratch_size()), G, H);
  };
  auto recur = [&](Index first, Index count, SliceBuffers& buffers) {
    const detail::Schedule slice = sched.slice(kWhere, first, count);
    const Scalar* h0_s = detail::offset(h0, first * H);
    const Scalar* mask_s = detail::offset(masks.recurrent, first * H);
    Scalar* h_n_s = detail::offset(h_n, first * H);
    detail::Workspace<Scalar>&hp = buffers.hp, &prev_u = buffers.prev_u, &prev_m = buffers.prev_m, &rh = buffers.rh;
    detail::Workspace<Scalar>& pack_ws = buffers.pack;
    detail::GateScratch<Scalar>& scratch = buffers.scratch;

    for (Index s = s0; s < s1; ++s) {
      const detail::Step st = slice.step(s);
      const Index n = st.rows;
      if (n == 0) continue;
      Scalar* gates_t = gates + st.offset * G;
      Index ldu = 0, ldm = 0;
      const Scalar* hu =
          detail::previous_states(st, H, y, ldy, h0_s, static_cast<const Scalar*>(nullptr), prev_u.data(), ldu);
      const Scalar* hm = hu;
      ldm = ldu;
      if (mask_s != nullptr) hm = detail::previous_states(st, H, y, ldy, h0_s, mask_s, prev_m.data(), ldm);
      if (fused) {
        if constexpr (kFloat) {
          fused->run(n, hm, ldm, hu, ldu, weights.b_hh, gates_t, training ? cache.hidden_n + st.offset * H : nullptr,
                     y + st.offset * ldy, ldy);
        }
        const Index f = st.finished_from;
        if (h_n_s != nullptr) detail::copy_rows(n - f, H, y + (st.offset + f) * ldy, ldy, h_n_s + f * H);
        continue;
      }

      // hp = hm w_hh^T + b_hh: all three blocks (reset after), or r and z only (reset before; n comes below).
      for (Index r = 0; r < n; ++r) {
        RowVectorMap<Scalar> row(hp.data() + r * G, hp_cols);
        if (weights.b_hh != nullptr) row = ConstRowVectorMap<Scalar>(weights.b_hh, hp_cols); else row.setZero();
      }
      if (hm != nullptr) {
        if (unpacked) detail::row_times_wt(hp_cols, H, weights.w_hh, hm, true, hp.data());  // n == 1
        else w_hh.multiply_add(n, hm, ldm, hp.data(), G, pack_ws.data());
      }

      if (!after) {
        // n's recurrent part needs r first: (r * hm) w_hn^T + b_hn.
        for (Index r = 0; r < n; ++r) {
          activate_rz(H, gates_t + r * G, hp.data() + r * G, scratch);
          ArrayMap<Scalar>(gates_t + r * G, 2 * H) = scratch.gates.head(2 * H);
          ArrayMap<Scalar> rh_row(rh.data() + r * H, H);
          if (hm != nullptr) rh_row = scratch.gates.head(H) * ConstArrayMap<Scalar>(hm + r * ldm, H); else rh_row.setZero();
          RowVectorMap<Scalar> hp_n(hp.data() + r * G + 2 * H, H);
          if (weights.b_hh != nullptr) hp_n = ConstRowVectorMap<Scalar>(weights.b_hh + 2 * H, H); else hp_n.setZero();
        }
        if (unpacked) detail::row_times_wt(H, H, weights.w_hh + 2 * H * H, rh.data(), true, hp.data() + 2 * H);
        else w_hn.multiply_add(n, rh.data(), H, hp.data() + 2 * H, G, pack_ws.data());
      }
      for (Index r = 0; r < n; ++r) {
        Scalar* g = gates_t + r * G;
        if (after) {
          activate_rz(H, g, hp.data() + r * G, scratch);
        } else {
          scratch.gates.head(2 * H) = ConstArrayMap<Scalar>(g, 2 * H);
        }
        finish_row(H, after, g, hp.data() + r * G + 2 * H, detail::row_of(hu, r, ldu), y + (st.offset + r) * ldy,
                   scratch);
        if (training && after) std::copy_n(hp.data() + r * G + 2 * H, H, cache.hidden_n + (st.offset + r) * H);
      }

      const Index f = st.finished_from;
      if (h_n_s != nullptr) detail::copy_rows(n - f, H, y + (st.offset + f) * ldy, ldy, h_n_s + f * H);
    }
  };

  // The projection ahead: the helper's chunks on w_ih packed once by the helper, the time loop's own on w_ih as
  // it is (run_ahead); otherwise one GEMM over all rows, then the recurrence. Every row of the pre-activations is kept either way, and the
  // native kernel's rows do not depend on the rows computed with them: the chunking changes no bit.
  if (!ahead) {
    detail::input_projection(sched, I, G, x, weights.w_ih, weights.b_ih, masks.input, gates);
    detail::for_each_batch_slice(N, dims.steps, dims.batch_sizes,
                                 [&](Index first, Index count) { recur(first, count, *buffers_for(count)); });
    return;
  }
  const Index chunk = std::max<Index>(1, kAheadRows / N), chunks = (dims.steps + chunk - 1) / chunk;
  std::optional<const detail::SharedRhs<Scalar>> w_ih;
  auto pack_w_ih = [&] { w_ih.emplace(true, G, I, weights.w_ih, I, chunks); };
  // The consumer's products (chunks the helper has not started) on w_ih as it is: gemm's bits, as the packed.
  const detail::SharedRhs<Scalar> w_ih_direct(true, G, I, weights.w_ih, I, 1);
  auto project = [&](Index c, bool packed) {  // chunk c is steps [c * chunk, ...)
    const auto [r0, r1] = sched.rows_of_steps(c * chunk, std::min(dims.steps, (c + 1) * chunk));
    detail::input_projection(sched, I, G, x, packed ? *w_ih : w_ih_direct, weights.b_ih, masks.input,
                             gates + r0 * G, r0, r1);
  };
  const std::unique_ptr<SliceBuffers> whole_batch = buffers_for(N);
  auto run = [&](Index c) {
    s0 = c * chunk;
    s1 = std::min(dims.steps, s0 + chunk);
    recur(0, N, *whole_batch);  // the batch split has one part: this thread
  };
  detail::run_ahead(chunks, chunks, pack_fused, pack_w_ih, project, run);
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                       \
  template void gru_forward<Scalar>(const GruDims&, const GruWeights<Scalar>&, const Scalar*, const Scalar*, \
                                    Scalar*, Scalar*, const GruCache<Scalar>&, const SequenceLayout&,       \
                                    const DropoutMasks<Scalar>&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
