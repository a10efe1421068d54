// SPDX-License-Identifier: MIT
// Every documented std::invalid_argument of the LSTM kernels, with its message, and lstm_cache_bytes.
#include "test_support.h"

#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace lstm_ext::testing {
namespace {

constexpr Index kMaxIndex = std::numeric_limits<Index>::max();
constexpr Index kTwoTo20 = Index{1} << 20;

// Valid arguments for a small case; each test breaks one of them.
struct ValidCall {
  CoreInputs<double> in{make_data({3, 2, 4, 5})};
  CoreRun<double> run = core_forward_backward(in);

  LstmCache<double> cache() { return {run.gates.data(), run.cells.data()}; }
  LstmWeightGrads<double> grads() { return {run.dw_ih.data(), run.dw_hh.data(), run.dbias.data()}; }

  void forward(const LstmDims& dims, const LstmWeights<double>& w, const double* x, double* y,
               const LstmCache<double>& cache) {
    lstm_forward<double>(dims, w, x, in.h0.data(), in.c0.data(), y, run.h_n.data(), run.c_n.data(), cache);
  }
  void backward(const LstmDims& dims, const LstmWeights<double>& w, const double* x, const double* y,
                const LstmCache<double>& cache, const double* dy, double* dx, double* dh0, double* dc0,
                const LstmWeightGrads<double>& grads) {
    lstm_backward<double>(dims, w, x, in.h0.data(), in.c0.data(), y, cache, dy, in.dh_n.data(),
                          in.dc_n.data(), dx, dh0, dc0, grads);
  }
};

// Dims that break "every size >= 1", one size at a time, with 0 and with a negative value.
std::vector<LstmDims> non_positive_dims() {
  std::vector<LstmDims> out;
  for (Index bad : {Index{0}, Index{-1}, std::numeric_limits<Index>::min()}) {
    out.push_back({bad, 2, 4, 5});
    out.push_back({3, bad, 4, 5});
    out.push_back({3, 2, bad, 5});
    out.push_back({3, 2, 4, bad});
  }
  return out;
}

std::string dims_string(const LstmDims& d) {
  return "(T=" + std::to_string(d.steps) + ", N=" + std::to_string(d.batch) + ", I=" + std::to_string(d.input) +
         ", H=" + std::to_string(d.hidden) + ")";
}

// Dims whose buffer sizes (T*N*4H, T*N*I, 4H*I, 4H*H) do not fit in 64 bits. The checks run before any
// pointer is dereferenced, so the small buffers of ValidCall are never touched.
std::vector<LstmDims> overflowing_dims() {
  const Index big = Index{1} << 32;
  return {
      {big, big, 1, 1},      // T*N*4H
      {1, big, big, 1},      // T*N*I
      {1, 1, big, big},      // 4H*I and 4H*H
      {1, 1, 1, kMaxIndex},  // 4H alone
  };
}

// ---- lstm_forward --------------------------------------------------------------------------------------

TEST(LstmForwardPreconditions, RejectsZeroOrNegativeDimensions) {
  ValidCall call;
  for (const LstmDims& dims : non_positive_dims()) {
    SCOPED_TRACE(dims_string(dims));
    EXPECT_TRUE(throws_invalid_argument(
        [&] { call.forward(dims, call.in.weights(), call.in.x.data(), call.run.y.data(), call.cache()); },
        "lstm_forward", "all dimensions must be >= 1, got " + dims_string(dims)));
  }
}

TEST(LstmForwardPreconditions, RejectsDimsWhoseBufferSizesOverflow) {
  ValidCall call;
  for (const LstmDims& dims : overflowing_dims()) {
    SCOPED_TRACE(dims_string(dims));
    EXPECT_TRUE(throws_invalid_argument(
        [&] { call.forward(dims, call.in.weights(), call.in.x.data(), call.run.y.data(), call.cache()); },
        "lstm_forward", "sizes overflow a 64-bit index"));
  }
}

TEST(LstmForwardPreconditions, RejectsNullWeights) {
  ValidCall call;
  const LstmDims dims = call.in.dims;
  LstmWeights<double> w = call.in.weights();
  w.w_ih = nullptr;
  EXPECT_TRUE(throws_invalid_argument(
      [&] { call.forward(dims, w, call.in.x.data(), call.run.y.data(), call.cache()); }, "lstm_forward",
      "w_ih is null"));
  w = call.in.weights();
  w.w_hh = nullptr;
  EXPECT_TRUE(throws_invalid_argument(
      [&] { call.forward(dims, w, call.in.x.data(), call.run.y.data(), call.cache()); }, "lstm_forward",
      "w_hh is null"));
}

TEST(LstmForwardPreconditions, RejectsNullInputOrOutput) {
  ValidCall call;
  const LstmDims dims = call.in.dims;
  EXPECT_TRUE(throws_invalid_argument(
      [&] { call.forward(dims, call.in.weights(), nullptr, call.run.y.data(), call.cache()); }, "lstm_forward",
      "x is null"));
  EXPECT_TRUE(throws_invalid_argument(
      [&] { call.forward(dims, call.in.weights(), call.in.x.data(), nullptr, call.cache()); }, "lstm_forward",
      "y is null"));
}

TEST(LstmForwardPreconditions, RejectsACacheWithOnlyOneBufferSet) {
  ValidCall call;
  const LstmDims dims = call.in.dims;
  for (const LstmCache<double>& half : {LstmCache<double>{call.run.gates.data(), nullptr},
                                        LstmCache<double>{nullptr, call.run.cells.data()}}) {
    EXPECT_TRUE(throws_invalid_argument(
        [&] { call.forward(dims, call.in.weights(), call.in.x.data(), call.run.y.data(), half); }, "lstm_forward",
        "cache.gates and cache.cells must be both set (training) or both null (inference)"));
  }
}

// ---- lstm_backward -------------------------------------------------------------------------------------

TEST(LstmBackwardPreconditions, RejectsZeroOrNegativeDimensions) {
  ValidCall c;
  for (const LstmDims& dims : non_positive_dims()) {
    SCOPED_TRACE(dims_string(dims));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(dims, c.in.weights(), c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(),
                     c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), c.grads());
        },
        "lstm_backward", "all dimensions must be >= 1, got " + dims_string(dims)));
  }
}

TEST(LstmBackwardPreconditions, RejectsDimsWhoseBufferSizesOverflow) {
  ValidCall c;
  for (const LstmDims& dims : overflowing_dims()) {
    SCOPED_TRACE(dims_string(dims));
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(dims, c.in.weights(), c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(),
                     c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), c.grads());
        },
        "lstm_backward", "sizes overflow a 64-bit index"));
  }
}

TEST(LstmBackwardPreconditions, RejectsNullWeights) {
  ValidCall c;
  for (int which = 0; which < 2; ++which) {
    LstmWeights<double> w = c.in.weights();
    (which == 0 ? w.w_ih : w.w_hh) = nullptr;
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(c.in.dims, w, c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(), c.run.dx.data(),
                     c.run.dh0.data(), c.run.dc0.data(), c.grads());
        },
        "lstm_backward", which == 0 ? "w_ih is null" : "w_hh is null"));
  }
}

TEST(LstmBackwardPreconditions, RejectsNullXYOrDy) {
  ValidCall c;
  const double* x = c.in.x.data();
  const double* y = c.run.y.data();
  const double* dy = c.in.dy.data();
  for (int which = 0; which < 3; ++which) {
    SCOPED_TRACE(which == 0 ? "x" : which == 1 ? "y" : "dy");
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(c.in.dims, c.in.weights(), which == 0 ? nullptr : x, which == 1 ? nullptr : y, c.cache(),
                     which == 2 ? nullptr : dy, c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), c.grads());
        },
        "lstm_backward", "x, y and dy are required"));
  }
}

TEST(LstmBackwardPreconditions, RejectsAMissingOrHalfSetCache) {
  ValidCall c;
  for (const LstmCache<double>& cache : {LstmCache<double>{}, LstmCache<double>{c.run.gates.data(), nullptr},
                                         LstmCache<double>{nullptr, c.run.cells.data()}}) {
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(c.in.dims, c.in.weights(), c.in.x.data(), c.run.y.data(), cache, c.in.dy.data(),
                     c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), c.grads());
        },
        "lstm_backward", "the cache of a training forward is required (cache.gates and cache.cells)"));
  }
}

TEST(LstmBackwardPreconditions, RejectsNullInputGradientOutputs) {
  ValidCall c;
  for (int which = 0; which < 3; ++which) {
    SCOPED_TRACE(which == 0 ? "dx" : which == 1 ? "dh0" : "dc0");
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(c.in.dims, c.in.weights(), c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(),
                     which == 0 ? nullptr : c.run.dx.data(), which == 1 ? nullptr : c.run.dh0.data(),
                     which == 2 ? nullptr : c.run.dc0.data(), c.grads());
        },
        "lstm_backward", "dx, dh0 and dc0 are required"));
  }
}

TEST(LstmBackwardPreconditions, RejectsNullWeightGradients) {
  ValidCall c;
  for (int which = 0; which < 2; ++which) {
    LstmWeightGrads<double> g = c.grads();
    (which == 0 ? g.dw_ih : g.dw_hh) = nullptr;
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(c.in.dims, c.in.weights(), c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(),
                     c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), g);
        },
        "lstm_backward", "dw_ih and dw_hh are required"));
  }
}

TEST(LstmBackwardPreconditions, RejectsDbiasForALayerWithoutBias) {
  ValidCall c;
  LstmWeights<double> w = c.in.weights();
  w.bias = nullptr;
  EXPECT_TRUE(throws_invalid_argument(
      [&] {
        c.backward(c.in.dims, w, c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(), c.run.dx.data(),
                   c.run.dh0.data(), c.run.dc0.data(), c.grads());
      },
      "lstm_backward", "dbias must be given exactly when the layer has a bias"));
}

TEST(LstmBackwardPreconditions, RejectsAMissingDbiasForALayerWithBias) {
  ValidCall c;
  LstmWeightGrads<double> g = c.grads();
  g.dbias = nullptr;
  EXPECT_TRUE(throws_invalid_argument(
      [&] {
        c.backward(c.in.dims, c.in.weights(), c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(),
                   c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), g);
      },
      "lstm_backward", "dbias must be given exactly when the layer has a bias"));
}

// ---- lstm_cache_bytes ----------------------------------------------------------------------------------

TEST(LstmCacheBytes, CountsTheGatesAndCellsOfEveryStep) {
  for (const LstmCase& c : shape_grid()) {
    SCOPED_TRACE(c.describe());
    const LstmDims dims{c.steps, c.batch, c.input, c.hidden};
    const Index elements = c.steps * c.batch * kGatesLstm * c.hidden + c.steps * c.batch * c.hidden;
    EXPECT_EQ(lstm_cache_bytes<float>(dims), elements * Index{4});
    EXPECT_EQ(lstm_cache_bytes<double>(dims), elements * Index{8});
  }
  EXPECT_EQ(lstm_cache_bytes<double>({3, 2, 5, 7}), Index{3 * 2 * 5 * 7 * 8});
}

TEST(LstmCacheBytes, RejectsZeroOrNegativeDimensions) {
  for (const LstmDims& dims : non_positive_dims()) {
    SCOPED_TRACE(dims_string(dims));
    EXPECT_TRUE(throws_invalid_argument([&] { lstm_cache_bytes<float>(dims); }, "lstm_cache_bytes",
                                        "all dimensions must be >= 1, got " + dims_string(dims)));
  }
}

TEST(LstmCacheBytes, ThrowsWhenTheByteCountOverflows) {
  // T*N*4H = 2^62 passes the kernels' own size check, but T*N*5H = 5 * 2^60 elements does not fit.
  const LstmDims dims{kTwoTo20, kTwoTo20, 1, kTwoTo20};
  EXPECT_TRUE(throws_invalid_argument([&] { lstm_cache_bytes<float>(dims); }, "lstm_cache_bytes",
                                      "sizes overflow a 64-bit index"));
  EXPECT_TRUE(throws_invalid_argument([&] { lstm_cache_bytes<double>(dims); }, "lstm_cache_bytes",
                                      "sizes overflow a 64-bit index"));
}

TEST(LstmCacheBytes, OverflowCheckIncludesTheScalarSize) {
  // 5 * 2^58 elements: 5 * 2^60 bytes as float fit in 63 bits, 5 * 2^61 bytes as double do not.
  const LstmDims dims{kTwoTo20 / 4, kTwoTo20, 1, kTwoTo20};
  EXPECT_EQ(lstm_cache_bytes<float>(dims), Index{5} << 60);
  EXPECT_TRUE(throws_invalid_argument([&] { lstm_cache_bytes<double>(dims); }, "lstm_cache_bytes",
                                      "sizes overflow a 64-bit index"));
}

// A regression test: the per-step product N*5H was once computed unchecked, a signed overflow (undefined
// behaviour) that wrapped negative and threw "negative size".
TEST(LstmCacheBytes, ThrowsWhenOneStepOfTheCacheOverflows) {
  // N*4H = 2^63 - 4 fits, so the kernels' size check passes; N*5H, one step of the cache, does not.
  const LstmDims dims{1, kMaxIndex / 4, 1, 1};
  EXPECT_TRUE(throws_invalid_argument([&] { lstm_cache_bytes<float>(dims); }, "lstm_cache_bytes",
                                      "sizes overflow a 64-bit index"));
}

}  // namespace
}  // namespace lstm_ext::testing
