# SPDX-License-Identifier: MIT
"""Memory and threads: C-contiguous inputs are not copied, other layouts give the same results, the
thread count changes nothing beyond rounding, and Python threads calling the kernels concurrently get the
same results as serial calls."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import lstm_ext
import numpy as np
import pytest
from conftest import assert_close


def peak_traced_bytes(fn) -> int:
    """Peak bytes allocated through Python's and NumPy's allocators while `fn()` runs (NumPy reports its array
    buffers to tracemalloc), over what was allocated before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


# ---- copies ------------------------------------------------------------------------------------------------
# The input is made large (I big) and the outputs small (H=1), so a copy of x stands out of the measurement.


def test_the_copy_detector_sees_a_copy_of_the_input():
    x = np.ones((8, 16, 2048))
    assert peak_traced_bytes(lambda: np.ascontiguousarray(x[:, ::2]).sum()) >= x.nbytes // 2
    assert peak_traced_bytes(lambda: x.copy()) >= x.nbytes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_c_contiguous_input_is_not_copied_by_an_inference_forward(rng, dtype):
    layer = lstm_ext.LSTM(2048, 1, dtype=dtype, seed=0).eval()
    x = rng.standard_normal((8, 16, 2048)).astype(dtype)
    hx = (np.zeros((1, 16, 1), dtype=dtype), np.zeros((1, 16, 1), dtype=dtype))
    layer(x, hx)  # warm up: first-call allocations are not the point
    assert peak_traced_bytes(lambda: layer(x, hx)) < x.nbytes // 4


def test_an_unbatched_c_contiguous_input_is_not_copied_by_an_inference_forward(rng):
    layer = lstm_ext.LSTM(4096, 1, dtype=np.float64, seed=0).eval()
    x = rng.standard_normal((64, 4096))
    layer(x)
    assert peak_traced_bytes(lambda: layer(x)) < x.nbytes // 4


def test_a_non_contiguous_input_is_copied_as_documented(rng):
    layer = lstm_ext.LSTM(2048, 1, dtype=np.float64, seed=0).eval()
    x = rng.standard_normal((8, 32, 2048))[:, ::2]
    assert not x.flags.c_contiguous
    assert peak_traced_bytes(lambda: layer(x)) >= x.nbytes


def strided_and_fortran_cases(rng, steps=5, batch=3, inp=4, hidden=6):
    """Pairs (non-contiguous array, C-contiguous copy) for x, h0, c0, dy and dhx."""
    x = rng.standard_normal((steps, 2 * batch, inp))[:, ::2]
    h0 = np.asfortranarray(rng.standard_normal((1, batch, hidden)))
    c0 = rng.standard_normal((1, 2 * batch, hidden))[:, 1::2]
    dy = np.asfortranarray(rng.standard_normal((steps, batch, hidden)))
    dh_n = rng.standard_normal((1, batch, 2 * hidden))[:, :, ::2]
    dc_n = rng.standard_normal((1, batch, hidden))[:, ::-1]
    return [(a, np.ascontiguousarray(a)) for a in (x, h0, c0, dy, dh_n, dc_n)]


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_non_contiguous_inputs_give_the_same_results_as_contiguous_copies(rng, batch_first):
    cases = strided_and_fortran_cases(rng)
    (x, x_c), (h0, h0_c), (c0, c0_c), (dy, dy_c), (dh_n, dh_n_c), (dc_n, dc_n_c) = cases
    assert not dy.flags.c_contiguous and dy.flags.f_contiguous
    if batch_first:
        x, x_c = x.swapaxes(0, 1), np.ascontiguousarray(x.swapaxes(0, 1))
        dy, dy_c = np.asfortranarray(dy.swapaxes(0, 1)), np.ascontiguousarray(dy.swapaxes(0, 1))
    layer = lstm_ext.LSTM(4, 6, batch_first=batch_first, dtype=np.float64, seed=0)

    y, (h_n, c_n) = layer(x, (h0, c0))
    dx, (dh0, dc0) = layer.backward(dy, (dh_n, dc_n))
    grads = {k: v.copy() for k, v in layer.grads.items()}
    y_c, (h_n_c, c_n_c) = layer(x_c, (h0_c, c0_c))
    dx_c, (dh0_c, dc0_c) = layer.backward(dy_c, (dh_n_c, dc_n_c))

    for got, want in [(y, y_c), (h_n, h_n_c), (c_n, c_n_c), (dx, dx_c), (dh0, dh0_c), (dc0, dc0_c)]:
        assert got.shape == want.shape
        assert_close(got, want, np.float64)
    for name, value in layer.grads.items():
        assert_close(grads[name], value, np.float64, name)


def test_a_fortran_ordered_cell_input_gives_the_same_result_as_its_contiguous_copy(rng):
    cell = lstm_ext.LSTMCell(4, 6, dtype=np.float64, seed=0)
    x = np.asfortranarray(rng.standard_normal((3, 4)))
    h0 = rng.standard_normal((3, 12))[:, ::2]
    assert_close(cell(x, (h0, h0))[0], cell(np.ascontiguousarray(x), (h0.copy(), h0.copy()))[0], np.float64)


def test_changing_x_after_a_training_forward_does_not_change_its_backward(rng):
    layer = lstm_ext.LSTM(4, 6, dtype=np.float64, seed=0)
    x = rng.standard_normal((5, 3, 4))
    dy = rng.standard_normal((5, 3, 6))
    layer(x.copy())
    expected_dx, _ = layer.backward(dy)
    expected = {k: v.copy() for k, v in layer.grads.items()}
    layer(x)
    x[...] = 0.0
    dx, _ = layer.backward(dy)
    assert_close(dx, expected_dx, np.float64, "dx")
    for name, value in layer.grads.items():
        assert_close(value, expected[name], np.float64, name)


# ---- kernel threads ----------------------------------------------------------------------------------------


def test_get_and_set_num_threads_round_trip(restore_num_threads):
    for n in (1, 2, 3, 1):
        lstm_ext.set_num_threads(n)
        assert lstm_ext.get_num_threads() == n


def test_the_default_thread_count_is_the_cpus_this_process_may_use():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    code = "import os, lstm_ext; print(lstm_ext.get_num_threads(), len(os.sched_getaffinity(0)))"
    if not hasattr(os, "sched_getaffinity"):
        code = "import os, lstm_ext; print(lstm_ext.get_num_threads(), os.cpu_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    got, cpus = map(int, out.stdout.split())
    assert got == cpus >= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_and_two_threads_give_equal_results_up_to_rounding(rng, dtype, restore_num_threads):
    shape = (9, 48, 40, 64)  # large enough for the kernels to split work
    steps, batch, inp, hidden = shape
    layer = lstm_ext.LSTM(inp, hidden, dtype=dtype, seed=0)
    x = rng.standard_normal((steps, batch, inp)).astype(dtype)
    dy = rng.standard_normal((steps, batch, hidden)).astype(dtype)
    results = []
    for n in (1, 2):
        lstm_ext.set_num_threads(n)
        y, (h_n, c_n) = layer(x)
        dx, (dh0, dc0) = layer.backward(dy)
        results.append([y, h_n, c_n, dx, dh0, dc0] + [g.copy() for g in layer.grads.values()])
    for one, two in zip(*results):
        assert_close(two, one, dtype)


def run_layer(seed: int, rng_seed: int, repeats: int = 3):
    """Forward and backward of a fresh layer, several times; returns the last results."""
    rng = np.random.default_rng(rng_seed)
    layer = lstm_ext.LSTM(16, 32, dtype=np.float64, seed=seed)
    x = rng.standard_normal((12, 8, 16))
    dy = rng.standard_normal((12, 8, 32))
    for _ in range(repeats):
        y, (h_n, c_n) = layer(x)
        dx, (dh0, dc0) = layer.backward(dy)
    return [y, h_n, c_n, dx, dh0, dc0] + [g.copy() for g in layer.grads.values()]


def test_concurrent_python_threads_on_separate_layers_equal_serial_calls():
    jobs = [(seed, 100 + seed) for seed in range(8)]
    serial = [run_layer(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda job: run_layer(*job), jobs))
    for k, (one, other) in enumerate(zip(serial, threaded)):
        for a, b in zip(one, other):
            assert_close(b, a, np.float64, f"job {k}")
