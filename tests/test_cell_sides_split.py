# SPDX-License-Identifier: MIT
"""A cell step of a small batch with large weights computes its input side (the products with ``weight_ih``)
and its recurrent side (with ``weight_hh``) as two parts, which run on two threads when there are two: the
forward's products and the backward's ``dx``/``dW_ih`` and ``dh0``/``dW_hh``. Which steps split depends on the
shape alone (at most 16 rows, at least 32768 weights on each side), so the bits must be those of one thread;
the values those of the float64 reference. The shapes here are just above and below the split's sizes.
"""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

import lstm_ext
from conftest import assert_close
from lstm_ext import reference_layers

SPLIT = [
    # (kind, batch, input, hidden): split from 512 * 64 = 32768 weights per side (LSTM), 384 * 96 (GRU)
    ("LSTMCell", 1, 128, 128),
    ("LSTMCell", 5, 64, 128),
    ("LSTMCell", 16, 128, 96),
    ("LSTMCell", 1, 130, 66),  # sizes that are not a multiple of the packet
    ("GRUCell", 1, 96, 128),
    ("GRUCell", 3, 128, 128),
]
UNSPLIT = [
    ("LSTMCell", 17, 128, 128),  # too many rows: one part (whose products Eigen may thread, which can move
    ("GRUCell", 1, 64, 128),     # the last bits); too few weights on the input side
]


def ids(cases):
    return [f"{k}-N{n}-I{i}-H{h}" for k, n, i, h in cases]


def step(cell, x, states, grads, accumulate) -> List[np.ndarray]:
    """Outputs, input gradients and weight gradients (copied) of a forward and backward."""
    if isinstance(cell, lstm_ext.LSTMCell):
        h1, c1 = cell(x, states)
        dx, (dh0, dc0) = cell.backward(*grads, accumulate=accumulate)
        out = [h1, c1, dx, dh0, dc0]
    else:
        h1 = cell(x, states[0])
        dx, dh0 = cell.backward(grads[0], accumulate=accumulate)
        out = [h1, dx, dh0]
    return out + [g.copy() for g in cell.grads.values()]


def data(rng, kind, batch, inp, hidden, dtype):
    x = rng.standard_normal((batch, inp)).astype(dtype)
    count = 2 if kind == "LSTMCell" else 1
    states = tuple(rng.standard_normal((batch, hidden)).astype(dtype) for _ in range(count))
    grads = tuple(rng.standard_normal((batch, hidden)).astype(dtype) for _ in range(count))
    return x, states, grads


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind, batch, inp, hidden", SPLIT, ids=ids(SPLIT))
def test_cell_step_bits_do_not_depend_on_the_thread_count(rng, restore_num_threads, kind, batch, inp, hidden,
                                                          dtype, bias, accumulate):
    x, states, grads = data(rng, kind, batch, inp, hidden, dtype)
    results = []
    for threads in (1, 2, 1):
        lstm_ext.set_num_threads(threads)
        cell = getattr(lstm_ext, kind)(inp, hidden, bias=bias, dtype=dtype, seed=3)
        if accumulate:
            for g in cell.grads.values():
                g[...] = 0.5
        results.append(step(cell, x, states, grads, accumulate))
    for got_1, got_2, again_1 in zip(*results):
        np.testing.assert_array_equal(got_2, got_1)
        np.testing.assert_array_equal(again_1, got_1)


@pytest.mark.parametrize("kind, batch, inp, hidden", SPLIT + UNSPLIT, ids=ids(SPLIT + UNSPLIT))
def test_cell_step_on_two_threads_matches_the_float64_reference(rng, restore_num_threads, kind, batch, inp, hidden):
    lstm_ext.set_num_threads(2)
    x, states, grads = data(rng, kind, batch, inp, hidden, np.float32)
    cell = getattr(lstm_ext, kind)(inp, hidden, dtype=np.float32, seed=3)
    got = step(cell, x, states, grads, accumulate=False)
    w = {k: v.astype(np.float64) for k, v in cell.state_dict().items()}
    x64 = x[None].astype(np.float64)
    s64 = [s.astype(np.float64) for s in states]
    g64 = [g.astype(np.float64) for g in grads]
    if kind == "LSTMCell":
        y, h_n, c_n, tape = reference_layers.lstm_layer_forward(
            x64, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"], s64[0], s64[1])
        back = reference_layers.lstm_layer_backward(tape, None, g64[0], g64[1])
        want = [h_n, c_n, back["dx"][0], back["dh0"], back["dc0"]]
    else:
        y, h_n, tape = reference_layers.gru_layer_forward(
            x64, w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"], s64[0])
        back = reference_layers.gru_layer_backward(tape, None, g64[0])
        want = [h_n, back["dx"][0], back["dh0"]]
    want += [back["dw_ih"], back["dw_hh"], back["db_ih"], back["db_hh"]]
    names = (["h1", "c1", "dx", "dh0", "dc0"] if kind == "LSTMCell" else ["h1", "dx", "dh0"]) + list(cell.grads)
    assert len(got) == len(want) == len(names)
    for name, value, expected in zip(names, got, want):
        assert_close(value, expected, np.float32, name)
