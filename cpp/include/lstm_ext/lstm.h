// SPDX-License-Identifier: MIT
// Single-layer, single-direction LSTM over a whole sequence: forward and backward through time; and stacks.
//
// Shapes use T steps, N batch, I input, H hidden, G = 4H, P projection (H_out = P if P > 0, else H); the
// rightmost index is contiguous (row-major). Time-major: x is [T, N, I], or packed [R, I] (sequence.h). Gate
// blocks along G are ordered i, f, g, o as in PyTorch, and the weights are PyTorch's tensors as they are:
//   w_ih [G, I], w_hh [G, H_out], bias [G] = b_ih + b_hh (the two PyTorch biases summed; nullptr = no bias),
//   w_hr [P, H] (proj_size > 0 only).
// Per step, with the variational masks m_x, m_h of sequence.h (ones when absent):
//   gates = (x_t * m_x) w_ih^T + (h_{t-1} * m_h) w_hh^T + bias
//   i = sigmoid(gates_i), f = sigmoid(gates_f), g = tanh(gates_g), o = sigmoid(gates_o)
//   c_t = f * c_{t-1} + i * g,   h_full = o * tanh(c_t),   h_t = h_full w_hr^T (P > 0) or h_full,   y_t = h_t
//
// All functions are reentrant: no state besides the thread count (threads.h). They check their own
// preconditions and throw std::invalid_argument("[function] ..."); std::bad_alloc escapes as it is.
#pragma once

#include "lstm_ext/sequence.h"

namespace lstm_ext {

constexpr Index kGatesLstm = 4;

using LstmDims = SequenceDims;
using LstmLayout = SequenceLayout;

template <typename Scalar>
struct LstmWeights {
  const Scalar* w_ih = nullptr;  // [4H, I], required
  const Scalar* w_hh = nullptr;  // [4H, H_out], required
  const Scalar* bias = nullptr;  // [4H] = b_ih + b_hh, or nullptr for a layer without bias
  const Scalar* w_hr = nullptr;  // [P, H] when dims.proj > 0, else nullptr
};

// What a training forward keeps for the backward, besides x and y (which the caller keeps).
// Both pointers null: inference, nothing is kept. Both set: training. One set: std::invalid_argument.
template <typename Scalar>
struct LstmCache {
  Scalar* gates = nullptr;  // [T, N, 4H] activated gates i, f, g, o
  Scalar* cells = nullptr;  // [T, N, H] cell states c_1 ... c_T
};

// Bytes of LstmCache for these dims (what a training forward keeps beyond x and y).
template <typename Scalar>
Index lstm_cache_bytes(const LstmDims& dims);

// Forward through the whole sequence.
//   x   [T, N, I]       input
//   h0  [N, H_out]      initial hidden state, or nullptr for zeros (used as zeros, not skipped: 0 * NaN is NaN)
//   c0  [N, H]          initial cell state, or nullptr for zeros (likewise)
//   y   [T, N, H_out]   output: h_1 ... h_T (a training backward reads it back as the saved hidden states)
//   h_n [N, H_out]      output: each sequence's last h (packed: at its own last step), or nullptr
//   c_n [N, H]          output: the same for c, or nullptr
// Outputs must not overlap the inputs or each other. Workspaces are allocated once per call, none in the
// time loop.
template <typename Scalar>
void lstm_forward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                  const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                  const LstmCache<Scalar>& cache, const LstmLayout& layout = {},
                  const DropoutMasks<Scalar>& masks = {});

// Gradients of the weights, written (not accumulated).
template <typename Scalar>
struct LstmWeightGrads {
  Scalar* dw_ih = nullptr;  // [4H, I], required
  Scalar* dw_hh = nullptr;  // [4H, H_out], required
  Scalar* dbias = nullptr;  // [4H], the gradient of b_ih and of b_hh alike; nullptr if the layer has no bias
  Scalar* dw_hr = nullptr;  // [P, H] when dims.proj > 0, else nullptr
};

// Backward through time of a training forward made with the same dims, weights, x, h0, c0 and masks.
//   y, cache     what that forward wrote (read only)
//   dy   [T, N, H_out]   gradient of the loss w.r.t. y, required
//   dh_n [N, H_out]      gradient w.r.t. h_n, or nullptr for zeros
//   dc_n [N, H]          gradient w.r.t. c_n, or nullptr for zeros
//   dx   [T, N, I]       output
//   dh0 [N, H_out], dc0 [N, H]  outputs (also the gradients w.r.t. h0, c0 when those were nullptr)
// Outputs must not overlap the inputs or each other.
template <typename Scalar>
void lstm_backward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                   const Scalar* h0, const Scalar* c0, const Scalar* y, const LstmCache<Scalar>& cache,
                   const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n, Scalar* dx, Scalar* dh0,
                   Scalar* dc0, const LstmWeightGrads<Scalar>& grads, const LstmLayout& layout = {},
                   const DropoutMasks<Scalar>& masks = {});

// ---------------------------------------------------------------------------------------------------------
// Stacked and bidirectional LSTM (torch.nn.LSTM with num_layers = L, bidirectional: D = 2, proj_size = P), see
// StackDims. weights[k].w_ih is [4H, I] for l = 0, [4H, D*H_out] after.
using LstmStackDims = StackDims;

// What a training forward of the stack keeps. All null: inference. All needed ones set: training.
template <typename Scalar>
struct LstmStackCache {
  Scalar* gates = nullptr;   // [L*D, T, N, 4H] activated gates
  Scalar* cells = nullptr;   // [L*D, T, N, H] cell states
  Scalar* hidden = nullptr;  // [L-1, T, N, D*H_out] outputs of every layer but the last (nullptr when L = 1)
};

// Sizes in elements of the three cache buffers, in the order above.
struct LstmStackCacheSizes {
  Index gates = 0, cells = 0, hidden = 0;
};
LstmStackCacheSizes lstm_stack_cache_sizes(const LstmStackDims& dims);

//   x [T, N, I]; h0 [L*D, N, H_out], c0 [L*D, N, H] or nullptr (zeros); y [T, N, D*H_out];
//   h_n [L*D, N, H_out], c_n [L*D, N, H] or nullptr. Dropout: see StackDropout.
template <typename Scalar>
void lstm_stack_forward(const LstmStackDims& dims, const LstmWeights<Scalar>* weights, const Scalar* x,
                        const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                        const LstmStackCache<Scalar>& cache, const StackDropout<Scalar>& dropout = {});

//   dy [T, N, D*H_out]; dh_n, dc_n as h_n, c_n or nullptr; dx [T, N, I]; dh0, dc0 as h0, c0;
//   grads[k] for k < L*D, written. The same dropout as the forward.
template <typename Scalar>
void lstm_stack_backward(const LstmStackDims& dims, const LstmWeights<Scalar>* weights, const Scalar* x,
                         const Scalar* h0, const Scalar* c0, const Scalar* y, const LstmStackCache<Scalar>& cache,
                         const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n, Scalar* dx, Scalar* dh0,
                         Scalar* dc0, const LstmWeightGrads<Scalar>* grads, const StackDropout<Scalar>& dropout = {});

}  // namespace lstm_ext
