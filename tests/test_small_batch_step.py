# SPDX-License-Identifier: MIT
"""Batches of at most 8 sequences run each float32 LSTM step, and each GRU step with the reset gate after the
product, fused (the recurrent product and the gate math in registers, cpp/src/fused_step_internal.h): forward
and backward must match the float64 reference to float32 rounding, with hidden sizes that end in a partial
block of units, a projection, variable lengths, the reverse direction and given or absent initial states; and one
thread must agree with two. (With dropout masks, test_dropout.py checks small float32 batches against the
reference given the drawn masks.)"""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from lstm_ext import reference_layers

CASES = [
    # (batch, hidden, proj, bidirectional, ragged, hx)
    (1, 17, 0, False, False, True),
    (1, 64, 0, True, False, False),
    (2, 33, 0, False, True, True),
    (3, 20, 7, False, False, True),
    (5, 48, 0, True, True, True),
    (8, 40, 9, True, True, False),
]
IDS = [f"N{n}-H{h}{f'-proj{p}' if p else ''}{'-bidir' if b else ''}{'-ragged' if r else ''}{'' if x else '-no_hx'}"
       for n, h, p, b, r, x in CASES]


def run_case(threads: int, batch: int, hidden: int, proj: int, bidirectional: bool, ragged: bool, hx: bool):
    rng = np.random.default_rng(5)
    steps, inputs, directions = 9, 6, 2 if bidirectional else 1
    lstm_ext.set_num_threads(threads)
    layer = lstm_ext.LSTM(inputs, hidden, proj_size=proj, bidirectional=bidirectional, dtype=np.float32, seed=3)
    out = proj or hidden
    x = rng.standard_normal((steps, batch, inputs))
    h0 = 0.5 * rng.standard_normal((directions, batch, out)) if hx else None
    c0 = 0.5 * rng.standard_normal((directions, batch, hidden)) if hx else None
    lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
    dy = rng.standard_normal((steps, batch, directions * out))
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    y, (h_n, c_n) = layer(f32(x), None if h0 is None else (f32(h0), f32(c0)), lengths)
    dx, (dh0, dc0) = layer.backward(f32(dy))
    got = {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx, "dh0": dh0, "dc0": dc0}
    got.update({name: g.copy() for name, g in layer.grads.items()})
    return layer, (x, h0, c0, lengths, dy), got


def assert_matches_the_reference(kind: str, layer, got, x, h0, c0, lengths, dy, **options) -> None:
    """Every result in `got` against the float64 reference layer on the same (float64-cast) weights."""
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    y, h_n, c_n, tape = reference_layers.stack_forward(kind, params, x, h0, c0, lengths=lengths, **options)
    dx, dh0, dc0, grads = reference_layers.stack_backward(tape, dy, None, None)
    want = {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx, "dh0": dh0, "dc0": dc0, **grads}
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], rtol=2e-4, atol=2e-5, err_msg=name)


def assert_threads_agree(one, two) -> None:
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=2e-5, atol=2e-6, err_msg=name)


@pytest.mark.parametrize(("batch", "hidden", "proj", "bidirectional", "ragged", "hx"), CASES, ids=IDS)
def test_small_float32_batches_match_the_float64_reference(restore_num_threads, batch, hidden, proj, bidirectional,
                                                           ragged, hx):
    layer, (x, h0, c0, lengths, dy), got = run_case(1, batch, hidden, proj, bidirectional, ragged, hx)
    assert_matches_the_reference("lstm", layer, got, x, h0, c0, lengths, dy, proj_size=proj,
                                 bidirectional=bidirectional)


@pytest.mark.parametrize(("batch", "hidden", "proj", "bidirectional", "ragged", "hx"), CASES, ids=IDS)
def test_small_float32_batches_agree_on_one_and_two_threads(restore_num_threads, batch, hidden, proj,
                                                            bidirectional, ragged, hx):
    assert_threads_agree(run_case(1, batch, hidden, proj, bidirectional, ragged, hx)[2],
                         run_case(2, batch, hidden, proj, bidirectional, ragged, hx)[2])


GRU_CASES = [
    # (batch, hidden, bidirectional, ragged, hx, bias)
    (1, 17, False, False, True, True),
    (1, 64, True, False, False, True),
    (3, 33, False, True, True, False),
    (8, 40, True, True, True, True),
]
GRU_IDS = [f"N{n}-H{h}{'-bidir' if b else ''}{'-ragged' if r else ''}{'' if x else '-no_hx'}{'' if bias else '-no_bias'}"
           for n, h, b, r, x, bias in GRU_CASES]


def run_gru(threads: int, batch: int, hidden: int, bidirectional: bool, ragged: bool, hx: bool, bias: bool):
    rng = np.random.default_rng(6)
    steps, inputs, directions = 9, 6, 2 if bidirectional else 1
    lstm_ext.set_num_threads(threads)
    layer = lstm_ext.GRU(inputs, hidden, bidirectional=bidirectional, bias=bias, dtype=np.float32, seed=4)
    x = rng.standard_normal((steps, batch, inputs))
    h0 = 0.5 * rng.standard_normal((directions, batch, hidden)) if hx else None
    lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
    dy = rng.standard_normal((steps, batch, directions * hidden))
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    y, h_n = layer(f32(x), f32(h0), lengths)
    dx, dh0 = layer.backward(f32(dy))
    got = {"y": y, "h_n": h_n, "dx": dx, "dh0": dh0}
    got.update({name: g.copy() for name, g in layer.grads.items()})
    return layer, (x, h0, lengths, dy), got


@pytest.mark.parametrize(("batch", "hidden", "bidirectional", "ragged", "hx", "bias"), GRU_CASES, ids=GRU_IDS)
def test_small_float32_gru_batches_match_the_float64_reference(restore_num_threads, batch, hidden, bidirectional,
                                                               ragged, hx, bias):
    layer, (x, h0, lengths, dy), got = run_gru(1, batch, hidden, bidirectional, ragged, hx, bias)
    assert_matches_the_reference("gru", layer, got, x, h0, None, lengths, dy, bidirectional=bidirectional)


@pytest.mark.parametrize(("batch", "hidden", "bidirectional", "ragged", "hx", "bias"), GRU_CASES, ids=GRU_IDS)
def test_small_float32_gru_batches_agree_on_one_and_two_threads(restore_num_threads, batch, hidden, bidirectional,
                                                                ragged, hx, bias):
    assert_threads_agree(run_gru(1, batch, hidden, bidirectional, ragged, hx, bias)[2],
                         run_gru(2, batch, hidden, bidirectional, ragged, hx, bias)[2])

