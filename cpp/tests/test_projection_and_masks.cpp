// SPDX-License-Identifier: MIT
// The LSTM's projection (dims.proj, w_hr) against the scalar reference and central finite differences; the
// variational DropoutMasks of both cells (ones change no bit, zeros and scales match the reference and the
// finite differences); and StackDropout: the inter-layer masks are applied between layers exactly as a
// composition of single layers by hand would, and the stacks' gradients with every kind of dropout match
// central differences.
#include "recurrent_test_support.h"

#include "lstm_ext/gru.h"
#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace lstm_ext::testing {
namespace {

// ---- LSTM with projection -----------------------------------------------------------------------------

// Every shape of test_support.h's grid with P = 1 and P = H - 1 (torch requires P < H; H = 1 gets P = 1
// too, which the core allows), with and without bias, h0, c0 and the final-state gradients.
std::vector<LstmpCase> projection_grid() {
  std::vector<LstmpCase> out;
  for (const LstmCase& shape : shape_grid()) {
    for (Index proj : {Index{1}, std::max<Index>(1, shape.hidden - 1)}) {
      for (int mask = 0; mask < 4; ++mask) {
        LstmpCase c{shape.steps, shape.batch, shape.input, shape.hidden, proj};
        c.bias = mask & 1;
        c.h0 = c.c0 = mask & 2;
        c.final_grads = mask != 1;
        out.push_back(c);
      }
      if (shape.hidden <= 2) break;  // both P are 1
    }
  }
  return out;
}

template <typename Scalar>
class LstmProjection : public ::testing::Test {};
TYPED_TEST_SUITE(LstmProjection, Scalars, ScalarName);

TYPED_TEST(LstmProjection, ForwardMatchesTheReference) {
  using Scalar = TypeParam;
  for (const LstmpCase& c : projection_grid()) {
    SCOPED_TRACE(c.describe());
    const LstmpData data = make_lstmp_data(c);
    const RefLstmpForward ref = lstmp_rounded_to<Scalar>(data).reference_forward();
    const LstmpInputs<Scalar> in(data);
    const Tolerance tol = forward_tolerance<Scalar>();
    for (bool training : {false, true}) {
      SCOPED_TRACE(training ? "training" : "inference");
      const LstmpRun<Scalar> run = lstmp_core_forward(in, training);
      EXPECT_TRUE(all_close("y", run.y, ref.y, tol));
      EXPECT_TRUE(all_close("h_n", run.h_n, ref.h_n, tol));
      EXPECT_TRUE(all_close("c_n", run.c_n, ref.c_n, tol));
      if (training) {
        EXPECT_TRUE(all_close("cache.gates", run.gates, ref.gates, tol));
        EXPECT_TRUE(all_close("cache.cells", run.cells, ref.cells, tol));
      }
    }
  }
}

TYPED_TEST(LstmProjection, BackwardMatchesTheReferenceIncludingDwHr) {
  using Scalar = TypeParam;
  for (const LstmpCase& c : projection_grid()) {
    SCOPED_TRACE(c.describe());
    const LstmpData data = lstmp_rounded_to<Scalar>(make_lstmp_data(c));
    const RefLstmpGrads ref = data.reference_backward(data.reference_forward());
    const LstmpRun<Scalar> run = lstmp_core_forward_backward(LstmpInputs<Scalar>(data));
    const Tolerance tol = backward_tolerance<Scalar>();
    EXPECT_LSTMP_GRADIENTS_CLOSE(run, ref, tol);
  }
}

// A reverse direction writing into one half of a bidirectional output, P wide.
TYPED_TEST(LstmProjection, ReverseStridedLayoutIsTheReferenceOverReversedTime) {
  using Scalar = TypeParam;
  for (const LstmpCase& c : projection_grid()) {
    SCOPED_TRACE(c.describe());
    const LstmpData data = make_lstmp_data(c);
    const auto T = static_cast<std::size_t>(c.steps);
    LstmpData reversed = lstmp_rounded_to<Scalar>(data);
    reversed.x = ref_reverse_time(reversed.x, T);
    reversed.dy = ref_reverse_time(reversed.dy, T);
    const RefLstmpForward ref = reversed.reference_forward();
    RefLstmpGrads ref_grads = reversed.reference_backward(ref);
    ref_grads.dx = ref_reverse_time(ref_grads.dx, T);
    SequenceLayout layout;
    layout.reverse = true;
    layout.y_stride = 2 * c.proj + 1;
    const LstmpRun<Scalar> run = lstmp_core_forward_backward(LstmpInputs<Scalar>(data), layout);
    EXPECT_TRUE(all_close("y", to_dense(run.y, c.steps * c.batch, c.proj, layout.y_stride), ref_reverse_time(ref.y, T),
                          forward_tolerance<Scalar>()));
    EXPECT_TRUE(all_close("h_n", run.h_n, ref.h_n, forward_tolerance<Scalar>()));
    EXPECT_LSTMP_GRADIENTS_CLOSE(run, ref_grads, backward_tolerance<Scalar>());
  }
}

// The new reference with P = 0 and no masks is reference_lstm.h's LSTM: one yardstick, not two.
TEST(LstmProjectionReference, WithoutProjectionItIsThePlainReference) {
  for (const LstmCase& shape : shape_grid()) {
    SCOPED_TRACE(shape.describe());
    const LstmData plain = make_data(shape);
    LstmpData data = make_lstmp_data({shape.steps, shape.batch, shape.input, shape.hidden});
    data.w_ih = plain.w_ih, data.w_hh = plain.w_hh, data.bias = plain.bias, data.x = plain.x;
    data.h0 = plain.h0, data.c0 = plain.c0, data.dy = plain.dy, data.dh_n = plain.dh_n, data.dc_n = plain.dc_n;
    const RefForward want = plain.reference_forward();
    const RefGrads want_grads = plain.reference_backward(want);
    const RefLstmpForward got = data.reference_forward();
    const RefLstmpGrads got_grads = data.reference_backward(got);
    const Tolerance tol{1e-14, 1e-15};
    EXPECT_TRUE(all_close("y", got.y, want.y, tol));
    EXPECT_TRUE(all_close("c_n", got.c_n, want.c_n, tol));
    EXPECT_GRADIENTS_CLOSE(got_grads, want_grads, tol);
  }
}

// ---- central finite differences of one layer (double) -------------------------------------------------

double lstmp_core_loss(const LstmpData& d) {
  const LstmpRun<double> run = lstmp_core_forward(LstmpInputs<double>(d), /*training=*/false);
  return dot(run.y, d.dy) + dot(run.h_n, d.dh_n) + dot(run.c_n, d.dc_n);
}

double lstmp_reference_loss(const LstmpData& d) {
  const RefLstmpForward fwd = d.reference_forward();
  return dot(fwd.y, d.dy) + dot(fwd.h_n, d.dh_n) + dot(fwd.c_n, d.dc_n);
}

void expect_lstmp_gradients_match_finite_differences(const std::function<double(const LstmpData&)>& loss,
                                                     const LstmpData& data, const RefLstmpGrads& g) {
  const auto numerical = [&](std::vector<double> LstmpData::*member) {
    return numerical_gradient<LstmpData>(loss, data,
                                         [member](LstmpData& d) -> std::vector<double>& { return d.*member; });
  };
  const Tolerance tol = kFiniteDifferenceTolerance;
  EXPECT_TRUE(all_close("dw_ih", g.dw_ih, numerical(&LstmpData::w_ih), tol));
  EXPECT_TRUE(all_close("dw_hh", g.dw_hh, numerical(&LstmpData::w_hh), tol));
  EXPECT_TRUE(all_close("dbias", g.dbias, numerical(&LstmpData::bias), tol));
  EXPECT_TRUE(all_close("dw_hr", g.dw_hr, numerical(&LstmpData::w_hr), tol));
  EXPECT_TRUE(all_close("dx", g.dx, numerical(&LstmpData::x), tol));
  EXPECT_TRUE(all_close("dh0", g.dh0, numerical(&LstmpData::h0), tol));
  EXPECT_TRUE(all_close("dc0", g.dc0, numerical(&LstmpData::c0), tol));
}

RefLstmpGrads grads_of(const LstmpRun<double>& run) {
  return {run.dx, run.dh0, run.dc0, run.dw_ih, run.dw_hh, run.dbias, run.dw_hr};
}

// T=1 and T>1, N=1 and N>1, H=1 (P=1), P=1 and P>1.
const LstmpCase kTinyProjectionCases[] = {{3, 2, 3, 3, 2}, {1, 1, 2, 3, 1}, {4, 1, 1, 1, 1}, {2, 3, 2, 4, 3}};

TEST(LstmProjectionFiniteDifferences, CoreGradientsIncludingDwHrMatchCentralDifferences) {
  for (const LstmpCase& c : kTinyProjectionCases) {
    SCOPED_TRACE(c.describe());
    const LstmpData data = make_lstmp_data(c, /*seed=*/1);
    expect_lstmp_gradients_match_finite_differences(lstmp_core_loss, data,
                                                    grads_of(lstmp_core_forward_backward(LstmpInputs<double>(data))));
  }
}

// The yardstick itself, with projection and masks: if its BPTT were wrong, the comparisons would prove nothing.
TEST(LstmProjectionFiniteDifferences, ReferenceGradientsWithProjectionAndMasksMatchCentralDifferences) {
  for (const LstmpCase& c : kTinyProjectionCases) {
    SCOPED_TRACE(c.describe());
    LstmpData data = make_lstmp_data(c, /*seed=*/2);
    add_masks(data, 7);
    expect_lstmp_gradients_match_finite_differences(lstmp_reference_loss, data,
                                                    data.reference_backward(data.reference_forward()));
  }
}

// ---- preconditions of the projection ------------------------------------------------------------------

TEST(LstmProjectionPreconditions, WHrAndDwHrMustBeGivenExactlyWhenProjIsPositive) {
  LstmpInputs<double> in(make_lstmp_data({3, 2, 4, 5, 2}));
  LstmpRun<double> run = lstmp_core_forward_backward(in);
  const auto forward = [&](const LstmDims& dims, const LstmWeights<double>& w) {
    lstm_forward<double>(dims, w, in.x.data(), nullptr, nullptr, run.y.data(), run.h_n.data(), run.c_n.data(),
                         {run.gates.data(), run.cells.data()});
  };
  const auto backward = [&](const LstmDims& dims, const LstmWeights<double>& w, const LstmWeightGrads<double>& g) {
    lstm_backward<double>(dims, w, in.x.data(), nullptr, nullptr, run.y.data(), {run.gates.data(), run.cells.data()},
                          in.dy.data(), nullptr, nullptr, run.dx.data(), run.dh0.data(), run.dc0.data(), g);
  };
  LstmWeights<double> no_w_hr = in.weights();
  no_w_hr.w_hr = nullptr;
  const LstmWeightGrads<double> grads{run.dw_ih.data(), run.dw_hh.data(), run.dbias.data(), run.dw_hr.data()};
  EXPECT_TRUE(throws_invalid_argument([&] { forward(in.dims(), no_w_hr); }, "lstm_forward",
                                      "w_hr must be given exactly when dims.proj > 0"));
  EXPECT_TRUE(throws_invalid_argument([&] { backward(in.dims(), no_w_hr, grads); }, "lstm_backward",
                                      "w_hr must be given exactly when dims.proj > 0"));
  LstmDims no_proj = in.dims();
  no_proj.proj = 0;
  EXPECT_TRUE(throws_invalid_argument([&] { forward(no_proj, in.weights()); }, "lstm_forward",
                                      "w_hr must be given exactly when dims.proj > 0"));
  LstmWeightGrads<double> no_dw_hr = grads;
  no_dw_hr.dw_hr = nullptr;
  EXPECT_TRUE(throws_invalid_argument([&] { backward(in.dims(), in.weights(), no_dw_hr); }, "lstm_backward",
                                      "dw_hr must be given exactly when dims.proj > 0"));
  LstmDims negative = in.dims();
  negative.proj = -1;
  EXPECT_TRUE(throws_invalid_argument([&] { forward(negative, in.weights()); }, "lstm_forward",
                                      "all dimensions must be >= 1"));
}

// The same inputs give the same bits wherever the caller's buffers sit (see test_determinism.cpp), with the
// projection's extra products and the masks: every buffer shifted by 1 .. 64 bytes.
TYPED_TEST(LstmProjection, ResultsWithProjectionAndMasksDoNotDependOnBufferAddresses) {
  using Scalar = TypeParam;
  for (const LstmpCase& c : {LstmpCase{5, 3, 4, 7, 3}, LstmpCase{4, 1, 6, 13, 5}}) {
    for (bool masks_given : {false, true}) {
      SCOPED_TRACE(c.describe() + (masks_given ? " masks" : ""));
      LstmpData data = make_lstmp_data(c);
      if (masks_given) add_masks(data, /*seed=*/6, /*p=*/0.5);
      const LstmpInputs<Scalar> in(data);
      const LstmpRun<Scalar> base = lstmp_core_forward_backward(in);
      for (Index offset : element_offsets<Scalar>()) {
        SCOPED_TRACE("buffers shifted by " + std::to_string(offset) + " elements");
        ShiftedCopy<Scalar> w_ih(in.w_ih, offset), w_hh(in.w_hh, offset), bias(in.bias, offset), w_hr(in.w_hr, offset);
        ShiftedCopy<Scalar> mask_x(in.mask_x, offset), mask_h(in.mask_h, offset);
        ShiftedCopy<Scalar> x(in.x, offset), h0(in.h0, offset), c0(in.c0, offset), y(base.y, offset);
        ShiftedCopy<Scalar> h_n(base.h_n, offset), c_n(base.c_n, offset), gates(base.gates, offset),
            cells(base.cells, offset);
        ShiftedCopy<Scalar> dy(in.dy, offset), dh_n(in.dh_n, offset), dc_n(in.dc_n, offset), dx(base.dx, offset);
        ShiftedCopy<Scalar> dh0(base.dh0, offset), dc0(base.dc0, offset), dw_ih(base.dw_ih, offset),
            dw_hh(base.dw_hh, offset), dbias(base.dbias, offset), dw_hr(base.dw_hr, offset);
        const LstmWeights<Scalar> w{w_ih.data(), w_hh.data(), bias.data(), w_hr.data()};
        const DropoutMasks<Scalar> masks{mask_x.data(), mask_h.data()};
        lstm_forward<Scalar>(in.dims(), w, x.data(), h0.data(), c0.data(), y.data(), h_n.data(), c_n.data(),
                             {gates.data(), cells.data()}, {}, masks);
        EXPECT_TRUE(all_equal("y", y.values(), base.y));
        EXPECT_TRUE(all_equal("h_n", h_n.values(), base.h_n));
        EXPECT_TRUE(all_equal("c_n", c_n.values(), base.c_n));
        EXPECT_TRUE(all_equal("cache.gates", gates.values(), base.gates));
        EXPECT_TRUE(all_equal("cache.cells", cells.values(), base.cells));
        lstm_backward<Scalar>(in.dims(), w, x.data(), h0.data(), c0.data(), y.data(), {gates.data(), cells.data()},
                              dy.data(), dh_n.data(), dc_n.data(), dx.data(), dh0.data(), dc0.data(),
                              {dw_ih.data(), dw_hh.data(), dbias.data(), dw_hr.data()}, {}, masks);
        EXPECT_TRUE(all_equal("dx", dx.values(), base.dx));
        EXPECT_TRUE(all_equal("dh0", dh0.values(), base.dh0));
        EXPECT_TRUE(all_equal("dc0", dc0.values(), base.dc0));
        EXPECT_TRUE(all_equal("dw_ih", dw_ih.values(), base.dw_ih));
        EXPECT_TRUE(all_equal("dw_hh", dw_hh.values(), base.dw_hh));
        EXPECT_TRUE(all_equal("dbias", dbias.values(), base.dbias));
        EXPECT_TRUE(all_equal("dw_hr", dw_hr.values(), base.dw_hr));
      }
    }
  }
}

// ---- variational masks --------------------------------------------------------------------------------

// Which masks a case gets: random dropout (zeros and 1/(1-p)) on one side or both, or zeros everywhere.
enum class MaskKind { kDropoutBoth, kDropoutInputOnly, kDropoutRecurrentOnly, kAllZeros };

std::string describe(MaskKind kind) {
  switch (kind) {
    case MaskKind::kDropoutBoth: return "dropout masks on x and h";
    case MaskKind::kDropoutInputOnly: return "dropout mask on x only";
    case MaskKind::kDropoutRecurrentOnly: return "dropout mask on h only";
    case MaskKind::kAllZeros: return "all-zero masks";
  }
  return "";
}

const MaskKind kMaskKinds[] = {MaskKind::kDropoutBoth, MaskKind::kDropoutInputOnly, MaskKind::kDropoutRecurrentOnly,
                               MaskKind::kAllZeros};

template <typename Data>
void apply_masks(Data& d, MaskKind kind, std::uint64_t seed) {
  add_masks(d, seed, 0.4, kind != MaskKind::kDropoutRecurrentOnly, kind != MaskKind::kDropoutInputOnly);
  if (kind == MaskKind::kAllZeros) {
    for (double& e : d.mask_x) e = 0.0;
    for (double& e : d.mask_h) e = 0.0;
  }
}

template <typename Data>
void set_all_ones_masks(Data& d, Index input_width, Index recurrent_width) {
  d.mask_x.assign(static_cast<std::size_t>(d.c.batch * input_width), 1.0);
  d.mask_h.assign(static_cast<std::size_t>(d.c.batch * recurrent_width), 1.0);
}

// Shapes with N > 1 (so rows get different masks), T=1, N=1, and a projection.
const LstmpCase kMaskLstmCases[] = {{5, 3, 4, 6}, {1, 1, 2, 3}, {4, 1, 3, 2}, {3, 4, 5, 7, 3}, {6, 2, 17, 9, 4}};
const GruCase kMaskGruCases[] = {{5, 3, 4, 6}, {1, 1, 2, 3}, {4, 1, 3, 2}, {6, 2, 17, 9}};

template <typename Scalar>
class VariationalMasks : public ::testing::Test {};
TYPED_TEST_SUITE(VariationalMasks, Scalars, ScalarName);

// Multiplying by 1 is exact, so masks of ones must change no bit of anything, whatever path they take.
TYPED_TEST(VariationalMasks, AllOnesMasksEqualNoMasksBitwiseForTheLstm) {
  using Scalar = TypeParam;
  for (const LstmpCase& c : kMaskLstmCases) {
    for (bool reverse : {false, true}) {
      SCOPED_TRACE(c.describe() + (reverse ? " reverse" : ""));
      LstmpData data = make_lstmp_data(c);
      const LstmpInputs<Scalar> plain(data);
      set_all_ones_masks(data, c.input, c.out());
      const LstmpInputs<Scalar> ones(data);
      SequenceLayout layout;
      layout.reverse = reverse;
      const LstmpRun<Scalar> inference_a = lstmp_core_forward(plain, /*training=*/false, layout);
      const LstmpRun<Scalar> inference_b = lstmp_core_forward(ones, /*training=*/false, layout);
      EXPECT_TRUE(all_equal("y (inference)", inference_b.y, inference_a.y));
      EXPECT_TRUE(all_equal("h_n (inference)", inference_b.h_n, inference_a.h_n));
      EXPECT_TRUE(all_equal("c_n (inference)", inference_b.c_n, inference_a.c_n));
      const LstmpRun<Scalar> a = lstmp_core_forward_backward(plain, layout);
      const LstmpRun<Scalar> b = lstmp_core_forward_backward(ones, layout);
      EXPECT_TRUE(all_equal("y", b.y, a.y));
      EXPECT_TRUE(all_equal("cache.gates", b.gates, a.gates));
      EXPECT_TRUE(all_equal("cache.cells", b.cells, a.cells));
      EXPECT_LSTMP_GRADIENTS_CLOSE(b, a, (Tolerance{0.0, 0.0}));
    }
  }
}

TYPED_TEST(VariationalMasks, AllOnesMasksEqualNoMasksBitwiseForTheGru) {
  using Scalar = TypeParam;
  for (GruCase c : kMaskGruCases) {
    for (bool after : {true, false}) {
      for (bool reverse : {false, true}) {
        c.reset_after = after;
        SCOPED_TRACE(c.describe() + (reverse ? " reverse" : ""));
        GruData data = make_gru_data(c);
        const GruInputs<Scalar> plain(data);
        set_all_ones_masks(data, c.input, c.hidden);
        const GruInputs<Scalar> ones(data);
        SequenceLayout layout;
        layout.reverse = reverse;
        const GruRun<Scalar> inference_a = gru_core_forward(plain, /*training=*/false, layout);
        const GruRun<Scalar> inference_b = gru_core_forward(ones, /*training=*/false, layout);
        EXPECT_TRUE(all_equal("y (inference)", inference_b.y, inference_a.y));
        EXPECT_TRUE(all_equal("h_n (inference)", inference_b.h_n, inference_a.h_n));
        const GruRun<Scalar> a = gru_core_forward_backward(plain, layout);
        const GruRun<Scalar> b = gru_core_forward_backward(ones, layout);
        EXPECT_TRUE(all_equal("y", b.y, a.y));
        EXPECT_TRUE(all_equal("cache.gates", b.gates, a.gates));
        EXPECT_TRUE(all_equal("cache.hidden_n", b.hidden_n, a.hidden_n));
        EXPECT_GRU_GRADIENTS_CLOSE(b, a, (Tolerance{0.0, 0.0}));
      }
    }
  }
}

TYPED_TEST(VariationalMasks, LstmMasksOfZerosAndScalesMatchTheReference) {
  using Scalar = TypeParam;
  for (const LstmpCase& c : kMaskLstmCases) {
    for (MaskKind kind : kMaskKinds) {
      SCOPED_TRACE(c.describe() + ", " + describe(kind));
      LstmpData data = make_lstmp_data(c);
      apply_masks(data, kind, 21);
      data = lstmp_rounded_to<Scalar>(data);
      const RefLstmpForward ref = data.reference_forward();
      const LstmpInputs<Scalar> in(data);
      const LstmpRun<Scalar> inference = lstmp_core_forward(in, /*training=*/false);
      EXPECT_TRUE(all_close("y (inference)", inference.y, ref.y, forward_tolerance<Scalar>()));
      const LstmpRun<Scalar> run = lstmp_core_forward_backward(in);
      EXPECT_TRUE(all_close("y", run.y, ref.y, forward_tolerance<Scalar>()));
      EXPECT_TRUE(all_close("h_n", run.h_n, ref.h_n, forward_tolerance<Scalar>()));
      EXPECT_TRUE(all_close("c_n", run.c_n, ref.c_n, forward_tolerance<Scalar>()));
      EXPECT_TRUE(all_close("cache.gates", run.gates, ref.gates, forward_tolerance<Scalar>()));
      EXPECT_LSTMP_GRADIENTS_CLOSE(run, data.reference_backward(ref), backward_tolerance<Scalar>());
    }
  }
}

TYPED_TEST(VariationalMasks, GruMasksOfZerosAndScalesMatchTheReferenceInBothResetModes) {
  using Scalar = TypeParam;
  for (GruCase c : kMaskGruCases) {
    for (bool after : {true, false}) {
      for (MaskKind kind : kMaskKinds) {
        c.reset_after = after;
        SCOPED_TRACE(c.describe() + ", " + describe(kind));
        GruData data = make_gru_data(c);
        apply_masks(data, kind, 22);
        data = gru_rounded_to<Scalar>(data);
        const RefGruForward ref = data.reference_forward();
        const GruInputs<Scalar> in(data);
        const GruRun<Scalar> inference = gru_core_forward(in, /*training=*/false);
        EXPECT_TRUE(all_close("y (inference)", inference.y, ref.y, forward_tolerance<Scalar>()));
        const GruRun<Scalar> run = gru_core_forward_backward(in);
        EXPECT_TRUE(all_close("y", run.y, ref.y, forward_tolerance<Scalar>()));
        EXPECT_TRUE(all_close("h_n", run.h_n, ref.h_n, forward_tolerance<Scalar>()));
        EXPECT_TRUE(all_close("cache.gates", run.gates, ref.gates, forward_tolerance<Scalar>()));
        EXPECT_TRUE(all_close("cache.hidden_n", run.hidden_n, after ? ref.hidden_n : std::vector<double>(),
                              forward_tolerance<Scalar>()));
        EXPECT_GRU_GRADIENTS_CLOSE(run, data.reference_backward(ref), backward_tolerance<Scalar>());
      }
    }
  }
}

// The mask multiplies x before the projection and nothing else: with a zero input mask, x cannot matter.
TEST(VariationalMasks, AZeroInputMaskMakesTheOutputIndependentOfXAndDxZero) {
  LstmpData data = make_lstmp_data({4, 2, 3, 5, 2});
  data.mask_x.assign(static_cast<std::size_t>(2 * 3), 0.0);
  const LstmpRun<double> a = lstmp_core_forward_backward(LstmpInputs<double>(data));
  for (double& e : data.x) e = -3.0 * e + 1.0;
  const LstmpRun<double> b = lstmp_core_forward_backward(LstmpInputs<double>(data));
  EXPECT_TRUE(all_equal("y", b.y, a.y));
  EXPECT_TRUE(all_equal("dx", a.dx, std::vector<double>(a.dx.size(), 0.0)));
  EXPECT_TRUE(all_equal("dw_ih", a.dw_ih, std::vector<double>(a.dw_ih.size(), 0.0)));
}

// The recurrent mask multiplies h_{t-1} where it enters the recurrent product, and only there: the GRU's
// z * h_{t-1} term still carries the unmasked state, so a zero recurrent mask is not the same as h0 = 0.
TEST(VariationalMasks, AZeroRecurrentMaskLeavesTheGruUpdateTermUnmasked) {
  for (bool after : {true, false}) {
    GruCase c{1, 2, 3, 4};
    c.reset_after = after;
    SCOPED_TRACE(c.describe());
    GruData data = make_gru_data(c);
    data.mask_h.assign(static_cast<std::size_t>(2 * 4), 0.0);
    const GruRun<double> masked = gru_core_forward(GruInputs<double>(data), /*training=*/false);
    GruData zero_state = data;
    zero_state.mask_h.clear();
    zero_state.h0.assign(zero_state.h0.size(), 0.0);
    const GruRun<double> no_state = gru_core_forward(GruInputs<double>(zero_state), /*training=*/false);
    // With h0 = 0 the gates are the same; h = (1 - z) n + z h0 differs by z * h0.
    const RefGruForward ref = data.reference_forward();
    EXPECT_TRUE(all_close("y", masked.y, ref.y, forward_tolerance<double>()));
    std::vector<double> expected = no_state.y;
    for (std::size_t e = 0; e < expected.size(); ++e) expected[e] += ref.gates[(e / 4) * 12 + 4 + e % 4] * data.h0[e];
    EXPECT_TRUE(all_close("y - z * h0", masked.y, expected, reorder_tolerance<double>()));
  }
}

TEST(VariationalMasksFiniteDifferences, LstmGradientsWithMasksMatchCentralDifferences) {
  for (const LstmpCase& c : {LstmpCase{3, 2, 3, 3, 0}, LstmpCase{3, 2, 3, 3, 2}, LstmpCase{2, 3, 2, 2, 1}}) {
    SCOPED_TRACE(c.describe());
    LstmpData data = make_lstmp_data(c, /*seed=*/3);
    add_masks(data, 8);
    expect_lstmp_gradients_match_finite_differences(lstmp_core_loss, data,
                                                    grads_of(lstmp_core_forward_backward(LstmpInputs<double>(data))));
  }
}

TEST(VariationalMasksFiniteDifferences, GruGradientsWithMasksMatchCentralDifferencesInBothResetModes) {
  const auto core_loss = [](const GruData& d) {
    const GruRun<double> run = gru_core_forward(GruInputs<double>(d), /*training=*/false);
    return dot(run.y, d.dy) + dot(run.h_n, d.dh_n);
  };
  const auto reference_loss = [](const GruData& d) {
    const RefGruForward fwd = d.reference_forward();
    return dot(fwd.y, d.dy) + dot(fwd.h_n, d.dh_n);
  };
  for (GruCase c : {GruCase{3, 2, 3, 3}, GruCase{2, 3, 2, 2}}) {
    for (bool after : {true, false}) {
      c.reset_after = after;
      SCOPED_TRACE(c.describe());
      GruData data = make_gru_data(c, /*seed=*/3);
      add_masks(data, 9);
      const GruRun<double> run = gru_core_forward_backward(GruInputs<double>(data));
      const RefGruGrads ref = data.reference_backward(data.reference_forward());
      for (int which = 0; which < 2; ++which) {
        SCOPED_TRACE(which == 0 ? "core" : "reference");
        const std::function<double(const GruData&)> loss =
            which == 0 ? std::function<double(const GruData&)>(core_loss) : reference_loss;
        const auto numerical = [&](std::vector<double> GruData::*member) {
          return numerical_gradient<GruData>(loss, data,
                                             [member](GruData& d) -> std::vector<double>& { return d.*member; });
        };
        const Tolerance tol = kFiniteDifferenceTolerance;
        EXPECT_TRUE(all_close("dx", which == 0 ? run.dx : ref.dx, numerical(&GruData::x), tol));
        EXPECT_TRUE(all_close("dh0", which == 0 ? run.dh0 : ref.dh0, numerical(&GruData::h0), tol));
        EXPECT_TRUE(all_close("dw_ih", which == 0 ? run.dw_ih : ref.dw_ih, numerical(&GruData::w_ih), tol));
        EXPECT_TRUE(all_close("dw_hh", which == 0 ? run.dw_hh : ref.dw_hh, numerical(&GruData::w_hh), tol));
        EXPECT_TRUE(all_close("db_ih", which == 0 ? run.db_ih : ref.db_ih, numerical(&GruData::b_ih), tol));
        EXPECT_TRUE(all_close("db_hh", which == 0 ? run.db_hh : ref.db_hh, numerical(&GruData::b_hh), tol));
      }
    }
  }
}

// ---- StackDropout -------------------------------------------------------------------------------------

// Stacks with dropout between the layers (and, when asked, variational masks on every layer and direction).
RnnStackData dropout_stack_data(const StackShape& s, bool gru, bool reset_after, bool variational,
                                std::uint64_t seed = 0) {
  RnnStackData d = make_rnn_stack_data(s, gru, reset_after, seed);
  add_stack_dropout(d, seed + 100, 0.3, variational);
  return d;
}

// What a stack computes, composed by hand from single-direction inference calls: each direction writes its
// half of the layer's output, which is multiplied by inter[l] before it feeds layer l+1.
template <typename Scalar>
struct ByHand {
  std::vector<Scalar> y, h_n, c_n, hidden;  // hidden: the inner layers' outputs before the dropout
};

template <typename Scalar>
ByHand<Scalar> compose_by_hand(const RnnStackInputs<Scalar>& in, bool gru) {
  const StackShape& s = in.s;
  const Index R = in.rows(), N = s.batch, H = s.hidden, O = s.out(), D = s.directions, width = D * O;
  ByHand<Scalar> out;
  out.h_n = nan_buffer<Scalar>(s.layers * D * N * O);
  out.c_n = gru ? std::vector<Scalar>() : nan_buffer<Scalar>(s.layers * D * N * H);
  std::vector<Scalar> layer_in = in.x;
  for (Index l = 0; l < s.layers; ++l) {
    std::vector<Scalar> layer_out = nan_buffer<Scalar>(R * width);
    for (Index d = 0; d < D; ++d) {
      const Index k = l * D + d;
      SequenceDims dims{s.steps, N, s.layer_input(l), H, s.proj};
      dims.batch_sizes = in.dims().batch_sizes;
      const SequenceLayout layout{d == 1 || s.reverse, width, false};
      const DropoutMasks<Scalar> masks =
          in.masks.empty() ? DropoutMasks<Scalar>{} : in.masks[static_cast<std::size_t>(k)];
      const Scalar* h0 = in.h0.empty() ? nullptr : in.h0.data() + k * N * O;
      if (gru) {
        gru_forward<Scalar>(dims, in.gru_weights[static_cast<std::size_t>(k)], layer_in.data(), h0,
                            layer_out.data() + d * O, out.h_n.data() + k * N * O, {}, layout, masks);
      } else {
        const Scalar* c0 = in.c0.empty() ? nullptr : in.c0.data() + k * N * H;
        lstm_forward<Scalar>(dims, in.lstm_weights[static_cast<std::size_t>(k)], layer_in.data(), h0, c0,
                             layer_out.data() + d * O, out.h_n.data() + k * N * O, out.c_n.data() + k * N * H, {},
                             layout, masks);
      }
    }
    if (l + 1 < s.layers) {
      out.hidden.insert(out.hidden.end(), layer_out.begin(), layer_out.end());
      for (Index e = 0; e < R * width && !in.inter.empty(); ++e) layer_out[e] *= in.inter[l * R * width + e];
    }
    layer_in = std::move(layer_out);
  }
  out.y = std::move(layer_in);
  return out;
}

// Two and three layers, both directions or one forward, with and without projection.
std::vector<StackShape> dropout_stack_shapes() {
  return {{4, 3, 5, 4, 0, 2, 2}, {4, 3, 5, 4, 2, 2, 2}, {3, 2, 3, 5, 0, 3, 1}, {1, 1, 2, 3, 2, 3, 2},
          {5, 2, 3, 4, 3, 2, 1, true}};
}

template <typename Scalar>
class StackDropoutTest : public ::testing::Test {};
TYPED_TEST_SUITE(StackDropoutTest, Scalars, ScalarName);

// The stack runs the same single-direction kernels on the same (masked) inputs: not a bit may differ.
TYPED_TEST(StackDropoutTest, LstmInterMaskIsAppliedBetweenLayersAsComposingThemByHand) {
  using Scalar = TypeParam;
  for (const StackShape& s : dropout_stack_shapes()) {
    for (bool variational : {false, true}) {
      SCOPED_TRACE(s.describe() + (variational ? " inter and variational" : " inter"));
      const RnnStackInputs<Scalar> in(dropout_stack_data(s, /*gru=*/false, true, variational));
      const ByHand<Scalar> want = compose_by_hand(in, /*gru=*/false);
      for (bool training : {false, true}) {
        SCOPED_TRACE(training ? "training" : "inference");
        const RnnStackRun<Scalar> run = lstm_stack_core_forward(in, training);
        EXPECT_TRUE(all_equal("y", run.y, want.y));
        EXPECT_TRUE(all_equal("h_n", run.h_n, want.h_n));
        EXPECT_TRUE(all_equal("c_n", run.c_n, want.c_n));
        if (training) {
          EXPECT_TRUE(all_equal("cache.hidden (before the dropout)", run.hidden, want.hidden));
        }
      }
    }
  }
}

TYPED_TEST(StackDropoutTest, GruInterMaskIsAppliedBetweenLayersAsComposingThemByHand) {
  using Scalar = TypeParam;
  for (StackShape s : dropout_stack_shapes()) {
    s.proj = 0;
    for (bool after : {true, false}) {
      for (bool variational : {false, true}) {
        SCOPED_TRACE(s.describe() + (after ? " reset_after" : " reset_before") +
                     (variational ? " inter and variational" : " inter"));
        const RnnStackInputs<Scalar> in(dropout_stack_data(s, /*gru=*/true, after, variational));
        const ByHand<Scalar> want = compose_by_hand(in, /*gru=*/true);
        for (bool training : {false, true}) {
          SCOPED_TRACE(training ? "training" : "inference");
          const RnnStackRun<Scalar> run = gru_stack_core_forward(in, training);
          EXPECT_TRUE(all_equal("y", run.y, want.y));
          EXPECT_TRUE(all_equal("h_n", run.h_n, want.h_n));
          if (training) {
          EXPECT_TRUE(all_equal("cache.hidden (before the dropout)", run.hidden, want.hidden));
        }
        }
      }
    }
  }
}

// A dropout that drops nothing is no dropout, forward and backward.
TYPED_TEST(StackDropoutTest, AllOnesInterMaskEqualsNoDropoutBitwise) {
  using Scalar = TypeParam;
  for (bool gru : {false, true}) {
    SCOPED_TRACE(gru ? "GRU" : "LSTM");
    RnnStackData data = make_rnn_stack_data({4, 3, 5, 4, gru ? 0 : 2, 3, 2}, gru);
    const RnnStackInputs<Scalar> plain(data);
    data.inter.assign(static_cast<std::size_t>(2 * 4 * 3 * 2 * data.s.out()), 1.0);
    const RnnStackInputs<Scalar> ones(data);
    const auto run = [gru](const RnnStackInputs<Scalar>& in) {
      return gru ? gru_stack_core_forward_backward(in) : lstm_stack_core_forward_backward(in);
    };
    const RnnStackRun<Scalar> a = run(plain), b = run(ones);
    EXPECT_TRUE(all_equal("y", b.y, a.y));
    EXPECT_TRUE(all_equal("h_n", b.h_n, a.h_n));
    EXPECT_TRUE(all_equal("dx", b.dx, a.dx));
    EXPECT_TRUE(all_equal("dh0", b.dh0, a.dh0));
    EXPECT_TRUE(all_equal("dc0", b.dc0, a.dc0));
    for (std::size_t k = 0; k < a.dw_ih.size(); ++k) {
      SCOPED_TRACE("k = " + std::to_string(k));
      EXPECT_TRUE(all_equal("dw_ih", b.dw_ih[k], a.dw_ih[k]));
      EXPECT_TRUE(all_equal("dw_hh", b.dw_hh[k], a.dw_hh[k]));
    }
  }
}

TEST(StackDropoutFiniteDifferences, LstmStackGradientsWithInterAndVariationalDropoutMatchCentralDifferences) {
  for (const StackShape& s : {StackShape{3, 2, 3, 3, 2, 2, 2}, StackShape{3, 2, 2, 2, 0, 3, 1}}) {
    SCOPED_TRACE(s.describe());
    expect_stack_gradients_match_finite_differences(dropout_stack_data(s, /*gru=*/false, true, true, /*seed=*/1),
                                                    /*gru=*/false);
  }
}

TEST(StackDropoutFiniteDifferences, GruStackGradientsWithInterAndVariationalDropoutMatchCentralDifferences) {
  for (bool after : {true, false}) {
    SCOPED_TRACE(after ? "reset_after" : "reset_before");
    expect_stack_gradients_match_finite_differences(
        dropout_stack_data({3, 2, 3, 2, 0, 2, 2}, /*gru=*/true, after, true, /*seed=*/1), /*gru=*/true);
  }
}

}  // namespace
}  // namespace lstm_ext::testing
