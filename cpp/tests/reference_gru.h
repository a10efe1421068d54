// SPDX-License-Identifier: MIT
// A slow, obvious double-precision GRU (forward and backpropagation through time) in plain loops, in both of
// lstm_ext/gru.h's formulations (reset after / before the recurrent product) and with the variational masks
// of lstm_ext/sequence.h; and a stack of such layers composed from single directions. The yardstick of
// test_gru.cpp. Conventions as lstm_ext/gru.h: time-major, row-major, gate blocks r, z, n along G = 3H,
// w_ih [G, I], w_hh [G, H], b_ih [G], b_hh [G]. An empty vector is an absent (nullptr) argument: no bias,
// zero h0, zero dh_n, no mask. No Eigen and nothing from the core here.
#pragma once

#include "reference_lstm.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

namespace lstm_ext::testing {

struct RefGruWeights {
  std::vector<double> w_ih, w_hh, b_ih, b_hh;  // b_ih, b_hh: both empty (no bias) or both [3H]
  bool reset_after = true;
};

// Variational masks: input [N, I], recurrent [N, H]; empty for none (ones).
struct RefMasks {
  std::vector<double> input, recurrent;
};

struct RefGruForward {
  std::vector<double> y;         // [T, N, H]
  std::vector<double> h_n;       // [N, H]
  std::vector<double> gates;     // [T, N, 3H] activated r, z, n
  std::vector<double> hidden_n;  // [T, N, H] the recurrent part of n before the reset: W_hn hm + b_hn
};

struct RefGruGrads {
  std::vector<double> dx;     // [T, N, I]
  std::vector<double> dh0;    // [N, H]
  std::vector<double> dw_ih;  // [3H, I]
  std::vector<double> dw_hh;  // [3H, H]
  std::vector<double> db_ih;  // [3H], empty without bias
  std::vector<double> db_hh;  // [3H], empty without bias
};

inline double ref_mask(const std::vector<double>& mask, std::size_t index) {
  return mask.empty() ? 1.0 : mask[index];
}

// One step of one sequence n: the inputs that the step's formulas read, the same in the forward and the
// backward (which recomputes them rather than trusting any cache).
struct RefGruStepInputs {
  std::vector<double> xm;      // [I] x_t * m_x
  std::vector<double> h_prev;  // [H] h_{t-1}, unmasked
  std::vector<double> hm;      // [H] h_{t-1} * m_h
};

inline RefGruStepInputs ref_gru_step_inputs(const RefDims& d, const std::vector<double>& x,
                                            const std::vector<double>& h0, const std::vector<double>& y,
                                            const RefMasks& masks, std::size_t t, std::size_t n) {
  const std::size_t N = d.batch, I = d.input, H = d.hidden;
  RefGruStepInputs s;
  s.xm.resize(I);
  s.h_prev.resize(H);
  s.hm.resize(H);
  for (std::size_t k = 0; k < I; ++k) s.xm[k] = x[(t * N + n) * I + k] * ref_mask(masks.input, n * I + k);
  for (std::size_t k = 0; k < H; ++k) {
    s.h_prev[k] = t > 0 ? y[((t - 1) * N + n) * H + k] : (h0.empty() ? 0.0 : h0[n * H + k]);
    s.hm[k] = s.h_prev[k] * ref_mask(masks.recurrent, n * H + k);
  }
  return s;
}

// h0, biases, masks: empty for zeros / none.
inline RefGruForward ref_gru_forward(const RefDims& d, const RefGruWeights& w, const std::vector<double>& x,
                                     const std::vector<double>& h0, const RefMasks& masks = {}) {
  const std::size_t T = d.steps, N = d.batch, I = d.input, H = d.hidden, G = 3 * H;
  const bool bias = !w.b_ih.empty();
  RefGruForward out;
  out.y.assign(T * N * H, 0.0);
  out.gates.assign(T * N * G, 0.0);
  out.hidden_n.assign(T * N * H, 0.0);
  for (std::size_t t = 0; t < T; ++t) {
    for (std::size_t n = 0; n < N; ++n) {
      const RefGruStepInputs s = ref_gru_step_inputs(d, x, h0, out.y, masks, t, n);
      // Input side of all three blocks, recurrent side of r and z.
      std::vector<double> a_in(G), a_rec(G);
      for (std::size_t g = 0; g < G; ++g) {
        double a = bias ? w.b_ih[g] : 0.0;
        for (std::size_t k = 0; k < I; ++k) a += w.w_ih[g * I + k] * s.xm[k];
        a_in[g] = a;
      }
      for (std::size_t g = 0; g < 2 * H; ++g) {
        double a = bias ? w.b_hh[g] : 0.0;
        for (std::size_t k = 0; k < H; ++k) a += w.w_hh[g * H + k] * s.hm[k];
        a_rec[g] = a;
      }
      double* gates = &out.gates[(t * N + n) * G];
      for (std::size_t j = 0; j < H; ++j) {
        gates[j] = ref_sigmoid(a_in[j] + a_rec[j]);
        gates[H + j] = ref_sigmoid(a_in[H + j] + a_rec[H + j]);
      }
      // n: the reset gate multiplies the recurrent product (after) or the state entering it (before).
      for (std::size_t j = 0; j < H; ++j) {
        double a = bias ? w.b_hh[2 * H + j] : 0.0;
        for (std::size_t k = 0; k < H; ++k) {
          a += w.w_hh[(2 * H + j) * H + k] * (w.reset_after ? s.hm[k] : gates[k] * s.hm[k]);
        }
        out.hidden_n[(t * N + n) * H + j] = a;
        const double r = gates[j], z = gates[H + j];
        const double n_gate = std::tanh(a_in[2 * H + j] + (w.reset_after ? r * a : a));
        gates[2 * H + j] = n_gate;
        out.y[(t * N + n) * H + j] = (1.0 - z) * n_gate + z * s.h_prev[j];
      }
    }
  }
  out.h_n.assign(out.y.end() - static_cast<std::ptrdiff_t>(N * H), out.y.end());
  return out;
}

// Gradients of L = <y, dy> + <h_n, dh_n> for the forward `fwd` made with the same arguments. dh_n: empty
// for zeros. db_ih and db_hh are left empty without bias.
inline RefGruGrads ref_gru_backward(const RefDims& d, const RefGruWeights& w, const std::vector<double>& x,
                                    const std::vector<double>& h0, const RefGruForward& fwd,
                                    const std::vector<double>& dy, const std::vector<double>& dh_n,
                                    const RefMasks& masks = {}) {
  const std::size_t T = d.steps, N = d.batch, I = d.input, H = d.hidden, G = 3 * H;
  const bool bias = !w.b_ih.empty();
  RefGruGrads out;
  out.dx.assign(T * N * I, 0.0);
  out.dw_ih.assign(G * I, 0.0);
  out.dw_hh.assign(G * H, 0.0);
  if (bias) {
    out.db_ih.assign(G, 0.0);
    out.db_hh.assign(G, 0.0);
  }
  std::vector<double> dh(N * H, 0.0);  // dL/dh_t carried from step t+1, one row per sequence
  if (!dh_n.empty()) dh = dh_n;

  for (std::size_t t = T; t-- > 0;) {
    for (std::size_t n = 0; n < N; ++n) {
      const RefGruStepInputs s = ref_gru_step_inputs(d, x, h0, fwd.y, masks, t, n);
      const double* gates = &fwd.gates[(t * N + n) * G];
      // Pre-activation gradients of the input side (d_in) and of the recurrent side (d_rec) of each block.
      std::vector<double> d_in(G), d_rec(G), dhm(H, 0.0), dh_prev(H);
      for (std::size_t j = 0; j < H; ++j) {
        const double r = gates[j], z = gates[H + j], n_gate = gates[2 * H + j];
        const double dh_t = dy[(t * N + n) * H + j] + dh[n * H + j];
        dh_prev[j] = dh_t * z;  // directly through z * h_{t-1}
        const double dn = dh_t * (1.0 - z) * (1.0 - n_gate * n_gate);
        d_in[H + j] = d_rec[H + j] = dh_t * (s.h_prev[j] - n_gate) * z * (1.0 - z);
        d_in[2 * H + j] = dn;
        if (w.reset_after) {
          d_in[j] = d_rec[j] = dn * fwd.hidden_n[(t * N + n) * H + j] * r * (1.0 - r);
          d_rec[2 * H + j] = dn * r;
        } else {
          d_rec[2 * H + j] = dn;
        }
      }
      if (!w.reset_after) {
        // n's recurrent product read r * hm: d(r * hm)_k = sum_j dn_j W_hn[j, k].
        for (std::size_t k = 0; k < H; ++k) {
          double drh = 0.0;
          for (std::size_t j = 0; j < H; ++j) drh += d_rec[2 * H + j] * w.w_hh[(2 * H + j) * H + k];
          const double r = gates[k];
          d_in[k] = d_rec[k] = drh * s.hm[k] * r * (1.0 - r);
          dhm[k] += drh * r;
          for (std::size_t j = 0; j < H; ++j) out.dw_hh[(2 * H + j) * H + k] += d_rec[2 * H + j] * r * s.hm[k];
        }
      }
      for (std::size_t g = 0; g < G; ++g) {
        for (std::size_t k = 0; k < I; ++k) {
          out.dw_ih[g * I + k] += d_in[g] * s.xm[k];
          out.dx[(t * N + n) * I + k] += d_in[g] * w.w_ih[g * I + k] * ref_mask(masks.input, n * I + k);
        }
        if (bias) {
          out.db_ih[g] += d_in[g];
          out.db_hh[g] += d_rec[g];
        }
        if (g >= 2 * H && !w.reset_after) continue;  // done above, through r * hm
        for (std::size_t k = 0; k < H; ++k) {
          out.dw_hh[g * H + k] += d_rec[g] * s.hm[k];
          dhm[k] += d_rec[g] * w.w_hh[g * H + k];
        }
      }
      for (std::size_t k = 0; k < H; ++k) dh[n * H + k] = dh_prev[k] + dhm[k] * ref_mask(masks.recurrent, n * H + k);
    }
  }
  out.dh0 = dh;
  return out;
}

// ---- stacked and bidirectional, composed from the single direction above --------------------------------

struct RefGruStackForward {
  std::vector<double> y;                          // [T, N, D*H]
  std::vector<double> h_n;                        // [L*D, N, H]
  std::vector<std::vector<double>> layer_inputs;  // [L]: x, then each layer's output (before inter dropout)
  std::vector<RefGruForward> runs;                // [L*D], each in its own direction's step order
};

struct RefGruStackGrads {
  std::vector<double> dx;         // [T, N, I]
  std::vector<double> dh0;        // [L*D, N, H]
  std::vector<RefGruGrads> runs;  // [L*D]: the weight gradients of each (layer, direction)
};

// Elementwise a * b, or a when b is empty.
inline std::vector<double> ref_times(std::vector<double> a, const std::vector<double>& b) {
  if (!b.empty()) {
    for (std::size_t k = 0; k < a.size(); ++k) a[k] *= b[k];
  }
  return a;
}

// h0: [L*D, N, H] or empty; inter: [L-1, T, N, D*H] or empty; masks: [L*D] or empty.
inline RefGruStackForward ref_gru_stack_forward(const RefStackDims& d, const std::vector<RefGruWeights>& weights,
                                                const std::vector<double>& x, const std::vector<double>& h0,
                                                const std::vector<double>& inter = {},
                                                const std::vector<RefMasks>& masks = {}) {
  const std::size_t T = d.steps, N = d.batch, H = d.hidden, D = d.directions, NH = N * H;
  const std::size_t out_size = T * N * D * H;
  RefGruStackForward out;
  out.h_n.assign(d.layers * D * NH, 0.0);
  std::vector<double> layer_in = x;
  for (std::size_t l = 0; l < d.layers; ++l) {
    out.layer_inputs.push_back(layer_in);  // x, or the output of layer l-1 before the dropout between layers
    if (l > 0) layer_in = ref_times(layer_in, ref_slice(inter, l - 1, out_size));
    std::vector<double> layer_out(out_size);
    for (std::size_t dir = 0; dir < D; ++dir) {
      const std::size_t k = l * D + dir;
      const std::vector<double> in = dir == 1 ? ref_reverse_time(layer_in, T) : layer_in;
      RefGruForward run = ref_gru_forward(d.layer(l), weights[k], in, ref_slice(h0, k, NH),
                                          masks.empty() ? RefMasks{} : masks[k]);
      const std::vector<double> y = dir == 1 ? ref_reverse_time(run.y, T) : run.y;
      for (std::size_t row = 0; row < T * N; ++row) {
        for (std::size_t j = 0; j < H; ++j) layer_out[row * D * H + dir * H + j] = y[row * H + j];
      }
      std::copy(run.h_n.begin(), run.h_n.end(), out.h_n.begin() + static_cast<std::ptrdiff_t>(k * NH));
      out.runs.push_back(std::move(run));
    }
    layer_in = layer_out;
  }
  out.y = layer_in;
  return out;
}

// Gradients of <y, dy> + <h_n, dh_n>; dh_n: [L*D, N, H] or empty. The same inter and masks as the forward.
inline RefGruStackGrads ref_gru_stack_backward(const RefStackDims& d, const std::vector<RefGruWeights>& weights,
                                               const std::vector<double>& h0, const RefGruStackForward& fwd,
                                               const std::vector<double>& dy, const std::vector<double>& dh_n,
                                               const std::vector<double>& inter = {},
                                               const std::vector<RefMasks>& masks = {}) {
  const std::size_t T = d.steps, N = d.batch, H = d.hidden, D = d.directions, NH = N * H;
  const std::size_t out_size = T * N * D * H;
  RefGruStackGrads out;
  out.dh0.assign(d.layers * D * NH, 0.0);
  out.runs.resize(d.layers * D);
  std::vector<double> d_out = dy;
  for (std::size_t l = d.layers; l-- > 0;) {
    const RefDims ld = d.layer(l);
    const std::vector<double> inter_l = l > 0 ? ref_slice(inter, l - 1, out_size) : std::vector<double>{};
    const std::vector<double> layer_in = ref_times(fwd.layer_inputs[l], inter_l);
    std::vector<double> d_in(T * N * ld.input, 0.0);
    for (std::size_t dir = 0; dir < D; ++dir) {
      const std::size_t k = l * D + dir;
      std::vector<double> dy_dir(T * NH);
      for (std::size_t row = 0; row < T * N; ++row) {
        for (std::size_t j = 0; j < H; ++j) dy_dir[row * H + j] = d_out[row * D * H + dir * H + j];
      }
      RefGruGrads g = ref_gru_backward(ld, weights[k], dir == 1 ? ref_reverse_time(layer_in, T) : layer_in,
                                       ref_slice(h0, k, NH), fwd.runs[k],
                                       dir == 1 ? ref_reverse_time(dy_dir, T) : dy_dir, ref_slice(dh_n, k, NH),
                                       masks.empty() ? RefMasks{} : masks[k]);
      const std::vector<double> dx = dir == 1 ? ref_reverse_time(g.dx, T) : g.dx;
      for (std::size_t e = 0; e < d_in.size(); ++e) d_in[e] += dx[e];
      std::copy(g.dh0.begin(), g.dh0.end(), out.dh0.begin() + static_cast<std::ptrdiff_t>(k * NH));
      out.runs[k] = std::move(g);
    }
    d_out = ref_times(d_in, inter_l);  // through the dropout between layer l-1 and layer l
  }
  out.dx = d_out;
  return out;
}

}  // namespace lstm_ext::testing
