# SPDX-License-Identifier: MIT
"""lstm_ext.optim against torch.optim: the same parameters and gradient sequence give the same parameters
after every step (float64: both do the same arithmetic, so they agree to rounding), and bad settings raise
naming the argument."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from lstm_ext import optim

STEPS = 6


def _layer() -> lstm_ext.Linear:
    return lstm_ext.Linear(4, 3, dtype=np.float64, seed=0)


def _run_both(make_ours, make_theirs, rng):
    """Drive both optimizers with the same random gradients; the parameter trajectories of both."""
    torch = pytest.importorskip("torch")
    layer = _layer()
    params = {k: torch.tensor(v, requires_grad=True) for k, v in layer.state_dict().items()}
    opt, topt = make_ours(layer), make_theirs(list(params.values()))
    ours, theirs = [], []
    for _ in range(STEPS):
        for name, grad in layer.grads.items():
            grad[...] = rng.standard_normal(grad.shape)
            params[name].grad = torch.from_numpy(grad.copy())
        opt.step()
        topt.step()
        ours.append(layer.state_dict())
        theirs.append({k: v.detach().numpy().copy() for k, v in params.items()})
    return ours, theirs


TORCH_CASES = {
    "sgd": (dict(lr=0.1), "SGD"),
    "sgd_momentum": (dict(lr=0.1, momentum=0.9), "SGD"),
    "sgd_momentum_dampening_weight_decay": (
        dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
        "SGD",
    ),
    "sgd_nesterov": (dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), "SGD"),
    "adam": (dict(lr=0.01), "Adam"),
    "adam_betas_eps_weight_decay": (dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.1), "Adam"),
    "adam_amsgrad": (dict(lr=0.01, amsgrad=True), "Adam"),
    "adam_beta1_above_half": (dict(lr=0.01, betas=(0.3, 0.99)), "Adam"),
    "adamw": (dict(lr=0.01), "AdamW"),
    "adamw_weight_decay_amsgrad": (dict(lr=0.01, weight_decay=0.5, amsgrad=True), "AdamW"),
}


@pytest.mark.torch
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_each_step_matches_torch(rng, case):
    torch = pytest.importorskip("torch")
    kwargs, name = TORCH_CASES[case]
    ours, theirs = _run_both(
        lambda m: getattr(optim, name)(m, **kwargs), lambda p: getattr(torch.optim, name)(p, **kwargs), rng
    )
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-13, atol=1e-15, err_msg=f"step {step}, {key}")


def test_sgd_without_momentum_is_p_minus_lr_times_grad():
    layer = _layer()
    before = layer.state_dict()
    layer.grads["weight"][...] = 1.0
    optim.SGD(layer, lr=0.25).step()
    np.testing.assert_array_equal(layer.weight, before["weight"] - 0.25)
    np.testing.assert_array_equal(layer.bias, before["bias"])  # a zero gradient moves nothing


def test_first_adam_step_moves_each_parameter_by_lr():
    # Bias correction makes the first step lr * g / (|g| + eps'), i.e. lr in the gradient's direction.
    layer = _layer()
    before = layer.weight.copy()
    layer.grads["weight"][...] = np.linspace(-3, 3, 12).reshape(3, 4) + 0.1
    layer.grads["bias"][...] = 1.0  # with eps=0 a zero gradient would be 0/0, as in torch
    optim.Adam(layer, lr=0.01, eps=0.0).step()
    np.testing.assert_allclose(before - layer.weight, 0.01 * np.sign(layer.grads["weight"]), rtol=1e-12)


def test_step_updates_the_live_arrays_in_place():
    layer = _layer()
    weight = layer.weight
    layer.grads["weight"][...] = 1.0
    optim.SGD(layer, lr=0.1, momentum=0.5).step()
    assert layer.weight is weight


def test_parameters_loaded_after_construction_are_trained():
    layer = _layer()
    opt = optim.SGD(layer, lr=1.0)
    layer.load_state_dict({"weight": np.zeros((3, 4)), "bias": np.zeros(3)})  # new arrays
    layer.grads["weight"][...] = 1.0
    opt.step()
    np.testing.assert_array_equal(layer.weight, -np.ones((3, 4)))


def test_zero_grad_clears_every_owner():
    a, b = _layer(), _layer()
    for layer in (a, b):
        layer.grads["weight"][...] = 1.0
    optim.Adam([a, b]).zero_grad()
    assert not a.grads["weight"].any() and not b.grads["weight"].any()


def test_a_float32_layer_keeps_its_dtype():
    layer = lstm_ext.Linear(2, 2, seed=0)
    layer.grads["weight"][...] = 1.0
    optim.Adam(layer).step()
    optim.SGD(layer, lr=0.1, momentum=0.9).step()
    assert layer.weight.dtype == np.float32


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: optim.SGD(m, lr=-0.1), "lr: expected a float >= 0, got -0.1"),
        (lambda m: optim.SGD(m, lr=0.1, momentum=-1), "momentum: expected a float >= 0, got -1"),
        (
            lambda m: optim.SGD(m, lr=0.1, weight_decay=-1e-3),
            "weight_decay: expected a float >= 0, got -0.001",
        ),
        (lambda m: optim.SGD(m, lr=0.1, nesterov=True), "nesterov: needs momentum > 0 and dampening == 0"),
        (
            lambda m: optim.SGD(m, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
            "nesterov: needs momentum > 0",
        ),
        (lambda m: optim.Adam(m, lr=float("nan")), "lr: expected a float >= 0, got nan"),
        (lambda m: optim.Adam(m, betas=(0.9, 1.0)), r"betas\[1\]: expected a float in \[0, 1\), got 1.0"),
        (lambda m: optim.Adam(m, betas=(-0.1, 0.9)), r"betas\[0\]: expected a float >= 0, got -0.1"),
        (lambda m: optim.Adam(m, eps=-1.0), "eps: expected a float >= 0, got -1.0"),
        (lambda m: optim.AdamW(m, weight_decay=-1.0), "weight_decay: expected a float >= 0, got -1.0"),
    ],
)
def test_bad_settings_raise_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make(_layer())


def test_passing_parameter_arrays_instead_of_the_model_explains_what_to_pass():
    layer = _layer()
    with pytest.raises(
        TypeError, match=r"params: expected a layer or model .* got ndarray .*pass the model itself"
    ):
        optim.SGD(layer.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="lr: expected a float >= 0, got str"):
        optim.SGD(layer, lr="0.1")
    with pytest.raises(ValueError, match="params: expected at least one layer or model, got an empty list"):
        optim.Adam([])
