// SPDX-License-Identifier: MIT
#include "lstm_ext/sequence.h"

#include <string>

namespace lstm_ext {

Index sequence_rows(const char* where, Index steps, Index batch, const std::int64_t* batch_sizes) {
  require(steps >= 1 && batch >= 1, where,
          [&] { return "all dimensions must be >= 1, got T=" + std::to_string(steps) + ", N=" + std::to_string(batch); });
  if (batch_sizes == nullptr) return checked_product(where, {steps, batch});
  require(batch_sizes[0] == batch, where, [&] {
    return "batch_sizes[0] must equal N=" + std::to_string(batch) + ", got " + std::to_string(batch_sizes[0]);
  });
  // Every batch_sizes[t] <= N (checked below, step by step), so the sum is at most T*N: checked first, so
  // that summing can never overflow.
  checked_product(where, {steps, batch});
  Index rows = 0;
  for (Index t = 0; t < steps; ++t) {
    const std::int64_t n = batch_sizes[t];
    require(n >= 1 && (t == 0 || n <= batch_sizes[t - 1]), where, [&] {
      return "batch_sizes must be non-increasing and >= 1; batch_sizes[" + std::to_string(t) + "] = " + std::to_string(n);
    });
    rows += static_cast<Index>(n);
  }
  return rows;
}

}  // namespace lstm_ext
