// SPDX-License-Identifier: MIT
// LstmLayout: a reverse direction is the reference over reversed time; a strided y (one half of a
// bidirectional output) gives the dense results and leaves the other columns alone; accumulate_dx adds.
#include "test_support.h"

#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace lstm_ext::testing {
namespace {

template <typename Scalar>
class LstmLayoutTest : public ::testing::Test {};
TYPED_TEST_SUITE(LstmLayoutTest, Scalars, ScalarName);

LstmLayout reverse_layout() {
  LstmLayout layout;
  layout.reverse = true;
  return layout;
}

// The reference of a reverse direction: the same data with x reversed in time (y, the cache and the
// gradients w.r.t. x come back reversed; the final states and weight gradients do not).
LstmData time_reversed(const LstmData& d) {
  LstmData r = d;
  r.x = ref_reverse_time(d.x, static_cast<std::size_t>(d.dims.steps));
  r.dy = ref_reverse_time(d.dy, static_cast<std::size_t>(d.dims.steps));
  return r;
}

TYPED_TEST(LstmLayoutTest, ReverseForwardIsTheReferenceOverReversedTime) {
  using Scalar = TypeParam;
  for (const LstmCase& c : case_grid(/*backward_options=*/false)) {
    SCOPED_TRACE(c.describe());
    const LstmData data = make_data(c);
    const auto T = static_cast<std::size_t>(c.steps);
    const RefForward ref = time_reversed(rounded_to<Scalar>(data)).reference_forward();
    const Tolerance tol = forward_tolerance<Scalar>();
    for (bool training : {false, true}) {
      SCOPED_TRACE(training ? "training" : "inference");
      const CoreRun<Scalar> run = core_forward(CoreInputs<Scalar>(data), training, reverse_layout());
      EXPECT_TRUE(all_close("y", run.y, ref_reverse_time(ref.y, T), tol));
      EXPECT_TRUE(all_close("h_n (the state after t = 0)", run.h_n, ref.h_n, tol));
      EXPECT_TRUE(all_close("c_n (the state after t = 0)", run.c_n, ref.c_n, tol));
      if (training) {
        EXPECT_TRUE(all_close("cache.gates", run.gates, ref_reverse_time(ref.gates, T), tol));
        EXPECT_TRUE(all_close("cache.cells", run.cells, ref_reverse_time(ref.cells, T), tol));
      }
    }
  }
}

TYPED_TEST(LstmLayoutTest, ReverseBackwardIsTheReferenceOverReversedTime) {
  using Scalar = TypeParam;
  for (const LstmCase& c : case_grid(/*backward_options=*/true)) {
    SCOPED_TRACE(c.describe());
    const LstmData data = make_data(c);
    const LstmData reversed = time_reversed(rounded_to<Scalar>(data));
    const RefGrads ref = reversed.reference_backward(reversed.reference_forward());
    const CoreRun<Scalar> run = core_forward_backward(CoreInputs<Scalar>(data), reverse_layout());
    const Tolerance tol = backward_tolerance<Scalar>();
    EXPECT_TRUE(all_close("dx", run.dx, ref_reverse_time(ref.dx, static_cast<std::size_t>(c.steps)), tol));
    EXPECT_TRUE(all_close("dh0", run.dh0, ref.dh0, tol));
    EXPECT_TRUE(all_close("dc0", run.dc0, ref.dc0, tol));
    EXPECT_TRUE(all_close("dw_ih", run.dw_ih, ref.dw_ih, tol));
    EXPECT_TRUE(all_close("dw_hh", run.dw_hh, ref.dw_hh, tol));
    EXPECT_TRUE(all_close("dbias", run.dbias, ref.dbias, tol));
  }
}

TYPED_TEST(LstmLayoutTest, StridedOutputGivesTheDenseResultsAndLeavesTheGapsAlone) {
  using Scalar = TypeParam;
  for (const LstmCase& shape : shape_grid()) {
    const Index T = shape.steps, N = shape.batch, H = shape.hidden;
    // H + 1 and an odd stride past 2H, as the halves of a bidirectional output are never aligned alike.
    for (Index stride : {H + 1, 2 * H + 3}) {
      for (bool reverse : {false, true}) {
        LstmLayout layout;
        layout.reverse = reverse;
        layout.y_stride = stride;
        LstmLayout dense_layout;
        dense_layout.reverse = reverse;
        SCOPED_TRACE(shape.describe() + " y_stride=" + std::to_string(stride) + (reverse ? " reverse" : ""));
        const CoreInputs<Scalar> in(make_data(shape));
        const CoreRun<Scalar> dense = core_forward_backward(in, dense_layout);
        const CoreRun<Scalar> strided = core_forward_backward(in, layout);
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
        EXPECT_TRUE(all_close("c_n", strided.c_n, dense.c_n, tol));
        // core_backward leaves NaN in the gaps of dy: reading them would poison every gradient.
        EXPECT_GRADIENTS_CLOSE(strided, dense, tol);
      }
    }
  }
}

TYPED_TEST(LstmLayoutTest, AccumulateDxAddsToWhatDxHolds) {
  using Scalar = TypeParam;
  for (const LstmCase& shape : shape_grid()) {
    SCOPED_TRACE(shape.describe());
    const LstmData data = make_data(shape);
    const CoreInputs<Scalar> in(data);
    const CoreRun<Scalar> overwrite = core_forward_backward(in);
    LstmLayout layout;
    layout.accumulate_dx = true;
    CoreRun<Scalar> accumulate = core_forward(in, /*training=*/true, layout);
    std::mt19937_64 rng(3);
    const std::vector<Scalar> before = cast<Scalar>(uniform(rng, shape.steps * shape.batch * shape.input, 1.0));
    accumulate.dx = before;
    core_backward(in, accumulate, layout);
    std::vector<double> expected(before.size());
    for (std::size_t k = 0; k < expected.size(); ++k) expected[k] = double(before[k]) + double(overwrite.dx[k]);
    EXPECT_TRUE(all_close("dx", accumulate.dx, expected, reorder_tolerance<Scalar>()));
    // Only dx accumulates: the other gradients are still written.
    EXPECT_TRUE(all_close("dw_ih", accumulate.dw_ih, overwrite.dw_ih, reorder_tolerance<Scalar>()));
    EXPECT_TRUE(all_close("dh0", accumulate.dh0, overwrite.dh0, reorder_tolerance<Scalar>()));
  }
}

}  // namespace
}  // namespace lstm_ext::testing
