# SPDX-License-Identifier: MIT
"""The layer and stack references are themselves proven: outputs and every gradient against torch float64
(projection, stacks, bidirectional, packed variable lengths), every gradient against finite differences
(including what torch cannot check: reset_after=False, masks, go_backwards, inter-layer masks), and
hand-checkable identities. The C++ layer and stack kernels are checked against these references."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FD_TOL, assert_close
from gradcheck import numerical_grad
from lstm_ext import reference
from lstm_ext import reference_layers as rl

GATES = {"lstm": 4, "gru": 3}


# ------------------------------------------------------------------------------------------------------------
# Problem builders


def layer_params(rng, kind, inp, hidden, *, proj=0, bias=True) -> dict:
    """Random float64 weights of one layer direction, under the layer functions' argument names."""
    out = proj or hidden
    gates = GATES[kind] * hidden
    bound = 1.0 / np.sqrt(hidden)
    p = {"w_ih": rng.uniform(-bound, bound, (gates, inp)), "w_hh": rng.uniform(-bound, bound, (gates, out))}
    if bias:
        p["b_ih"] = rng.uniform(-bound, bound, gates)
        p["b_hh"] = rng.uniform(-bound, bound, gates)
    if proj:
        p["w_hr"] = rng.uniform(-bound, bound, (proj, hidden))
    return p


def stack_params(rng, kind, inp, hidden, *, layers, bidirectional, proj=0, bias=True) -> dict:
    """Random float64 weights of a stack under torch's ``state_dict`` keys."""
    directions = 2 if bidirectional else 1
    names = {
        "w_ih": "weight_ih",
        "w_hh": "weight_hh",
        "b_ih": "bias_ih",
        "b_hh": "bias_hh",
        "w_hr": "weight_hr",
    }
    params = {}
    for layer in range(layers):
        width = inp if layer == 0 else directions * (proj or hidden)
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            for arg, value in layer_params(rng, kind, width, hidden, proj=proj, bias=bias).items():
                params[names[arg] + sfx] = value
    return params


def dropout_mask(rng, shape, keep=0.7) -> np.ndarray:
    """An inverted-dropout mask: 0 or 1/keep."""
    return rng.binomial(1, keep, shape) / keep


def stack_masks(rng, steps, batch, inp, hidden, *, layers, bidirectional, proj=0) -> dict:
    """Random inter-layer, input and recurrent masks for :func:`reference_layers.stack_forward`."""
    directions = 2 if bidirectional else 1
    out = proj or hidden
    input_widths = [inp] + [directions * out] * (layers - 1)
    return {
        "inter_masks": dropout_mask(rng, (layers - 1, steps, batch, directions * out)),
        "input_masks": [
            dropout_mask(rng, (batch, input_widths[k // directions])) for k in range(layers * directions)
        ],
        "recurrent_masks": [dropout_mask(rng, (batch, out)) for _ in range(layers * directions)],
    }


def assert_matches_finite_differences(loss, arrays: dict, grads: dict, grad_name=lambda name: name) -> None:
    """Each ``grads[grad_name(name)]`` equals the central-difference gradient of `loss` over ``arrays[name]``.

    `loss` takes no argument: it reads the arrays, which :func:`numerical_grad` perturbs in place.
    """
    for name, array in arrays.items():
        expected = numerical_grad(lambda _: loss(), array)
        np.testing.assert_allclose(grads[grad_name(name)], expected, err_msg=name, **FD_TOL)


def vdot_sum(pairs) -> float:
    """``sum(vdot(a, b))`` over the pairs whose first element is not None: the scalar loss of the tests."""
    return float(sum(np.vdot(a, b) for a, b in pairs if a is not None))


# ------------------------------------------------------------------------------------------------------------
# Single layers against finite differences

LAYER_CASES = {  # (steps, batch, inp, hidden) and options; lengths include one of T and one of 1
    "plain": ((3, 2, 2, 3), {}),
    "reverse": ((3, 2, 2, 3), {"reverse": True}),
    "lengths": ((3, 3, 2, 3), {"lengths": [2, 3, 1]}),
    "lengths_reverse": ((3, 3, 2, 3), {"lengths": [3, 1, 2], "reverse": True}),
    "masks": ((3, 2, 2, 3), {"masks": True}),
    "masks_lengths_reverse": ((4, 3, 3, 2), {"masks": True, "lengths": [4, 2, 1], "reverse": True}),
    "no_bias_no_states": ((3, 2, 2, 3), {"bias": False, "states": False, "masks": True}),
    "tiny": ((1, 1, 1, 1), {}),
}


def layer_problem(rng, kind, shape, options, *, proj=0):
    """Arrays (inputs and weights), keyword options and upstream gradients for one layer direction."""
    steps, batch, inp, hidden = shape
    out = proj or hidden
    arrays = {"x": rng.standard_normal((steps, batch, inp))}
    arrays.update(layer_params(rng, kind, inp, hidden, proj=proj, bias=options.get("bias", True)))
    if options.get("states", True):
        arrays["h0"] = rng.standard_normal((batch, out))
        if kind == "lstm":
            arrays["c0"] = rng.standard_normal((batch, hidden))
    kwargs = {"lengths": options.get("lengths"), "reverse": options.get("reverse", False)}
    if options.get("masks"):
        kwargs["input_mask"] = dropout_mask(rng, (batch, inp))
        kwargs["recurrent_mask"] = dropout_mask(rng, (batch, out))
    upstream = {"dy": rng.standard_normal((steps, batch, out)), "dh_n": rng.standard_normal((batch, out))}
    if kind == "lstm":
        upstream["dc_n"] = rng.standard_normal((batch, hidden))
    return arrays, kwargs, upstream


def lstm_loss(arrays, kwargs, upstream) -> float:
    y, h_n, c_n, _ = rl.lstm_layer_forward(**arrays, **kwargs)
    return vdot_sum([(y, upstream["dy"]), (h_n, upstream["dh_n"]), (c_n, upstream["dc_n"])])


def gru_loss(arrays, kwargs, upstream) -> float:
    y, h_n, _ = rl.gru_layer_forward(**arrays, **kwargs)
    return vdot_sum([(y, upstream["dy"]), (h_n, upstream["dh_n"])])


@pytest.mark.parametrize("proj", [0, 2], ids=["no_proj", "proj2"])
@pytest.mark.parametrize("case", LAYER_CASES, ids=list(LAYER_CASES))
def test_every_lstm_layer_gradient_matches_finite_differences(rng, case, proj):
    shape, options = LAYER_CASES[case]
    arrays, kwargs, upstream = layer_problem(rng, "lstm", shape, options, proj=proj)
    _, _, _, tape = rl.lstm_layer_forward(**arrays, **kwargs)
    grads = rl.lstm_layer_backward(tape, **upstream)
    assert_matches_finite_differences(
        lambda: lstm_loss(arrays, kwargs, upstream), arrays, grads, "d{}".format
    )
    assert (grads["db_ih"] is None) == ("b_ih" not in arrays)
    assert (grads["dw_hr"] is None) == (proj == 0)


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("case", LAYER_CASES, ids=list(LAYER_CASES))
def test_every_gru_layer_gradient_matches_finite_differences(rng, case, reset_after):
    shape, options = LAYER_CASES[case]
    arrays, kwargs, upstream = layer_problem(rng, "gru", shape, options)
    kwargs["reset_after"] = reset_after
    _, _, tape = rl.gru_layer_forward(**arrays, **kwargs)
    grads = rl.gru_layer_backward(tape, **upstream)
    assert_matches_finite_differences(lambda: gru_loss(arrays, kwargs, upstream), arrays, grads, "d{}".format)
    assert (grads["db_ih"] is None) == ("b_ih" not in arrays)


# ------------------------------------------------------------------------------------------------------------
# Stacks against finite differences

STACK_CASES = {  # kind, (steps, batch, inp, hidden), stack options, with masks
    "lstm_L2_bi_proj_lengths_masks": (
        "lstm",
        (3, 3, 2, 3),
        {"num_layers": 2, "bidirectional": True, "proj_size": 2, "lengths": [2, 3, 1]},
        True,
    ),
    "gru_L2_bi_reset_before_lengths_masks": (
        "gru",
        (3, 3, 2, 3),
        {"num_layers": 2, "bidirectional": True, "reset_after": False, "lengths": [1, 3, 2]},
        True,
    ),
    "lstm_L3_go_backwards_lengths_masks_no_bias": (
        "lstm",
        (3, 2, 2, 2),
        {"num_layers": 3, "go_backwards": True, "lengths": [3, 1], "bias": False},
        True,
    ),
    "gru_L2_go_backwards": ("gru", (3, 2, 2, 3), {"num_layers": 2, "go_backwards": True}, False),
    "lstm_L1_bi_proj_masks": ("lstm", (2, 2, 3, 3), {"bidirectional": True, "proj_size": 1}, True),
}


def stack_problem(rng, kind, shape, options, with_masks):
    """Parameters, inputs, keyword options and upstream gradients for :func:`rl.stack_forward`."""
    steps, batch, inp, hidden = shape
    options = dict(options)
    bias = options.pop("bias", True)
    layers = options.get("num_layers", 1)
    bidirectional = options.get("bidirectional", False)
    proj = options.get("proj_size", 0)
    directions = 2 if bidirectional else 1
    out = proj or hidden
    params = stack_params(
        rng, kind, inp, hidden, layers=layers, bidirectional=bidirectional, proj=proj, bias=bias
    )
    inputs = {
        "x": rng.standard_normal((steps, batch, inp)),
        "h0": rng.standard_normal((layers * directions, batch, out)),
    }
    if kind == "lstm":
        inputs["c0"] = rng.standard_normal((layers * directions, batch, hidden))
    if with_masks:
        options.update(
            stack_masks(rng, steps, batch, inp, hidden, layers=layers, bidirectional=bidirectional, proj=proj)
        )
    upstream = {
        "dy": rng.standard_normal((steps, batch, directions * out)),
        "dh_n": rng.standard_normal((layers * directions, batch, out)),
        "dc_n": rng.standard_normal((layers * directions, batch, hidden)) if kind == "lstm" else None,
    }
    return params, inputs, options, upstream


def stack_loss(kind, params, inputs, options, upstream) -> float:
    y, h_n, c_n, _ = rl.stack_forward(kind, params, **inputs, **options)
    return vdot_sum([(y, upstream["dy"]), (h_n, upstream["dh_n"]), (c_n, upstream["dc_n"])])


@pytest.mark.parametrize("case", STACK_CASES, ids=list(STACK_CASES))
def test_every_stack_gradient_matches_finite_differences(rng, case):
    kind, shape, options, with_masks = STACK_CASES[case]
    params, inputs, options, upstream = stack_problem(rng, kind, shape, options, with_masks)
    _, _, _, tape = rl.stack_forward(kind, params, **inputs, **options)
    dx, dh0, dc0, grads = rl.stack_backward(tape, **upstream)
    assert set(grads) == set(params)
    grads.update({"x": dx, "h0": dh0, "c0": dc0})

    def loss() -> float:
        return stack_loss(kind, params, inputs, options, upstream)

    assert_matches_finite_differences(loss, {**inputs, **params}, grads)
    assert (dc0 is None) == (kind == "gru")


# ------------------------------------------------------------------------------------------------------------
# Against torch float64

TORCH_GRID = [  # (T, N, I, H, num_layers, bidirectional, proj_size, lengths, bias); proj_size ignored for GRU
    (1, 1, 1, 1, 1, False, 0, None, True),
    (5, 3, 4, 7, 1, False, 0, None, False),
    (5, 4, 3, 4, 1, False, 2, [3, 5, 1, 4], True),
    (5, 4, 3, 4, 1, True, 3, [3, 5, 1, 4], True),
    (4, 3, 2, 5, 3, True, 0, None, True),
    (6, 3, 3, 4, 2, False, 0, [6, 1, 4], True),
    (5, 4, 2, 3, 2, True, 2, [2, 1, 5, 3], True),
    (3, 2, 2, 3, 2, True, 0, [1, 3], False),
]
TORCH_IDS = [
    "T{}N{}I{}H{}L{}{}P{}{}{}".format(
        *g[:5], "bi" if g[5] else "", g[6], "_lengths" if g[7] else "", "" if g[8] else "_nobias"
    )
    for g in TORCH_GRID
]


def run_torch(torch, kind, params, inputs, upstream, *, num_layers, bidirectional, proj_size, lengths):
    """torch.nn.LSTM/GRU float64 outputs and gradients of ``sum(y*dy) + sum(h_n*dh_n) [+ sum(c_n*dc_n)]``,
    with variable lengths through ``pack_padded_sequence(enforce_sorted=False)``."""
    steps, _, inp = inputs["x"].shape
    hidden = params["weight_hh_l0"].shape[0] // GATES[kind]
    extra = {"proj_size": proj_size} if kind == "lstm" else {}
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    module = cls(
        inp,
        hidden,
        num_layers=num_layers,
        bias="bias_ih_l0" in params,
        bidirectional=bidirectional,
        dtype=torch.float64,
        **extra,
    )
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()}, strict=True)
    leaves = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in inputs.items()}
    hx = (leaves["h0"], leaves["c0"]) if kind == "lstm" else leaves["h0"]
    if lengths is None:
        y, state = module(leaves["x"], hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            leaves["x"], torch.tensor(lengths), enforce_sorted=False
        )
        packed_y, state = module(packed, hx)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_y, total_length=steps)
    h_n, c_n = state if kind == "lstm" else (state, None)
    total = (y * torch.from_numpy(upstream["dy"])).sum() + (h_n * torch.from_numpy(upstream["dh_n"])).sum()
    if c_n is not None:
        total = total + (c_n * torch.from_numpy(upstream["dc_n"])).sum()
    total.backward()
    result = {"y": y, "h_n": h_n, "c_n": c_n}
    result.update({"d" + k: v.grad for k, v in leaves.items()})
    result.update({name: p.grad for name, p in module.named_parameters()})
    return {k: v.detach().numpy() for k, v in result.items() if v is not None}


def check_stack_against_torch(rng, kind, grid):
    torch = pytest.importorskip("torch")
    steps, batch, inp, hidden, layers, bidirectional, proj, lengths, bias = grid
    proj = proj if kind == "lstm" else 0
    options = {
        "num_layers": layers,
        "bidirectional": bidirectional,
        "proj_size": proj,
        "lengths": lengths,
        "bias": bias,
    }
    params, inputs, options, upstream = stack_problem(rng, kind, (steps, batch, inp, hidden), options, False)
    y, h_n, c_n, tape = rl.stack_forward(kind, params, **inputs, **options)
    dx, dh0, dc0, grads = rl.stack_backward(tape, **upstream)
    ours = {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx, "dh0": dh0, "dc0": dc0, **grads}
    theirs = run_torch(
        torch,
        kind,
        params,
        inputs,
        upstream,
        num_layers=layers,
        bidirectional=bidirectional,
        proj_size=proj,
        lengths=lengths,
    )
    assert {k for k, v in ours.items() if v is not None} == set(theirs)
    for name, value in theirs.items():
        assert_close(ours[name], value, np.float64, name)


@pytest.mark.torch
@pytest.mark.parametrize("grid", TORCH_GRID, ids=TORCH_IDS)
def test_lstm_matches_torch_forward_and_gradients(rng, grid):
    check_stack_against_torch(rng, "lstm", grid)


@pytest.mark.torch
@pytest.mark.parametrize("grid", TORCH_GRID, ids=TORCH_IDS)
def test_gru_matches_torch_forward_and_gradients(rng, grid):
    check_stack_against_torch(rng, "gru", grid)


# ------------------------------------------------------------------------------------------------------------
# Hand-checkable identities


def test_lstm_layer_without_options_equals_the_lstm_reference(rng):
    arrays, _, upstream = layer_problem(rng, "lstm", (5, 3, 4, 6), {})
    y, h_n, c_n, tape = rl.lstm_layer_forward(**arrays)
    grads = rl.lstm_layer_backward(tape, **upstream)
    a = arrays
    ry, rh_n, rc_n, cache = reference.lstm_forward(
        a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"]
    )
    rgrads = reference.lstm_backward(cache, **upstream)
    for ours, theirs, name in ((y, ry, "y"), (h_n, rh_n, "h_n"), (c_n, rc_n, "c_n")):
        assert_close(ours, theirs, np.float64, name)
    renamed = {
        "dx": "dx",
        "dh0": "dh0",
        "dc0": "dc0",
        "dw_ih": "weight_ih",
        "dw_hh": "weight_hh",
        "db_ih": "bias_ih",
        "db_hh": "bias_hh",
    }
    for ours, theirs in renamed.items():
        assert_close(grads[ours], rgrads[theirs], np.float64, ours)
    assert grads["dw_hr"] is None


def run_layer(kind, arrays, kwargs, upstream):
    """Forward and backward of one layer direction: ``(outputs, grads)``, outputs a dict y, h_n[, c_n]."""
    if kind == "lstm":
        y, h_n, c_n, tape = rl.lstm_layer_forward(**arrays, **kwargs)
        return {"y": y, "h_n": h_n, "c_n": c_n}, rl.lstm_layer_backward(tape, **upstream)
    y, h_n, tape = rl.gru_layer_forward(**arrays, **kwargs)
    return {"y": y, "h_n": h_n}, rl.gru_layer_backward(tape, **upstream)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(
    ("kind", "proj"), [("lstm", 0), ("lstm", 2), ("gru", 0)], ids=["lstm", "lstm_proj", "gru"]
)
def test_layer_with_lengths_equals_each_sequence_run_alone_truncated(rng, kind, proj, reverse):
    lengths = [3, 5, 1, 4]
    arrays, kwargs, upstream = layer_problem(
        rng, kind, (5, 4, 3, 4), {"lengths": lengths, "reverse": reverse, "masks": True}, proj=proj
    )
    outputs, grads = run_layer(kind, arrays, kwargs, upstream)
    weight_names = [k for k in grads if k.startswith(("dw", "db")) and grads[k] is not None]
    weight_sums = dict.fromkeys(weight_names, 0.0)
    for b, length in enumerate(lengths):

        def alone(a, length=length, b=b):  # sequence b: its valid steps, a batch of one
            return a[:length, b : b + 1] if a.ndim == 3 else a[b : b + 1]

        arrays_b = {k: alone(v) if k in ("x", "h0", "c0") else v for k, v in arrays.items()}
        kwargs_b = {
            "reverse": reverse,
            "input_mask": alone(kwargs["input_mask"]),
            "recurrent_mask": alone(kwargs["recurrent_mask"]),
        }
        outputs_b, grads_b = run_layer(kind, arrays_b, kwargs_b, {k: alone(v) for k, v in upstream.items()})
        assert_close(outputs["y"][:length, b], outputs_b["y"][:, 0], np.float64, f"y[:, {b}]")
        assert not outputs["y"][length:, b].any(), "padding outputs are zero"
        for name in ("h_n", "c_n"):
            if name in outputs:
                assert_close(outputs[name][b], outputs_b[name][0], np.float64, f"{name}[{b}]")
        assert_close(grads["dx"][:length, b], grads_b["dx"][:, 0], np.float64, f"dx[:, {b}]")
        assert not grads["dx"][length:, b].any(), "padding inputs get no gradient"
        for name in ("dh0", "dc0"):
            if name in grads:
                assert_close(grads[name][b], grads_b[name][0], np.float64, f"{name}[{b}]")
        for name in weight_names:
            weight_sums[name] = weight_sums[name] + grads_b[name]
    for name, total in weight_sums.items():
        assert_close(grads[name], total, np.float64, name)


@pytest.mark.parametrize(
    ("kind", "options"),
    [("lstm", {"proj_size": 2}), ("gru", {"reset_after": True}), ("gru", {"reset_after": False})],
    ids=["lstm_proj", "gru_reset_after", "gru_reset_before"],
)
def test_masks_of_ones_equal_no_masks(rng, kind, options):
    options = {"num_layers": 2, "bidirectional": True, "lengths": [2, 4, 1], **options}
    params, inputs, options, upstream = stack_problem(rng, kind, (4, 3, 2, 3), options, True)
    ones = {
        "inter_masks": np.ones_like(options.pop("inter_masks")),
        "input_masks": [np.ones_like(m) for m in options.pop("input_masks")],
        "recurrent_masks": [np.ones_like(m) for m in options.pop("recurrent_masks")],
    }
    results = []
    for masks in ({}, ones):
        y, h_n, c_n, tape = rl.stack_forward(kind, params, **inputs, **options, **masks)
        results.append(((y, h_n, c_n), rl.stack_backward(tape, **upstream)))
    (outputs, backward), (outputs1, backward1) = results
    for a, b in zip(outputs + backward[:3], outputs1 + backward1[:3]):
        np.testing.assert_array_equal(a, b)
    for name, grad in backward[3].items():
        np.testing.assert_array_equal(grad, backward1[3][name], err_msg=name)


@pytest.mark.parametrize(
    ("kind", "proj", "reset_after"),
    [("lstm", 0, True), ("lstm", 2, True), ("gru", 0, True), ("gru", 0, False)],
    ids=["lstm", "lstm_proj", "gru_reset_after", "gru_reset_before"],
)
def test_masks_shared_by_the_batch_equal_scaling_the_weight_columns(rng, kind, proj, reset_after):
    # A mask row v applied to every sequence scales the columns of the weights it multiplies: x*v @ W.T is
    # x @ (W*v).T. The carried state is unmasked, so this also pins down where the mask does not act.
    steps, batch, inp, hidden = 4, 3, 3, 4
    arrays, kwargs, upstream = layer_problem(
        rng, kind, (steps, batch, inp, hidden), {"lengths": [4, 1, 2]}, proj=proj
    )
    if kind == "gru":
        kwargs["reset_after"] = reset_after
    v_in, v_rec = dropout_mask(rng, inp), dropout_mask(rng, proj or hidden)
    v_in[0], v_rec[-1] = 0.0, 0.0  # at least one dropped unit each
    masked = {"input_mask": np.tile(v_in, (batch, 1)), "recurrent_mask": np.tile(v_rec, (batch, 1))}
    outputs, grads = run_layer(kind, arrays, {**kwargs, **masked}, upstream)
    scaled = {**arrays, "w_ih": arrays["w_ih"] * v_in, "w_hh": arrays["w_hh"] * v_rec}
    outputs_s, grads_s = run_layer(kind, scaled, kwargs, upstream)
    for name in outputs:
        assert_close(outputs[name], outputs_s[name], np.float64, name)
    for name in grads:
        if grads[name] is None:
            continue
        factor = {"dw_ih": v_in, "dw_hh": v_rec}.get(name, 1.0)  # d(W*v)/dW = v
        assert_close(grads[name], grads_s[name] * factor, np.float64, name)


@pytest.mark.parametrize(("kind", "proj"), [("lstm", 2), ("gru", 0)], ids=["lstm_proj", "gru"])
def test_go_backwards_equals_running_on_the_reversed_sequence(rng, kind, proj):
    options = {"num_layers": 2, "proj_size": proj}
    params, inputs, options, upstream = stack_problem(rng, kind, (5, 3, 2, 3), options, True)
    y, h_n, c_n, tape = rl.stack_forward(kind, params, **inputs, **options, go_backwards=True)
    dx, dh0, dc0, grads = rl.stack_backward(tape, **upstream)

    flipped_inputs = {**inputs, "x": inputs["x"][::-1]}
    flipped_options = {**options, "inter_masks": options["inter_masks"][:, ::-1]}
    fy, fh_n, fc_n, ftape = rl.stack_forward(kind, params, **flipped_inputs, **flipped_options)
    fdx, fdh0, fdc0, fgrads = rl.stack_backward(ftape, **{**upstream, "dy": upstream["dy"][::-1]})
    pairs = [(y, fy[::-1], "y"), (h_n, fh_n, "h_n"), (dx, fdx[::-1], "dx"), (dh0, fdh0, "dh0")]
    if kind == "lstm":
        pairs += [(c_n, fc_n, "c_n"), (dc0, fdc0, "dc0")]
    pairs += [(grads[k], fgrads[k], k) for k in params]
    for ours, expected, name in pairs:
        assert_close(ours, expected, np.float64, name)


def test_gru_reset_before_follows_the_original_formula_on_one_step(rng):
    steps, batch, inp, hidden = 1, 3, 2, 4
    arrays, _, _ = layer_problem(rng, "gru", (steps, batch, inp, hidden), {})
    x, h, w_ih, w_hh, b_ih, b_hh = (arrays[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"))
    sig = reference.sigmoid
    gi = x[0] @ w_ih.T + b_ih
    r = sig(gi[:, :hidden] + h @ w_hh[:hidden].T + b_hh[:hidden])
    z = sig(gi[:, hidden : 2 * hidden] + h @ w_hh[hidden : 2 * hidden].T + b_hh[hidden : 2 * hidden])
    n = np.tanh(gi[:, 2 * hidden :] + (r * h) @ w_hh[2 * hidden :].T + b_hh[2 * hidden :])
    expected = (1 - z) * n + z * h
    y, h_n, _ = rl.gru_layer_forward(**arrays, reset_after=False)
    assert_close(y[0], expected, np.float64, "y")
    assert_close(h_n, expected, np.float64, "h_n")
    y_after, _, _ = rl.gru_layer_forward(**arrays, reset_after=True)
    assert np.abs(y_after - y).max() > 1e-3, "the two formulas differ"


def test_layers_and_stacks_do_not_modify_their_inputs(rng):
    options = {"num_layers": 2, "bidirectional": True, "proj_size": 2, "lengths": [2, 3, 1]}
    params, inputs, options, upstream = stack_problem(rng, "lstm", (3, 3, 2, 3), options, True)
    everything = {**params, **inputs, **upstream, "inter_masks": options["inter_masks"]}
    before = {k: np.copy(v) for k, v in everything.items() if v is not None}
    _, _, _, tape = rl.stack_forward("lstm", params, **inputs, **options)
    rl.stack_backward(tape, **upstream)
    for key, value in before.items():
        np.testing.assert_array_equal(everything[key], value, err_msg=key)


def test_outputs_do_not_alias_the_tape(rng):
    arrays, kwargs, upstream = layer_problem(rng, "lstm", (3, 2, 2, 3), {"masks": True})
    y, h_n, c_n, tape = rl.lstm_layer_forward(**arrays, **kwargs)
    expected = rl.lstm_layer_backward(tape, **upstream)
    for a in (y, h_n, c_n, *arrays.values(), *kwargs.values()):
        if isinstance(a, np.ndarray):
            a[...] = np.nan
    for name, grad in rl.lstm_layer_backward(tape, **upstream).items():
        np.testing.assert_array_equal(grad, expected[name], err_msg=name)


# ------------------------------------------------------------------------------------------------------------
# Bad arguments


def test_lengths_outside_one_to_t_are_rejected_naming_them(rng):
    arrays, _, _ = layer_problem(rng, "lstm", (3, 2, 2, 3), {})
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 3\], got \[0, 3\]"):
        rl.lstm_layer_forward(**arrays, lengths=[0, 3])
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 3\], got \[4, 3\]"):
        rl.lstm_layer_forward(**arrays, lengths=[4, 3])
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\), got \(3,\)"):
        rl.lstm_layer_forward(**arrays, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match="lengths: expected integers"):
        rl.lstm_layer_forward(**arrays, lengths=[1.0, 2.0])


def test_mask_of_wrong_shape_is_rejected_naming_it(rng):
    arrays, _, _ = layer_problem(rng, "gru", (3, 2, 2, 3), {})
    with pytest.raises(ValueError, match=r"recurrent_mask: expected shape \(2, 3\), got \(2, 2\)"):
        rl.gru_layer_forward(**arrays, recurrent_mask=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"input_mask: expected shape \(2, 2\), got \(2,\)"):
        rl.gru_layer_forward(**arrays, input_mask=np.ones(2))


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("rnn", {}, "kind: expected 'lstm' or 'gru', got 'rnn'"),
        (
            "lstm",
            {"bidirectional": True, "go_backwards": True},
            "go_backwards: not allowed with bidirectional",
        ),
        ("gru", {"proj_size": 2}, "proj_size: expected 0 for a GRU"),
        ("lstm", {"reset_after": False}, "reset_after: only a GRU has it"),
        ("lstm", {"num_layers": 2}, r"params: missing keys \['bias_hh_l1', 'bias_ih_l1', 'weight_hh_l1', "),
        (
            "lstm",
            {"input_masks": [None, None]},
            "input_masks: expected num_layers \\* num_directions = 1 masks",
        ),
    ],
    ids=["kind", "go_backwards_bidirectional", "gru_proj", "lstm_reset_after", "missing_param", "mask_count"],
)
def test_bad_stack_options_are_rejected_naming_them(rng, kind, options, message):
    params = stack_params(rng, "lstm", 2, 3, layers=1, bidirectional=False)
    with pytest.raises(ValueError, match=message):
        rl.stack_forward(kind, params, rng.standard_normal((3, 2, 2)), **options)
