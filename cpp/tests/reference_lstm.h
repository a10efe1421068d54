// SPDX-License-Identifier: MIT
// A slow, obvious double-precision LSTM (forward and backpropagation through time) in plain loops: the
// yardstick the core is tested against. Same conventions as lstm_ext/lstm.h: time-major, row-major, gate
// blocks ordered i, f, g, o along G = 4H, w_ih [G, I], w_hh [G, H], bias [G] = b_ih + b_hh.
// An empty vector stands for an absent (nullptr) argument: no bias, zero initial states, zero dh_n/dc_n.
// No Eigen and nothing from the core here, so a bug in one cannot hide in the other.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

namespace lstm_ext::testing {

struct RefDims {
  std::size_t steps = 0, batch = 0, input = 0, hidden = 0;  // T, N, I, H
};

struct RefForward {
  std::vector<double> y;      // [T, N, H]
  std::vector<double> h_n;    // [N, H]
  std::vector<double> c_n;    // [N, H]
  std::vector<double> gates;  // [T, N, 4H] activated i, f, g, o
  std::vector<double> cells;  // [T, N, H] c_1 ... c_T
};

struct RefGrads {
  std::vector<double> dx;     // [T, N, I]
  std::vector<double> dh0;    // [N, H]
  std::vector<double> dc0;    // [N, H]
  std::vector<double> dw_ih;  // [4H, I]
  std::vector<double> dw_hh;  // [4H, H]
  std::vector<double> dbias;  // [4H]
};

inline double ref_sigmoid(double a) { return 1.0 / (1.0 + std::exp(-a)); }

// h0, c0, bias: empty for zeros / no bias.
inline RefForward ref_lstm_forward(const RefDims& d, const std::vector<double>& w_ih,
                                   const std::vector<double>& w_hh, const std::vector<double>& bias,
                                   const std::vector<double>& x, const std::vector<double>& h0,
                                   const std::vector<double>& c0) {
  const std::size_t T = d.steps, N = d.batch, I = d.input, H = d.hidden, G = 4 * H;
  RefForward out;
  out.y.assign(T * N * H, 0.0);
  out.gates.assign(T * N * G, 0.0);
  out.cells.assign(T * N * H, 0.0);
  std::vector<double> h(N * H, 0.0), c(N * H, 0.0);
  if (!h0.empty()) h = h0;
  if (!c0.empty()) c = c0;

  for (std::size_t t = 0; t < T; ++t) {
    for (std::size_t n = 0; n < N; ++n) {
      double* gates = &out.gates[(t * N + n) * G];
      for (std::size_t r = 0; r < G; ++r) {
        double a = bias.empty() ? 0.0 : bias[r];
        for (std::size_t k = 0; k < I; ++k) a += x[(t * N + n) * I + k] * w_ih[r * I + k];
        for (std::size_t k = 0; k < H; ++k) a += h[n * H + k] * w_hh[r * H + k];
        gates[r] = a;
      }
      for (std::size_t j = 0; j < H; ++j) {
        const double i = ref_sigmoid(gates[j]);
        const double f = ref_sigmoid(gates[H + j]);
        const double g = std::tanh(gates[2 * H + j]);
        const double o = ref_sigmoid(gates[3 * H + j]);
        gates[j] = i;
        gates[H + j] = f;
        gates[2 * H + j] = g;
        gates[3 * H + j] = o;
        const double c_new = f * c[n * H + j] + i * g;
        out.cells[(t * N + n) * H + j] = c_new;
        out.y[(t * N + n) * H + j] = o * std::tanh(c_new);
      }
    }
    // h and c of every row change only after all rows of this step are done.
    for (std::size_t e = 0; e < N * H; ++e) {
      h[e] = out.y[t * N * H + e];
      c[e] = out.cells[t * N * H + e];
    }
  }
  out.h_n = h;
  out.c_n = c;
  return out;
}

// Gradients of L = <y, dy> + <h_n, dh_n> + <c_n, dc_n> for the forward `fwd` made with the same arguments.
// h0, c0, bias, dh_n, dc_n: empty for zeros / no bias (then dbias is left empty).
inline RefGrads ref_lstm_backward(const RefDims& d, const std::vector<double>& w_ih,
                                  const std::vector<double>& w_hh, const std::vector<double>& bias,
                                  const std::vector<double>& x, const std::vector<double>& h0,
                                  const std::vector<double>& c0, const RefForward& fwd,
                                  const std::vector<double>& dy, const std::vector<double>& dh_n,
                                  const std::vector<double>& dc_n) {
  const std::size_t T = d.steps, N = d.batch, I = d.input, H = d.hidden, G = 4 * H;
  RefGrads out;
  out.dx.assign(T * N * I, 0.0);
  out.dw_ih.assign(G * I, 0.0);
  out.dw_hh.assign(G * H, 0.0);
  if (!bias.empty()) out.dbias.assign(G, 0.0);
  std::vector<double> dh(N * H, 0.0), dc(N * H, 0.0);
  if (!dh_n.empty()) dh = dh_n;
  if (!dc_n.empty()) dc = dc_n;
  std::vector<double> da(N * G);  // pre-activation gradients of one step

  for (std::size_t t = T; t-- > 0;) {
    for (std::size_t n = 0; n < N; ++n) {
      const double* gates = &fwd.gates[(t * N + n) * G];
      for (std::size_t j = 0; j < H; ++j) {
        const double i = gates[j], f = gates[H + j], g = gates[2 * H + j], o = gates[3 * H + j];
        const double c = fwd.cells[(t * N + n) * H + j];
        const double c_prev = t > 0 ? fwd.cells[((t - 1) * N + n) * H + j] : (c0.empty() ? 0.0 : c0[n * H + j]);
        const double dh_t = dy[(t * N + n) * H + j] + dh[n * H + j];
        const double tanh_c = std::tanh(c);
        const double dc_t = dc[n * H + j] + dh_t * o * (1.0 - tanh_c * tanh_c);
        da[n * G + j] = dc_t * g * i * (1.0 - i);
        da[n * G + H + j] = dc_t * c_prev * f * (1.0 - f);
        da[n * G + 2 * H + j] = dc_t * i * (1.0 - g * g);
        da[n * G + 3 * H + j] = dh_t * tanh_c * o * (1.0 - o);
        dc[n * H + j] = dc_t * f;
      }
    }
    for (std::size_t n = 0; n < N; ++n) {
      for (std::size_t r = 0; r < G; ++r) {
        const double a = da[n * G + r];
        for (std::size_t k = 0; k < I; ++k) {
          out.dw_ih[r * I + k] += a * x[(t * N + n) * I + k];
          out.dx[(t * N + n) * I + k] += a * w_ih[r * I + k];
        }
        for (std::size_t k = 0; k < H; ++k) {
          const double h_prev = t > 0 ? fwd.y[((t - 1) * N + n) * H + k] : (h0.empty() ? 0.0 : h0[n * H + k]);
          out.dw_hh[r * H + k] += a * h_prev;
        }
        if (!bias.empty()) out.dbias[r] += a;
      }
      for (std::size_t k = 0; k < H; ++k) {
        double s = 0.0;
        for (std::size_t r = 0; r < G; ++r) s += da[n * G + r] * w_hh[r * H + k];
        dh[n * H + k] = s;
      }
    }
  }
  out.dh0 = dh;
  out.dc0 = dc;
  return out;
}

// ---- stacked and bidirectional, composed from the single direction above --------------------------------

// a [T, R] (R values per step) with the steps in reverse order: a reverse direction is a forward one over
// reversed time, reversed back.
inline std::vector<double> ref_reverse_time(const std::vector<double>& a, std::size_t steps) {
  const std::size_t per_step = a.size() / steps;
  std::vector<double> out(a.size());
  for (std::size_t t = 0; t < steps; ++t) {
    for (std::size_t e = 0; e < per_step; ++e) out[t * per_step + e] = a[(steps - 1 - t) * per_step + e];
  }
  return out;
}

struct RefStackDims {
  std::size_t steps = 0, batch = 0, input = 0, hidden = 0, layers = 1, directions = 1;  // T N I H L D
  RefDims layer(std::size_t l) const { return {steps, batch, l == 0 ? input : directions * hidden, hidden}; }
};

struct RefLayerWeights {
  std::vector<double> w_ih, w_hh, bias;  // bias empty: none
};

struct RefStackForward {
  std::vector<double> y;                          // [T, N, D*H]
  std::vector<double> h_n, c_n;                   // [L*D, N, H]
  std::vector<std::vector<double>> layer_inputs;  // [L] of [T, N, I or D*H]: x, then each layer's output
  std::vector<RefForward> runs;                   // [L*D], each in its own direction's step order
};

struct RefStackGrads {
  std::vector<double> dx;      // [T, N, I]
  std::vector<double> dh0;     // [L*D, N, H]
  std::vector<double> dc0;     // [L*D, N, H]
  std::vector<RefGrads> runs;  // [L*D]: dw_ih, dw_hh, dbias of each (layer, direction)
};

// Slice k of a [K, N*H] array, or empty when the array is (absent states stay absent).
inline std::vector<double> ref_slice(const std::vector<double>& a, std::size_t k, std::size_t size) {
  if (a.empty()) return {};
  return std::vector<double>(a.begin() + static_cast<std::ptrdiff_t>(k * size),
                             a.begin() + static_cast<std::ptrdiff_t>((k + 1) * size));
}

// h0, c0: [L*D, N, H] or empty. Direction d of layer l uses weights[l*D + d].
inline RefStackForward ref_stack_forward(const RefStackDims& d, const std::vector<RefLayerWeights>& weights,
                                         const std::vector<double>& x, const std::vector<double>& h0,
                                         const std::vector<double>& c0) {
  const std::size_t T = d.steps, N = d.batch, H = d.hidden, D = d.directions, NH = N * H;
  RefStackForward out;
  out.h_n.assign(d.layers * D * NH, 0.0);
  out.c_n.assign(d.layers * D * NH, 0.0);
  std::vector<double> layer_in = x;
  for (std::size_t l = 0; l < d.layers; ++l) {
    out.layer_inputs.push_back(layer_in);
    std::vector<double> layer_out(T * N * D * H);
    for (std::size_t dir = 0; dir < D; ++dir) {
      const std::size_t k = l * D + dir;
      const RefLayerWeights& w = weights[k];
      const std::vector<double> in = dir == 1 ? ref_reverse_time(layer_in, T) : layer_in;
      RefForward run = ref_lstm_forward(d.layer(l), w.w_ih, w.w_hh, w.bias, in, ref_slice(h0, k, NH),
                                        ref_slice(c0, k, NH));
      const std::vector<double> y = dir == 1 ? ref_reverse_time(run.y, T) : run.y;
      for (std::size_t row = 0; row < T * N; ++row) {
        for (std::size_t j = 0; j < H; ++j) layer_out[row * D * H + dir * H + j] = y[row * H + j];
      }
      std::copy(run.h_n.begin(), run.h_n.end(), out.h_n.begin() + static_cast<std::ptrdiff_t>(k * NH));
      std::copy(run.c_n.begin(), run.c_n.end(), out.c_n.begin() + static_cast<std::ptrdiff_t>(k * NH));
      out.runs.push_back(std::move(run));
    }
    layer_in = layer_out;
  }
  out.y = layer_in;
  return out;
}

// Gradients of <y, dy> + <h_n, dh_n> + <c_n, dc_n>; dh_n, dc_n: [L*D, N, H] or empty.
inline RefStackGrads ref_stack_backward(const RefStackDims& d, const std::vector<RefLayerWeights>& weights,
                                        const std::vector<double>& h0, const std::vector<double>& c0,
                                        const RefStackForward& fwd, const std::vector<double>& dy,
                                        const std::vector<double>& dh_n, const std::vector<double>& dc_n) {
  const std::size_t T = d.steps, N = d.batch, H = d.hidden, D = d.directions, NH = N * H;
  RefStackGrads out;
  out.dh0.assign(d.layers * D * NH, 0.0);
  out.dc0.assign(d.layers * D * NH, 0.0);
  out.runs.resize(d.layers * D);
  std::vector<double> d_out = dy;  // gradient w.r.t. the current layer's output [T, N, D*H]
  for (std::size_t l = d.layers; l-- > 0;) {
    const RefDims ld = d.layer(l);
    std::vector<double> d_in(T * N * ld.input, 0.0);
    for (std::size_t dir = 0; dir < D; ++dir) {
      const std::size_t k = l * D + dir;
      const RefLayerWeights& w = weights[k];
      std::vector<double> dy_dir(T * NH);
      for (std::size_t row = 0; row < T * N; ++row) {
        for (std::size_t j = 0; j < H; ++j) dy_dir[row * H + j] = d_out[row * D * H + dir * H + j];
      }
      const std::vector<double>& layer_in = fwd.layer_inputs[l];
      RefGrads g = ref_lstm_backward(ld, w.w_ih, w.w_hh, w.bias, dir == 1 ? ref_reverse_time(layer_in, T) : layer_in,
                                     ref_slice(h0, k, NH), ref_slice(c0, k, NH), fwd.runs[k],
                                     dir == 1 ? ref_reverse_time(dy_dir, T) : dy_dir, ref_slice(dh_n, k, NH),
                                     ref_slice(dc_n, k, NH));
      const std::vector<double> dx = dir == 1 ? ref_reverse_time(g.dx, T) : g.dx;
      for (std::size_t e = 0; e < d_in.size(); ++e) d_in[e] += dx[e];
      std::copy(g.dh0.begin(), g.dh0.end(), out.dh0.begin() + static_cast<std::ptrdiff_t>(k * NH));
      std::copy(g.dc0.begin(), g.dc0.end(), out.dc0.begin() + static_cast<std::ptrdiff_t>(k * NH));
      out.runs[k] = std::move(g);
    }
    d_out = d_in;
  }
  out.dx = d_out;
  return out;
}

}  // namespace lstm_ext::testing
