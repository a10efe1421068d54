// SPDX-License-Identifier: MIT
// Internal to the cell kernels: the products of one float step of a single row (N = 1), each as one pass over
// the weights as PyTorch stores them (row-major [G, K]).
//
// At N = 1 a cell step is bound by moving its weights and their gradients (512 KB each at I = H = 128): Eigen
// ran the backward's four products (dx, dh0, dW_ih, dW_hh) as four passes, two reading the weights and two
// writing the gradients. Here each row of w is read, and the same row of dW written, in one pass, the running
// dx (or dh0) kept in registers: one backward step 13.0-13.3 -> 11.4-13.7 us at I = H = 128 on a Sapphire
// Rapids guest (bench_parts CellBackward, three paired runs, two faster). Each result is a fixed chain of
// operations on its own row or column.
//
// The forward keeps Eigen's matrix-vector products: one pass over both weights, 8 rows at a time, took 4.9 us
// against Eigen's 4.3, and row by row 6.8.
#pragma once

#include "activations_internal.h"

#include <algorithm>

namespace lstm_ext::detail {

// For d [G] and w [G, K] (row-major), a [K]: out[k] = sum_g d[g] w[g, k] (in order of g), and
// dw[g, k] = d[g] * a[k], or dw[g, k] + d[g] * a[k] when accumulate (a product, then a sum: adding a step's
// gradient twice from zero gives exactly twice it). Columns in blocks of up to 8 packets, each block's running
// sums and its piece of a in registers while the rows of w and dw stream past.
inline void cell_row_backward_product(Index G, Index K, const float* d, const float* w, const float* a,
                                      bool accumulate, float* out, float* dw) {
  using namespace Eigen::internal;
  using P = FloatPacket;
  constexpr Index kW = kFloatPacket;
  constexpr int kMaxPackets = 8;
  auto block = [&](auto packets_tag, Index k0) {
    constexpr int B = decltype(packets_tag)::value;
    P acc[B], av[B];
    for (int j = 0; j < B; ++j) {
      acc[j] = pset1<P>(0.0f);
      av[j] = ploadu<P>(a + k0 + j * kW);
    }
    for (Index g = 0; g < G; ++g) {
      const P dv = pset1<P>(d[g]);
      const float* wr = w + g * K + k0;
      float* dwr = dw + g * K + k0;
      for (int j = 0; j < B; ++j) {
        acc[j] = pmadd(dv, ploadu<P>(wr + j * kW), acc[j]);
        const P grad = pmul(dv, av[j]);
        pstoreu(dwr + j * kW, accumulate ? padd(ploadu<P>(dwr + j * kW), grad) : grad);
      }
    }
    for (int j = 0; j < B; ++j) pstoreu(out + k0 + j * kW, acc[j]);
  };
  Index k = 0;
  for (; k + kMaxPackets * kW <= K; k += kMaxPackets * kW) block(std::integral_constant<int, kMaxPackets>{}, k);
  for (; k + kW <= K; k += kW) block(std::integral_constant<int, 1>{}, k);
  if (k == K) return;
  // The last K % kW columns, scalar, in the same order.
  for (Index kk = k; kk < K; ++kk) out[kk] = 0.0f;
  for (Index g = 0; g < G; ++g) {
    for (Index kk = k; kk < K; ++kk) {
      out[kk] += d[g] * w[g * K + kk];
      const float grad = d[g] * a[kk];
      dw[g * K + kk] = accumulate ? dw[g * K + kk] + grad : grad;
    }
  }
}

}  // namespace lstm_ext::detail
