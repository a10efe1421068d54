// SPDX-License-Identifier: MIT
// Stacked and bidirectional LSTM: the layer and direction loops around the single-direction kernels.
#include "lstm_ext/lstm.h"

#include "lstm_internal.h"

#include <vector>

namespace lstm_ext {
namespace {

void check_stack_dims(const char* where, const LstmStackDims& d) {
  require(d.layers >= 1, where, "layers must be >= 1, got " + std::to_string(d.layers));
  require(d.directions == 1 || d.directions == 2, where,
          "directions must be 1 or 2, got " + std::to_string(d.directions));
  detail::check_dims(where, {d.steps, d.batch, d.input, d.hidden});
  detail::check_dims(where, {d.steps, d.batch, d.directions * d.hidden, d.hidden});
  checked_product(where, {d.layers, d.directions, d.steps, d.batch, kGatesLstm, d.hidden});
}

// The single-direction view of layer l: its input width and where direction d writes.
LstmDims layer_dims(const LstmStackDims& d, Index layer) {
  return {d.steps, d.batch, layer == 0 ? d.input : d.directions * d.hidden, d.hidden};
}

LstmLayout direction_layout(const LstmStackDims& d, Index direction, bool accumulate_dx = false) {
  return {direction == 1, d.directions * d.hidden, accumulate_dx};
}

// Inner-layer buffers a call needs: none for one layer, one for two (its input and output never meet), two
// beyond (layer l reads what l-1 wrote while writing the other).
Index inner_buffers(const LstmStackDims& d) { return d.layers == 1 ? 0 : (d.layers == 2 ? 1 : 2); }

template <typename Scalar>
const Scalar* offset(const Scalar* p, Index k) {
  return p == nullptr ? nullptr : p + k;
}
template <typename Scalar>
Scalar* offset(Scalar* p, Index k) {
  return p == nullptr ? nullptr : p + k;
}

}  // namespace

LstmStackCacheSizes lstm_stack_cache_sizes(const LstmStackDims& dims) {
  check_stack_dims("lstm_stack_cache_sizes", dims);
  const Index K = dims.layers * dims.directions;
  const Index rows = dims.steps * dims.batch;
  return {K * rows * kGatesLstm * dims.hidden, K * rows * dims.hidden,
          (dims.layers - 1) * rows * dims.directions * dims.hidden};
}

template <typename Scalar>
void lstm_stack_forward(const LstmStackDims& dims, const LstmWeights<Scalar>* weights, const Scalar* x,
                        const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                        const LstmStackCache<Scalar>& cache) {
  constexpr const char* kWhere = "lstm_stack_forward";
  check_stack_dims(kWhere, dims);
  require(weights != nullptr && x != nullptr && y != nullptr, kWhere, "weights, x and y are required");
  const bool training = cache.gates != nullptr;
  require(training == (cache.cells != nullptr) && (dims.layers == 1 || training == (cache.hidden != nullptr)),
          kWhere, "the cache buffers must be all set (training) or all null (inference)");

  const Index D = dims.directions, H = dims.hidden, out = D * H;
  const Index rows = dims.steps * dims.batch;
  const Index state = dims.batch * H;

  // Inference keeps no layer outputs: buffers alternate as the input and output of the inner layers.
  const Index buffers = inner_buffers(dims);
  std::vector<Scalar> inner_ws;
  if (!training) inner_ws.resize(static_cast<size_t>(buffers * rows * out));

  const Scalar* layer_in = x;
  for (Index l = 0; l < dims.layers; ++l) {
    Scalar* layer_out = y;
    if (l < dims.layers - 1) {
      layer_out = training ? cache.hidden + l * rows * out : inner_ws.data() + (l % buffers) * rows * out;
    }
    for (Index d = 0; d < D; ++d) {
      const Index k = l * D + d;
      const LstmCache<Scalar> k_cache{offset(cache.gates, k * rows * kGatesLstm * H), offset(cache.cells, k * rows * H)};
      lstm_forward<Scalar>(layer_dims(dims, l), weights[k], layer_in, offset(h0, k * state), offset(c0, k * state),
                           layer_out + d * H, offset(h_n, k * state), offset(c_n, k * state), k_cache,
                           direction_layout(dims, d));
    }
    layer_in = layer_out;
  }
}

template <typename Scalar>
void lstm_stack_backward(const LstmStackDims& dims, const LstmWeights<Scalar>* weights, const Scalar* x,
                         const Scalar* h0, const Scalar* c0, const Scalar* y, const LstmStackCache<Scalar>& cache,
                         const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n, Scalar* dx, Scalar* dh0,
                         Scalar* dc0, const LstmWeightGrads<Scalar>* grads) {
  constexpr const char* kWhere = "lstm_stack_backward";
  check_stack_dims(kWhere, dims);
  require(weights != nullptr && grads != nullptr, kWhere, "weights and grads are required");
  require(cache.gates != nullptr && cache.cells != nullptr && (dims.layers == 1 || cache.hidden != nullptr),
          kWhere, "the cache of a training forward is required");
  require(x != nullptr && y != nullptr && dy != nullptr && dx != nullptr, kWhere, "x, y, dy and dx are required");
  require(dh0 != nullptr && dc0 != nullptr, kWhere, "dh0 and dc0 are required");

  const Index D = dims.directions, H = dims.hidden, out = D * H;
  const Index rows = dims.steps * dims.batch;
  const Index state = dims.batch * H;

  // Gradients w.r.t. the inner layers' outputs, alternating between buffers from the top layer down.
  const Index buffers = inner_buffers(dims);
  std::vector<Scalar> inner_ws(static_cast<size_t>(buffers * rows * out));

  const Scalar* d_out = dy;
  for (Index l = dims.layers - 1; l >= 0; --l) {
    const Scalar* layer_in = l == 0 ? x : cache.hidden + (l - 1) * rows * out;
    const Scalar* layer_out = l == dims.layers - 1 ? y : cache.hidden + l * rows * out;
    Scalar* d_in = l == 0 ? dx : inner_ws.data() + (l % buffers) * rows * out;
    for (Index d = 0; d < D; ++d) {
      const Index k = l * D + d;
      const LstmCache<Scalar> k_cache{cache.gates + k * rows * kGatesLstm * H, cache.cells + k * rows * H};
      // Both directions read the same layer input, so the second adds its share of the input gradient.
      lstm_backward<Scalar>(layer_dims(dims, l), weights[k], layer_in, offset(h0, k * state), offset(c0, k * state),
                            layer_out + d * H, k_cache, d_out + d * H, offset(dh_n, k * state),
                            offset(dc_n, k * state), d_in, dh0 + k * state, dc0 + k * state, grads[k],
                            direction_layout(dims, d, d == 1));
    }
    d_out = d_in;
  }
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                          \
  template void lstm_stack_forward<Scalar>(const LstmStackDims&, const LstmWeights<Scalar>*, const Scalar*,    \
                                           const Scalar*, const Scalar*, Scalar*, Scalar*, Scalar*,            \
                                           const LstmStackCache<Scalar>&);                                     \
  template void lstm_stack_backward<Scalar>(const LstmStackDims&, const LstmWeights<Scalar>*, const Scalar*,   \
                                            const Scalar*, const Scalar*, const Scalar*,                       \
                                            const LstmStackCache<Scalar>&, const Scalar*, const Scalar*,       \
                                            const Scalar*, Scalar*, Scalar*, Scalar*,                          \
                                            const LstmWeightGrads<Scalar>*);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
