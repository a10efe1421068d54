// SPDX-License-Identifier: MIT
// What reference_lstm.h leaves out, in the same slow, obvious double-precision loops: an LSTM with a
// projection (torch's proj_size, Sak et al.'s LSTMP: h_t = W_hr (o * tanh(c_t)), P wide) and with the
// variational masks of lstm_ext/sequence.h (input [N, I], recurrent [N, H_out]). P = 0 is the plain LSTM,
// so with no masks this must agree with ref_lstm_forward/backward. Conventions as lstm_ext/lstm.h; an empty
// vector is an absent (nullptr) argument. No Eigen and nothing from the core here.
#pragma once

#include "reference_gru.h"  // RefMasks, ref_mask
#include "reference_lstm.h"

#include <cmath>
#include <cstddef>
#include <vector>

namespace lstm_ext::testing {

struct RefLstmpDims {
  std::size_t steps = 0, batch = 0, input = 0, hidden = 0, proj = 0;  // T, N, I, H, P (0: no projection)
  std::size_t out() const { return proj > 0 ? proj : hidden; }        // H_out
};

struct RefLstmpWeights {
  std::vector<double> w_ih, w_hh, bias, w_hr;  // [4H, I], [4H, H_out], [4H] or empty, [P, H] or empty
};

struct RefLstmpForward {
  std::vector<double> y;      // [T, N, H_out]
  std::vector<double> h_n;    // [N, H_out]
  std::vector<double> c_n;    // [N, H]
  std::vector<double> gates;  // [T, N, 4H] activated i, f, g, o
  std::vector<double> cells;  // [T, N, H]
  std::vector<double> full;   // [T, N, H] o * tanh(c_t), before the projection
};

struct RefLstmpGrads {
  std::vector<double> dx, dh0, dc0, dw_ih, dw_hh, dbias, dw_hr;  // dbias, dw_hr empty when absent
};

// h0 [N, H_out], c0 [N, H]: empty for zeros.
inline RefLstmpForward ref_lstmp_forward(const RefLstmpDims& d, const RefLstmpWeights& w,
                                         const std::vector<double>& x, const std::vector<double>& h0,
                                         const std::vector<double>& c0, const RefMasks& masks = {}) {
  const std::size_t T = d.steps, N = d.batch, I = d.input, H = d.hidden, O = d.out(), G = 4 * H;
  RefLstmpForward out;
  out.y.assign(T * N * O, 0.0);
  out.gates.assign(T * N * G, 0.0);
  out.cells.assign(T * N * H, 0.0);
  out.full.assign(T * N * H, 0.0);
  std::vector<double> h(N * O, 0.0), c(N * H, 0.0);
  if (!h0.empty()) h = h0;
  if (!c0.empty()) c = c0;
  for (std::size_t t = 0; t < T; ++t) {
    for (std::size_t n = 0; n < N; ++n) {
      double* gates = &out.gates[(t * N + n) * G];
      for (std::size_t r = 0; r < G; ++r) {
        double a = w.bias.empty() ? 0.0 : w.bias[r];
        for (std::size_t k = 0; k < I; ++k) {
          a += x[(t * N + n) * I + k] * ref_mask(masks.input, n * I + k) * w.w_ih[r * I + k];
        }
        for (std::size_t k = 0; k < O; ++k) {
          a += h[n * O + k] * ref_mask(masks.recurrent, n * O + k) * w.w_hh[r * O + k];
        }
        gates[r] = a;
      }
      for (std::size_t j = 0; j < H; ++j) {
        const double i = ref_sigmoid(gates[j]), f = ref_sigmoid(gates[H + j]);
        const double g = std::tanh(gates[2 * H + j]), o = ref_sigmoid(gates[3 * H + j]);
        gates[j] = i;
        gates[H + j] = f;
        gates[2 * H + j] = g;
        gates[3 * H + j] = o;
        const double c_new = f * c[n * H + j] + i * g;
        out.cells[(t * N + n) * H + j] = c_new;
        out.full[(t * N + n) * H + j] = o * std::tanh(c_new);
      }
      for (std::size_t p = 0; p < O; ++p) {
        double v = 0.0;
        if (d.proj > 0) {
          for (std::size_t j = 0; j < H; ++j) v += w.w_hr[p * H + j] * out.full[(t * N + n) * H + j];
        } else {
          v = out.full[(t * N + n) * H + p];
        }
        out.y[(t * N + n) * O + p] = v;
      }
    }
    // The states change only after every row of the step is done.
    for (std::size_t e = 0; e < N * O; ++e) h[e] = out.y[t * N * O + e];
    for (std::size_t e = 0; e < N * H; ++e) c[e] = out.cells[t * N * H + e];
  }
  out.h_n = h;
  out.c_n = c;
  return out;
}

// Gradients of L = <y, dy> + <h_n, dh_n> + <c_n, dc_n> for the forward `fwd` made with the same arguments.
inline RefLstmpGrads ref_lstmp_backward(const RefLstmpDims& d, const RefLstmpWeights& w,
                                        const std::vector<double>& x, const std::vector<double>& h0,
                                        const std::vector<double>& c0, const RefLstmpForward& fwd,
                                        const std::vector<double>& dy, const std::vector<double>& dh_n,
                                        const std::vector<double>& dc_n, const RefMasks& masks = {}) {
  const std::size_t T = d.steps, N = d.batch, I = d.input, H = d.hidden, O = d.out(), G = 4 * H;
  RefLstmpGrads out;
  out.dx.assign(T * N * I, 0.0);
  out.dw_ih.assign(G * I, 0.0);
  out.dw_hh.assign(G * O, 0.0);
  if (!w.bias.empty()) out.dbias.assign(G, 0.0);
  if (d.proj > 0) out.dw_hr.assign(d.proj * H, 0.0);
  std::vector<double> dh(N * O, 0.0), dc(N * H, 0.0);  // carried from step t+1
  if (!dh_n.empty()) dh = dh_n;
  if (!dc_n.empty()) dc = dc_n;

  for (std::size_t t = T; t-- > 0;) {
    for (std::size_t n = 0; n < N; ++n) {
      const std::size_t row = t * N + n;
      std::vector<double> dh_t(O), d_full(H, 0.0), da(G);
      for (std::size_t p = 0; p < O; ++p) dh_t[p] = dy[row * O + p] + dh[n * O + p];
      if (d.proj > 0) {
        for (std::size_t p = 0; p < O; ++p) {
          for (std::size_t j = 0; j < H; ++j) {
            d_full[j] += dh_t[p] * w.w_hr[p * H + j];
            out.dw_hr[p * H + j] += dh_t[p] * fwd.full[row * H + j];
          }
        }
      } else {
        d_full = dh_t;
      }
      const double* gates = &fwd.gates[row * G];
      for (std::size_t j = 0; j < H; ++j) {
        const double i = gates[j], f = gates[H + j], g = gates[2 * H + j], o = gates[3 * H + j];
        const double c_t = fwd.cells[row * H + j];
        const double c_prev = t > 0 ? fwd.cells[((t - 1) * N + n) * H + j] : (c0.empty() ? 0.0 : c0[n * H + j]);
        const double tanh_c = std::tanh(c_t);
        const double dc_t = dc[n * H + j] + d_full[j] * o * (1.0 - tanh_c * tanh_c);
        da[j] = dc_t * g * i * (1.0 - i);
        da[H + j] = dc_t * c_prev * f * (1.0 - f);
        da[2 * H + j] = dc_t * i * (1.0 - g * g);
        da[3 * H + j] = d_full[j] * tanh_c * o * (1.0 - o);
        dc[n * H + j] = dc_t * f;
      }
      for (std::size_t r = 0; r < G; ++r) {
        for (std::size_t k = 0; k < I; ++k) {
          const double m = ref_mask(masks.input, n * I + k);
          out.dw_ih[r * I + k] += da[r] * x[row * I + k] * m;
          out.dx[row * I + k] += da[r] * w.w_ih[r * I + k] * m;
        }
        for (std::size_t k = 0; k < O; ++k) {
          const double h_prev = t > 0 ? fwd.y[((t - 1) * N + n) * O + k] : (h0.empty() ? 0.0 : h0[n * O + k]);
          out.dw_hh[r * O + k] += da[r] * h_prev * ref_mask(masks.recurrent, n * O + k);
        }
        if (!w.bias.empty()) out.dbias[r] += da[r];
      }
      for (std::size_t k = 0; k < O; ++k) {
        double s = 0.0;
        for (std::size_t r = 0; r < G; ++r) s += da[r] * w.w_hh[r * O + k];
        dh[n * O + k] = s * ref_mask(masks.recurrent, n * O + k);
      }
    }
  }
  out.dh0 = dh;
  out.dc0 = dc;
  return out;
}

}  // namespace lstm_ext::testing
