// SPDX-License-Identifier: MIT
// The thread count: its accessors, and results that do not depend on it beyond rounding.
#include "test_support.h"

#include "lstm_ext/lstm.h"
#include "lstm_ext/threads.h"

#include <gtest/gtest.h>

namespace lstm_ext::testing {
namespace {

// Restores the process-wide thread count, whatever the test set it to.
class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(get_num_threads()) {}
  ~ThreadCountGuard() { set_num_threads(saved_); }
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  int saved_;
};

TEST(NumThreads, DefaultIsAtLeastOne) { EXPECT_GE(default_num_threads(), 1); }

TEST(NumThreads, GetReturnsWhatWasSet) {
  ThreadCountGuard guard;
  set_num_threads(1);
  EXPECT_EQ(get_num_threads(), 1);
  set_num_threads(3);
  EXPECT_EQ(get_num_threads(), 3);
}

TEST(NumThreads, RejectedValueLeavesTheSettingUnchanged) {
  ThreadCountGuard guard;
  set_num_threads(2);
  EXPECT_TRUE(throws_invalid_argument([] { set_num_threads(0); }, "set_num_threads", "n must be >= 1, got 0"));
  EXPECT_TRUE(throws_invalid_argument([] { set_num_threads(-3); }, "set_num_threads", "n must be >= 1, got -3"));
  EXPECT_EQ(get_num_threads(), 2);
}

template <typename Scalar>
class LstmThreads : public ::testing::Test {};
TYPED_TEST_SUITE(LstmThreads, Scalars, ScalarName);

TYPED_TEST(LstmThreads, OneAndTwoThreadsAgreeToRounding) {
  using Scalar = TypeParam;
  ThreadCountGuard guard;
  // Large enough that Eigen splits the GEMMs across threads (it keeps small products on one), and N = 1 for
  // the matrix-vector path of the recurrence.
  for (const LstmCase& c : {LstmCase{6, 48, 96, 64}, LstmCase{5, 1, 64, 128}}) {
    SCOPED_TRACE(c.describe());
    const CoreInputs<Scalar> in(make_data(c));
    set_num_threads(1);
    const CoreRun<Scalar> serial = core_forward_backward(in);
    const CoreRun<Scalar> serial_inference = core_forward(in, /*training=*/false);
    set_num_threads(2);
    const CoreRun<Scalar> threaded = core_forward_backward(in);
    const CoreRun<Scalar> threaded_inference = core_forward(in, /*training=*/false);
    const Tolerance tol = reorder_tolerance<Scalar>();
    EXPECT_TRUE(all_close("y (inference)", threaded_inference.y, serial_inference.y, tol));
    EXPECT_TRUE(all_close("y", threaded.y, serial.y, tol));
    EXPECT_TRUE(all_close("c_n", threaded.c_n, serial.c_n, tol));
    EXPECT_TRUE(all_close("cache.gates", threaded.gates, serial.gates, tol));
    EXPECT_GRADIENTS_CLOSE(threaded, serial, tol);
  }
}

}  // namespace
}  // namespace lstm_ext::testing
