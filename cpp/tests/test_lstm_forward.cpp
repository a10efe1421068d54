// SPDX-License-Identifier: MIT
// lstm_forward against the scalar reference, inference against training, and what null means.
#include "test_support.h"

#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace lstm_ext::testing {
namespace {

template <typename Scalar>
class LstmForward : public ::testing::Test {};
TYPED_TEST_SUITE(LstmForward, Scalars, ScalarName);

TYPED_TEST(LstmForward, InferenceMatchesScalarReferenceOnOddShapes) {
  using Scalar = TypeParam;
  for (const LstmCase& c : case_grid(/*backward_options=*/false)) {
    SCOPED_TRACE(c.describe());
    const LstmData data = make_data(c);
    const RefForward ref = rounded_to<Scalar>(data).reference_forward();
    const CoreRun<Scalar> run = core_forward(CoreInputs<Scalar>(data), /*training=*/false);
    const Tolerance tol = forward_tolerance<Scalar>();
    EXPECT_TRUE(all_close("y", run.y, ref.y, tol));
    EXPECT_TRUE(all_close("h_n", run.h_n, ref.h_n, tol));
    EXPECT_TRUE(all_close("c_n", run.c_n, ref.c_n, tol));
  }
}

TYPED_TEST(LstmForward, TrainingMatchesScalarReferenceIncludingTheCacheOnOddShapes) {
  using Scalar = TypeParam;
  for (const LstmCase& c : case_grid(/*backward_options=*/false)) {
    SCOPED_TRACE(c.describe());
    const LstmData data = make_data(c);
    const RefForward ref = rounded_to<Scalar>(data).reference_forward();
    const CoreRun<Scalar> run = core_forward(CoreInputs<Scalar>(data), /*training=*/true);
    const Tolerance tol = forward_tolerance<Scalar>();
    EXPECT_TRUE(all_close("y", run.y, ref.y, tol));
    EXPECT_TRUE(all_close("h_n", run.h_n, ref.h_n, tol));
    EXPECT_TRUE(all_close("c_n", run.c_n, ref.c_n, tol));
    EXPECT_TRUE(all_close("cache.gates", run.gates, ref.gates, tol));
    EXPECT_TRUE(all_close("cache.cells", run.cells, ref.cells, tol));
  }
}

// Bit for bit: the same products and gate passes, only the cache's buffers differ (see test_determinism.cpp).
TYPED_TEST(LstmForward, InferenceAndTrainingGiveIdenticalOutputs) {
  using Scalar = TypeParam;
  for (const LstmCase& c : case_grid(/*backward_options=*/false)) {
    SCOPED_TRACE(c.describe());
    const CoreInputs<Scalar> in(make_data(c));
    const CoreRun<Scalar> inference = core_forward(in, /*training=*/false);
    const CoreRun<Scalar> training = core_forward(in, /*training=*/true);
    EXPECT_TRUE(all_equal("y", inference.y, training.y));
    EXPECT_TRUE(all_equal("h_n", inference.h_n, training.h_n));
    EXPECT_TRUE(all_equal("c_n", inference.c_n, training.c_n));
  }
}

TYPED_TEST(LstmForward, NullInitialStatesActAsZeros) {
  using Scalar = TypeParam;
  for (const LstmCase& shape : shape_grid()) {
    SCOPED_TRACE(shape.describe());
    LstmCase with_null = shape;
    with_null.h0 = with_null.c0 = false;
    LstmData zeros = make_data(with_null);
    const CoreInputs<Scalar> null_in(zeros);
    zeros.h0.assign(static_cast<std::size_t>(shape.batch * shape.hidden), 0.0);
    zeros.c0 = zeros.h0;
    const CoreInputs<Scalar> zero_in(zeros);
    for (bool training : {false, true}) {
      SCOPED_TRACE(training ? "training" : "inference");
      const CoreRun<Scalar> a = core_forward(null_in, training);
      const CoreRun<Scalar> b = core_forward(zero_in, training);
      // Exact: adding a product of zeros, or f * 0, changes no bit.
      EXPECT_TRUE(all_equal("y", a.y, b.y));
      EXPECT_TRUE(all_equal("c_n", a.c_n, b.c_n));
      EXPECT_TRUE(all_equal("cache.gates", a.gates, b.gates));
      EXPECT_TRUE(all_equal("cache.cells", a.cells, b.cells));
    }
  }
}

TYPED_TEST(LstmForward, FinalStatesAreOptionalAndEqualTheLastStep) {
  using Scalar = TypeParam;
  const LstmCase c{6, 3, 5, 7};
  const CoreInputs<Scalar> in(make_data(c));
  const Index NH = c.batch * c.hidden;
  for (bool training : {false, true}) {
    SCOPED_TRACE(training ? "training" : "inference");
    const CoreRun<Scalar> full = core_forward(in, training);
    // h_n is the last step of y; in training c_n is the last step of the cache.
    EXPECT_TRUE(all_equal("h_n", full.h_n, std::vector<Scalar>(full.y.end() - NH, full.y.end())));
    if (training) {
      EXPECT_TRUE(all_equal("c_n", full.c_n, std::vector<Scalar>(full.cells.end() - NH, full.cells.end())));
    }

    std::vector<Scalar> y = nan_buffer<Scalar>(c.steps * NH);
    std::vector<Scalar> gates = training ? nan_buffer<Scalar>(c.steps * c.batch * kGatesLstm * c.hidden)
                                         : std::vector<Scalar>();
    std::vector<Scalar> cells = training ? nan_buffer<Scalar>(c.steps * NH) : std::vector<Scalar>();
    lstm_forward<Scalar>(in.dims, in.weights(), in.x.data(), in.h0.data(), in.c0.data(), y.data(), nullptr,
                         nullptr, {ptr_or_null(gates), ptr_or_null(cells)});
    EXPECT_TRUE(all_equal("y without h_n, c_n", y, full.y));
  }
}

TYPED_TEST(LstmForward, SaturatedGatesGiveFiniteOutputsMatchingTheReference) {
  using Scalar = TypeParam;
  const LstmCase c{4, 3, 5, 6};
  LstmData data = make_data(c);
  // Pre-activations of hundreds: exp overflows in a naive logistic, tanh is exactly +-1.
  for (double& w : data.w_ih) w *= 200.0;
  for (double& w : data.w_hh) w *= 200.0;
  const RefForward ref = rounded_to<Scalar>(data).reference_forward();
  const CoreRun<Scalar> run = core_forward(CoreInputs<Scalar>(data), /*training=*/true);
  for (Scalar v : run.y) {
    ASSERT_TRUE(std::isfinite(v));
    ASSERT_LE(std::abs(v), Scalar(1));
  }
  // Saturated gates amplify nothing, but a gate at the edge of saturation may round either way: compare
  // loosely to catch a wrong branch, not a last bit.
  EXPECT_TRUE(all_close("y", run.y, ref.y, {1e-3, 1e-3}));
  EXPECT_TRUE(all_close("c_n", run.c_n, ref.c_n, {1e-3, 1e-3}));
}

TYPED_TEST(LstmForward, NanInOneInputRowStaysInThatBatchRow) {
  using Scalar = TypeParam;
  const LstmCase c{3, 4, 5, 6};
  CoreInputs<Scalar> in(make_data(c));
  const Index N = c.batch, I = c.input, H = c.hidden;
  in.x[static_cast<std::size_t>(1 * I)] = std::numeric_limits<Scalar>::quiet_NaN();  // t=0, n=1, i=0
  for (bool training : {false, true}) {
    SCOPED_TRACE(training ? "training" : "inference");
    const CoreRun<Scalar> run = core_forward(in, training);
    for (Index t = 0; t < c.steps; ++t) {
      for (Index n = 0; n < N; ++n) {
        for (Index j = 0; j < H; ++j) {
          const Scalar v = run.y[static_cast<std::size_t>((t * N + n) * H + j)];
          if (n == 1) {
            EXPECT_TRUE(std::isnan(v)) << "t=" << t << " n=" << n << " j=" << j;
          } else {
            EXPECT_TRUE(std::isfinite(v)) << "t=" << t << " n=" << n << " j=" << j;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace lstm_ext::testing
