# SPDX-License-Identifier: MIT
"""lstm_ext.LSTM backward: every gradient against the reference and against finite differences, and the
bookkeeping of ``grads`` (overwrite, accumulate, zero_grad)."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import (
    layout_inputs,
    FD_TOL,
    SHAPE_IDS,
    SHAPES,
    TINY_IDS,
    TINY_SHAPES,
    assert_close,
    reference_lstm,
)
from gradcheck import numerical_grad
from hypothesis import given, settings
from hypothesis import strategies as st

LAYOUTS = ["time_major", "batch_first", "unbatched"]


def make_layer(shape, layout="time_major", bias=True, dtype=np.float64, seed=0):
    _, _, inp, hidden = shape
    return lstm_ext.LSTM(inp, hidden, bias=bias, batch_first=layout == "batch_first", dtype=dtype, seed=seed)




def select_dhx(dhx, which):
    """dhx as the test case wants it: both, only dh_n, only dc_n, or None."""
    return {"both": dhx, "h_only": (dhx[0], None), "c_only": (None, dhx[1]), "none": None}[which]


def check_against_reference(layer, x, hx, dy, dhx, batch_first):
    layer(x, hx)
    dx, (dh0, dc0) = layer.backward(dy, dhx)
    expected = reference_lstm(layer.state_dict(), x, hx, batch_first=batch_first, dy=dy, dhx=dhx)
    assert_close(dx, expected["dx"], np.float64, "dx")
    assert_close(dh0, expected["dh0"], np.float64, "dh0")
    assert_close(dc0, expected["dc0"], np.float64, "dc0")
    grads = layer.grads
    assert sorted(grads) == sorted(layer.state_dict())
    for name in grads:
        assert_close(grads[name], expected[name], np.float64, name)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_every_gradient_matches_the_reference(rng, shape, layout, with_hx, bias):
    layer = make_layer(shape, layout, bias)
    x, hx, dy, dhx = layout_inputs(rng, shape, layout, with_hx)
    check_against_reference(layer, x, hx, dy, dhx, layout == "batch_first")


@pytest.mark.parametrize("which", ["none", "both", "h_only", "c_only"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_gradients_with_and_without_dhx_match_the_reference(rng, shape, which):
    layer = make_layer(shape)
    x, hx, dy, dhx = layout_inputs(rng, shape)
    check_against_reference(layer, x, hx, dy, select_dhx(dhx, which), False)


def test_dhx_none_equals_zero_dhx(rng):
    layer = make_layer((5, 3, 4, 7))
    x, hx, dy, dhx = layout_inputs(rng, (5, 3, 4, 7))
    layer(x, hx)
    dx, (dh0, dc0) = layer.backward(dy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    zeros = (np.zeros_like(dhx[0]), np.zeros_like(dhx[1]))
    dx_z, (dh0_z, dc0_z) = layer.backward(dy, zeros)
    assert_close(dx, dx_z, np.float64, "dx")
    assert_close(dh0, dh0_z, np.float64, "dh0")
    assert_close(dc0, dc0_z, np.float64, "dc0")
    for name, value in layer.grads.items():
        assert_close(value, grads[name], np.float64, name)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_have_the_shapes_and_dtype_of_what_they_differentiate(rng, layout, dtype):
    shape = (5, 3, 4, 7)
    layer = make_layer(shape, layout, dtype=dtype)
    for with_hx in (True, False):
        x, hx, dy, dhx = layout_inputs(rng, shape, layout, with_hx, dtype=dtype)
        layer(x, hx)
        dx, (dh0, dc0) = layer.backward(dy, dhx)
        state_shape = dhx[0].shape  # h0's shape, also when hx was None
        assert dx.shape == x.shape and dx.dtype == dtype
        assert dh0.shape == dc0.shape == state_shape
        assert dh0.dtype == dc0.dtype == dtype
        for name, value in layer.state_dict().items():
            assert layer.grads[name].shape == value.shape
            assert layer.grads[name].dtype == dtype


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.tuples(*(st.integers(1, 6) for _ in range(4))),
    layout=st.sampled_from(LAYOUTS),
    with_hx=st.booleans(),
    bias=st.booleans(),
    which=st.sampled_from(["none", "both", "h_only", "c_only"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes_and_options_match_the_reference(shape, layout, with_hx, bias, which, seed):
    rng = np.random.default_rng(seed)
    layer = make_layer(shape, layout, bias, seed=seed)
    x, hx, dy, dhx = layout_inputs(rng, shape, layout, with_hx)
    check_against_reference(layer, x, hx, dy, select_dhx(dhx, which), layout == "batch_first")


# ---- finite differences ------------------------------------------------------------------------------------


def fd_problem(rng, shape, layout, bias=True):
    layer = make_layer(shape, layout, bias)
    x, hx, dy, dhx = layout_inputs(rng, shape, layout)

    def loss(_=None):
        y, (h_n, c_n) = layer(x, hx)
        return float(np.vdot(y, dy) + np.vdot(h_n, dhx[0]) + np.vdot(c_n, dhx[1]))

    layer(x, hx)
    dx, (dh0, dc0) = layer.backward(dy, dhx)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    layer.eval()  # the perturbed forwards need no cache
    return layer, x, hx, loss, dx, dh0, dc0, grads


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", TINY_SHAPES, ids=TINY_IDS)
def test_dx_matches_finite_differences(rng, shape, layout):
    _, x, _, loss, dx, _, _, _ = fd_problem(rng, shape, layout)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), **FD_TOL)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", TINY_SHAPES, ids=TINY_IDS)
def test_dh0_and_dc0_match_finite_differences(rng, shape, layout):
    _, _, hx, loss, _, dh0, dc0, _ = fd_problem(rng, shape, layout)
    np.testing.assert_allclose(dh0, numerical_grad(loss, hx[0]), err_msg="dh0", **FD_TOL)
    np.testing.assert_allclose(dc0, numerical_grad(loss, hx[1]), err_msg="dc0", **FD_TOL)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", TINY_SHAPES, ids=TINY_IDS)
def test_weight_gradients_match_finite_differences(rng, shape, bias):
    layer, _, _, loss, _, _, _, grads = fd_problem(rng, shape, "time_major", bias)
    # The attributes are the live parameters: perturbing them in place perturbs the layer.
    for name, _ in layer.named_parameters():
        expected = numerical_grad(loss, getattr(layer, name))
        np.testing.assert_allclose(grads[name], expected, err_msg=name, **FD_TOL)


def test_dh0_and_dc0_without_hx_match_finite_differences_at_zero_states(rng):
    shape = (3, 2, 2, 3)
    layer = make_layer(shape)
    x, _, dy, dhx = layout_inputs(rng, shape, with_hx=False)
    layer(x)
    _, (dh0, dc0) = layer.backward(dy, dhx)
    h0, c0 = np.zeros((1, 2, 3)), np.zeros((1, 2, 3))

    def loss(_=None):
        y, (h_n, c_n) = layer(x, (h0, c0))
        return float(np.vdot(y, dy) + np.vdot(h_n, dhx[0]) + np.vdot(c_n, dhx[1]))

    np.testing.assert_allclose(dh0, numerical_grad(loss, h0), err_msg="dh0", **FD_TOL)
    np.testing.assert_allclose(dc0, numerical_grad(loss, c0), err_msg="dc0", **FD_TOL)


# ---- grads bookkeeping -------------------------------------------------------------------------------------


def test_backward_overwrites_grads_by_default(rng):
    layer = make_layer((4, 2, 3, 5))
    x, hx, dy, dhx = layout_inputs(rng, (4, 2, 3, 5))
    layer(x, hx)
    layer.backward(dy * 7.0, dhx)
    layer(x, hx)
    layer.backward(dy, dhx)
    expected = reference_lstm(layer.state_dict(), x, hx, dy=dy, dhx=dhx)
    for name, value in layer.grads.items():
        assert_close(value, expected[name], np.float64, name)


def test_accumulate_true_adds_to_the_existing_grads(rng):
    layer = make_layer((4, 2, 3, 5))
    x, hx, dy, dhx = layout_inputs(rng, (4, 2, 3, 5))
    x2, hx2, dy2, dhx2 = layout_inputs(rng, (4, 2, 3, 5))
    layer(x, hx)
    layer.backward(dy, dhx)
    layer(x2, hx2)
    dx2, (dh02, dc02) = layer.backward(dy2, dhx2, accumulate=True)
    first = reference_lstm(layer.state_dict(), x, hx, dy=dy, dhx=dhx)
    second = reference_lstm(layer.state_dict(), x2, hx2, dy=dy2, dhx=dhx2)
    for name, value in layer.grads.items():
        assert_close(value, first[name] + second[name], np.float64, name)
    # Input gradients are those of the last backward only: accumulation is for the parameters.
    assert_close(dx2, second["dx"], np.float64, "dx")
    assert_close(dh02, second["dh0"], np.float64, "dh0")
    assert_close(dc02, second["dc0"], np.float64, "dc0")


def test_accumulate_true_after_zero_grad_equals_a_plain_backward(rng):
    layer = make_layer((4, 2, 3, 5))
    x, hx, dy, dhx = layout_inputs(rng, (4, 2, 3, 5))
    layer(x, hx)
    layer.backward(dy, dhx)
    plain = {k: v.copy() for k, v in layer.grads.items()}
    layer.zero_grad()
    layer.backward(dy, dhx, accumulate=True)
    for name, value in layer.grads.items():
        assert_close(value, plain[name], np.float64, name)


def test_zero_grad_zeroes_every_gradient(rng):
    layer = make_layer((4, 2, 3, 5))
    x, hx, dy, dhx = layout_inputs(rng, (4, 2, 3, 5))
    layer(x, hx)
    layer.backward(dy, dhx)
    assert all(np.any(g != 0) for g in layer.grads.values())
    layer.zero_grad()
    assert sorted(layer.grads) == sorted(layer.state_dict())
    for name, value in layer.grads.items():
        assert not np.any(value), name


def test_grads_are_zero_before_any_backward():
    layer = lstm_ext.LSTM(3, 4, dtype=np.float64, seed=0)
    for name, value in layer.grads.items():
        assert value.shape == layer.state_dict()[name].shape
        assert not np.any(value), name


def test_repeated_backward_gives_the_same_result(rng):
    layer = make_layer((6, 3, 4, 5))
    x, hx, dy, dhx = layout_inputs(rng, (6, 3, 4, 5))
    layer(x, hx)
    dx1, (dh01, dc01) = layer.backward(dy, dhx)
    grads1 = {k: v.copy() for k, v in layer.grads.items()}
    dx2, (dh02, dc02) = layer.backward(dy, dhx)
    assert_close(dx2, dx1, np.float64, "dx")
    assert_close(dh02, dh01, np.float64, "dh0")
    assert_close(dc02, dc01, np.float64, "dc0")
    for name, value in layer.grads.items():
        assert_close(value, grads1[name], np.float64, name)


def test_backward_differentiates_the_last_training_forward(rng):
    layer = make_layer((4, 2, 3, 5))
    x, hx, dy, dhx = layout_inputs(rng, (4, 2, 3, 5))
    x2, hx2, _, _ = layout_inputs(rng, (4, 2, 3, 5))
    layer(x, hx)
    layer(x2, hx2)
    dx, _ = layer.backward(dy, dhx)
    expected = reference_lstm(layer.state_dict(), x2, hx2, dy=dy, dhx=dhx)
    assert_close(dx, expected["dx"], np.float64, "dx")


def test_bias_gradients_of_ih_and_hh_are_equal(rng):
    layer = make_layer((4, 2, 3, 5))
    x, hx, dy, dhx = layout_inputs(rng, (4, 2, 3, 5))
    layer(x, hx)
    layer.backward(dy, dhx)
    np.testing.assert_array_equal(layer.grads["bias_ih_l0"], layer.grads["bias_hh_l0"])


def test_backward_does_not_modify_its_layout_inputs(rng):
    layer = make_layer((4, 2, 3, 5))
    x, hx, dy, dhx = layout_inputs(rng, (4, 2, 3, 5))
    saved = [a.copy() for a in (x, *hx, dy, *dhx)]
    weights = layer.state_dict()
    layer(x, hx)
    layer.backward(dy, dhx)
    for before, after in zip(saved, (x, *hx, dy, *dhx)):
        np.testing.assert_array_equal(after, before)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, weights[name], err_msg=name)


def test_float32_gradients_are_close_to_float64(rng):
    shape = (6, 3, 4, 5)
    layer32 = make_layer(shape, dtype=np.float32)
    layer64 = make_layer(shape, dtype=np.float64)
    layer64.load_state_dict(layer32.state_dict())
    x, hx, dy, dhx = layout_inputs(rng, shape, dtype=np.float32)
    layer32(x, hx)
    dx, (dh0, dc0) = layer32.backward(dy, dhx)
    as64 = lambda a: a.astype(np.float64)
    layer64(as64(x), tuple(map(as64, hx)))
    dx64, (dh064, dc064) = layer64.backward(as64(dy), tuple(map(as64, dhx)))
    assert_close(dx, dx64, np.float32, "dx")
    assert_close(dh0, dh064, np.float32, "dh0")
    assert_close(dc0, dc064, np.float32, "dc0")
    for name, value in layer32.grads.items():
        assert_close(value, layer64.grads[name], np.float32, name)
