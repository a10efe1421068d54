// SPDX-License-Identifier: MIT
// Single-layer, single-direction GRU over a whole sequence: forward and backward through time; and stacks.
//
// Shapes use T steps, N batch, I input, H hidden, G = 3H; row-major, time-major x [T, N, I] or packed [R, I]
// (sequence.h). Gate blocks along G are ordered r, z, n as in PyTorch, and the weights are PyTorch's tensors:
//   w_ih [G, I], w_hh [G, H], b_ih [G], b_hh [G] (each nullptr for a layer without bias; both or neither).
// Per step, with xm = x_t * m_x and hm = h_{t-1} * m_h (the variational masks of sequence.h; ones if absent):
//   r = sigmoid(W_ir xm + b_ir + W_hr hm + b_hr),   z = sigmoid(W_iz xm + b_iz + W_hz hm + b_hz)
//   reset_after (torch, cuDNN; Keras reset_after=True):      n = tanh(W_in xm + b_in + r * (W_hn hm + b_hn))
//   reset before (Keras reset_after=False, ONNX linear_before_reset=0): n = tanh(W_in xm + b_in + W_hn (r * hm) + b_hn)
//   h_t = (1 - z) * n + z * h_{t-1},   y_t = h_t
//
// Reentrant, precondition-checked, std::invalid_argument("[function] ...") as lstm.h.
#pragma once

#include "lstm_ext/sequence.h"

namespace lstm_ext {

constexpr Index kGatesGru = 3;

using GruDims = SequenceDims;  // proj must be 0

template <typename Scalar>
struct GruWeights {
  const Scalar* w_ih = nullptr;  // [3H, I], required
  const Scalar* w_hh = nullptr;  // [3H, H], required
  const Scalar* b_ih = nullptr;  // [3H] or nullptr
  const Scalar* b_hh = nullptr;  // [3H] or nullptr
  bool reset_after = true;       // torch's formulation; false: the reset gate applies before the product
};

// What a training forward keeps besides x and y. gates null: inference.
template <typename Scalar>
struct GruCache {
  Scalar* gates = nullptr;     // [T, N, 3H] activated gates r, z, n
  Scalar* hidden_n = nullptr;  // [T, N, H] W_hn hm + b_hn of each step; reset_after only (else nullptr)
};

//   x [T, N, I]; h0 [N, H] or nullptr (zeros, used as zeros: 0 * NaN is NaN); y [T, N, H];
//   h_n [N, H] or nullptr (each sequence's last h).
template <typename Scalar>
void gru_forward(const GruDims& dims, const GruWeights<Scalar>& weights, const Scalar* x, const Scalar* h0,
                 Scalar* y, Scalar* h_n, const GruCache<Scalar>& cache, const SequenceLayout& layout = {},
                 const DropoutMasks<Scalar>& masks = {});

// Gradients of the weights, written (not accumulated). db_ih and db_hh both set or both null, as the biases.
template <typename Scalar>
struct GruWeightGrads {
  Scalar* dw_ih = nullptr;  // [3H, I]
  Scalar* dw_hh = nullptr;  // [3H, H]
  Scalar* db_ih = nullptr;  // [3H]
  Scalar* db_hh = nullptr;  // [3H]
};

//   dy [T, N, H]; dh_n [N, H] or nullptr; dx [T, N, I] out; dh0 [N, H] out. Same dims, weights, x, h0, masks
//   and layout as the training forward that wrote y and cache.
template <typename Scalar>
void gru_backward(const GruDims& dims, const GruWeights<Scalar>& weights, const Scalar* x, const Scalar* h0,
                  const Scalar* y, const GruCache<Scalar>& cache, const Scalar* dy, const Scalar* dh_n, Scalar* dx,
                  Scalar* dh0, const GruWeightGrads<Scalar>& grads, const SequenceLayout& layout = {},
                  const DropoutMasks<Scalar>& masks = {});

// ---------------------------------------------------------------------------------------------------------
// Stacked and bidirectional GRU (torch.nn.GRU), see StackDims (proj must be 0). weights[k].reset_after must
// be the same for every k.
using GruStackDims = StackDims;

template <typename Scalar>
struct GruStackCache {
  Scalar* gates = nullptr;     // [L*D, T, N, 3H]
  Scalar* hidden_n = nullptr;  // [L*D, T, N, H] (reset_after only, else nullptr)
  Scalar* hidden = nullptr;    // [L-1, T, N, D*H] outputs of every layer but the last (nullptr when L = 1)
};

struct GruStackCacheSizes {
  Index gates = 0, hidden_n = 0, hidden = 0;
};
GruStackCacheSizes gru_stack_cache_sizes(const GruStackDims& dims, bool reset_after);

//   x [T, N, I]; h0 [L*D, N, H] or nullptr; y [T, N, D*H]; h_n [L*D, N, H] or nullptr.
template <typename Scalar>
void gru_stack_forward(const GruStackDims& dims, const GruWeights<Scalar>* weights, const Scalar* x,
                       const Scalar* h0, Scalar* y, Scalar* h_n, const GruStackCache<Scalar>& cache,
                       const StackDropout<Scalar>& dropout = {});

template <typename Scalar>
void gru_stack_backward(const GruStackDims& dims, const GruWeights<Scalar>* weights, const Scalar* x,
                        const Scalar* h0, const Scalar* y, const GruStackCache<Scalar>& cache, const Scalar* dy,
                        const Scalar* dh_n, Scalar* dx, Scalar* dh0, const GruWeightGrads<Scalar>* grads,
                        const StackDropout<Scalar>& dropout = {});

}  // namespace lstm_ext
