// SPDX-License-Identifier: MIT
#include "lstm_ext/lstm.h"

#include "fused_step_internal.h"
#include "lstm_internal.h"
#include "packed_gemm_internal.h"
#include "panel_gemm_internal.h"
#include "parallel_internal.h"
#include "thread_setup.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace lstm_ext {

using detail::gate_pass_forward;

namespace {

// One float step through the fused kernel: the carried rows continue from c_prev, the others start from c0.
void fused_step(const detail::FusedLstmStep& fused, const detail::Step& st, Index H, const float* prev,
                Index ld_prev, float* gates_t, const float* c_prev, const float* c0, float* c_t, float* h_t,
                Index ld_h) {
  const Index G = kGatesLstm * H, m = st.carried, n = st.rows;
  fused.run(m, prev, ld_prev, gates_t, c_prev, c_t, h_t, ld_h);
  fused.run(n - m, detail::offset(prev, m * ld_prev), ld_prev, gates_t + m * G, c0 + m * H, c_t + m * H,
            h_t + m * ld_h, ld_h);
}

}  // namespace

template <typename Scalar>
Index lstm_cache_bytes(const LstmDims& dims) {
  constexpr const char* kWhere = "lstm_cache_bytes";
  detail::check_dims(kWhere, dims, kGatesLstm);
  const Index rows = sequence_rows(kWhere, dims.steps, dims.batch, dims.batch_sizes);
  return checked_product(kWhere, {rows, kGatesLstm + 1, dims.hidden, static_cast<Index>(sizeof(Scalar))});
}

template <typename Scalar>
void lstm_forward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                  const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                  const LstmCache<Scalar>& cache, const LstmLayout& layout, const DropoutMasks<Scalar>& masks) {
  constexpr const char* kWhere = "lstm_forward";
  detail::check_dims(kWhere, dims, kGatesLstm);
  detail::check_weights(kWhere, weights, dims);
  require(x != nullptr, kWhere, "x is null");
  require(y != nullptr, kWhere, "y is null");
  require((cache.gates == nullptr) == (cache.cells == nullptr), kWhere,
          "cache.gates and cache.cells must be both set (training) or both null (inference)");
  detail::ensure_threads_initialised();

  const Index N = dims.batch, I = dims.input, H = dims.hidden, P = dims.proj;
  const Index O = P > 0 ? P : H;  // output and recurrent width
  const Index G = kGatesLstm * H;
  detail::Workspace<Scalar> zero_h0, zero_c0;
  h0 = detail::zeros_if_null(h0, N * O, zero_h0);
  c0 = detail::zeros_if_null(c0, N * H, zero_c0);
  const bool training = cache.gates != nullptr;
  const Index ldy = detail::y_stride_of(kWhere, layout, O);
  const detail::Schedule sched(kWhere, dims.steps, N, dims.batch_sizes, layout.reverse);
  const Index R = sched.rows();

  // Inference keeps nothing: the pre-activations and the running cell state live in per-call workspaces.
  detail::Workspace<Scalar> gates_ws, cell_ws;
  Scalar* gates = cache.gates;
  if (!training) {
    cell_ws.resize(N * H);
    if (c0 != nullptr) std::copy_n(c0, N * H, cell_ws.data()); else cell_ws.setZero();
  }

  // A batch too small to split by sequences splits each step's hidden units instead (see parallel_internal.h):
  // each part packs its own rows of w_hh, on the calling thread (allocation may throw; the steps may not).
  constexpr bool kFloat = std::is_same_v<Scalar, float>;
  const bool unpacked = detail::unpacked_recurrence(dims.steps, N);
  const Index unit_parts = P > 0 || unpacked ? 1 : detail::unit_split_parts(N, H);
  if (unit_parts > 1) {
    // The input projection does not depend on the recurrence: one GEMM over all rows (few: N < 16).
    if (!training) {
      gates_ws.resize(R * G);
      gates = gates_ws.data();
    }
    detail::input_projection(sched, I, G, x, weights.w_ih, weights.bias, masks.input, gates);
    struct Part {
      Index u0, u1;
      std::vector<detail::PackedWeights<Scalar>> w_hh;  // double: this part's rows of each gate's block of w_hh
      std::unique_ptr<detail::FusedLstmStep> fused;     // float: the same rows, for the fused step
      detail::Workspace<Scalar> prev, pack;
      detail::GateScratch<Scalar> scratch;
    };
    const std::vector<Index> bounds = detail::unit_bounds(H, unit_parts);
    std::vector<Part> parts;
    parts.reserve(static_cast<size_t>(unit_parts));
    for (Index j = 0; j < unit_parts; ++j) {
      const Index u0 = bounds[j], u1 = bounds[j + 1];
      Part& part = parts.emplace_back(Part{u0, u1, {}, nullptr, detail::Workspace<Scalar>(N * O), {}, {G, H}});
      if constexpr (kFloat) {
        part.fused = std::make_unique<detail::FusedLstmStep>(weights.w_hh, H, O, u0, u1);
        continue;
      }
      Index scratch = 0;
      for (Index q = 0; q < kGatesLstm; ++q) {
        part.w_hh.emplace_back(weights.w_hh + (q * H + u0) * O, u1 - u0, O, O, false);
        scratch = std::max(scratch, part.w_hh.back().scratch_size());
      }
      part.pack.resize(scratch);
    }
    Scalar* cell = training ? nullptr : cell_ws.data();
    detail::for_each_step_in_parts(unit_parts, dims.steps, [&](Index j, Index s) {
      Part& part = parts[static_cast<size_t>(j)];
      const Index u0 = part.u0, u1 = part.u1;
      const detail::Step st = sched.step(s);
      const Index n = st.rows;
      Scalar* gates_t = gates + st.offset * G;
      Index ld_prev = 0;
      const Scalar* prev = detail::previous_states(st, O, y, ldy, h0, masks.recurrent, part.prev.data(), ld_prev);
      Scalar* h_t = y + st.offset * ldy;
      Scalar* c_t = training ? cache.cells + st.offset * H : cell;
      if constexpr (kFloat) {
        const float* c_prev = training ? cache.cells + st.prev_offset * H : cell;
        fused_step(*part.fused, st, H, prev, ld_prev, gates_t, c_prev, c0, c_t, h_t, ldy);
      } else {
        if (prev != nullptr) {
          for (Index q = 0; q < kGatesLstm; ++q)
            part.w_hh[q].multiply_add(n, prev, ld_prev, gates_t + q * H + u0, G, part.pack.data());
        }
        if (training) {
          const Index m = st.carried;
          gate_pass_forward(m, H, gates_t, cache.cells + st.prev_offset * H, c_t, h_t, ldy, part.scratch, u0, u1);
          gate_pass_forward(n - m, H, gates_t + m * G, detail::offset(c0, m * H), c_t + m * H, h_t + m * ldy, ldy,
                            part.scratch, u0, u1);
        } else {
          gate_pass_forward(n, H, gates_t, c_t, c_t, h_t, ldy, part.scratch, u0, u1);
        }
      }
      for (Index r = st.finished_from; r < n; ++r) {
        if (h_n != nullptr) std::copy(h_t + r * ldy + u0, h_t + r * ldy + u1, h_n + r * O + u0);
        if (c_n != nullptr) std::copy(c_t + r * H + u0, c_t + r * H + u1, c_n + r * H + u0);
      }
    });
    return;
  }

  // A time loop on one thread (a small batch) has the second thread project chunks of kAheadRows rows ahead of
  // it instead (run_ahead); in inference into a ring of chunks of kAheadRingBytes at least. A ring of 4 chunks
  // made s5 inference slower (0.65 -> 0.69 ms; all chunks: 0.58): the helper's writes into a chunk the
  // recurrence had just used took its lines from the other core's cache, then the recurrence took them back.
  // The native kernel's rows do not depend on the rows computed with them: the chunking changes no bit.
  constexpr Index kChunkRows = 512, kAheadRows = 16;
  constexpr Index kAheadRingBytes = Index(8) << 20;
  // (Only where the ring holds several chunks: at H = 2^20 a chunk would be 256 MB, and a step's work dwarfs
  // the projection's share anyway.)
  const bool ahead = !unpacked && 4 * kAheadRows * G * static_cast<Index>(sizeof(Scalar)) <= kAheadRingBytes &&
                     detail::projection_ahead(detail::batch_slice_parts(N));

  // The recurrent weights packed once for all steps and threads (RecurrentWeights: panel_gemm_internal.h for
  // float, Eigen's GEBP layout for double); a float batch of a few rows runs the fused step instead, on weights
  // packed for it (shared by the threads).
  const bool fuse = !unpacked && kFloat && N <= detail::kMaxFusedRows;
  const detail::RecurrentWeights<Scalar> w_hh(weights.w_hh, fuse || unpacked ? 0 : G, O, O, false);
  std::unique_ptr<const detail::FusedLstmStep> fused;
  auto pack_fused = [&] {  // with the projection ahead, by the time loop's thread as it starts (run_ahead)
    if constexpr (kFloat) {
      if (fuse) fused = std::make_unique<const detail::FusedLstmStep>(weights.w_hh, H, O, 0, H);
    }
  };
  if (!ahead) pack_fused();
  const detail::RecurrentWeights<Scalar> w_hr(weights.w_hr, unpacked ? 0 : P, H, H, false);  // empty without one

  // The recurrence of sequences [first, first + count) over steps [s0, s1), whose pre-activations start at
  // gates_0 with the row row_0: per-sequence buffers are offset to the slice; its workspaces are the caller's
  // (one set per slice for the whole call where the slice is the same for every chunk).
  Index s0 = 0, s1 = 0, row_0 = 0;
  Scalar* gates_0 = gates;
  struct SliceBuffers {
    SliceBuffers(Index full, Index prev, Index pack, Index G, Index H) : full(full), prev(prev), pack(pack), scratch(G, H) {}
    detail::Workspace<Scalar> full, prev, pack;
    detail::GateScratch<Scalar> scratch;
  };
  auto buffers_for = [&](Index count) {
    return std::make_unique<SliceBuffers>(P > 0 ? count * H : 0, count * O, std::max(w_hh.scratch_size(), w_hr.scratch_size()), G, H);
  };
  auto recur = [&](Index first, Index count, SliceBuffers& buffers) {
    const detail::Schedule slice = sched.slice(kWhere, first, count);
    const Scalar* h0_s = detail::offset(h0, first * O);
    const Scalar* c0_s = detail::offset(c0, first * H);
    const Scalar* mask_s = detail::offset(masks.recurrent, first * O);
    Scalar* h_n_s = detail::offset(h_n, first * O);
    Scalar* c_n_s = detail::offset(c_n, first * H);
    Scalar* cell_s = training ? nullptr : cell_ws.data() + first * H;
    detail::Workspace<Scalar>&full_ws = buffers.full, &prev_ws = buffers.prev, &pack_ws = buffers.pack;
    detail::GateScratch<Scalar>& scratch = buffers.scratch;

    for (Index s = s0; s < s1; ++s) {
      const detail::Step st = slice.step(s);
      const Index n = st.rows;
      if (n == 0) continue;
      Scalar* gates_t = gates_0 + (st.offset - row_0) * G;
      Index ld_prev = 0;
      const Scalar* prev = detail::previous_states(st, O, y, ldy, h0_s, mask_s, prev_ws.data(), ld_prev);

      // Without projection h_t goes straight to y; with it, h_full goes to a scratch and y = h_full w_hr^T.
      Scalar* h_out = P > 0 ? full_ws.data() : y + st.offset * ldy;
      const Index ld_h = P > 0 ? H : ldy;
      Scalar* c_t = training ? cache.cells + st.offset * H : cell_s;  // inference: rows are sequences
      if (fused) {
        if constexpr (kFloat) {
          const float* c_prev = training ? cache.cells + st.prev_offset * H : cell_s;
          fused_step(*fused, st, H, prev, ld_prev, gates_t, c_prev, c0_s, c_t, h_out, ld_h);
        }
      } else {
        if (prev != nullptr) {
          if (unpacked) detail::row_times_wt(G, O, weights.w_hh, prev, true, gates_t);  // n == 1
          else w_hh.multiply_add(n, prev, ld_prev, gates_t, G, pack_ws.data());
        }
        if (training) {
          const Index m = st.carried;
          gate_pass_forward(m, H, gates_t, cache.cells + st.prev_offset * H, c_t, h_out, ld_h, scratch);
          gate_pass_forward(n - m, H, gates_t + m * G, detail::offset(c0_s, m * H), c_t + m * H,
                            h_out + m * ld_h, ld_h, scratch);
        } else {
          gate_pass_forward(n, H, gates_t, c_t, c_t, h_out, ld_h, scratch);
        }
      }
      if (P > 0 && unpacked) detail::row_times_wt(P, H, weights.w_hr, full_ws.data(), false, y + st.offset * ldy);
      else if (P > 0) w_hr.multiply(n, full_ws.data(), H, y + st.offset * ldy, ldy, pack_ws.data());

      // Sequences whose last step this is hand over their final states.
      const Index f = st.finished_from;
      if (h_n_s != nullptr) detail::copy_rows(n - f, O, y + (st.offset + f) * ldy, ldy, h_n_s + f * O);
      if (c_n_s != nullptr) std::copy_n(c_t + f * H, (n - f) * H, c_n_s + f * H);
    }
  };

  // Training keeps every step's activations: one input GEMM over all rows, then the whole recurrence.
  // Inference needs each step's pre-activations once: it runs chunks of steps, each chunk's input GEMM into a
  // workspace of about kChunkRows rows (L2/L3-sized, reused by every chunk) then the chunk's recurrence. The
  // whole [R, 4H] workspace was 52 MB at s3 (T=100, N=64, H=512) and 105 MB at s4, a fresh mapping per call
  // whose page faults cost 20-25% of the s3 forward (measured: inference 94-100 ms against the training
  // forward's 70-73 ms, which writes into the caller's cache).
  const Index chunk = ahead ? std::max<Index>(1, kAheadRows / N)
                            : (training ? dims.steps : std::max<Index>(1, kChunkRows / N));
  const Index chunks = (dims.steps + chunk - 1) / chunk;
  // The chunks' input projections share w_ih, packed once for all of them (with the projection ahead, by the
  // helper, run_ahead).
  std::optional<const detail::SharedRhs<Scalar>> w_ih;
  auto pack_w_ih = [&] { w_ih.emplace(true, G, I, weights.w_ih, I, chunks); };
  // The consumer's products (chunks the helper has not started) on w_ih as it is: gemm's bits, as the packed.
  const detail::SharedRhs<Scalar> w_ih_direct(true, G, I, weights.w_ih, I, 1);
  // Chunk c is steps [c * chunk, ...).
  auto chunk_rows = [&](Index c) { return sched.rows_of_steps(c * chunk, std::min(dims.steps, (c + 1) * chunk)); };
  Index most = 0;  // the most rows of any chunk
  for (Index c = 0; c < chunks; ++c) {
    const auto [r0, r1] = chunk_rows(c);
    most = std::max(most, r1 - r0);
  }
  const Index chunk_bytes = most * G * static_cast<Index>(sizeof(Scalar));
  const Index window = training ? chunks : (ahead ? std::min(chunks, 1 + kAheadRingBytes / chunk_bytes) : 1);
  if (!training) gates_ws.resize(window * most * G);
  auto chunk_gates = [&](Index c, Index r0) { return training ? gates + r0 * G : gates_ws.data() + (c % window) * most * G; };
  auto project = [&](Index c, bool packed) {
    const auto [r0, r1] = chunk_rows(c);
    if (unpacked && R == 1) {  // T = 1, N = 1 (training and inference alike): w_ih as it is
      detail::input_projection(sched, I, G, x, weights.w_ih, weights.bias, masks.input, chunk_gates(c, r0));
    } else {
      detail::input_projection(sched, I, G, x, packed ? *w_ih : w_ih_direct, weights.bias, masks.input,
                               chunk_gates(c, r0), r0, r1);
    }
  };
  // The projection ahead keeps the time loop on this thread, one slice of the whole batch: its workspaces are
  // made once (chunks are 16 rows: s5 has 63).
  const std::unique_ptr<SliceBuffers> whole_batch = ahead ? buffers_for(N) : nullptr;
  auto run = [&](Index c) {
    s0 = c * chunk;
    s1 = std::min(dims.steps, s0 + chunk);
    row_0 = chunk_rows(c).first;
    gates_0 = chunk_gates(c, row_0);
    if (whole_batch) {
      recur(0, N, *whole_batch);
    } else {
      detail::for_each_batch_slice(N, dims.steps, dims.batch_sizes, [&](Index first, Index count) {
        recur(first, count, *buffers_for(count));
      });
    }
  };
  if (ahead) {
    detail::run_ahead(chunks, window, pack_fused, pack_w_ih, project, run);
  } else {
    pack_w_ih();
    for (Index c = 0; c < chunks; ++c) {
      project(c, true);
      run(c);
    }
  }
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                     \
  template Index lstm_cache_bytes<Scalar>(const LstmDims&);                                             \
  template void lstm_forward<Scalar>(const LstmDims&, const LstmWeights<Scalar>&, const Scalar*,         \
                                     const Scalar*, const Scalar*, Scalar*, Scalar*, Scalar*,            \
                                     const LstmCache<Scalar>&, const LstmLayout&,                        \
                                     const DropoutMasks<Scalar>&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
