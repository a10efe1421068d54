// SPDX-License-Identifier: MIT
// A null initial state means zeros also where zeros meet non-finite numbers: the kernels compute with zeros
// instead of skipping the work, so 0 * NaN and 0 * Inf give NaN as in torch. Here one recurrent weight is NaN
// and one Inf, and the null-state call must give the same bits (NaN where NaN) as the call with explicit zeros.
#include "recurrent_test_support.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace lstm_ext::testing {
namespace {

// Equal bit for bit, NaN included; and at least one NaN (the non-finite weights reach the result).
template <typename Scalar>
::testing::AssertionResult same_bits_with_nan(const std::string& name, const std::vector<Scalar>& a,
                                              const std::vector<Scalar>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << name << ": sizes differ";
  bool any_nan = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const bool nan_a = std::isnan(a[i]), nan_b = std::isnan(b[i]);
    any_nan = any_nan || nan_a;
    if (nan_a != nan_b || (!nan_a && std::memcmp(&a[i], &b[i], sizeof(Scalar)) != 0))
      return ::testing::AssertionFailure() << name << "[" << i << "]: " << a[i] << " vs " << b[i];
  }
  if (!any_nan) return ::testing::AssertionFailure() << name << ": no NaN reached it";
  return ::testing::AssertionSuccess();
}

template <typename T>
class NullStates : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(NullStates, Scalars);

TYPED_TEST(NullStates, LstmNullStatesAreZerosAgainstNonFiniteWeights) {
  using Scalar = TypeParam;
  LstmCase c{3, 2, 3, 4};
  c.h0 = c.c0 = false;
  LstmData data = make_data(c);
  data.w_hh[5] = std::numeric_limits<double>::quiet_NaN();       // a gate of unit 1: reaches y at step 0
  data.w_hh[2 * 4 + 7] = std::numeric_limits<double>::infinity();  // 0 * Inf is NaN too
  const CoreInputs<Scalar> null_in(data);
  data.h0.assign(static_cast<std::size_t>(c.batch * c.hidden), 0.0);
  data.c0 = data.h0;
  const CoreInputs<Scalar> zero_in(data);
  const CoreRun<Scalar> a = core_forward_backward(null_in), b = core_forward_backward(zero_in);
  EXPECT_TRUE(same_bits_with_nan("y", a.y, b.y));
  EXPECT_TRUE(same_bits_with_nan("c_n", a.c_n, b.c_n));
  EXPECT_TRUE(same_bits_with_nan("dx", a.dx, b.dx));
  EXPECT_TRUE(same_bits_with_nan("dc0", a.dc0, b.dc0));
  EXPECT_TRUE(same_bits_with_nan("dw_hh", a.dw_hh, b.dw_hh));
  for (bool training : {false, true}) {  // inference keeps its cell state in a workspace: the same bits
    const CoreRun<Scalar> f = core_forward(null_in, training), g = core_forward(zero_in, training);
    EXPECT_TRUE(same_bits_with_nan("y (forward only)", f.y, g.y));
  }
}

TYPED_TEST(NullStates, GruNullStateIsZerosAgainstNonFiniteWeights) {
  using Scalar = TypeParam;
  for (bool reset_after : {true, false}) {
    GruCase c{3, 2, 3, 4};
    c.reset_after = reset_after;
    c.h0 = false;
    SCOPED_TRACE(c.describe());
    GruData data = make_gru_data(c);
    data.w_hh[5] = std::numeric_limits<double>::quiet_NaN();
    data.w_hh[2 * 4 * 4 + 3] = std::numeric_limits<double>::infinity();  // the candidate's block
    const GruInputs<Scalar> null_in(data);
    data.h0.assign(static_cast<std::size_t>(c.batch * c.hidden), 0.0);
    const GruInputs<Scalar> zero_in(data);
    const GruRun<Scalar> a = gru_core_forward_backward(null_in), b = gru_core_forward_backward(zero_in);
    EXPECT_TRUE(same_bits_with_nan("y", a.y, b.y));
    EXPECT_TRUE(same_bits_with_nan("dx", a.dx, b.dx));
    EXPECT_TRUE(same_bits_with_nan("dw_hh", a.dw_hh, b.dw_hh));
  }
}

}  // namespace
}  // namespace lstm_ext::testing
