// SPDX-License-Identifier: MIT
// gru_forward and gru_backward against the scalar reference in both formulations (reset after / before the
// recurrent product), against central finite differences, under every SequenceLayout, wherever the buffers
// sit; the stacked and bidirectional GRU (go_backwards and dropout included) against reference single
// directions composed by hand; and every documented precondition.
#include "recurrent_test_support.h"

#include "lstm_ext/gru.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace lstm_ext::testing {
namespace {

// Every shape of test_support.h's grid (T=1, N=1, H=1, odd sizes) in both formulations, with and without
// bias, h0 and (when backward_options) dh_n.
std::vector<GruCase> gru_grid(bool backward_options) {
  std::vector<GruCase> out;
  for (const LstmCase& shape : shape_grid()) {
    for (int mask = 0; mask < (backward_options ? 16 : 8); ++mask) {
      GruCase c{shape.steps, shape.batch, shape.input, shape.hidden};
      c.reset_after = mask & 1;
      c.bias = mask & 2;
      c.h0 = mask & 4;
      c.dh_n = backward_options ? (mask & 8) != 0 : false;
      out.push_back(c);
    }
  }
  return out;
}

// The cache a training forward keeps, as the reference computes it. hidden_n is kept with reset_after only.
std::vector<double> expected_hidden_n(const GruCase& c, const RefGruForward& ref) {
  return c.reset_after ? ref.hidden_n : std::vector<double>();
}

template <typename Scalar>
class GruForward : public ::testing::Test {};
TYPED_TEST_SUITE(GruForward, Scalars, ScalarName);

TYPED_TEST(GruForward, MatchesTheReferenceInBothResetModes) {
  using Scalar = TypeParam;
  for (const GruCase& c : gru_grid(/*backward_options=*/false)) {
    SCOPED_TRACE(c.describe());
    const GruData data = make_gru_data(c);
    const RefGruForward ref = gru_rounded_to<Scalar>(data).reference_forward();
    const GruInputs<Scalar> in(data);
    const Tolerance tol = forward_tolerance<Scalar>();
    for (bool training : {false, true}) {
      SCOPED_TRACE(training ? "training" : "inference");
      const GruRun<Scalar> run = gru_core_forward(in, training);
      EXPECT_TRUE(all_close("y", run.y, ref.y, tol));
      EXPECT_TRUE(all_close("h_n", run.h_n, ref.h_n, tol));
      if (training) {
        EXPECT_TRUE(all_close("cache.gates", run.gates, ref.gates, tol));
        EXPECT_TRUE(all_close("cache.hidden_n", run.hidden_n, expected_hidden_n(c, ref), tol));
      }
    }
  }
}

// The two formulations are different functions: a test that could not tell them apart would prove nothing.
TEST(GruForward, TheTwoResetModesGiveDifferentOutputs) {
  GruCase c{4, 3, 5, 6};
  c.reset_after = true;
  const GruRun<double> after = gru_core_forward(GruInputs<double>(make_gru_data(c)), /*training=*/false);
  c.reset_after = false;
  const GruRun<double> before = gru_core_forward(GruInputs<double>(make_gru_data(c)), /*training=*/false);
  double largest = 0.0;
  for (std::size_t k = 0; k < after.y.size(); ++k) largest = std::max(largest, std::abs(after.y[k] - before.y[k]));
  EXPECT_GT(largest, 1e-3);
}

// Bit for bit: the same products and gate passes, only where the gates are kept differs.
TYPED_TEST(GruForward, InferenceAndTrainingGiveIdenticalOutputs) {
  using Scalar = TypeParam;
  for (const GruCase& c : gru_grid(/*backward_options=*/false)) {
    SCOPED_TRACE(c.describe());
    const GruInputs<Scalar> in(make_gru_data(c));
    const GruRun<Scalar> inference = gru_core_forward(in, /*training=*/false);
    const GruRun<Scalar> training = gru_core_forward(in, /*training=*/true);
    EXPECT_TRUE(all_equal("y", inference.y, training.y));
    EXPECT_TRUE(all_equal("h_n", inference.h_n, training.h_n));
  }
}

TYPED_TEST(GruForward, NullInitialStateActsAsZeros) {
  using Scalar = TypeParam;
  for (const GruCase& c : gru_grid(/*backward_options=*/false)) {
    if (c.h0) continue;
    SCOPED_TRACE(c.describe());
    GruData data = make_gru_data(c);
    const GruInputs<Scalar> null_in(data);
    data.h0.assign(static_cast<std::size_t>(c.batch * c.hidden), 0.0);
    const GruInputs<Scalar> zero_in(data);
    for (bool training : {false, true}) {
      SCOPED_TRACE(training ? "training" : "inference");
      const GruRun<Scalar> a = gru_core_forward(null_in, training);
      const GruRun<Scalar> b = gru_core_forward(zero_in, training);
      const Tolerance tol = reorder_tolerance<Scalar>();
      EXPECT_TRUE(all_close("y", a.y, b.y, tol));
      EXPECT_TRUE(all_close("h_n", a.h_n, b.h_n, tol));
    }
  }
}

template <typename Scalar>
class GruBackward : public ::testing::Test {};
TYPED_TEST_SUITE(GruBackward, Scalars, ScalarName);

TYPED_TEST(GruBackward, MatchesTheReferenceInBothResetModes) {
  using Scalar = TypeParam;
  for (const GruCase& c : gru_grid(/*backward_options=*/true)) {
    SCOPED_TRACE(c.describe());
    const GruData data = gru_rounded_to<Scalar>(make_gru_data(c));
    const RefGruGrads ref = data.reference_backward(data.reference_forward());
    const GruRun<Scalar> run = gru_core_forward_backward(GruInputs<Scalar>(data));
    const Tolerance tol = backward_tolerance<Scalar>();
    EXPECT_GRU_GRADIENTS_CLOSE(run, ref, tol);
  }
}

TYPED_TEST(GruBackward, NullInitialStateAndFinalGradientActAsZeros) {
  using Scalar = TypeParam;
  for (const GruCase& shape : gru_grid(/*backward_options=*/false)) {
    if (shape.h0) continue;
    GruCase c = shape;
    c.dh_n = false;
    SCOPED_TRACE(c.describe());
    GruData data = make_gru_data(c);
    const GruRun<Scalar> a = gru_core_forward_backward(GruInputs<Scalar>(data));
    data.h0.assign(static_cast<std::size_t>(c.batch * c.hidden), 0.0);
    data.dh_n = data.h0;
    const GruRun<Scalar> b = gru_core_forward_backward(GruInputs<Scalar>(data));
    const Tolerance tol = reorder_tolerance<Scalar>();
    EXPECT_GRU_GRADIENTS_CLOSE(a, b, tol);
  }
}

TYPED_TEST(GruBackward, WritesGradientsInsteadOfAccumulating) {
  using Scalar = TypeParam;
  for (bool after : {true, false}) {
    GruCase c{5, 3, 4, 7};
    c.reset_after = after;
    SCOPED_TRACE(c.describe());
    const GruInputs<Scalar> in(make_gru_data(c));
    GruRun<Scalar> run = gru_core_forward_backward(in);
    const GruRun<Scalar> first = run;
    // The second call finds the first one's results in its output buffers: accumulating would double them.
    gru_backward<Scalar>(in.dims(), in.weights(), in.x.data(), in.h0.data(), run.y.data(),
                         {run.gates.data(), ptr_or_null(run.hidden_n)}, in.dy.data(), in.dh_n.data(), run.dx.data(),
                         run.dh0.data(), {run.dw_ih.data(), run.dw_hh.data(), run.db_ih.data(), run.db_hh.data()});
    const Tolerance tol = reorder_tolerance<Scalar>();
    EXPECT_GRU_GRADIENTS_CLOSE(run, first, tol);
  }
}

// ---- layouts ------------------------------------------------------------------------------------------

SequenceLayout reverse_layout() {
  SequenceLayout layout;
  layout.reverse = true;
  return layout;
}

// The reference of a reverse direction: x and dy reversed in time; y, the cache and dx come back reversed.
GruData gru_time_reversed(const GruData& d) {
  GruData r = d;
  r.x = ref_reverse_time(d.x, static_cast<std::size_t>(d.c.steps));
  r.dy = ref_reverse_time(d.dy, static_cast<std::size_t>(d.c.steps));
  return r;
}

template <typename Scalar>
class GruLayout : public ::testing::Test {};
TYPED_TEST_SUITE(GruLayout, Scalars, ScalarName);

TYPED_TEST(GruLayout, ReverseForwardIsTheReferenceOverReversedTime) {
  using Scalar = TypeParam;
  for (const GruCase& c : gru_grid(/*backward_options=*/false)) {
    SCOPED_TRACE(c.describe());
    const GruData data = make_gru_data(c);
    const auto T = static_cast<std::size_t>(c.steps);
    const RefGruForward ref = gru_time_reversed(gru_rounded_to<Scalar>(data)).reference_forward();
    const Tolerance tol = forward_tolerance<Scalar>();
    for (bool training : {false, true}) {
      SCOPED_TRACE(training ? "training" : "inference");
      const GruRun<Scalar> run = gru_core_forward(GruInputs<Scalar>(data), training, reverse_layout());
      EXPECT_TRUE(all_close("y", run.y, ref_reverse_time(ref.y, T), tol));
      EXPECT_TRUE(all_close("h_n (the state after t = 0)", run.h_n, ref.h_n, tol));
      if (training) {
        EXPECT_TRUE(all_close("cache.gates", run.gates, ref_reverse_time(ref.gates, T), tol));
        EXPECT_TRUE(all_close("cache.hidden_n", run.hidden_n,
                              c.reset_after ? ref_reverse_time(ref.hidden_n, T) : std::vector<double>(), tol));
      }
    }
  }
}

TYPED_TEST(GruLayout, ReverseBackwardIsTheReferenceOverReversedTime) {
  using Scalar = TypeParam;
  for (const GruCase& c : gru_grid(/*backward_options=*/true)) {
    SCOPED_TRACE(c.describe());
    const GruData reversed = gru_time_reversed(gru_rounded_to<Scalar>(make_gru_data(c)));
    RefGruGrads ref = reversed.reference_backward(reversed.reference_forward());
    ref.dx = ref_reverse_time(ref.dx, static_cast<std::size_t>(c.steps));
    const GruRun<Scalar> run = gru_core_forward_backward(GruInputs<Scalar>(make_gru_data(c)), reverse_layout());
    const Tolerance tol = backward_tolerance<Scalar>();
    EXPECT_GRU_GRADIENTS_CLOSE(run, ref, tol);
  }
}

TYPED_TEST(GruLayout, StridedOutputGivesTheDenseResultsAndLeavesTheGapsAlone) {
  using Scalar = TypeParam;
  for (const LstmCase& shape : shape_grid()) {
    const Index T = shape.steps, N = shape.batch, H = shape.hidden;
    for (bool after : {true, false}) {
      for (bool reverse : {false, true}) {
        const Index stride = 2 * H + 3;  // odd and past 2H: the halves of a bidirectional output
        SequenceLayout layout, dense_layout;
        layout.reverse = dense_layout.reverse = reverse;
        layout.y_stride = stride;
        GruCase c{shape.steps, shape.batch, shape.input, shape.hidden};
        c.reset_after = after;
        SCOPED_TRACE(c.describe() + (reverse ? " reverse" : ""));
        const GruInputs<Scalar> in(make_gru_data(c));
        const GruRun<Scalar> dense = gru_core_forward_backward(in, dense_layout);
        const GruRun<Scalar> strided = gru_core_forward_backward(in, layout);
        const Tolerance tol = reorder_tolerance<Scalar>();
        EXPECT_TRUE(all_close("y", to_dense(strided.y, T * N, H, stride), dense.y, tol));
        std::size_t written_gaps = 0;
        for (Index r = 0; r < T * N; ++r) {
          for (Index j = H; j < stride; ++j) {
            written_gaps += !std::isnan(strided.y[static_cast<std::size_t>(r * stride + j)]);
          }
        }
        EXPECT_EQ(written_gaps, 0u) << "y columns past H were written";
        EXPECT_TRUE(all_close("h_n", strided.h_n, dense.h_n, tol));
        // gru_core_backward leaves NaN in the gaps of dy: reading them would poison every gradient.
        EXPECT_GRU_GRADIENTS_CLOSE(strided, dense, tol);
      }
    }
  }
}

TYPED_TEST(GruLayout, AccumulateDxAddsToWhatDxHolds) {
  using Scalar = TypeParam;
  for (bool after : {true, false}) {
    GruCase c{5, 3, 4, 7};
    c.reset_after = after;
    SCOPED_TRACE(c.describe());
    const GruInputs<Scalar> in(make_gru_data(c));
    const GruRun<Scalar> overwrite = gru_core_forward_backward(in);
    SequenceLayout layout;
    layout.accumulate_dx = true;
    GruRun<Scalar> accumulate = gru_core_forward(in, /*training=*/true, layout);
    std::mt19937_64 rng(3);
    const std::vector<Scalar> before = cast<Scalar>(uniform(rng, c.steps * c.batch * c.input, 1.0));
    accumulate.dx = before;
    gru_core_backward(in, accumulate, layout);
    std::vector<double> expected(before.size());
    for (std::size_t k = 0; k < expected.size(); ++k) expected[k] = double(before[k]) + double(overwrite.dx[k]);
    const Tolerance tol = reorder_tolerance<Scalar>();
    EXPECT_TRUE(all_close("dx", accumulate.dx, expected, tol));
    EXPECT_TRUE(all_close("dw_ih", accumulate.dw_ih, overwrite.dw_ih, tol));
    EXPECT_TRUE(all_close("dh0", accumulate.dh0, overwrite.dh0, tol));
  }
}

// ---- bit-for-bit reproducibility ----------------------------------------------------------------------

// The same inputs give the same bits wherever the caller's buffers sit (see test_determinism.cpp): every
// buffer, weights and masks included, shifted by 1 .. 64 bytes.
template <typename Scalar>
class GruDeterminism : public ::testing::Test {};
TYPED_TEST_SUITE(GruDeterminism, Scalars, ScalarName);

TYPED_TEST(GruDeterminism, ResultsDoNotDependOnBufferAddresses) {
  using Scalar = TypeParam;
  for (GruCase c : {GruCase{5, 3, 4, 7}, GruCase{4, 1, 6, 13}}) {
    for (int mask = 0; mask < 4; ++mask) {
      c.reset_after = mask & 1;
      GruData data = make_gru_data(c);
      if (mask & 2) add_masks(data, /*seed=*/5, /*p=*/0.5);
      SCOPED_TRACE(c.describe() + (mask & 2 ? " masks" : ""));
      const GruInputs<Scalar> in(data);
      const GruRun<Scalar> base = gru_core_forward_backward(in);
      for (Index offset : element_offsets<Scalar>()) {
        SCOPED_TRACE("buffers shifted by " + std::to_string(offset) + " elements");
        ShiftedCopy<Scalar> w_ih(in.w_ih, offset), w_hh(in.w_hh, offset), b_ih(in.b_ih, offset), b_hh(in.b_hh, offset);
        ShiftedCopy<Scalar> mask_x(in.mask_x, offset), mask_h(in.mask_h, offset);
        ShiftedCopy<Scalar> x(in.x, offset), h0(in.h0, offset), y(base.y, offset), h_n(base.h_n, offset);
        ShiftedCopy<Scalar> gates(base.gates, offset), hidden_n(base.hidden_n, offset);
        ShiftedCopy<Scalar> dy(in.dy, offset), dh_n(in.dh_n, offset), dx(base.dx, offset), dh0(base.dh0, offset);
        ShiftedCopy<Scalar> dw_ih(base.dw_ih, offset), dw_hh(base.dw_hh, offset), db_ih(base.db_ih, offset),
            db_hh(base.db_hh, offset);
        const GruWeights<Scalar> w{w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data(), c.reset_after};
        const DropoutMasks<Scalar> masks{mask_x.data(), mask_h.data()};
        gru_forward<Scalar>(in.dims(), w, x.data(), h0.data(), y.data(), h_n.data(), {gates.data(), hidden_n.data()},
                            {}, masks);
        EXPECT_TRUE(all_equal("y", y.values(), base.y));
        EXPECT_TRUE(all_equal("h_n", h_n.values(), base.h_n));
        EXPECT_TRUE(all_equal("cache.gates", gates.values(), base.gates));
        EXPECT_TRUE(all_equal("cache.hidden_n", hidden_n.values(), base.hidden_n));
        gru_backward<Scalar>(in.dims(), w, x.data(), h0.data(), y.data(), {gates.data(), hidden_n.data()}, dy.data(),
                             dh_n.data(), dx.data(), dh0.data(),
                             {dw_ih.data(), dw_hh.data(), db_ih.data(), db_hh.data()}, {}, masks);
        EXPECT_TRUE(all_equal("dx", dx.values(), base.dx));
        EXPECT_TRUE(all_equal("dh0", dh0.values(), base.dh0));
        EXPECT_TRUE(all_equal("dw_ih", dw_ih.values(), base.dw_ih));
        EXPECT_TRUE(all_equal("dw_hh", dw_hh.values(), base.dw_hh));
        EXPECT_TRUE(all_equal("db_ih", db_ih.values(), base.db_ih));
        EXPECT_TRUE(all_equal("db_hh", db_hh.values(), base.db_hh));
      }
    }
  }
}

// ---- central finite differences (double) --------------------------------------------------------------

using GruLoss = std::function<double(const GruData&)>;

double gru_core_loss(const GruData& d) {
  const GruRun<double> run = gru_core_forward(GruInputs<double>(d), /*training=*/false);
  return dot(run.y, d.dy) + dot(run.h_n, d.dh_n);
}

double gru_reference_loss(const GruData& d) {
  const RefGruForward fwd = d.reference_forward();
  return dot(fwd.y, d.dy) + dot(fwd.h_n, d.dh_n);
}

void expect_gru_gradients_match_finite_differences(const GruLoss& loss, const GruData& data, const RefGruGrads& g) {
  const auto numerical = [&](std::vector<double> GruData::*member) {
    return numerical_gradient<GruData>(loss, data, [member](GruData& d) -> std::vector<double>& { return d.*member; });
  };
  const Tolerance tol = kFiniteDifferenceTolerance;
  EXPECT_TRUE(all_close("dw_ih", g.dw_ih, numerical(&GruData::w_ih), tol));
  EXPECT_TRUE(all_close("dw_hh", g.dw_hh, numerical(&GruData::w_hh), tol));
  EXPECT_TRUE(all_close("db_ih", g.db_ih, numerical(&GruData::b_ih), tol));
  EXPECT_TRUE(all_close("db_hh", g.db_hh, numerical(&GruData::b_hh), tol));
  EXPECT_TRUE(all_close("dx", g.dx, numerical(&GruData::x), tol));
  EXPECT_TRUE(all_close("dh0", g.dh0, numerical(&GruData::h0), tol));
}

// T=1 and T>1, N=1 and N>1, H=1; both formulations.
std::vector<GruCase> tiny_gru_cases() {
  std::vector<GruCase> out;
  for (GruCase c : {GruCase{3, 2, 3, 2}, GruCase{1, 1, 2, 3}, GruCase{4, 1, 1, 1}}) {
    for (bool after : {true, false}) {
      c.reset_after = after;
      out.push_back(c);
    }
  }
  return out;
}

TEST(GruBackwardFiniteDifferences, CoreGradientsMatchCentralDifferencesInBothResetModes) {
  for (const GruCase& c : tiny_gru_cases()) {
    SCOPED_TRACE(c.describe());
    const GruData data = make_gru_data(c, /*seed=*/1);
    const GruRun<double> run = gru_core_forward_backward(GruInputs<double>(data));
    const RefGruGrads grads{run.dx, run.dh0, run.dw_ih, run.dw_hh, run.db_ih, run.db_hh};
    expect_gru_gradients_match_finite_differences(gru_core_loss, data, grads);
  }
}

TEST(GruBackwardFiniteDifferences, ReverseLayoutGradientsMatchCentralDifferences) {
  for (const GruCase& c : tiny_gru_cases()) {
    SCOPED_TRACE(c.describe());
    const GruData data = make_gru_data(c, /*seed=*/4);
    const GruRun<double> run = gru_core_forward_backward(GruInputs<double>(data), reverse_layout());
    const RefGruGrads grads{run.dx, run.dh0, run.dw_ih, run.dw_hh, run.db_ih, run.db_hh};
    const GruLoss loss = [](const GruData& d) {
      const GruRun<double> r = gru_core_forward(GruInputs<double>(d), /*training=*/false, reverse_layout());
      return dot(r.y, d.dy) + dot(r.h_n, d.dh_n);
    };
    expect_gru_gradients_match_finite_differences(loss, data, grads);
  }
}

// The yardstick itself: if the reference's BPTT were wrong, every comparison above would prove nothing.
TEST(GruBackwardFiniteDifferences, ReferenceGradientsMatchCentralDifferencesInBothResetModes) {
  for (const GruCase& c : tiny_gru_cases()) {
    SCOPED_TRACE(c.describe());
    const GruData data = make_gru_data(c, /*seed=*/2);
    expect_gru_gradients_match_finite_differences(gru_reference_loss, data,
                                                  data.reference_backward(data.reference_forward()));
  }
}

// ---- stacks -------------------------------------------------------------------------------------------

// Layers 1-2, one or two directions, one reverse direction (go_backwards); T=1/N=1/H=1 and odd shapes.
std::vector<StackShape> gru_stack_grid() {
  std::vector<StackShape> out;
  for (StackShape s : {StackShape{1, 1, 1, 1}, StackShape{4, 3, 5, 2}, StackShape{5, 2, 3, 7}}) {
    for (Index layers : {1, 2}) {
      for (Index directions : {1, 2}) {
        s.layers = layers;
        s.directions = directions;
        s.reverse = false;
        out.push_back(s);
        if (directions == 1) {
          s.reverse = true;
          out.push_back(s);
        }
      }
    }
  }
  return out;
}

// The reference of a stack, composed of reference single directions. go_backwards (D = 1, reverse) is every
// layer over reversed time, which is the whole stack over reversed time.
struct GruStackReference {
  RefGruStackForward fwd;
  RefGruStackGrads grads;
};

GruStackReference gru_stack_reference(const RnnStackData& d) {
  const auto T = static_cast<std::size_t>(d.s.steps);
  const auto in_time = [&](const std::vector<double>& v) { return d.s.reverse ? ref_reverse_time(v, T) : v; };
  const std::size_t inter_size = d.inter.size() / std::max<std::size_t>(1, static_cast<std::size_t>(d.s.layers - 1));
  std::vector<double> inter;
  for (std::size_t l = 0; l + 1 < static_cast<std::size_t>(d.s.layers) && !d.inter.empty(); ++l) {
    const std::vector<double> slice = in_time(ref_slice(d.inter, l, inter_size));
    inter.insert(inter.end(), slice.begin(), slice.end());
  }
  GruStackReference ref;
  ref.fwd = ref_gru_stack_forward(d.ref_dims(), d.gru_weights, in_time(d.x), d.h0, inter, d.masks);
  ref.grads = ref_gru_stack_backward(d.ref_dims(), d.gru_weights, d.h0, ref.fwd, in_time(d.dy), d.dh_n, inter, d.masks);
  ref.fwd.y = in_time(ref.fwd.y);
  for (std::size_t l = 1; l < ref.fwd.layer_inputs.size(); ++l) {
    ref.fwd.layer_inputs[l] = in_time(ref.fwd.layer_inputs[l]);
  }
  ref.grads.dx = in_time(ref.grads.dx);
  return ref;
}

// The core's cache layout: [L*D, R, F] in time order, then the inner layers' outputs.
std::vector<double> gru_concat_runs(const RefGruStackForward& fwd, const StackShape& s, bool hidden_n) {
  std::vector<double> out;
  for (std::size_t k = 0; k < fwd.runs.size(); ++k) {
    const std::vector<double>& v = hidden_n ? fwd.runs[k].hidden_n : fwd.runs[k].gates;
    const bool reverse = s.reverse || static_cast<Index>(k) % s.directions == 1;
    const std::vector<double> in_time = reverse ? ref_reverse_time(v, static_cast<std::size_t>(s.steps)) : v;
    out.insert(out.end(), in_time.begin(), in_time.end());
  }
  return out;
}

std::vector<double> gru_concat_hidden(const RefGruStackForward& fwd) {
  std::vector<double> out;
  for (std::size_t l = 1; l < fwd.layer_inputs.size(); ++l) {
    out.insert(out.end(), fwd.layer_inputs[l].begin(), fwd.layer_inputs[l].end());
  }
  return out;
}

template <typename Scalar>
class GruStack : public ::testing::Test {};
TYPED_TEST_SUITE(GruStack, Scalars, ScalarName);

TYPED_TEST(GruStack, ForwardMatchesComposedSingleDirectionsInBothResetModes) {
  using Scalar = TypeParam;
  for (const StackShape& s : gru_stack_grid()) {
    for (int mask = 0; mask < 4; ++mask) {
      const bool after = mask & 1, dropout = mask & 2;
      SCOPED_TRACE(s.describe() + (after ? " reset_after" : " reset_before") + (dropout ? " dropout" : ""));
      RnnStackData data = make_rnn_stack_data(s, /*gru=*/true, after);
      if (dropout) add_stack_dropout(data, /*seed=*/14);
      const GruStackReference ref = gru_stack_reference(rnn_stack_rounded_to<Scalar>(data));
      const RnnStackInputs<Scalar> in(data);
      const Tolerance tol = forward_tolerance<Scalar>();
      for (bool training : {false, true}) {
        SCOPED_TRACE(training ? "training" : "inference");
        const RnnStackRun<Scalar> run = gru_stack_core_forward(in, training);
        EXPECT_TRUE(all_close("y", run.y, ref.fwd.y, tol));
        EXPECT_TRUE(all_close("h_n", run.h_n, ref.fwd.h_n, tol));
        if (training) {
          EXPECT_TRUE(all_close("cache.gates", run.gates, gru_concat_runs(ref.fwd, s, false), tol));
          EXPECT_TRUE(all_close("cache.hidden_n", run.hidden_n,
                                after ? gru_concat_runs(ref.fwd, s, true) : std::vector<double>(), tol));
          EXPECT_TRUE(all_close("cache.hidden", run.hidden, gru_concat_hidden(ref.fwd), tol));
        }
      }
    }
  }
}

TYPED_TEST(GruStack, BackwardMatchesComposedSingleDirectionsInBothResetModes) {
  using Scalar = TypeParam;
  for (const StackShape& s : gru_stack_grid()) {
    for (int mask = 0; mask < 8; ++mask) {
      const bool after = mask & 1, optional = mask & 2, dropout = mask & 4;  // optional: bias, h0, dh_n given
      SCOPED_TRACE(s.describe() + (after ? " reset_after" : " reset_before") +
                   (optional ? " bias,h0,dh_n" : " bias,h0,dh_n=null") + (dropout ? " dropout" : ""));
      RnnStackData data = make_rnn_stack_data(s, /*gru=*/true, after);
      if (dropout) add_stack_dropout(data, /*seed=*/15);
      if (!optional) {
        for (RefGruWeights& w : data.gru_weights) w.b_ih.clear(), w.b_hh.clear();
        data.h0.clear();
        data.dh_n.clear();
      }
      data = rnn_stack_rounded_to<Scalar>(data);
      const GruStackReference ref = gru_stack_reference(data);
      const RnnStackInputs<Scalar> in(data);
      const RnnStackRun<Scalar> run = gru_stack_core_forward_backward(in);
      const Tolerance tol = backward_tolerance<Scalar>();
      EXPECT_TRUE(all_close("dx", run.dx, ref.grads.dx, tol));
      EXPECT_TRUE(all_close("dh0", run.dh0, ref.grads.dh0, tol));
      for (std::size_t k = 0; k < ref.grads.runs.size(); ++k) {
        SCOPED_TRACE("k = l*D + d = " + std::to_string(k));
        EXPECT_TRUE(all_close("dw_ih", run.dw_ih[k], ref.grads.runs[k].dw_ih, tol));
        EXPECT_TRUE(all_close("dw_hh", run.dw_hh[k], ref.grads.runs[k].dw_hh, tol));
        EXPECT_TRUE(all_close("db_ih", run.db_a[k], ref.grads.runs[k].db_ih, tol));
        EXPECT_TRUE(all_close("db_hh", run.db_b[k], ref.grads.runs[k].db_hh, tol));
      }
    }
  }
}

TEST(GruStackFiniteDifferences, GradientsMatchCentralDifferencesForTwoBidirectionalLayers) {
  for (bool after : {true, false}) {
    SCOPED_TRACE(after ? "reset_after" : "reset_before");
    expect_stack_gradients_match_finite_differences(
        make_rnn_stack_data({3, 2, 3, 2, 0, 2, 2}, /*gru=*/true, after, /*seed=*/1), /*gru=*/true);
  }
}

TEST(GruStackCacheSizes, CountsEveryLayerAndDirectionAndHiddenNOnlyWithResetAfter) {
  for (const StackShape& s : gru_stack_grid()) {
    SCOPED_TRACE(s.describe());
    const StackDims dims{s.steps, s.batch, s.input, s.hidden, s.layers, s.directions, 0, s.reverse};
    const Index K = s.layers * s.directions, rows = s.steps * s.batch;
    for (bool after : {true, false}) {
      const GruStackCacheSizes sizes = gru_stack_cache_sizes(dims, after);
      EXPECT_EQ(sizes.gates, K * rows * kGatesGru * s.hidden);
      EXPECT_EQ(sizes.hidden_n, after ? K * rows * s.hidden : 0);
      EXPECT_EQ(sizes.hidden, (s.layers - 1) * rows * s.directions * s.hidden);
    }
  }
}

// ---- preconditions -------------------------------------------------------------------------------------

GruCase small_gru_case(bool reset_after) {
  GruCase c{3, 2, 4, 5};
  c.reset_after = reset_after;
  return c;
}

// Valid arguments of a small case in one formulation; each test breaks one of them.
struct ValidGruCall {
  GruInputs<double> in;
  GruRun<double> run;

  explicit ValidGruCall(bool reset_after = true)
      : in(make_gru_data(small_gru_case(reset_after))), run(gru_core_forward_backward(in)) {}

  GruCache<double> cache() { return {run.gates.data(), ptr_or_null(run.hidden_n)}; }
  GruWeightGrads<double> grads() { return {run.dw_ih.data(), run.dw_hh.data(), run.db_ih.data(), run.db_hh.data()}; }
  void forward(const GruDims& dims, const GruWeights<double>& w, const GruCache<double>& cache) {
    gru_forward<double>(dims, w, in.x.data(), in.h0.data(), run.y.data(), run.h_n.data(), cache);
  }
  void backward(const GruDims& dims, const GruWeights<double>& w, const GruCache<double>& cache,
                const GruWeightGrads<double>& g) {
    gru_backward<double>(dims, w, in.x.data(), in.h0.data(), run.y.data(), cache, in.dy.data(), in.dh_n.data(),
                         run.dx.data(), run.dh0.data(), g);
  }
};

TEST(GruPreconditions, RejectsNullWeights) {
  ValidGruCall c;
  for (int which = 0; which < 2; ++which) {
    GruWeights<double> w = c.in.weights();
    (which == 0 ? w.w_ih : w.w_hh) = nullptr;
    const char* message = which == 0 ? "w_ih is null" : "w_hh is null";
    EXPECT_TRUE(throws_invalid_argument([&] { c.forward(c.in.dims(), w, c.cache()); }, "gru_forward", message));
    EXPECT_TRUE(
        throws_invalid_argument([&] { c.backward(c.in.dims(), w, c.cache(), c.grads()); }, "gru_backward", message));
  }
}

TEST(GruPreconditions, RejectsAProjection) {
  ValidGruCall c;
  GruDims dims = c.in.dims();
  dims.proj = 2;
  const std::string message = "a GRU has no projection: dims.proj must be 0";
  EXPECT_TRUE(throws_invalid_argument([&] { c.forward(dims, c.in.weights(), c.cache()); }, "gru_forward", message));
  EXPECT_TRUE(throws_invalid_argument([&] { c.backward(dims, c.in.weights(), c.cache(), c.grads()); }, "gru_backward",
                                      message));
}

TEST(GruPreconditions, RejectsOneBiasWithoutTheOther) {
  ValidGruCall c;
  for (int which = 0; which < 2; ++which) {
    SCOPED_TRACE(which == 0 ? "b_ih without b_hh" : "b_hh without b_ih");
    GruWeights<double> w = c.in.weights();
    (which == 0 ? w.b_hh : w.b_ih) = nullptr;
    const std::string message = "b_ih and b_hh must be both given or both null";
    EXPECT_TRUE(throws_invalid_argument([&] { c.forward(c.in.dims(), w, c.cache()); }, "gru_forward", message));
    EXPECT_TRUE(
        throws_invalid_argument([&] { c.backward(c.in.dims(), w, c.cache(), c.grads()); }, "gru_backward", message));
  }
}

TEST(GruPreconditions, RejectsZeroOrNegativeDimensions) {
  ValidGruCall c;
  for (int which = 0; which < 4; ++which) {
    GruDims dims = c.in.dims();
    (which == 0 ? dims.steps : which == 1 ? dims.batch : which == 2 ? dims.input : dims.hidden) = which % 2 ? -1 : 0;
    SCOPED_TRACE(which);
    EXPECT_TRUE(throws_invalid_argument([&] { c.forward(dims, c.in.weights(), c.cache()); }, "gru_forward",
                                        "all dimensions must be >= 1"));
    EXPECT_TRUE(throws_invalid_argument([&] { c.backward(dims, c.in.weights(), c.cache(), c.grads()); },
                                        "gru_backward", "all dimensions must be >= 1"));
  }
}

TEST(GruPreconditions, ForwardRejectsNullInputOrOutput) {
  ValidGruCall c;
  for (int which = 0; which < 2; ++which) {
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          gru_forward<double>(c.in.dims(), c.in.weights(), which == 0 ? nullptr : c.in.x.data(), c.in.h0.data(),
                              which == 1 ? nullptr : c.run.y.data(), c.run.h_n.data(), c.cache());
        },
        "gru_forward", "x and y are required"));
  }
}

TEST(GruPreconditions, ForwardRejectsAHiddenNCacheThatDoesNotMatchResetAfter) {
  for (bool after : {true, false}) {
    SCOPED_TRACE(after ? "reset_after without hidden_n" : "reset_before with hidden_n");
    ValidGruCall c(after);
    std::vector<double> spare = nan_buffer<double>(c.in.rows() * c.in.c.hidden);
    const GruCache<double> wrong{c.run.gates.data(), after ? nullptr : spare.data()};
    EXPECT_TRUE(throws_invalid_argument([&] { c.forward(c.in.dims(), c.in.weights(), wrong); }, "gru_forward",
                                        "a training forward keeps cache.hidden_n exactly when reset_after"));
    EXPECT_TRUE(throws_invalid_argument([&] { c.backward(c.in.dims(), c.in.weights(), wrong, c.grads()); },
                                        "gru_backward",
                                        "the cache of a training forward is required (gates; hidden_n exactly when "
                                        "reset_after)"));
  }
}

TEST(GruPreconditions, ForwardRejectsHiddenNWithoutGates) {
  ValidGruCall c;
  const GruCache<double> half{nullptr, c.run.hidden_n.data()};
  EXPECT_TRUE(throws_invalid_argument([&] { c.forward(c.in.dims(), c.in.weights(), half); }, "gru_forward",
                                      "cache.hidden_n without cache.gates"));
}

TEST(GruPreconditions, BackwardRejectsAMissingCacheOrOutputs) {
  ValidGruCall c;
  EXPECT_TRUE(throws_invalid_argument([&] { c.backward(c.in.dims(), c.in.weights(), {}, c.grads()); }, "gru_backward",
                                      "the cache of a training forward is required"));
  for (int which = 0; which < 2; ++which) {
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          gru_backward<double>(c.in.dims(), c.in.weights(), c.in.x.data(), c.in.h0.data(), c.run.y.data(), c.cache(),
                               c.in.dy.data(), c.in.dh_n.data(), which == 0 ? nullptr : c.run.dx.data(),
                               which == 1 ? nullptr : c.run.dh0.data(), c.grads());
        },
        "gru_backward", "dx and dh0 are required"));
  }
}

TEST(GruPreconditions, BackwardRejectsBiasGradientsThatDoNotMatchTheBiases) {
  ValidGruCall c;
  GruWeightGrads<double> g = c.grads();
  g.db_hh = nullptr;
  EXPECT_TRUE(throws_invalid_argument([&] { c.backward(c.in.dims(), c.in.weights(), c.cache(), g); }, "gru_backward",
                                      "db_ih and db_hh must be given exactly when the layer has biases"));
  GruWeights<double> no_bias = c.in.weights();
  no_bias.b_ih = no_bias.b_hh = nullptr;
  EXPECT_TRUE(throws_invalid_argument([&] { c.backward(c.in.dims(), no_bias, c.cache(), c.grads()); }, "gru_backward",
                                      "db_ih and db_hh must be given exactly when the layer has biases"));
}

// Valid arguments of a two-layer bidirectional stack.
struct ValidGruStackCall {
  RnnStackData data = make_rnn_stack_data({3, 2, 4, 5, 0, 2, 2}, /*gru=*/true);
  RnnStackInputs<double> in{data};
  RnnStackRun<double> run = gru_stack_core_forward_backward(in);

  GruStackCache<double> cache() { return {run.gates.data(), run.hidden_n.data(), run.hidden.data()}; }
  void forward(const StackDims& dims, const GruWeights<double>* w) {
    gru_stack_forward<double>(dims, w, in.x.data(), in.h0.data(), run.y.data(), run.h_n.data(), cache());
  }
  void backward(const StackDims& dims, const GruWeights<double>* w) {
    std::vector<GruWeightGrads<double>> grads;
    for (std::size_t k = 0; k < run.dw_ih.size(); ++k) {
      grads.push_back({run.dw_ih[k].data(), run.dw_hh[k].data(), run.db_a[k].data(), run.db_b[k].data()});
    }
    gru_stack_backward<double>(dims, w, in.x.data(), in.h0.data(), run.y.data(), cache(), in.dy.data(),
                               in.dh_n.data(), run.dx.data(), run.dh0.data(), grads.data());
  }
};

TEST(GruStackPreconditions, RejectsMixedResetAfter) {
  ValidGruStackCall c;
  for (std::size_t k : {std::size_t{1}, std::size_t{3}}) {
    SCOPED_TRACE("k = " + std::to_string(k));
    std::vector<GruWeights<double>> weights = c.in.gru_weights;
    weights[k].reset_after = false;
    const std::string message = "reset_after must be the same for every layer";
    EXPECT_TRUE(throws_invalid_argument([&] { c.forward(c.in.dims(), weights.data()); }, "gru_stack_forward", message));
    EXPECT_TRUE(
        throws_invalid_argument([&] { c.backward(c.in.dims(), weights.data()); }, "gru_stack_backward", message));
  }
}

TEST(GruStackPreconditions, RejectsAProjection) {
  ValidGruStackCall c;
  StackDims dims = c.in.dims();
  dims.proj = 2;
  const std::string message = "a GRU has no projection: dims.proj must be 0";
  EXPECT_TRUE(throws_invalid_argument([&] { c.forward(dims, c.in.gru_weights.data()); }, "gru_stack_forward", message));
  EXPECT_TRUE(
      throws_invalid_argument([&] { c.backward(dims, c.in.gru_weights.data()); }, "gru_stack_backward", message));
  EXPECT_TRUE(throws_invalid_argument([&] { gru_stack_cache_sizes(dims, true); }, "gru_stack_cache_sizes", message));
}

TEST(GruStackPreconditions, RejectsNullWeightsAndReverseWithTwoDirections) {
  ValidGruStackCall c;
  EXPECT_TRUE(throws_invalid_argument([&] { c.forward(c.in.dims(), nullptr); }, "gru_stack_forward",
                                      "weights are required"));
  StackDims dims = c.in.dims();
  dims.reverse = true;
  EXPECT_TRUE(throws_invalid_argument([&] { c.forward(dims, c.in.gru_weights.data()); }, "gru_stack_forward",
                                      "reverse (go_backwards) needs directions == 1"));
}

// The per-(layer, direction) checks are gru_forward's own, and so are their messages.
TEST(GruStackPreconditions, PerLayerChecksKeepTheSingleDirectionMessages) {
  ValidGruStackCall c;
  std::vector<GruWeights<double>> weights = c.in.gru_weights;
  weights[2].b_hh = nullptr;
  EXPECT_TRUE(throws_invalid_argument([&] { c.forward(c.in.dims(), weights.data()); }, "gru_forward",
                                      "b_ih and b_hh must be both given or both null"));
}

}  // namespace
}  // namespace lstm_ext::testing
