// SPDX-License-Identifier: MIT
// Shared by the tests of the GRU, packed sequences, the projection and the dropout masks: random inputs
// (dense or packed, with or without masks), running the core on them in float or double with every optional
// argument, and central finite differences. Builds on test_support.h (tolerances, comparisons, buffers).
#pragma once

#include "lstm_ext/gru.h"
#include "lstm_ext/lstm.h"
#include "reference_gru.h"
#include "reference_lstm_projection.h"
#include "test_support.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace lstm_ext::testing {

// ---- inputs -------------------------------------------------------------------------------------------

// Variational dropout masks as the caller draws them: 0 with probability p, else 1 / (1 - p).
inline std::vector<double> dropout_mask(std::mt19937_64& rng, Index count, double p) {
  std::bernoulli_distribution drop(p);
  std::vector<double> m(static_cast<std::size_t>(count));
  for (double& e : m) e = drop(rng) ? 0.0 : 1.0 / (1.0 - p);
  return m;
}

// Rows of a dense (T*N) or packed (sum of batch_sizes) sequence.
inline Index rows_of(Index steps, Index batch, const std::vector<std::int64_t>& batch_sizes) {
  if (batch_sizes.empty()) return steps * batch;
  return std::accumulate(batch_sizes.begin(), batch_sizes.end(), Index{0});
}

template <typename Scalar>
std::vector<double> through(const std::vector<double>& v) {
  return cast<double>(cast<Scalar>(v));
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t k = 0; k < a.size() && k < b.size(); ++k) s += a[k] * b[k];
  return s;
}

// ---- one GRU layer ------------------------------------------------------------------------------------

struct GruCase {
  Index steps = 1, batch = 1, input = 1, hidden = 1;  // T, N, I, H
  bool reset_after = true;
  bool bias = true, h0 = true, dh_n = true;  // false: passed as nullptr

  std::string describe() const {
    std::ostringstream s;
    s << "T=" << steps << " N=" << batch << " I=" << input << " H=" << hidden
      << (reset_after ? " reset_after" : " reset_before") << (bias ? " bias" : " bias=null")
      << (h0 ? " h0" : " h0=null") << (dh_n ? " dh_n" : " dh_n=null");
    return s.str();
  }
};

// The double-precision inputs of one GRU case; an empty vector is an absent argument. Dense [T, N, F]
// unless batch_sizes is set, then packed [R, F].
struct GruData {
  GruCase c;
  std::vector<std::int64_t> batch_sizes;
  std::vector<double> w_ih, w_hh, b_ih, b_hh, x, h0, dy, dh_n;
  std::vector<double> mask_x, mask_h;  // [N, I], [N, H] or empty

  Index rows() const { return rows_of(c.steps, c.batch, batch_sizes); }
  RefDims ref_dims() const {
    return {static_cast<std::size_t>(c.steps), static_cast<std::size_t>(c.batch),
            static_cast<std::size_t>(c.input), static_cast<std::size_t>(c.hidden)};
  }
  RefGruWeights ref_weights() const { return {w_ih, w_hh, b_ih, b_hh, c.reset_after}; }
  RefMasks ref_masks() const { return {mask_x, mask_h}; }
  // Dense only: the reference knows nothing of packing.
  RefGruForward reference_forward() const { return ref_gru_forward(ref_dims(), ref_weights(), x, h0, ref_masks()); }
  RefGruGrads reference_backward(const RefGruForward& fwd) const {
    return ref_gru_backward(ref_dims(), ref_weights(), x, h0, fwd, dy, dh_n, ref_masks());
  }
};

// Weights wider than torch's +-1/sqrt(H) so that some gates saturate.
inline GruData make_gru_data(const GruCase& c, std::uint64_t seed = 0) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<std::uint64_t>(c.steps * 7919 + c.batch * 104729 +
                                                                   c.input * 1299709 + c.hidden * 15485863));
  const Index T = c.steps, N = c.batch, I = c.input, H = c.hidden, G = kGatesGru * H;
  const double k = 2.0 / std::sqrt(static_cast<double>(H));
  GruData d;
  d.c = c;
  d.w_ih = uniform(rng, G * I, k);
  d.w_hh = uniform(rng, G * H, k);
  d.b_ih = uniform(rng, G, k);
  d.b_hh = uniform(rng, G, k);
  d.x = uniform(rng, T * N * I, 1.0);
  d.h0 = uniform(rng, N * H, 1.0);
  d.dy = uniform(rng, T * N * H, 1.0);
  d.dh_n = uniform(rng, N * H, 1.0);
  if (!c.bias) d.b_ih.clear(), d.b_hh.clear();
  if (!c.h0) d.h0.clear();
  if (!c.dh_n) d.dh_n.clear();
  return d;
}

template <typename Scalar>
GruData gru_rounded_to(const GruData& d) {
  GruData r = d;
  for (auto* v : {&r.w_ih, &r.w_hh, &r.b_ih, &r.b_hh, &r.x, &r.h0, &r.dy, &r.dh_n, &r.mask_x, &r.mask_h}) {
    *v = through<Scalar>(*v);
  }
  return r;
}

template <typename Scalar>
struct GruInputs {
  GruCase c;
  std::vector<std::int64_t> batch_sizes;
  std::vector<Scalar> w_ih, w_hh, b_ih, b_hh, x, h0, dy, dh_n, mask_x, mask_h;

  explicit GruInputs(const GruData& d)
      : c(d.c), batch_sizes(d.batch_sizes), w_ih(cast<Scalar>(d.w_ih)), w_hh(cast<Scalar>(d.w_hh)),
        b_ih(cast<Scalar>(d.b_ih)), b_hh(cast<Scalar>(d.b_hh)), x(cast<Scalar>(d.x)), h0(cast<Scalar>(d.h0)),
        dy(cast<Scalar>(d.dy)), dh_n(cast<Scalar>(d.dh_n)), mask_x(cast<Scalar>(d.mask_x)),
        mask_h(cast<Scalar>(d.mask_h)) {}

  GruDims dims() const {
    GruDims dims{c.steps, c.batch, c.input, c.hidden};
    dims.batch_sizes = batch_sizes.empty() ? nullptr : batch_sizes.data();
    return dims;
  }
  Index rows() const { return rows_of(c.steps, c.batch, batch_sizes); }
  GruWeights<Scalar> weights() const {
    return {w_ih.data(), w_hh.data(), ptr_or_null(b_ih), ptr_or_null(b_hh), c.reset_after};
  }
  DropoutMasks<Scalar> masks() const { return {ptr_or_null(mask_x), ptr_or_null(mask_h)}; }
};

template <typename Scalar>
struct GruRun {
  std::vector<Scalar> y, h_n, gates, hidden_n;  // gates, hidden_n: empty after inference
  std::vector<Scalar> dx, dh0, dw_ih, dw_hh, db_ih, db_hh;
};

template <typename Scalar>
GruRun<Scalar> gru_core_forward(const GruInputs<Scalar>& in, bool training, const SequenceLayout& layout = {}) {
  const Index R = in.rows(), N = in.c.batch, H = in.c.hidden;
  GruRun<Scalar> run;
  run.y = nan_buffer<Scalar>(R * y_stride(layout, H));
  run.h_n = nan_buffer<Scalar>(N * H);
  if (training) {
    run.gates = nan_buffer<Scalar>(R * kGatesGru * H);
    if (in.c.reset_after) run.hidden_n = nan_buffer<Scalar>(R * H);
  }
  gru_forward<Scalar>(in.dims(), in.weights(), in.x.data(), ptr_or_null(in.h0), run.y.data(), run.h_n.data(),
                      {ptr_or_null(run.gates), ptr_or_null(run.hidden_n)}, layout, in.masks());
  return run;
}

// Backward of the training forward `run` made with the same layout; in.dy (dense) is spread to its stride.
// With layout.accumulate_dx, run.dx must hold what to add to.
template <typename Scalar>
void gru_core_backward(const GruInputs<Scalar>& in, GruRun<Scalar>& run, const SequenceLayout& layout = {}) {
  const Index R = in.rows(), N = in.c.batch, I = in.c.input, H = in.c.hidden, G = kGatesGru * H;
  const std::vector<Scalar> dy = to_strided(in.dy, R, H, y_stride(layout, H));
  if (!layout.accumulate_dx) run.dx = nan_buffer<Scalar>(R * I);
  run.dh0 = nan_buffer<Scalar>(N * H);
  run.dw_ih = nan_buffer<Scalar>(G * I);
  run.dw_hh = nan_buffer<Scalar>(G * H);
  run.db_ih = in.b_ih.empty() ? std::vector<Scalar>() : nan_buffer<Scalar>(G);
  run.db_hh = in.b_hh.empty() ? std::vector<Scalar>() : nan_buffer<Scalar>(G);
  gru_backward<Scalar>(in.dims(), in.weights(), in.x.data(), ptr_or_null(in.h0), run.y.data(),
                       {run.gates.data(), ptr_or_null(run.hidden_n)}, dy.data(), ptr_or_null(in.dh_n),
                       run.dx.data(), run.dh0.data(),
                       {run.dw_ih.data(), run.dw_hh.data(), ptr_or_null(run.db_ih), ptr_or_null(run.db_hh)},
                       layout, in.masks());
}

template <typename Scalar>
GruRun<Scalar> gru_core_forward_backward(const GruInputs<Scalar>& in, const SequenceLayout& layout = {}) {
  GruRun<Scalar> run = gru_core_forward(in, /*training=*/true, layout);
  gru_core_backward(in, run, layout);
  return run;
}

// Every input and weight gradient of a GRU backward (GruRun or RefGruGrads).
#define EXPECT_GRU_GRADIENTS_CLOSE(actual, expected, tol)                    \
  do {                                                                       \
    EXPECT_TRUE(all_close("dx", (actual).dx, (expected).dx, tol));          \
    EXPECT_TRUE(all_close("dh0", (actual).dh0, (expected).dh0, tol));       \
    EXPECT_TRUE(all_close("dw_ih", (actual).dw_ih, (expected).dw_ih, tol)); \
    EXPECT_TRUE(all_close("dw_hh", (actual).dw_hh, (expected).dw_hh, tol)); \
    EXPECT_TRUE(all_close("db_ih", (actual).db_ih, (expected).db_ih, tol)); \
    EXPECT_TRUE(all_close("db_hh", (actual).db_hh, (expected).db_hh, tol)); \
  } while (0)

// ---- one LSTM layer with projection and masks ---------------------------------------------------------

struct LstmpCase {
  Index steps = 1, batch = 1, input = 1, hidden = 1, proj = 0;  // T, N, I, H, P
  bool bias = true, h0 = true, c0 = true, final_grads = true;   // final_grads: dh_n and dc_n

  Index out() const { return proj > 0 ? proj : hidden; }
  std::string describe() const {
    std::ostringstream s;
    s << "T=" << steps << " N=" << batch << " I=" << input << " H=" << hidden << " P=" << proj
      << (bias ? " bias" : " bias=null") << (h0 ? " h0" : " h0=null") << (c0 ? " c0" : " c0=null")
      << (final_grads ? " dh_n,dc_n" : " dh_n,dc_n=null");
    return s.str();
  }
};

struct LstmpData {
  LstmpCase c;
  std::vector<std::int64_t> batch_sizes;
  std::vector<double> w_ih, w_hh, bias, w_hr, x, h0, c0, dy, dh_n, dc_n;
  std::vector<double> mask_x, mask_h;  // [N, I], [N, H_out] or empty

  Index rows() const { return rows_of(c.steps, c.batch, batch_sizes); }
  RefLstmpDims ref_dims() const {
    return {static_cast<std::size_t>(c.steps), static_cast<std::size_t>(c.batch), static_cast<std::size_t>(c.input),
            static_cast<std::size_t>(c.hidden), static_cast<std::size_t>(c.proj)};
  }
  RefLstmpWeights ref_weights() const { return {w_ih, w_hh, bias, w_hr}; }
  RefLstmpForward reference_forward() const {
    return ref_lstmp_forward(ref_dims(), ref_weights(), x, h0, c0, {mask_x, mask_h});
  }
  RefLstmpGrads reference_backward(const RefLstmpForward& fwd) const {
    return ref_lstmp_backward(ref_dims(), ref_weights(), x, h0, c0, fwd, dy, dh_n, dc_n, {mask_x, mask_h});
  }
};

inline LstmpData make_lstmp_data(const LstmpCase& c, std::uint64_t seed = 0) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<std::uint64_t>(c.steps * 7919 + c.batch * 104729 +
                                                                   c.input * 1299709 + c.hidden * 15485863 +
                                                                   c.proj * 32452843));
  const Index T = c.steps, N = c.batch, I = c.input, H = c.hidden, O = c.out(), G = kGatesLstm * H;
  const double k = 2.0 / std::sqrt(static_cast<double>(H));
  LstmpData d;
  d.c = c;
  d.w_ih = uniform(rng, G * I, k);
  d.w_hh = uniform(rng, G * O, k);
  d.bias = uniform(rng, G, k);
  if (c.proj > 0) d.w_hr = uniform(rng, c.proj * H, 2.0 / std::sqrt(static_cast<double>(c.proj)));
  d.x = uniform(rng, T * N * I, 1.0);
  d.h0 = uniform(rng, N * O, 1.0);
  d.c0 = uniform(rng, N * H, 2.0);
  d.dy = uniform(rng, T * N * O, 1.0);
  d.dh_n = uniform(rng, N * O, 1.0);
  d.dc_n = uniform(rng, N * H, 1.0);
  if (!c.bias) d.bias.clear();
  if (!c.h0) d.h0.clear();
  if (!c.c0) d.c0.clear();
  if (!c.final_grads) d.dh_n.clear(), d.dc_n.clear();
  return d;
}

template <typename Scalar>
LstmpData lstmp_rounded_to(const LstmpData& d) {
  LstmpData r = d;
  for (auto* v : {&r.w_ih, &r.w_hh, &r.bias, &r.w_hr, &r.x, &r.h0, &r.c0, &r.dy, &r.dh_n, &r.dc_n, &r.mask_x,
                  &r.mask_h}) {
    *v = through<Scalar>(*v);
  }
  return r;
}

template <typename Scalar>
struct LstmpInputs {
  LstmpCase c;
  std::vector<std::int64_t> batch_sizes;
  std::vector<Scalar> w_ih, w_hh, bias, w_hr, x, h0, c0, dy, dh_n, dc_n, mask_x, mask_h;

  explicit LstmpInputs(const LstmpData& d)
      : c(d.c), batch_sizes(d.batch_sizes), w_ih(cast<Scalar>(d.w_ih)), w_hh(cast<Scalar>(d.w_hh)),
        bias(cast<Scalar>(d.bias)), w_hr(cast<Scalar>(d.w_hr)), x(cast<Scalar>(d.x)), h0(cast<Scalar>(d.h0)),
        c0(cast<Scalar>(d.c0)), dy(cast<Scalar>(d.dy)), dh_n(cast<Scalar>(d.dh_n)), dc_n(cast<Scalar>(d.dc_n)),
        mask_x(cast<Scalar>(d.mask_x)), mask_h(cast<Scalar>(d.mask_h)) {}

  LstmDims dims() const {
    LstmDims dims{c.steps, c.batch, c.input, c.hidden, c.proj};
    dims.batch_sizes = batch_sizes.empty() ? nullptr : batch_sizes.data();
    return dims;
  }
  Index rows() const { return rows_of(c.steps, c.batch, batch_sizes); }
  LstmWeights<Scalar> weights() const { return {w_ih.data(), w_hh.data(), ptr_or_null(bias), ptr_or_null(w_hr)}; }
  DropoutMasks<Scalar> masks() const { return {ptr_or_null(mask_x), ptr_or_null(mask_h)}; }
};

template <typename Scalar>
struct LstmpRun {
  std::vector<Scalar> y, h_n, c_n, gates, cells;
  std::vector<Scalar> dx, dh0, dc0, dw_ih, dw_hh, dbias, dw_hr;
};

template <typename Scalar>
LstmpRun<Scalar> lstmp_core_forward(const LstmpInputs<Scalar>& in, bool training, const SequenceLayout& layout = {}) {
  const Index R = in.rows(), N = in.c.batch, H = in.c.hidden, O = in.c.out();
  LstmpRun<Scalar> run;
  run.y = nan_buffer<Scalar>(R * y_stride(layout, O));
  run.h_n = nan_buffer<Scalar>(N * O);
  run.c_n = nan_buffer<Scalar>(N * H);
  if (training) {
    run.gates = nan_buffer<Scalar>(R * kGatesLstm * H);
    run.cells = nan_buffer<Scalar>(R * H);
  }
  lstm_forward<Scalar>(in.dims(), in.weights(), in.x.data(), ptr_or_null(in.h0), ptr_or_null(in.c0), run.y.data(),
                       run.h_n.data(), run.c_n.data(), {ptr_or_null(run.gates), ptr_or_null(run.cells)}, layout,
                       in.masks());
  return run;
}

template <typename Scalar>
void lstmp_core_backward(const LstmpInputs<Scalar>& in, LstmpRun<Scalar>& run, const SequenceLayout& layout = {}) {
  const Index R = in.rows(), N = in.c.batch, I = in.c.input, H = in.c.hidden, O = in.c.out();
  const Index G = kGatesLstm * H;
  const std::vector<Scalar> dy = to_strided(in.dy, R, O, y_stride(layout, O));
  if (!layout.accumulate_dx) run.dx = nan_buffer<Scalar>(R * I);
  run.dh0 = nan_buffer<Scalar>(N * O);
  run.dc0 = nan_buffer<Scalar>(N * H);
  run.dw_ih = nan_buffer<Scalar>(G * I);
  run.dw_hh = nan_buffer<Scalar>(G * O);
  run.dbias = in.bias.empty() ? std::vector<Scalar>() : nan_buffer<Scalar>(G);
  run.dw_hr = in.c.proj > 0 ? nan_buffer<Scalar>(in.c.proj * H) : std::vector<Scalar>();
  lstm_backward<Scalar>(in.dims(), in.weights(), in.x.data(), ptr_or_null(in.h0), ptr_or_null(in.c0), run.y.data(),
                        {run.gates.data(), run.cells.data()}, dy.data(), ptr_or_null(in.dh_n), ptr_or_null(in.dc_n),
                        run.dx.data(), run.dh0.data(), run.dc0.data(),
                        {run.dw_ih.data(), run.dw_hh.data(), ptr_or_null(run.dbias), ptr_or_null(run.dw_hr)},
                        layout, in.masks());
}

template <typename Scalar>
LstmpRun<Scalar> lstmp_core_forward_backward(const LstmpInputs<Scalar>& in, const SequenceLayout& layout = {}) {
  LstmpRun<Scalar> run = lstmp_core_forward(in, /*training=*/true, layout);
  lstmp_core_backward(in, run, layout);
  return run;
}

// Every input and weight gradient of an LSTM backward with projection (LstmpRun or RefLstmpGrads).
#define EXPECT_LSTMP_GRADIENTS_CLOSE(actual, expected, tol)                  \
  do {                                                                       \
    EXPECT_TRUE(all_close("dx", (actual).dx, (expected).dx, tol));          \
    EXPECT_TRUE(all_close("dh0", (actual).dh0, (expected).dh0, tol));       \
    EXPECT_TRUE(all_close("dc0", (actual).dc0, (expected).dc0, tol));       \
    EXPECT_TRUE(all_close("dw_ih", (actual).dw_ih, (expected).dw_ih, tol)); \
    EXPECT_TRUE(all_close("dw_hh", (actual).dw_hh, (expected).dw_hh, tol)); \
    EXPECT_TRUE(all_close("dbias", (actual).dbias, (expected).dbias, tol)); \
    EXPECT_TRUE(all_close("dw_hr", (actual).dw_hr, (expected).dw_hr, tol)); \
  } while (0)

// ---- stacks (LSTM with optional projection, and GRU) --------------------------------------------------

struct StackShape {
  Index steps = 1, batch = 1, input = 1, hidden = 1, proj = 0, layers = 1, directions = 1;
  bool reverse = false;  // D = 1 only (go_backwards)

  Index out() const { return proj > 0 ? proj : hidden; }
  Index layer_input(Index l) const { return l == 0 ? input : directions * out(); }
  std::string describe() const {
    std::ostringstream s;
    s << "T=" << steps << " N=" << batch << " I=" << input << " H=" << hidden << " P=" << proj << " L=" << layers
      << " D=" << directions << (reverse ? " reverse" : "");
    return s.str();
  }
};

// The double inputs of a stack. weights: [L*D]; masks: [L*D] or empty; inter: [L-1, R, D*H_out] or empty.
// LSTM: lstm_weights used, c0/dc_n [L*D, N, H]. GRU: gru_weights used (c0, dc_n stay empty).
struct RnnStackData {
  StackShape s;
  std::vector<std::int64_t> batch_sizes;
  std::vector<RefLstmpWeights> lstm_weights;
  std::vector<RefGruWeights> gru_weights;
  std::vector<double> x, h0, c0, dy, dh_n, dc_n, inter;
  std::vector<RefMasks> masks;

  Index rows() const { return rows_of(s.steps, s.batch, batch_sizes); }
  RefStackDims ref_dims() const {
    return {static_cast<std::size_t>(s.steps),  static_cast<std::size_t>(s.batch),
            static_cast<std::size_t>(s.input),  static_cast<std::size_t>(s.hidden),
            static_cast<std::size_t>(s.layers), static_cast<std::size_t>(s.directions)};
  }
};

// gru: whether the weights are a GRU's (reset_after as given) or an LSTM's. Every optional input is set;
// tests clear what they want absent.
inline RnnStackData make_rnn_stack_data(const StackShape& s, bool gru, bool reset_after = true,
                                        std::uint64_t seed = 0) {
  std::mt19937_64 rng(seed * 7777 + static_cast<std::uint64_t>(s.steps * 31 + s.batch * 37 + s.input * 41 +
                                                               s.hidden * 43 + s.proj * 59 + s.layers * 47 +
                                                               s.directions * 53 + (gru ? 1 : 0)));
  const Index T = s.steps, N = s.batch, H = s.hidden, O = s.out(), D = s.directions, K = s.layers * D;
  const double k = 2.0 / std::sqrt(static_cast<double>(H));
  RnnStackData d;
  d.s = s;
  for (Index l = 0; l < s.layers; ++l) {
    const Index I = s.layer_input(l);
    for (Index dir = 0; dir < D; ++dir) {
      if (gru) {
        const Index G = kGatesGru * H;
        d.gru_weights.push_back(
            {uniform(rng, G * I, k), uniform(rng, G * H, k), uniform(rng, G, k), uniform(rng, G, k), reset_after});
      } else {
        const Index G = kGatesLstm * H;
        RefLstmpWeights w{uniform(rng, G * I, k), uniform(rng, G * O, k), uniform(rng, G, k), {}};
        if (s.proj > 0) w.w_hr = uniform(rng, s.proj * H, 2.0 / std::sqrt(static_cast<double>(s.proj)));
        d.lstm_weights.push_back(std::move(w));
      }
    }
  }
  d.x = uniform(rng, T * N * s.input, 1.0);
  d.dy = uniform(rng, T * N * D * O, 1.0);
  d.h0 = uniform(rng, K * N * O, 1.0);
  d.dh_n = uniform(rng, K * N * O, 1.0);
  if (!gru) {
    d.c0 = uniform(rng, K * N * H, 2.0);
    d.dc_n = uniform(rng, K * N * H, 1.0);
  }
  return d;
}

template <typename Scalar>
RnnStackData rnn_stack_rounded_to(const RnnStackData& d) {
  RnnStackData r = d;
  for (RefLstmpWeights& w : r.lstm_weights) {
    for (auto* v : {&w.w_ih, &w.w_hh, &w.bias, &w.w_hr}) *v = through<Scalar>(*v);
  }
  for (RefGruWeights& w : r.gru_weights) {
    for (auto* v : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) *v = through<Scalar>(*v);
  }
  for (RefMasks& m : r.masks) m.input = through<Scalar>(m.input), m.recurrent = through<Scalar>(m.recurrent);
  for (auto* v : {&r.x, &r.h0, &r.c0, &r.dy, &r.dh_n, &r.dc_n, &r.inter}) *v = through<Scalar>(*v);
  return r;
}

// The core's view of a RnnStackData; the pointer arrays point into the vectors, so no copies.
template <typename Scalar>
struct RnnStackInputs {
  StackShape s;
  std::vector<std::int64_t> batch_sizes;
  std::vector<std::vector<Scalar>> w_ih, w_hh, b_a, b_b, w_hr;  // b_a: LSTM bias or GRU b_ih; b_b: GRU b_hh
  std::vector<std::vector<Scalar>> mask_x, mask_h;
  std::vector<LstmWeights<Scalar>> lstm_weights;
  std::vector<GruWeights<Scalar>> gru_weights;
  std::vector<DropoutMasks<Scalar>> masks;
  std::vector<Scalar> x, h0, c0, dy, dh_n, dc_n, inter;

  explicit RnnStackInputs(const RnnStackData& d)
      : s(d.s), batch_sizes(d.batch_sizes), x(cast<Scalar>(d.x)), h0(cast<Scalar>(d.h0)), c0(cast<Scalar>(d.c0)),
        dy(cast<Scalar>(d.dy)), dh_n(cast<Scalar>(d.dh_n)), dc_n(cast<Scalar>(d.dc_n)), inter(cast<Scalar>(d.inter)) {
    for (const RefLstmpWeights& w : d.lstm_weights) {
      w_ih.push_back(cast<Scalar>(w.w_ih));
      w_hh.push_back(cast<Scalar>(w.w_hh));
      b_a.push_back(cast<Scalar>(w.bias));
      b_b.emplace_back();
      w_hr.push_back(cast<Scalar>(w.w_hr));
    }
    for (const RefGruWeights& w : d.gru_weights) {
      w_ih.push_back(cast<Scalar>(w.w_ih));
      w_hh.push_back(cast<Scalar>(w.w_hh));
      b_a.push_back(cast<Scalar>(w.b_ih));
      b_b.push_back(cast<Scalar>(w.b_hh));
      w_hr.emplace_back();
    }
    for (const RefMasks& m : d.masks) {
      mask_x.push_back(cast<Scalar>(m.input));
      mask_h.push_back(cast<Scalar>(m.recurrent));
    }
    for (std::size_t k = 0; k < d.lstm_weights.size(); ++k) {
      lstm_weights.push_back({w_ih[k].data(), w_hh[k].data(), ptr_or_null(b_a[k]), ptr_or_null(w_hr[k])});
    }
    for (std::size_t k = 0; k < d.gru_weights.size(); ++k) {
      gru_weights.push_back(
          {w_ih[k].data(), w_hh[k].data(), ptr_or_null(b_a[k]), ptr_or_null(b_b[k]), d.gru_weights[k].reset_after});
    }
    for (std::size_t k = 0; k < mask_x.size(); ++k) masks.push_back({ptr_or_null(mask_x[k]), ptr_or_null(mask_h[k])});
  }
  RnnStackInputs(const RnnStackInputs&) = delete;
  RnnStackInputs& operator=(const RnnStackInputs&) = delete;

  StackDims dims() const {
    StackDims d{s.steps, s.batch, s.input, s.hidden, s.layers, s.directions, s.proj, s.reverse};
    d.batch_sizes = batch_sizes.empty() ? nullptr : batch_sizes.data();
    return d;
  }
  Index rows() const { return rows_of(s.steps, s.batch, batch_sizes); }
  StackDropout<Scalar> dropout() const { return {ptr_or_null(inter), masks.empty() ? nullptr : masks.data()}; }
};

template <typename Scalar>
struct RnnStackRun {
  std::vector<Scalar> y, h_n, c_n, gates, cells, hidden_n, hidden;
  std::vector<Scalar> dx, dh0, dc0;
  std::vector<std::vector<Scalar>> dw_ih, dw_hh, db_a, db_b, dw_hr;  // [L*D]; db_a: dbias or db_ih
};

template <typename Scalar>
RnnStackRun<Scalar> lstm_stack_core_forward(const RnnStackInputs<Scalar>& in, bool training) {
  const StackShape& s = in.s;
  const Index K = s.layers * s.directions, R = in.rows();
  RnnStackRun<Scalar> run;
  run.y = nan_buffer<Scalar>(R * s.directions * s.out());
  run.h_n = nan_buffer<Scalar>(K * s.batch * s.out());
  run.c_n = nan_buffer<Scalar>(K * s.batch * s.hidden);
  if (training) {
    const LstmStackCacheSizes sizes = lstm_stack_cache_sizes(in.dims());
    run.gates = nan_buffer<Scalar>(sizes.gates);
    run.cells = nan_buffer<Scalar>(sizes.cells);
    run.hidden = nan_buffer<Scalar>(sizes.hidden);
  }
  lstm_stack_forward<Scalar>(in.dims(), in.lstm_weights.data(), in.x.data(), ptr_or_null(in.h0), ptr_or_null(in.c0),
                             run.y.data(), run.h_n.data(), run.c_n.data(),
                             {ptr_or_null(run.gates), ptr_or_null(run.cells), ptr_or_null(run.hidden)},
                             in.dropout());
  return run;
}

template <typename Scalar>
RnnStackRun<Scalar> lstm_stack_core_forward_backward(const RnnStackInputs<Scalar>& in) {
  RnnStackRun<Scalar> run = lstm_stack_core_forward(in, /*training=*/true);
  const StackShape& s = in.s;
  const Index K = s.layers * s.directions, R = in.rows(), H = s.hidden, O = s.out(), G = kGatesLstm * H;
  run.dx = nan_buffer<Scalar>(R * s.input);
  run.dh0 = nan_buffer<Scalar>(K * s.batch * O);
  run.dc0 = nan_buffer<Scalar>(K * s.batch * H);
  std::vector<LstmWeightGrads<Scalar>> grads;
  for (Index k = 0; k < K; ++k) {
    run.dw_ih.push_back(nan_buffer<Scalar>(G * s.layer_input(k / s.directions)));
    run.dw_hh.push_back(nan_buffer<Scalar>(G * O));
    run.db_a.push_back(in.b_a[k].empty() ? std::vector<Scalar>() : nan_buffer<Scalar>(G));
    run.dw_hr.push_back(s.proj > 0 ? nan_buffer<Scalar>(s.proj * H) : std::vector<Scalar>());
  }
  for (Index k = 0; k < K; ++k) {
    grads.push_back({run.dw_ih[k].data(), run.dw_hh[k].data(), ptr_or_null(run.db_a[k]), ptr_or_null(run.dw_hr[k])});
  }
  lstm_stack_backward<Scalar>(in.dims(), in.lstm_weights.data(), in.x.data(), ptr_or_null(in.h0), ptr_or_null(in.c0),
                              run.y.data(), {run.gates.data(), run.cells.data(), ptr_or_null(run.hidden)},
                              in.dy.data(), ptr_or_null(in.dh_n), ptr_or_null(in.dc_n), run.dx.data(), run.dh0.data(),
                              run.dc0.data(), grads.data(), in.dropout());
  return run;
}

template <typename Scalar>
RnnStackRun<Scalar> gru_stack_core_forward(const RnnStackInputs<Scalar>& in, bool training) {
  const StackShape& s = in.s;
  const Index K = s.layers * s.directions, R = in.rows();
  const bool after = in.gru_weights.front().reset_after;
  RnnStackRun<Scalar> run;
  run.y = nan_buffer<Scalar>(R * s.directions * s.hidden);
  run.h_n = nan_buffer<Scalar>(K * s.batch * s.hidden);
  if (training) {
    const GruStackCacheSizes sizes = gru_stack_cache_sizes(in.dims(), after);
    run.gates = nan_buffer<Scalar>(sizes.gates);
    run.hidden_n = nan_buffer<Scalar>(sizes.hidden_n);
    run.hidden = nan_buffer<Scalar>(sizes.hidden);
  }
  gru_stack_forward<Scalar>(in.dims(), in.gru_weights.data(), in.x.data(), ptr_or_null(in.h0), run.y.data(),
                            run.h_n.data(),
                            {ptr_or_null(run.gates), ptr_or_null(run.hidden_n), ptr_or_null(run.hidden)},
                            in.dropout());
  return run;
}

template <typename Scalar>
RnnStackRun<Scalar> gru_stack_core_forward_backward(const RnnStackInputs<Scalar>& in) {
  RnnStackRun<Scalar> run = gru_stack_core_forward(in, /*training=*/true);
  const StackShape& s = in.s;
  const Index K = s.layers * s.directions, R = in.rows(), H = s.hidden, G = kGatesGru * H;
  run.dx = nan_buffer<Scalar>(R * s.input);
  run.dh0 = nan_buffer<Scalar>(K * s.batch * H);
  std::vector<GruWeightGrads<Scalar>> grads;
  for (Index k = 0; k < K; ++k) {
    run.dw_ih.push_back(nan_buffer<Scalar>(G * s.layer_input(k / s.directions)));
    run.dw_hh.push_back(nan_buffer<Scalar>(G * H));
    run.db_a.push_back(in.b_a[k].empty() ? std::vector<Scalar>() : nan_buffer<Scalar>(G));
    run.db_b.push_back(in.b_b[k].empty() ? std::vector<Scalar>() : nan_buffer<Scalar>(G));
  }
  for (Index k = 0; k < K; ++k) {
    grads.push_back({run.dw_ih[k].data(), run.dw_hh[k].data(), ptr_or_null(run.db_a[k]), ptr_or_null(run.db_b[k])});
  }
  gru_stack_backward<Scalar>(in.dims(), in.gru_weights.data(), in.x.data(), ptr_or_null(in.h0), run.y.data(),
                             {run.gates.data(), ptr_or_null(run.hidden_n), ptr_or_null(run.hidden)}, in.dy.data(),
                             ptr_or_null(in.dh_n), run.dx.data(), run.dh0.data(), grads.data(), in.dropout());
  return run;
}

// ---- dropout as a caller draws it ---------------------------------------------------------------------

// Variational masks of one layer (zeros and 1/(1-p)): input [N, I], recurrent [N, H_out].
inline void add_masks(LstmpData& d, std::uint64_t seed, double p = 0.4, bool input = true, bool recurrent = true) {
  std::mt19937_64 rng(seed);
  if (input) d.mask_x = dropout_mask(rng, d.c.batch * d.c.input, p);
  if (recurrent) d.mask_h = dropout_mask(rng, d.c.batch * d.c.out(), p);
}

inline void add_masks(GruData& d, std::uint64_t seed, double p = 0.4, bool input = true, bool recurrent = true) {
  std::mt19937_64 rng(seed);
  if (input) d.mask_x = dropout_mask(rng, d.c.batch * d.c.input, p);
  if (recurrent) d.mask_h = dropout_mask(rng, d.c.batch * d.c.hidden, p);
}

// A dense stack's dropout: masks between the layers [L-1, T*N, D*H_out] and, when `variational`, masks for
// every (layer, direction), whose input mask is [N, D*H_out] after the first layer.
inline void add_stack_dropout(RnnStackData& d, std::uint64_t seed, double p = 0.3, bool variational = true) {
  const StackShape& s = d.s;
  std::mt19937_64 rng(seed);
  d.inter = dropout_mask(rng, (s.layers - 1) * s.steps * s.batch * s.directions * s.out(), p);
  d.masks.clear();
  for (Index k = 0; variational && k < s.layers * s.directions; ++k) {
    d.masks.push_back({dropout_mask(rng, s.batch * s.layer_input(k / s.directions), p),
                       dropout_mask(rng, s.batch * s.out(), p)});
  }
}

// ---- buffer addresses ---------------------------------------------------------------------------------

// A copy of `v` that starts `offset` elements into its own allocation; data() is nullptr for an empty `v`
// (an absent argument stays absent). Shifting every buffer by 1 .. 64 bytes shows every SIMD width every
// alignment (see test_determinism.cpp).
template <typename Scalar>
struct ShiftedCopy {
  std::vector<Scalar> storage;
  Index offset;
  ShiftedCopy(const std::vector<Scalar>& v, Index off)
      : storage(v.size() + static_cast<std::size_t>(off)), offset(v.empty() ? 0 : off) {
    if (v.empty()) storage.clear();
    std::copy(v.begin(), v.end(), storage.begin() + offset);
  }
  Scalar* data() { return storage.empty() ? nullptr : storage.data() + offset; }
  std::vector<Scalar> values() const { return std::vector<Scalar>(storage.begin() + offset, storage.end()); }
};

template <typename Scalar>
std::vector<Index> element_offsets() {
  std::vector<Index> out;
  for (Index k = 1; k <= Index(64 / sizeof(Scalar)); ++k) out.push_back(k);
  return out;
}

// ---- central finite differences -----------------------------------------------------------------------

// Truncation error ~eps^2, cancellation ~1e-16 / eps: both far below 1e-7 at these magnitudes.
constexpr Tolerance kFiniteDifferenceTolerance{1e-6, 1e-8};

// dL/dv for every entry of the vector `pick` selects in a copy of `data`, by (L(v + eps) - L(v - eps)) / 2 eps.
template <typename Data>
std::vector<double> numerical_gradient(const std::function<double(const Data&)>& loss, const Data& data,
                                       const std::function<std::vector<double>&(Data&)>& pick) {
  constexpr double kEps = 1e-6;
  Data d = data;
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
}

// Every input and weight gradient of a stack (LSTM or GRU, with whatever dropout `data` carries) against central
// differences of L = <y, dy> + <h_n, dh_n> + <c_n, dc_n> (the GRU has no c).
inline void expect_stack_gradients_match_finite_differences(const RnnStackData& data, bool gru) {
  RnnStackRun<double> grads;
  {
    const RnnStackInputs<double> in(data);
    grads = gru ? gru_stack_core_forward_backward(in) : lstm_stack_core_forward_backward(in);
  }
  const std::function<double(const RnnStackData&)> loss = [gru](const RnnStackData& d) {
    const RnnStackInputs<double> in(d);
    const RnnStackRun<double> run =
        gru ? gru_stack_core_forward(in, /*training=*/false) : lstm_stack_core_forward(in, /*training=*/false);
    return dot(run.y, d.dy) + dot(run.h_n, d.dh_n) + dot(run.c_n, d.dc_n);
  };
  using Pick = std::function<std::vector<double>&(RnnStackData&)>;
  const auto numerical = [&](const Pick& pick) { return numerical_gradient<RnnStackData>(loss, data, pick); };
  const auto input = [](std::vector<double> RnnStackData::*m) -> Pick {
    return [m](RnnStackData& d) -> std::vector<double>& { return d.*m; };
  };
  const auto lstm = [](std::size_t k, std::vector<double> RefLstmpWeights::*m) -> Pick {
    return [k, m](RnnStackData& d) -> std::vector<double>& { return d.lstm_weights[k].*m; };
  };
  const auto gru_w = [](std::size_t k, std::vector<double> RefGruWeights::*m) -> Pick {
    return [k, m](RnnStackData& d) -> std::vector<double>& { return d.gru_weights[k].*m; };
  };
  const Tolerance tol = kFiniteDifferenceTolerance;
  EXPECT_TRUE(all_close("dx", grads.dx, numerical(input(&RnnStackData::x)), tol));
  EXPECT_TRUE(all_close("dh0", grads.dh0, numerical(input(&RnnStackData::h0)), tol));
  EXPECT_TRUE(all_close("dc0", grads.dc0, numerical(input(&RnnStackData::c0)), tol));
  const std::size_t K = gru ? data.gru_weights.size() : data.lstm_weights.size();
  for (std::size_t k = 0; k < K; ++k) {
    SCOPED_TRACE("k = l*D + d = " + std::to_string(k));
    if (gru) {
      EXPECT_TRUE(all_close("dw_ih", grads.dw_ih[k], numerical(gru_w(k, &RefGruWeights::w_ih)), tol));
      EXPECT_TRUE(all_close("dw_hh", grads.dw_hh[k], numerical(gru_w(k, &RefGruWeights::w_hh)), tol));
      EXPECT_TRUE(all_close("db_ih", grads.db_a[k], numerical(gru_w(k, &RefGruWeights::b_ih)), tol));
      EXPECT_TRUE(all_close("db_hh", grads.db_b[k], numerical(gru_w(k, &RefGruWeights::b_hh)), tol));
    } else {
      EXPECT_TRUE(all_close("dw_ih", grads.dw_ih[k], numerical(lstm(k, &RefLstmpWeights::w_ih)), tol));
      EXPECT_TRUE(all_close("dw_hh", grads.dw_hh[k], numerical(lstm(k, &RefLstmpWeights::w_hh)), tol));
      EXPECT_TRUE(all_close("dbias", grads.db_a[k], numerical(lstm(k, &RefLstmpWeights::bias)), tol));
      EXPECT_TRUE(all_close("dw_hr", grads.dw_hr[k], numerical(lstm(k, &RefLstmpWeights::w_hr)), tol));
    }
  }
}

}  // namespace lstm_ext::testing
