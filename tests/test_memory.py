# SPDX-License-Identifier: MIT
"""Leaks: thousands of forward and backward calls on every layer type (lengths, dropout, projection, cells,
streams, inference, rejected inputs) leave the process's resident memory and Python's traced allocations flat
after a warm-up.

Each call allocates and frees arrays of 10-100 KiB (outputs, tapes, gradients), so one leaked array per call
would grow the process by tens of MiB over the loop; the bound is 5 MiB. Resident memory comes from
/proc/self/statm (Linux); Python-side objects and NumPy buffers from tracemalloc.
"""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc

import lstm_ext
import numpy as np
import pytest
from conftest import SEED
from lstm_ext import _core

RSS_SLACK = 5 << 20  # bytes of resident growth allowed after the warm-up
TRACED_SLACK = 256 << 10  # bytes of traced (Python and NumPy) growth allowed after the warm-up

needs_proc = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm") or os.environ.get("LSTM_EXT_SANITIZED") == "1",
    # Under AddressSanitizer freed memory sits in its quarantine (hundreds of MiB), so resident memory grows by
    # design; leaks there are LeakSanitizer's job (.ci/cpp_tests.sh with SANITIZE=1).
    reason="needs /proc/self/statm, and a build without AddressSanitizer",
)


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _malloc_trim()


def resident_bytes() -> int:
    """Resident memory after handing free heap pages back to the OS: without that, a leak in a process whose heap
    holds free pages from earlier tests reuses those pages and does not show."""
    gc.collect()
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_growth(step, warmup: int, calls: int) -> int:
    """Resident growth over `calls` calls of `step()` after `warmup` calls."""
    for _ in range(warmup):
        step()
    gc.collect()
    before = resident_bytes()
    for _ in range(calls):
        step()
    gc.collect()
    return resident_bytes() - before


def traced_growth(step, warmup: int, calls: int) -> int:
    """Growth of what tracemalloc sees (Python objects and NumPy buffers) over `calls` calls after `warmup`."""
    tracemalloc.start()
    try:
        for _ in range(warmup):
            step()
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(calls):
            step()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before


@pytest.fixture(autouse=True)
def one_kernel_thread():
    """One kernel thread unless a test says otherwise: the allocations do not depend on it, and a loop of
    thousands of small calls with OpenMP products slows down by an order of magnitude when the machine is
    oversubscribed (each parallel region can wait a scheduler time slice for a descheduled worker)."""
    before = lstm_ext.get_num_threads()
    lstm_ext.set_num_threads(1)
    try:
        yield
    finally:
        lstm_ext.set_num_threads(before)


# ---- workloads: each returns a step() closure --------------------------------------------------------------


def lstm_step():
    rng = np.random.default_rng(SEED)
    layer = lstm_ext.LSTM(
        16,
        32,
        num_layers=2,
        bidirectional=True,
        proj_size=8,
        dropout=0.3,
        input_dropout=0.1,
        recurrent_dropout=0.1,
        seed=0,
    )
    x = rng.standard_normal((12, 6, 16)).astype(np.float32)
    hx = (
        rng.standard_normal((4, 6, 8)).astype(np.float32),
        rng.standard_normal((4, 6, 32)).astype(np.float32),
    )
    lengths = np.array([12, 3, 7, 1, 12, 9])
    dy = np.ones((12, 6, 16), np.float32)

    def step():
        layer(x, hx, lengths)
        layer.backward(dy, (hx[0], None), accumulate=True)

    return step


def lstm_batch_first_float64_step():
    rng = np.random.default_rng(SEED)
    layer = lstm_ext.LSTM(16, 32, batch_first=True, go_backwards=True, dtype=np.float64, seed=0)
    x = rng.standard_normal((6, 12, 16))[:, ::-1]  # non-contiguous: copied every call

    def step():
        y, _ = layer(x)
        layer.backward(y)

    return step


def gru_step():
    rng = np.random.default_rng(SEED)
    layer = lstm_ext.GRU(
        16,
        32,
        num_layers=2,
        bidirectional=True,
        dropout=0.3,
        input_dropout=0.1,
        recurrent_dropout=0.1,
        seed=0,
    )
    x = rng.standard_normal((12, 6, 16)).astype(np.float32)
    h0 = rng.standard_normal((4, 6, 32)).astype(np.float32)
    lengths = np.array([1, 12, 5, 12, 2, 8])
    dy = np.ones((12, 6, 64), np.float32)

    def step():
        layer(x, h0, lengths)
        layer.backward(dy, h0)

    return step


def gru_reset_before_unbatched_step():
    layer = lstm_ext.GRU(16, 32, reset_after=False, dtype=np.float64, seed=0)
    x = np.random.default_rng(SEED).standard_normal((20, 16))

    def step():
        y, h_n = layer(x)
        layer.backward(y, h_n)

    return step


def cells_step():
    rng = np.random.default_rng(SEED)
    lstm_cell = lstm_ext.LSTMCell(16, 32, seed=0)
    gru_cell = lstm_ext.GRUCell(16, 32, dtype=np.float64, seed=0)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    x64 = x.astype(np.float64)

    def step():
        h, c = lstm_cell(x)
        lstm_cell.backward(h, c)
        h = gru_cell(x64)
        gru_cell.backward(h)

    return step


def stream_and_inference_step():
    rng = np.random.default_rng(SEED)
    lstm = lstm_ext.LSTM(16, 32, seed=0).eval()
    gru = lstm_ext.GRU(16, 32, seed=0)
    stream = lstm_ext.Stateful(lstm)
    chunk = rng.standard_normal((5, 4, 16)).astype(np.float32)

    def step():
        stream(chunk)
        gru(chunk, training=False)

    return step


def rejected_inputs_step():
    """Calls that fail: in the Python checks, in the binding's checks, in the core's checks."""
    layer = lstm_ext.LSTM(16, 32, seed=0)
    x = np.zeros((5, 4, 16), np.float32)
    w = [np.zeros((128, 1), np.float32)]
    bad = [
        lambda: layer(np.zeros((5, 4, 15), np.float32)),
        lambda: layer(x, lengths=[9, 1, 1, 1]),
        lambda: layer(x, (np.zeros((1, 4, 32), np.float64), None)),
        lambda: layer.backward(np.zeros((5, 4, 31), np.float32)),
        lambda: _core.lstm_stack_forward(
            np.zeros((2, 1), np.float32),
            w,
            [np.zeros((128, 32), np.float32)],
            None,
            None,
            None,
            None,
            layers=1,
            directions=1,
            training=True,
            batch_sizes=np.array([1, 2]),
        ),
        lambda: _core.lstm_stack_forward(
            np.zeros((1, 1, 1), np.float32),
            w,
            [np.zeros((128, 31), np.float32)],
            None,
            None,
            None,
            None,
            layers=1,
            directions=1,
            training=True,
        ),
    ]

    def step():
        layer(x)
        for call in bad:
            try:
                call()
            except (ValueError, TypeError):
                pass
            else:
                raise AssertionError("a bad call was accepted")

    return step


WORKLOADS = {
    "lstm_stacked_bidirectional_projected_ragged_dropout": (lstm_step, 3000),
    "lstm_batch_first_go_backwards_float64": (lstm_batch_first_float64_step, 3000),
    "gru_stacked_bidirectional_ragged_dropout": (gru_step, 3000),
    "gru_reset_before_unbatched": (gru_reset_before_unbatched_step, 3000),
    "cells": (cells_step, 5000),
    "stream_and_inference": (stream_and_inference_step, 5000),
    "rejected_inputs": (rejected_inputs_step, 3000),
}


@needs_proc
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_thousands_of_calls_leave_resident_memory_flat(name):
    make, calls = WORKLOADS[name]
    growth = rss_growth(make(), warmup=300, calls=calls)
    assert growth < RSS_SLACK, f"{name}: resident memory grew by {growth / 2**20:.1f} MiB over {calls} calls"


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_calls_leave_no_python_objects_or_numpy_buffers_behind(name):
    make, _ = WORKLOADS[name]
    growth = traced_growth(make(), warmup=50, calls=300)
    assert growth < TRACED_SLACK, f"{name}: traced memory grew by {growth / 2**10:.0f} KiB over 300 calls"


@needs_proc
def test_calls_with_two_kernel_threads_leave_resident_memory_flat():
    lstm_ext.set_num_threads(2)
    growth = rss_growth(lstm_step(), warmup=300, calls=1500)
    assert growth < RSS_SLACK, f"resident memory grew by {growth / 2**20:.1f} MiB over 1500 calls"


@needs_proc
def test_the_leak_detector_sees_a_leak_of_one_small_array_per_call():
    kept = []
    step = lstm_step()

    def leaky():
        step()
        kept.append(np.ones(1024, np.float32))  # 4 KiB per call, what a leaked output would cost

    assert rss_growth(leaky, warmup=300, calls=3000) >= RSS_SLACK
    assert traced_growth(leaky, warmup=50, calls=300) >= TRACED_SLACK


@needs_proc
def test_repeated_out_of_memory_failures_leave_resident_memory_flat():
    # In a child with a capped address space (so the failing requests fail whatever the overcommit policy): a
    # forward whose cache or inner buffer would need 16 TiB fails with MemoryError, many times over, inside
    # NumPy (training: the cache) and inside the core (inference: its chunk of pre-activations, 512 rows x 4H,
    # 8 GiB at H = 2**20).
    code = textwrap.dedent("""
        import resource, numpy as np, lstm_ext
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (mapped + (3 << 30), mapped + (3 << 30)))
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * resource.getpagesize()
        layer = lstm_ext.LSTM(1, 2**20, proj_size=1, seed=0)
        x = np.ones((2**21, 2, 1), np.float32)
        def fail():
            for training in (True, False):
                try:
                    layer(x, training=training)
                except MemoryError:
                    pass
                else:
                    raise AssertionError("a 16 TiB forward succeeded")
        for _ in range(5):
            fail()
        before = rss()
        for _ in range(40):
            fail()
        print(rss() - before)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth = int(proc.stdout.split()[-1])
    # Each failing call first allocates 24 MiB of temporaries (the combined bias, 4 * 2**20 floats, and the zero
    # c0, 2 * 2**20 floats); glibc may keep one call's worth in its heap after freeing it (its mmap threshold
    # adapts to freed sizes), at some call or other. A leak would be 40 times that.
    temporaries = 24 << 20
    assert growth < RSS_SLACK + temporaries, (
        f"resident memory grew by {growth / 2**20:.1f} MiB over 40 failed forwards")
