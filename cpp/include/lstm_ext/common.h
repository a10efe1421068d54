// SPDX-License-Identifier: MIT
// Shared types of the lstm_ext core: index type, row-major Eigen aliases over caller memory, and the
// precondition helper. Nothing here knows about Python.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace lstm_ext {

// Signed 64-bit sizes everywhere: T*N*4H overflows 32 bits at realistic shapes.
using Index = std::ptrdiff_t;

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename Scalar>
using MatrixMap = Eigen::Map<RowMatrix<Scalar>>;
template <typename Scalar>
using ConstMatrixMap = Eigen::Map<const RowMatrix<Scalar>>;
// Row-major views whose rows are `stride` elements apart (one direction's half of a bidirectional output).
template <typename Scalar>
using StridedMatrixMap = Eigen::Map<RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;
template <typename Scalar>
using ConstStridedMatrixMap = Eigen::Map<const RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;
template <typename Scalar>
using ArrayMap = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
template <typename Scalar>
using ConstArrayMap = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
template <typename Scalar>
using RowVectorMap = Eigen::Map<Eigen::Matrix<Scalar, 1, Eigen::Dynamic>>;
template <typename Scalar>
using ConstRowVectorMap = Eigen::Map<const Eigen::Matrix<Scalar, 1, Eigen::Dynamic>>;

// Throws std::invalid_argument("[where] what"). The binding layer turns it into ValueError.
[[noreturn]] inline void fail(const char* where, const std::string& what) {
  throw std::invalid_argument(std::string("[") + where + "] " + what);
}

// fail(where, what) when `ok` is false. Every call checks its preconditions, so a check that passes must cost
// nothing: a literal message stays a pointer (a std::string of it would be a heap allocation per check), and a
// message with numbers in it is a callable returning the string, run only on failure.
inline void require(bool ok, const char* where, const char* what) {
  if (!ok) fail(where, what);
}
inline void require(bool ok, const char* where, const std::string& what) {
  if (!ok) fail(where, what);
}
template <typename Message, typename = std::enable_if_t<std::is_invocable_r_v<std::string, Message&>>>
void require(bool ok, const char* where, Message&& what) {
  if (!ok) fail(where, what());
}

// Product of non-negative sizes, or throws when it does not fit in Index (so buffer sizes never wrap).
inline Index checked_product(const char* where, std::initializer_list<Index> sizes) {
  Index total = 1;
  for (Index s : sizes) {
    require(s >= 0, where, "negative size");
    if (s != 0 && total > std::numeric_limits<Index>::max() / s) fail(where, "sizes overflow a 64-bit index");
    total *= s;
  }
  return total;
}

}  // namespace lstm_ext
