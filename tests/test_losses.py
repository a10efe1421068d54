# SPDX-License-Identifier: MIT
"""mse_loss and cross_entropy: values and gradients against central finite differences and torch, stability
for large logits, and bad targets that raise naming the argument and the shapes."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import FD_TOL
from gradcheck import numerical_grad

REDUCTIONS = ["mean", "sum", "none"]


def _scalar(loss) -> float:
    return float(np.sum(loss))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1,), (5, 3), (2, 4, 1)])
def test_mse_gradient_matches_finite_differences(rng, reduction, shape):
    x, t = rng.standard_normal(shape), rng.standard_normal(shape)
    _, grad = lstm_ext.mse_loss(x, t, reduction)
    np.testing.assert_allclose(
        grad, numerical_grad(lambda x_: _scalar(lstm_ext.mse_loss(x_, t, reduction)[0]), x), **FD_TOL
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1, 1), (6, 4), (3,)])
def test_cross_entropy_gradient_matches_finite_differences(rng, reduction, shape):
    x = rng.standard_normal(shape) * 3
    t = rng.integers(0, shape[-1], size=shape[:-1])
    _, grad = lstm_ext.cross_entropy(x, t, reduction)
    fd = numerical_grad(lambda x_: _scalar(lstm_ext.cross_entropy(x_, t, reduction)[0]), x)
    np.testing.assert_allclose(grad, fd, **FD_TOL)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_and_gradients_match_torch(rng, reduction, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    x = (rng.standard_normal((7, 5)) * 4).astype(dtype)
    target_cls = rng.integers(0, 5, size=7)
    target_reg = rng.standard_normal((7, 5)).astype(dtype)
    for ours_fn, theirs_fn, target in (
        (lstm_ext.cross_entropy, F.cross_entropy, target_cls),
        (lstm_ext.mse_loss, F.mse_loss, target_reg),
    ):
        loss, grad = ours_fn(x, target, reduction)
        tx = torch.tensor(x, requires_grad=True)
        tloss = theirs_fn(tx, torch.from_numpy(target), reduction=reduction)
        tloss.sum().backward()
        np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=rtol, atol=1e-6 * (dtype == np.float32))
        np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=rtol, atol=1e-7 * (dtype == np.float32))
        assert grad.dtype == dtype


def test_cross_entropy_is_finite_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4 + 1.0, -1e4]])
    loss, grad = lstm_ext.cross_entropy(x, np.array([1, 1]), reduction="none")
    np.testing.assert_allclose(loss, [1e4, np.log1p(2 * np.exp(-1.0))], rtol=1e-12)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)  # softmax sums to 1, minus the one-hot


def test_mean_reductions_return_floats():
    loss, _ = lstm_ext.cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    assert isinstance(loss, float) and loss == pytest.approx(np.log(4))
    loss, _ = lstm_ext.mse_loss(np.ones(3, dtype=np.float32), np.zeros(3))
    assert isinstance(loss, float) and loss == 1.0


def test_wrong_target_shape_names_argument_and_shapes():
    with pytest.raises(
        ValueError,
        match=r"target: expected shape \(4,\) \(one class index per row of input "
        r"\(4, 3\)\), got \(4, 1\)",
    ):
        lstm_ext.cross_entropy(np.zeros((4, 3)), np.zeros((4, 1), dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"target: expected shape \(4, 3\) \(the shape of input\), got \(4,\)"
    ):
        lstm_ext.mse_loss(np.zeros((4, 3)), np.zeros(4))


def test_bad_class_indices_and_kinds_raise():
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 3\), got 3"):
        lstm_ext.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 3\), got -1"):
        lstm_ext.cross_entropy(np.zeros((2, 3)), np.array([-1, 0]))
    with pytest.raises(TypeError, match="target: expected integer class indices, got dtype float64"):
        lstm_ext.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="input: expected dtype float32 or float64, got int64"):
        lstm_ext.mse_loss(np.zeros(2, dtype=np.int64), np.zeros(2))
    with pytest.raises(ValueError, match=r"input: expected logits of shape \(N, C\) or \(C,\)"):
        lstm_ext.cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"reduction: expected one of \('mean', 'sum', 'none'\), got 'avg'"):
        lstm_ext.mse_loss(np.zeros(2), np.zeros(2), reduction="avg")
