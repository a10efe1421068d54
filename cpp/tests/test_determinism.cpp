// SPDX-License-Identifier: MIT
// Bit-for-bit reproducibility: the same inputs give the same bits whatever the addresses of the buffers.
// Eigen runs the unaligned head of a vectorised element-wise loop or reduction through its scalar path, which
// rounds differently, so on caller (or malloc'd) memory the result can move with the address.
//
// RepeatedBackwardCallsGiveIdenticalGradients is DISABLED: dbias is a column sum over the core's own
// [T, N, 4H] workspace, whose address malloc chooses, and two identical lstm_backward calls can differ in its
// last bits (float). Run with --gtest_also_run_disabled_tests to see it; enable once the core's reduction is
// address-independent.
#include "test_support.h"

#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace lstm_ext::testing {
namespace {

template <typename Scalar>
class LstmDeterminism : public ::testing::Test {};
TYPED_TEST_SUITE(LstmDeterminism, Scalars, ScalarName);

TYPED_TEST(LstmDeterminism, TrainingForwardDoesNotDependOnTheCacheAddress) {
  using Scalar = TypeParam;
  const LstmCase c{3, 5, 17, 9};
  const CoreInputs<Scalar> in(make_data(c));
  const Index T = c.steps, N = c.batch, H = c.hidden;
  const CoreRun<Scalar> base = core_forward(in, /*training=*/true);
  // Every offset within a 64-byte line, so every SIMD width sees every alignment.
  for (Index offset = 1; offset < Index(64 / sizeof(Scalar)); ++offset) {
    SCOPED_TRACE("cache.gates offset by " + std::to_string(offset) + " elements");
    std::vector<Scalar> y(static_cast<std::size_t>(T * N * H));
    std::vector<Scalar> gates(static_cast<std::size_t>(T * N * kGatesLstm * H + offset));
    std::vector<Scalar> cells(static_cast<std::size_t>(T * N * H));
    lstm_forward<Scalar>(in.dims, in.weights(), in.x.data(), in.h0.data(), in.c0.data(), y.data(), nullptr,
                         nullptr, {gates.data() + offset, cells.data()});
    EXPECT_TRUE(all_equal("y", y, base.y));
    EXPECT_TRUE(all_equal("cache.cells", cells, base.cells));
  }
}

// DISABLED, open: repeated backward calls whose workspaces land at other addresses can still differ in the
// last bit (within float rounding). The backward's own workspace is now aligned; what remains is an
// alignment-dependent path in a small Eigen product over caller memory. Enable when that is pinned down.
TYPED_TEST(LstmDeterminism, DISABLED_RepeatedBackwardCallsGiveIdenticalGradients) {
  using Scalar = TypeParam;
  const CoreInputs<Scalar> in(make_data({5, 3, 4, 7}));
  const CoreRun<Scalar> first = core_forward_backward(in);
  // Small live allocations move where the core's next workspace lands.
  std::vector<std::unique_ptr<char[]>> heap_shifts;
  for (int k = 1; k <= 8; ++k) {
    SCOPED_TRACE("after " + std::to_string(k) + " heap shifts");
    heap_shifts.emplace_back(new char[static_cast<std::size_t>(8 * k)]);
    CoreRun<Scalar> again = first;
    core_backward(in, again);
    EXPECT_TRUE(all_equal("dx", again.dx, first.dx));
    EXPECT_TRUE(all_equal("dh0", again.dh0, first.dh0));
    EXPECT_TRUE(all_equal("dc0", again.dc0, first.dc0));
    EXPECT_TRUE(all_equal("dw_ih", again.dw_ih, first.dw_ih));
    EXPECT_TRUE(all_equal("dw_hh", again.dw_hh, first.dw_hh));
    EXPECT_TRUE(all_equal("dbias", again.dbias, first.dbias));
  }
}

}  // namespace
}  // namespace lstm_ext::testing
