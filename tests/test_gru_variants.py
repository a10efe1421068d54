# SPDX-License-Identifier: MIT
"""Options beyond torch: the GRU's ``reset_after=False`` (the original formulation, Keras/ONNX), Keras'
``go_backwards`` for LSTM and GRU, and Keras' ``unit_forget_bias`` initialisation of the LSTM.

torch has none of them, so the float64 NumPy reference (``lstm_ext.reference_layers``, itself proven against
finite differences) and finite differences are the judges.
"""

from __future__ import annotations

import re

import lstm_ext
import numpy as np
import pytest
from conftest import FD_TOL, SHAPE_IDS, SHAPES, TINY_IDS, TINY_SHAPES, assert_close
from gradcheck import numerical_grad
from lstm_ext import reference_layers as rl

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]


def make(kind, inp, hidden, **kwargs):
    """An LSTM (``kind`` "lstm", or "lstm-proj" with ``proj_size = hidden - 1``) or a GRU."""
    if kind == "gru":
        return lstm_ext.GRU(inp, hidden, **kwargs)
    if kind == "lstm-proj":
        kwargs["proj_size"] = hidden - 1
    return lstm_ext.LSTM(inp, hidden, **kwargs)


def finals(hx):
    """The final states as a list: ``[h, c]`` for an LSTM, ``[h]`` for a GRU."""
    return list(hx) if isinstance(hx, tuple) else [hx]


def as_hx(layer, states):
    return tuple(states) if isinstance(layer, lstm_ext.LSTM) else states[0]


def random_states(rng, layer, batch, dtype):
    """Random initial states ``(L*D, N, W)`` as a list, ``[h, c]`` or ``[h]``."""
    count = layer.num_layers * (2 if layer.bidirectional else 1)
    states = [rng.standard_normal((count, batch, layer.out_size)).astype(dtype)]
    if isinstance(layer, lstm_ext.LSTM):
        states.append(rng.standard_normal((count, batch, layer.hidden_size)).astype(dtype))
    return states


def layer_backward(layer, dy, d_finals):
    """``layer.backward`` with the final-state gradients as a list; returns ``(dx, [dh0(, dc0)])``."""
    if isinstance(layer, lstm_ext.LSTM):
        dx, d_states = layer.backward(dy, tuple(d_finals))
        return dx, list(d_states)
    dx, dh0 = layer.backward(dy, d_finals[0])
    return dx, [dh0]


def reference_stack(layer, x, states, lengths, dy, d_finals):
    """Forward and backward of the float64 reference with `layer`'s weights and options (time-major)."""
    kind = "lstm" if isinstance(layer, lstm_ext.LSTM) else "gru"
    y, h_n, c_n, tape = rl.stack_forward(
        kind,
        layer.state_dict(),
        x,
        states[0],
        states[1] if kind == "lstm" else None,
        num_layers=layer.num_layers,
        bidirectional=layer.bidirectional,
        proj_size=layer.proj_size,
        reset_after=getattr(layer, "reset_after", True),
        lengths=lengths,
        go_backwards=layer.go_backwards,
    )
    dx, dh0, dc0, grads = rl.stack_backward(tape, dy, *d_finals)
    return {
        "y": y,
        "finals": [h_n, c_n] if kind == "lstm" else [h_n],
        "dx": dx,
        "d_states": [dh0, dc0] if kind == "lstm" else [dh0],
        "grads": grads,
    }


def check_against_reference(rng, layer, x, lengths, dtype):
    """Run `layer` forward and backward on time-major `x` and compare everything with the reference."""
    states = random_states(rng, layer, x.shape[1], dtype)
    y, hx_n = layer(x, as_hx(layer, states), lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    d_finals = [rng.standard_normal(s.shape).astype(dtype) for s in finals(hx_n)]
    dx, d_states = layer_backward(layer, dy, d_finals)
    ref = reference_stack(layer, x, states, lengths, dy, d_finals)
    assert_close(y, ref["y"], dtype, "y")
    for i, (got, want) in enumerate(zip(finals(hx_n), ref["finals"])):
        assert_close(got, want, dtype, f"final state {i}")
    assert_close(dx, ref["dx"], dtype, "dx")
    for i, (got, want) in enumerate(zip(d_states, ref["d_states"])):
        assert_close(got, want, dtype, f"initial state gradient {i}")
    assert set(layer.grads) == set(ref["grads"])
    for name, grad in layer.grads.items():
        assert_close(grad, ref["grads"][name], dtype, name)


def some_lengths(steps, batch):
    """Lengths in [1, T], unsorted, the last sequence running all T steps (so y keeps its T)."""
    return np.maximum(1, steps - 2 * np.arange(batch))[::-1].copy()


# ------------------------------------------------------------------------------------------------------------
# GRU reset_after=False

STACKS = {  # num_layers, bidirectional, with lengths
    "L1": (1, False, False),
    "L2-bi": (2, True, False),
    "L2-lengths": (2, False, True),
    "L1-bi-lengths": (1, True, True),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_gru_reset_before_matches_the_reference_forward_and_every_gradient(rng, shape, stack, dtype):
    steps, batch, inp, hidden = shape
    layers, bidirectional, with_lengths = STACKS[stack]
    layer = lstm_ext.GRU(
        inp, hidden, num_layers=layers, bidirectional=bidirectional, reset_after=False, dtype=dtype, seed=1
    )
    x = rng.standard_normal((steps, batch, inp)).astype(dtype)
    check_against_reference(rng, layer, x, some_lengths(steps, batch) if with_lengths else None, dtype)


@pytest.mark.parametrize("layout", ["batch_first", "unbatched"])
def test_gru_reset_before_in_other_layouts_equals_the_time_major_result(rng, layout):
    layer = lstm_ext.GRU(
        3, 4, num_layers=2, reset_after=False, batch_first=layout == "batch_first", dtype=np.float64, seed=2
    )
    time_major = lstm_ext.GRU(3, 4, num_layers=2, reset_after=False, dtype=np.float64, seed=2)
    x = rng.standard_normal((5, 2, 3))
    h0 = rng.standard_normal((2, 2, 4))
    y, h_n = time_major(x, h0)
    if layout == "batch_first":
        y_l, h_l = layer(x.swapaxes(0, 1), h0)
        assert_close(y_l.swapaxes(0, 1), y, np.float64, "y")
        assert_close(h_l, h_n, np.float64, "h_n")
    else:
        y_l, h_l = layer(x[:, 1], h0[:, 1])
        assert_close(y_l, y[:, 1], np.float64, "y")
        assert_close(h_l, h_n[:, 1], np.float64, "h_n")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gru_cell_reset_before_matches_the_reference_step_and_every_gradient(rng, dtype, batched, bias):
    batch, inp, hidden = 3, 4, 5
    cell = lstm_ext.GRUCell(inp, hidden, bias=bias, reset_after=False, dtype=dtype, seed=3)
    rows = batch if batched else 1
    x = rng.standard_normal((rows, inp)).astype(dtype)
    h0 = rng.standard_normal((rows, hidden)).astype(dtype)
    dh1 = rng.standard_normal((rows, hidden)).astype(dtype)
    if batched:
        h1 = cell(x, h0)
        dx, dh0 = cell.backward(dh1)
    else:
        h1 = cell(x[0], h0[0])
        dx, dh0 = cell.backward(dh1[0])
        h1, dx, dh0 = h1[None], dx[None], dh0[None]
    state = cell.state_dict()
    y, _, tape = rl.gru_layer_forward(
        x[None],
        state["weight_ih"],
        state["weight_hh"],
        state.get("bias_ih"),
        state.get("bias_hh"),
        h0,
        reset_after=False,
    )
    grads = rl.gru_layer_backward(tape, dh1[None])
    assert_close(h1, y[0], dtype, "h1")
    assert_close(dx, grads["dx"][0], dtype, "dx")
    assert_close(dh0, grads["dh0"], dtype, "dh0")
    names = {"weight_ih": "dw_ih", "weight_hh": "dw_hh", "bias_ih": "db_ih", "bias_hh": "db_hh"}
    assert set(cell.grads) == set(state)
    for name, grad in cell.grads.items():
        assert_close(grad, grads[names[name]], dtype, name)


def _check_finite_differences(layer, x, states, lengths, rng):
    y, hx_n = layer(x, as_hx(layer, states), lengths)
    dy = rng.standard_normal(y.shape)
    d_finals = [rng.standard_normal(s.shape) for s in finals(hx_n)]
    dx, d_states = layer_backward(layer, dy, d_finals)
    grads = {name: g.copy() for name, g in layer.grads.items()}

    def loss(x_=x):
        y_, hx_ = layer(x_, as_hx(layer, states), lengths)
        return float(np.vdot(y_, dy) + sum(np.vdot(s, d) for s, d in zip(finals(hx_), d_finals)))

    np.testing.assert_allclose(dx, numerical_grad(lambda x_: loss(x_), x), err_msg="dx", **FD_TOL)
    for i, state in enumerate(states):
        np.testing.assert_allclose(
            d_states[i], numerical_grad(lambda _: loss(), state), err_msg=f"initial state {i}", **FD_TOL
        )
    for name, param in layer.named_parameters():
        np.testing.assert_allclose(
            grads[name], numerical_grad(lambda _: loss(), param), err_msg=name, **FD_TOL
        )


@pytest.mark.parametrize("shape", TINY_SHAPES, ids=TINY_IDS)
def test_gru_reset_before_gradients_match_finite_differences(rng, shape):
    steps, batch, inp, hidden = shape
    layer = lstm_ext.GRU(inp, hidden, reset_after=False, dtype=np.float64, seed=4)
    x = rng.standard_normal((steps, batch, inp))
    _check_finite_differences(layer, x, random_states(rng, layer, batch, np.float64), None, rng)


def test_gru_reset_before_stack_gradients_with_lengths_match_finite_differences(rng):
    layer = lstm_ext.GRU(2, 2, num_layers=2, bidirectional=True, reset_after=False, dtype=np.float64, seed=5)
    x = rng.standard_normal((3, 3, 2))
    states = random_states(rng, layer, 3, np.float64)
    _check_finite_differences(layer, x, states, np.array([2, 3, 1]), rng)


def test_gru_cell_reset_before_gradients_match_finite_differences(rng):
    cell = lstm_ext.GRUCell(3, 2, reset_after=False, dtype=np.float64, seed=6)
    x, h0, dh1 = rng.standard_normal((2, 3)), rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    cell(x, h0)
    dx, dh0 = cell.backward(dh1)
    grads = {name: g.copy() for name, g in cell.grads.items()}

    def loss(x_=x):
        return float(np.vdot(cell(x_, h0), dh1))

    np.testing.assert_allclose(dx, numerical_grad(lambda x_: loss(x_), x), **FD_TOL)
    np.testing.assert_allclose(dh0, numerical_grad(lambda _: loss(), h0), **FD_TOL)
    for name, param in cell.named_parameters():
        np.testing.assert_allclose(
            grads[name], numerical_grad(lambda _: loss(), param), err_msg=name, **FD_TOL
        )


def test_gru_reset_before_has_the_same_parameters_and_initialisation_but_differs(rng):
    before = lstm_ext.GRU(3, 4, num_layers=2, reset_after=False, dtype=np.float64, seed=7)
    after = lstm_ext.GRU(3, 4, num_layers=2, dtype=np.float64, seed=7)
    assert before.reset_after is False and after.reset_after is True
    assert "reset_after=False" in repr(before) and "reset_after" not in repr(after)
    expected = after.state_dict()
    assert list(before.state_dict()) == list(expected)
    for name, value in before.state_dict().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    x, h0 = rng.standard_normal((4, 2, 3)), rng.standard_normal((2, 2, 4))
    assert np.abs(before(x, h0)[0] - after(x, h0)[0]).max() > 1e-3

    cell_before = lstm_ext.GRUCell(3, 4, reset_after=False, dtype=np.float64, seed=7)
    cell_after = lstm_ext.GRUCell(3, 4, dtype=np.float64, seed=7)
    assert np.abs(cell_before(x[0], h0[0]) - cell_after(x[0], h0[0])).max() > 1e-3


def test_gru_reset_before_and_after_agree_on_a_first_step_from_zero_without_bias(rng):
    # With h0 = 0 and no bias the reset gate multiplies zero either way: r * (W_hn 0) = W_hn (r * 0) = 0.
    before = lstm_ext.GRU(3, 4, bias=False, reset_after=False, dtype=np.float64, seed=8)
    after = lstm_ext.GRU(3, 4, bias=False, dtype=np.float64, seed=8)
    x = rng.standard_normal((1, 2, 3))
    assert_close(before(x)[0], after(x)[0], np.float64, "y")
    x2 = rng.standard_normal((2, 2, 3))  # from the second step on they part
    assert np.abs(before(x2)[0][1] - after(x2)[0][1]).max() > 1e-3


# ------------------------------------------------------------------------------------------------------------
# go_backwards

KINDS = ["lstm", "lstm-proj", "gru", "gru-reset-before"]


def make_kind(kind, inp, hidden, **kwargs):
    if kind == "gru-reset-before":
        return make("gru", inp, hidden, reset_after=False, **kwargs)
    return make(kind, inp, hidden, **kwargs)


@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
@pytest.mark.parametrize("layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_go_backwards_equals_running_forward_on_the_reversed_sequence(rng, kind, layers, layout):
    # Not bitwise: the reversed input is another row order for the core's input-projection GEMM, whose
    # rounding depends on where a row falls in Eigen's blocking. Float64 tolerance is the strongest claim.
    steps, batch, inp, hidden = 5, 3, 4, 5
    opts = {"num_layers": layers, "batch_first": layout == "batch_first", "dtype": np.float64, "seed": 9}
    backwards = make_kind(kind, inp, hidden, go_backwards=True, **opts)
    forwards = make_kind(kind, inp, hidden, **opts)
    time_axis = 1 if layout == "batch_first" else 0
    x_shape = {
        "time_major": (steps, batch, inp),
        "batch_first": (batch, steps, inp),
        "unbatched": (steps, inp),
    }
    x = rng.standard_normal(x_shape[layout])
    states = random_states(rng, backwards, batch, np.float64)
    if layout == "unbatched":
        states = [s[:, 0] for s in states]

    def flip(a):
        return np.flip(a, axis=time_axis)

    y_b, hx_b = backwards(x, as_hx(backwards, states))
    y_f, hx_f = forwards(flip(x), as_hx(forwards, states))
    assert_close(y_b, flip(y_f), np.float64, "y")
    for i, (got, want) in enumerate(zip(finals(hx_b), finals(hx_f))):
        assert_close(got, want, np.float64, f"final state {i}")

    dy = rng.standard_normal(y_b.shape)
    d_finals = [rng.standard_normal(s.shape) for s in finals(hx_b)]
    dx_b, ds_b = layer_backward(backwards, dy, d_finals)
    dx_f, ds_f = layer_backward(forwards, flip(dy), d_finals)
    assert_close(dx_b, flip(dx_f), np.float64, "dx")
    for i, (got, want) in enumerate(zip(ds_b, ds_f)):
        assert_close(got, want, np.float64, f"initial state gradient {i}")
    for name, grad in backwards.grads.items():
        assert_close(grad, forwards.grads[name], np.float64, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_go_backwards_with_lengths_matches_the_reference(rng, kind, layers, dtype):
    steps, batch, inp, hidden = 6, 4, 3, 4
    layer = make_kind(kind, inp, hidden, num_layers=layers, go_backwards=True, dtype=dtype, seed=10)
    x = rng.standard_normal((steps, batch, inp)).astype(dtype)
    check_against_reference(rng, layer, x, np.array([3, 6, 1, 4]), dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_go_backwards_with_lengths_starts_each_sequence_at_its_own_last_step(rng, kind):
    layer = make_kind(kind, 3, 4, go_backwards=True, dtype=np.float64, seed=11)
    x = rng.standard_normal((6, 3, 3))
    lengths = np.array([2, 6, 4])
    y, hx_n = layer(x, lengths=lengths)
    for b, length in enumerate(lengths):
        y_b, hx_b = layer(x[:length, b : b + 1])
        assert_close(y[:length, b : b + 1], y_b, np.float64, f"y of sequence {b}")
        for i, (got, want) in enumerate(zip(finals(hx_n), finals(hx_b))):
            assert_close(got[:, b : b + 1], want, np.float64, f"final state {i} of sequence {b}")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_go_backwards_with_bidirectional_is_a_value_error(kind):
    message = "^" + re.escape(
        "go_backwards: a bidirectional layer already runs both ways; use one or the other"
    )
    with pytest.raises(ValueError, match=message):
        make(kind, 3, 4, bidirectional=True, go_backwards=True)


# ------------------------------------------------------------------------------------------------------------
# unit_forget_bias

FORGET_LAYERS = {
    "LSTM": lambda **kw: lstm_ext.LSTM(3, 5, **kw),
    "LSTM-L2-bi-proj": lambda **kw: lstm_ext.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, **kw),
    "LSTMCell": lambda **kw: lstm_ext.LSTMCell(3, 5, **kw),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("which", list(FORGET_LAYERS))
def test_unit_forget_bias_zeroes_the_biases_but_the_forget_block_of_bias_ih(which, dtype):
    hidden = 5
    layer = FORGET_LAYERS[which](unit_forget_bias=True, dtype=dtype, seed=12)
    plain = FORGET_LAYERS[which](dtype=dtype, seed=12)
    state, expected = layer.state_dict(), plain.state_dict()
    biases = [name for name in state if name.startswith("bias_")]
    assert len(biases) == (8 if "L2" in which else 2)
    forget = np.zeros(4 * hidden, dtype=dtype)
    forget[hidden : 2 * hidden] = 1  # gates i, f, g, o: rows H:2H
    for name, value in state.items():
        if name.startswith("bias_ih"):
            np.testing.assert_array_equal(value, forget, err_msg=name)
        elif name.startswith("bias_hh"):
            np.testing.assert_array_equal(value, np.zeros(4 * hidden, dtype=dtype), err_msg=name)
        else:  # the weights are initialised as without the option
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
        assert value.dtype == np.dtype(dtype)


@pytest.mark.parametrize("which", list(FORGET_LAYERS))
def test_unit_forget_bias_without_bias_is_a_value_error(which):
    with pytest.raises(ValueError, match="^" + re.escape("unit_forget_bias: needs bias=True") + "$"):
        FORGET_LAYERS[which](bias=False, unit_forget_bias=True)
