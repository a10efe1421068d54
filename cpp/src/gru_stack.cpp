// SPDX-License-Identifier: MIT
// Stacked and bidirectional GRU: the layer and direction loops around the single-direction kernels.
#include "lstm_ext/gru.h"

#include "gru_internal.h"
#include "stack_internal.h"

namespace lstm_ext {
namespace {

void check_gru_stack(const char* where, const GruStackDims& d) {
  require(d.proj == 0, where, "a GRU has no projection: dims.proj must be 0");
  detail::check_stack_dims(where, d, kGatesGru);
  for (Index l = 0; l < d.layers && l < 2; ++l) detail::check_dims(where, detail::layer_dims(d, l), kGatesGru);
}

template <typename Scalar>
void check_same_formulation(const char* where, const GruStackDims& d, const GruWeights<Scalar>* weights) {
  require(weights != nullptr, where, "weights are required");
  for (Index k = 1; k < d.layers * d.directions; ++k)
    require(weights[k].reset_after == weights[0].reset_after, where, "reset_after must be the same for every layer");
}

template <typename Scalar>
DropoutMasks<Scalar> masks_of(const StackDropout<Scalar>& dropout, Index k) {
  return dropout.variational == nullptr ? DropoutMasks<Scalar>{} : dropout.variational[k];
}

}  // namespace

GruStackCacheSizes gru_stack_cache_sizes(const GruStackDims& dims, bool reset_after) {
  constexpr const char* kWhere = "gru_stack_cache_sizes";
  check_gru_stack(kWhere, dims);
  const Index K = dims.layers * dims.directions;
  const Index rows = sequence_rows(kWhere, dims.steps, dims.batch, dims.batch_sizes);
  return {K * rows * kGatesGru * dims.hidden, reset_after ? K * rows * dims.hidden : 0,
          (dims.layers - 1) * rows * dims.directions * dims.hidden};
}

template <typename Scalar>
void gru_stack_forward(const GruStackDims& dims, const GruWeights<Scalar>* weights, const Scalar* x,
                       const Scalar* h0, Scalar* y, Scalar* h_n, const GruStackCache<Scalar>& cache,
                       const StackDropout<Scalar>& dropout) {
  constexpr const char* kWhere = "gru_stack_forward";
  check_gru_stack(kWhere, dims);
  check_same_formulation(kWhere, dims, weights);
  require(x != nullptr && y != nullptr, kWhere, "x and y are required");
  const bool training = cache.gates != nullptr;
  require(dims.layers == 1 || training == (cache.hidden != nullptr), kWhere,
          "the cache buffers must be all set (training) or all null (inference)");

  const Index D = dims.directions, H = dims.hidden;
  const Index rows = sequence_rows(kWhere, dims.steps, dims.batch, dims.batch_sizes);
  const Index state = dims.batch * H;
  detail::stack_forward_layers<Scalar>(
      dims.layers, rows, D * H, x, y, training ? cache.hidden : nullptr, dropout.inter,
      [&](Index l, const Scalar* layer_in, Scalar* layer_out) {
        detail::for_each_direction(D, [&](Index d) {
          const Index k = l * D + d;
          const GruCache<Scalar> k_cache{detail::offset(cache.gates, k * rows * kGatesGru * H),
                                         detail::offset(cache.hidden_n, k * rows * H)};
          gru_forward<Scalar>(detail::layer_dims(dims, l), weights[k], layer_in, detail::offset(h0, k * state),
                              layer_out + d * H, detail::offset(h_n, k * state), k_cache,
                              detail::direction_layout(dims, d), masks_of(dropout, k));
        });
      });
}

template <typename Scalar>
void gru_stack_backward(const GruStackDims& dims, const GruWeights<Scalar>* weights, const Scalar* x,
                        const Scalar* h0, const Scalar* y, const GruStackCache<Scalar>& cache, const Scalar* dy,
                        const Scalar* dh_n, Scalar* dx, Scalar* dh0, const GruWeightGrads<Scalar>* grads,
                        const StackDropout<Scalar>& dropout) {
  constexpr const char* kWhere = "gru_stack_backward";
  check_gru_stack(kWhere, dims);
  check_same_formulation(kWhere, dims, weights);
  require(grads != nullptr, kWhere, "grads are required");
  require(cache.gates != nullptr && (dims.layers == 1 || cache.hidden != nullptr), kWhere,
          "the cache of a training forward is required");
  require(x != nullptr && y != nullptr && dy != nullptr && dx != nullptr && dh0 != nullptr, kWhere,
          "x, y, dy, dx and dh0 are required");

  const Index D = dims.directions, H = dims.hidden;
  const Index rows = sequence_rows(kWhere, dims.steps, dims.batch, dims.batch_sizes);
  const Index state = dims.batch * H;
  detail::stack_backward_layers<Scalar>(
      dims.layers, rows, D * H, x, y, cache.hidden, dropout.inter, dy, dx,
      [&](Index l, const Scalar* layer_in, const Scalar* layer_out, const Scalar* d_out, Scalar* d_in) {
        const Index in_size = rows * detail::layer_dims(dims, l).input;
        detail::backward_directions<Scalar>(D, in_size, d_in, [&](Index d, Scalar* d_in_d) {
          const Index k = l * D + d;
          const GruCache<Scalar> k_cache{cache.gates + k * rows * kGatesGru * H,
                                         detail::offset(cache.hidden_n, k * rows * H)};
          gru_backward<Scalar>(detail::layer_dims(dims, l), weights[k], layer_in, detail::offset(h0, k * state),
                               layer_out + d * H, k_cache, d_out + d * H, detail::offset(dh_n, k * state), d_in_d,
                               dh0 + k * state, grads[k], detail::direction_layout(dims, d),
                               masks_of(dropout, k));
        });
      });
}

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                          \
  template void gru_stack_forward<Scalar>(const GruStackDims&, const GruWeights<Scalar>*, const Scalar*,       \
                                          const Scalar*, Scalar*, Scalar*, const GruStackCache<Scalar>&,       \
                                          const StackDropout<Scalar>&);                                        \
  template void gru_stack_backward<Scalar>(const GruStackDims&, const GruWeights<Scalar>*, const Scalar*,      \
                                           const Scalar*, const Scalar*, const GruStackCache<Scalar>&,         \
                                           const Scalar*, const Scalar*, Scalar*, Scalar*,                     \
                                           const GruWeightGrads<Scalar>*, const StackDropout<Scalar>&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
