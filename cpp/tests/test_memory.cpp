// SPDX-License-Identifier: MIT
// The cache of large blocks (lstm_ext/memory.h): reuse, alignment, limits and eviction order, thread safety,
// and that what a reused block held never reaches a result.
#include "recurrent_test_support.h"
#include "test_support.h"

#include "lstm_ext/gru.h"
#include "lstm_ext/lstm.h"
#include "lstm_ext/memory.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <thread>
#include <vector>

namespace lstm_ext::testing {
namespace {

constexpr std::size_t kMiB = std::size_t(1) << 20;

// Each test starts from an empty cache with a known limit and leaves the default limit behind.
class BlockCache : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = get_block_cache_limit();
    set_block_cache_limit(256 * kMiB);
    empty_block_cache();
  }
  void TearDown() override {
    empty_block_cache();
    set_block_cache_limit(saved_);
  }

 private:
  std::size_t saved_ = 0;
};

bool aligned(const void* p, std::size_t to) { return reinterpret_cast<std::uintptr_t>(p) % to == 0; }

TEST_F(BlockCache, AFreedBlockIsHandedOutAgainForTheSameSize) {
  void* a = allocate_block(3 * kMiB + 5);
  free_block(a);
  EXPECT_GE(block_cache_bytes(), 3 * kMiB + 5);
  void* b = allocate_block(3 * kMiB + 5);
  EXPECT_EQ(a, b);
  EXPECT_EQ(block_cache_bytes(), 0u);
  free_block(b);
}

TEST_F(BlockCache, BlocksAreAlignedTo64BytesAndFrom4MBTo2MB) {
  for (std::size_t bytes : {std::size_t(1), std::size_t(100), kCachedBlockMin - 1, kCachedBlockMin,
                            kMiB + 3, 4 * kMiB, 9 * kMiB + 1}) {
    SCOPED_TRACE(bytes);
    void* p = allocate_block(bytes);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned(p, 64));
    if (bytes >= 4 * kMiB) EXPECT_TRUE(aligned(p, 2 * kMiB));
    std::memset(p, 0x5a, bytes);  // all of it is usable (AddressSanitizer checks the bounds)
    free_block(p);
  }
  EXPECT_EQ(allocate_block(0), nullptr);
}

TEST_F(BlockCache, SmallBlocksGoBackToTheHeapNotTheCache) {
  void* p = allocate_block(kCachedBlockMin - 1);
  free_block(p);
  EXPECT_EQ(block_cache_bytes(), 0u);
}

TEST_F(BlockCache, AZeroLimitKeepsNothing) {
  set_block_cache_limit(0);
  EXPECT_EQ(get_block_cache_limit(), 0u);
  free_block(allocate_block(2 * kMiB));
  EXPECT_EQ(block_cache_bytes(), 0u);
}

TEST_F(BlockCache, ABlockLargerThanTheLimitIsNotKept) {
  set_block_cache_limit(kMiB);
  free_block(allocate_block(2 * kMiB));
  EXPECT_EQ(block_cache_bytes(), 0u);
}

TEST_F(BlockCache, LoweringTheLimitReturnsTheBlocksKeptLongestFirst) {
  void* older = allocate_block(kMiB);
  void* newer = allocate_block(2 * kMiB);
  free_block(older);
  free_block(newer);
  EXPECT_EQ(block_cache_bytes(), 3 * kMiB);
  set_block_cache_limit(2 * kMiB + kMiB / 2);
  EXPECT_EQ(block_cache_bytes(), 2 * kMiB);  // the older block went
  void* again = allocate_block(2 * kMiB);
  EXPECT_EQ(again, newer);
  free_block(again);
}

TEST_F(BlockCache, GoingOverTheLimitEvictsTheBlocksKeptLongest) {
  set_block_cache_limit(5 * kMiB);
  void* a = allocate_block(2 * kMiB);
  void* b = allocate_block(2 * kMiB + 4096);
  void* c = allocate_block(2 * kMiB + 8192);
  free_block(a);
  free_block(b);
  free_block(c);  // 6 MB: a, kept longest, goes
  EXPECT_EQ(block_cache_bytes(), 4 * kMiB + 12288);
  void* b2 = allocate_block(2 * kMiB + 4096);
  EXPECT_EQ(b2, b);
  free_block(b2);
}

TEST_F(BlockCache, AThreadGetsBackTheBlockItHadBeforeASmallerOneAnotherThreadHad) {
  // Its lines may still be in this core's cache; writing the other thread's would wait on the other core.
  void* theirs = nullptr;
  std::thread([&] { theirs = allocate_block(2 * kMiB); }).join();
  void* mine = allocate_block(2 * kMiB + 8192);
  free_block(theirs);
  free_block(mine);
  void* again = allocate_block(2 * kMiB);  // theirs fits better; mine is this thread's
  EXPECT_EQ(again, mine);
  void* other = nullptr;
  std::thread([&] { other = allocate_block(2 * kMiB); }).join();  // a new thread: the best fit, as before
  EXPECT_EQ(other, theirs);
  free_block(again);
  free_block(other);
}

TEST_F(BlockCache, ABlockMuchLargerThanTheRequestStaysInTheCache) {
  void* big = allocate_block(8 * kMiB);
  free_block(big);
  void* small = allocate_block(kMiB);
  EXPECT_NE(small, big);
  EXPECT_EQ(block_cache_bytes(), 8 * kMiB);
  free_block(small);
  // Within a quarter of the request, a larger block is used.
  void* near = allocate_block(7 * kMiB);
  EXPECT_EQ(near, big);
  free_block(near);
}

TEST_F(BlockCache, EmptyingReturnsEveryKeptBlockAndLeavesBlocksInUseAlone) {
  void* kept = allocate_block(kMiB);
  void* used = allocate_block(kMiB);
  std::memset(used, 7, kMiB);
  free_block(kept);
  empty_block_cache();
  EXPECT_EQ(block_cache_bytes(), 0u);
  EXPECT_EQ(static_cast<unsigned char*>(used)[kMiB - 1], 7);
  free_block(used);
}

TEST_F(BlockCache, FreeingNullOrAPointerItDidNotHandOutDoesNothing) {
  free_block(nullptr);
  int local = 0;
  free_block(&local);
  EXPECT_EQ(block_cache_bytes(), 0u);
}

#if !defined(__SANITIZE_ADDRESS__)
// (AddressSanitizer reports an impossible request instead of returning null.)
TEST_F(BlockCache, AnImpossibleRequestThrowsBadAlloc) {
  EXPECT_THROW(allocate_block(std::numeric_limits<std::size_t>::max() / 2), std::bad_alloc);
}
#endif

TEST_F(BlockCache, ThreadsAllocatingAndFreeingAtOnceNeverShareABlock) {
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < 200; ++i) {
        const std::size_t bytes = kCachedBlockMin * static_cast<std::size_t>(1 + (i * 7 + t) % 9);
        auto* p = static_cast<unsigned char*>(allocate_block(bytes));
        std::memset(p, t + 1, bytes);
        std::this_thread::yield();
        for (std::size_t k = 0; k < bytes; k += 4096) failures[t] += p[k] != t + 1;
        free_block(p);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

// Fills the cache with NaN blocks of every size from 64 KB to 16 MB, each within a quarter of the next, so a
// workspace of any size in that range is handed a block of NaN.
void fill_cache_with_nan() {
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (double bytes = double(kCachedBlockMin); bytes <= 16.0 * kMiB; bytes *= 1.2) {
    const auto n = static_cast<std::size_t>(bytes) / sizeof(double) * sizeof(double);
    void* p = allocate_block(n);
    auto* d = static_cast<double*>(p);
    for (std::size_t k = 0; k < n / sizeof(double); ++k) d[k] = std::numeric_limits<double>::quiet_NaN();
    blocks.emplace_back(p, n);
  }
  for (auto& [p, n] : blocks) free_block(p);
}

template <typename Scalar>
class KernelsOnReusedBlocks : public ::testing::Test {};
TYPED_TEST_SUITE(KernelsOnReusedBlocks, Scalars, ScalarName);

// The workspaces (the gates of all steps, packed weights, the recurrent states) are written before they are
// read: the same call on blocks full of NaN gives the same bits as on fresh memory.
TYPED_TEST(KernelsOnReusedBlocks, LstmResultsDoNotDependOnWhatTheBlocksHeld) {
  using Scalar = TypeParam;
  const std::size_t saved = get_block_cache_limit();
  set_block_cache_limit(256 * kMiB);
  for (const LstmCase& c : {LstmCase{9, 24, 40, 72}, LstmCase{30, 1, 64, 128}, LstmCase{3, 300, 17, 64, false, false}}) {
    SCOPED_TRACE(c.describe());
    const CoreInputs<Scalar> in(make_data(c));
    empty_block_cache();
    set_block_cache_limit(0);
    const CoreRun<Scalar> fresh = core_forward_backward(in);
    const CoreRun<Scalar> fresh_inference = core_forward(in, false);
    set_block_cache_limit(256 * kMiB);
    fill_cache_with_nan();
    const CoreRun<Scalar> reused = core_forward_backward(in);
    fill_cache_with_nan();
    const CoreRun<Scalar> reused_inference = core_forward(in, false);
    EXPECT_TRUE(all_equal("y (inference)", reused_inference.y, fresh_inference.y));
    EXPECT_TRUE(all_equal("y", reused.y, fresh.y));
    EXPECT_TRUE(all_equal("cache.gates", reused.gates, fresh.gates));
    EXPECT_TRUE(all_equal("dx", reused.dx, fresh.dx));
    EXPECT_TRUE(all_equal("dh0", reused.dh0, fresh.dh0));
    EXPECT_TRUE(all_equal("dw_ih", reused.dw_ih, fresh.dw_ih));
    EXPECT_TRUE(all_equal("dw_hh", reused.dw_hh, fresh.dw_hh));
    EXPECT_TRUE(all_equal("dbias", reused.dbias, fresh.dbias));
  }
  empty_block_cache();
  set_block_cache_limit(saved);
}

TYPED_TEST(KernelsOnReusedBlocks, GruResultsDoNotDependOnWhatTheBlocksHeld) {
  using Scalar = TypeParam;
  const std::size_t saved = get_block_cache_limit();
  for (const GruCase& c : {GruCase{9, 24, 40, 72}, GruCase{30, 1, 64, 128}, GruCase{5, 40, 33, 70, false}}) {
    SCOPED_TRACE(c.describe());
    const GruInputs<Scalar> in(make_gru_data(c));
    empty_block_cache();
    set_block_cache_limit(0);
    const GruRun<Scalar> fresh = gru_core_forward_backward(in);
    const GruRun<Scalar> fresh_inference = gru_core_forward(in, false);
    set_block_cache_limit(256 * kMiB);
    fill_cache_with_nan();
    const GruRun<Scalar> reused = gru_core_forward_backward(in);
    fill_cache_with_nan();
    const GruRun<Scalar> reused_inference = gru_core_forward(in, false);
    EXPECT_TRUE(all_equal("y (inference)", reused_inference.y, fresh_inference.y));
    EXPECT_TRUE(all_equal("y", reused.y, fresh.y));
    EXPECT_TRUE(all_equal("dx", reused.dx, fresh.dx));
    EXPECT_TRUE(all_equal("dh0", reused.dh0, fresh.dh0));
    EXPECT_TRUE(all_equal("dw_ih", reused.dw_ih, fresh.dw_ih));
    EXPECT_TRUE(all_equal("dw_hh", reused.dw_hh, fresh.dw_hh));
  }
  empty_block_cache();
  set_block_cache_limit(saved);
}

}  // namespace
}  // namespace lstm_ext::testing
