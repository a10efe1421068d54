// SPDX-License-Identifier: MIT
// Single-layer, single-direction LSTM over a whole sequence: forward and backward through time.
//
// Shapes use T steps, N batch, I input, H hidden, G = 4H; the rightmost index is contiguous (row-major) and
// every buffer is dense. Time-major: x is [T, N, I]. Gate blocks along G are ordered i, f, g, o as in
// PyTorch, and the weights are PyTorch's tensors as they are:
//   w_ih [G, I], w_hh [G, H], bias [G] = b_ih + b_hh (the two PyTorch biases summed; nullptr = no bias).
// Per step:
//   gates = x_t w_ih^T + h_{t-1} w_hh^T + bias
//   i = sigmoid(gates_i), f = sigmoid(gates_f), g = tanh(gates_g), o = sigmoid(gates_o)
//   c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t),   y_t = h_t
//
// All functions are reentrant: no state besides the thread count (threads.h). They check their own
// preconditions and throw std::invalid_argument("[function] ..."); std::bad_alloc escapes as it is.
#pragma once

#include "lstm_ext/common.h"

namespace lstm_ext {

constexpr Index kGatesLstm = 4;

struct LstmDims {
  Index steps = 0;   // T >= 1
  Index batch = 0;   // N >= 1
  Index input = 0;   // I >= 1
  Index hidden = 0;  // H >= 1
};

template <typename Scalar>
struct LstmWeights {
  const Scalar* w_ih = nullptr;  // [4H, I], required
  const Scalar* w_hh = nullptr;  // [4H, H], required
  const Scalar* bias = nullptr;  // [4H] = b_ih + b_hh, or nullptr for a layer without bias
};

// What a training forward keeps for the backward, besides x and y (which the caller keeps).
// Both pointers null: inference, nothing is kept. Both set: training. One set: std::invalid_argument.
template <typename Scalar>
struct LstmCache {
  Scalar* gates = nullptr;  // [T, N, 4H] activated gates i, f, g, o
  Scalar* cells = nullptr;  // [T, N, H] cell states c_1 ... c_T
};

// Where one direction's sequence sits in memory. The default is a forward pass over dense [T, N, H] arrays.
struct LstmLayout {
  bool reverse = false;  // run t = T-1 ... 0: h_{t+1} feeds step t, and h_n, c_n are the states after t = 0
  Index y_stride = 0;    // elements from one row of y (and of dy) to the next; 0 means H. A bidirectional
                         // layer writes each direction into its half of a [T, N, 2H] output: stride 2H.
  bool accumulate_dx = false;  // backward adds into dx instead of overwriting it (the second direction)
};

// Bytes of LstmCache for these dims (what a training forward keeps beyond x and y).
template <typename Scalar>
Index lstm_cache_bytes(const LstmDims& dims);

// Forward through the whole sequence.
//   x   [T, N, I]   input
//   h0  [N, H]      initial hidden state, or nullptr for zeros
//   c0  [N, H]      initial cell state, or nullptr for zeros
//   y   [T, N, H]   output: h_1 ... h_T (a training backward reads it back as the saved hidden states)
//   h_n [N, H]      output: h_T, or nullptr if not wanted
//   c_n [N, H]      output: c_T, or nullptr if not wanted
// Outputs must not overlap the inputs or each other. Allocates one workspace per call when inference
// (cache empty), none in the time loop.
template <typename Scalar>
void lstm_forward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                  const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                  const LstmCache<Scalar>& cache, const LstmLayout& layout = {});

// Gradients of the weights, written (not accumulated).
template <typename Scalar>
struct LstmWeightGrads {
  Scalar* dw_ih = nullptr;  // [4H, I], required
  Scalar* dw_hh = nullptr;  // [4H, H], required
  Scalar* dbias = nullptr;  // [4H], the gradient of b_ih and of b_hh alike; nullptr if the layer has no bias
};

// Backward through time of a training forward made with the same dims, weights, x, h0 and c0.
//   y, cache     what that forward wrote (read only)
//   dy   [T, N, H]   gradient of the loss w.r.t. y, required
//   dh_n [N, H]      gradient w.r.t. h_T, or nullptr for zeros
//   dc_n [N, H]      gradient w.r.t. c_T, or nullptr for zeros
//   dx   [T, N, I]   output
//   dh0, dc0 [N, H]  outputs (also the gradients w.r.t. h0, c0 when those were nullptr: zeros' gradients)
// Outputs must not overlap the inputs or each other. Allocates one [T, N, 4H] workspace per call.
template <typename Scalar>
void lstm_backward(const LstmDims& dims, const LstmWeights<Scalar>& weights, const Scalar* x,
                   const Scalar* h0, const Scalar* c0, const Scalar* y, const LstmCache<Scalar>& cache,
                   const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n, Scalar* dx, Scalar* dh0,
                   Scalar* dc0, const LstmWeightGrads<Scalar>& grads, const LstmLayout& layout = {});

// ---------------------------------------------------------------------------------------------------------
// Stacked and bidirectional LSTM (torch.nn.LSTM with num_layers = L, bidirectional: D = 2).
//
// Layer l reads the output of layer l-1 ([T, N, D*H]; layer 0 reads x [T, N, I]). Direction 1 runs in
// reverse time and writes the second half of each output row. Per-(layer, direction) arrays are indexed
// k = l*D + d, as torch orders h0 and its parameters: weights[k].w_ih is [4H, I] for l = 0, [4H, D*H] after.
struct LstmStackDims {
  Index steps = 0, batch = 0, input = 0, hidden = 0;
  Index layers = 1;      // L >= 1
  Index directions = 1;  // D: 1 or 2
};

// What a training forward of the stack keeps. All null: inference. All needed ones set: training.
template <typename Scalar>
struct LstmStackCache {
  Scalar* gates = nullptr;   // [L*D, T, N, 4H] activated gates
  Scalar* cells = nullptr;   // [L*D, T, N, H] cell states
  Scalar* hidden = nullptr;  // [L-1, T, N, D*H] outputs of every layer but the last (nullptr when L = 1)
};

// Sizes in elements of the three cache buffers, in the order above.
struct LstmStackCacheSizes {
  Index gates = 0, cells = 0, hidden = 0;
};
LstmStackCacheSizes lstm_stack_cache_sizes(const LstmStackDims& dims);

//   x [T, N, I]; h0, c0 [L*D, N, H] or nullptr (zeros); y [T, N, D*H]; h_n, c_n [L*D, N, H] or nullptr.
template <typename Scalar>
void lstm_stack_forward(const LstmStackDims& dims, const LstmWeights<Scalar>* weights, const Scalar* x,
                        const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                        const LstmStackCache<Scalar>& cache);

//   dy [T, N, D*H]; dh_n, dc_n [L*D, N, H] or nullptr; dx [T, N, I]; dh0, dc0 [L*D, N, H];
//   grads[k] for k < L*D, written. Allocates two [T, N, D*H] workspaces when L > 1.
template <typename Scalar>
void lstm_stack_backward(const LstmStackDims& dims, const LstmWeights<Scalar>* weights, const Scalar* x,
                         const Scalar* h0, const Scalar* c0, const Scalar* y, const LstmStackCache<Scalar>& cache,
                         const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n, Scalar* dx, Scalar* dh0,
                         Scalar* dc0, const LstmWeightGrads<Scalar>* grads);

}  // namespace lstm_ext
