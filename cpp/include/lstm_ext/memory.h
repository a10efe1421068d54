// SPDX-License-Identifier: MIT
// Large buffers (the kernels' workspaces and, through the bindings, their output arrays) come from a cache of
// blocks kept between calls. A fresh mapping per call is paid for in page faults on first touch: at
// (T, N, I, H) = (50, 128, 1024, 1024) about 40 000 of them per training step, 6-8% of its time, and 15% of
// an inference forward at (100, 32, 256, 256). The cache is the one piece of global state besides the thread
// count and the GEMM backend; like an allocator, it never changes a result.
#pragma once

#include <cstddef>

namespace lstm_ext {

// Blocks from this many bytes go through the cache; smaller ones come from the heap, which keeps them.
inline constexpr std::size_t kCachedBlockMin = std::size_t(64) << 10;

// A block of at least `bytes` bytes (0: nullptr), 64-byte aligned, contents unspecified: a cached block of
// a fitting size (at most a quarter larger) when there is one, the smallest of those the calling thread took
// before if any (its lines may still be in that core's cache), else a new one (from 4 MB, 2 MB aligned and
// offered to the kernel as transparent huge pages). std::bad_alloc when the system has none.
void* allocate_block(std::size_t bytes);

// Gives back a block from allocate_block (nullptr: no-op). It is kept for reuse while the cache stays within
// its limit; the blocks kept longest are returned to the system first.
void free_block(void* block) noexcept;

// The most bytes the cache keeps (default: 1 GiB or an eighth of the machine's memory, whichever is less;
// 0 keeps nothing). Lowering it returns blocks to the system at once.
void set_block_cache_limit(std::size_t bytes);
std::size_t get_block_cache_limit();

// Bytes of free blocks the cache holds now.
std::size_t block_cache_bytes();

// Returns every cached block to the system (blocks in use are not touched).
void empty_block_cache();

}  // namespace lstm_ext
