# SPDX-License-Identifier: MIT
"""Variable-length batches: padded ``(T, N, F)`` arrays to the core's packed rows and back.

The packed layout is torch's ``PackedSequence``: sequences sorted by decreasing length (stable, so equal lengths
keep their order), step ``t`` holding the rows of the ``batch_sizes[t]`` sequences still running. The core then
computes nothing for padding. Packing and unpacking are one fancy-indexing copy each, no Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass(frozen=True)
class Packing:
    """Where each packed row comes from: ``padded[t_index[r], b_index[r]]``; ``order`` sorts the batch."""

    steps: int                # T of the padded arrays
    order: np.ndarray         # [N] batch index of sorted position i (longest first)
    batch_sizes: np.ndarray   # [T_max] int64, non-increasing, batch_sizes[0] == N
    t_index: np.ndarray       # [R]
    b_index: np.ndarray       # [R]

    @property
    def rows(self) -> int:
        return int(self.t_index.shape[0])

    def pack(self, padded: np.ndarray) -> np.ndarray:
        """``(T, N, F)`` -> ``(R, F)`` C-contiguous."""
        return padded[self.t_index, self.b_index]

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """``(R, F)`` -> ``(T, N, F)`` with zeros where sequences have ended."""
        out = np.zeros((self.steps, self.order.shape[0], packed.shape[-1]), dtype=packed.dtype)
        out[self.t_index, self.b_index] = packed
        return out

    def sort_states(self, states: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """``(K, N, F)`` in the caller's batch order -> the sorted order (a copy); None stays None."""
        return None if states is None else np.ascontiguousarray(states[:, self.order])

    def unsort_states(self, states: np.ndarray) -> np.ndarray:
        """``(K, N, F)`` in the sorted order -> the caller's batch order."""
        out = np.empty_like(states)
        out[:, self.order] = states
        return out


def check_lengths(lengths: Any, steps: int, batch: int) -> np.ndarray:
    """``lengths`` as an int64 array ``(N,)`` with ``1 <= lengths[b] <= T``; ValueError/TypeError otherwise."""
    array = np.asarray(lengths)
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {array.dtype.name}")
    if array.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},) (one length per sequence), got {array.shape}")
    low, high = int(array.min()), int(array.max())
    if low < 1 or high > steps:
        raise ValueError(f"lengths: expected values in [1, T={steps}], got min {low} and max {high}")
    return array.astype(np.int64)


def make_packing(lengths: np.ndarray, steps: int) -> Optional[Packing]:
    """The packing of checked ``lengths``; None when every sequence runs all ``steps`` (the dense path)."""
    if int(lengths.min()) == steps:
        return None
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    longest = int(sorted_lengths[0])
    batch_sizes = np.count_nonzero(sorted_lengths[None, :] > np.arange(longest)[:, None], axis=1).astype(np.int64)
    rows = int(batch_sizes.sum())
    starts = np.repeat(np.cumsum(batch_sizes) - batch_sizes, batch_sizes)
    t_index = np.repeat(np.arange(longest), batch_sizes)
    b_index = order[np.arange(rows) - starts]
    return Packing(steps, order, batch_sizes, t_index, b_index)
