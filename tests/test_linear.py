# SPDX-License-Identifier: MIT
"""Linear: torch's layout and initialisation, forward on any leading axes, gradients against finite
differences and torch, accumulation, and clear errors."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import FD_TOL, tol
from gradcheck import numerical_grad

LEADING = [(), (1,), (5,), (3, 4)]


@pytest.mark.parametrize("leading", LEADING, ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_match_finite_differences(rng, leading, bias):
    layer = lstm_ext.Linear(3, 2, bias=bias, dtype=np.float64, seed=0)
    x, dy = rng.standard_normal((*leading, 3)), rng.standard_normal((*leading, 2))
    y = layer(x)
    assert y.shape == (*leading, 2)
    dx = layer.backward(dy)

    def f(_):
        return float(np.vdot(layer(x, training=False), dy))

    np.testing.assert_allclose(
        dx, numerical_grad(lambda x_: np.vdot(layer(x_, training=False), dy), x), **FD_TOL
    )
    for name, param in layer.named_parameters():
        np.testing.assert_allclose(layer.grads[name], numerical_grad(f, param), **FD_TOL, err_msg=name)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_gradients_match_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    layer = lstm_ext.Linear(6, 4, dtype=dtype, seed=1)
    module = torch.nn.Linear(6, 4, dtype={np.float32: torch.float32, np.float64: torch.float64}[dtype])
    module.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x, dy = rng.standard_normal((2, 5, 6)).astype(dtype), rng.standard_normal((2, 5, 4)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer(x), ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(layer.grads["weight"], module.weight.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(layer.grads["bias"], module.bias.grad.numpy(), **tol(dtype))


def test_initialisation_is_torchs_uniform_bound_and_layout():
    layer = lstm_ext.Linear(400, 30, dtype=np.float64, seed=0)
    assert layer.weight.shape == (30, 400) and layer.bias.shape == (30,)
    bound = 1 / np.sqrt(400)
    assert np.abs(layer.weight).max() <= bound and np.abs(layer.weight).max() > 0.95 * bound
    assert np.abs(layer.bias).max() <= bound
    np.testing.assert_array_equal(lstm_ext.Linear(400, 30, dtype=np.float64, seed=0).weight, layer.weight)
    assert lstm_ext.Linear(2, 2, bias=False).bias is None
    assert [n for n, _ in lstm_ext.Linear(2, 2, bias=False).named_parameters()] == ["weight"]


def test_accumulate_adds_to_the_gradients_and_zero_grad_clears_them(rng):
    layer = lstm_ext.Linear(3, 2, dtype=np.float64, seed=0)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer(x)
    layer.backward(dy)
    once = layer.grads["weight"].copy()
    layer.backward(dy, accumulate=True)
    np.testing.assert_allclose(layer.grads["weight"], 2 * once)
    layer.backward(dy)  # overwrite, as LSTM.backward without accumulate
    np.testing.assert_allclose(layer.grads["weight"], once)
    layer.zero_grad()
    assert not layer.grads["weight"].any()


def test_bad_inputs_name_the_argument_and_shapes():
    layer = lstm_ext.Linear(3, 2, dtype=np.float64)
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3\) \(in_features=3\), got \(4, 5\)"):
        layer(np.zeros((4, 5)))
    with pytest.raises(TypeError, match="x: expected dtype float64, got float32"):
        layer(np.zeros((4, 3), dtype=np.float32))
    layer(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(4, 2\) \(the shape of y\), got \(4, 3\)"):
        layer.backward(np.zeros((4, 3)))
    layer.eval()
    layer(np.zeros((4, 3)))
    with pytest.raises(RuntimeError, match="backward: no training forward"):
        layer.backward(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="in_features: expected an int >= 1, got 0"):
        lstm_ext.Linear(0, 2)
