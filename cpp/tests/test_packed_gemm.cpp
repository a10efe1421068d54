// SPDX-License-Identifier: MIT
// The recurrent product on pre-packed weights against Eigen's plain product, forward (a w^T) and backward (a w)
// forms, row strides, and sizes that are not multiples of the packets: Eigen's GEBP on its own packing
// (cpp/src/packed_gemm_internal.h) and the float panel kernel (cpp/src/panel_gemm_internal.h).
#include "../src/packed_gemm_internal.h"
#include "../src/panel_gemm_internal.h"
#include "../src/sequence_internal.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <algorithm>
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

// Packed: PackedWeights<Scalar> or PanelWeights; accumulate: multiply_add (else multiply).
template <typename Scalar, typename Packed = lstm_ext::detail::PackedWeights<Scalar>>
void check(Index m, Index k, Index g, bool transposed, bool accumulate = true) {
  SCOPED_TRACE(std::string(accumulate ? "multiply_add" : "multiply") + " " + "m=" + std::to_string(m) + " k=" + std::to_string(k) + " g=" + std::to_string(g) +
               (transposed ? " (a w)" : " (a w^T)"));
  const Index lda = k + 3, ldo = g + 5, ldw = (transposed ? g : k) + 2;
  const auto a_store = random<Scalar>(m, lda, 1);
  const auto w_store = random<Scalar>(transposed ? k : g, ldw, 2);
  auto out = random<Scalar>(m, ldo, 3);
  lstm_ext::RowMatrix<Scalar> want = out.leftCols(g);
  if (!accumulate) want.setZero();
  const auto a = a_store.leftCols(k);
  if (transposed) want.noalias() += a * w_store.leftCols(g);
  else want.noalias() += a * w_store.leftCols(k).transpose();

  const Packed packed(w_store.data(), g, k, ldw, transposed);
  lstm_ext::detail::Buffer<Scalar> scratch(packed.scratch_size());
  if (accumulate) packed.multiply_add(m, a_store.data(), lda, out.data(), ldo, scratch.data());
  else packed.multiply(m, a_store.data(), lda, out.data(), ldo, scratch.data());
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

using lstm_ext::detail::PanelWeights;

TEST(PanelGemm, MatchesEigenProductInBothFormsForEveryTileAndPanelRemainder) {
  const Index panel = PanelWeights::kPanel, width = PanelWeights::kWidth;
  for (bool transposed : {false, true}) {
    for (bool accumulate : {true, false}) {
      // Every row remainder of the R-row tiles, and more than one block of rows (128).
      for (Index m : {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 130}) check<float, PanelWeights>(m, 13, 52, transposed, accumulate);
      // Panels ending in a full, partial or single packet, and g below one packet.
      for (Index g : {Index(1), width - 1, width, width + 1, 2 * width + 3, panel - 1, panel, panel + 1, 2 * panel + width})
        check<float, PanelWeights>(11, 37, g, transposed, accumulate);
      check<float, PanelWeights>(9, 700, 300, transposed, accumulate);
    }
  }
}

TEST(PanelGemm, AnEmptySumAddsNothingOrWritesZeros) {
  const Index g = 20;
  const lstm_ext::RowMatrix<float> w(g, 1);  // no columns are read
  const PanelWeights packed(w.data(), g, 0, 1, false);
  lstm_ext::RowMatrix<float> out = lstm_ext::RowMatrix<float>::Constant(3, g, 2.0f);
  packed.multiply_add(3, nullptr, 0, out.data(), g);
  EXPECT_TRUE((out.array() == 2.0f).all());
  packed.multiply(3, nullptr, 0, out.data(), g);
  EXPECT_TRUE((out.array() == 0.0f).all());
}

TEST(PanelGemm, PackingIntoReusedStorageOverwritesWhatWasThere) {
  // The native GEMM backend packs into blocks of the cache, which hold the last user's values: stale values
  // must not reach the padding.
  const Index m = 5, k = 9, g = PanelWeights::kPanel + 3;  // a partial last panel
  const auto a = random<float>(m, k, 6);
  const auto w = random<float>(g, k, 7);
  lstm_ext::detail::Workspace<float> storage(4 * g * k);
  std::fill_n(storage.data(), storage.size(), 1e30f);
  PanelWeights reused(g, k, storage);
  reused.pack(w.data(), k, false, 0, reused.panels());
  const PanelWeights fresh(w.data(), g, k, k, false);
  lstm_ext::RowMatrix<float> got(m, g), want(m, g);
  reused.multiply(m, a.data(), k, got.data(), g);
  fresh.multiply(m, a.data(), k, want.data(), g);
  EXPECT_TRUE((got.array() == want.array()).all());
  const Index panel = PanelWeights::kPanel, last = (reused.panels() - 1) * k * panel;
  for (Index kk = 0; kk < k; ++kk)  // the last panel's padding columns are zero, not the stale values
    for (Index c = g % panel; c < panel; ++c) ASSERT_EQ(storage.data()[last + kk * panel + c], 0.0f) << kk << "," << c;
}

TEST(PanelGemm, EachRowIsTheSameWhateverRowsItIsComputedWith) {
  // Threads run slices of rows: a row's result must not depend on the tile or block it falls in.
  const Index m = 141, k = 75, g = 130;
  const auto a = random<float>(m, k, 4);
  const auto w = random<float>(g, k, 5);
  const PanelWeights packed(w.data(), g, k, k, false);
  lstm_ext::RowMatrix<float> all(m, g), alone(1, g);
  packed.multiply(m, a.data(), k, all.data(), g);
  for (Index r = 0; r < m; ++r) {
    packed.multiply(1, a.data() + r * k, k, alone.data(), g);
    ASSERT_TRUE((alone.row(0).array() == all.row(r).array()).all()) << "row " << r;
  }
}

}  // namespace
