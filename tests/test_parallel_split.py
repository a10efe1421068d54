# SPDX-License-Identifier: MIT
"""The kernels' thread split: with two threads a batch of at least 16 sequences runs as two slices, each thread
its own time loop, and the two directions of a bidirectional layer run on the two threads; a smaller batch of an
LSTM with at least 256 hidden units splits each step's units over the two threads. Whatever the split,
results must be those of the float64 reference, and those of one thread up to float rounding.

Batches here are large enough to be split (16 sequences and more, odd counts, ragged lengths so that a packed
slice has steps with no rows), and small enough for the reference to be quick.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pytest

import lstm_ext
from lstm_ext import reference_layers

CASES = [
    # (kind, batch, layers, bidirectional, proj, ragged, reset_after)
    ("lstm", 16, 1, False, 0, False, True),
    ("lstm", 37, 2, False, 0, True, True),
    ("lstm", 23, 1, True, 0, True, True),
    ("lstm", 19, 2, True, 3, True, True),
    ("lstm", 40, 1, False, 5, False, True),
    ("gru", 16, 1, False, 0, False, True),
    ("gru", 33, 2, True, 0, True, True),
    ("gru", 21, 1, False, 0, True, False),
    ("gru", 18, 1, True, 0, False, False),
]
IDS = [f"{k}-N{n}-L{l}{'-bidir' if b else ''}{f'-proj{p}' if p else ''}{'-ragged' if r else ''}"
       f"{'' if a else '-reset_before'}" for k, n, l, b, p, r, a in CASES]


def make_layer(kind: str, layers: int, bidirectional: bool, proj: int, reset_after: bool, dtype, **extra):
    if kind == "lstm":
        return lstm_ext.LSTM(5, 8, layers, bidirectional=bidirectional, proj_size=proj, dtype=dtype, seed=1, **extra)
    return lstm_ext.GRU(5, 8, layers, bidirectional=bidirectional, reset_after=reset_after, dtype=dtype, seed=1,
                        **extra)


def run(layer, kind: str, x, h0, c0, lengths, dy, dh_n, dc_n) -> List[np.ndarray]:
    """Every output and gradient of one forward + backward, as a list."""
    if kind == "lstm":
        y, (h_n, c_n) = layer(x, (h0, c0), lengths)
        dx, (dh0, dc0) = layer.backward(dy, (dh_n, dc_n))
        out = [y, h_n, c_n, dx, dh0, dc0]
    else:
        y, h_n = layer(x, h0, lengths)
        dx, dh0 = layer.backward(dy, dh_n)
        out = [y, h_n, dx, dh0]
    return out + [g.copy() for g in layer.grads.values()]


def inputs(rng, kind: str, batch: int, layers: int, bidirectional: bool, proj: int, ragged: bool, dtype):
    steps, directions = 7, 2 if bidirectional else 1
    out = proj or 8
    k = layers * directions
    arrays = {
        "x": rng.standard_normal((steps, batch, 5)),
        "h0": 0.5 * rng.standard_normal((k, batch, out)),
        "c0": 0.5 * rng.standard_normal((k, batch, 8)) if kind == "lstm" else None,
        "dy": rng.standard_normal((steps, batch, directions * out)),
        "dh_n": rng.standard_normal((k, batch, out)),
        "dc_n": rng.standard_normal((k, batch, 8)) if kind == "lstm" else None,
    }
    lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
    cast = {key: None if a is None else a.astype(dtype) for key, a in arrays.items()}
    return arrays, cast, lengths


@pytest.mark.parametrize(("kind", "batch", "layers", "bidirectional", "proj", "ragged", "reset_after"), CASES, ids=IDS)
def test_two_threads_match_the_float64_reference(rng, restore_num_threads, kind, batch, layers, bidirectional, proj,
                                                  ragged, reset_after):
    lstm_ext.set_num_threads(2)
    layer = make_layer(kind, layers, bidirectional, proj, reset_after, np.float64)
    arrays, cast, lengths = inputs(rng, kind, batch, layers, bidirectional, proj, ragged, np.float64)
    got = run(layer, kind, cast["x"], cast["h0"], cast["c0"], lengths, cast["dy"], cast["dh_n"], cast["dc_n"])

    params = layer.state_dict()
    options: Dict[str, object] = {"num_layers": layers, "bidirectional": bidirectional, "lengths": lengths}
    if kind == "lstm":
        options["proj_size"] = proj
    else:
        options["reset_after"] = reset_after
    y, h_n, c_n, tape = reference_layers.stack_forward(kind, params, arrays["x"], arrays["h0"], arrays["c0"],
                                                       **options)
    dx, dh0, dc0, grads = reference_layers.stack_backward(tape, arrays["dy"], arrays["dh_n"], arrays["dc_n"])
    want: List[Optional[np.ndarray]] = [y, h_n, c_n, dx, dh0, dc0] if kind == "lstm" else [y, h_n, dx, dh0]
    want += [grads[name] for name in layer.grads]
    names = (["y", "h_n", "c_n", "dx", "dh0", "dc0"] if kind == "lstm" else ["y", "h_n", "dx", "dh0"]) + list(layer.grads)
    for name, a, b in zip(names, got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("kind", "batch", "layers", "bidirectional", "proj", "ragged", "reset_after"), CASES, ids=IDS)
def test_one_and_two_threads_agree_to_rounding(rng, restore_num_threads, dtype, kind, batch, layers, bidirectional,
                                               proj, ragged, reset_after):
    _, cast, lengths = inputs(rng, kind, batch, layers, bidirectional, proj, ragged, dtype)
    results = []
    for threads in (1, 2):
        lstm_ext.set_num_threads(threads)
        layer = make_layer(kind, layers, bidirectional, proj, reset_after, dtype)
        results.append(run(layer, kind, cast["x"], cast["h0"], cast["c0"], lengths, cast["dy"], cast["dh_n"],
                           cast["dc_n"]))
    tol = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}[dtype]
    for one, two in zip(*results):
        np.testing.assert_allclose(two, one, **tol)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_variational_dropout_masks_are_the_same_whatever_the_thread_count(rng, restore_num_threads, kind):
    # The masks are drawn in Python, per sequence; each thread's slice must apply its own sequences' rows.
    _, cast, lengths = inputs(rng, kind, 29, 2, True, 0, True, np.float64)
    results = []
    for threads in (1, 2):
        lstm_ext.set_num_threads(threads)
        layer = make_layer(kind, 2, True, 0, True, np.float64, dropout=0.3, input_dropout=0.2,
                           recurrent_dropout=0.4)
        results.append(run(layer, kind, cast["x"], cast["h0"], cast["c0"], lengths, cast["dy"], cast["dh_n"],
                           cast["dc_n"]))
    for one, two in zip(*results):
        np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-13)


# The unit split: a batch too small for the batch split (fewer than 16 sequences) with at least 128 hidden units
# per thread runs each step's units on both threads, with a barrier per step. H = 264 gives two ranges whose
# boundary (128) is not the middle and a last range whose width (136) is not a multiple of the packet.
UNIT_CASES = [
    # (batch, ragged, hx, recurrent_dropout, training)
    (1, False, True, 0.0, True),
    (1, False, False, 0.0, False),
    (5, True, True, 0.0, True),
    (5, True, True, 0.0, False),
    (3, False, True, 0.3, True),
]
UNIT_IDS = [f"N{n}{'-ragged' if r else ''}{'' if h else '-no_hx'}{'-rec_dropout' if p else ''}"
            f"{'-train' if t else '-eval'}" for n, r, h, p, t in UNIT_CASES]


def unit_split_run(rng_seed: int, threads: int, dtype, batch: int, ragged: bool, hx: bool, recurrent_dropout: float,
                   training: bool):
    """An LSTM(7, 264) forward (and backward when training) on `threads` threads; every result as a list."""
    rng = np.random.default_rng(rng_seed)
    steps, hidden = 6, 264
    lstm_ext.set_num_threads(threads)
    layer = lstm_ext.LSTM(7, hidden, dtype=dtype, seed=2, recurrent_dropout=recurrent_dropout)
    layer.train(training)
    x = rng.standard_normal((steps, batch, 7)).astype(dtype)
    states = (0.5 * rng.standard_normal((1, batch, hidden)).astype(dtype),
              0.5 * rng.standard_normal((1, batch, hidden)).astype(dtype)) if hx else None
    lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
    y, (h_n, c_n) = layer(x, states, lengths)
    out = [y, h_n, c_n]
    if training:
        dx, (dh0, dc0) = layer.backward(rng.standard_normal(y.shape).astype(dtype))
        out += [dx, dh0, dc0] + [g.copy() for g in layer.grads.values()]
    return layer, x, states, lengths, out


# Dropout masks come from the layer's own stream: that case is compared across thread counts only (below).
@pytest.mark.parametrize(("batch", "ragged", "hx", "recurrent_dropout", "training"),
                         [c for c in UNIT_CASES if c[3] == 0], ids=[i for c, i in zip(UNIT_CASES, UNIT_IDS) if c[3] == 0])
def test_unit_split_matches_the_float64_reference(restore_num_threads, batch, ragged, hx, recurrent_dropout,
                                                  training):
    layer, x, states, lengths, got = unit_split_run(11, 2, np.float64, batch, ragged, hx, 0.0, training)
    h0, c0 = states if states is not None else (None, None)
    y, h_n, c_n, _ = reference_layers.stack_forward("lstm", layer.state_dict(), x, h0, c0, lengths=lengths)
    for name, a, b in zip(["y", "h_n", "c_n"], got[:3], [y, h_n, c_n]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("batch", "ragged", "hx", "recurrent_dropout", "training"), UNIT_CASES, ids=UNIT_IDS)
def test_unit_split_agrees_with_one_thread_to_rounding(restore_num_threads, dtype, batch, ragged, hx,
                                                       recurrent_dropout, training):
    one = unit_split_run(11, 1, dtype, batch, ragged, hx, recurrent_dropout, training)[-1]
    two = unit_split_run(11, 2, dtype, batch, ragged, hx, recurrent_dropout, training)[-1]
    tol = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}[dtype]
    for a, b in zip(two, one):
        np.testing.assert_allclose(a, b, **tol)


# -- the projection ahead: a time loop on one thread (fewer than 16 sequences, fewer than 256 units) has the second
# thread project chunks of steps ahead of it (cpp/src/parallel_internal.h, run_ahead). The chunks are 16 rows,
# so T = 67 at N = 1 makes 5 chunks with a last one of 3 rows; N = 5 makes chunks of 3 steps.
AHEAD_CASES = [
    # (batch, ragged, go_backwards, proj, input_dropout, training)
    (1, False, False, 0, 0.0, False),
    (1, False, False, 0, 0.0, True),
    (5, True, False, 0, 0.0, True),
    (3, False, True, 0, 0.0, False),
    (2, True, True, 4, 0.0, True),
    (4, False, False, 0, 0.3, True),
]
AHEAD_IDS = [f"N{n}{'-ragged' if r else ''}{'-backwards' if b else ''}{f'-proj{p}' if p else ''}"
             f"{'-dropout' if d else ''}-{'train' if t else 'infer'}" for n, r, b, p, d, t in AHEAD_CASES]


def ahead_run(threads: int, dtype, batch: int, ragged: bool, go_backwards: bool, proj: int, input_dropout: float,
              training: bool):
    lstm_ext.set_num_threads(threads)
    rng = np.random.default_rng(5)
    steps, hidden = 67, 24
    layer = lstm_ext.LSTM(6, hidden, proj_size=proj, go_backwards=go_backwards, input_dropout=input_dropout,
                          dtype=dtype, seed=3)
    x = rng.standard_normal((steps, batch, 6)).astype(dtype)
    out = proj or hidden
    states = (0.5 * rng.standard_normal((1, batch, out)).astype(dtype),
              0.5 * rng.standard_normal((1, batch, hidden)).astype(dtype))
    lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
    if lengths is not None:
        lengths[0] = steps
    y, (h_n, c_n) = layer(x, states, lengths, training=training)
    got = [y, h_n, c_n]
    if training:
        dx, (dh0, dc0) = layer.backward(rng.standard_normal(y.shape).astype(dtype))
        got += [dx, dh0, dc0] + [g.copy() for g in layer.grads.values()]
    return layer, x, states, lengths, got


@pytest.mark.parametrize(("batch", "ragged", "go_backwards", "proj", "input_dropout", "training"),
                         [c for c in AHEAD_CASES if c[4] == 0], ids=[i for c, i in zip(AHEAD_CASES, AHEAD_IDS) if c[4] == 0])
def test_projection_ahead_matches_the_float64_reference(restore_num_threads, batch, ragged, go_backwards, proj,
                                                        input_dropout, training):
    layer, x, (h0, c0), lengths, got = ahead_run(2, np.float64, batch, ragged, go_backwards, proj, 0.0, training)
    y, h_n, c_n, _ = reference_layers.stack_forward("lstm", layer.state_dict(), x, h0, c0, lengths=lengths,
                                                    proj_size=proj, go_backwards=go_backwards)
    for name, a, b in zip(["y", "h_n", "c_n"], got[:3], [y, h_n, c_n]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize(("batch", "ragged", "go_backwards", "proj", "input_dropout", "training"), AHEAD_CASES,
                         ids=AHEAD_IDS)
def test_projection_ahead_gives_the_bits_of_one_thread(restore_num_threads, batch, ragged, go_backwards, proj,
                                                       input_dropout, training):
    # float32 on the native kernel: its rows do not depend on the rows computed with them, so projecting in
    # chunks on another thread changes no bit (dropout masks come from the layer's stream, not the threads).
    assert lstm_ext.get_gemm_backend() == "native"
    one = ahead_run(1, np.float32, batch, ragged, go_backwards, proj, input_dropout, training)[-1]
    for _ in range(3):  # the two threads race differently from call to call
        two = ahead_run(2, np.float32, batch, ragged, go_backwards, proj, input_dropout, training)[-1]
        for k, (a, b) in enumerate(zip(two, one)):
            np.testing.assert_array_equal(a, b, err_msg=f"result {k}")


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize(("batch", "ragged", "go_backwards", "training"),
                         [(1, False, False, True), (5, True, False, False), (3, True, True, True)],
                         ids=["N1-train", "N5-ragged-infer", "N3-ragged-backwards-train"])
def test_gru_projection_ahead_gives_the_bits_of_one_thread_and_the_reference(restore_num_threads, reset_after, batch,
                                                                             ragged, go_backwards, training):
    def gru_run(threads, dtype):
        lstm_ext.set_num_threads(threads)
        rng = np.random.default_rng(6)
        steps = 67
        layer = lstm_ext.GRU(6, 24, reset_after=reset_after, go_backwards=go_backwards, dtype=dtype, seed=4)
        x = rng.standard_normal((steps, batch, 6)).astype(dtype)
        h0 = (0.5 * rng.standard_normal((1, batch, 24))).astype(dtype)
        lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
        if lengths is not None:
            lengths[0] = steps
        y, h_n = layer(x, h0, lengths, training=training)
        got = [y, h_n]
        if training:
            dx, dh0 = layer.backward(rng.standard_normal(y.shape).astype(dtype))
            got += [dx, dh0] + [g.copy() for g in layer.grads.values()]
        return layer, x, h0, lengths, got

    one = gru_run(1, np.float32)[-1]
    for _ in range(3):
        for k, (a, b) in enumerate(zip(gru_run(2, np.float32)[-1], one)):
            np.testing.assert_array_equal(a, b, err_msg=f"result {k}")
    layer, x, h0, lengths, got = gru_run(2, np.float64)
    y, h_n, _, _ = reference_layers.stack_forward("gru", layer.state_dict(), x, h0, lengths=lengths,
                                                  reset_after=reset_after, go_backwards=go_backwards)
    np.testing.assert_allclose(got[0], y, rtol=1e-10, atol=1e-12, err_msg="y")
    np.testing.assert_allclose(got[1], h_n, rtol=1e-10, atol=1e-12, err_msg="h_n")


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru-reset-before"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("training", [False, True], ids=["infer", "train"])
def test_chunks_projected_on_either_thread_give_the_bits_of_one_thread(restore_num_threads, kind, batch, training):
    # With the projection ahead, the helper projects chunks on w_ih packed by itself and the time loop's thread
    # projects those the helper has not started on w_ih as it is; both must give the bits of one thread's single
    # GEMM. An input of 20 (more than 8) runs the GEMM kernel, not the thin products; T = 97 at N = 1 leaves a
    # last chunk of one row.
    assert lstm_ext.get_gemm_backend() == "native"
    rng = np.random.default_rng(11)
    x = rng.standard_normal((97, batch, 20), dtype=np.float32)
    dy = rng.standard_normal((97, batch, 40), dtype=np.float32)

    def run(threads: int) -> List[np.ndarray]:
        lstm_ext.set_num_threads(threads)
        if kind == "lstm":
            layer = lstm_ext.LSTM(20, 40, seed=2)
        else:
            layer = lstm_ext.GRU(20, 40, reset_after=(kind == "gru"), seed=2)
        y, finals = layer(x, training=training)
        got = [y] + (list(finals) if isinstance(finals, tuple) else [finals])
        if training:
            dx, d_states = layer.backward(dy)
            got += [dx] + (list(d_states) if isinstance(d_states, tuple) else [d_states])
            got += [g.copy() for g in layer.grads.values()]
        return got

    one = run(1)
    for _ in range(5):  # the two threads race differently from call to call
        for k, (a, b) in enumerate(zip(run(2), one)):
            np.testing.assert_array_equal(a, b, err_msg=f"result {k}")
