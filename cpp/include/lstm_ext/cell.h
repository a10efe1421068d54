// SPDX-License-Identifier: MIT
// One step of an LSTM or GRU cell (torch.nn.LSTMCell, torch.nn.GRUCell) for N rows, forward and backward,
// without the sequence machinery of lstm.h / gru.h: for stepping a cell from Python one input at a time,
// where the per-call cost, not the arithmetic, decides.
//
// Shapes use N rows, I input, H hidden, G = 4H (LSTM) or 3H (GRU); row-major, rightmost index contiguous.
// The weights are PyTorch's tensors as they are (gate order i, f, g, o for the LSTM; r, z, n for the GRU):
//   w_ih [G, I], w_hh [G, H], b_ih [G], b_hh [G] (both nullptr for a cell without bias; both or neither).
// LSTM:  gates = x w_ih^T + h0 w_hh^T + b_ih + b_hh,  i, f, o = sigmoid, g = tanh,
//        c1 = f * c0 + i * g,  h1 = o * tanh(c1)
// GRU (torch's formulation, reset after the product):
//        r = sigmoid(W_ir x + b_ir + W_hr h0 + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h0 + b_hz),
//        n = tanh(W_in x + b_in + r * (W_hn h0 + b_hn)),  h1 = (1 - z) * n + z * h0
//
// The states are required: there is no "null means zeros" here, so every product is computed and NaN or Inf
// in a weight propagates as in torch even from a zero state (0 * NaN is NaN). The element-wise passes are
// those of the sequence kernels; the products are matrix-vector products at N = 1 (GEMMs above), so results
// equal lstm_forward/gru_forward over T = 1 to float rounding.
//
// Reentrant; no allocation beyond one step's workspaces (its pre-activations and gate gradients). Results do not
// depend on where the caller's buffers are (the products write into aligned workspaces only).
// Preconditions are checked and violated ones throw std::invalid_argument("[function] ...").
#pragma once

#include "lstm_ext/common.h"

namespace lstm_ext {

struct CellDims {
  Index batch = 0;   // N >= 1
  Index input = 0;   // I >= 1
  Index hidden = 0;  // H >= 1
};

template <typename Scalar>
struct CellWeights {
  const Scalar* w_ih = nullptr;  // [G, I], required
  const Scalar* w_hh = nullptr;  // [G, H], required
  const Scalar* b_ih = nullptr;  // [G] or nullptr
  const Scalar* b_hh = nullptr;  // [G] or nullptr (exactly when b_ih is)
};

// Gradients of the weights: written, or added to what the buffers hold when `accumulate` (torch's .grad).
// db_ih and db_hh are given exactly when the cell has biases (for the LSTM both receive the same values).
template <typename Scalar>
struct CellGrads {
  Scalar* dw_ih = nullptr;  // [G, I], required
  Scalar* dw_hh = nullptr;  // [G, H], required
  Scalar* db_ih = nullptr;  // [G] or nullptr
  Scalar* db_hh = nullptr;  // [G] or nullptr
};

// LSTM step.
//   x [N, I], h0 [N, H], c0 [N, H]   inputs, required
//   h1 [N, H], c1 [N, H]             outputs, required
//   gates [N, 4H]                    output: the activated gates i, f, g, o (what the backward needs), or
//                                    nullptr in inference
// Outputs must not overlap the inputs or each other.
template <typename Scalar>
void lstm_cell_forward(const CellDims& dims, const CellWeights<Scalar>& weights, const Scalar* x,
                       const Scalar* h0, const Scalar* c0, Scalar* h1, Scalar* c1, Scalar* gates);

// Backward of an lstm_cell_forward with the same dims, weights, x, h0, c0, from the gates it wrote.
//   dh1 [N, H] required; dc1 [N, H] or nullptr (zeros)
//   dx [N, I], dh0 [N, H], dc0 [N, H] outputs, required
template <typename Scalar>
void lstm_cell_backward(const CellDims& dims, const CellWeights<Scalar>& weights, const Scalar* x,
                        const Scalar* h0, const Scalar* c0, const Scalar* gates, const Scalar* dh1,
                        const Scalar* dc1, Scalar* dx, Scalar* dh0, Scalar* dc0, const CellGrads<Scalar>& grads,
                        bool accumulate);

// GRU step.
//   x [N, I], h0 [N, H] inputs, required; h1 [N, H] output, required
//   gates [N, 3H] output: the activated gates r, z, n, or nullptr in inference (with hidden_n)
//   hidden_n [N, H] output: W_hn h0 + b_hn, or nullptr in inference; gates and hidden_n both or neither
template <typename Scalar>
void gru_cell_forward(const CellDims& dims, const CellWeights<Scalar>& weights, const Scalar* x,
                      const Scalar* h0, Scalar* h1, Scalar* gates, Scalar* hidden_n);

// Backward of a gru_cell_forward with the same dims, weights, x, h0, from the gates and hidden_n it wrote.
//   dh1 [N, H] required; dx [N, I], dh0 [N, H] outputs, required
template <typename Scalar>
void gru_cell_backward(const CellDims& dims, const CellWeights<Scalar>& weights, const Scalar* x,
                       const Scalar* h0, const Scalar* gates, const Scalar* hidden_n, const Scalar* dh1, Scalar* dx,
                       Scalar* dh0, const CellGrads<Scalar>& grads, bool accumulate);

}  // namespace lstm_ext
