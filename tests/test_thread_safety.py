# SPDX-License-Identifier: MIT
"""Thread safety: Python threads calling the kernels at once get the results of serial calls, bit for bit; the
kernels release the GIL; the kernel thread count changes results by rounding only.

What these tests pin as safe to share between threads:

- separate layers: anything (training forward, backward, dropout), from any number of threads at once;
- one layer in inference (``eval()``, or ``training=False`` per call): forward from any number of threads, each
  call with its own inputs and states;
- ``set_num_threads`` while kernels run elsewhere: results change by rounding only.

Not safe, and not tested: one layer in training mode from several threads. A training forward keeps its tape on
the layer for the next ``backward`` (and draws dropout masks from the layer's stream), so two threads would
differentiate each other's forwards; give each thread its own layer (``load_state_dict`` shares the weights).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import lstm_ext
import numpy as np
import pytest
from conftest import SEED, assert_close
from lstm_ext import _core

THREADS = 8


def run_in_threads(jobs):
    """Runs every job (a callable) in its own thread, all released at once by a barrier; returns the results
    in the jobs' order and re-raises the first exception."""
    barrier = threading.Barrier(len(jobs), timeout=120)

    def start(job):
        barrier.wait()
        return job()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(start, jobs))


def assert_bitwise_equal(got, want, what):
    assert len(got) == len(want), what
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}, result {k}"
        assert np.array_equal(a, b, equal_nan=True), f"{what}, result {k}: differs from the serial call"


# ---- workloads ---------------------------------------------------------------------------------------------
# Each workload builds its own layer and data from a seed and runs forward and backward a few times; big enough
# for the kernels' products to use several threads (T*N = 128 rows, widths of 32-64).

CONFIGS = [
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 12, "dropout": 0.3}),
    ("LSTM", {"input_dropout": 0.2, "recurrent_dropout": 0.2, "batch_first": True}),
    ("GRU", {}),
    ("GRU", {"num_layers": 2, "bidirectional": True, "dropout": 0.3}),
    ("GRU", {"reset_after": False, "go_backwards": True}),
    ("LSTMCell", {}),
    ("GRUCell", {}),
]


def workload_dtype(index: int):
    """float32 and float64 alternate, and swap for each next round of ``CONFIGS``."""
    return np.float32 if (index + index // len(CONFIGS)) % 2 else np.float64


def workload(index: int, repeats: int = 3):
    """Forward and backward of configuration ``CONFIGS[index % len(CONFIGS)]``; returns every output."""
    kind, options = CONFIGS[index % len(CONFIGS)]
    dtype = workload_dtype(index)
    rng = np.random.default_rng(SEED + index)
    layer = getattr(lstm_ext, kind)(24, 40, dtype=dtype, seed=index, **options)
    steps, batch = 8, 16
    results = []
    for repeat in range(repeats):
        layer.reseed_dropout(index)  # the same masks in the threaded and the serial run
        if kind.endswith("Cell"):
            x = rng.standard_normal((batch, 24)).astype(dtype)
            out = layer(x)
            h1 = out[0] if kind == "LSTMCell" else out
            back = layer.backward(np.ones_like(h1))
            results += [*(out if kind == "LSTMCell" else (out,)), back[0]]
            continue
        shape = (batch, steps, 24) if layer.batch_first else (steps, batch, 24)
        x = rng.standard_normal(shape).astype(dtype)
        lengths = rng.integers(1, steps + 1, size=batch) if repeat % 2 == 0 else None
        y, states = layer(x, lengths=lengths)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx, d_states = layer.backward(dy)
        results += [y, dx]
        results += list(states) if isinstance(states, tuple) else [states]
        results += list(d_states) if isinstance(d_states, tuple) else [d_states]
    results += [g.copy() for g in layer.grads.values()]
    return results


def test_threads_running_forward_and_backward_on_separate_layers_match_serial_calls_bit_for_bit():
    jobs = list(range(2 * THREADS))
    serial = [workload(j) for j in jobs]
    threaded = run_in_threads([lambda j=j: workload(j) for j in jobs])
    for j, (got, want) in enumerate(zip(threaded, serial)):
        assert_bitwise_equal(got, want, f"job {j} ({CONFIGS[j % len(CONFIGS)][0]})")


def test_threaded_results_do_not_depend_on_how_many_threads_run_at_once():
    one_at_a_time = run_in_threads([lambda: workload(1)])[0]
    crowded = run_in_threads([lambda: workload(1) for _ in range(THREADS)])
    for k, got in enumerate(crowded):
        assert_bitwise_equal(got, one_at_a_time, f"thread {k}")


# ---- one layer shared in inference -------------------------------------------------------------------------


def shared_inference_jobs(layer, rng, count: int, training_override: bool):
    """`count` closures calling the shared `layer` in inference on their own inputs (and states, lengths)."""
    dtype = layer.dtype
    steps = 9
    jobs = []
    is_lstm = isinstance(layer, lstm_ext.LSTM)
    k = layer.num_layers * (2 if layer.bidirectional else 1)
    for j in range(count):
        batch = 3 + j % 5
        x = rng.standard_normal((steps, batch, layer.input_size)).astype(dtype)
        h0 = rng.standard_normal((k, batch, layer.out_size)).astype(dtype)
        hx = (h0, rng.standard_normal((k, batch, layer.hidden_size)).astype(dtype)) if is_lstm else h0
        lengths = rng.integers(1, steps + 1, size=batch) if j % 2 else None

        def job(x=x, hx=hx, lengths=lengths):
            outputs = []
            for _ in range(3):
                if training_override:
                    y, states = layer(x, hx, lengths, training=False)
                else:
                    y, states = layer(x, hx, lengths)
                outputs += [y, *(states if is_lstm else (states,))]
            return outputs

        jobs.append(job)
    return jobs


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", ["eval", "training_false"])
def test_threads_sharing_one_layer_in_inference_match_serial_calls_bit_for_bit(kind, dtype, how):
    options = {"num_layers": 2, "bidirectional": True, "dropout": 0.5}
    if kind == "LSTM":
        options["proj_size"] = 20
    layer = getattr(lstm_ext, kind)(32, 48, dtype=dtype, seed=0, **options)
    if how == "eval":
        layer.eval()
    jobs = shared_inference_jobs(layer, np.random.default_rng(SEED), 2 * THREADS, how == "training_false")
    serial = [job() for job in jobs]
    threaded = run_in_threads(jobs)
    for j, (got, want) in enumerate(zip(threaded, serial)):
        assert_bitwise_equal(got, want, f"job {j}")
    assert layer.cache_nbytes == 0, "an inference forward keeps nothing on the shared layer"


def test_a_shared_inference_layer_keeps_its_weights_and_gradients_untouched_by_concurrent_calls():
    layer = lstm_ext.LSTM(16, 24, num_layers=2, dtype=np.float64, seed=0).eval()
    weights = layer.state_dict()
    grads = {k: v.copy() for k, v in layer.grads.items()}
    run_in_threads(shared_inference_jobs(layer, np.random.default_rng(SEED), THREADS, False))
    for name, value in layer.state_dict().items():
        assert np.array_equal(value, weights[name]), name
    for name, value in layer.grads.items():
        assert np.array_equal(value, grads[name]), name


def test_cells_shared_in_inference_match_serial_calls_bit_for_bit():
    rng = np.random.default_rng(SEED)
    lstm_cell = lstm_ext.LSTMCell(20, 36, dtype=np.float32, seed=0).eval()
    gru_cell = lstm_ext.GRUCell(20, 36, dtype=np.float32, seed=0).eval()
    inputs = [rng.standard_normal((7, 20)).astype(np.float32) for _ in range(2 * THREADS)]

    def job(x):
        h, c = lstm_cell(x)
        outputs = [h, c]
        for _ in range(20):  # a stream, step by step
            h, c = lstm_cell(x, (h, c))
            outputs += [h, c, gru_cell(x, h)]
        return outputs

    serial = [job(x) for x in inputs]
    threaded = run_in_threads([lambda x=x: job(x) for x in inputs])
    for j, (got, want) in enumerate(zip(threaded, serial)):
        assert_bitwise_equal(got, want, f"job {j}")


# ---- the GIL -----------------------------------------------------------------------------------------------
# Deterministic, no clocks: with a huge switch interval the interpreter never takes the GIL from a running thread,
# so a second thread, waiting for the GIL, runs while the first is inside a call only if that call releases the
# GIL. It is given a few calls' chance (the OS may not wake it before a fast call ends).


@contextlib.contextmanager
def no_forced_gil_switches():
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def another_thread_runs_during(call, attempts: int = 10) -> bool:
    """Whether a thread waiting for the GIL gets it while `call()` runs, within `attempts` calls."""
    go, ran = threading.Event(), threading.Event()

    def other():
        go.wait()
        ran.set()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        with no_forced_gil_switches():
            go.set()
            for _ in range(attempts):
                call()
                if ran.is_set():
                    break
            seen = ran.is_set()
    finally:
        go.set()
        thread.join()
    return seen


def busy_python_loop():
    total = 0
    for k in range(300_000):
        total += k
    return total


def sleep_briefly():
    threading.Event().wait(0.01)  # blocks in C with the GIL released


def test_the_gil_probe_tells_a_call_that_releases_the_gil_from_one_that_holds_it():
    assert another_thread_runs_during(sleep_briefly)
    assert not another_thread_runs_during(busy_python_loop, attempts=3)


def core_calls(kind: str, dtype):
    """Direct calls of the binding (no NumPy work around them that could release the GIL itself): inference
    forward, training forward and backward of a one-layer stack large enough to take a while."""
    rng = np.random.default_rng(SEED)
    steps, batch, inp, hidden = 64, 16, 96, 128
    gates = (4 if kind == "lstm" else 3) * hidden
    x = rng.standard_normal((steps, batch, inp)).astype(dtype)
    w_ih = [rng.uniform(-0.1, 0.1, (gates, inp)).astype(dtype)]
    w_hh = [rng.uniform(-0.1, 0.1, (gates, hidden)).astype(dtype)]
    if kind == "lstm":
        forward = _core.lstm_stack_forward
        args = (x, w_ih, w_hh, None, None, None, None)
    else:
        forward = _core.gru_stack_forward
        args = (x, w_ih, w_hh, None, None, None)
    options = {"layers": 1, "directions": 1}
    out = forward(*args, training=True, **options)
    y, cache = out[0], out[-1]
    dy = np.ones_like(y)
    if kind == "lstm":

        def backward():
            return _core.lstm_stack_backward(
                *args, **options, y=y, gates=cache[0], cells=cache[1], hidden=cache[2], dy=dy
            )
    else:

        def backward():
            return _core.gru_stack_backward(
                *args, **options, y=y, gates=cache[0], hidden_n=cache[1], hidden=cache[2], dy=dy
            )

    return {
        "inference forward": lambda: forward(*args, training=False, **options),
        "training forward": lambda: forward(*args, training=True, **options),
        "backward": backward,
    }


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_release_the_gil(kind, dtype):
    for name, call in core_calls(kind, dtype).items():
        assert another_thread_runs_during(call), f"{kind} {name} holds the GIL"


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_an_inference_forward_through_the_public_api_releases_the_gil(kind):
    # bias=False and time-major C-contiguous input: the Python side then does no NumPy work big enough for NumPy
    # to release the GIL itself, so only the kernel can let the other thread in.
    layer = getattr(lstm_ext, kind)(96, 128, bias=False, dtype=np.float32, seed=0).eval()
    x = np.random.default_rng(SEED).standard_normal((64, 16, 96)).astype(np.float32)
    assert another_thread_runs_during(lambda: layer(x))


# ---- kernel thread count -----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=[c[0] + str(i) for i, c in enumerate(CONFIGS)])
def test_one_and_two_kernel_threads_give_equal_results_up_to_rounding(index, restore_num_threads):
    results = []
    for n in (1, 2):
        lstm_ext.set_num_threads(n)
        results.append(workload(index))
    dtype = workload_dtype(index)
    for k, (one, two) in enumerate(zip(*results)):
        assert_close(two, one, dtype, f"result {k}")


def test_changing_the_thread_count_while_kernels_run_changes_results_by_rounding_only(restore_num_threads):
    jobs = list(range(4))
    expected = [workload(j) for j in jobs]
    stop = threading.Event()

    def toggle():
        n = 0
        while not stop.is_set():
            lstm_ext.set_num_threads(1 + n % 2)
            n += 1
            stop.wait(0.001)

    toggler = threading.Thread(target=toggle)
    toggler.start()
    try:
        got = run_in_threads([lambda j=j: workload(j) for j in jobs])
    finally:
        stop.set()
        toggler.join()
    for j in jobs:
        dtype = workload_dtype(j)
        for k, (a, b) in enumerate(zip(got[j], expected[j])):
            assert_close(a, b, dtype, f"job {j}, result {k}")
