// SPDX-License-Identifier: MIT
// Internal: the layer loops of a stack, shared by the LSTM and GRU stacks. The cell-specific work of one layer
// (both its directions) is a callable; these loops own the inner layers' buffers and the dropout between layers.
#pragma once

#include "parallel_internal.h"
#include "sequence_internal.h"

#include <string>

namespace lstm_ext::detail {

inline void check_stack_dims(const char* where, const StackDims& d, Index gates) {
  require(d.layers >= 1, where, [&] { return "layers must be >= 1, got " + std::to_string(d.layers); });
  require(d.directions == 1 || d.directions == 2, where,
          [&] { return "directions must be 1 or 2, got " + std::to_string(d.directions); });
  require(!(d.reverse && d.directions == 2), where, "reverse (go_backwards) needs directions == 1");
  require(d.proj >= 0, where, "proj must be >= 0");
  const Index out = d.proj > 0 ? d.proj : d.hidden;
  require(d.hidden >= 1 && d.input >= 1, where, [&] {
    return "all dimensions must be >= 1, got I=" + std::to_string(d.input) + ", H=" + std::to_string(d.hidden);
  });
  const Index rows = sequence_rows(where, d.steps, d.batch, d.batch_sizes);
  checked_product(where, {d.layers, d.directions, rows, gates, d.hidden});
  checked_product(where, {d.layers, rows, d.directions, out});
  checked_product(where, {rows, d.input});
}

// The single-direction dims of layer l, and where direction d of it sits.
inline SequenceDims layer_dims(const StackDims& d, Index layer) {
  const Index out = d.proj > 0 ? d.proj : d.hidden;
  return {d.steps, d.batch, layer == 0 ? d.input : d.directions * out, d.hidden, d.proj, d.batch_sizes};
}

inline SequenceLayout direction_layout(const StackDims& d, Index direction, bool accumulate_dx = false) {
  const Index out = d.proj > 0 ? d.proj : d.hidden;
  return {direction == 1 || d.reverse, d.directions * out, accumulate_dx};
}

// Inner-layer buffers a call needs: none for one layer, one for two (its input and output never meet), two
// beyond (layer l reads what l-1 wrote while writing the other).
inline Index inner_buffers(Index layers) { return layers == 1 ? 0 : (layers == 2 ? 1 : 2); }

// Runs layer(l, layer_in, layer_out) for l = 0 .. L-1, each layer reading the one below.
//   hidden: the training cache of the inner layers' outputs [L-1, R, width] (nullptr: inference);
//   inter: torch's dropout masks between layers [L-1, R, width] or nullptr.
template <typename Scalar, typename Layer>
void stack_forward_layers(Index layers, Index rows, Index width, const Scalar* x, Scalar* y, Scalar* hidden,
                          const Scalar* inter, Layer&& layer) {
  const Index size = rows * width;
  const Index buffers = inner_buffers(layers);
  Workspace<Scalar> inner(hidden == nullptr ? buffers * size : 0);
  Workspace<Scalar> masked(hidden != nullptr && inter != nullptr && layers > 1 ? size : 0);
  const Scalar* layer_in = x;
  for (Index l = 0; l < layers; ++l) {
    Scalar* layer_out = y;
    if (l < layers - 1) layer_out = hidden != nullptr ? hidden + l * size : inner.data() + (l % buffers) * size;
    layer(l, layer_in, layer_out);
    layer_in = layer_out;
    if (l < layers - 1 && inter != nullptr) {
      // Training keeps the layer's own output for its backward, so the next layer reads a masked copy.
      Scalar* next_in = hidden != nullptr ? masked.data() : layer_out;
      ArrayMap<Scalar>(next_in, size) = ConstArrayMap<Scalar>(layer_out, size) * ConstArrayMap<Scalar>(inter + l * size, size);
      layer_in = next_in;
    }
  }
}

// Runs layer_backward(l, layer_in, layer_out, d_out, d_in) for l = L-1 .. 0: d_out is the gradient w.r.t.
// the layer's output, d_in receives the one w.r.t. its input (dx for l = 0).
template <typename Scalar, typename LayerBackward>
void stack_backward_layers(Index layers, Index rows, Index width, const Scalar* x, const Scalar* y,
                           const Scalar* hidden, const Scalar* inter, const Scalar* dy, Scalar* dx,
                           LayerBackward&& layer_backward) {
  const Index size = rows * width;
  const Index buffers = inner_buffers(layers);
  Workspace<Scalar> inner(buffers * size);
  Workspace<Scalar> masked(inter != nullptr && layers > 1 ? size : 0);
  const Scalar* d_out = dy;
  for (Index l = layers - 1; l >= 0; --l) {
    const Scalar* layer_in = l == 0 ? x : hidden + (l - 1) * size;
    if (l > 0 && inter != nullptr) {
      ArrayMap<Scalar>(masked.data(), size) =
          ConstArrayMap<Scalar>(layer_in, size) * ConstArrayMap<Scalar>(inter + (l - 1) * size, size);
      layer_in = masked.data();
    }
    const Scalar* layer_out = l == layers - 1 ? y : hidden + l * size;
    Scalar* d_in = l == 0 ? dx : inner.data() + (l % buffers) * size;
    layer_backward(l, layer_in, layer_out, d_out, d_in);
    if (l > 0 && inter != nullptr) ArrayMap<Scalar>(d_in, size) *= ConstArrayMap<Scalar>(inter + (l - 1) * size, size);
    d_out = d_in;
  }
}

// The backward of one layer's directions, fn(d, d_in_d) writing direction d's input gradient into d_in_d.
// With two, they run concurrently (for_each_direction): the second writes into its own buffer, added after,
// so the sum is formed the same way whatever the thread count.
template <typename Scalar, typename Fn>
void backward_directions(Index directions, Index size, Scalar* d_in, Fn&& fn) {
  if (directions == 1) {
    fn(Index(0), d_in);
    return;
  }
  Workspace<Scalar> second(size);
  for_each_direction(2, [&](Index d) { fn(d, d == 0 ? d_in : second.data()); });
  ArrayMap<Scalar>(d_in, size) += ConstArrayMap<Scalar>(second.data(), size);
}

}  // namespace lstm_ext::detail
