# SPDX-License-Identifier: MIT
"""A full layer called on one step (``T = 1``: a stream fed a step at a time) runs as one cell step when the
layer is one the cell kernels compute (one layer, one direction, no projection, no lengths, no variational
dropout in training; the GRU's ``reset_after``). Checked here: the values against the float64 reference, the
sequence kernels, finite differences and torch, in every layout; what such a call keeps; that the layers the
cell kernels cannot run still give the reference's values; and that bad input gets the general path's errors.

A list instead of an ndarray takes the general path (the sequence kernels), which is how these tests compare
the two.
"""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import DTYPES, FD_TOL, assert_close
from gradcheck import numerical_grad
from lstm_ext import reference_layers

KINDS = ["LSTM", "GRU"]
LAYOUT_BATCHES = [("time_major", 1), ("time_major", 3), ("batch_first", 1), ("batch_first", 3), ("unbatched", 1)]


def make_layer(kind, inp=5, hidden=4, dtype=np.float64, **kwargs):
    return getattr(lstm_ext, kind)(inp, hidden, dtype=dtype, seed=2, **kwargs)


def layout_shapes(layout, batch, width):
    """The caller's shape of a one-step ``x`` or ``y`` of ``width`` features, and of a state."""
    if layout == "unbatched":
        return (1, width), (1, 4)
    if layout == "batch_first":
        return (batch, 1, width), (1, batch, 4)
    return (1, batch, width), (1, batch, 4)


def step_data(rng, kind, layout, batch, dtype, inp=5):
    x_shape, state_shape = layout_shapes(layout, batch, inp)
    y_shape, _ = layout_shapes(layout, batch, 4)
    count = 2 if kind == "LSTM" else 1
    draw = lambda shape: rng.standard_normal(shape).astype(dtype)
    return draw(x_shape), [draw(state_shape) for _ in range(count)], draw(y_shape), [draw(state_shape) for _ in range(count)]


def call(layer, x, states, dy=None, d_states=None, **kwargs):
    """Forward (and backward when ``dy`` is given) with the kind's argument shapes; a flat list of results."""
    lstm = isinstance(layer, lstm_ext.LSTM)
    hx = None if states is None else (tuple(states) if lstm else states[0])
    y, finals = layer(x, hx, **kwargs)
    out = [y, *(finals if lstm else (finals,))]
    if dy is not None:
        d = None if d_states is None else (tuple(d_states) if lstm else d_states[0])
        dx, d0 = layer.backward(dy, d)
        out += [dx, *(d0 if lstm else (d0,))] + [g.copy() for g in layer.grads.values()]
    return out


def time_major(a, layout):
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if layout == "unbatched" else (a.swapaxes(0, 1) if layout == "batch_first" else a)


def reference(kind, layer, layout, x, states, dy, d_states, **options):
    """The float64 reference's results, laid out as ``call`` returns them (states (K, N, W) reshaped)."""
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    lstm = kind == "LSTM"
    x_tm = time_major(x, layout)
    batch = x_tm.shape[1]
    count = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)  # K = L * D
    as_core = lambda s: None if s is None else np.asarray(s, np.float64).reshape(count, batch, -1)
    h0, c0 = (None, None) if states is None else (as_core(states[0]), as_core(states[1]) if lstm else None)
    y, h_n, c_n, tape = reference_layers.stack_forward(kind.lower(), params, x_tm, h0, c0, **options)
    dh_n = as_core(d_states[0])
    dc_n = as_core(d_states[1]) if lstm else None
    dx, dh0, dc0, grads = reference_layers.stack_backward(tape, time_major(dy, layout), dh_n, dc_n)
    back = lambda a: a[:, 0] if layout == "unbatched" else (a.swapaxes(0, 1) if layout == "batch_first" else a)
    shapes = [np.shape(d) for d in d_states]  # the caller's state shapes
    finals = [f.reshape(s) for f, s in zip([h_n, c_n] if lstm else [h_n], shapes)]
    d0 = [d.reshape(s) for d, s in zip([dh0, dc0] if lstm else [dh0], shapes)]
    return [back(y), *finals, back(dx), *d0] + [grads[name] for name in layer.grads]


@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "zeros"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout, batch", LAYOUT_BATCHES, ids=[f"{l}-N{n}" for l, n in LAYOUT_BATCHES])
@pytest.mark.parametrize("kind", KINDS)
def test_a_one_step_call_matches_the_float64_reference_and_the_sequence_kernels(rng, kind, layout, batch, dtype,
                                                                                 bias, with_hx):
    x, states, dy, d_states = step_data(rng, kind, layout, batch, dtype)
    states = states if with_hx else None
    options = {"batch_first": layout == "batch_first", "bias": bias}
    got = call(make_layer(kind, dtype=dtype, **options), x, states, dy, d_states)
    as_list = None if states is None else [s.tolist() for s in states]
    general = call(make_layer(kind, dtype=dtype, **options), x.tolist(), as_list, dy.tolist(),
                   [d.tolist() for d in d_states])
    want = reference(kind, make_layer(kind, dtype=dtype, **options), layout, x, states, dy, d_states)
    assert len(got) == len(general) == len(want)
    for k, (a, b, c) in enumerate(zip(got, general, want)):
        assert_close(a, c, dtype, f"result {k} against the reference")
        assert_close(a, b, dtype, f"result {k} against the sequence kernels")


@pytest.mark.parametrize("kind", KINDS)
def test_a_one_step_call_keeps_what_a_cell_step_keeps(rng, kind):
    x, states, dy, d_states = step_data(rng, kind, "time_major", 3, np.float32)
    layer, cell = make_layer(kind, dtype=np.float32), getattr(lstm_ext, kind + "Cell")(5, 4, seed=2)
    call(layer, x, states)
    cell(x[0], tuple(s[0] for s in states) if kind == "LSTM" else states[0][0])
    assert layer.cache_nbytes == cell.cache_nbytes > 0
    general = make_layer(kind, dtype=np.float32)
    call(general, x.tolist(), states)
    assert general.cache_nbytes > layer.cache_nbytes  # the sequence path keeps y and more besides
    layer.eval()
    call(layer, x, states)
    assert layer.cache_nbytes == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_one_step_call_gives_the_same_bits_in_training_and_in_inference(rng, kind, dtype):
    x, states, _, _ = step_data(rng, kind, "time_major", 2, dtype, inp=128)
    layer = make_layer(kind, inp=128, dtype=dtype)
    trained = call(layer, x, states, training=True)
    inferred = call(layer, x, states, training=False)
    for a, b in zip(trained, inferred):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_y_and_the_final_h_are_separate_arrays(rng, kind):
    x, states, _, _ = step_data(rng, kind, "time_major", 2, np.float32)
    y, h_n = call(make_layer(kind, dtype=np.float32), x, states)[:2]
    assert not np.may_share_memory(y, h_n)
    np.testing.assert_array_equal(y, h_n)


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_gradients_match_finite_differences(rng, kind):
    x, states, dy, d_states = step_data(rng, kind, "batch_first", 2, np.float64)
    layer = make_layer(kind, batch_first=True)
    results = call(layer, x, states, dy, d_states)
    count = len(states)
    dx, d0 = results[1 + count], results[2 + count:2 + 2 * count]
    weight_grad = layer.grads["weight_hh_l0"]

    def loss(y_and_finals):
        return float(np.sum(y_and_finals[0] * dy) + sum(np.sum(f * d) for f, d in zip(y_and_finals[1:], d_states)))

    def loss_of(name, value):
        def f(v):
            if name == "x":
                return loss(call(layer, v, states, training=False))
            if name == "weight":
                trial = make_layer(kind, batch_first=True)
                trial.weight_hh_l0 = v
                return loss(call(trial, x, states, training=False))
            return loss(call(layer, x, [v if j == name else s for j, s in enumerate(states)], training=False))
        return numerical_grad(f, value.copy())

    np.testing.assert_allclose(dx, loss_of("x", x), **FD_TOL)
    for j in range(count):
        np.testing.assert_allclose(d0[j], loss_of(j, states[j]), **FD_TOL)
    np.testing.assert_allclose(weight_grad, loss_of("weight", layer.weight_hh_l0), **FD_TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_accumulate_adds_the_gradients_of_a_one_step_call(rng, kind):
    x, states, dy, d_states = step_data(rng, kind, "time_major", 2, np.float64)
    layer = make_layer(kind)
    call(layer, x, states, dy, d_states)
    once = {k: v.copy() for k, v in layer.grads.items()}
    call(layer, x, states)
    layer.backward(dy, tuple(d_states) if kind == "LSTM" else d_states[0], accumulate=True)
    for name, value in layer.grads.items():
        np.testing.assert_allclose(value, 2 * once[name], rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_a_one_step_backward_uses_the_weights_its_forward_ran_with(rng, kind):
    x, states, dy, d_states = step_data(rng, kind, "time_major", 2, np.float64)
    want = call(make_layer(kind), x, states, dy, d_states)
    layer = make_layer(kind)
    call(layer, x, states)
    layer.load_state_dict({k: v * 2 for k, v in layer.state_dict().items()})
    d = tuple(d_states) if kind == "LSTM" else d_states[0]
    dx, _ = layer.backward(dy, d)
    np.testing.assert_array_equal(dx, want[1 + len(states)])


# Layers whose one-step calls the cell kernels cannot run, or run only in some modes: each must still give the
# reference's values (these take the sequence kernels, but for go_backwards and eval-mode variational dropout).
OTHER_LAYERS = [
    ("LSTM", {"num_layers": 2}),
    ("LSTM", {"bidirectional": True}),
    ("LSTM", {"proj_size": 2}),
    ("LSTM", {"go_backwards": True}),
    ("GRU", {"num_layers": 2}),
    ("GRU", {"bidirectional": True}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"go_backwards": True}),
]


@pytest.mark.parametrize("kind, options", OTHER_LAYERS, ids=[f"{k}-{next(iter(o))}" for k, o in OTHER_LAYERS])
def test_one_step_calls_of_other_layers_match_the_reference(rng, kind, options):
    layer = make_layer(kind, **options)
    directions = 2 if options.get("bidirectional") else 1
    k = options.get("num_layers", 1) * directions
    out = options.get("proj_size", 0) or 4
    x = rng.standard_normal((1, 3, 5))
    states = [rng.standard_normal((k, 3, out))] + ([rng.standard_normal((k, 3, 4))] if kind == "LSTM" else [])
    dy = rng.standard_normal((1, 3, directions * out))
    d_states = [rng.standard_normal(s.shape) for s in states]
    got = call(layer, x, states, dy, d_states)
    want = reference(kind, make_layer(kind, **options), "time_major", x, states, dy, d_states, **options)
    for j, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, np.float64, f"result {j}")


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_calls_with_lengths_or_variational_dropout_match_the_reference(rng, kind):
    x, states, dy, d_states = step_data(rng, kind, "time_major", 3, np.float64)
    want = reference(kind, make_layer(kind), "time_major", x, states, dy, d_states)
    with_lengths = call(make_layer(kind), x, states, dy, d_states, lengths=[1, 1, 1])
    dropout_eval = make_layer(kind, input_dropout=0.5, recurrent_dropout=0.5).eval()
    inferred = call(dropout_eval, x, states)
    for j, (a, b) in enumerate(zip(with_lengths, want)):
        assert_close(a, b, np.float64, f"with lengths, result {j}")
    for j, (a, b) in enumerate(zip(inferred, want)):
        assert_close(a, b, np.float64, f"variational dropout in eval mode, result {j}")
    # In training the masks apply: a zeroed input must change y (0.5 keeps about half of 5 inputs).
    trained = make_layer(kind, input_dropout=0.5)
    masked = [call(trained, x, states)[0] for _ in range(8)]
    assert any(not np.allclose(m, want[0]) for m in masked)


def test_a_stream_fed_a_step_at_a_time_equals_one_call(rng):
    for kind in KINDS:
        layer = make_layer(kind, dtype=np.float32)
        x = rng.standard_normal((6, 2, 5)).astype(np.float32)
        y_all, h_all = layer(x)
        stream = lstm_ext.Stateful(layer)
        y_steps = np.concatenate([stream(x[t:t + 1]) for t in range(6)])
        assert_close(y_steps, y_all, np.float32, kind)
        finals = stream.hx if kind == "LSTM" else (stream.hx,)
        for got, want in zip(finals, h_all if kind == "LSTM" else (h_all,)):
            assert_close(got, want, np.float32, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_bits_do_not_depend_on_the_thread_count(rng, restore_num_threads, kind):
    x, states, dy, d_states = step_data(rng, kind, "time_major", 1, np.float32, inp=128)
    x = rng.standard_normal((1, 1, 128)).astype(np.float32)  # I = H = 128: the cell splits its two sides
    states = [rng.standard_normal((1, 1, 128)).astype(np.float32) for _ in states]
    dy = rng.standard_normal((1, 1, 128)).astype(np.float32)
    d_states = [rng.standard_normal((1, 1, 128)).astype(np.float32) for _ in states]
    results = []
    for threads in (1, 2):
        lstm_ext.set_num_threads(threads)
        results.append(call(getattr(lstm_ext, kind)(128, 128, seed=4), x, states, dy, d_states))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_one_step_call_matches_torch(rng, kind, dtype):
    torch = pytest.importorskip("torch")
    layer = make_layer(kind, dtype=dtype, batch_first=True)
    x, states, dy, d_states = step_data(rng, kind, "batch_first", 3, dtype)
    module = getattr(torch.nn, kind)(5, 4, batch_first=True, dtype=getattr(torch, np.dtype(dtype).name))
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.state_dict().items()})
    tx = torch.from_numpy(x).requires_grad_()
    ts = [torch.from_numpy(s).requires_grad_() for s in states]
    ty, tfinals = module(tx, tuple(ts) if kind == "LSTM" else ts[0])
    tfinals = list(tfinals) if kind == "LSTM" else [tfinals]
    loss = (ty * torch.from_numpy(dy)).sum() + sum((f * torch.from_numpy(d)).sum() for f, d in zip(tfinals, d_states))
    loss.backward()
    got = call(layer, x, states, dy, d_states)
    want = [ty, *tfinals, tx.grad, *(s.grad for s in ts)] + [p.grad for p in module.parameters()]
    for j, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b.detach().numpy(), dtype, f"result {j}")


BAD_CALLS = [
    # (what, x shape, state shape, dtype of x, the message the general path gives)
    ("a state of the wrong shape", (1, 3, 5), (3, 1, 4), np.float32, r"hx\[0\] \(h0\): expected shape \(1, 3, 4\), got \(3, 1, 4\)"),
    ("the wrong input size", (1, 3, 6), (1, 3, 4), np.float32, r"x: expected shape \(T, N, 5\)"),
    ("an empty batch", (1, 0, 5), (1, 0, 4), np.float32, r"x: empty batch"),
]


@pytest.mark.parametrize("what, x_shape, state_shape, x_dtype, message", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_one_step_calls_get_the_general_paths_errors(what, x_shape, state_shape, x_dtype, message):
    layer = lstm_ext.LSTM(5, 4, seed=0)
    states = (np.zeros(state_shape, np.float32), np.zeros(state_shape, np.float32))
    with pytest.raises(ValueError, match=message):
        layer(np.zeros(x_shape, x_dtype), states)


def test_a_one_step_call_of_the_wrong_dtype_is_a_type_error_naming_x():
    with pytest.raises(TypeError, match=r"x: expected dtype float32, got float64"):
        lstm_ext.GRU(5, 4, seed=0)(np.zeros((1, 2, 5)))


@pytest.mark.parametrize("kind", KINDS)
def test_bad_gradients_of_a_one_step_call_get_the_general_paths_errors(rng, kind):
    x, states, dy, d_states = step_data(rng, kind, "time_major", 3, np.float32)
    layer = make_layer(kind, dtype=np.float32)
    call(layer, x, states)
    with pytest.raises(ValueError, match=r"dy: expected shape \(1, 3, 4\) \(the shape of y\), got \(1, 3, 5\)"):
        layer.backward(np.zeros((1, 3, 5), np.float32))
    bad = np.zeros((3, 1, 4), np.float32)
    name = r"dhx\[0\] \(dh_n\)" if kind == "LSTM" else "dh_n"
    with pytest.raises(ValueError, match=name + r": expected shape \(1, 3, 4\), got \(3, 1, 4\)"):
        layer.backward(dy, (bad, None) if kind == "LSTM" else bad)
    with pytest.raises(TypeError, match="dy: expected dtype float32, got float64"):
        layer.backward(dy.astype(np.float64))
