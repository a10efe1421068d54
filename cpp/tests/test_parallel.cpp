// SPDX-License-Identifier: MIT
// The thread split's bookkeeping (cpp/src/parallel_internal.h, the slices of sequence_internal.h's Schedule):
// every sequence in exactly one slice, slices balanced by rows, and a slice's steps covering exactly its
// sequences' rows of the whole batch; and run_ahead's contract (each chunk produced once, consumed in order, each
// side's preparation before its first chunk).
#include "../src/parallel_internal.h"
#include "../src/sequence_internal.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
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

TEST(UnitBounds, RangesStartOnCacheLinesAndCoverTheUnits) {
  EXPECT_EQ(lstm_ext::detail::unit_bounds(128, 2), (std::vector<Index>{0, 64, 128}));
  EXPECT_EQ(lstm_ext::detail::unit_bounds(136, 2), (std::vector<Index>{0, 64, 136}));
  EXPECT_EQ(lstm_ext::detail::unit_bounds(200, 3), (std::vector<Index>{0, 64, 128, 200}));
}

TEST(UnitSplitParts, OnlyForBatchesTooSmallToSliceAndEnoughUnits) {
  lstm_ext::set_num_threads(2);
  EXPECT_EQ(lstm_ext::detail::unit_split_parts(1, 256), 2);
  EXPECT_EQ(lstm_ext::detail::unit_split_parts(15, 1024), 2);
  EXPECT_EQ(lstm_ext::detail::unit_split_parts(16, 1024), 1);  // the batch split applies
  EXPECT_EQ(lstm_ext::detail::unit_split_parts(1, 255), 1);    // under 128 units per thread
  lstm_ext::set_num_threads(1);
  EXPECT_EQ(lstm_ext::detail::unit_split_parts(1, 1024), 1);
  lstm_ext::set_num_threads(lstm_ext::default_num_threads());
}

// Every (part, step) runs once, and no part of step s + 1 starts before every part of step s has finished.
void expect_steps_in_order(Index parts, Index steps, Index slow_part) {
  std::mutex m;
  std::vector<std::pair<Index, Index>> log;  // (step, part) in the order they finished
  std::vector<int> started_early(1, 0);
  lstm_ext::detail::for_each_step_in_parts(parts, steps, [&](Index j, Index s) {
    // A slow part keeps the first thread waiting, so that it goes on alone after a window of steps.
    if (j == slow_part && s < 20) std::this_thread::sleep_for(std::chrono::microseconds(300));
    const std::lock_guard<std::mutex> lock(m);
    for (const auto& [step, part] : log) {
      if (step > s) started_early[0] = 1;
    }
    log.emplace_back(s, j);
  });
  EXPECT_EQ(started_early[0], 0);
  ASSERT_EQ(static_cast<Index>(log.size()), parts * steps);
  std::vector<int> seen(static_cast<size_t>(parts * steps), 0);
  Index last_step = 0;
  for (const auto& [step, part] : log) {
    EXPECT_GE(step, last_step) << "a step finished before one of the previous step";
    last_step = std::max(last_step, step);
    ++seen[static_cast<size_t>(step * parts + part)];
  }
  for (int count : seen) EXPECT_EQ(count, 1);
}

TEST(ForEachStepInParts, RunsEveryPartOfAStepBeforeTheNextStep) {
  lstm_ext::set_num_threads(2);
  expect_steps_in_order(2, 50, -1);
  expect_steps_in_order(3, 17, -1);  // more parts than threads
  expect_steps_in_order(1, 5, -1);
  lstm_ext::set_num_threads(lstm_ext::default_num_threads());
}

TEST(ForEachStepInParts, AWaitedForPartHandsTheRestToOneThreadAndStillRunsEverything) {
  lstm_ext::set_num_threads(2);
  expect_steps_in_order(2, 64, 1);
  expect_steps_in_order(3, 64, 2);
  lstm_ext::set_num_threads(lstm_ext::default_num_threads());
}

// One run_ahead over `count` chunks, checking its contract as it goes; the helper may start late (a sleep in
// its preparation, as a descheduled thread would), so that the consumer produces the chunks itself.
void expect_run_ahead_contract(Index count, Index window, std::chrono::milliseconds helper_delay) {
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<std::atomic<int>> produced(static_cast<size_t>(count));
  std::vector<Index> consumed;  // the consumer's alone
  std::atomic<Index> consumed_count{0};
  std::atomic<bool> set_up{false}, prepared{false};
  std::atomic<int> helper_chunks{0}, violations{0};
  auto setup = [&] {
    if (std::this_thread::get_id() != caller) ++violations;
    set_up = true;
  };
  auto prepare = [&] {
    if (std::this_thread::get_id() == caller) ++violations;
    std::this_thread::sleep_for(helper_delay);
    prepared = true;
  };
  auto produce = [&](Index c, bool by_helper) {
    const bool on_caller = std::this_thread::get_id() == caller;
    if (by_helper == on_caller) ++violations;             // the flag says which side runs it
    if (by_helper ? !prepared.load() : !set_up.load()) ++violations;  // after that side's preparation
    if (c - consumed_count.load() >= window) ++violations;  // its buffer is free
    if (by_helper) ++helper_chunks;
    ++produced[static_cast<size_t>(c)];
  };
  auto consume = [&](Index c) {
    if (std::this_thread::get_id() != caller || produced[static_cast<size_t>(c)].load() != 1) ++violations;
    consumed.push_back(c);
    ++consumed_count;
  };
  lstm_ext::detail::run_ahead(count, window, setup, prepare, produce, consume);
  EXPECT_EQ(violations.load(), 0);
  ASSERT_EQ(static_cast<Index>(consumed.size()), count);
  for (Index c = 0; c < count; ++c) {
    EXPECT_EQ(consumed[static_cast<size_t>(c)], c);
    EXPECT_EQ(produced[static_cast<size_t>(c)].load(), 1) << "chunk " << c;
  }
  if (helper_delay.count() > 0) EXPECT_LT(helper_chunks.load(), count / 2);  // the consumer took over
}

TEST(RunAhead, ProducesEachChunkOnceConsumesInOrderAndPreparesEachSideFirst) {
  lstm_ext::set_num_threads(2);
  expect_run_ahead_contract(40, 40, std::chrono::milliseconds(0));
  expect_run_ahead_contract(40, 2, std::chrono::milliseconds(0));
  expect_run_ahead_contract(1, 1, std::chrono::milliseconds(0));
  // A late helper: the consumer produces what the helper has not started, without waiting for it.
  expect_run_ahead_contract(30, 30, std::chrono::milliseconds(50));
  lstm_ext::set_num_threads(lstm_ext::default_num_threads());
}

TEST(RunAhead, RethrowsWhatEitherSideThrows) {
  lstm_ext::set_num_threads(2);
  auto nothing = [] {};
  auto consume = [](Index) {};
  EXPECT_THROW(lstm_ext::detail::run_ahead(8, 8, nothing, [] { throw std::runtime_error("prepare"); },
                                           [](Index, bool) {}, consume),
               std::runtime_error);
  EXPECT_THROW(lstm_ext::detail::run_ahead(8, 8, [] { throw std::runtime_error("setup"); }, nothing,
                                           [](Index, bool) {}, consume),
               std::runtime_error);
  EXPECT_THROW(lstm_ext::detail::run_ahead(8, 8, nothing, nothing,
                                           [](Index c, bool) {
                                             if (c == 5) throw std::runtime_error("produce");
                                           },
                                           consume),
               std::runtime_error);
  lstm_ext::set_num_threads(lstm_ext::default_num_threads());
}

}  // namespace
