# SPDX-License-Identifier: MIT
"""Streaming: ``lstm_ext.Stateful`` fed a long sequence chunk by chunk equals one call on the whole sequence,
and cells driven step by step from Python equal the full layer.

Why float tolerance and not bitwise equality: each call projects its input with one GEMM over all of its
``T_chunk * N`` rows, and Eigen's product picks its kernel (matrix-vector for one row, coefficient-based for
tiny products, blocked GEMM otherwise) and its blocking from those sizes, so a row's rounding depends on how
many rows share the call. A one-step chunk, or a cell step, is therefore not bitwise the one-call result in
general (measured: differences of a few ulp, ~1e-16 in float64 and ~1e-7 in float32, for most shapes); the
table's float tolerance is the strongest claim that holds. A call on the same arrays as before is bitwise the
same, and that is asserted where it applies (a single whole chunk, ``reset``).
"""

from __future__ import annotations

import re

import lstm_ext
import numpy as np
import pytest
from conftest import assert_close

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
LAYERS = {  # two layers each; the LSTM with a projection (h and c of different widths)
    "lstm-proj-L2": lambda **kw: lstm_ext.LSTM(3, 6, num_layers=2, proj_size=4, **kw),
    "gru-L2": lambda **kw: lstm_ext.GRU(3, 5, num_layers=2, **kw),
}
STEPS = 11
SPLITS = {  # chunk lengths summing to STEPS
    "whole": [11],
    "ones": [1] * 11,
    "uneven": [4, 1, 6],
    "two-nine": [2, 9],
    "mixed": [1, 3, 1, 1, 5],
}
LAYOUTS = ["time_major", "batch_first", "unbatched"]


def finals(hx):
    """The final states as a list: ``[h, c]`` for an LSTM, ``[h]`` for a GRU."""
    return list(hx) if isinstance(hx, tuple) else [hx]


def random_hx(rng, layer, layout, batch, dtype):
    """Random initial states in the layer's ``hx`` form for `layout`."""
    widths = [layer.out_size] + ([layer.hidden_size] if isinstance(layer, lstm_ext.LSTM) else [])
    shape = (layer.num_layers,) if layout == "unbatched" else (layer.num_layers, batch)
    states = [rng.standard_normal(shape + (w,)).astype(dtype) for w in widths]
    return tuple(states) if isinstance(layer, lstm_ext.LSTM) else states[0]


def random_x(rng, layout, batch, dtype, steps=STEPS, inp=3):
    shape = {"time_major": (steps, batch, inp), "batch_first": (batch, steps, inp), "unbatched": (steps, inp)}
    return rng.standard_normal(shape[layout]).astype(dtype)


def chunks(x, split, time_axis):
    bounds = np.cumsum([0, *split])
    return [np.take(x, np.arange(a, b), axis=time_axis) for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("which", list(LAYERS))
def test_chunks_give_the_output_and_final_state_of_one_call(rng, which, layout, split, dtype, with_hx):
    batch = 3
    layer = LAYERS[which](batch_first=layout == "batch_first", dtype=dtype, seed=1)
    x = random_x(rng, layout, batch, dtype)
    hx = random_hx(rng, layer, layout, batch, dtype) if with_hx else None
    y, hx_n = layer(x, hx)

    stream = lstm_ext.Stateful(layer, hx)
    time_axis = 1 if layout == "batch_first" else 0
    ys = [stream(chunk) for chunk in chunks(x, SPLITS[split], time_axis)]
    for chunk_y, length in zip(ys, SPLITS[split]):
        assert chunk_y.shape[time_axis] == length
    y_stream = np.concatenate(ys, axis=time_axis)
    assert isinstance(stream.hx, type(hx_n))
    if split == "whole":  # the very same call: bitwise
        np.testing.assert_array_equal(y_stream, y)
        for got, want in zip(finals(stream.hx), finals(hx_n)):
            np.testing.assert_array_equal(got, want)
    else:  # see the module docstring for why not bitwise
        assert_close(y_stream, y, dtype, "y")
        for i, (got, want) in enumerate(zip(finals(stream.hx), finals(hx_n))):
            assert_close(got, want, dtype, f"final state {i}")


@pytest.mark.parametrize("which", list(LAYERS))
def test_chunks_in_eval_mode_give_the_result_of_one_call(rng, which):
    layer = LAYERS[which](dtype=np.float64, seed=2).eval()
    x = random_x(rng, "time_major", 2, np.float64)
    y, hx_n = layer(x)
    stream = lstm_ext.Stateful(layer)
    y_stream = np.concatenate([stream(c) for c in chunks(x, [5, 1, 5], 0)])
    assert_close(y_stream, y, np.float64, "y")
    for got, want in zip(finals(stream.hx), finals(hx_n)):
        assert_close(got, want, np.float64, "final state")
    assert layer._tape is None


@pytest.mark.parametrize("which", list(LAYERS))
def test_reset_starts_a_new_stream_from_zeros_or_the_given_state(rng, which):
    layer = LAYERS[which](dtype=np.float64, seed=3)
    x1, x2 = random_x(rng, "time_major", 2, np.float64), random_x(rng, "time_major", 2, np.float64, steps=4)
    hx0 = random_hx(rng, layer, "time_major", 2, np.float64)
    stream = lstm_ext.Stateful(layer)
    stream(x1)
    assert stream.hx is not None

    stream.reset()
    assert stream.hx is None
    y, hx_n = layer(x2)
    np.testing.assert_array_equal(stream(x2), y)  # the same call as a fresh stream's: bitwise
    for got, want in zip(finals(stream.hx), finals(hx_n)):
        np.testing.assert_array_equal(got, want)

    stream(x1)
    stream.reset(hx0)
    assert stream.hx is hx0
    y, hx_n = layer(x2, hx0)
    np.testing.assert_array_equal(stream(x2), y)
    for got, want in zip(finals(stream.hx), finals(hx_n)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("which", list(LAYERS))
def test_the_initial_state_is_kept_until_the_first_chunk(rng, which):
    layer = LAYERS[which](dtype=np.float64, seed=4)
    hx0 = random_hx(rng, layer, "time_major", 2, np.float64)
    assert lstm_ext.Stateful(layer).hx is None
    stream = lstm_ext.Stateful(layer, hx0)
    assert stream.hx is hx0
    x = random_x(rng, "time_major", 2, np.float64)
    first = stream(x[:1])
    np.testing.assert_array_equal(first, layer(x[:1], hx0)[0])


@pytest.mark.parametrize("which", list(LAYERS))
def test_backward_after_a_chunk_differentiates_that_chunk_alone(rng, which):
    # Truncated backpropagation through time: the tape is the last chunk's, started from the carried state.
    layer = LAYERS[which](dtype=np.float64, seed=5)
    x = random_x(rng, "time_major", 2, np.float64)
    stream = lstm_ext.Stateful(layer)
    stream(x[:6])
    carried = stream.hx
    y = stream(x[6:])
    dy = rng.standard_normal(y.shape)
    dx, d_states = layer.backward(dy)
    grads = {name: g.copy() for name, g in layer.grads.items()}

    layer(x[6:], carried)
    dx_ref, d_states_ref = layer.backward(dy)
    np.testing.assert_array_equal(dx, dx_ref)
    for got, want in zip(finals(d_states), finals(d_states_ref)):
        np.testing.assert_array_equal(got, want)
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grads[name], grad, err_msg=name)


# ------------------------------------------------------------------------------------------------------------
# What Stateful refuses


@pytest.mark.parametrize(
    "make",
    [
        lambda: lstm_ext.LSTM(3, 4, bidirectional=True),
        lambda: lstm_ext.GRU(3, 4, bidirectional=True),
        lambda: lstm_ext.LSTM(3, 4, go_backwards=True),
        lambda: lstm_ext.GRU(3, 4, num_layers=2, go_backwards=True),
    ],
    ids=["lstm-bidirectional", "gru-bidirectional", "lstm-go_backwards", "gru-go_backwards"],
)
def test_a_layer_that_needs_the_future_is_a_value_error(make):
    message = (
        "layer: a bidirectional or go_backwards layer needs the whole sequence; "
        "streaming needs a forward-only layer"
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        lstm_ext.Stateful(make())


@pytest.mark.parametrize(
    ("thing", "name"),
    [
        (lstm_ext.LSTMCell(3, 4), "LSTMCell"),
        (lstm_ext.GRUCell(3, 4), "GRUCell"),
        ("LSTM", "str"),
        (None, "NoneType"),
    ],
    ids=["lstm-cell", "gru-cell", "str", "none"],
)
def test_something_other_than_a_full_layer_is_a_type_error_naming_its_type(thing, name):
    message = f"layer: expected an lstm_ext.LSTM or lstm_ext.GRU, got {name}"
    with pytest.raises(TypeError, match="^" + re.escape(message) + "$"):
        lstm_ext.Stateful(thing)


# ------------------------------------------------------------------------------------------------------------
# Cells stepped from Python


CELLS = {
    "lstm": (lambda **kw: lstm_ext.LSTM(3, 5, **kw), lambda **kw: lstm_ext.LSTMCell(3, 5, **kw)),
    "gru": (lambda **kw: lstm_ext.GRU(3, 5, **kw), lambda **kw: lstm_ext.GRUCell(3, 5, **kw)),
    "gru-reset-before": (
        lambda **kw: lstm_ext.GRU(3, 5, reset_after=False, **kw),
        lambda **kw: lstm_ext.GRUCell(3, 5, reset_after=False, **kw),
    ),
}


@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("which", list(CELLS))
def test_a_cell_stepped_in_a_python_loop_equals_the_one_layer_network(rng, which, dtype, batched, with_hx):
    make_layer, make_cell = CELLS[which]
    layer = make_layer(dtype=dtype, seed=6)
    cell = make_cell(dtype=dtype, seed=7)  # other weights until the layer's are loaded
    cell.load_state_dict({name.removesuffix("_l0"): value for name, value in layer.state_dict().items()})
    assert set(cell.state_dict()) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    layout = "time_major" if batched else "unbatched"
    x = random_x(rng, layout, 4, dtype)
    hx = random_hx(rng, layer, layout, 4, dtype) if with_hx else None
    y, hx_n = layer(x, hx)

    # The layer's states have a leading layer axis of 1; the cell's do not.
    state = None if hx is None else (tuple(s[0] for s in hx) if isinstance(hx, tuple) else hx[0])
    outputs = []
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    assert_close(np.stack(outputs), y, dtype, "y")  # not bitwise: see the module docstring
    for i, (got, want) in enumerate(zip(finals(state), finals(hx_n))):
        assert_close(got, want[0], dtype, f"final state {i}")
