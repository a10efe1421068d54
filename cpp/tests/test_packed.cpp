// SPDX-License-Identifier: MIT
// Packed sequences (SequenceDims.batch_sizes, torch's PackedSequence): a packed batch gives, for each of its
// sequences, what that sequence gives alone as a dense batch of one truncated to its length, forward and
// reverse, for the LSTM (with and without projection) and the GRU (both formulations), single layers and
// stacks, with and without dropout masks; the weight gradients are the sums over the sequences. And every
// malformed batch_sizes is rejected, by every entry point, with a message that says what is wrong.
#include "recurrent_test_support.h"

#include "lstm_ext/gru.h"
#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace lstm_ext::testing {
namespace {

// ---- packing ------------------------------------------------------------------------------------------

// Sequence lengths, non-increasing (sorted as a PackedSequence is). T is lengths[0], N their number.
using Lengths = std::vector<Index>;

std::string describe(const Lengths& lengths) {
  std::ostringstream s;
  s << "lengths {";
  for (std::size_t b = 0; b < lengths.size(); ++b) s << (b ? ", " : "") << lengths[b];
  s << "}";
  return s.str();
}

// Ragged batches, one sequence (N=1), T=1, all lengths equal (the dense batch), and sequences of length 1.
std::vector<Lengths> length_grid() { return {{5, 3, 3, 1}, {4, 4, 2}, {1}, {3}, {1, 1, 1}, {3, 3}, {6, 2, 1, 1, 1}}; }

std::vector<std::int64_t> batch_sizes_of(const Lengths& lengths) {
  std::vector<std::int64_t> sizes(static_cast<std::size_t>(lengths.front()), 0);
  for (Index len : lengths) {
    for (Index t = 0; t < len; ++t) ++sizes[static_cast<std::size_t>(t)];
  }
  return sizes;
}

// The rows of a dense [T, N, F] that the packed sequence keeps, in its order: step by step, the first
// batch_sizes[t] sequences of each.
std::vector<double> pack(const std::vector<double>& dense, const Lengths& lengths, Index width) {
  const Index N = static_cast<Index>(lengths.size());
  std::vector<double> out;
  const std::vector<std::int64_t> sizes = batch_sizes_of(lengths);
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    const auto first = dense.begin() + static_cast<std::ptrdiff_t>(static_cast<Index>(t) * N * width);
    out.insert(out.end(), first, first + static_cast<std::ptrdiff_t>(sizes[t] * width));
  }
  return out;
}

// Sequence b of a dense [T, N, F], its first `len` steps: [len, F], a dense batch of one.
std::vector<double> sequence_of(const std::vector<double>& dense, Index batch, Index width, Index b, Index len) {
  std::vector<double> out;
  for (Index t = 0; t < len; ++t) {
    const auto first = dense.begin() + static_cast<std::ptrdiff_t>((t * batch + b) * width);
    out.insert(out.end(), first, first + static_cast<std::ptrdiff_t>(width));
  }
  return out;
}

// Row b of [N, F] (or of slice k of [K, N, F]); empty stays empty.
template <typename Scalar>
std::vector<Scalar> row_of(const std::vector<Scalar>& v, Index b, Index width, Index k = 0, Index batch = 0) {
  if (v.empty()) return {};
  const auto first = v.begin() + static_cast<std::ptrdiff_t>((k * batch + b) * width);
  return std::vector<Scalar>(first, first + static_cast<std::ptrdiff_t>(width));
}

// Sums (over the sequences) of weight gradients, in double.
void add_to(std::vector<double>& sum, const std::vector<double>& v) {
  if (sum.empty()) sum.assign(v.size(), 0.0);
  for (std::size_t k = 0; k < v.size(); ++k) sum[k] += v[k];
}

// Sequence-by-sequence results gathered back into the packed batch's shapes, in double.
struct Gathered {
  std::vector<double> y, h_n, c_n, dx, dh0, dc0;                   // y, dx: packed rows; states: [K, N, F]
  std::vector<std::vector<double>> dw_ih, dw_hh, db_a, db_b, dw_hr;  // [K], summed over the sequences
};

// Writes sequence b's [len_b, F] rows into their places in a packed [R, F].
void scatter_sequence(std::vector<double>& packed, const std::vector<double>& seq, const Lengths& lengths, Index width,
                      Index b) {
  const std::vector<std::int64_t> sizes = batch_sizes_of(lengths);
  Index offset = 0;
  for (Index t = 0; t < lengths[static_cast<std::size_t>(b)]; ++t) {
    std::copy_n(seq.begin() + static_cast<std::ptrdiff_t>(t * width), width,
                packed.begin() + static_cast<std::ptrdiff_t>((offset + b) * width));
    offset += sizes[static_cast<std::size_t>(t)];
  }
}

// Writes a single sequence's [K, 1, F] states into row b of [K, N, F].
void scatter_state(std::vector<double>& states, const std::vector<double>& seq, Index b, Index batch, Index width) {
  const Index K = static_cast<Index>(seq.size()) / width;
  for (Index k = 0; k < K; ++k) {
    std::copy_n(seq.begin() + static_cast<std::ptrdiff_t>(k * width), width,
                states.begin() + static_cast<std::ptrdiff_t>((k * batch + b) * width));
  }
}

Index rows_of(const Lengths& lengths) {
  Index r = 0;
  for (Index len : lengths) r += len;
  return r;
}

SequenceLayout direction(bool reverse) {
  SequenceLayout layout;
  layout.reverse = reverse;
  return layout;
}

// What a case adds to the plain packed batch: dropout masks (variational, and between layers in a stack), or
// every optional argument absent (h0, c0, dh_n, dc_n and the biases: nullptr).
enum class Variant { kPlain, kDropout, kNullArguments };

const Variant kVariants[] = {Variant::kPlain, Variant::kDropout, Variant::kNullArguments};

std::string describe(Variant v) {
  return v == Variant::kPlain ? "" : v == Variant::kDropout ? " with dropout masks" : " with null optional arguments";
}

// ---- single LSTM layer --------------------------------------------------------------------------------

// Dense data for T = lengths[0] steps of N = |lengths| sequences.
LstmpData lstm_dense_data(const Lengths& lengths, Index input, Index hidden, Index proj, Variant variant) {
  LstmpCase c{lengths.front(), static_cast<Index>(lengths.size()), input, hidden, proj};
  c.bias = c.h0 = c.c0 = c.final_grads = variant != Variant::kNullArguments;
  LstmpData d = make_lstmp_data(c, /*seed=*/5);
  if (variant == Variant::kDropout) add_masks(d, /*seed=*/11, /*p=*/0.3);
  return d;
}

LstmpData lstm_packed(const LstmpData& dense, const Lengths& lengths) {
  LstmpData p = dense;
  p.batch_sizes = batch_sizes_of(lengths);
  p.x = pack(dense.x, lengths, dense.c.input);
  p.dy = pack(dense.dy, lengths, dense.c.out());
  return p;
}

LstmpData lstm_sequence(const LstmpData& dense, const Lengths& lengths, Index b) {
  const Index N = dense.c.batch, len = lengths[static_cast<std::size_t>(b)], I = dense.c.input;
  const Index H = dense.c.hidden, O = dense.c.out();
  LstmpData s = dense;
  s.c.steps = len;
  s.c.batch = 1;
  s.x = sequence_of(dense.x, N, I, b, len);
  s.dy = sequence_of(dense.dy, N, O, b, len);
  s.h0 = row_of(dense.h0, b, O);
  s.c0 = row_of(dense.c0, b, H);
  s.dh_n = row_of(dense.dh_n, b, O);
  s.dc_n = row_of(dense.dc_n, b, H);
  s.mask_x = row_of(dense.mask_x, b, I);
  s.mask_h = row_of(dense.mask_h, b, O);
  return s;
}

// Each sequence alone (dense, N = 1) through the core, gathered into the packed batch's shapes.
template <typename Scalar>
Gathered lstm_sequence_by_sequence(const LstmpData& dense, const Lengths& lengths, bool reverse, bool training) {
  const Index N = dense.c.batch, R = rows_of(lengths), H = dense.c.hidden, O = dense.c.out(), I = dense.c.input;
  Gathered g;
  g.y.assign(static_cast<std::size_t>(R * O), 0.0);
  g.dx.assign(static_cast<std::size_t>(R * I), 0.0);
  g.h_n.assign(static_cast<std::size_t>(N * O), 0.0);
  g.dh0 = g.h_n;
  g.c_n.assign(static_cast<std::size_t>(N * H), 0.0);
  g.dc0 = g.c_n;
  g.dw_ih.resize(1), g.dw_hh.resize(1), g.db_a.resize(1), g.dw_hr.resize(1);
  for (Index b = 0; b < N; ++b) {
    const LstmpInputs<Scalar> in(lstm_sequence(dense, lengths, b));
    LstmpRun<Scalar> run = lstmp_core_forward(in, training, direction(reverse));
    scatter_sequence(g.y, cast<double>(run.y), lengths, O, b);
    scatter_state(g.h_n, cast<double>(run.h_n), b, N, O);
    scatter_state(g.c_n, cast<double>(run.c_n), b, N, H);
    if (!training) continue;
    lstmp_core_backward(in, run, direction(reverse));
    scatter_sequence(g.dx, cast<double>(run.dx), lengths, I, b);
    scatter_state(g.dh0, cast<double>(run.dh0), b, N, O);
    scatter_state(g.dc0, cast<double>(run.dc0), b, N, H);
    add_to(g.dw_ih[0], cast<double>(run.dw_ih));
    add_to(g.dw_hh[0], cast<double>(run.dw_hh));
    add_to(g.db_a[0], cast<double>(run.dbias));
    add_to(g.dw_hr[0], cast<double>(run.dw_hr));
  }
  return g;
}

// Sequence by sequence and packed are different groupings of the same sums: only rounding differs.
template <typename Scalar>
Tolerance regrouping_tolerance() {
  return backward_tolerance<Scalar>();
}

template <typename Scalar>
class PackedLstm : public ::testing::Test {};
TYPED_TEST_SUITE(PackedLstm, Scalars, ScalarName);

TYPED_TEST(PackedLstm, EachSequenceGetsWhatItGetsAloneInBothDirections) {
  using Scalar = TypeParam;
  for (const Lengths& lengths : length_grid()) {
    for (Index proj : {0, 2}) {
      for (Variant variant : kVariants) {
        for (bool reverse : {false, true}) {
          SCOPED_TRACE(describe(lengths) + " P=" + std::to_string(proj) + describe(variant) +
                       (reverse ? " reverse" : " forward"));
          const LstmpData dense = lstm_dense_data(lengths, 3, 4, proj, variant);
          const LstmpInputs<Scalar> in(lstm_packed(dense, lengths));
          const Tolerance tol = regrouping_tolerance<Scalar>();
          for (bool training : {false, true}) {
            SCOPED_TRACE(training ? "training" : "inference");
            const Gathered want = lstm_sequence_by_sequence<Scalar>(dense, lengths, reverse, training);
            LstmpRun<Scalar> run = lstmp_core_forward(in, training, direction(reverse));
            EXPECT_TRUE(all_close("y", run.y, want.y, tol));
            EXPECT_TRUE(all_close("h_n", run.h_n, want.h_n, tol));
            EXPECT_TRUE(all_close("c_n", run.c_n, want.c_n, tol));
            if (!training) continue;
            lstmp_core_backward(in, run, direction(reverse));
            EXPECT_TRUE(all_close("dx", run.dx, want.dx, tol));
            EXPECT_TRUE(all_close("dh0", run.dh0, want.dh0, tol));
            EXPECT_TRUE(all_close("dc0", run.dc0, want.dc0, tol));
            EXPECT_TRUE(all_close("dw_ih (sum over sequences)", run.dw_ih, want.dw_ih[0], tol));
            EXPECT_TRUE(all_close("dw_hh (sum over sequences)", run.dw_hh, want.dw_hh[0], tol));
            EXPECT_TRUE(all_close("dbias (sum over sequences)", run.dbias, want.db_a[0], tol));
            EXPECT_TRUE(all_close("dw_hr (sum over sequences)", run.dw_hr, want.dw_hr[0], tol));
          }
        }
      }
    }
  }
}

// batch_sizes all N describes the dense batch: the same results, up to rounding.
TYPED_TEST(PackedLstm, FullBatchSizesEqualTheDenseBatch) {
  using Scalar = TypeParam;
  const Lengths lengths{4, 4, 4};
  for (bool reverse : {false, true}) {
    SCOPED_TRACE(reverse ? "reverse" : "forward");
    const LstmpData dense = lstm_dense_data(lengths, 3, 5, 0, Variant::kPlain);
    const LstmpInputs<Scalar> dense_in(dense);
    const LstmpInputs<Scalar> packed_in(lstm_packed(dense, lengths));
    const LstmpRun<Scalar> a = lstmp_core_forward_backward(dense_in, direction(reverse));
    const LstmpRun<Scalar> b = lstmp_core_forward_backward(packed_in, direction(reverse));
    const Tolerance tol = reorder_tolerance<Scalar>();
    EXPECT_TRUE(all_close("y", b.y, a.y, tol));
    EXPECT_TRUE(all_close("h_n", b.h_n, a.h_n, tol));
    EXPECT_TRUE(all_close("c_n", b.c_n, a.c_n, tol));
    EXPECT_LSTMP_GRADIENTS_CLOSE(b, a, tol);
  }
}

// ---- single GRU layer ---------------------------------------------------------------------------------

GruData gru_dense_data(const Lengths& lengths, Index input, Index hidden, bool reset_after, Variant variant) {
  GruCase c{lengths.front(), static_cast<Index>(lengths.size()), input, hidden};
  c.reset_after = reset_after;
  c.bias = c.h0 = c.dh_n = variant != Variant::kNullArguments;
  GruData d = make_gru_data(c, /*seed=*/5);
  if (variant == Variant::kDropout) add_masks(d, /*seed=*/12, /*p=*/0.3);
  return d;
}

GruData gru_packed(const GruData& dense, const Lengths& lengths) {
  GruData p = dense;
  p.batch_sizes = batch_sizes_of(lengths);
  p.x = pack(dense.x, lengths, dense.c.input);
  p.dy = pack(dense.dy, lengths, dense.c.hidden);
  return p;
}

GruData gru_sequence(const GruData& dense, const Lengths& lengths, Index b) {
  const Index N = dense.c.batch, len = lengths[static_cast<std::size_t>(b)], I = dense.c.input, H = dense.c.hidden;
  GruData s = dense;
  s.c.steps = len;
  s.c.batch = 1;
  s.x = sequence_of(dense.x, N, I, b, len);
  s.dy = sequence_of(dense.dy, N, H, b, len);
  s.h0 = row_of(dense.h0, b, H);
  s.dh_n = row_of(dense.dh_n, b, H);
  s.mask_x = row_of(dense.mask_x, b, I);
  s.mask_h = row_of(dense.mask_h, b, H);
  return s;
}

template <typename Scalar>
Gathered gru_sequence_by_sequence(const GruData& dense, const Lengths& lengths, bool reverse, bool training) {
  const Index N = dense.c.batch, R = rows_of(lengths), H = dense.c.hidden, I = dense.c.input;
  Gathered g;
  g.y.assign(static_cast<std::size_t>(R * H), 0.0);
  g.dx.assign(static_cast<std::size_t>(R * I), 0.0);
  g.h_n.assign(static_cast<std::size_t>(N * H), 0.0);
  g.dh0 = g.h_n;
  g.dw_ih.resize(1), g.dw_hh.resize(1), g.db_a.resize(1), g.db_b.resize(1);
  for (Index b = 0; b < N; ++b) {
    const GruInputs<Scalar> in(gru_sequence(dense, lengths, b));
    GruRun<Scalar> run = gru_core_forward(in, training, direction(reverse));
    scatter_sequence(g.y, cast<double>(run.y), lengths, H, b);
    scatter_state(g.h_n, cast<double>(run.h_n), b, N, H);
    if (!training) continue;
    gru_core_backward(in, run, direction(reverse));
    scatter_sequence(g.dx, cast<double>(run.dx), lengths, I, b);
    scatter_state(g.dh0, cast<double>(run.dh0), b, N, H);
    add_to(g.dw_ih[0], cast<double>(run.dw_ih));
    add_to(g.dw_hh[0], cast<double>(run.dw_hh));
    add_to(g.db_a[0], cast<double>(run.db_ih));
    add_to(g.db_b[0], cast<double>(run.db_hh));
  }
  return g;
}

template <typename Scalar>
class PackedGru : public ::testing::Test {};
TYPED_TEST_SUITE(PackedGru, Scalars, ScalarName);

TYPED_TEST(PackedGru, EachSequenceGetsWhatItGetsAloneInBothDirectionsAndResetModes) {
  using Scalar = TypeParam;
  for (const Lengths& lengths : length_grid()) {
    for (bool after : {true, false}) {
      for (Variant variant : kVariants) {
        for (bool reverse : {false, true}) {
          SCOPED_TRACE(describe(lengths) + (after ? " reset_after" : " reset_before") + describe(variant) +
                       (reverse ? " reverse" : " forward"));
          const GruData dense = gru_dense_data(lengths, 3, 4, after, variant);
          const GruInputs<Scalar> in(gru_packed(dense, lengths));
          const Tolerance tol = regrouping_tolerance<Scalar>();
          for (bool training : {false, true}) {
            SCOPED_TRACE(training ? "training" : "inference");
            const Gathered want = gru_sequence_by_sequence<Scalar>(dense, lengths, reverse, training);
            GruRun<Scalar> run = gru_core_forward(in, training, direction(reverse));
            EXPECT_TRUE(all_close("y", run.y, want.y, tol));
            EXPECT_TRUE(all_close("h_n", run.h_n, want.h_n, tol));
            if (!training) continue;
            gru_core_backward(in, run, direction(reverse));
            EXPECT_TRUE(all_close("dx", run.dx, want.dx, tol));
            EXPECT_TRUE(all_close("dh0", run.dh0, want.dh0, tol));
            EXPECT_TRUE(all_close("dw_ih (sum over sequences)", run.dw_ih, want.dw_ih[0], tol));
            EXPECT_TRUE(all_close("dw_hh (sum over sequences)", run.dw_hh, want.dw_hh[0], tol));
            EXPECT_TRUE(all_close("db_ih (sum over sequences)", run.db_ih, want.db_a[0], tol));
            EXPECT_TRUE(all_close("db_hh (sum over sequences)", run.db_hh, want.db_b[0], tol));
          }
        }
      }
    }
  }
}

// A packed batch with a strided output and accumulate_dx, as the second direction of a bidirectional layer.
TYPED_TEST(PackedGru, StridedOutputAndAccumulatedDxWorkOnPackedRows) {
  using Scalar = TypeParam;
  const Lengths lengths{5, 3, 3, 1};
  const GruData dense = gru_dense_data(lengths, 3, 4, true, Variant::kPlain);
  const GruInputs<Scalar> in(gru_packed(dense, lengths));
  const Index R = in.rows(), H = in.c.hidden, stride = 2 * H + 1;
  const GruRun<Scalar> plain = gru_core_forward_backward(in, direction(true));
  SequenceLayout layout = direction(true);
  layout.y_stride = stride;
  layout.accumulate_dx = true;
  GruRun<Scalar> strided = gru_core_forward(in, /*training=*/true, layout);
  strided.dx = plain.dx;  // adds the same again
  gru_core_backward(in, strided, layout);
  const Tolerance tol = reorder_tolerance<Scalar>();
  EXPECT_TRUE(all_close("y", to_dense(strided.y, R, H, stride), plain.y, tol));
  std::vector<double> twice(plain.dx.size());
  for (std::size_t k = 0; k < twice.size(); ++k) twice[k] = 2.0 * double(plain.dx[k]);
  EXPECT_TRUE(all_close("dx (accumulated)", strided.dx, twice, tol));
  EXPECT_TRUE(all_close("dh0", strided.dh0, plain.dh0, tol));
  EXPECT_TRUE(all_close("dw_hh", strided.dw_hh, plain.dw_hh, tol));
}

// ---- stacks -------------------------------------------------------------------------------------------

// A stack over `lengths`: both directions, or one (forward or reverse).
RnnStackData stack_dense_data(const Lengths& lengths, bool gru, Index proj, Index layers, Index directions,
                              bool reverse, Variant variant) {
  StackShape s{lengths.front(), static_cast<Index>(lengths.size()), 3, 4, proj, layers, directions, reverse};
  RnnStackData d = make_rnn_stack_data(s, gru, /*reset_after=*/true, /*seed=*/3);
  if (variant == Variant::kNullArguments) {
    for (RefLstmpWeights& w : d.lstm_weights) w.bias.clear();
    for (RefGruWeights& w : d.gru_weights) w.b_ih.clear(), w.b_hh.clear();
    d.h0.clear(), d.c0.clear(), d.dh_n.clear(), d.dc_n.clear();
  }
  if (variant == Variant::kDropout) add_stack_dropout(d, /*seed=*/13);
  return d;
}

RnnStackData stack_packed(const RnnStackData& dense, const Lengths& lengths) {
  const StackShape& s = dense.s;
  const Index width = s.directions * s.out(), size = s.steps * s.batch * width;
  RnnStackData p = dense;
  p.batch_sizes = batch_sizes_of(lengths);
  p.x = pack(dense.x, lengths, s.input);
  p.dy = pack(dense.dy, lengths, width);
  p.inter.clear();
  for (Index l = 0; l + 1 < s.layers && !dense.inter.empty(); ++l) {
    const std::vector<double> slice = pack(ref_slice(dense.inter, static_cast<std::size_t>(l), size), lengths, width);
    p.inter.insert(p.inter.end(), slice.begin(), slice.end());
  }
  return p;
}

RnnStackData stack_sequence(const RnnStackData& dense, const Lengths& lengths, Index b) {
  const StackShape& s = dense.s;
  const Index N = s.batch, len = lengths[static_cast<std::size_t>(b)], K = s.layers * s.directions;
  const Index width = s.directions * s.out(), size = s.steps * N * width;
  RnnStackData q = dense;
  q.s.steps = len;
  q.s.batch = 1;
  q.x = sequence_of(dense.x, N, s.input, b, len);
  q.dy = sequence_of(dense.dy, N, width, b, len);
  q.inter.clear();
  for (Index l = 0; l + 1 < s.layers && !dense.inter.empty(); ++l) {
    const std::vector<double> slice =
        sequence_of(ref_slice(dense.inter, static_cast<std::size_t>(l), size), N, width, b, len);
    q.inter.insert(q.inter.end(), slice.begin(), slice.end());
  }
  const auto states = [&](const std::vector<double>& v, Index w) {
    std::vector<double> out;
    for (Index k = 0; k < K && !v.empty(); ++k) {
      const std::vector<double> row = row_of(v, b, w, k, N);
      out.insert(out.end(), row.begin(), row.end());
    }
    return out;
  };
  q.h0 = states(dense.h0, s.out());
  q.dh_n = states(dense.dh_n, s.out());
  q.c0 = states(dense.c0, s.hidden);
  q.dc_n = states(dense.dc_n, s.hidden);
  for (std::size_t k = 0; k < q.masks.size(); ++k) {
    q.masks[k].input = row_of(dense.masks[k].input, b, s.layer_input(static_cast<Index>(k) / s.directions));
    q.masks[k].recurrent = row_of(dense.masks[k].recurrent, b, s.out());
  }
  return q;
}

template <typename Scalar>
Gathered stack_sequence_by_sequence(const RnnStackData& dense, const Lengths& lengths, bool gru) {
  const StackShape& s = dense.s;
  const Index N = s.batch, R = rows_of(lengths), K = s.layers * s.directions, width = s.directions * s.out();
  Gathered g;
  g.y.assign(static_cast<std::size_t>(R * width), 0.0);
  g.dx.assign(static_cast<std::size_t>(R * s.input), 0.0);
  g.h_n.assign(static_cast<std::size_t>(K * N * s.out()), 0.0);
  g.dh0 = g.h_n;
  g.c_n.assign(gru ? 0 : static_cast<std::size_t>(K * N * s.hidden), 0.0);
  g.dc0 = g.c_n;
  g.dw_ih.resize(K), g.dw_hh.resize(K), g.db_a.resize(K), g.db_b.resize(K), g.dw_hr.resize(K);
  for (Index b = 0; b < N; ++b) {
    const RnnStackInputs<Scalar> in(stack_sequence(dense, lengths, b));
    const RnnStackRun<Scalar> run = gru ? gru_stack_core_forward_backward(in) : lstm_stack_core_forward_backward(in);
    scatter_sequence(g.y, cast<double>(run.y), lengths, width, b);
    scatter_sequence(g.dx, cast<double>(run.dx), lengths, s.input, b);
    scatter_state(g.h_n, cast<double>(run.h_n), b, N, s.out());
    scatter_state(g.dh0, cast<double>(run.dh0), b, N, s.out());
    if (!gru) {
      scatter_state(g.c_n, cast<double>(run.c_n), b, N, s.hidden);
      scatter_state(g.dc0, cast<double>(run.dc0), b, N, s.hidden);
    }
    for (Index k = 0; k < K; ++k) {
      add_to(g.dw_ih[k], cast<double>(run.dw_ih[k]));
      add_to(g.dw_hh[k], cast<double>(run.dw_hh[k]));
      add_to(g.db_a[k], cast<double>(run.db_a[k]));
      add_to(gru ? g.db_b[k] : g.dw_hr[k], cast<double>(gru ? run.db_b[k] : run.dw_hr[k]));
    }
  }
  return g;
}

template <typename Scalar>
void expect_packed_stack_equals_sequences(const Lengths& lengths, bool gru, Index proj, Index layers,
                                          Index directions, bool reverse, Variant variant) {
  const RnnStackData dense = stack_dense_data(lengths, gru, proj, layers, directions, reverse, variant);
  const Gathered want = stack_sequence_by_sequence<Scalar>(dense, lengths, gru);
  const RnnStackInputs<Scalar> in(stack_packed(dense, lengths));
  const RnnStackRun<Scalar> run = gru ? gru_stack_core_forward_backward(in) : lstm_stack_core_forward_backward(in);
  const Tolerance tol = regrouping_tolerance<Scalar>();
  // Inference takes its own paths (no cache; the inner layers in two alternating buffers, dropout in place).
  const RnnStackRun<Scalar> inference =
      gru ? gru_stack_core_forward(in, /*training=*/false) : lstm_stack_core_forward(in, /*training=*/false);
  EXPECT_TRUE(all_close("y (inference)", inference.y, want.y, tol));
  EXPECT_TRUE(all_close("h_n (inference)", inference.h_n, want.h_n, tol));
  EXPECT_TRUE(all_close("c_n (inference)", inference.c_n, want.c_n, tol));
  EXPECT_TRUE(all_close("y", run.y, want.y, tol));
  EXPECT_TRUE(all_close("h_n", run.h_n, want.h_n, tol));
  EXPECT_TRUE(all_close("c_n", run.c_n, want.c_n, tol));
  EXPECT_TRUE(all_close("dx", run.dx, want.dx, tol));
  EXPECT_TRUE(all_close("dh0", run.dh0, want.dh0, tol));
  EXPECT_TRUE(all_close("dc0", run.dc0, want.dc0, tol));
  for (std::size_t k = 0; k < want.dw_ih.size(); ++k) {
    SCOPED_TRACE("k = l*D + d = " + std::to_string(k));
    EXPECT_TRUE(all_close("dw_ih (sum over sequences)", run.dw_ih[k], want.dw_ih[k], tol));
    EXPECT_TRUE(all_close("dw_hh (sum over sequences)", run.dw_hh[k], want.dw_hh[k], tol));
    EXPECT_TRUE(all_close(gru ? "db_ih (sum over sequences)" : "dbias (sum over sequences)", run.db_a[k], want.db_a[k],
                          tol));
    if (gru) {
      EXPECT_TRUE(all_close("db_hh (sum over sequences)", run.db_b[k], want.db_b[k], tol));
    } else {
      EXPECT_TRUE(all_close("dw_hr (sum over sequences)", run.dw_hr[k], want.dw_hr[k], tol));
    }
  }
}

template <typename Scalar>
class PackedStack : public ::testing::Test {};
TYPED_TEST_SUITE(PackedStack, Scalars, ScalarName);

// Two and three layers (an inner layer reads what another wrote), both directions or one forward or one
// reverse (go_backwards).
struct PackedStackLayout {
  Index layers, directions;
  bool reverse;
};
const PackedStackLayout kPackedStackLayouts[] = {
    {2, 2, false}, {2, 1, false}, {2, 1, true}, {3, 2, false}, {3, 1, true},
};

std::string describe(const PackedStackLayout& layout) {
  return " L=" + std::to_string(layout.layers) + " D=" + std::to_string(layout.directions) +
         (layout.reverse ? " reverse" : "");
}

TYPED_TEST(PackedStack, LstmStackGivesEachSequenceWhatItGetsAlone) {
  for (const Lengths& lengths : {Lengths{5, 3, 3, 1}, Lengths{2, 2}, Lengths{1}}) {
    for (Index proj : {0, 2}) {
      for (const PackedStackLayout& layout : kPackedStackLayouts) {
        for (Variant variant : kVariants) {
          SCOPED_TRACE(describe(lengths) + " P=" + std::to_string(proj) + describe(layout) + describe(variant));
          expect_packed_stack_equals_sequences<TypeParam>(lengths, /*gru=*/false, proj, layout.layers,
                                                          layout.directions, layout.reverse, variant);
        }
      }
    }
  }
}

TYPED_TEST(PackedStack, GruStackGivesEachSequenceWhatItGetsAlone) {
  for (const Lengths& lengths : {Lengths{5, 3, 3, 1}, Lengths{2, 2}, Lengths{1}}) {
    for (const PackedStackLayout& layout : kPackedStackLayouts) {
      for (Variant variant : kVariants) {
        SCOPED_TRACE(describe(lengths) + describe(layout) + describe(variant));
        expect_packed_stack_equals_sequences<TypeParam>(lengths, /*gru=*/true, 0, layout.layers, layout.directions,
                                                        layout.reverse, variant);
      }
    }
  }
}

TEST(PackedStackCacheSizes, CountThePackedRowsOnly) {
  const Lengths lengths{5, 3, 3, 1};
  const std::vector<std::int64_t> sizes = batch_sizes_of(lengths);
  StackDims dims{5, 4, 3, 6, 2, 2};
  dims.batch_sizes = sizes.data();
  const Index R = 12, K = 4;
  const LstmStackCacheSizes lstm = lstm_stack_cache_sizes(dims);
  EXPECT_EQ(lstm.gates, K * R * kGatesLstm * 6);
  EXPECT_EQ(lstm.cells, K * R * 6);
  EXPECT_EQ(lstm.hidden, R * 2 * 6);
  const GruStackCacheSizes gru = gru_stack_cache_sizes(dims, true);
  EXPECT_EQ(gru.gates, K * R * kGatesGru * 6);
  EXPECT_EQ(gru.hidden_n, K * R * 6);
  EXPECT_EQ(gru.hidden, R * 2 * 6);
  LstmDims single{5, 4, 3, 6};
  single.batch_sizes = sizes.data();
  EXPECT_EQ(lstm_cache_bytes<double>(single), R * (kGatesLstm + 1) * 6 * Index{8});
}

// ---- malformed batch_sizes ----------------------------------------------------------------------------

struct BadBatchSizes {
  const char* what;
  std::vector<std::int64_t> sizes;  // for T = 3, N = 3
  std::string message;
};

std::vector<BadBatchSizes> bad_batch_sizes() {
  return {
      {"increasing", {3, 2, 3}, "batch_sizes must be non-increasing and >= 1; batch_sizes[2] = 3"},
      {"first below N", {2, 2, 1}, "batch_sizes[0] must equal N=3, got 2"},
      {"first above N", {4, 2, 1}, "batch_sizes[0] must equal N=3, got 4"},
      {"a zero entry", {3, 0, 0}, "batch_sizes must be non-increasing and >= 1; batch_sizes[1] = 0"},
      {"a zero entry at the end", {3, 1, 0}, "batch_sizes must be non-increasing and >= 1; batch_sizes[2] = 0"},
      {"a negative entry", {3, -1, -1}, "batch_sizes must be non-increasing and >= 1; batch_sizes[1] = -1"},
  };
}

// Every entry point that reads batch_sizes checks it before touching a buffer. The buffers are sized for the
// dense case, which is at least as large as any valid packing.
TEST(PackedPreconditions, EveryEntryPointRejectsMalformedBatchSizesWithAClearMessage) {
  LstmpInputs<double> lstm(make_lstmp_data({3, 3, 2, 4}));
  LstmpRun<double> lr = lstmp_core_forward_backward(lstm);
  GruInputs<double> gru(make_gru_data({3, 3, 2, 4}));
  GruRun<double> gr = gru_core_forward_backward(gru);
  const RnnStackData lstm_stack_data = make_rnn_stack_data({3, 3, 2, 4, 0, 2, 2}, /*gru=*/false);
  const RnnStackData gru_stack_data = make_rnn_stack_data({3, 3, 2, 4, 0, 2, 2}, /*gru=*/true);
  RnnStackInputs<double> ls(lstm_stack_data), gs(gru_stack_data);
  RnnStackRun<double> lsr = lstm_stack_core_forward_backward(ls), gsr = gru_stack_core_forward_backward(gs);
  std::vector<LstmWeightGrads<double>> lsg;
  std::vector<GruWeightGrads<double>> gsg;
  for (std::size_t k = 0; k < 4; ++k) {
    lsg.push_back({lsr.dw_ih[k].data(), lsr.dw_hh[k].data(), lsr.db_a[k].data()});
    gsg.push_back({gsr.dw_ih[k].data(), gsr.dw_hh[k].data(), gsr.db_a[k].data(), gsr.db_b[k].data()});
  }

  for (const BadBatchSizes& bad : bad_batch_sizes()) {
    SCOPED_TRACE(bad.what);
    LstmDims ld = lstm.dims();
    ld.batch_sizes = bad.sizes.data();
    GruDims gd = gru.dims();
    gd.batch_sizes = bad.sizes.data();
    StackDims lsd = ls.dims(), gsd = gs.dims();
    lsd.batch_sizes = gsd.batch_sizes = bad.sizes.data();

    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          lstm_forward<double>(ld, lstm.weights(), lstm.x.data(), lstm.h0.data(), lstm.c0.data(), lr.y.data(),
                               lr.h_n.data(), lr.c_n.data(), {lr.gates.data(), lr.cells.data()});
        },
        "lstm_forward", bad.message));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          lstm_backward<double>(ld, lstm.weights(), lstm.x.data(), lstm.h0.data(), lstm.c0.data(), lr.y.data(),
                                {lr.gates.data(), lr.cells.data()}, lstm.dy.data(), lstm.dh_n.data(), lstm.dc_n.data(),
                                lr.dx.data(), lr.dh0.data(), lr.dc0.data(),
                                {lr.dw_ih.data(), lr.dw_hh.data(), lr.dbias.data()});
        },
        "lstm_backward", bad.message));
    EXPECT_TRUE(throws_invalid_argument([&] { lstm_cache_bytes<float>(ld); }, "lstm_cache_bytes", bad.message));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          gru_forward<double>(gd, gru.weights(), gru.x.data(), gru.h0.data(), gr.y.data(), gr.h_n.data(),
                              {gr.gates.data(), gr.hidden_n.data()});
        },
        "gru_forward", bad.message));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          gru_backward<double>(gd, gru.weights(), gru.x.data(), gru.h0.data(), gr.y.data(),
                               {gr.gates.data(), gr.hidden_n.data()}, gru.dy.data(), gru.dh_n.data(), gr.dx.data(),
                               gr.dh0.data(), {gr.dw_ih.data(), gr.dw_hh.data(), gr.db_ih.data(), gr.db_hh.data()});
        },
        "gru_backward", bad.message));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          lstm_stack_forward<double>(lsd, ls.lstm_weights.data(), ls.x.data(), ls.h0.data(), ls.c0.data(),
                                     lsr.y.data(), lsr.h_n.data(), lsr.c_n.data(),
                                     {lsr.gates.data(), lsr.cells.data(), lsr.hidden.data()});
        },
        "lstm_stack_forward", bad.message));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          lstm_stack_backward<double>(lsd, ls.lstm_weights.data(), ls.x.data(), ls.h0.data(), ls.c0.data(),
                                      lsr.y.data(), {lsr.gates.data(), lsr.cells.data(), lsr.hidden.data()},
                                      ls.dy.data(), ls.dh_n.data(), ls.dc_n.data(), lsr.dx.data(), lsr.dh0.data(),
                                      lsr.dc0.data(), lsg.data());
        },
        "lstm_stack_backward", bad.message));
    EXPECT_TRUE(throws_invalid_argument([&] { lstm_stack_cache_sizes(lsd); }, "lstm_stack_cache_sizes", bad.message));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          gru_stack_forward<double>(gsd, gs.gru_weights.data(), gs.x.data(), gs.h0.data(), gsr.y.data(),
                                    gsr.h_n.data(), {gsr.gates.data(), gsr.hidden_n.data(), gsr.hidden.data()});
        },
        "gru_stack_forward", bad.message));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          gru_stack_backward<double>(gsd, gs.gru_weights.data(), gs.x.data(), gs.h0.data(), gsr.y.data(),
                                     {gsr.gates.data(), gsr.hidden_n.data(), gsr.hidden.data()}, gs.dy.data(),
                                     gs.dh_n.data(), gsr.dx.data(), gsr.dh0.data(), gsg.data());
        },
        "gru_stack_backward", bad.message));
    EXPECT_TRUE(
        throws_invalid_argument([&] { gru_stack_cache_sizes(gsd, true); }, "gru_stack_cache_sizes", bad.message));
  }
}

}  // namespace
}  // namespace lstm_ext::testing
