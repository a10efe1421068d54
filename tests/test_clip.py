# SPDX-License-Identifier: MIT
"""clip_grad_norm_ and clip_grad_value_ against torch.nn.utils: the total norm returned, the gradients
scaled in place (with torch's 1e-6 in the coefficient), every norm type including inf."""

from __future__ import annotations

import math

import lstm_ext
import numpy as np
import pytest


def _model_with_grads(rng, scale: float) -> lstm_ext.Sequential:
    model = lstm_ext.Sequential(
        lstm_ext.LSTM(3, 4, dtype=np.float64, seed=0), lstm_ext.Linear(4, 2, dtype=np.float64)
    )
    for grad in model.grads.values():
        grad[...] = rng.standard_normal(grad.shape) * scale
    return model


@pytest.mark.torch
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(rng, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    model = _model_with_grads(rng, 2.0)
    tensors = []
    for grad in model.grads.values():
        t = torch.zeros(grad.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.from_numpy(grad.copy())
        tensors.append(t)
    total = lstm_ext.clip_grad_norm_(model, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type)
    assert total == pytest.approx(ttotal.item(), rel=1e-13)
    for grad, t in zip(model.grads.values(), tensors):
        np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-13, atol=1e-16)


def test_clipped_norm_is_max_norm_up_to_torchs_eps(rng):
    model = _model_with_grads(rng, 1.0)
    total = lstm_ext.clip_grad_norm_(model, 0.1)
    assert total > 0.1
    after = math.sqrt(sum(float(np.vdot(g, g)) for g in model.grads.values()))
    assert after == pytest.approx(0.1 * total / (total + 1e-6), rel=1e-12)


def test_small_gradients_are_left_alone(rng):
    model = _model_with_grads(rng, 1e-3)
    before = {k: v.copy() for k, v in model.grads.items()}
    lstm_ext.clip_grad_norm_(model, 10.0)
    for name, grad in model.grads.items():
        np.testing.assert_array_equal(grad, before[name])


@pytest.mark.torch
def test_clip_grad_value_matches_torch(rng):
    torch = pytest.importorskip("torch")
    model = _model_with_grads(rng, 2.0)
    expected = [torch.from_numpy(g.copy()).clamp_(-0.7, 0.7).numpy() for g in model.grads.values()]
    assert lstm_ext.clip_grad_value_(model, 0.7) is None
    for grad, want in zip(model.grads.values(), expected):
        np.testing.assert_array_equal(grad, want)


def test_gradient_arrays_can_be_passed_directly():
    grads = [np.full(4, 3.0), np.full(9, 4.0 / 3.0)]  # norms 6 and 4
    assert lstm_ext.clip_grad_norm_(grads, 1.0, norm_type="inf") == 3.0
    assert lstm_ext.clip_grad_norm_(np.ones(4), 100.0) == 2.0


def test_nonfinite_norm_raises_only_when_asked_and_leaves_the_gradients():
    grads = [np.array([1.0, np.inf])]
    with pytest.raises(
        RuntimeError, match="clip_grad_norm_: the total norm of order 2.0 of the gradients is inf"
    ):
        lstm_ext.clip_grad_norm_(grads, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(grads[0], [1.0, np.inf])
    assert lstm_ext.clip_grad_norm_(grads, 1.0) == math.inf
    np.testing.assert_array_equal(grads[0], [0.0, np.nan])  # torch's coefficient 0: inf * 0 is NaN


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: lstm_ext.clip_grad_norm_(g, -1.0), "max_norm: expected a float >= 0, got -1.0"),
        (
            lambda g: lstm_ext.clip_grad_norm_(g, 1.0, norm_type=0),
            "norm_type: expected a float > 0 or inf, got 0.0",
        ),
        (lambda g: lstm_ext.clip_grad_value_(g, -0.5), "clip_value: expected a float >= 0, got -0.5"),
    ],
)
def test_bad_arguments_raise_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call([np.ones(3)])


def test_something_without_gradients_is_a_type_error():
    with pytest.raises(TypeError, match="parameters: expected a layer or model"):
        lstm_ext.clip_grad_norm_([object()], 1.0)
