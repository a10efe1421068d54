// SPDX-License-Identifier: MIT
// What the LSTM and GRU kernels share: the sequence's dims (dense or packed), where one direction sits in
// memory, the variational dropout masks, and the dims of a stack of layers.
//
// Dense sequences are time-major [T, N, F]. A packed sequence is torch's PackedSequence: the sequences sorted
// by decreasing length, step t holding the first batch_sizes[t] of them, the steps' rows one after the other,
// [R, F] with R = sum(batch_sizes). Every "[T, N, F]" buffer of the kernels is then "[R, F]", and every
// per-sequence buffer ([N, F]: states, masks) is in the sorted order. Padding is never stored nor computed.
#pragma once

#include "lstm_ext/common.h"

#include <cstdint>

namespace lstm_ext {

struct SequenceDims {
  Index steps = 0;   // T >= 1
  Index batch = 0;   // N >= 1
  Index input = 0;   // I >= 1
  Index hidden = 0;  // H >= 1
  Index proj = 0;    // P: LSTM with projection (output h = W_hr h_full is P wide) when > 0; GRU: 0
  // [T] non-increasing, batch_sizes[0] == N, every entry >= 1: a packed sequence. nullptr: dense [T, N, F].
  const std::int64_t* batch_sizes = nullptr;
};

// Where one direction's sequence sits in memory. The default is a forward pass over dense rows.
struct SequenceLayout {
  bool reverse = false;  // run t = T-1 ... 0: h_{t+1} feeds step t, and h_n is the state after t = 0. Packed:
                         // sequence b starts at its own last step, as torch's reverse direction does.
  Index y_stride = 0;    // elements from one row of y (and of dy) to the next; 0 means the output width. A
                         // bidirectional layer writes each direction into its half of a [T, N, 2H] output.
  bool accumulate_dx = false;  // backward adds into dx instead of overwriting it (the second direction)
};

// Variational (recurrent) dropout, Gal & Ghahramani (arXiv 1512.05287), Keras' dropout / recurrent_dropout:
// one mask per sequence, the same at every step. Values are the scaled keep-mask (0 or 1/(1-p)), drawn by the
// caller; the backward must get the forward's masks.
template <typename Scalar>
struct DropoutMasks {
  const Scalar* input = nullptr;      // [N, I] multiplies x_t before the input projection, or nullptr
  const Scalar* recurrent = nullptr;  // [N, H_out] multiplies h_{t-1} where it enters the recurrent product
                                      // (the state carried to the next step stays unmasked), or nullptr
};

// A stack of L layers of D directions (torch's num_layers, bidirectional). Layer l reads the output of layer
// l-1 ([T, N, D*H_out]; layer 0 reads x [T, N, I]); direction 1 runs in reverse time and writes the second half
// of each output row. Per-(layer, direction) arrays are indexed k = l*D + d, as torch orders h0 and its
// parameters.
struct StackDims {
  Index steps = 0, batch = 0, input = 0, hidden = 0;
  Index layers = 1;      // L >= 1
  Index directions = 1;  // D: 1 or 2
  Index proj = 0;        // P (LSTM only), as in SequenceDims
  bool reverse = false;  // D = 1 only: the one direction runs in reverse time (Keras' go_backwards)
  const std::int64_t* batch_sizes = nullptr;  // as in SequenceDims
};

// Dropout of a stack: all optional, the masks drawn and scaled by the caller.
template <typename Scalar>
struct StackDropout {
  // [L-1, R, D*H_out]: layer l's output (l < L-1) is multiplied by inter[l] before it feeds layer l+1 (torch's
  // dropout between layers, one value per element). R = T*N dense.
  const Scalar* inter = nullptr;
  // [L*D] variational masks per (layer, direction); the input mask of layer l > 0 is [N, D*H_out].
  const DropoutMasks<Scalar>* variational = nullptr;
};

// Rows R of a dense ([T*N]) or packed (sum of batch_sizes) sequence; checks batch_sizes (see SequenceDims) and
// that R times `width` fits an Index. Throws std::invalid_argument("[where] ...").
Index sequence_rows(const char* where, Index steps, Index batch, const std::int64_t* batch_sizes);

}  // namespace lstm_ext
