// SPDX-License-Identifier: MIT
// Stacked and bidirectional LSTM: the layer and direction loops around the single-direction kernels.
#include "lstm_ext/lstm.h"

#include "lstm_internal.h"
#include "stack_internal.h"

namespace lstm_ext {
namespace {

void check_lstm_stack(const char* where, const LstmStackDims& d) {
  detail::check_stack_dims(where, d, kGatesLstm);
  for (Index l = 0; l < d.layers && l < 2; ++l) detail::check_dims(where, detail::layer_dims(d, l), kGatesLstm);
}

template <typename Scalar>
DropoutMasks<Scalar> masks_of(const StackDropout<Scalar>& dropout, Index k) {
  return dropout.variational == nullptr ? DropoutMasks<Scalar>{} : dropout.variational[k];
}

}  // namespace

LstmStackCacheSizes lstm_stack_cache_sizes(const LstmStackDims& dims) {
  constexpr const char* kWhere = "lstm_stack_cache_sizes";
  check_lstm_stack(kWhere, dims);
  const Index K = dims.layers * dims.directions;
  const Index rows = sequence_rows(kWhere, dims.steps, dims.batch, dims.batch_sizes);
  const Index out = dims.proj > 0 ? dims.proj : dims.hidden;
  return {K * rows * kGatesLstm * dims.hidden, K * rows * dims.hidden, (dims.layers - 1) * rows * dims.directions * out};
}

template <typename Scalar>
void lstm_stack_forward(const LstmStackDims& dims, const LstmWeights<Scalar>* weights, const Scalar* x,
                        const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* h_n, Scalar* c_n,
                        const LstmStackCache<Scalar>& cache, const StackDropout<Scalar>& dropout) {
  constexpr const char* kWhere = "lstm_stack_forward";
  check_lstm_stack(kWhere, dims);
  require(weights != nullptr && x != nullptr && y != nullptr, kWhere, "weights, x and y are required");
  const bool training = cache.gates != nullptr;
  require(training == (cache.cells != nullptr) && (dims.layers == 1 || training == (cache.hidden != nullptr)),
          kWhere, "the cache buffers must be all set (training) or all null (inference)");

  const Index D = dims.directions, H = dims.hidden, O = dims.proj > 0 ? dims.proj : H;
  const Index rows = sequence_rows(kWhere, dims.steps, dims.batch, dims.batch_sizes);
  const Index state = dims.batch * H, out_state = dims.batch * O;

  detail::stack_forward_layers<Scalar>(
      dims.layers, rows, D * O, x, y, training ? cache.hidden : nullptr, dropout.inter,
      [&](Index l, const Scalar* layer_in, Scalar* layer_out) {
        detail::for_each_direction(D, [&](Index d) {
          const Index k = l * D + d;
          const LstmCache<Scalar> k_cache{detail::offset(cache.gates, k * rows * kGatesLstm * H),
                                          detail::offset(cache.cells, k * rows * H)};
          lstm_forward<Scalar>(detail::layer_dims(dims, l), weights[k], layer_in, detail::offset(h0, k * out_state),
                               detail::offset(c0, k * state), layer_out + d * O, detail::offset(h_n, k * out_state),
                               detail::offset(c_n, k * state), k_cache, detail::direction_layout(dims, d),
                               masks_of(dropout, k));
        });
      });
}

template <typename Scalar>
void lstm_stack_backward(const LstmStackDims& dims, const LstmWeights<Scalar>* weights, const Scalar* x,
                         const Scalar* h0, const Scalar* c0, const Scalar* y, const LstmStackCache<Scalar>& cache,
                         const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n, Scalar* dx, Scalar* dh0,
                         Scalar* dc0, const LstmWeightGrads<Scalar>* grads, const StackDropout<Scalar>& dropout) {
  constexpr const char* kWhere = "lstm_stack_backward";
  check_lstm_stack(kWhere, dims);
  require(weights != nullptr && grads != nullptr, kWhere, "weights and grads are required");
  require(cache.gates != nullptr && cache.cells != nullptr && (dims.layers == 1 || cache.hidden != nullptr),
          kWhere, "the cache of a training forward is required");
  require(x != nullptr && y != nullptr && dy != nullptr && dx != nullptr, kWhere, "x, y, dy and dx are required");
  require(dh0 != nullptr && dc0 != nullptr, kWhere, "dh0 and dc0 are required");

  const Index D = dims.directions, H = dims.hidden, O = dims.proj > 0 ? dims.proj : H;
  const Index rows = sequence_rows(kWhere, dims.steps, dims.batch, dims.batch_sizes);
  const Index state = dims.batch * H, out_state = dims.batch * O;

  detail::stack_backward_layers<Scalar>(
      dims.layers, rows, D * O, x, y, cache.hidden, dropout.inter, dy, dx,
      [&](Index l, const Scalar* layer_in, const Scalar* layer_out, const Scalar* d_out, Scalar* d_in) {
        const Index in_size = rows * detail::layer_dims(dims, l).input;
        detail::backward_directions<Scalar>(D, in_size, d_in, [&](Index d, Scalar* d_in_d) {
          const Index k = l * D + d;
          const LstmCache<Scalar> k_cache{cache.gates + k * rows * kGatesLstm * H, cache.cells + k * rows * H};
          // Both directions read the same layer input: backward_directions adds their input gradients.
          lstm_backward<Scalar>(detail::layer_dims(dims, l), weights[k], layer_in, detail::offset(h0, k * out_state),
                                detail::offset(c0, k * state), layer_out + d * O, k_cache, d_out + d * O,
                                detail::offset(dh_n, k * out_state), detail::offset(dc_n, k * state), d_in_d,
                                dh0 + k * out_state, dc0 + k * state, grads[k], detail::direction_layout(dims, d),
                                masks_of(dropout, k));
        });
      });
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                          \
  template void lstm_stack_forward<Scalar>(const LstmStackDims&, const LstmWeights<Scalar>*, const Scalar*,    \
                                           const Scalar*, const Scalar*, Scalar*, Scalar*, Scalar*,            \
                                           const LstmStackCache<Scalar>&, const StackDropout<Scalar>&);        \
  template void lstm_stack_backward<Scalar>(const LstmStackDims&, const LstmWeights<Scalar>*, const Scalar*,   \
                                            const Scalar*, const Scalar*, const Scalar*,                       \
                                            const LstmStackCache<Scalar>&, const Scalar*, const Scalar*,       \
                                            const Scalar*, Scalar*, Scalar*, Scalar*,                          \
                                            const LstmWeightGrads<Scalar>*, const StackDropout<Scalar>&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
