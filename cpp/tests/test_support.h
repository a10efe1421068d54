// SPDX-License-Identifier: MIT
// Shared by the C++ tests: the shape grid, random inputs of one case, running the core on them (float or
// double), the one tolerance table, and array comparisons that report the worst element instead of
// flooding the log.
#pragma once

#include "lstm_ext/lstm.h"
#include "reference_lstm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace lstm_ext::testing {

// ---- what a test varies -------------------------------------------------------------------------------

struct LstmCase {
  Index steps = 1, batch = 1, input = 1, hidden = 1;  // T, N, I, H
  bool h0 = true, c0 = true, bias = true;             // false: passed as nullptr
  bool dh_n = true, dc_n = true;                      // backward only; false: passed as nullptr

  std::string describe() const {
    std::ostringstream s;
    s << "T=" << steps << " N=" << batch << " I=" << input << " H=" << hidden << (h0 ? " h0" : " h0=null")
      << (c0 ? " c0" : " c0=null") << (bias ? " bias" : " bias=null") << (dh_n ? " dh_n" : " dh_n=null")
      << (dc_n ? " dc_n" : " dc_n=null");
    return s.str();
  }
};

// T=1, N=1, H=1, I=1 each alone and together, odd sizes, and H that is not a multiple of any SIMD width.
inline std::vector<LstmCase> shape_grid() {
  return {
      {1, 1, 1, 1}, {1, 3, 2, 5}, {5, 1, 3, 4}, {4, 3, 5, 1},
      {7, 2, 1, 5}, {3, 5, 17, 9}, {6, 4, 8, 16}, {2, 3, 33, 31},
  };
}

// Every shape of the grid with every combination of the forward's optional inputs (h0, c0, bias) and, when
// `backward_options`, of the backward's (dh_n, dc_n).
inline std::vector<LstmCase> case_grid(bool backward_options) {
  std::vector<LstmCase> out;
  for (const LstmCase& shape : shape_grid()) {
    for (int mask = 0; mask < (backward_options ? 32 : 8); ++mask) {
      LstmCase c = shape;
      c.h0 = mask & 1;
      c.c0 = mask & 2;
      c.bias = mask & 4;
      c.dh_n = backward_options ? (mask & 8) != 0 : false;
      c.dc_n = backward_options ? (mask & 16) != 0 : false;
      out.push_back(c);
    }
  }
  return out;
}

// ---- inputs -------------------------------------------------------------------------------------------

// The double-precision inputs of one case; an empty vector is an absent (nullptr) argument.
struct LstmData {
  LstmDims dims;
  std::vector<double> w_ih, w_hh, bias, x, h0, c0, dy, dh_n, dc_n;

  RefDims ref_dims() const {
    return {static_cast<std::size_t>(dims.steps), static_cast<std::size_t>(dims.batch),
            static_cast<std::size_t>(dims.input), static_cast<std::size_t>(dims.hidden)};
  }
  RefForward reference_forward() const { return ref_lstm_forward(ref_dims(), w_ih, w_hh, bias, x, h0, c0); }
  RefGrads reference_backward(const RefForward& fwd) const {
    return ref_lstm_backward(ref_dims(), w_ih, w_hh, bias, x, h0, c0, fwd, dy, dh_n, dc_n);
  }
};

inline std::vector<double> uniform(std::mt19937_64& rng, Index count, double half_width) {
  std::uniform_real_distribution<double> dist(-half_width, half_width);
  std::vector<double> v(static_cast<std::size_t>(count));
  for (double& e : v) e = dist(rng);
  return v;
}

// Weights as PyTorch initialises them (uniform in +-1/sqrt(H)), but wider so that some gates saturate;
// a cell state can exceed 1, so c0 does too.
inline LstmData make_data(const LstmCase& c, std::uint64_t seed = 0) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<std::uint64_t>(c.steps * 7919 + c.batch * 104729 +
                                                                   c.input * 1299709 + c.hidden * 15485863));
  const Index T = c.steps, N = c.batch, I = c.input, H = c.hidden, G = kGatesLstm * H;
  const double k = 2.0 / std::sqrt(static_cast<double>(H));
  LstmData d;
  d.dims = {T, N, I, H};
  d.w_ih = uniform(rng, G * I, k);
  d.w_hh = uniform(rng, G * H, k);
  d.bias = uniform(rng, G, k);
  d.x = uniform(rng, T * N * I, 1.0);
  d.h0 = uniform(rng, N * H, 1.0);
  d.c0 = uniform(rng, N * H, 2.0);
  d.dy = uniform(rng, T * N * H, 1.0);
  d.dh_n = uniform(rng, N * H, 1.0);
  d.dc_n = uniform(rng, N * H, 1.0);
  if (!c.bias) d.bias.clear();
  if (!c.h0) d.h0.clear();
  if (!c.c0) d.c0.clear();
  if (!c.dh_n) d.dh_n.clear();
  if (!c.dc_n) d.dc_n.clear();
  return d;
}

// ---- running the core ---------------------------------------------------------------------------------

template <typename To, typename From>
std::vector<To> cast(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// The same data rounded to Scalar and back: what the reference must see to be compared with a float core
// without charging the input rounding to the core.
template <typename Scalar>
LstmData rounded_to(const LstmData& d) {
  const auto through = [](const std::vector<double>& v) { return cast<double>(cast<Scalar>(v)); };
  LstmData r = d;
  for (auto* v : {&r.w_ih, &r.w_hh, &r.bias, &r.x, &r.h0, &r.c0, &r.dy, &r.dh_n, &r.dc_n}) *v = through(*v);
  return r;
}

template <typename Scalar>
const Scalar* ptr_or_null(const std::vector<Scalar>& v) {
  return v.empty() ? nullptr : v.data();
}

template <typename Scalar>
Scalar* ptr_or_null(std::vector<Scalar>& v) {
  return v.empty() ? nullptr : v.data();
}

// Output buffers start as NaN, so an element the core forgets to write fails every comparison.
template <typename Scalar>
std::vector<Scalar> nan_buffer(Index count) {
  return std::vector<Scalar>(static_cast<std::size_t>(count), std::numeric_limits<Scalar>::quiet_NaN());
}

// The inputs of a case in the core's scalar type; absent ones stay empty and are passed as nullptr.
template <typename Scalar>
struct CoreInputs {
  LstmDims dims;
  std::vector<Scalar> w_ih, w_hh, bias, x, h0, c0, dy, dh_n, dc_n;

  explicit CoreInputs(const LstmData& d)
      : dims(d.dims), w_ih(cast<Scalar>(d.w_ih)), w_hh(cast<Scalar>(d.w_hh)), bias(cast<Scalar>(d.bias)),
        x(cast<Scalar>(d.x)), h0(cast<Scalar>(d.h0)), c0(cast<Scalar>(d.c0)), dy(cast<Scalar>(d.dy)),
        dh_n(cast<Scalar>(d.dh_n)), dc_n(cast<Scalar>(d.dc_n)) {}

  LstmWeights<Scalar> weights() const { return {w_ih.data(), w_hh.data(), ptr_or_null(bias)}; }
};

// Everything one forward (and possibly backward) call wrote.
template <typename Scalar>
struct CoreRun {
  std::vector<Scalar> y, h_n, c_n, gates, cells;  // gates, cells: empty after an inference forward
  std::vector<Scalar> dx, dh0, dc0, dw_ih, dw_hh, dbias;
};

// Every input and weight gradient of two backward runs (a CoreRun, or a reference with the same fields).
#define EXPECT_GRADIENTS_CLOSE(actual, expected, tol)                         \
  do {                                                                        \
    EXPECT_TRUE(all_close("dx", (actual).dx, (expected).dx, tol));           \
    EXPECT_TRUE(all_close("dh0", (actual).dh0, (expected).dh0, tol));        \
    EXPECT_TRUE(all_close("dc0", (actual).dc0, (expected).dc0, tol));        \
    EXPECT_TRUE(all_close("dw_ih", (actual).dw_ih, (expected).dw_ih, tol));  \
    EXPECT_TRUE(all_close("dw_hh", (actual).dw_hh, (expected).dw_hh, tol));  \
    EXPECT_TRUE(all_close("dbias", (actual).dbias, (expected).dbias, tol));  \
  } while (0)

// Row stride of y and dy under a layout (0 means dense).
inline Index y_stride(const LstmLayout& layout, Index hidden) {
  return layout.y_stride == 0 ? hidden : layout.y_stride;
}

// Rows of `cols` values `stride` apart, the gaps NaN (so a kernel that reads them poisons its result).
template <typename Scalar>
std::vector<Scalar> to_strided(const std::vector<Scalar>& dense, Index rows, Index cols, Index stride) {
  std::vector<Scalar> out = nan_buffer<Scalar>(rows * stride);
  for (Index r = 0; r < rows; ++r) {
    std::copy_n(dense.begin() + r * cols, cols, out.begin() + r * stride);
  }
  return out;
}

template <typename Scalar>
std::vector<Scalar> to_dense(const std::vector<Scalar>& strided, Index rows, Index cols, Index stride) {
  std::vector<Scalar> out(static_cast<std::size_t>(rows * cols));
  for (Index r = 0; r < rows; ++r) {
    std::copy_n(strided.begin() + r * stride, cols, out.begin() + r * cols);
  }
  return out;
}

// Forward with h_n and c_n requested; training keeps the cache. y is [T, N, y_stride] under a strided layout.
template <typename Scalar>
CoreRun<Scalar> core_forward(const CoreInputs<Scalar>& in, bool training, const LstmLayout& layout = {}) {
  const Index T = in.dims.steps, N = in.dims.batch, H = in.dims.hidden;
  CoreRun<Scalar> run;
  run.y = nan_buffer<Scalar>(T * N * y_stride(layout, H));
  run.h_n = nan_buffer<Scalar>(N * H);
  run.c_n = nan_buffer<Scalar>(N * H);
  if (training) {
    run.gates = nan_buffer<Scalar>(T * N * kGatesLstm * H);
    run.cells = nan_buffer<Scalar>(T * N * H);
  }
  lstm_forward<Scalar>(in.dims, in.weights(), in.x.data(), ptr_or_null(in.h0), ptr_or_null(in.c0),
                       run.y.data(), run.h_n.data(), run.c_n.data(),
                       {ptr_or_null(run.gates), ptr_or_null(run.cells)}, layout);
  return run;
}

// Backward of a training forward `run` made with the same layout, writing the gradients into `run`. The
// dense in.dy is spread to the layout's stride. With layout.accumulate_dx, run.dx must hold what to add to.
template <typename Scalar>
void core_backward(const CoreInputs<Scalar>& in, CoreRun<Scalar>& run, const LstmLayout& layout = {}) {
  const Index T = in.dims.steps, N = in.dims.batch, I = in.dims.input, H = in.dims.hidden;
  const Index G = kGatesLstm * H;
  const std::vector<Scalar> dy = to_strided(in.dy, T * N, H, y_stride(layout, H));
  if (!layout.accumulate_dx) run.dx = nan_buffer<Scalar>(T * N * I);
  run.dh0 = nan_buffer<Scalar>(N * H);
  run.dc0 = nan_buffer<Scalar>(N * H);
  run.dw_ih = nan_buffer<Scalar>(G * I);
  run.dw_hh = nan_buffer<Scalar>(G * H);
  run.dbias = in.bias.empty() ? std::vector<Scalar>() : nan_buffer<Scalar>(G);
  lstm_backward<Scalar>(in.dims, in.weights(), in.x.data(), ptr_or_null(in.h0), ptr_or_null(in.c0),
                        run.y.data(), {run.gates.data(), run.cells.data()}, dy.data(), ptr_or_null(in.dh_n),
                        ptr_or_null(in.dc_n), run.dx.data(), run.dh0.data(), run.dc0.data(),
                        {run.dw_ih.data(), run.dw_hh.data(), ptr_or_null(run.dbias)}, layout);
}

template <typename Scalar>
CoreRun<Scalar> core_forward_backward(const CoreInputs<Scalar>& in, const LstmLayout& layout = {}) {
  CoreRun<Scalar> run = core_forward(in, /*training=*/true, layout);
  core_backward(in, run, layout);
  return run;
}

// ---- tolerances (the one table) -----------------------------------------------------------------------

struct Tolerance {
  double rtol, atol;
};

// Core vs the double reference. Double: a few hundred ulps of accumulated rounding. Float: Eigen's
// vectorised tanh/logistic are a few ulps off and the backward sums over T*N rows.
template <typename Scalar>
Tolerance forward_tolerance() {
  if constexpr (std::is_same_v<Scalar, double>) return {1e-12, 1e-13};
  else return {2e-5, 2e-6};
}
template <typename Scalar>
Tolerance backward_tolerance() {
  if constexpr (std::is_same_v<Scalar, double>) return {1e-11, 1e-12};
  else return {1e-4, 2e-5};
}
// The same math by another route: another thread count, another buffer address (Eigen runs the unaligned
// head of a vectorised loop through the scalar path, whose exp and sums round differently), null instead of
// explicit zeros. Only rounding may differ.
template <typename Scalar>
Tolerance reorder_tolerance() {
  if constexpr (std::is_same_v<Scalar, double>) return {1e-13, 1e-14};
  else return {1e-5, 1e-6};
}

// ---- comparisons --------------------------------------------------------------------------------------

// |actual - expected| <= atol + rtol * |expected| element-wise, NaN never close; on failure names the
// array, the number of bad elements and the worst one.
template <typename A, typename E>
::testing::AssertionResult all_close(const char* name, const std::vector<A>& actual,
                                     const std::vector<E>& expected, Tolerance tol) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << name << ": size " << actual.size() << ", expected " << expected.size();
  }
  std::size_t bad = 0, worst = 0;
  double worst_excess = -1.0;
  for (std::size_t k = 0; k < actual.size(); ++k) {
    const double a = static_cast<double>(actual[k]), e = static_cast<double>(expected[k]);
    const double err = std::abs(a - e);
    const double allowed = tol.atol + tol.rtol * std::abs(e);
    const bool ok = err <= allowed;  // false for NaN
    if (!ok) {
      ++bad;
      const double excess = std::isnan(err) ? std::numeric_limits<double>::infinity() : err / allowed;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = k;
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream s;
  s.precision(17);
  s << name << ": " << bad << " of " << actual.size() << " elements differ (rtol " << tol.rtol << ", atol "
    << tol.atol << "); worst at [" << worst << "]: " << static_cast<double>(actual[worst]) << " vs expected "
    << static_cast<double>(expected[worst]);
  return ::testing::AssertionFailure() << s.str();
}

// Element-wise ==: equal values, including +0 == -0; NaN never equal.
template <typename Scalar>
::testing::AssertionResult all_equal(const char* name, const std::vector<Scalar>& actual,
                                     const std::vector<Scalar>& expected) {
  return all_close(name, actual, expected, {0.0, 0.0});
}

// ---- exceptions ---------------------------------------------------------------------------------------

// `call` throws std::invalid_argument whose message starts with "[where] " (any "[...] " when where is null)
// and contains `fragment`.
inline ::testing::AssertionResult throws_invalid_argument(const std::function<void()>& call, const char* where,
                                                          const std::string& fragment) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    const std::string prefix = where != nullptr ? "[" + std::string(where) + "] " : "[...] ";
    const bool prefixed = where != nullptr ? message.rfind(prefix, 0) == 0
                                           : message.rfind("[", 0) == 0 && message.find("] ") != std::string::npos;
    if (!prefixed || message.find(fragment) == std::string::npos) {
      return ::testing::AssertionFailure() << "message \"" << message << "\" does not start with \"" << prefix
                                           << "\" and contain \"" << fragment << "\"";
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw another exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// ---- typed-test names ---------------------------------------------------------------------------------

using Scalars = ::testing::Types<float, double>;

struct ScalarName {
  template <typename Scalar>
  static std::string GetName(int) {
    return std::is_same_v<Scalar, float> ? "float" : "double";
  }
};

}  // namespace lstm_ext::testing
