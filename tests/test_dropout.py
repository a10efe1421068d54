# SPDX-License-Identifier: MIT
"""Dropout: torch's inter-layer ``dropout`` and the variational ``input_dropout`` / ``recurrent_dropout``.

What is proven: dropout acts in training only (eval and ``training=False`` equal a dropout-free layer with the
same weights); the masks a forward used (``layer._tape.masks``) are inverted-dropout masks (0 or 1/(1-p)) with
the right keep fraction (binomial bounds on large draws), independent per element between layers and one per
sequence for the variational ones; the forward and every gradient equal the float64 reference given those
masks, and finite differences with the masks held fixed; the masks are seeded and reproducible and never
change the weight initialisation; bad probabilities are rejected naming the argument.
"""

from __future__ import annotations

import math
import re

import lstm_ext
import numpy as np
import pytest
from conftest import FD_TOL, assert_close
from gradcheck import numerical_grad
from lstm_ext import reference_layers as rl

KINDS = ["lstm", "gru"]
OPTIONS = ["dropout", "input_dropout", "recurrent_dropout"]


def make(kind, inp, hidden, **kwargs):
    cls = lstm_ext.LSTM if kind == "lstm" else lstm_ext.GRU
    return cls(inp, hidden, **kwargs)


def finals(hx):
    """The final states as a list: ``[h, c]`` for an LSTM, ``[h]`` for a GRU."""
    return list(hx) if isinstance(hx, tuple) else [hx]


def random_states(rng, layer, batch):
    """Random initial states in the layer's layout, as its ``hx`` argument."""
    count = layer.num_layers * (2 if layer.bidirectional else 1)
    h = rng.standard_normal((count, batch, layer.out_size)).astype(layer.dtype)
    if isinstance(layer, lstm_ext.LSTM):
        return h, rng.standard_normal((count, batch, layer.hidden_size)).astype(layer.dtype)
    return h


def keep_fraction_bound(p, n, sigmas=5.0):
    """``sigmas`` standard deviations of the mean of ``n`` independent Bernoulli(1 - p) draws."""
    return sigmas * math.sqrt(p * (1.0 - p) / n)


def assert_inverted_dropout_mask(mask, p, dtype):
    """Every value is exactly 0 or ``1/(1-p)`` in `dtype`, both occur, and the kept fraction is ``1 - p``
    within five binomial standard deviations (a false alarm about once in a million seeds)."""
    scale = np.dtype(dtype).type(1.0 / (1.0 - p))
    assert mask.dtype == np.dtype(dtype)
    values = set(np.unique(mask).tolist())
    assert values == {0.0, float(scale)}, f"mask values {sorted(values)}, expected 0 and {scale}"
    kept = np.count_nonzero(mask) / mask.size
    assert abs(kept - (1.0 - p)) < keep_fraction_bound(p, mask.size), (kept, 1.0 - p, mask.size)


def fixed_masks(layer, masks):
    """Make every later training forward of `layer` use `masks` instead of drawing new ones."""
    layer._draw_masks = lambda rows, batch, packing: masks


def reference_run(layer, x, hx, lengths, masks, packing, dy, d_finals):
    """The float64 reference's forward and backward for `layer` with the masks of one of its forwards.

    `masks` and `packing` are the tape's: the inter-layer masks go from the core's rows ``[L-1, R, F]`` to
    ``[L-1, T, N, F]`` (zero at padding, which the reference never reads) and the per-sequence masks from the
    core's sorted batch order to the caller's.
    """
    kind = "lstm" if isinstance(layer, lstm_ext.LSTM) else "gru"
    steps, batch = x.shape[:2]
    inter = masks.inter
    if inter is not None:
        if packing is None:
            inter = inter.reshape(inter.shape[0], steps, batch, inter.shape[-1])
        else:
            dense = np.zeros((inter.shape[0], steps, batch, inter.shape[-1]), dtype=inter.dtype)
            dense[:, packing.t_index, packing.b_index] = inter
            inter = dense

    def caller_order(per_sequence):
        if per_sequence is None or packing is None:
            return per_sequence
        out = []
        for m in per_sequence:
            unsorted = np.empty_like(m)
            unsorted[packing.order] = m
            out.append(unsorted)
        return out

    states = finals(hx)
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
        inter_masks=inter,
        input_masks=caller_order(masks.input),
        recurrent_masks=caller_order(masks.recurrent),
    )
    dx, dh0, dc0, grads = rl.stack_backward(tape, dy, *d_finals)
    return {
        "y": y,
        "finals": [h_n, c_n] if kind == "lstm" else [h_n],
        "dx": dx,
        "d_states": [dh0, dc0] if kind == "lstm" else [dh0],
        "grads": grads,
    }


def layer_backward(layer, dy, d_finals):
    """``layer.backward`` with the final-state gradients as a list; returns ``(dx, [dh0(, dc0)])``."""
    if isinstance(layer, lstm_ext.LSTM):
        dx, d_states = layer.backward(dy, tuple(d_finals))
        return dx, list(d_states)
    dx, dh0 = layer.backward(dy, d_finals[0])
    return dx, [dh0]


# ------------------------------------------------------------------------------------------------------------
# Only in training


@pytest.mark.parametrize("option", [*OPTIONS, "all"])
@pytest.mark.parametrize("kind", KINDS)
def test_dropout_is_off_in_eval_mode_and_with_training_false(rng, kind, option):
    probabilities = {name: 0.5 for name in OPTIONS} if option == "all" else {option: 0.5}
    layer = make(kind, 4, 6, num_layers=2, dtype=np.float64, seed=7, **probabilities)
    plain = make(kind, 4, 6, num_layers=2, dtype=np.float64, seed=7)
    x = rng.standard_normal((5, 3, 4))
    hx = random_states(rng, layer, 3)
    expected_y, expected_hx = plain(x, hx, training=False)

    y_override, hx_override = layer(x, hx, training=False)  # layer.training is still True
    assert layer.training and layer._tape is None
    layer.eval()
    y_eval, hx_eval = layer(x, hx)
    for y, hx_out in ((y_override, hx_override), (y_eval, hx_eval)):
        np.testing.assert_array_equal(y, expected_y)
        for got, want in zip(finals(hx_out), finals(expected_hx)):
            np.testing.assert_array_equal(got, want)

    # The same layer in training does drop: the result moves far beyond rounding.
    y_train, _ = layer(x, hx, training=True)
    assert np.abs(y_train - expected_y).max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_inter_layer_dropout_with_one_layer_draws_no_mask_and_changes_nothing(rng, kind):
    layer = make(kind, 3, 5, dropout=0.5, dtype=np.float64, seed=1)
    plain = make(kind, 3, 5, dtype=np.float64, seed=1)
    x = rng.standard_normal((4, 2, 3))
    y, _ = layer(x)
    assert layer._tape.masks.inter is None
    np.testing.assert_array_equal(y, plain(x)[0])


# ------------------------------------------------------------------------------------------------------------
# Mask statistics


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8], ids=lambda p: f"p{p}")
@pytest.mark.parametrize("kind", KINDS)
def test_inter_layer_masks_are_zero_or_scaled_with_the_expected_keep_fraction(rng, kind, p, dtype):
    steps, batch, hidden = 25, 8, 20
    layer = make(kind, 2, hidden, num_layers=3, bidirectional=True, dropout=p, dtype=dtype, seed=11)
    layer(rng.standard_normal((steps, batch, 2)).astype(dtype))
    masks = layer._tape.masks
    assert masks.input is None and masks.recurrent is None
    assert masks.inter.shape == (2, steps * batch, 2 * hidden)  # [L-1, rows, D*H_out]
    assert_inverted_dropout_mask(masks.inter, p, dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_inter_layer_mask_elements_are_drawn_independently(rng, kind):
    p, steps, batch, hidden = 0.4, 30, 10, 24
    layer = make(kind, 2, hidden, num_layers=3, dropout=p, dtype=np.float64, seed=12)
    layer(rng.standard_normal((steps, batch, 2)))
    kept = layer._tape.masks.inter != 0  # [2, T*N, H]
    q = (1.0 - p) ** 2
    # Disjoint pairs of elements that differ in one index (the layer, the step, the sequence, the feature)
    # are both kept with probability (1-p)^2 when independent; a mask shared along that axis gives 1-p.
    by_step = kept.reshape(2, steps, batch, hidden)
    pairs = {
        "layer": (kept[0], kept[1]),
        "step": (by_step[:, 0::2], by_step[:, 1::2]),
        "sequence": (by_step[:, :, 0::2], by_step[:, :, 1::2]),
        "feature": (kept[..., 0::2], kept[..., 1::2]),
    }
    for axis, (a, b) in pairs.items():
        both = np.logical_and(a, b)
        bound = keep_fraction_bound(1.0 - q, both.size)
        assert abs(both.mean() - q) < bound, (axis, both.mean(), q)


@pytest.mark.parametrize("p", [0.2, 0.6], ids=lambda p: f"p{p}")
@pytest.mark.parametrize("option", ["input_dropout", "recurrent_dropout"])
@pytest.mark.parametrize("kind", KINDS)
def test_variational_masks_are_zero_or_scaled_with_the_expected_keep_fraction(rng, kind, option, p):
    batch, width = 400, 12
    layer = make(
        kind, width, width, num_layers=2, bidirectional=True, dtype=np.float32, seed=13, **{option: p}
    )
    layer(rng.standard_normal((2, batch, width)).astype(np.float32))
    masks = layer._tape.masks
    drawn = masks.input if option == "input_dropout" else masks.recurrent
    other = masks.recurrent if option == "input_dropout" else masks.input
    assert other is None and masks.inter is None
    assert len(drawn) == 4  # one per (layer, direction)
    assert_inverted_dropout_mask(np.concatenate([m.ravel() for m in drawn]), p, np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_mask_shapes_follow_layers_directions_and_projection(rng, kind):
    steps, batch, inp, hidden = 4, 3, 5, 6
    proj = {"proj_size": 4} if kind == "lstm" else {}
    out = 4 if kind == "lstm" else hidden
    layer = make(
        kind,
        inp,
        hidden,
        num_layers=3,
        bidirectional=True,
        dropout=0.3,
        input_dropout=0.3,
        recurrent_dropout=0.3,
        dtype=np.float64,
        seed=14,
        **proj,
    )
    layer(rng.standard_normal((steps, batch, inp)))
    masks = layer._tape.masks
    assert masks.inter.shape == (2, steps * batch, 2 * out)
    assert [m.shape for m in masks.input] == [(batch, inp)] * 2 + [(batch, 2 * out)] * 4
    assert [m.shape for m in masks.recurrent] == [(batch, out)] * 6

    layer(rng.standard_normal((steps, batch, inp)), lengths=[2, 4, 1])  # 7 packed rows
    assert layer._tape.masks.inter.shape == (2, 7, 2 * out)


# ------------------------------------------------------------------------------------------------------------
# Variational masks: one per sequence, the same at every step


@pytest.mark.parametrize("kind", KINDS)
def test_a_dropped_input_feature_has_no_effect_at_any_step_of_its_sequence(rng, kind):
    steps, batch, inp, hidden = 6, 3, 8, 32
    layer = make(kind, inp, hidden, input_dropout=0.5, dtype=np.float64, seed=15)
    x = rng.standard_normal((steps, batch, inp))
    layer(x)
    masks = layer._tape.masks
    mask = masks.input[0]  # lengths=None: the caller's batch order
    assert (mask == 0).any() and (mask != 0).any()
    assert len({tuple(row) for row in (mask != 0)}) > 1, "every sequence got the same mask"
    fixed_masks(layer, masks)
    y, _ = layer(x)
    for b in range(batch):
        others = [o for o in range(batch) if o != b]
        for j in range(inp):
            x_moved = x.copy()
            x_moved[:, b, j] += 1.0  # at every step
            y_moved, _ = layer(x_moved)
            np.testing.assert_array_equal(y_moved[:, others], y[:, others])
            if mask[b, j] == 0:
                np.testing.assert_array_equal(y_moved, y, err_msg=f"dropped feature {j} of sequence {b}")
            else:  # kept: it acts at every step, with a large hidden size no step is insensitive
                change = np.abs(y_moved[:, b] - y[:, b]).max(axis=1)
                assert (change > 1e-6).all(), (b, j, change)


def test_a_dropped_recurrent_unit_hides_that_unit_of_h0_from_its_sequence(rng):
    # LSTM only: its h enters a step only through the masked recurrent product (a GRU also carries h itself).
    steps, batch, inp, hidden = 5, 3, 3, 8
    layer = make("lstm", inp, hidden, recurrent_dropout=0.5, dtype=np.float64, seed=16)
    x = rng.standard_normal((steps, batch, inp))
    h0, c0 = random_states(rng, layer, batch)
    layer(x, (h0, c0))
    masks = layer._tape.masks
    mask = masks.recurrent[0]
    assert (mask == 0).any() and (mask != 0).any()
    fixed_masks(layer, masks)
    y, (_, c_n) = layer(x, (h0, c0))
    for b in range(batch):
        for j in range(hidden):
            h_moved = h0.copy()
            h_moved[0, b, j] += 1.0
            y_moved, (_, c_n_moved) = layer(x, (h_moved, c0))
            if mask[b, j] == 0:
                np.testing.assert_array_equal(y_moved, y)
                np.testing.assert_array_equal(c_n_moved, c_n)
            else:
                assert np.abs(y_moved[0, b] - y[0, b]).max() > 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_a_sequences_variational_masks_do_not_depend_on_the_other_sequences_lengths(rng, kind):
    layer = make(
        kind, 3, 4, num_layers=2, input_dropout=0.5, recurrent_dropout=0.5, dtype=np.float64, seed=17
    )
    x = rng.standard_normal((5, 4, 3))
    layer.reseed_dropout(99)
    layer(x)
    dense = layer._tape.masks
    layer.reseed_dropout(99)
    layer(x, lengths=[2, 5, 3, 1])
    packed, order = layer._tape.masks, layer._tape.packing.order
    for name in ("input", "recurrent"):
        for k, (want, got_sorted) in enumerate(zip(getattr(dense, name), getattr(packed, name))):
            got = np.empty_like(got_sorted)
            got[order] = got_sorted  # the core's sorted order back to the caller's
            np.testing.assert_array_equal(got, want, err_msg=f"{name} mask {k}")


# ------------------------------------------------------------------------------------------------------------
# The backward uses the forward's masks

CONFIGS = {  # options, lengths
    "dropout-L2": ({"num_layers": 2, "dropout": 0.4}, None),
    "variational-L2-bi": (
        {"num_layers": 2, "bidirectional": True, "input_dropout": 0.3, "recurrent_dropout": 0.4},
        None,
    ),
    "all-L3": ({"num_layers": 3, "dropout": 0.3, "input_dropout": 0.2, "recurrent_dropout": 0.5}, None),
    "all-L2-bi-lengths": (
        {
            "num_layers": 2,
            "bidirectional": True,
            "dropout": 0.5,
            "input_dropout": 0.3,
            "recurrent_dropout": 0.3,
        },
        [3, 5, 1],
    ),
    "all-L2-go_backwards-lengths": (
        {
            "num_layers": 2,
            "go_backwards": True,
            "dropout": 0.5,
            "input_dropout": 0.3,
            "recurrent_dropout": 0.3,
        },
        [2, 5, 4],
    ),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kind", ["lstm", "lstm-proj", "gru"])
def test_forward_and_every_gradient_equal_the_reference_given_the_drawn_masks(rng, kind, config, dtype):
    options, lengths = CONFIGS[config]
    steps, batch, inp, hidden = 5, 3, 4, 5
    proj = {"proj_size": 3} if kind == "lstm-proj" else {}
    layer = make(kind.split("-")[0], inp, hidden, dtype=dtype, seed=18, **options, **proj)
    x = rng.standard_normal((steps, batch, inp)).astype(dtype)
    hx = random_states(rng, layer, batch)
    y, hx_n = layer(x, hx, lengths)
    tape = layer._tape
    assert any(m is not None for m in (tape.masks.inter, tape.masks.input, tape.masks.recurrent))
    dy = rng.standard_normal(y.shape).astype(dtype)
    d_finals = [rng.standard_normal(s.shape).astype(dtype) for s in finals(hx_n)]
    dx, d_states = layer_backward(layer, dy, d_finals)

    ref = reference_run(layer, x, hx, lengths, tape.masks, tape.packing, dy, d_finals)
    assert_close(y, ref["y"], dtype, "y")
    for i, (got, want) in enumerate(zip(finals(hx_n), ref["finals"])):
        assert_close(got, want, dtype, f"final state {i}")
    assert_close(dx, ref["dx"], dtype, "dx")
    for i, (got, want) in enumerate(zip(d_states, ref["d_states"])):
        assert_close(got, want, dtype, f"initial state gradient {i}")
    assert set(layer.grads) == set(ref["grads"])
    for name, grad in layer.grads.items():
        assert_close(grad, ref["grads"][name], dtype, name)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_with_the_masks_held_fixed_match_finite_differences(rng, kind, bidirectional):
    steps, batch, inp, hidden = 3, 2, 2, 3
    layer = make(
        kind,
        inp,
        hidden,
        num_layers=2,
        bidirectional=bidirectional,
        dropout=0.4,
        input_dropout=0.4,
        recurrent_dropout=0.4,
        dtype=np.float64,
        seed=19,
    )
    x = rng.standard_normal((steps, batch, inp))
    hx = random_states(rng, layer, batch)
    y, hx_n = layer(x, hx)
    masks = layer._tape.masks
    for mask in (masks.inter, np.concatenate([m.ravel() for m in masks.input + masks.recurrent])):
        assert (mask == 0).any() and (mask != 0).any()
    fixed_masks(layer, masks)
    dy = rng.standard_normal(y.shape)
    d_finals = [rng.standard_normal(s.shape) for s in finals(hx_n)]
    layer(x, hx)
    dx, d_states = layer_backward(layer, dy, d_finals)
    grads = {name: g.copy() for name, g in layer.grads.items()}
    states = finals(hx)

    def loss(x_=x, states_=states):
        y_, hx_ = layer(x_, tuple(states_) if kind == "lstm" else states_[0])
        return float(np.vdot(y_, dy) + sum(np.vdot(s, d) for s, d in zip(finals(hx_), d_finals)))

    np.testing.assert_allclose(dx, numerical_grad(lambda x_: loss(x_=x_), x), err_msg="dx", **FD_TOL)
    for i, state in enumerate(states):
        np.testing.assert_allclose(
            d_states[i], numerical_grad(lambda _: loss(), state), err_msg=f"initial state {i}", **FD_TOL
        )
    for name, param in layer.named_parameters():
        np.testing.assert_allclose(
            grads[name], numerical_grad(lambda _: loss(), param), err_msg=name, **FD_TOL
        )


# ------------------------------------------------------------------------------------------------------------
# Seeds


def all_masks(layer):
    masks = layer._tape.masks
    return [masks.inter, *masks.input, *masks.recurrent]


def dropout_everywhere(kind, seed, **kwargs):
    return make(
        kind,
        3,
        4,
        num_layers=2,
        dropout=0.5,
        input_dropout=0.5,
        recurrent_dropout=0.5,
        dtype=np.float64,
        seed=seed,
        **kwargs,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_two_layers_with_the_same_seed_draw_the_same_masks_and_outputs(rng, kind):
    a, b, other = dropout_everywhere(kind, 5), dropout_everywhere(kind, 5), dropout_everywhere(kind, 6)
    x = rng.standard_normal((4, 3, 3))
    for _ in range(2):  # the streams stay together over several forwards
        y_a, _ = a(x)
        y_b, _ = b(x)
        np.testing.assert_array_equal(y_a, y_b)
        for m_a, m_b in zip(all_masks(a), all_masks(b)):
            np.testing.assert_array_equal(m_a, m_b)
    other(x)
    assert any(not np.array_equal(m_a, m_o) for m_a, m_o in zip(all_masks(a), all_masks(other)))


@pytest.mark.parametrize("kind", KINDS)
def test_consecutive_training_forwards_draw_fresh_masks(rng, kind):
    layer = dropout_everywhere(kind, 5)
    x = rng.standard_normal((4, 3, 3))
    y1, _ = layer(x)
    first = all_masks(layer)
    y2, _ = layer(x)
    assert all(not np.array_equal(m1, m2) for m1, m2 in zip(first, all_masks(layer)))
    assert not np.array_equal(y1, y2)


@pytest.mark.parametrize("kind", KINDS)
def test_reseed_dropout_restarts_the_mask_stream_and_leaves_the_weights(rng, kind):
    layer = dropout_everywhere(kind, 5)
    weights = layer.state_dict()
    x = rng.standard_normal((4, 3, 3))
    layer(x)  # advance the stream
    layer.reseed_dropout(3)
    y1, _ = layer(x)
    first = all_masks(layer)
    layer(x)
    layer.reseed_dropout(3)
    y2, _ = layer(x)
    np.testing.assert_array_equal(y1, y2)
    for m1, m2 in zip(first, all_masks(layer)):
        np.testing.assert_array_equal(m1, m2)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, weights[name], err_msg=name)
    # The stream reseed_dropout(3) starts is the one a layer constructed with seed=3 starts with.
    fresh = dropout_everywhere(kind, 3)
    fresh(x)
    for m1, m3 in zip(first, all_masks(fresh)):
        np.testing.assert_array_equal(m1, m3)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_does_not_change_the_weight_initialisation(kind):
    plain = make(kind, 3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=21)
    dropped = make(
        kind,
        3,
        4,
        num_layers=2,
        bidirectional=True,
        dropout=0.5,
        input_dropout=0.2,
        recurrent_dropout=0.7,
        dtype=np.float64,
        seed=21,
    )
    expected = plain.state_dict()
    state = dropped.state_dict()
    assert list(state) == list(expected)
    for name, value in state.items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


# ------------------------------------------------------------------------------------------------------------
# Bad probabilities


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan")], ids=["negative", "one", "above_one", "nan"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_probability_outside_zero_to_one_is_a_value_error_naming_the_argument(kind, option, value):
    message = "^" + re.escape(f"{option}: expected a probability in [0, 1), got {value}") + "$"
    with pytest.raises(ValueError, match=message):
        make(kind, 3, 4, num_layers=2, **{option: value})


@pytest.mark.parametrize("value", ["0.5", True, None], ids=["str", "bool", "none"])
@pytest.mark.parametrize("option", OPTIONS)
def test_probability_that_is_not_a_number_is_a_type_error_naming_the_argument(option, value):
    with pytest.raises(TypeError, match="^" + re.escape(f"{option}: expected a float in [0, 1), got")):
        make("lstm", 3, 4, num_layers=2, **{option: value})
