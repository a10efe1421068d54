# SPDX-License-Identifier: MIT
"""Stacked (num_layers > 1) and bidirectional LSTMs: torch's parameter names, parity with torch.nn.LSTM of
outputs, final states and every gradient, and float64 finite differences."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import FD_TOL, assert_close
from gradcheck import numerical_grad

GRID = [  # (T, N, I, H, num_layers, bidirectional)
    (1, 1, 1, 1, 2, True),
    (5, 3, 4, 7, 1, True),
    (6, 2, 3, 5, 2, False),
    (4, 5, 6, 3, 3, True),
    (9, 1, 2, 4, 3, False),
]
GRID_IDS = ["T{}N{}I{}H{}L{}{}".format(*g[:5], "bi" if g[5] else "") for g in GRID]


def test_parameter_names_and_shapes_follow_torch():
    layer = lstm_ext.LSTM(3, 5, num_layers=2, bidirectional=True)
    expected = {}
    for layer_index, width in ((0, 3), (1, 10)):
        for sfx in ("", "_reverse"):
            expected[f"weight_ih_l{layer_index}{sfx}"] = (20, width)
            expected[f"weight_hh_l{layer_index}{sfx}"] = (20, 5)
            expected[f"bias_ih_l{layer_index}{sfx}"] = (20,)
            expected[f"bias_hh_l{layer_index}{sfx}"] = (20,)
    assert {k: v.shape for k, v in layer.state_dict().items()} == expected
    assert {k: v.shape for k, v in layer.grads.items()} == expected


@pytest.mark.parametrize("bad", [0, -1])
def test_num_layers_below_one_is_rejected(bad):
    with pytest.raises(ValueError, match="num_layers"):
        lstm_ext.LSTM(3, 5, num_layers=bad)


def test_state_of_wrong_layer_count_names_argument_and_shapes():
    layer = lstm_ext.LSTM(3, 5, num_layers=2, bidirectional=True)
    h = np.zeros((2, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"hx\[0\].*\(4, 4, 5\).*\(2, 4, 5\)"):
        layer(np.zeros((6, 4, 3), np.float32), (h, h))


def _torch_run(torch, layer, x, hx, dy, dhx, batch_first):
    module = torch.nn.LSTM(
        layer.input_size, layer.hidden_size, num_layers=layer.num_layers, bias=layer.bias,
        batch_first=batch_first, bidirectional=layer.bidirectional,
    ).to(torch.float64 if x.dtype == np.float64 else torch.float32)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    leaves = [torch.from_numpy(np.array(a)).requires_grad_() for a in (x, *hx)]
    y, (h_n, c_n) = module(leaves[0], (leaves[1], leaves[2]))
    total = (y * torch.from_numpy(dy)).sum() + (h_n * torch.from_numpy(dhx[0])).sum()
    total = total + (c_n * torch.from_numpy(dhx[1])).sum()
    total.backward()
    out = {"y": y, "h_n": h_n, "c_n": c_n, "dx": leaves[0].grad, "dh0": leaves[1].grad, "dc0": leaves[2].grad}
    out.update({name: p.grad for name, p in module.named_parameters()})
    return {k: v.detach().numpy() for k, v in out.items()}


@pytest.mark.torch
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("grid", GRID, ids=GRID_IDS)
def test_stacked_and_bidirectional_match_torch(rng, grid, dtype, batch_first):
    torch = pytest.importorskip("torch")
    steps, batch, inp, hidden, layers, bidirectional = grid
    layer = lstm_ext.LSTM(inp, hidden, layers, batch_first=batch_first, bidirectional=bidirectional,
                          dtype=dtype, seed=1)
    d = 2 if bidirectional else 1
    x = rng.standard_normal((batch, steps, inp) if batch_first else (steps, batch, inp)).astype(dtype)
    hx = tuple(rng.standard_normal((layers * d, batch, hidden)).astype(dtype) for _ in range(2))
    y_shape = (batch, steps, d * hidden) if batch_first else (steps, batch, d * hidden)
    dy = rng.standard_normal(y_shape).astype(dtype)
    dhx = tuple(rng.standard_normal((layers * d, batch, hidden)).astype(dtype) for _ in range(2))

    y, (h_n, c_n) = layer(x, hx)
    dx, (dh0, dc0) = layer.backward(dy, dhx)
    want = _torch_run(torch, layer, x, hx, dy, dhx, batch_first)
    got = {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx, "dh0": dh0, "dc0": dc0, **layer.grads}
    assert sorted(got) == sorted(want)
    for name, value in got.items():
        assert_close(value, want[name], dtype, name)


@pytest.mark.torch
def test_unbatched_bidirectional_stack_matches_torch(rng):
    torch = pytest.importorskip("torch")
    layer = lstm_ext.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=2)
    x = rng.standard_normal((5, 3))
    y, (h_n, c_n) = layer(x)
    assert y.shape == (5, 8) and h_n.shape == (4, 4)
    dx, (dh0, dc0) = layer.backward(np.ones_like(y))
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt, _ = module(xt)
    yt.sum().backward()
    assert_close(y, yt.detach().numpy(), np.float64, "y")
    assert_close(dx, xt.grad.numpy(), np.float64, "dx")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_stacked_gradients_match_finite_differences(rng, bidirectional):
    layer = lstm_ext.LSTM(2, 3, num_layers=2, bidirectional=bidirectional, dtype=np.float64, seed=4)
    d = 2 if bidirectional else 1
    x = rng.standard_normal((3, 2, 2))
    h0, c0 = (rng.standard_normal((2 * d, 2, 3)) for _ in range(2))
    dy = rng.standard_normal((3, 2, d * 3))
    dh_n, dc_n = (rng.standard_normal((2 * d, 2, 3)) for _ in range(2))

    def loss() -> float:
        y, (h_n, c_n) = layer(x, (h0, c0))
        return float(np.vdot(y, dy) + np.vdot(h_n, dh_n) + np.vdot(c_n, dc_n))

    layer(x, (h0, c0))
    dx, (dh0, dc0) = layer.backward(dy, (dh_n, dc_n))
    grads = {k: v.copy() for k, v in layer.grads.items()}
    for name, analytic, array in (("dx", dx, x), ("dh0", dh0, h0), ("dc0", dc0, c0)):
        np.testing.assert_allclose(analytic, numerical_grad(lambda _: loss(), array), **FD_TOL, err_msg=name)
    for name, param in layer.named_parameters():
        np.testing.assert_allclose(grads[name], numerical_grad(lambda _: loss(), param), **FD_TOL, err_msg=name)
