// SPDX-License-Identifier: MIT
// Bit-for-bit reproducibility: the same inputs give the same bits wherever the caller's buffers sit.
// Eigen runs the unaligned head of a vectorised element-wise loop or reduction through its scalar path, which
// rounds differently, so a kernel that works in place on caller memory can move with the address. Each test
// repeats one call with every caller buffer shifted by 1 .. 64 bytes, so every SIMD width sees every alignment.
#include "test_support.h"

#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lstm_ext::testing {
namespace {

// A copy of `v` that starts `offset` elements into its own allocation.
template <typename Scalar>
struct Shifted {
  std::vector<Scalar> storage;
  Index offset;
  Shifted(const std::vector<Scalar>& v, Index off) : storage(v.size() + static_cast<std::size_t>(off)), offset(off) {
    std::copy(v.begin(), v.end(), storage.begin() + off);
  }
  Scalar* data() { return storage.size() == static_cast<std::size_t>(offset) ? nullptr : storage.data() + offset; }
  std::vector<Scalar> values() const { return std::vector<Scalar>(storage.begin() + offset, storage.end()); }
};

template <typename Scalar>
std::vector<Index> offsets() {
  std::vector<Index> out;
  for (Index k = 1; k <= Index(64 / sizeof(Scalar)); ++k) out.push_back(k);
  return out;
}

template <typename Scalar>
class LstmDeterminism : public ::testing::Test {};
TYPED_TEST_SUITE(LstmDeterminism, Scalars, ScalarName);

TYPED_TEST(LstmDeterminism, ForwardDoesNotDependOnBufferAddresses) {
  using Scalar = TypeParam;
  for (const LstmCase& c : {LstmCase{3, 5, 17, 9}, LstmCase{4, 1, 6, 13}}) {
    SCOPED_TRACE(c.describe());
    const CoreInputs<Scalar> in(make_data(c));
    for (bool training : {false, true}) {
      SCOPED_TRACE(training ? "training" : "inference");
      const CoreRun<Scalar> base = core_forward(in, training);
      for (Index offset : offsets<Scalar>()) {
        SCOPED_TRACE("buffers shifted by " + std::to_string(offset) + " elements");
        Shifted<Scalar> x(in.x, offset), h0(in.h0, offset), c0(in.c0, offset);
        Shifted<Scalar> y(base.y, offset), h_n(base.h_n, offset), c_n(base.c_n, offset);
        Shifted<Scalar> gates(base.gates, offset), cells(base.cells, offset);
        lstm_forward<Scalar>(in.dims, in.weights(), x.data(), h0.data(), c0.data(), y.data(), h_n.data(),
                             c_n.data(), {gates.data(), cells.data()});
        EXPECT_TRUE(all_equal("y", y.values(), base.y));
        EXPECT_TRUE(all_equal("h_n", h_n.values(), base.h_n));
        EXPECT_TRUE(all_equal("c_n", c_n.values(), base.c_n));
        EXPECT_TRUE(all_equal("cache.gates", gates.values(), base.gates));
        EXPECT_TRUE(all_equal("cache.cells", cells.values(), base.cells));
      }
    }
  }
}

// dbias once followed its buffer's address (Eigen's scalar/vector split of the column sum); now pinned.
TYPED_TEST(LstmDeterminism, BackwardDoesNotDependOnBufferAddresses) {
  using Scalar = TypeParam;
  for (const LstmCase& c : {LstmCase{5, 3, 4, 7}, LstmCase{4, 1, 6, 13}}) {
    SCOPED_TRACE(c.describe());
    const CoreInputs<Scalar> in(make_data(c));
    const CoreRun<Scalar> base = core_forward_backward(in);
    for (Index offset : offsets<Scalar>()) {
      SCOPED_TRACE("buffers shifted by " + std::to_string(offset) + " elements");
      Shifted<Scalar> x(in.x, offset), h0(in.h0, offset), c0(in.c0, offset), y(base.y, offset);
      Shifted<Scalar> gates(base.gates, offset), cells(base.cells, offset);
      Shifted<Scalar> dy(in.dy, offset), dh_n(in.dh_n, offset), dc_n(in.dc_n, offset);
      Shifted<Scalar> dx(base.dx, offset), dh0(base.dh0, offset), dc0(base.dc0, offset);
      Shifted<Scalar> dw_ih(base.dw_ih, offset), dw_hh(base.dw_hh, offset), dbias(base.dbias, offset);
      lstm_backward<Scalar>(in.dims, in.weights(), x.data(), h0.data(), c0.data(), y.data(),
                            {gates.data(), cells.data()}, dy.data(), dh_n.data(), dc_n.data(), dx.data(),
                            dh0.data(), dc0.data(), {dw_ih.data(), dw_hh.data(), dbias.data()});
      EXPECT_TRUE(all_equal("dx", dx.values(), base.dx));
      EXPECT_TRUE(all_equal("dh0", dh0.values(), base.dh0));
      EXPECT_TRUE(all_equal("dc0", dc0.values(), base.dc0));
      EXPECT_TRUE(all_equal("dw_ih", dw_ih.values(), base.dw_ih));
      EXPECT_TRUE(all_equal("dw_hh", dw_hh.values(), base.dw_hh));
      EXPECT_TRUE(all_equal("dbias", dbias.values(), base.dbias));
    }
  }
}

}  // namespace
}  // namespace lstm_ext::testing
