// SPDX-License-Identifier: MIT
// Internal to the kernels: the gate activations, shared by the LSTM and GRU passes.
#pragma once

#include "lstm_ext/common.h"

#include <Eigen/Core>

#include <algorithm>
#include <limits>

namespace lstm_ext::detail {

// sigmoid in place. Eigen's float logistic clamps its argument before exp, so sigmoid(-inf) would be about
// 1e-38 instead of 0: its derivative s(1-s) is then not 0, and a gradient that should be 0 * inf = NaN (as
// in torch and IEEE arithmetic) comes out as inf. Saturating -inf exactly keeps NaN/Inf propagation as torch's.
template <typename ArrayRef>
void sigmoid_inplace(ArrayRef&& a) {
  using Scalar = typename Eigen::internal::remove_all<ArrayRef>::type::Scalar;
  a = (a == -std::numeric_limits<Scalar>::infinity()).select(Scalar(0), a.logistic());
}

// The packet type the fused float passes use (the widest Eigen has for this build) and its width.
using FloatPacket = Eigen::internal::packet_traits<float>::type;
constexpr Index kFloatPacket = Eigen::internal::packet_traits<float>::size;

// Whether the register file has 32 vector registers (AVX-512, NEON) rather than 16 (AVX2, SSE): the
// micro-kernels size their tiles by it.
constexpr bool kWideRegisterFile = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32;

// Keeps a packet in a register where it is used several times. With 16 registers (AVX2) GCC folds a loaded
// weight packet into every multiply-add that uses it, loading it once per row of a tile: 16 loads per 12
// multiply-adds in the panel kernel's 4 x 3 tile, which bound it at 62-70% of the FMA loop on a Zen 3 guest.
// An empty asm that takes the packet in a register stops the folding.
EIGEN_ALWAYS_INLINE void keep_in_register(FloatPacket& p) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__AVX512F__)
  __asm__("" : "+x"(p));
#else
  (void)p;
#endif
}

// sigmoid of a packet: Eigen's float logistic (the one Array::logistic uses), with -inf saturated to 0 as in
// sigmoid_inplace.
inline FloatPacket psigmoid(const FloatPacket& x) {
  using namespace Eigen::internal;
  const FloatPacket s = scalar_logistic_op<float>().packetOp(x);
  return pselect(pcmp_eq(x, pset1<FloatPacket>(-std::numeric_limits<float>::infinity())), pzero(x), s);
}

// Runs body(j, in, out) for j = 0, P, 2P, ... over a row of `width` floats, where in[k] + j and out[k] + j
// address a full packet. The last, partial packet is computed on zero-padded copies, so every element goes
// through the same vector code: results do not depend on where a row starts or on its length (a scalar tail
// would round differently: Eigen's scalar pmadd is not fused).
template <int kIn, int kOut, typename Body>
void for_each_packet(Index width, const float* const (&in)[kIn], float* const (&out)[kOut], Body&& body) {
  constexpr Index P = kFloatPacket;
  Index j = 0;
  for (; j + P <= width; j += P) body(j, in, out);
  if (j == width) return;
  alignas(64) float in_tail[kIn][P] = {};
  alignas(64) float out_tail[kOut][P] = {};
  const Index rest = width - j;
  const float* in_ptr[kIn];
  float* out_ptr[kOut];
  for (int k = 0; k < kIn; ++k) {
    if (in[k] != nullptr) std::copy_n(in[k] + j, rest, in_tail[k]);
    in_ptr[k] = in_tail[k];
  }
  for (int k = 0; k < kOut; ++k) {
    if (out[k] != nullptr) std::copy_n(out[k] + j, rest, out_tail[k]);  // in/out buffers read their old values
    out_ptr[k] = out_tail[k];
  }
  body(Index(0), in_ptr, out_ptr);
  for (int k = 0; k < kOut; ++k)
    if (out[k] != nullptr) std::copy_n(out_tail[k], rest, out[k] + j);
}

}  // namespace lstm_ext::detail
