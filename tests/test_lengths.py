# SPDX-License-Identifier: MIT
"""Variable-length batches (``lengths=``) beyond torch parity: padding is exactly zero in ``y`` and ``dx`` and
``dy`` there is ignored; each sequence equals itself run alone, truncated to its length (outputs, final states
and gradients, forward and bidirectional, LSTM and GRU); full lengths are the dense path bit for bit; bad
lengths are rejected with messages that say what was expected and what came.
"""

from __future__ import annotations

import re

import lstm_ext
import numpy as np
import pytest
from conftest import assert_close

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
KINDS = ["lstm", "lstm-proj", "gru"]
STACKS = {"L1": (1, False), "L1-bi": (1, True), "L2": (2, False), "L2-bi": (2, True)}
STEPS, INP, HIDDEN = 7, 3, 4
LENGTHS = np.array([3, 7, 1, 5])  # unsorted, with 1 and T


def make(kind, layers=1, bidirectional=False, **kwargs):
    if kind == "gru":
        return lstm_ext.GRU(INP, HIDDEN, num_layers=layers, bidirectional=bidirectional, **kwargs)
    proj = {"proj_size": HIDDEN - 1} if kind == "lstm-proj" else {}
    return lstm_ext.LSTM(INP, HIDDEN, num_layers=layers, bidirectional=bidirectional, **proj, **kwargs)


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


def backward(layer, dy, d_finals):
    """``layer.backward`` with the final-state gradients as a list; returns ``(dx, [dh0(, dc0)])``."""
    if isinstance(layer, lstm_ext.LSTM):
        dx, d_states = layer.backward(dy, tuple(d_finals))
        return dx, list(d_states)
    dx, dh0 = layer.backward(dy, d_finals[0])
    return dx, [dh0]


def padding(lengths, steps):
    """``(T, N)`` bool: True where step t is past the end of sequence b."""
    return np.arange(steps)[:, None] >= np.asarray(lengths)[None, :]


# ------------------------------------------------------------------------------------------------------------
# Padding


@pytest.mark.parametrize("layout", ["time_major", "batch_first"])
@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_past_each_sequences_end_are_exactly_zero(rng, kind, stack, layout):
    batch_first = layout == "batch_first"
    layer = make(kind, *STACKS[stack], batch_first=batch_first, dtype=np.float32, seed=1)
    x = rng.standard_normal((STEPS, len(LENGTHS), INP)).astype(np.float32)
    pad = padding(LENGTHS, STEPS)
    for training in (True, False):
        y, _ = layer(x.swapaxes(0, 1) if batch_first else x, lengths=LENGTHS, training=training)
        y_tm = y.swapaxes(0, 1) if batch_first else y
        assert y_tm.shape == (STEPS, len(LENGTHS), layer.out_size * (2 if layer.bidirectional else 1))
        assert np.all(y_tm[pad] == 0), "nonzero output past a sequence's end"
        assert np.all(np.abs(y_tm[~pad]).max(axis=-1) > 0), "an output inside a sequence is all zero"


@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize("kind", KINDS)
def test_dx_past_each_sequences_end_is_exactly_zero_and_dy_there_is_ignored(rng, kind, stack):
    layer = make(kind, *STACKS[stack], dtype=np.float64, seed=2)
    x = rng.standard_normal((STEPS, len(LENGTHS), INP))
    hx = as_hx(layer, random_states(rng, layer, len(LENGTHS), np.float64))
    y, hx_n = layer(x, hx, LENGTHS)
    pad = padding(LENGTHS, STEPS)
    dy = rng.standard_normal(y.shape)  # nonzero at padding too
    d_finals = [rng.standard_normal(s.shape) for s in finals(hx_n)]
    dx, d_states = backward(layer, dy, d_finals)
    grads = {name: g.copy() for name, g in layer.grads.items()}
    assert np.all(dx[pad] == 0), "nonzero dx past a sequence's end"
    assert np.all(np.abs(dx[~pad]).max(axis=-1) > 0)

    dy_clean = np.where(pad[..., None], 0.0, dy)
    dx2, d_states2 = backward(layer, dy_clean, d_finals)
    np.testing.assert_array_equal(dx2, dx)
    for got, want in zip(d_states2, d_states):
        np.testing.assert_array_equal(got, want)
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, grads[name], err_msg=name)


# ------------------------------------------------------------------------------------------------------------
# Each sequence is its own


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize("kind", KINDS)
def test_each_sequence_equals_running_it_alone_truncated_to_its_length(rng, kind, stack, dtype):
    # Not bitwise: the packed core multiplies a different number of rows per step than a batch of one, and
    # Eigen's product rounding depends on the sizes. The table's tolerance for the dtype is what holds.
    layer = make(kind, *STACKS[stack], dtype=dtype, seed=3)
    batch = len(LENGTHS)
    x = rng.standard_normal((STEPS, batch, INP)).astype(dtype)
    states = random_states(rng, layer, batch, dtype)
    y, hx_n = layer(x, as_hx(layer, states), LENGTHS)
    dy = rng.standard_normal(y.shape).astype(dtype)
    d_finals = [rng.standard_normal(s.shape).astype(dtype) for s in finals(hx_n)]
    dx, d_states = backward(layer, dy, d_finals)
    grads = {name: g.copy() for name, g in layer.grads.items()}

    grad_sums = {name: np.zeros(g.shape) for name, g in grads.items()}
    for b, length in enumerate(LENGTHS):
        one = slice(b, b + 1)
        y_b, hx_b = layer(x[:length, one], as_hx(layer, [s[:, one] for s in states]))
        assert_close(y[:length, one], y_b, dtype, f"y of sequence {b}")
        for i, (got, want) in enumerate(zip(finals(hx_n), finals(hx_b))):
            assert_close(got[:, one], want, dtype, f"final state {i} of sequence {b}")
        dx_b, d_states_b = backward(layer, dy[:length, one], [d[:, one] for d in d_finals])
        assert_close(dx[:length, one], dx_b, dtype, f"dx of sequence {b}")
        for i, (got, want) in enumerate(zip(d_states, d_states_b)):
            assert_close(got[:, one], want, dtype, f"initial state gradient {i} of sequence {b}")
        for name, grad in layer.grads.items():
            grad_sums[name] += grad
    for name, grad in grads.items():  # the batch's weight gradients are the sum of the sequences'
        assert_close(grad, grad_sums[name], dtype, name)


def test_equal_lengths_keep_the_callers_batch_order(rng):
    layer = make("lstm", 1, True, dtype=np.float64, seed=4)
    x = rng.standard_normal((STEPS, 4, INP))
    lengths = np.array([5, 2, 5, 2])  # ties: a stable sort must not swap sequences with the same length
    y, (h_n, c_n) = layer(x, lengths=lengths)
    for b, length in enumerate(lengths):
        y_b, (h_b, c_b) = layer(x[:length, b : b + 1])
        assert_close(y[:length, b : b + 1], y_b, np.float64, f"y of sequence {b}")
        assert_close(h_n[:, b : b + 1], h_b, np.float64, f"h_n of sequence {b}")
        assert_close(c_n[:, b : b + 1], c_b, np.float64, f"c_n of sequence {b}")


# ------------------------------------------------------------------------------------------------------------
# Full lengths are the dense path


@pytest.mark.parametrize(
    "as_given",
    [
        lambda n: np.full(n, STEPS),
        lambda n: [STEPS] * n,
        lambda n: np.full(n, STEPS, dtype=np.uint8),
        lambda n: tuple(np.full(n, STEPS, dtype=np.int32)),
    ],
    ids=["int64", "list", "uint8", "tuple-int32"],
)
@pytest.mark.parametrize("stack", ["L1", "L2-bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_of_t_everywhere_are_bitwise_the_same_as_no_lengths(rng, kind, stack, as_given):
    layer = make(kind, *STACKS[stack], dtype=np.float32, seed=5)
    x = rng.standard_normal((STEPS, 3, INP)).astype(np.float32)
    hx = as_hx(layer, random_states(rng, layer, 3, np.float32))
    y, hx_n = layer(x, hx)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    d_finals = [rng.standard_normal(s.shape).astype(np.float32) for s in finals(hx_n)]
    dx, d_states = backward(layer, dy, d_finals)
    grads = {name: g.copy() for name, g in layer.grads.items()}

    y2, hx_n2 = layer(x, hx, as_given(3))
    np.testing.assert_array_equal(y2, y)
    for got, want in zip(finals(hx_n2), finals(hx_n)):
        np.testing.assert_array_equal(got, want)
    dx2, d_states2 = backward(layer, dy, d_finals)
    np.testing.assert_array_equal(dx2, dx)
    for got, want in zip(d_states2, d_states):
        np.testing.assert_array_equal(got, want)
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, grads[name], err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_any_integer_type_of_lengths_gives_the_same_result(rng, kind):
    layer = make(kind, 2, True, dtype=np.float64, seed=6)
    x = rng.standard_normal((STEPS, len(LENGTHS), INP))
    y, _ = layer(x, lengths=LENGTHS)
    for given in (
        LENGTHS.tolist(),
        tuple(LENGTHS.tolist()),
        LENGTHS.astype(np.int32),
        LENGTHS.astype(np.uint16),
    ):
        np.testing.assert_array_equal(layer(x, lengths=given)[0], y)


# ------------------------------------------------------------------------------------------------------------
# Bad lengths


def exact(message):
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize(
    ("lengths", "got"),
    [([3, 5, 2, 1], "(4,)"), ([3, 5], "(2,)"), ([[3], [5], [2]], "(3, 1)"), (4, "()")],
    ids=["too_many", "too_few", "column", "scalar"],
)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_of_the_wrong_shape_are_a_value_error_with_both_shapes(kind, lengths, got):
    layer = make(kind)
    x = np.zeros((5, 3, INP), np.float32)
    message = f"lengths: expected shape (3,) (one length per sequence), got {got}"
    with pytest.raises(ValueError, match=exact(message)):
        layer(x, lengths=lengths)


@pytest.mark.parametrize(
    ("lengths", "low", "high"),
    [([3, 0, 5], 0, 5), ([3, 6, 5], 3, 6), ([-1, 2, 2], -1, 2), ([0, 9, 1], 0, 9)],
    ids=["zero", "above_t", "negative", "both"],
)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_outside_one_to_t_are_a_value_error_with_the_range_and_the_extremes(kind, lengths, low, high):
    layer = make(kind)
    x = np.zeros((5, 3, INP), np.float32)
    message = f"lengths: expected values in [1, T=5], got min {low} and max {high}"
    with pytest.raises(ValueError, match=exact(message)):
        layer(x, lengths=lengths)


def test_t_in_the_range_message_is_the_time_axis_with_batch_first():
    layer = make("lstm", batch_first=True)
    x = np.zeros((3, 5, INP), np.float32)  # (N, T, I)
    with pytest.raises(ValueError, match=exact("lengths: expected values in [1, T=5], got min 1 and max 6")):
        layer(x, lengths=[6, 1, 2])
    y, _ = layer(x, lengths=[5, 1, 2])
    assert y.shape == (3, 5, HIDDEN)


@pytest.mark.parametrize(
    ("lengths", "dtype_name"),
    [
        (np.array([3.0, 5.0, 2.0]), "float64"),
        (np.array([3, 5, 2], np.float32), "float32"),
        ([3.0, 5, 2], "float64"),
        (np.array([True, True, True]), "bool"),
    ],
    ids=["float64", "float32", "list-with-a-float", "bool"],
)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_that_are_not_integers_are_a_type_error_naming_the_dtype(kind, lengths, dtype_name):
    layer = make(kind)
    x = np.zeros((5, 3, INP), np.float32)
    with pytest.raises(TypeError, match=exact(f"lengths: expected integers, got dtype {dtype_name}")):
        layer(x, lengths=lengths)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_with_an_unbatched_sequence_are_a_value_error(kind):
    layer = make(kind)
    x = np.zeros((5, INP), np.float32)
    message = "lengths: an unbatched sequence (T, I) has no lengths; pass x[:length] instead"
    with pytest.raises(ValueError, match=exact(message)):
        layer(x, lengths=[5])
