// SPDX-License-Identifier: MIT
// The recurrent product on pre-packed weights (cpp/src/packed_gemm_internal.h) against Eigen's plain product,
// forward (a w^T) and backward (a w) forms, row strides, and sizes that are not multiples of the packets.
#include "../src/packed_gemm_internal.h"
#include "../src/sequence_internal.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <random>

namespace {

using lstm_ext::Index;

template <typename T>
class PackedGemm : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(PackedGemm, Scalars);

template <typename Scalar>
lstm_ext::RowMatrix<Scalar> random(Index rows, Index cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  lstm_ext::RowMatrix<Scalar> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = Scalar(u(gen));
  return m;
}

template <typename Scalar>
void check(Index m, Index k, Index g, bool transposed) {
  SCOPED_TRACE("m=" + std::to_string(m) + " k=" + std::to_string(k) + " g=" + std::to_string(g) +
               (transposed ? " (a w)" : " (a w^T)"));
  const Index lda = k + 3, ldo = g + 5, ldw = (transposed ? g : k) + 2;
  const auto a_store = random<Scalar>(m, lda, 1);
  const auto w_store = random<Scalar>(transposed ? k : g, ldw, 2);
  auto out = random<Scalar>(m, ldo, 3);
  lstm_ext::RowMatrix<Scalar> want = out.leftCols(g);
  const auto a = a_store.leftCols(k);
  if (transposed) want.noalias() += a * w_store.leftCols(g);
  else want.noalias() += a * w_store.leftCols(k).transpose();

  const lstm_ext::detail::PackedWeights<Scalar> packed(w_store.data(), g, k, ldw, transposed);
  lstm_ext::detail::Buffer<Scalar> scratch(packed.scratch_size());
  packed.multiply_add(m, a_store.data(), lda, out.data(), ldo, scratch.data());
  const double tol = std::is_same<Scalar, float>::value ? 1e-5 : 1e-13;
  for (Index r = 0; r < m; ++r)
    for (Index c = 0; c < g; ++c) ASSERT_NEAR(double(out(r, c)), double(want(r, c)), tol * (1.0 + k)) << r << "," << c;
  for (Index r = 0; r < m; ++r)  // the padding columns of out are untouched
    for (Index c = g; c < ldo; ++c) ASSERT_EQ(out(r, c), random<Scalar>(m, ldo, 3)(r, c));
}

TYPED_TEST(PackedGemm, MatchesEigenProductInBothForms) {
  for (bool transposed : {false, true}) {
    for (Index m : {1, 2, 7, 16, 33, 130}) {
      check<TypeParam>(m, 1, 4, transposed);
      check<TypeParam>(m, 13, 52, transposed);
      check<TypeParam>(m, 64, 256, transposed);
    }
    check<TypeParam>(9, 700, 300, transposed);  // more than one block along k and g
  }
}

}  // namespace
