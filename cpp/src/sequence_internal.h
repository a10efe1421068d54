// SPDX-License-Identifier: MIT
// Internal to the kernels: the step schedule of one direction over dense or packed rows, the gathering of the
// previous states, the products of the recurrence, and the variational masks.
#pragma once

#include "gemm_internal.h"
#include "workspace_internal.h"
#include "lstm_ext/sequence.h"

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace lstm_ext::detail {

template <typename Scalar>
using Buffer = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;  // small aligned storage for Eigen expressions (the cells)

// p + k, or nullptr for a null p (an optional buffer).
template <typename T>
T* offset(T* p, Index k) {
  return p == nullptr ? nullptr : p + k;
}

// A state the caller passed as nullptr ("zeros"), as zeros in `storage`: the kernels compute with it instead
// of skipping the work it would do, so that 0 * NaN and 0 * Inf (a non-finite weight or gradient meeting a zero
// state) give NaN, as in torch, not 0.
template <typename Scalar>
const Scalar* zeros_if_null(const Scalar* state, Index size, Workspace<Scalar>& storage) {
  if (state != nullptr) return state;
  storage.setZero(size);
  return storage.data();
}

// A single sequence over fewer steps than this runs its recurrent products as matrix-vector products on the
// weights as they are (row_times_wt), not on weights packed for the kernels: packing reads and writes all of
// them, which only pays over many steps. Measured (LSTM, N = 1, I = H = 128, one thread, bench_lstm): T = 1
// 57 -> 29 us without packing w_hh, but T = 100 0.29 -> 0.42 ms (the fused step on packed weights is faster
// per step), about even at 20 steps.
constexpr Index kPackFromSteps = 16;

inline bool unpacked_recurrence(Index steps, Index batch) { return batch == 1 && steps < kPackFromSteps; }

// out[g] (+)= sum_k w[g, k] v[k]: one row times w^T, w row-major [g, k] as stored (Eigen's matrix-vector product).
template <typename Scalar>
void row_times_wt(Index g, Index k, const Scalar* w, const Scalar* v, bool accumulate, Scalar* out) {
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  Eigen::Map<Vector> o(out, g);
  if (accumulate) o.noalias() += ConstMatrixMap<Scalar>(w, g, k) * Eigen::Map<const Vector>(v, k);
  else o.noalias() = ConstMatrixMap<Scalar>(w, g, k) * Eigen::Map<const Vector>(v, k);
}

// out[k] (+)= sum_g v[g] w[g, k]: one row times w, w row-major [g, k] as stored (the backward's products).
template <typename Scalar>
void row_times_w(Index g, Index k, const Scalar* w, const Scalar* v, Scalar* out, bool accumulate = false) {
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  Eigen::Map<Vector> o(out, k);
  const auto product = ConstMatrixMap<Scalar>(w, g, k).transpose() * Eigen::Map<const Vector>(v, g);
  if (accumulate) o.noalias() += product;
  else o.noalias() = product;
}

// One step of a direction, in processing order.
struct Step {
  Index t = 0;              // time
  Index rows = 0;           // n_t: rows (sequences) active at this step; always the first n_t of the batch
  Index offset = 0;         // first row of step t in the [R, F] buffers
  Index carried = 0;        // rows [0, carried) continue from the previously processed step; rows
                            // [carried, rows) start here from h0 (packed reverse direction, or the first step)
  Index prev_offset = 0;    // first row of the previously processed step (when carried > 0)
  Index finished_from = 0;  // rows [finished_from, rows) take their last step here: their final states
};

// The steps of one direction over T steps of N sequences, dense or packed (sequence.h); or of the slice of
// sequences [first, first + count) of them, for one thread's time loop (parallel_internal.h). A slice's steps
// keep the whole batch's row offsets, so every [R, F] buffer is shared, and its rows are numbered from 0 for
// the per-sequence buffers ([N, F], which the caller offsets by `first`). A step of a packed slice may have
// no rows (its sequences have all ended, or not yet begun in reverse).
class Schedule {
 public:
  Schedule(const char* where, Index steps, Index batch, const std::int64_t* batch_sizes, bool reverse,
           Index first = 0, Index count = -1)
      : steps_(steps), batch_(batch), reverse_(reverse), sizes_(batch_sizes), first_(first),
        count_(count < 0 ? batch : count) {
    require(first_ >= 0 && count_ >= 1 && first_ + count_ <= batch_, where, "batch slice out of range");
    rows_ = sequence_rows(where, steps, batch, batch_sizes);
    if (sizes_ != nullptr) {
      auto offsets = std::make_shared<std::vector<Index>>(static_cast<size_t>(steps + 1), 0);
      for (Index t = 0; t < steps; ++t) (*offsets)[t + 1] = (*offsets)[t] + sizes_[t];
      offsets_ = std::move(offsets);
    }
  }

  // The slice of sequences [first, first + count) of this whole-batch schedule, sharing its row offsets: O(1),
  // where constructing it checks and sums batch_sizes again (O(T), too much for every chunk of a long
  // sequence).
  Schedule slice(const char* where, Index first, Index count) const {
    require(first_ == 0 && count_ == batch_, where, "a slice of a slice");
    require(first >= 0 && count >= 1 && first + count <= batch_, where, "batch slice out of range");
    Schedule s = *this;
    s.first_ = first;
    s.count_ = count;
    return s;
  }

  Index rows() const { return rows_; }
  Index steps() const { return steps_; }
  // The first row of time t (t = steps(): rows()). Whole batch only, as row_in_batch.
  Index row_of_time(Index t) const { return t >= steps_ ? rows_ : offset(t); }
  // The rows [r0, r1) of processing steps [s0, s1): contiguous in either direction (reversed, they are times
  // [T - s1, T - s0)). Whole batch only.
  std::pair<Index, Index> rows_of_steps(Index s0, Index s1) const {
    return reverse_ ? std::pair<Index, Index>(row_of_time(steps_ - s1), row_of_time(steps_ - s0))
                    : std::pair<Index, Index>(row_of_time(s0), row_of_time(s1));
  }

  Step step(Index s) const {
    Step st;
    st.t = reverse_ ? steps_ - 1 - s : s;
    st.rows = size(st.t);
    st.offset = offset(st.t);
    if (s > 0) {
      const Index t_prev = reverse_ ? st.t + 1 : st.t - 1;
      st.carried = std::min(st.rows, size(t_prev));
      st.prev_offset = offset(t_prev);
    }
    if (s < steps_ - 1) st.finished_from = std::min(st.rows, size(reverse_ ? st.t - 1 : st.t + 1));
    return st;
  }

  // The batch row (sorted order) of each of the R rows: what a per-sequence mask row is indexed by. (Whole
  // batch only: the input side runs over all rows at once.)
  Index row_in_batch(Index row) const {
    if (sizes_ == nullptr) return row % batch_;
    const auto it = std::upper_bound(offsets_->begin(), offsets_->end(), row) - 1;
    return row - *it;
  }

 private:
  Index size(Index t) const {
    const Index all = sizes_ == nullptr ? batch_ : static_cast<Index>(sizes_[t]);
    return std::clamp(all - first_, Index(0), count_);
  }
  Index offset(Index t) const { return (sizes_ == nullptr ? t * batch_ : (*offsets_)[t]) + first_; }

  Index steps_, batch_;
  bool reverse_;
  const std::int64_t* sizes_;
  Index first_, count_;
  std::shared_ptr<const std::vector<Index>> offsets_;  // ragged: the first row of each time, shared by slices
  Index rows_ = 0;
};

// Rows of a [rows, cols] block with row stride `stride` copied to a dense [rows, cols] buffer.
template <typename Scalar>
void copy_rows(Index rows, Index cols, const Scalar* src, Index stride, Scalar* dst) {
  for (Index r = 0; r < rows; ++r) std::copy_n(src + r * stride, cols, dst + r * cols);
}

// The states h_{t-1} that step `st` reads, as dense [rows, width] in `dst`: rows [0, carried) from the
// previously processed step of y (rows ldy apart), the rest from init ([N, width], or zeros when nullptr);
// each row multiplied by its mask row when mask ([N, width]) is given.
template <typename Scalar>
void gather_previous(const Step& st, Index width, const Scalar* y, Index ldy, const Scalar* init,
                     const Scalar* mask, Scalar* dst) {
  for (Index r = 0; r < st.rows; ++r) {
    ArrayMap<Scalar> out(dst + r * width, width);
    if (r < st.carried) {
      out = ConstArrayMap<Scalar>(y + (st.prev_offset + r) * ldy, width);
    } else if (init != nullptr) {
      out = ConstArrayMap<Scalar>(init + r * width, width);
    } else {
      out.setZero();
      continue;
    }
    if (mask != nullptr) out *= ConstArrayMap<Scalar>(mask + r * width, width);
  }
}

// Where step `st` reads its (masked) previous states for the recurrent product: y itself when every row
// continues and nothing is masked; else `scratch` filled by gather_previous; nullptr when all are zero.
template <typename Scalar>
const Scalar* previous_states(const Step& st, Index width, const Scalar* y, Index ldy, const Scalar* init,
                              const Scalar* mask, Scalar* scratch, Index& stride) {
  if (st.carried == st.rows && mask == nullptr) {
    stride = ldy;
    return y + st.prev_offset * ldy;
  }
  if (st.carried == 0 && init == nullptr) return nullptr;
  gather_previous(st, width, y, ldy, init, mask, scratch);
  stride = width;
  return scratch;
}

// x * m_x over rows [r0, r1) (all R by default; src and dst hold row r0 first), each row times its sequence's
// mask row: the input the projection sees.
template <typename Scalar>
void mask_rows(const Schedule& sched, Index width, const Scalar* src, const Scalar* mask, Scalar* dst, Index r0 = 0,
               Index r1 = -1) {
  if (r1 < 0) r1 = sched.rows();
  for (Index row = 0; row < r1 - r0; ++row) {
    ArrayMap<Scalar>(dst + row * width, width) =
        ConstArrayMap<Scalar>(src + row * width, width) *
        ConstArrayMap<Scalar>(mask + sched.row_in_batch(r0 + row) * width, width);
  }
}

// The input side of a backward, shared by LSTM and GRU, as one GEMM each over all R rows:
//   dx (+)= (d_gates w_ih) * m_x,   dw_ih = d_gates^T (x * m_x),   db = column sums of d_gates (if db).
template <typename Scalar>
void input_side_backward(const Schedule& sched, Index input, Index gates, const Scalar* x, const Scalar* w_ih,
                         const Scalar* input_mask, const Scalar* d_gates, bool accumulate_dx, Scalar* dx,
                         Scalar* dw_ih, Scalar* db) {
  const Index R = sched.rows();
  const ConstMatrixMap<Scalar> all_d_gates(d_gates, R, gates);
  // dx (+)= d_gates w_ih; one row (one sequence over one step): a matrix-vector product on w_ih as it is, where
  // the GEMM kernel would pack all of w_ih first.
  auto times_w_ih = [&](bool accumulate, Scalar* out) {
    if (R == 1) row_times_w(gates, input, w_ih, d_gates, out, accumulate);
    else gemm(false, false, R, input, gates, d_gates, gates, w_ih, input, accumulate, out, input);
  };
  if (input_mask == nullptr) {
    times_w_ih(accumulate_dx, dx);
    gemm(true, false, gates, input, R, d_gates, gates, x, input, false, dw_ih, input);
  } else {
    Workspace<Scalar> ws(R * input);
    times_w_ih(false, ws.data());
    mask_rows(sched, input, ws.data(), input_mask, ws.data());
    MatrixMap<Scalar> dx_map(dx, R, input);
    const ConstMatrixMap<Scalar> ws_map(ws.data(), R, input);
    if (accumulate_dx) dx_map += ws_map;
    else dx_map = ws_map;
    mask_rows(sched, input, x, input_mask, ws.data());
    gemm(true, false, gates, input, R, d_gates, gates, ws.data(), input, false, dw_ih, input);
  }
  if (db != nullptr) {
    // Summed into aligned storage first: on caller memory the scalar/vector split, which rounds differently,
    // would follow the buffer's address.
    const Eigen::Matrix<Scalar, 1, Eigen::Dynamic> sums = all_d_gates.colwise().sum();
    RowVectorMap<Scalar>(db, gates) = sums;
  }
}

// The input projection of a forward, rows [r0, r1) of the schedule's (all by default):
//   gates[r1 - r0, G] = (x * m_x) w_ih^T (+ bias), one GEMM; gates holds row r0 first. w_ih: a SharedRhs of
// op(B) = w_ih^T where several calls share it (chunks), else the raw [G, I] weights (one row: a
// matrix-vector product; a caller that may see one row must decide the same way in training and inference).
template <typename Scalar, typename Weights>
void input_projection(const Schedule& sched, Index input, Index gates_width, const Scalar* x, const Weights& w_ih,
                      const Scalar* bias, const Scalar* input_mask, Scalar* gates, Index r0 = 0, Index r1 = -1) {
  if (r1 < 0) r1 = sched.rows();
  const Index R = r1 - r0;
  if (R <= 0) return;
  auto project = [&](const Scalar* a) {
    if constexpr (std::is_same_v<Weights, SharedRhs<Scalar>>) {
      w_ih.product(false, R, a, input, false, gates, gates_width);
    } else {
      static_assert(std::is_same_v<Weights, const Scalar*> || std::is_same_v<Weights, Scalar*>);
      // One row: a matrix-vector product on w_ih as it is; the GEMM kernels would pack all of w_ih first.
      if (R == 1) row_times_wt(gates_width, input, w_ih, a, false, gates);
      else gemm(false, true, R, gates_width, input, a, input, w_ih, input, false, gates, gates_width);
    }
  };
  x += r0 * input;
  if (input_mask == nullptr) {
    project(x);
  } else {
    Workspace<Scalar> xm(R * input);
    mask_rows(sched, input, x, input_mask, xm.data(), r0, r1);
    project(xm.data());
  }
  MatrixMap<Scalar> all_gates(gates, R, gates_width);
  if (bias != nullptr) all_gates.rowwise() += ConstRowVectorMap<Scalar>(bias, gates_width);
}

// Row stride of y for a layout (0 means dense); checked against the output width.
inline Index y_stride_of(const char* where, const SequenceLayout& layout, Index width) {
  const Index stride = layout.y_stride == 0 ? width : layout.y_stride;
  require(stride >= width, where, "layout.y_stride must be 0 or >= the output width");
  return stride;
}

}  // namespace lstm_ext::detail
