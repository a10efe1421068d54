// SPDX-License-Identifier: MIT
// Internal: what kernels call before their first parallel product.
#pragma once

namespace lstm_ext::detail {

// Tells Eigen the default thread count once per process, unless set_num_threads already did.
void ensure_threads_initialised();

}  // namespace lstm_ext::detail
