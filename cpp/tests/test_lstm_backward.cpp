// SPDX-License-Identifier: MIT
// lstm_backward against the scalar reference and against central finite differences, and what null means.
#include "test_support.h"

#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

namespace lstm_ext::testing {
namespace {

template <typename Scalar>
class LstmBackward : public ::testing::Test {};
TYPED_TEST_SUITE(LstmBackward, Scalars, ScalarName);

TYPED_TEST(LstmBackward, MatchesScalarReferenceOnOddShapes) {
  using Scalar = TypeParam;
  for (const LstmCase& c : case_grid(/*backward_options=*/true)) {
    SCOPED_TRACE(c.describe());
    const LstmData data = rounded_to<Scalar>(make_data(c));
    const RefGrads ref = data.reference_backward(data.reference_forward());
    const CoreRun<Scalar> run = core_forward_backward(CoreInputs<Scalar>(data));
    const Tolerance tol = backward_tolerance<Scalar>();
    EXPECT_GRADIENTS_CLOSE(run, ref, tol);
  }
}

TYPED_TEST(LstmBackward, NullInitialStatesGiveTheGradientsOfZeroStates) {
  using Scalar = TypeParam;
  for (const LstmCase& shape : shape_grid()) {
    SCOPED_TRACE(shape.describe());
    LstmCase with_null = shape;
    with_null.h0 = with_null.c0 = false;
    LstmData data = make_data(with_null);
    const CoreRun<Scalar> a = core_forward_backward(CoreInputs<Scalar>(data));
    data.h0.assign(static_cast<std::size_t>(shape.batch * shape.hidden), 0.0);
    data.c0 = data.h0;
    const CoreRun<Scalar> b = core_forward_backward(CoreInputs<Scalar>(data));
    const Tolerance tol = reorder_tolerance<Scalar>();
    EXPECT_GRADIENTS_CLOSE(a, b, tol);
  }
}

TYPED_TEST(LstmBackward, NullFinalStateGradientsActAsZeros) {
  using Scalar = TypeParam;
  for (const LstmCase& shape : shape_grid()) {
    SCOPED_TRACE(shape.describe());
    LstmCase with_null = shape;
    with_null.dh_n = with_null.dc_n = false;
    LstmData data = make_data(with_null);
    const CoreRun<Scalar> a = core_forward_backward(CoreInputs<Scalar>(data));
    data.dh_n.assign(static_cast<std::size_t>(shape.batch * shape.hidden), 0.0);
    data.dc_n = data.dh_n;
    const CoreRun<Scalar> b = core_forward_backward(CoreInputs<Scalar>(data));
    const Tolerance tol = reorder_tolerance<Scalar>();
    EXPECT_GRADIENTS_CLOSE(a, b, tol);
  }
}

TYPED_TEST(LstmBackward, WritesGradientsInsteadOfAccumulating) {
  using Scalar = TypeParam;
  for (const LstmCase& c : {LstmCase{1, 1, 1, 1}, LstmCase{5, 3, 4, 7}}) {
    SCOPED_TRACE(c.describe());
    const CoreInputs<Scalar> in(make_data(c));
    CoreRun<Scalar> run = core_forward_backward(in);
    const CoreRun<Scalar> first = run;
    // The second call finds the first call's results in its output buffers instead of NaN: accumulating
    // would double them.
    lstm_backward<Scalar>(in.dims, in.weights(), in.x.data(), in.h0.data(), in.c0.data(), run.y.data(),
                          {run.gates.data(), run.cells.data()}, in.dy.data(), in.dh_n.data(),
                          in.dc_n.data(), run.dx.data(), run.dh0.data(), run.dc0.data(),
                          {run.dw_ih.data(), run.dw_hh.data(), run.dbias.data()});
    const Tolerance tol = reorder_tolerance<Scalar>();
    EXPECT_GRADIENTS_CLOSE(run, first, tol);
  }
}

// ---- central finite differences (double) --------------------------------------------------------------

// L = <y, dy> + <h_n, dh_n> + <c_n, dc_n>, the loss whose gradients lstm_backward computes.
using Loss = std::function<double(const LstmData&)>;

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t k = 0; k < a.size() && k < b.size(); ++k) s += a[k] * b[k];
  return s;
}

double core_loss(const LstmData& d) {
  const CoreInputs<double> in(d);
  const CoreRun<double> run = core_forward(in, /*training=*/false);
  return dot(run.y, d.dy) + dot(run.h_n, d.dh_n) + dot(run.c_n, d.dc_n);
}

double reference_loss(const LstmData& d) {
  const RefForward fwd = d.reference_forward();
  return dot(fwd.y, d.dy) + dot(fwd.h_n, d.dh_n) + dot(fwd.c_n, d.dc_n);
}

// dL/d(data.*member), every entry, by (L(v + eps) - L(v - eps)) / 2 eps.
std::vector<double> numerical_gradient(const Loss& loss, LstmData data, std::vector<double> LstmData::*member) {
  constexpr double kEps = 1e-6;
  std::vector<double>& v = data.*member;
  std::vector<double> grad(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) {
    const double saved = v[k];
    v[k] = saved + kEps;
    const double plus = loss(data);
    v[k] = saved - kEps;
    const double minus = loss(data);
    v[k] = saved;
    grad[k] = (plus - minus) / (2 * kEps);
  }
  return grad;
}

// Truncation error ~eps^2, cancellation ~1e-16 / eps: both far below 1e-7 at these magnitudes.
constexpr Tolerance kFiniteDifferenceTolerance{1e-6, 1e-8};

void expect_gradients_match_finite_differences(const Loss& loss, const LstmData& data, const RefGrads& grads) {
  const Tolerance tol = kFiniteDifferenceTolerance;
  EXPECT_TRUE(all_close("dw_ih", grads.dw_ih, numerical_gradient(loss, data, &LstmData::w_ih), tol));
  EXPECT_TRUE(all_close("dw_hh", grads.dw_hh, numerical_gradient(loss, data, &LstmData::w_hh), tol));
  EXPECT_TRUE(all_close("dbias", grads.dbias, numerical_gradient(loss, data, &LstmData::bias), tol));
  EXPECT_TRUE(all_close("dx", grads.dx, numerical_gradient(loss, data, &LstmData::x), tol));
  EXPECT_TRUE(all_close("dh0", grads.dh0, numerical_gradient(loss, data, &LstmData::h0), tol));
  EXPECT_TRUE(all_close("dc0", grads.dc0, numerical_gradient(loss, data, &LstmData::c0), tol));
}

// The tiny shapes: T=1 and T>1, N=1 and N>1, and H=1.
const LstmCase kTinyCases[] = {{3, 2, 3, 2}, {1, 1, 2, 3}, {4, 1, 1, 1}};

TEST(LstmBackwardFiniteDifferences, CoreGradientsMatchCentralDifferencesOnTinyShapes) {
  for (const LstmCase& c : kTinyCases) {
    SCOPED_TRACE(c.describe());
    const LstmData data = make_data(c, /*seed=*/1);
    const CoreRun<double> run = core_forward_backward(CoreInputs<double>(data));
    RefGrads grads;
    grads.dx = run.dx;
    grads.dh0 = run.dh0;
    grads.dc0 = run.dc0;
    grads.dw_ih = run.dw_ih;
    grads.dw_hh = run.dw_hh;
    grads.dbias = run.dbias;
    expect_gradients_match_finite_differences(core_loss, data, grads);
  }
}

// The yardstick itself: if the reference's BPTT were wrong, every comparison above would prove nothing.
TEST(LstmBackwardFiniteDifferences, ReferenceGradientsMatchCentralDifferencesOnTinyShapes) {
  for (const LstmCase& c : kTinyCases) {
    SCOPED_TRACE(c.describe());
    const LstmData data = make_data(c, /*seed=*/2);
    expect_gradients_match_finite_differences(reference_loss, data,
                                              data.reference_backward(data.reference_forward()));
  }
}

}  // namespace
}  // namespace lstm_ext::testing
