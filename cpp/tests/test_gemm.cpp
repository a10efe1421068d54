// SPDX-License-Identifier: MIT
// The products over all rows (cpp/src/gemm_internal.h) on each backend against a plain double-precision loop:
// every transpose combination, accumulation, row strides wider than the rows, the empty sum, and products
// large enough to be split over threads by rows and by columns.
#include "../src/gemm_internal.h"
#include "lstm_ext/threads.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace {

using lstm_ext::GemmBackend;
using lstm_ext::Index;

template <typename T>
class Gemm : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Gemm, Scalars);

std::vector<GemmBackend> backends() {
  std::vector<GemmBackend> all{GemmBackend::kNative, GemmBackend::kEigen};
  if (lstm_ext::openblas_available()) all.push_back(GemmBackend::kOpenBlas);
  return all;
}

template <typename Scalar>
std::vector<Scalar> random_values(Index count, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<Scalar> v(static_cast<size_t>(count));
  for (auto& e : v) e = Scalar(u(gen));
  return v;
}

template <typename Scalar>
void check(GemmBackend backend, bool ta, bool tb, Index m, Index n, Index k, bool accumulate) {
  SCOPED_TRACE(lstm_ext::gemm_backend_description(backend).substr(0, 20) + " ta=" + std::to_string(ta) +
               " tb=" + std::to_string(tb) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
               " k=" + std::to_string(k) + " accumulate=" + std::to_string(accumulate));
  // Stored shapes, each row padded: the products must read and write only their own columns.
  const Index a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  const Index lda = a_cols + 3, ldb = b_cols + 2, ldc = n + 5;
  const auto a = random_values<Scalar>(a_rows * lda, 1);
  const auto b = random_values<Scalar>(b_rows * ldb, 2);
  const auto c0 = random_values<Scalar>(m * ldc, 3);
  auto c = c0;
  lstm_ext::detail::gemm_on(backend, ta, tb, m, n, k, a.data(), lda, b.data(), ldb, accumulate, c.data(), ldc);
  const double tol = std::is_same<Scalar, float>::value ? 2e-6 : 1e-14;
  for (Index i = 0; i < m; ++i) {
    for (Index j = 0; j < n; ++j) {
      double want = accumulate ? double(c0[i * ldc + j]) : 0.0;
      for (Index p = 0; p < k; ++p) {
        const double av = ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        want += av * bv;
      }
      ASSERT_NEAR(double(c[i * ldc + j]), want, tol * (1.0 + double(k))) << "at " << i << "," << j;
    }
    for (Index j = n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << "padding at " << i << "," << j;
  }
}

TYPED_TEST(Gemm, MatchesTheDefinitionOnEveryBackendAndLayout) {
  for (GemmBackend backend : backends())
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool accumulate : {false, true}) {
          check<TypeParam>(backend, ta, tb, 1, 1, 1, accumulate);
          check<TypeParam>(backend, ta, tb, 7, 5, 3, accumulate);
          check<TypeParam>(backend, ta, tb, 33, 17, 64, accumulate);
          check<TypeParam>(backend, ta, tb, 150, 60, 1100, accumulate);  // blocks of rows and of k
        }
}

// The thin products (gemm.cpp's thin_product): a depth of at most 8, and the shapes just past the rule,
// which the GEMM kernels take; single rows and columns beside them.
TYPED_TEST(Gemm, ThinProductsMatchTheDefinition) {
  for (GemmBackend backend : backends())
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool accumulate : {false, true}) {
          check<TypeParam>(backend, ta, tb, 1, 70, 130, accumulate);
          check<TypeParam>(backend, ta, tb, 70, 1, 130, accumulate);
          check<TypeParam>(backend, ta, tb, 130, 70, 1, accumulate);   // depth 1: a weight gradient at T=N=1
          check<TypeParam>(backend, ta, tb, 130, 70, 8, accumulate);
          check<TypeParam>(backend, ta, tb, 130, 70, 9, accumulate);
          check<TypeParam>(backend, ta, tb, 1100, 500, 2, accumulate);  // depth 2 but too much work for one thread
        }
}

TYPED_TEST(Gemm, SplitsOverThreadsByRowsAndByColumns) {
  const int before = lstm_ext::get_num_threads();
  for (int threads : {1, 2, 3}) {
    lstm_ext::set_num_threads(threads);
    for (GemmBackend backend : backends())
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          check<TypeParam>(backend, ta, tb, 300, 70, 130, true);   // tall: split by rows
          check<TypeParam>(backend, ta, tb, 40, 400, 100, false);  // wide: split by columns
        }
  }
  lstm_ext::set_num_threads(before);
}

// Split by rows, each thread packs a small op(B) for itself and a large one together with the others: either
// way the bits of one thread (the native float kernel's rows do not depend on the rows computed with them).
TEST(NativeGemm, ARowSplitGivesTheBitsOfOneThreadWithOwnOrSharedPacking) {
  using TypeParam = float;
  ASSERT_EQ(lstm_ext::get_gemm_backend(), GemmBackend::kNative);
  const int before = lstm_ext::get_num_threads();
  for (bool tb : {false, true})
    for (Index n : {Index(70), Index(600)}) {  // packed op(B): 50 KB (each its own), 1.2 MB (shared)
      const Index m = 300, k = 512, lda = k, ldb = tb ? k : n, ldc = n;
      const auto a = random_values<TypeParam>(m * lda, 7);
      const auto b = random_values<TypeParam>((tb ? n : k) * ldb, 8);
      std::vector<TypeParam> one(m * ldc), two(m * ldc);
      lstm_ext::set_num_threads(1);
      lstm_ext::detail::gemm<TypeParam>(false, tb, m, n, k, a.data(), lda, b.data(), ldb, false, one.data(), ldc);
      lstm_ext::set_num_threads(2);
      lstm_ext::detail::gemm<TypeParam>(false, tb, m, n, k, a.data(), lda, b.data(), ldb, false, two.data(), ldc);
      EXPECT_EQ(two, one) << "n=" << n << " tb=" << tb;
    }
  lstm_ext::set_num_threads(before);
}

// A shared op(B) (packed once on the native float backend) gives gemm's bits, product after product, for
// tall and short products on 1 and 2 threads (packing split over the threads from 1 MB: k * n = 512 * 600).
TYPED_TEST(Gemm, SharedRhsProductsEqualGemmBitwise) {
  const int threads_before = lstm_ext::get_num_threads();
  const GemmBackend backend_before = lstm_ext::get_gemm_backend();
  for (GemmBackend backend : backends())
    for (int threads : {1, 2})
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          lstm_ext::set_gemm_backend(backend);
          lstm_ext::set_num_threads(threads);
          SCOPED_TRACE(lstm_ext::gemm_backend_description(backend).substr(0, 20) + " threads=" +
                       std::to_string(threads) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
          const Index n = 600, k = 512, ldb = (tb ? k : n) + 1;
          const auto b = random_values<TypeParam>((tb ? n : k) * ldb, 4);
          const lstm_ext::detail::SharedRhs<TypeParam> shared(tb, n, k, b.data(), ldb, 6);
          for (Index m : {Index(1), Index(37), Index(300)}) {
            const Index lda = (ta ? m : k) + 2, ldc = n + 3;
            const auto a = random_values<TypeParam>((ta ? k : m) * lda, 5 + unsigned(m));
            for (bool accumulate : {false, true}) {
              auto want = random_values<TypeParam>(m * ldc, 6);
              auto got = want;
              lstm_ext::detail::gemm<TypeParam>(ta, tb, m, n, k, a.data(), lda, b.data(), ldb, accumulate, want.data(),
                                                ldc);
              shared.product(ta, m, a.data(), lda, accumulate, got.data(), ldc);
              ASSERT_EQ(got, want) << "m=" << m << " accumulate=" << accumulate;
            }
          }
        }
  lstm_ext::set_num_threads(threads_before);
  lstm_ext::set_gemm_backend(backend_before);
}

TYPED_TEST(Gemm, EmptySumZeroesOrKeepsC) {
  for (GemmBackend backend : backends()) {
    std::vector<TypeParam> c(6, TypeParam(4));
    lstm_ext::detail::gemm_on<TypeParam>(backend, false, false, 2, 3, 0, nullptr, 1, nullptr, 3, true, c.data(), 3);
    for (TypeParam v : c) EXPECT_EQ(v, TypeParam(4));
    lstm_ext::detail::gemm_on<TypeParam>(backend, false, false, 2, 3, 0, nullptr, 1, nullptr, 3, false, c.data(), 3);
    for (TypeParam v : c) EXPECT_EQ(v, TypeParam(0));
  }
}

TEST(Gemm, RefusesLeadingDimensionsShorterThanARow) {
  std::vector<float> a(12), b(12), c(12);
  EXPECT_THROW(lstm_ext::detail::gemm<float>(false, false, 3, 4, 3, a.data(), 2, b.data(), 4, false, c.data(), 4),
               std::invalid_argument);
  EXPECT_THROW(lstm_ext::detail::gemm<float>(false, false, 3, 4, 3, a.data(), 3, b.data(), 4, false, c.data(), 3),
               std::invalid_argument);
  EXPECT_THROW(lstm_ext::detail::gemm<float>(false, false, -1, 4, 3, a.data(), 3, b.data(), 4, false, c.data(), 4),
               std::invalid_argument);
}

TEST(GemmBackendSetting, DefaultsToNativeAndRefusesOpenBlasWhereNotBuilt) {
  const GemmBackend before = lstm_ext::get_gemm_backend();
  EXPECT_EQ(before, GemmBackend::kNative);
  EXPECT_EQ(lstm_ext::gemm_backend_description(GemmBackend::kNative).rfind("native (", 0), 0u);
  if (lstm_ext::openblas_available()) {
    EXPECT_EQ(lstm_ext::gemm_backend_description(GemmBackend::kOpenBlas).rfind("openblas ", 0), 0u);
  } else {
    EXPECT_THROW(lstm_ext::set_gemm_backend(GemmBackend::kOpenBlas), std::invalid_argument);
  }
  lstm_ext::set_gemm_backend(GemmBackend::kEigen);
  EXPECT_EQ(lstm_ext::get_gemm_backend(), GemmBackend::kEigen);
  EXPECT_EQ(lstm_ext::gemm_backend_description(GemmBackend::kEigen).rfind("eigen 3.", 0), 0u);
  lstm_ext::set_gemm_backend(before);
}

}  // namespace
