// SPDX-License-Identifier: MIT
// Internal to the weight packing: a strided transpose copy, in packet-square blocks.
#pragma once

#include "activations_internal.h"

#include <Eigen/Core>

namespace lstm_ext::detail {

// dst[kk * ld_dst + r] = src[r * ld_src + kk] for r < rows, kk < depth. The packers read PyTorch's row-major
// weights [gates * H, K] into layouts that are k-major; element by element that is one store per cache line
// and ran at about a float per cycle (at s1, packing w_ih and w_hh took 17% of an inference forward). Blocks
// of kFloatPacket x kFloatPacket go through Eigen's in-register transpose (16 x 16 with AVX-512); the edges
// element by element. A copy: the bits are the same either way.
inline void transpose_copy(Index rows, Index depth, const float* src, Index ld_src, float* dst, Index ld_dst) {
  constexpr Index P = kFloatPacket;
  const Index full_rows = rows - rows % P, full_depth = depth - depth % P;
  for (Index r0 = 0; r0 < full_rows; r0 += P) {
    for (Index k0 = 0; k0 < full_depth; k0 += P) {
      Eigen::internal::PacketBlock<FloatPacket, P> block;
      for (Index i = 0; i < P; ++i)
        block.packet[i] = Eigen::internal::ploadu<FloatPacket>(src + (r0 + i) * ld_src + k0);
      Eigen::internal::ptranspose(block);
      for (Index i = 0; i < P; ++i) Eigen::internal::pstoreu(dst + (k0 + i) * ld_dst + r0, block.packet[i]);
    }
    for (Index r = r0; r < r0 + P; ++r)
      for (Index kk = full_depth; kk < depth; ++kk) dst[kk * ld_dst + r] = src[r * ld_src + kk];
  }
  for (Index r = full_rows; r < rows; ++r)
    for (Index kk = 0; kk < depth; ++kk) dst[kk * ld_dst + r] = src[r * ld_src + kk];
}

}  // namespace lstm_ext::detail
