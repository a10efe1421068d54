// SPDX-License-Identifier: MIT
// The thread split's bookkeeping (cpp/src/parallel_internal.h, the slices of sequence_internal.h's Schedule):
// every sequence in exactly one slice, slices balanced by rows, and a slice's steps covering exactly its
// sequences' rows of the whole batch.
#include "../src/parallel_internal.h"
#include "../src/sequence_internal.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace {

using lstm_ext::Index;
using lstm_ext::detail::Schedule;
using lstm_ext::detail::slice_bounds;

TEST(SliceBounds, DenseSlicesAreEvenAndCoverTheBatch) {
  const std::vector<Index> b = slice_bounds(37, 2, 5, nullptr);
  EXPECT_EQ(b, (std::vector<Index>{0, 18, 37}));
}

TEST(SliceBounds, PackedSlicesAreBalancedByRowsNotBySequences) {
  // Lengths 10, 1, 1, ..., 1 (10 sequences): the first sequence alone has about half the rows.
  std::vector<std::int64_t> sizes(10, 1);
  sizes[0] = 10;
  const std::vector<Index> b = slice_bounds(10, 2, 10, sizes.data());
  EXPECT_EQ(b, (std::vector<Index>{0, 1, 10}));
}

TEST(SliceBounds, EverySliceGetsASequenceEvenWhenOneDominates) {
  std::vector<std::int64_t> sizes(100, 1);
  sizes[0] = 3;  // one sequence of 100 steps, two of 1
  const std::vector<Index> b = slice_bounds(3, 3, 100, sizes.data());
  EXPECT_EQ(b, (std::vector<Index>{0, 1, 2, 3}));
}

// Every row of the whole batch's [R, F] buffers, visited by the slices' steps exactly once, and a slice's
// rows are its own sequences: row offset - step offset + first is the sequence.
void expect_slices_cover_rows(Index steps, Index batch, const std::int64_t* sizes, bool reverse, Index parts) {
  const Schedule whole("test", steps, batch, sizes, reverse);
  std::vector<int> seen(static_cast<size_t>(whole.rows()), 0);
  const std::vector<Index> b = slice_bounds(batch, parts, steps, sizes);
  for (Index j = 0; j < parts; ++j) {
    const Schedule slice("test", steps, batch, sizes, reverse, b[j], b[j + 1] - b[j]);
    for (Index s = 0; s < slice.steps(); ++s) {
      const auto st = slice.step(s);
      const auto full = whole.step(s);
      EXPECT_LE(st.rows, b[j + 1] - b[j]);
      EXPECT_LE(st.carried, st.rows);
      EXPECT_LE(st.finished_from, st.rows);
      for (Index r = 0; r < st.rows; ++r) {
        const Index row = st.offset + r;
        ASSERT_LT(row, whole.rows());
        EXPECT_EQ(row - full.offset, b[j] + r) << "a slice row that is not its own sequence";
        ++seen[static_cast<size_t>(row)];
      }
    }
  }
  for (int count : seen) EXPECT_EQ(count, 1);
}

TEST(ScheduleSlice, DenseSlicesCoverEveryRowOnce) {
  expect_slices_cover_rows(6, 17, nullptr, false, 2);
  expect_slices_cover_rows(6, 17, nullptr, true, 3);
}

TEST(ScheduleSlice, PackedSlicesCoverEveryRowOnceBothWays) {
  const std::vector<std::int64_t> sizes{9, 9, 7, 4, 4, 2, 1};
  for (bool reverse : {false, true})
    for (Index parts : {2, 3, 9}) expect_slices_cover_rows(7, 9, sizes.data(), reverse, parts);
}

TEST(ScheduleSlice, OutOfRangeSliceIsRejected) {
  EXPECT_THROW(Schedule("test", 3, 4, nullptr, false, 3, 2), std::invalid_argument);
  EXPECT_THROW(Schedule("test", 3, 4, nullptr, false, 0, 0), std::invalid_argument);
}

TEST(ForEachBatchSlice, VisitsEverySequenceOnceAndRethrows) {
  lstm_ext::set_num_threads(2);
  std::vector<std::atomic<int>> visits(40);
  lstm_ext::detail::for_each_batch_slice(40, 3, nullptr, [&](Index first, Index count) {
    for (Index b = first; b < first + count; ++b) ++visits[static_cast<size_t>(b)];
  });
  for (const auto& v : visits) EXPECT_EQ(v.load(), 1);
  EXPECT_THROW(lstm_ext::detail::for_each_batch_slice(40, 3, nullptr,
                                                      [](Index first, Index) {
                                                        if (first > 0) throw std::invalid_argument("slice");
                                                      }),
               std::invalid_argument);
  lstm_ext::set_num_threads(lstm_ext::default_num_threads());
}

}  // namespace
