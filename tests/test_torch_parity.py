# SPDX-License-Identifier: MIT
"""lstm_ext against torch.nn.LSTM / torch.nn.LSTMCell with the same weights, in float32 and float64:
outputs, final states and every gradient."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import (
    DTYPES,
    SHAPE_IDS,
    SHAPES,
    assert_close,
    load_from_torch,
    make_lstm_inputs,
    torch_cell_like,
    torch_lstm_like,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

LAYOUTS = ["time_major", "batch_first", "unbatched"]


def leaf(a):
    """A torch leaf tensor that shares nothing with `a` and records its gradient."""
    return torch.from_numpy(np.array(a)).requires_grad_()


def torch_lstm_run(module, x, hx, dy, dhx):
    """Forward and backward through torch; hx=None is run as zeros so that dh0/dc0 exist."""
    xt = leaf(x)
    if hx is None:
        hidden = module.hidden_size
        state_shape = (1, hidden) if x.ndim == 2 else (1, x.shape[0 if module.batch_first else 1], hidden)
        hx = (np.zeros(state_shape, dtype=x.dtype), np.zeros(state_shape, dtype=x.dtype))
    h0, c0 = leaf(hx[0]), leaf(hx[1])
    y, (h_n, c_n) = module(xt, (h0, c0))
    total = (y * torch.from_numpy(dy)).sum()
    if dhx is not None:
        if dhx[0] is not None:
            total = total + (h_n * torch.from_numpy(dhx[0])).sum()
        if dhx[1] is not None:
            total = total + (c_n * torch.from_numpy(dhx[1])).sum()
    total.backward()
    out = {
        "y": y.detach().numpy(),
        "h_n": h_n.detach().numpy(),
        "c_n": c_n.detach().numpy(),
        "dx": xt.grad.numpy(),
        "dh0": h0.grad.numpy(),
        "dc0": c0.grad.numpy(),
    }
    for name, param in module.named_parameters():
        out[name] = param.grad.numpy()
    return out


def check_lstm_parity(rng, shape, layout, dtype, with_hx=True, dhx_mode="both", bias=True):
    _, _, inp, hidden = shape
    batch_first = layout == "batch_first"
    layer = lstm_ext.LSTM(inp, hidden, bias=bias, batch_first=batch_first, dtype=dtype, seed=3)
    module = torch_lstm_like(layer, batch_first=batch_first)
    x, hx, dy, dhx = make_lstm_inputs(
        rng, shape, batch_first=batch_first, unbatched=layout == "unbatched", with_hx=with_hx, dtype=dtype
    )
    dhx = {"both": dhx, "none": None, "h_only": (dhx[0], None), "c_only": (None, dhx[1])}[dhx_mode]

    y, (h_n, c_n) = layer(x, hx)
    dx, (dh0, dc0) = layer.backward(dy, dhx)
    expected = torch_lstm_run(module, x, hx, dy, dhx)

    assert_close(y, expected["y"], dtype, "y")
    assert_close(h_n, expected["h_n"], dtype, "h_n")
    assert_close(c_n, expected["c_n"], dtype, "c_n")
    assert_close(dx, expected["dx"], dtype, "dx")
    assert_close(dh0, expected["dh0"], dtype, "dh0")
    assert_close(dc0, expected["dc0"], dtype, "dc0")
    grads = layer.grads
    assert sorted(grads) == sorted(name for name, _ in module.named_parameters())
    for name, value in grads.items():
        assert_close(value, expected[name], dtype, name)


@pytest.mark.parametrize("with_hx", [True, False], ids=["hx_dhx", "no_hx_no_dhx"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_outputs_states_and_gradients_match_torch(rng, dtype, shape, layout, with_hx):
    check_lstm_parity(rng, shape, layout, dtype, with_hx, "both" if with_hx else "none")


@pytest.mark.parametrize("dhx_mode", ["none", "h_only", "c_only"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_partial_dhx_matches_torch(rng, dtype, dhx_mode):
    check_lstm_parity(rng, (5, 3, 4, 7), "time_major", dtype, True, dhx_mode)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_layer_without_bias_matches_torch(rng, dtype, shape, layout):
    check_lstm_parity(rng, shape, layout, dtype, bias=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_weights_loaded_from_torch_give_torch_outputs(rng, dtype):
    module = torch.nn.LSTM(4, 6, dtype={np.float32: torch.float32, np.float64: torch.float64}[dtype])
    layer = lstm_ext.LSTM(4, 6, dtype=dtype, seed=0)
    load_from_torch(layer, module)
    x = rng.standard_normal((5, 2, 4)).astype(dtype)
    y, (h_n, c_n) = layer(x)
    with torch.no_grad():
        ty, (th_n, tc_n) = module(torch.from_numpy(x))
    assert_close(y, ty.numpy(), dtype, "y")
    assert_close(h_n, th_n.numpy(), dtype, "h_n")
    assert_close(c_n, tc_n.numpy(), dtype, "c_n")


def test_a_long_float32_sequence_stays_within_tolerance_of_torch(rng):
    check_lstm_parity(rng, (64, 2, 5, 8), "time_major", np.float32)


# ---- LSTMCell ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("batch", [None, 1, 4], ids=["unbatched", "N1", "N4"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_cell_forward_and_backward_match_torch(rng, dtype, batch, with_hx, bias):
    inp, hidden = 3, 5
    cell = lstm_ext.LSTMCell(inp, hidden, bias=bias, dtype=dtype, seed=4)
    module = torch_cell_like(cell)
    lead = () if batch is None else (batch,)
    x = rng.standard_normal(lead + (inp,)).astype(dtype)
    hx = tuple(rng.standard_normal(lead + (hidden,)).astype(dtype) for _ in range(2)) if with_hx else None
    dh1, dc1 = (rng.standard_normal(lead + (hidden,)).astype(dtype) for _ in range(2))

    h1, c1 = cell(x, hx)
    dx, (dh0, dc0) = cell.backward(dh1, dc1)

    xt = leaf(x)
    h0t, c0t = (leaf(a) for a in (hx if with_hx else (np.zeros(lead + (hidden,), dtype),) * 2))
    th1, tc1 = module(xt, (h0t, c0t))
    ((th1 * torch.from_numpy(dh1)).sum() + (tc1 * torch.from_numpy(dc1)).sum()).backward()

    assert_close(h1, th1.detach().numpy(), dtype, "h1")
    assert_close(c1, tc1.detach().numpy(), dtype, "c1")
    assert_close(dx, xt.grad.numpy(), dtype, "dx")
    assert_close(dh0, h0t.grad.numpy(), dtype, "dh0")
    assert_close(dc0, c0t.grad.numpy(), dtype, "dc0")
    grads = cell.grads
    assert sorted(grads) == sorted(name for name, _ in module.named_parameters())
    for name, param in module.named_parameters():
        assert_close(grads[name], param.grad.numpy(), dtype, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_cell_backward_without_dc1_matches_torch(rng, dtype):
    cell = lstm_ext.LSTMCell(4, 6, dtype=dtype, seed=5)
    module = torch_cell_like(cell)
    x = rng.standard_normal((3, 4)).astype(dtype)
    hx = tuple(rng.standard_normal((3, 6)).astype(dtype) for _ in range(2))
    dh1 = rng.standard_normal((3, 6)).astype(dtype)
    cell(x, hx)
    dx, (dh0, dc0) = cell.backward(dh1)
    xt, h0t, c0t = leaf(x), leaf(hx[0]), leaf(hx[1])
    th1, _ = module(xt, (h0t, c0t))
    (th1 * torch.from_numpy(dh1)).sum().backward()
    assert_close(dx, xt.grad.numpy(), dtype, "dx")
    assert_close(dh0, h0t.grad.numpy(), dtype, "dh0")
    assert_close(dc0, c0t.grad.numpy(), dtype, "dc0")
