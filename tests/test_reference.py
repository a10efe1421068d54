# SPDX-License-Identifier: MIT
"""The NumPy reference is itself proven: its gradients against finite differences, its outputs and gradients
against torch float64. Everything else in the suite trusts it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FD_TOL, SHAPE_IDS, SHAPES, TINY_IDS, TINY_SHAPES, assert_close
from gradcheck import numerical_grad
from lstm_ext import reference


def random_problem(rng: np.random.Generator, shape: tuple[int, int, int, int], bias: bool = True) -> dict:
    """Float64 inputs, weights (scaled like torch's init) and output gradients for the reference."""
    steps, batch, inp, hidden = shape
    bound = 1.0 / np.sqrt(hidden)
    return {
        "x": rng.standard_normal((steps, batch, inp)),
        "h0": rng.standard_normal((batch, hidden)),
        "c0": rng.standard_normal((batch, hidden)),
        "w_ih": rng.uniform(-bound, bound, (4 * hidden, inp)),
        "w_hh": rng.uniform(-bound, bound, (4 * hidden, hidden)),
        "b_ih": rng.uniform(-bound, bound, 4 * hidden) if bias else None,
        "b_hh": rng.uniform(-bound, bound, 4 * hidden) if bias else None,
        "dy": rng.standard_normal((steps, batch, hidden)),
        "dh_n": rng.standard_normal((batch, hidden)),
        "dc_n": rng.standard_normal((batch, hidden)),
    }


FORWARD_ARGS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")


def loss(p: dict) -> float:
    """The scalar whose gradient lstm_backward computes for upstream gradients dy, dh_n, dc_n."""
    y, h_n, c_n, _ = reference.lstm_forward(*(p[k] for k in FORWARD_ARGS))
    return float(np.vdot(y, p["dy"]) + np.vdot(h_n, p["dh_n"]) + np.vdot(c_n, p["dc_n"]))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", TINY_SHAPES, ids=TINY_IDS)
def test_every_reference_gradient_matches_finite_differences(rng, shape, bias):
    p = random_problem(rng, shape, bias)
    _, _, _, cache = reference.lstm_forward(*(p[k] for k in FORWARD_ARGS))
    grads = reference.lstm_backward(cache, p["dy"], p["dh_n"], p["dc_n"])
    pairs = {"dx": "x", "dh0": "h0", "dc0": "c0", "weight_ih": "w_ih", "weight_hh": "w_hh"}
    if bias:
        pairs.update({"bias_ih": "b_ih", "bias_hh": "b_hh"})
    for grad_name, arg in pairs.items():
        expected = numerical_grad(lambda _: loss(p), p[arg])
        np.testing.assert_allclose(grads[grad_name], expected, err_msg=grad_name, **FD_TOL)
    if not bias:
        assert grads["bias_ih"] is None and grads["bias_hh"] is None


def test_missing_initial_states_and_output_gradients_mean_zeros(rng):
    p = random_problem(rng, (4, 3, 2, 5))
    zeros = np.zeros_like(p["h0"])
    y, h_n, c_n, cache = reference.lstm_forward(
        p["x"], None, None, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"]
    )
    y0, h0_n, c0_n, cache0 = reference.lstm_forward(
        p["x"], zeros, zeros, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"]
    )
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(h_n, h0_n)
    np.testing.assert_array_equal(c_n, c0_n)
    grads = reference.lstm_backward(cache, p["dy"])
    grads0 = reference.lstm_backward(cache0, p["dy"], zeros, zeros)
    for key in grads:
        np.testing.assert_array_equal(grads[key], grads0[key], err_msg=key)


def test_final_states_are_the_last_step():
    rng = np.random.default_rng(1)
    p = random_problem(rng, (6, 2, 3, 4))
    y, h_n, c_n, cache = reference.lstm_forward(*(p[k] for k in FORWARD_ARGS))
    np.testing.assert_array_equal(h_n, y[-1])
    np.testing.assert_array_equal(c_n, cache.cells[-1])


def test_reference_does_not_modify_its_inputs(rng):
    p = random_problem(rng, (3, 2, 2, 3))
    before = {k: v.copy() for k, v in p.items()}
    _, _, _, cache = reference.lstm_forward(*(p[k] for k in FORWARD_ARGS))
    reference.lstm_backward(cache, p["dy"], p["dh_n"], p["dc_n"])
    for key, value in before.items():
        np.testing.assert_array_equal(p[key], value, err_msg=key)


def test_saturated_gates_give_finite_results_without_overflow_warnings(rng):
    # pytest turns warnings into errors: an overflowing exp in the sigmoid would fail this test.
    p = random_problem(rng, (3, 2, 2, 3))
    p["x"] = p["x"] * 1e4
    y, _h_n, c_n, cache = reference.lstm_forward(*(p[k] for k in FORWARD_ARGS))
    grads = reference.lstm_backward(cache, p["dy"], p["dh_n"], p["dc_n"])
    assert np.isfinite(y).all() and np.isfinite(c_n).all()
    assert all(np.isfinite(g).all() for g in grads.values())


def test_sigmoid_is_exact_at_the_extremes_and_keeps_nan():
    z = np.array([-np.inf, -1000.0, 0.0, 1000.0, np.inf, np.nan])
    np.testing.assert_array_equal(reference.sigmoid(z)[:5], [0.0, 0.0, 0.5, 1.0, 1.0])
    assert np.isnan(reference.sigmoid(z)[5])
    w = np.linspace(-30, 30, 61)
    np.testing.assert_allclose(reference.sigmoid(w), 1.0 / (1.0 + np.exp(-w)), rtol=1e-14, atol=0)


def test_mismatched_weight_shape_is_a_value_error_naming_it(rng):
    p = random_problem(rng, (3, 2, 2, 3))
    with pytest.raises(ValueError, match=r"w_ih: expected shape \(12, 2\), got \(12, 3\)"):
        reference.lstm_forward(p["x"], None, None, np.zeros((12, 3)), p["w_hh"])


@pytest.mark.torch
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_reference_matches_torch_float64_outputs_and_gradients(rng, shape, bias):
    torch = pytest.importorskip("torch")
    p = random_problem(rng, shape, bias)
    y, h_n, c_n, cache = reference.lstm_forward(*(p[k] for k in FORWARD_ARGS))
    grads = reference.lstm_backward(cache, p["dy"], p["dh_n"], p["dc_n"])

    _steps, _batch, inp, hidden = shape
    module = torch.nn.LSTM(inp, hidden, bias=bias, dtype=torch.float64)
    state = {"weight_ih_l0": p["w_ih"], "weight_hh_l0": p["w_hh"]}
    if bias:
        state.update({"bias_ih_l0": p["b_ih"], "bias_hh_l0": p["b_hh"]})
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    x = torch.from_numpy(p["x"]).requires_grad_()
    h0 = torch.from_numpy(p["h0"][None]).requires_grad_()
    c0 = torch.from_numpy(p["c0"][None]).requires_grad_()
    ty, (th_n, tc_n) = module(x, (h0, c0))
    total = (
        (ty * torch.from_numpy(p["dy"])).sum()
        + (th_n[0] * torch.from_numpy(p["dh_n"])).sum()
        + (tc_n[0] * torch.from_numpy(p["dc_n"])).sum()
    )
    total.backward()

    assert_close(y, ty.detach().numpy(), np.float64, "y")
    assert_close(h_n, th_n[0].detach().numpy(), np.float64, "h_n")
    assert_close(c_n, tc_n[0].detach().numpy(), np.float64, "c_n")
    assert_close(grads["dx"], x.grad.numpy(), np.float64, "dx")
    assert_close(grads["dh0"], h0.grad[0].numpy(), np.float64, "dh0")
    assert_close(grads["dc0"], c0.grad[0].numpy(), np.float64, "dc0")
    for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ()):
        assert_close(grads[name], getattr(module, name + "_l0").grad.numpy(), np.float64, name)
