// SPDX-License-Identifier: MIT
// Stacked and bidirectional LSTM against the reference composed of single directions, against central
// finite differences, and its preconditions.
#include "test_support.h"

#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace lstm_ext::testing {
namespace {

struct StackCase {
  Index steps = 1, batch = 1, input = 1, hidden = 1, layers = 1, directions = 1;
  bool states = true, bias = true, final_grads = true;  // h0/c0, bias, dh_n/dc_n; false: nullptr

  std::string describe() const {
    std::ostringstream s;
    s << "T=" << steps << " N=" << batch << " I=" << input << " H=" << hidden << " L=" << layers
      << " D=" << directions << (states ? " h0,c0" : " h0,c0=null") << (bias ? " bias" : " bias=null")
      << (final_grads ? " dh_n,dc_n" : " dh_n,dc_n=null");
    return s.str();
  }
  LstmStackDims dims() const { return {steps, batch, input, hidden, layers, directions}; }
  RefStackDims ref_dims() const {
    return {static_cast<std::size_t>(steps),  static_cast<std::size_t>(batch),
            static_cast<std::size_t>(input),  static_cast<std::size_t>(hidden),
            static_cast<std::size_t>(layers), static_cast<std::size_t>(directions)};
  }
};

// Layers 1-3, one or two directions, on T=1/N=1/H=1 and odd shapes, with and without the optional inputs.
std::vector<StackCase> stack_grid() {
  std::vector<StackCase> out;
  for (StackCase shape : {StackCase{1, 1, 1, 1}, StackCase{4, 3, 5, 2}, StackCase{5, 2, 3, 7}}) {
    for (Index layers : {1, 2, 3}) {
      for (Index directions : {1, 2}) {
        for (int mask = 0; mask < 8; ++mask) {
          StackCase c = shape;
          c.layers = layers;
          c.directions = directions;
          c.states = mask & 1;
          c.bias = mask & 2;
          c.final_grads = mask & 4;
          out.push_back(c);
        }
      }
    }
  }
  return out;
}

// Double-precision inputs of a stack case; empty vectors are absent arguments.
struct StackData {
  StackCase c;
  std::vector<RefLayerWeights> weights;  // [L*D]
  std::vector<double> x, h0, c0, dy, dh_n, dc_n;

  RefStackForward reference_forward() const { return ref_stack_forward(c.ref_dims(), weights, x, h0, c0); }
  RefStackGrads reference_backward(const RefStackForward& fwd) const {
    return ref_stack_backward(c.ref_dims(), weights, h0, c0, fwd, dy, dh_n, dc_n);
  }
};

StackData make_stack_data(const StackCase& c, std::uint64_t seed = 0) {
  std::mt19937_64 rng(seed * 7777 + static_cast<std::uint64_t>(c.steps * 31 + c.batch * 37 + c.input * 41 +
                                                               c.hidden * 43 + c.layers * 47 + c.directions * 53));
  const Index T = c.steps, N = c.batch, H = c.hidden, D = c.directions, K = c.layers * D, G = kGatesLstm * H;
  const double k = 2.0 / std::sqrt(static_cast<double>(H));
  StackData d;
  d.c = c;
  for (Index l = 0; l < c.layers; ++l) {
    const Index I = l == 0 ? c.input : D * H;
    for (Index dir = 0; dir < D; ++dir) {
      RefLayerWeights w{uniform(rng, G * I, k), uniform(rng, G * H, k), uniform(rng, G, k)};
      if (!c.bias) w.bias.clear();
      d.weights.push_back(std::move(w));
    }
  }
  d.x = uniform(rng, T * N * c.input, 1.0);
  d.dy = uniform(rng, T * N * D * H, 1.0);
  if (c.states) {
    d.h0 = uniform(rng, K * N * H, 1.0);
    d.c0 = uniform(rng, K * N * H, 2.0);
  }
  if (c.final_grads) {
    d.dh_n = uniform(rng, K * N * H, 1.0);
    d.dc_n = uniform(rng, K * N * H, 1.0);
  }
  return d;
}

template <typename Scalar>
StackData stack_rounded_to(const StackData& d) {
  const auto through = [](const std::vector<double>& v) { return cast<double>(cast<Scalar>(v)); };
  StackData r = d;
  for (RefLayerWeights& w : r.weights) {
    w.w_ih = through(w.w_ih);
    w.w_hh = through(w.w_hh);
    w.bias = through(w.bias);
  }
  for (auto* v : {&r.x, &r.h0, &r.c0, &r.dy, &r.dh_n, &r.dc_n}) *v = through(*v);
  return r;
}

template <typename Scalar>
struct StackInputs {
  LstmStackDims dims;
  std::vector<std::vector<Scalar>> w_ih, w_hh, bias;  // [L*D]
  std::vector<LstmWeights<Scalar>> weights;
  std::vector<Scalar> x, h0, c0, dy, dh_n, dc_n;

  explicit StackInputs(const StackData& d)
      : dims(d.c.dims()), x(cast<Scalar>(d.x)), h0(cast<Scalar>(d.h0)), c0(cast<Scalar>(d.c0)),
        dy(cast<Scalar>(d.dy)), dh_n(cast<Scalar>(d.dh_n)), dc_n(cast<Scalar>(d.dc_n)) {
    for (const RefLayerWeights& w : d.weights) {
      w_ih.push_back(cast<Scalar>(w.w_ih));
      w_hh.push_back(cast<Scalar>(w.w_hh));
      bias.push_back(cast<Scalar>(w.bias));
    }
    for (std::size_t k = 0; k < w_ih.size(); ++k) {
      weights.push_back({w_ih[k].data(), w_hh[k].data(), ptr_or_null(bias[k])});
    }
  }
  StackInputs(const StackInputs&) = delete;  // weights point into the vectors above
  StackInputs& operator=(const StackInputs&) = delete;
};

template <typename Scalar>
struct StackRun {
  std::vector<Scalar> y, h_n, c_n, gates, cells, hidden;
  std::vector<Scalar> dx, dh0, dc0;
  std::vector<std::vector<Scalar>> dw_ih, dw_hh, dbias;  // [L*D]
};

template <typename Scalar>
StackRun<Scalar> core_stack_forward(const StackInputs<Scalar>& in, bool training) {
  const LstmStackDims& d = in.dims;
  const Index K = d.layers * d.directions, NH = d.batch * d.hidden;
  StackRun<Scalar> run;
  run.y = nan_buffer<Scalar>(d.steps * d.batch * d.directions * d.hidden);
  run.h_n = nan_buffer<Scalar>(K * NH);
  run.c_n = nan_buffer<Scalar>(K * NH);
  if (training) {
    const LstmStackCacheSizes sizes = lstm_stack_cache_sizes(d);
    run.gates = nan_buffer<Scalar>(sizes.gates);
    run.cells = nan_buffer<Scalar>(sizes.cells);
    run.hidden = nan_buffer<Scalar>(sizes.hidden);
  }
  lstm_stack_forward<Scalar>(d, in.weights.data(), in.x.data(), ptr_or_null(in.h0), ptr_or_null(in.c0),
                             run.y.data(), run.h_n.data(), run.c_n.data(),
                             {ptr_or_null(run.gates), ptr_or_null(run.cells), ptr_or_null(run.hidden)});
  return run;
}

template <typename Scalar>
StackRun<Scalar> core_stack_forward_backward(const StackInputs<Scalar>& in) {
  StackRun<Scalar> run = core_stack_forward(in, /*training=*/true);
  const LstmStackDims& d = in.dims;
  const Index K = d.layers * d.directions, NH = d.batch * d.hidden, G = kGatesLstm * d.hidden;
  run.dx = nan_buffer<Scalar>(d.steps * d.batch * d.input);
  run.dh0 = nan_buffer<Scalar>(K * NH);
  run.dc0 = nan_buffer<Scalar>(K * NH);
  std::vector<LstmWeightGrads<Scalar>> grads;
  for (Index k = 0; k < K; ++k) {
    const Index I = k < d.directions ? d.input : d.directions * d.hidden;
    run.dw_ih.push_back(nan_buffer<Scalar>(G * I));
    run.dw_hh.push_back(nan_buffer<Scalar>(G * d.hidden));
    run.dbias.push_back(in.bias[k].empty() ? std::vector<Scalar>() : nan_buffer<Scalar>(G));
  }
  for (Index k = 0; k < K; ++k) grads.push_back({run.dw_ih[k].data(), run.dw_hh[k].data(), ptr_or_null(run.dbias[k])});
  lstm_stack_backward<Scalar>(d, in.weights.data(), in.x.data(), ptr_or_null(in.h0), ptr_or_null(in.c0),
                              run.y.data(), {run.gates.data(), run.cells.data(), ptr_or_null(run.hidden)},
                              in.dy.data(), ptr_or_null(in.dh_n), ptr_or_null(in.dc_n), run.dx.data(),
                              run.dh0.data(), run.dc0.data(), grads.data());
  return run;
}

// Concatenations over (layer, direction) in k order, the core's cache layout.
std::vector<double> concat_runs(const RefStackForward& fwd, const StackCase& c, bool gates) {
  std::vector<double> out;
  for (std::size_t k = 0; k < fwd.runs.size(); ++k) {
    const std::vector<double>& v = gates ? fwd.runs[k].gates : fwd.runs[k].cells;
    // A reverse direction's reference ran over reversed time; the cache is indexed by time.
    const bool reverse = static_cast<Index>(k) % c.directions == 1;
    const std::vector<double> in_time = reverse ? ref_reverse_time(v, static_cast<std::size_t>(c.steps)) : v;
    out.insert(out.end(), in_time.begin(), in_time.end());
  }
  return out;
}

std::vector<double> concat_hidden(const RefStackForward& fwd) {
  std::vector<double> out;
  for (std::size_t l = 1; l < fwd.layer_inputs.size(); ++l) {
    out.insert(out.end(), fwd.layer_inputs[l].begin(), fwd.layer_inputs[l].end());
  }
  return out;
}

template <typename Scalar>
class LstmStack : public ::testing::Test {};
TYPED_TEST_SUITE(LstmStack, Scalars, ScalarName);

TYPED_TEST(LstmStack, ForwardMatchesTheComposedReference) {
  using Scalar = TypeParam;
  for (const StackCase& c : stack_grid()) {
    if (!c.final_grads) continue;  // forward only: the backward options change nothing here
    SCOPED_TRACE(c.describe());
    const StackData data = make_stack_data(c);
    const RefStackForward ref = stack_rounded_to<Scalar>(data).reference_forward();
    const StackInputs<Scalar> in(data);
    const Tolerance tol = forward_tolerance<Scalar>();
    for (bool training : {false, true}) {
      SCOPED_TRACE(training ? "training" : "inference");
      const StackRun<Scalar> run = core_stack_forward(in, training);
      EXPECT_TRUE(all_close("y", run.y, ref.y, tol));
      EXPECT_TRUE(all_close("h_n", run.h_n, ref.h_n, tol));
      EXPECT_TRUE(all_close("c_n", run.c_n, ref.c_n, tol));
      if (training) {
        EXPECT_TRUE(all_close("cache.gates", run.gates, concat_runs(ref, c, true), tol));
        EXPECT_TRUE(all_close("cache.cells", run.cells, concat_runs(ref, c, false), tol));
        EXPECT_TRUE(all_close("cache.hidden", run.hidden, concat_hidden(ref), tol));
      }
    }
  }
}

TYPED_TEST(LstmStack, BackwardMatchesTheComposedReference) {
  using Scalar = TypeParam;
  for (const StackCase& c : stack_grid()) {
    SCOPED_TRACE(c.describe());
    const StackData data = stack_rounded_to<Scalar>(make_stack_data(c));
    const RefStackGrads ref = data.reference_backward(data.reference_forward());
    const StackInputs<Scalar> in(data);
    const StackRun<Scalar> run = core_stack_forward_backward(in);
    const Tolerance tol = backward_tolerance<Scalar>();
    EXPECT_TRUE(all_close("dx", run.dx, ref.dx, tol));
    EXPECT_TRUE(all_close("dh0", run.dh0, ref.dh0, tol));
    EXPECT_TRUE(all_close("dc0", run.dc0, ref.dc0, tol));
    for (std::size_t k = 0; k < ref.runs.size(); ++k) {
      SCOPED_TRACE("k = l*D + d = " + std::to_string(k));
      EXPECT_TRUE(all_close("dw_ih", run.dw_ih[k], ref.runs[k].dw_ih, tol));
      EXPECT_TRUE(all_close("dw_hh", run.dw_hh[k], ref.runs[k].dw_hh, tol));
      EXPECT_TRUE(all_close("dbias", run.dbias[k], ref.runs[k].dbias, tol));
    }
  }
}

TEST(LstmStackFiniteDifferences, GradientsMatchCentralDifferencesForTwoBidirectionalLayers) {
  const StackCase c{3, 2, 3, 2, 2, 2};
  const StackData data = make_stack_data(c, /*seed=*/1);
  StackRun<double> grads;
  {
    const StackInputs<double> in(data);
    grads = core_stack_forward_backward(in);
  }
  const auto dot = [](const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0.0;
    for (std::size_t k = 0; k < a.size(); ++k) s += a[k] * b[k];
    return s;
  };
  const auto loss = [&](const StackData& d) {
    const StackInputs<double> in(d);
    const StackRun<double> run = core_stack_forward(in, /*training=*/false);
    return dot(run.y, d.dy) + dot(run.h_n, d.dh_n) + dot(run.c_n, d.dc_n);
  };
  // dL/dv for every entry of the vector `pick` selects, by (L(v + eps) - L(v - eps)) / 2 eps.
  const auto numerical = [&](const std::function<std::vector<double>&(StackData&)>& pick) {
    constexpr double kEps = 1e-6;
    StackData d = data;
    std::vector<double>& v = pick(d);
    std::vector<double> grad(v.size());
    for (std::size_t k = 0; k < v.size(); ++k) {
      const double saved = v[k];
      v[k] = saved + kEps;
      const double plus = loss(d);
      v[k] = saved - kEps;
      const double minus = loss(d);
      v[k] = saved;
      grad[k] = (plus - minus) / (2 * kEps);
    }
    return grad;
  };
  const Tolerance tol{1e-6, 1e-8};
  EXPECT_TRUE(all_close("dx", grads.dx, numerical([](StackData& d) -> std::vector<double>& { return d.x; }), tol));
  EXPECT_TRUE(all_close("dh0", grads.dh0, numerical([](StackData& d) -> std::vector<double>& { return d.h0; }), tol));
  EXPECT_TRUE(all_close("dc0", grads.dc0, numerical([](StackData& d) -> std::vector<double>& { return d.c0; }), tol));
  for (std::size_t k = 0; k < data.weights.size(); ++k) {
    SCOPED_TRACE("k = l*D + d = " + std::to_string(k));
    EXPECT_TRUE(all_close("dw_ih", grads.dw_ih[k],
                          numerical([k](StackData& d) -> std::vector<double>& { return d.weights[k].w_ih; }), tol));
    EXPECT_TRUE(all_close("dw_hh", grads.dw_hh[k],
                          numerical([k](StackData& d) -> std::vector<double>& { return d.weights[k].w_hh; }), tol));
    EXPECT_TRUE(all_close("dbias", grads.dbias[k],
                          numerical([k](StackData& d) -> std::vector<double>& { return d.weights[k].bias; }), tol));
  }
}

TEST(LstmStackCacheSizes, CountsEveryLayerAndDirection) {
  for (const StackCase& c : stack_grid()) {
    SCOPED_TRACE(c.describe());
    const LstmStackCacheSizes sizes = lstm_stack_cache_sizes(c.dims());
    const Index K = c.layers * c.directions, rows = c.steps * c.batch;
    EXPECT_EQ(sizes.gates, K * rows * kGatesLstm * c.hidden);
    EXPECT_EQ(sizes.cells, K * rows * c.hidden);
    EXPECT_EQ(sizes.hidden, (c.layers - 1) * rows * c.directions * c.hidden);
  }
}

// ---- preconditions ---------------------------------------------------------------------------------------

// Valid arguments for a two-layer bidirectional case; each test breaks one of them.
struct ValidStackCall {
  StackData data = make_stack_data({3, 2, 4, 5, 2, 2});
  StackInputs<double> in{data};
  StackRun<double> run = core_stack_forward_backward(in);
  std::vector<LstmWeightGrads<double>> grads;

  ValidStackCall() {
    for (std::size_t k = 0; k < run.dw_ih.size(); ++k) {
      grads.push_back({run.dw_ih[k].data(), run.dw_hh[k].data(), run.dbias[k].data()});
    }
  }
  LstmStackCache<double> cache() { return {run.gates.data(), run.cells.data(), run.hidden.data()}; }
  void forward(const LstmStackDims& dims, const LstmWeights<double>* w, const double* x, double* y,
               const LstmStackCache<double>& cache) {
    lstm_stack_forward<double>(dims, w, x, in.h0.data(), in.c0.data(), y, run.h_n.data(), run.c_n.data(), cache);
  }
  void backward(const LstmStackDims& dims, const LstmWeights<double>* w, const double* x, const double* y,
                const LstmStackCache<double>& cache, const double* dy, double* dx, double* dh0, double* dc0,
                const LstmWeightGrads<double>* g) {
    lstm_stack_backward<double>(dims, w, x, in.h0.data(), in.c0.data(), y, cache, dy, in.dh_n.data(),
                                in.dc_n.data(), dx, dh0, dc0, g);
  }
  void forward_with(const LstmStackDims& dims) {
    forward(dims, in.weights.data(), in.x.data(), run.y.data(), cache());
  }
  void backward_with(const LstmStackDims& dims) {
    backward(dims, in.weights.data(), in.x.data(), run.y.data(), cache(), in.dy.data(), run.dx.data(),
             run.dh0.data(), run.dc0.data(), grads.data());
  }
};

TEST(LstmStackPreconditions, RejectsLayersBelowOne) {
  ValidStackCall call;
  for (Index layers : {Index{0}, Index{-2}}) {
    LstmStackDims dims = call.in.dims;
    dims.layers = layers;
    const std::string message = "layers must be >= 1, got " + std::to_string(layers);
    EXPECT_TRUE(throws_invalid_argument([&] { call.forward_with(dims); }, "lstm_stack_forward", message));
    EXPECT_TRUE(throws_invalid_argument([&] { call.backward_with(dims); }, "lstm_stack_backward", message));
    EXPECT_TRUE(throws_invalid_argument([&] { lstm_stack_cache_sizes(dims); }, "lstm_stack_cache_sizes", message));
  }
}

TEST(LstmStackPreconditions, RejectsDirectionsOtherThanOneOrTwo) {
  ValidStackCall call;
  for (Index directions : {Index{0}, Index{3}, Index{-1}}) {
    LstmStackDims dims = call.in.dims;
    dims.directions = directions;
    const std::string message = "directions must be 1 or 2, got " + std::to_string(directions);
    EXPECT_TRUE(throws_invalid_argument([&] { call.forward_with(dims); }, "lstm_stack_forward", message));
    EXPECT_TRUE(throws_invalid_argument([&] { call.backward_with(dims); }, "lstm_stack_backward", message));
    EXPECT_TRUE(throws_invalid_argument([&] { lstm_stack_cache_sizes(dims); }, "lstm_stack_cache_sizes", message));
  }
}

TEST(LstmStackPreconditions, RejectsZeroOrNegativeSizes) {
  ValidStackCall call;
  for (int which = 0; which < 4; ++which) {
    LstmStackDims dims = call.in.dims;
    (which == 0 ? dims.steps : which == 1 ? dims.batch : which == 2 ? dims.input : dims.hidden) = which % 2 ? -1 : 0;
    SCOPED_TRACE(which);
    EXPECT_TRUE(throws_invalid_argument([&] { call.forward_with(dims); }, "lstm_stack_forward",
                                        "all dimensions must be >= 1"));
    EXPECT_TRUE(throws_invalid_argument([&] { call.backward_with(dims); }, "lstm_stack_backward",
                                        "all dimensions must be >= 1"));
    EXPECT_TRUE(throws_invalid_argument([&] { lstm_stack_cache_sizes(dims); }, "lstm_stack_cache_sizes",
                                        "all dimensions must be >= 1"));
  }
}

TEST(LstmStackPreconditions, RejectsSizesWhoseBuffersOverflow) {
  ValidStackCall call;
  // T*N*4H = 2^62 fits for one direction; times L*D = 4 it does not.
  const Index big = Index{1} << 20;
  const LstmStackDims dims{big, big, 1, big, 2, 2};
  EXPECT_TRUE(throws_invalid_argument([&] { lstm_stack_cache_sizes(dims); }, "lstm_stack_cache_sizes",
                                      "sizes overflow a 64-bit index"));
  EXPECT_TRUE(throws_invalid_argument([&] { call.forward_with(dims); }, "lstm_stack_forward",
                                      "sizes overflow a 64-bit index"));
}

TEST(LstmStackPreconditions, ForwardRejectsNullWeightsInputOrOutput) {
  ValidStackCall c;
  const LstmStackDims dims = c.in.dims;
  const std::string message = "weights, x and y are required";
  EXPECT_TRUE(throws_invalid_argument([&] { c.forward(dims, nullptr, c.in.x.data(), c.run.y.data(), c.cache()); },
                                      "lstm_stack_forward", message));
  EXPECT_TRUE(throws_invalid_argument(
      [&] { c.forward(dims, c.in.weights.data(), nullptr, c.run.y.data(), c.cache()); }, "lstm_stack_forward",
      message));
  EXPECT_TRUE(throws_invalid_argument(
      [&] { c.forward(dims, c.in.weights.data(), c.in.x.data(), nullptr, c.cache()); }, "lstm_stack_forward",
      message));
}

TEST(LstmStackPreconditions, ForwardRejectsAPartlySetCache) {
  ValidStackCall c;
  const LstmStackDims dims = c.in.dims;
  double* g = c.run.gates.data();
  double* s = c.run.cells.data();
  double* h = c.run.hidden.data();
  for (const LstmStackCache<double>& cache :
       {LstmStackCache<double>{g, nullptr, nullptr}, LstmStackCache<double>{nullptr, s, nullptr},
        LstmStackCache<double>{nullptr, nullptr, h}, LstmStackCache<double>{g, s, nullptr}}) {
    EXPECT_TRUE(throws_invalid_argument(
        [&] { c.forward(dims, c.in.weights.data(), c.in.x.data(), c.run.y.data(), cache); }, "lstm_stack_forward",
        "the cache buffers must be all set (training) or all null (inference)"));
  }
}

TEST(LstmStackPreconditions, BackwardRejectsNullWeightsOrGrads) {
  ValidStackCall c;
  const LstmStackDims dims = c.in.dims;
  for (int which = 0; which < 2; ++which) {
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(dims, which == 0 ? nullptr : c.in.weights.data(), c.in.x.data(), c.run.y.data(), c.cache(),
                     c.in.dy.data(), c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(),
                     which == 1 ? nullptr : c.grads.data());
        },
        "lstm_stack_backward", "weights and grads are required"));
  }
}

TEST(LstmStackPreconditions, BackwardRejectsAMissingCache) {
  ValidStackCall c;
  const LstmStackDims dims = c.in.dims;
  double* g = c.run.gates.data();
  double* s = c.run.cells.data();
  double* h = c.run.hidden.data();
  for (const LstmStackCache<double>& cache : {LstmStackCache<double>{}, LstmStackCache<double>{nullptr, s, h},
                                              LstmStackCache<double>{g, nullptr, h},
                                              LstmStackCache<double>{g, s, nullptr}}) {
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(dims, c.in.weights.data(), c.in.x.data(), c.run.y.data(), cache, c.in.dy.data(),
                     c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), c.grads.data());
        },
        "lstm_stack_backward", "the cache of a training forward is required"));
  }
}

TEST(LstmStackPreconditions, BackwardRejectsNullXYDyOrDx) {
  ValidStackCall c;
  const LstmStackDims dims = c.in.dims;
  for (int which = 0; which < 4; ++which) {
    SCOPED_TRACE(which);
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(dims, c.in.weights.data(), which == 0 ? nullptr : c.in.x.data(),
                     which == 1 ? nullptr : c.run.y.data(), c.cache(), which == 2 ? nullptr : c.in.dy.data(),
                     which == 3 ? nullptr : c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), c.grads.data());
        },
        "lstm_stack_backward", "x, y, dy and dx are required"));
  }
}

// The per-(layer, direction) checks are lstm_forward's and lstm_backward's own, and so are their messages.
TEST(LstmStackPreconditions, RejectsNullPerLayerWeightsAndGradients) {
  ValidStackCall c;
  const LstmStackDims dims = c.in.dims;
  for (std::size_t k : {std::size_t{0}, std::size_t{3}}) {
    SCOPED_TRACE("k = " + std::to_string(k));
    std::vector<LstmWeights<double>> weights = c.in.weights;
    weights[k].w_hh = nullptr;
    EXPECT_TRUE(throws_invalid_argument(
        [&] { c.forward(dims, weights.data(), c.in.x.data(), c.run.y.data(), c.cache()); }, nullptr,
        "w_hh is null"));
    std::vector<LstmWeightGrads<double>> grads = c.grads;
    grads[k].dw_ih = nullptr;
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(dims, c.in.weights.data(), c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(),
                     c.run.dx.data(), c.run.dh0.data(), c.run.dc0.data(), grads.data());
        },
        nullptr, "dw_ih and dw_hh are required"));
  }
}

// A regression test: dh0 and dc0 were once passed on unchecked as dh0 + k*N*H, so with L*D > 1 the first
// (layer, direction) got a non-null wild pointer and the process died of SIGSEGV instead of throwing.
TEST(LstmStackPreconditions, BackwardRejectsNullDh0OrDc0) {
  ValidStackCall c;
  const LstmStackDims dims = c.in.dims;
  for (int which = 0; which < 2; ++which) {
    SCOPED_TRACE(which == 0 ? "dh0" : "dc0");
    EXPECT_TRUE(throws_invalid_argument(
        [&] {
          c.backward(dims, c.in.weights.data(), c.in.x.data(), c.run.y.data(), c.cache(), c.in.dy.data(),
                     c.run.dx.data(), which == 0 ? nullptr : c.run.dh0.data(),
                     which == 1 ? nullptr : c.run.dc0.data(), c.grads.data());
        },
        "lstm_stack_backward", "dh0 and dc0 are required"));
  }
}

}  // namespace
}  // namespace lstm_ext::testing
