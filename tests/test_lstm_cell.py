# SPDX-License-Identifier: MIT
"""lstm_ext.LSTMCell: one LSTM step, batched and unbatched, forward and backward."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import FD_TOL, assert_close, reference_lstm
from gradcheck import numerical_grad


def lstm_state_of(cell):
    """The cell's weights under LSTM's ``_l0`` keys."""
    return {name + "_l0": value for name, value in cell.state_dict().items()}


def random_step(rng, batch, inp, hidden, dtype=np.float64):
    lead = () if batch is None else (batch,)
    x = rng.standard_normal(lead + (inp,)).astype(dtype)
    hx = tuple(rng.standard_normal(lead + (hidden,)).astype(dtype) for _ in range(2))
    dh1, dc1 = (rng.standard_normal(lead + (hidden,)).astype(dtype) for _ in range(2))
    return x, hx, dh1, dc1


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(("batch", "inp", "hidden"), [(1, 1, 1), (3, 4, 7), (5, 9, 2)])
def test_cell_equals_one_lstm_step_with_the_same_weights(rng, batch, inp, hidden, bias):
    cell = lstm_ext.LSTMCell(inp, hidden, bias=bias, dtype=np.float64, seed=0)
    layer = lstm_ext.LSTM(inp, hidden, bias=bias, dtype=np.float64, seed=99)
    layer.load_state_dict(lstm_state_of(cell))
    x, hx, _, _ = random_step(rng, batch, inp, hidden)
    h1, c1 = cell(x, hx)
    y, (h_n, c_n) = layer(x[None], (hx[0][None], hx[1][None]))
    assert h1.shape == c1.shape == (batch, hidden)
    assert_close(h1, h_n[0], np.float64, "h1")
    assert_close(h1, y[0], np.float64, "h1 vs y")
    assert_close(c1, c_n[0], np.float64, "c1")


def test_cell_without_hx_starts_from_zero_states(rng):
    cell = lstm_ext.LSTMCell(3, 4, dtype=np.float64, seed=0)
    x, _, _, _ = random_step(rng, 2, 3, 4)
    h1, c1 = cell(x)
    h1z, c1z = cell(x, (np.zeros((2, 4)), np.zeros((2, 4))))
    assert_close(h1, h1z, np.float64, "h1")
    assert_close(c1, c1z, np.float64, "c1")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unbatched_cell_input_equals_a_batch_of_one(rng, dtype):
    cell = lstm_ext.LSTMCell(3, 5, dtype=dtype, seed=0)
    x, hx, dh1, dc1 = random_step(rng, None, 3, 5, dtype)
    h1, c1 = cell(x, hx)
    dx, (dh0, dc0) = cell.backward(dh1, dc1)
    assert h1.shape == c1.shape == (5,)
    assert dx.shape == (3,) and dh0.shape == dc0.shape == (5,)
    assert h1.dtype == dx.dtype == dtype
    grads = {k: v.copy() for k, v in cell.grads.items()}
    h1_b, c1_b = cell(x[None], (hx[0][None], hx[1][None]))
    dx_b, (dh0_b, dc0_b) = cell.backward(dh1[None], dc1[None])
    pairs = {"h1": (h1, h1_b), "c1": (c1, c1_b), "dx": (dx, dx_b), "dh0": (dh0, dh0_b), "dc0": (dc0, dc0_b)}
    for what, (got, batched) in pairs.items():
        assert_close(got, batched[0], dtype, what)
    for name, value in cell.grads.items():
        assert_close(grads[name], value, dtype, name)


@pytest.mark.parametrize("with_dc1", [True, False], ids=["dc1", "no_dc1"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batch", [None, 1, 4], ids=["unbatched", "N1", "N4"])
def test_cell_backward_matches_the_reference(rng, batch, bias, with_hx, with_dc1):
    inp, hidden = 3, 5
    cell = lstm_ext.LSTMCell(inp, hidden, bias=bias, dtype=np.float64, seed=0)
    x, hx, dh1, dc1 = random_step(rng, batch, inp, hidden)
    hx = hx if with_hx else None
    dc1 = dc1 if with_dc1 else None
    cell(x, hx)
    dx, (dh0, dc0) = cell.backward(dh1, dc1)

    # The reference LSTM over T=1 with the state as the output gradient of the last step.
    as_seq = lambda a: None if a is None else a.reshape(1, -1, hidden)
    x_seq = x.reshape(1, -1, inp)
    hx_seq = None if hx is None else (as_seq(hx[0]), as_seq(hx[1]))
    expected = reference_lstm(
        lstm_state_of(cell),
        x_seq,
        hx_seq,
        dy=np.zeros((1, x_seq.shape[1], hidden)),
        dhx=(as_seq(dh1), as_seq(dc1)),
    )
    assert_close(dx, expected["dx"].reshape(x.shape), np.float64, "dx")
    assert_close(dh0, expected["dh0"].reshape(dh1.shape), np.float64, "dh0")
    assert_close(dc0, expected["dc0"].reshape(dh1.shape), np.float64, "dc0")
    grads = cell.grads
    assert sorted(grads) == sorted(cell.state_dict())
    for name, value in grads.items():
        assert_close(value, expected[name + "_l0"], np.float64, name)


def test_cell_gradients_match_finite_differences(rng):
    cell = lstm_ext.LSTMCell(2, 3, dtype=np.float64, seed=0)
    x, hx, dh1, dc1 = random_step(rng, 2, 2, 3)
    cell(x, hx)
    dx, (dh0, dc0) = cell.backward(dh1, dc1)
    grads = {k: v.copy() for k, v in cell.grads.items()}

    def loss(_=None):
        h1, c1 = cell(x, hx)
        return float(np.vdot(h1, dh1) + np.vdot(c1, dc1))

    np.testing.assert_allclose(dx, numerical_grad(loss, x), err_msg="dx", **FD_TOL)
    np.testing.assert_allclose(dh0, numerical_grad(loss, hx[0]), err_msg="dh0", **FD_TOL)
    np.testing.assert_allclose(dc0, numerical_grad(loss, hx[1]), err_msg="dc0", **FD_TOL)
    for name, _ in cell.named_parameters():
        np.testing.assert_allclose(
            grads[name], numerical_grad(loss, getattr(cell, name)), err_msg=name, **FD_TOL
        )


def test_cell_steps_chained_equal_an_lstm_over_the_sequence(rng):
    cell = lstm_ext.LSTMCell(3, 4, dtype=np.float64, seed=0)
    layer = lstm_ext.LSTM(3, 4, dtype=np.float64, seed=1)
    layer.load_state_dict(lstm_state_of(cell))
    x = rng.standard_normal((6, 2, 3))
    y, (h_n, c_n) = layer(x)
    hx = None
    for t in range(6):
        hx = cell(x[t].copy(), hx)
        assert_close(hx[0], y[t], np.float64, f"h at step {t}")
    assert_close(hx[0], h_n[0], np.float64, "h_n")
    assert_close(hx[1], c_n[0], np.float64, "c_n")


def test_cell_state_dict_has_torch_keys_and_shapes():
    cell = lstm_ext.LSTMCell(3, 5, dtype=np.float64)
    state = cell.state_dict()
    assert list(state) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert [v.shape for v in state.values()] == [(20, 3), (20, 5), (20,), (20,)]
    assert list(lstm_ext.LSTMCell(3, 5, bias=False).state_dict()) == ["weight_ih", "weight_hh"]
