// SPDX-License-Identifier: MIT
// Internal to the kernels: a call's workspace, in a block of the cache (lstm_ext/memory.h), so a call that
// repeats the last one's sizes reuses its pages instead of faulting in fresh ones.
#pragma once

#include "lstm_ext/common.h"
#include "lstm_ext/memory.h"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

namespace lstm_ext::detail {

template <typename Scalar>
class Workspace {
  static_assert(std::is_trivially_copyable_v<Scalar>, "a workspace holds plain numbers");

 public:
  Workspace() = default;
  explicit Workspace(Index size) { resize(size); }
  Workspace(Workspace&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Workspace& operator=(Workspace&& other) noexcept {
    if (this != &other) {
      free_block(data_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { free_block(data_); }

  // `size` elements, 64-byte aligned; the contents are kept only when the size does not change (as Eigen's).
  void resize(Index size) {
    if (size == size_) return;
    if (size < 0 || static_cast<std::size_t>(size) > std::numeric_limits<std::size_t>::max() / sizeof(Scalar))
      throw std::bad_alloc();
    free_block(data_);
    data_ = nullptr;
    size_ = 0;
    data_ = static_cast<Scalar*>(allocate_block(static_cast<std::size_t>(size) * sizeof(Scalar)));
    size_ = size;
  }

  // `size` zeros; without a size, the current size's.
  void setZero(Index size) {
    resize(size);
    setZero();
  }
  void setZero() { std::fill_n(data_, size_, Scalar(0)); }

  Scalar* data() { return data_; }
  const Scalar* data() const { return data_; }
  Index size() const { return size_; }

 private:
  Scalar* data_ = nullptr;
  Index size_ = 0;
};

}  // namespace lstm_ext::detail
