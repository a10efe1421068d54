# SPDX-License-Identifier: MIT
"""LSTMCell and GRUCell on the cell kernels: the fast path (ready arrays) against the general path, the
sequence layers over T=1, the float64 reference, finite differences and torch; and what a step keeps.

The cell kernels compute the products as matrix-vector products (GEMMs for N > 1) where the sequence kernels
use packed GEMMs, so the two agree to float rounding, not bitwise; the fast and general paths of a cell run
the same kernel on the same values and agree bitwise.
"""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import DTYPES, FD_TOL, assert_close, reference_lstm
from gradcheck import numerical_grad
from lstm_ext import reference_layers

KINDS = ["LSTMCell", "GRUCell"]
BATCHES = [None, 1, 3]
BATCH_IDS = ["unbatched", "N1", "N3"]


def make_cell(kind, inp=5, hidden=4, dtype=np.float64, **kwargs):
    return getattr(lstm_ext, kind)(inp, hidden, dtype=dtype, seed=0, **kwargs)


def step_data(rng, kind, batch, inp, hidden, dtype):
    lead = () if batch is None else (batch,)
    x = rng.standard_normal(lead + (inp,)).astype(dtype)
    states = tuple(rng.standard_normal(lead + (hidden,)).astype(dtype) for _ in range(2 if kind == "LSTMCell" else 1))
    grads = tuple(rng.standard_normal(lead + (hidden,)).astype(dtype) for _ in states)
    hx = states if kind == "LSTMCell" else states[0]
    return x, hx, grads


def run_step(cell, x, hx, grads, accumulate=False):
    """Forward and backward of one step: (outputs, input gradients, weight gradients copied)."""
    out = cell(x, hx)
    outputs = out if isinstance(out, tuple) else (out,)
    back = cell.backward(*grads, accumulate=accumulate)
    d_in = (back[0], *back[1]) if isinstance(back[1], tuple) else back
    return outputs, d_in, {k: v.copy() for k, v in cell.grads.items()}


def as_general(a):
    """The same values as a list: not an ndarray, so the cell takes its general (converting) path."""
    return None if a is None else a.tolist()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES, ids=BATCH_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_ready_arrays_and_converted_inputs_give_bitwise_equal_steps(rng, kind, batch, dtype):
    x, hx, grads = step_data(rng, kind, batch, 5, 4, dtype)
    fast = run_step(make_cell(kind, dtype=dtype), x, hx, grads)
    hx_general = tuple(as_general(s) for s in hx) if isinstance(hx, tuple) else as_general(hx)
    general = run_step(make_cell(kind, dtype=dtype), as_general(x), hx_general, tuple(as_general(g) for g in grads))
    for got, want in zip((*fast[0], *fast[1]), (*general[0], *general[1])):
        np.testing.assert_array_equal(got, want)
    for name in fast[2]:
        np.testing.assert_array_equal(fast[2][name], general[2][name], err_msg=name)


@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "zeros"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES, ids=BATCH_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_cell_step_equals_the_sequence_layer_over_one_step(rng, kind, batch, dtype, bias, with_hx):
    inp, hidden = 6, 5
    cell = make_cell(kind, inp, hidden, dtype, bias=bias)
    layer = getattr(lstm_ext, kind.removesuffix("Cell"))(inp, hidden, bias=bias, dtype=dtype, seed=1)
    layer.load_state_dict({name + "_l0": value for name, value in cell.state_dict().items()})
    x, hx, grads = step_data(rng, kind, batch, inp, hidden, dtype)
    hx = hx if with_hx else None
    outputs, d_in, cell_grads = run_step(cell, x, hx, grads)

    # The layer's states carry a leading layer axis, its input a time axis. Its input goes as a list: a layer's
    # one-step call on ndarrays runs the cell kernels too (test_layer_step.py), a list the sequence kernels.
    lead = lambda a: None if a is None else a[None]
    if kind == "LSTMCell":
        y, (h_n, c_n) = layer(x[None].tolist(), None if hx is None else (lead(hx[0]), lead(hx[1])))
        dx, (dh0, dc0) = layer.backward(np.zeros_like(y), (lead(grads[0]), lead(grads[1])))
        want_out, want_in = (h_n[0], c_n[0]), (dx[0], dh0[0], dc0[0])
    else:
        y, h_n = layer(x[None].tolist(), lead(hx))
        dx, dh0 = layer.backward(np.zeros_like(y), lead(grads[0]))
        want_out, want_in = (h_n[0],), (dx[0], dh0[0])
    for k, (got, want) in enumerate(zip((*outputs, *d_in), (*want_out, *want_in))):
        assert_close(got, want, dtype, f"result {k}")
    for name, value in layer.grads.items():
        assert_close(cell_grads[name.removesuffix("_l0")], value, dtype, name)


@pytest.mark.parametrize("batch", BATCHES, ids=BATCH_IDS)
def test_the_gru_cell_matches_the_float64_reference(rng, batch):
    cell = make_cell("GRUCell", 3, 4)
    x, h0, (dh1,) = step_data(rng, "GRUCell", batch, 3, 4, np.float64)
    h1 = cell(x, h0)
    dx, dh0 = cell.backward(dh1)
    s = cell.state_dict()
    rows = lambda a: a.reshape(-1, a.shape[-1])
    y, h_n, tape = reference_layers.gru_layer_forward(
        rows(x)[None], s["weight_ih"], s["weight_hh"], s["bias_ih"], s["bias_hh"], rows(h0))
    assert_close(h1, h_n.reshape(h1.shape), np.float64, "h1")
    expected = reference_layers.gru_layer_backward(tape, None, rows(dh1))
    assert_close(dx, expected["dx"].reshape(dx.shape), np.float64, "dx")
    assert_close(dh0, expected["dh0"].reshape(dh0.shape), np.float64, "dh0")
    names = {"weight_ih": "dw_ih", "weight_hh": "dw_hh", "bias_ih": "db_ih", "bias_hh": "db_hh"}
    for name, value in cell.grads.items():
        assert_close(value, expected[names[name]], np.float64, name)


@pytest.mark.parametrize("kind", KINDS)
def test_cell_gradients_match_finite_differences(rng, kind):
    cell = make_cell(kind, 3, 2)
    x, hx, grads = step_data(rng, kind, 2, 3, 2, np.float64)
    _, d_in, weight_grads = run_step(cell, x, hx, grads)
    states = hx if isinstance(hx, tuple) else (hx,)

    def loss(_=None):
        out = cell(x, hx)
        out = out if isinstance(out, tuple) else (out,)
        return float(sum(np.vdot(o, g) for o, g in zip(out, grads)))

    for what, got, wrt in zip(["dx", "dh0", "dc0"], d_in, (x, *states)):
        np.testing.assert_allclose(got, numerical_grad(loss, wrt), err_msg=what, **FD_TOL)
    for name, _ in cell.named_parameters():
        np.testing.assert_allclose(weight_grads[name], numerical_grad(loss, getattr(cell, name)), err_msg=name,
                                   **FD_TOL)


def test_the_lstm_cell_matches_the_float64_reference_with_an_omitted_state(rng):
    cell = make_cell("LSTMCell", 3, 4)
    x, _, (dh1, dc1) = step_data(rng, "LSTMCell", 2, 3, 4, np.float64)
    h1, c1 = cell(x)
    dx, (dh0, dc0) = cell.backward(dh1, dc1)
    state = {k + "_l0": v for k, v in cell.state_dict().items()}
    expected = reference_lstm(state, x[None], dy=np.zeros((1, 2, 4)), dhx=(dh1[None], dc1[None]))
    assert_close(h1, expected["h_n"][0], np.float64, "h1")
    assert_close(c1, expected["c_n"][0], np.float64, "c1")
    assert_close(dx, expected["dx"][0], np.float64, "dx")
    assert_close(dh0, expected["dh0"][0], np.float64, "dh0")
    assert_close(dc0, expected["dc0"][0], np.float64, "dc0")


@pytest.mark.torch
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "zeros"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_cell_step_matches_torch(rng, kind, dtype, with_hx):
    torch = pytest.importorskip("torch")
    cell = make_cell(kind, 6, 5, dtype)
    module = getattr(torch.nn, kind)(6, 5, dtype={np.float32: torch.float32, np.float64: torch.float64}[dtype])
    module.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
    x, hx, grads = step_data(rng, kind, 3, 6, 5, dtype)
    hx = hx if with_hx else None
    outputs, d_in, weight_grads = run_step(cell, x, hx, grads)

    tx = torch.from_numpy(x).requires_grad_()
    if hx is None:
        t_states = ()
        t_out = module(tx)
    else:
        t_states = tuple(torch.from_numpy(s).requires_grad_() for s in (hx if isinstance(hx, tuple) else (hx,)))
        t_out = module(tx, t_states if kind == "LSTMCell" else t_states[0])
    t_out = t_out if isinstance(t_out, tuple) else (t_out,)
    torch.autograd.backward(t_out, tuple(torch.from_numpy(g) for g in grads))
    for k, (got, want) in enumerate(zip(outputs, t_out)):
        assert_close(got, want.detach().numpy(), dtype, f"output {k}")
    assert_close(d_in[0], tx.grad.numpy(), dtype, "dx")
    for k, s in enumerate(t_states):
        assert_close(d_in[1 + k], s.grad.numpy(), dtype, f"state gradient {k}")
    for name, p in module.named_parameters():
        assert_close(weight_grads[name], p.grad.numpy(), dtype, name)


@pytest.mark.torch
@pytest.mark.parametrize("where", ["weight_hh", "bias_hh", "hx"])
@pytest.mark.parametrize("kind", KINDS)
def test_nan_propagates_as_in_torch_also_from_an_omitted_state(rng, kind, where):
    torch = pytest.importorskip("torch")
    cell = make_cell(kind, 3, 4)
    if where != "hx":
        getattr(cell, where)[1] = np.nan
    module = getattr(torch.nn, kind)(3, 4, dtype=torch.float64)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
    x, hx, _ = step_data(rng, kind, 2, 3, 4, np.float64)
    if where == "hx":
        first = hx[0] if isinstance(hx, tuple) else hx
        first[0, 2] = np.nan
    else:
        hx = None  # zeros: 0 * NaN is NaN in torch, and must be here too
    out = cell(x, hx)
    if hx is None:
        t_out = module(torch.from_numpy(x))
    else:
        t_hx = tuple(torch.from_numpy(s) for s in hx) if isinstance(hx, tuple) else torch.from_numpy(hx)
        t_out = module(torch.from_numpy(x), t_hx)
    for got, want in zip(out if isinstance(out, tuple) else (out,), t_out if isinstance(t_out, tuple) else (t_out,)):
        want = want.detach().numpy()
        assert np.isnan(want).any()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("kind", KINDS)
def test_changing_the_inputs_after_a_training_step_does_not_change_its_backward(rng, kind):
    cell = make_cell(kind)
    x, hx, grads = step_data(rng, kind, 2, 5, 4, np.float64)
    expected = run_step(cell, x, hx, grads)
    out = cell(x, hx)
    for a in (x, *(hx if isinstance(hx, tuple) else (hx,)), *(out if isinstance(out, tuple) else (out,))):
        a += 100.0  # the caller's inputs and the returned states, in place
    back = cell.backward(*grads)
    d_in = (back[0], *back[1]) if isinstance(back[1], tuple) else back
    for got, want in zip(d_in, expected[1]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_a_step_uses_the_weights_it_ran_with_after_load_state_dict(rng, kind):
    cell = make_cell(kind)
    x, hx, grads = step_data(rng, kind, 2, 5, 4, np.float64)
    expected = run_step(cell, x, hx, grads)
    other = make_cell(kind)
    other.load_state_dict({k: v * 2 for k, v in cell.state_dict().items()})
    cell(x, hx)
    cell.load_state_dict(other.state_dict())  # new arrays: the step keeps the old ones
    back = cell.backward(*grads)
    np.testing.assert_array_equal(back[0], expected[1][0])
    out_new = cell(x, hx)
    out_other = other(x, hx)
    for got, want in zip(out_new if isinstance(out_new, tuple) else (out_new,),
                         out_other if isinstance(out_other, tuple) else (out_other,)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_accumulate_adds_every_gradient_including_both_biases(rng, kind):
    cell = make_cell(kind)
    x, hx, grads = step_data(rng, kind, 2, 5, 4, np.float64)
    _, _, once = run_step(cell, x, hx, grads)
    cell.backward(*grads, accumulate=True)
    assert sorted(cell.grads) == sorted(cell.state_dict())
    for name, value in cell.grads.items():
        np.testing.assert_array_equal(value, 2 * once[name], err_msg=name)
    if kind == "LSTMCell":
        np.testing.assert_array_equal(once["bias_ih"], once["bias_hh"])


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_are_written_into_the_live_arrays(rng, kind):
    cell = make_cell(kind)
    live = cell.grads
    x, hx, grads = step_data(rng, kind, 2, 5, 4, np.float64)
    run_step(cell, x, hx, grads)
    for name, value in cell.grads.items():
        assert value is live[name]
        assert np.any(value != 0)


@pytest.mark.parametrize("kind", KINDS)
def test_an_eval_step_after_training_drops_the_tape(rng, kind):
    cell = make_cell(kind)
    x, hx, grads = step_data(rng, kind, 2, 5, 4, np.float64)
    cell(x, hx)
    assert cell.cache_nbytes > 0
    cell(x, hx, training=False)
    assert cell.cache_nbytes == 0
    with pytest.raises(RuntimeError, match="backward"):
        cell.backward(*grads)


@pytest.mark.parametrize("kind", KINDS)
def test_omitted_states_are_zeros_the_caller_never_sees(rng, kind):
    cell = make_cell(kind)
    x, _, _ = step_data(rng, kind, 2, 5, 4, np.float64)
    out = cell(x)
    zeros = (np.zeros((2, 4)),) * (2 if kind == "LSTMCell" else 1)
    want = cell(x, zeros if kind == "LSTMCell" else zeros[0])
    for got, expected in zip(out if isinstance(out, tuple) else (out,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_array_equal(got, expected)
        assert got.flags.writeable and got.flags.owndata  # fresh arrays, not the shared zeros


@pytest.mark.parametrize("kind", KINDS)
def test_read_only_and_non_contiguous_inputs_take_the_general_path_with_equal_results(rng, kind):
    cell = make_cell(kind)
    x, hx, _ = step_data(rng, kind, 3, 5, 4, np.float64)
    expected = cell(x, hx)
    read_only = x.copy()
    read_only.flags.writeable = False
    strided = np.asfortranarray(x)
    for variant in (read_only, strided):
        got = cell(variant, hx)
        for a, b in zip(got if isinstance(got, tuple) else (got,), expected if isinstance(expected, tuple) else (expected,)):
            np.testing.assert_array_equal(a, b)
