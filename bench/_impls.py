# SPDX-License-Identifier: MIT
"""The cases of ``bench/compare.py`` and, for each implementation, how to run one: lstm_ext, PyTorch, ONNX
Runtime (inference) and plain NumPy (``_numpy_rnn``), all on the same float32 weights and inputs.

A case is a plain dict (it crosses process boundaries as JSON)::

    {"shape": "s2", "T": 100, "N": 32, "I": 256, "H": 256, "variant": "lstm", "mode": "fwd"}

``variant``: ``lstm``, ``gru``, ``proj`` (LSTM with ``proj_size = H/2``), ``bidir`` (bidirectional LSTM),
``ragged`` (LSTM over unsorted variable lengths), ``cell`` (one ``LSTMCell`` step with given states).
``mode``: ``fwd`` (inference) or ``train`` (training forward + backward for ``dL/dy = dy``).

``make_runner(impl, case, data)`` returns a :class:`Runner`: ``run()`` is the timed call, ``outputs()`` the
results of the last ``run()`` in torch's layout (for the check against torch), or raises :class:`Skip` when
the implementation cannot run the case or is not installed.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import numpy as np

# The grid of the performance issue: (T, N, I, H).
SHAPES = {
    "s1": (100, 1, 128, 128),
    "s2": (100, 32, 256, 256),
    "s3": (100, 64, 512, 512),
    "s4": (50, 128, 1024, 1024),
    "s5": (1000, 1, 64, 64),
    "cell": (1, 1, 128, 128),
    "step": (1, 1, 128, 128),  # a whole layer over one step (a stream fed a step at a time), not the cell
}
# Variants and the shapes they run on by default (PyTorch leaves oneDNN for gru, proj and ragged: s3/s4
# would take minutes there; ragged needs a batch).
VARIANT_SHAPES = {
    "lstm": ["s1", "s2", "s3", "s4", "s5", "step"],
    "gru": ["s1", "s2", "s5", "step"],
    "proj": ["s1", "s2", "s5"],
    "bidir": ["s1", "s2", "s5"],
    "ragged": ["s2"],
    "cell": ["cell"],
}
VARIANT_LABELS = {
    "lstm": "LSTM",
    "gru": "GRU",
    "proj": "LSTM proj H/2",
    "bidir": "LSTM bidir",
    "ragged": "LSTM ragged",
    "cell": "LSTMCell",
}
IMPLS = ["lstm_ext", "torch", "ort", "numpy"]
IMPL_LABELS = {"lstm_ext": "lstm_ext", "torch": "PyTorch", "ort": "ONNX Runtime", "numpy": "NumPy"}


class Skip(Exception):
    """The implementation cannot run this case (or is not installed); the message says why."""


def case_key(case: Dict[str, Any]) -> str:
    return f"{case['shape']}/{case['variant']}/{case['mode']}"


def make_data(case: Dict[str, Any], seed: int = 0) -> Dict[str, Any]:
    """Weights (torch's state-dict keys and uniform init) and inputs of a case, float32, from ``seed``."""
    steps, batch, inp, hidden = case["T"], case["N"], case["I"], case["H"]
    variant = case["variant"]
    rng = np.random.default_rng(seed)
    gates = 3 if variant == "gru" else 4
    proj = hidden // 2 if variant == "proj" else 0
    out = proj or hidden
    directions = 2 if variant == "bidir" else 1
    bound = 1.0 / math.sqrt(hidden)

    def uniform(*shape: int) -> np.ndarray:
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    state: Dict[str, np.ndarray] = {}
    for d in range(directions):
        sfx = "" if variant == "cell" else ("_l0_reverse" if d else "_l0")
        state["weight_ih" + sfx] = uniform(gates * hidden, inp)
        state["weight_hh" + sfx] = uniform(gates * hidden, out)
        state["bias_ih" + sfx] = uniform(gates * hidden)
        state["bias_hh" + sfx] = uniform(gates * hidden)
        if proj:
            state["weight_hr" + sfx] = uniform(proj, hidden)
    data: Dict[str, Any] = {"state": state, "proj": proj, "directions": directions}
    if variant == "cell":
        data["x"] = rng.standard_normal((batch, inp), dtype=np.float32)
        data["h0"] = rng.standard_normal((batch, hidden), dtype=np.float32) * 0.5
        data["c0"] = rng.standard_normal((batch, hidden), dtype=np.float32) * 0.5
        data["dy"] = rng.standard_normal((batch, hidden), dtype=np.float32)
        return data
    data["x"] = rng.standard_normal((steps, batch, inp), dtype=np.float32)
    data["dy"] = rng.standard_normal((steps, batch, directions * out), dtype=np.float32)
    if variant == "ragged":
        # Unsorted lengths, uniform in [T/4, T], one of them T: on average ~62% of the padded steps are real.
        lengths = rng.integers(max(1, steps // 4), steps + 1, size=batch)
        lengths[rng.integers(batch)] = steps
        data["lengths"] = lengths.astype(np.int64)
        # dL/dy is zero on padding (torch's pad_packed_sequence and lstm_ext both ignore it there).
        data["dy"] *= (np.arange(steps)[:, None] < lengths[None, :])[:, :, None]
    return data


def case_flops(case: Dict[str, Any], seed: int = 0) -> float:
    """Floating-point operations of the case's matrix products (``2·rows·G·(I + H_out)`` per direction, plus
    the projection), ×3 for ``train``; rows are ``T·N``, or the real steps for ragged lengths."""
    steps, batch, inp, hidden = case["T"], case["N"], case["I"], case["H"]
    variant = case["variant"]
    rows = float(steps * batch)
    if variant == "ragged":
        rows = float(make_data(case, seed)["lengths"].sum())
    gates = (3 if variant == "gru" else 4) * hidden
    proj = hidden // 2 if variant == "proj" else 0
    flops = 2 * rows * gates * (inp + (proj or hidden)) + 2 * rows * hidden * proj
    flops *= 2 if variant == "bidir" else 1
    return flops * (3 if case["mode"] == "train" else 1)


class Runner:
    """A prepared call: ``run()`` (timed), ``outputs()`` (the last run's results, torch's layout) and
    ``info``, facts about the set-up worth reporting (JSON-able)."""

    def __init__(
        self,
        run: Callable[[], Any],
        outputs: Callable[[], Dict[str, np.ndarray]],
        info: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.run = run
        self.outputs = outputs
        self.info = info or {}


def make_runner(impl: str, case: Dict[str, Any], data: Dict[str, Any]) -> Runner:
    return {"lstm_ext": _lstm_ext, "torch": _torch, "ort": _ort, "numpy": _numpy}[impl](case, data)


def set_threads(impl: str, threads: int) -> None:
    """Set the thread count of ``impl`` in this process (ONNX Runtime's is per session: see ``_ort``)."""
    if impl == "lstm_ext":
        import lstm_ext

        lstm_ext.set_num_threads(threads)
    elif impl == "torch":
        import torch

        torch.set_num_threads(threads)
    # numpy: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS, set before the process starts.


# ------------------------------------------------------------------------------------------------------------
# lstm_ext


def _lstm_ext(case: Dict[str, Any], data: Dict[str, Any]) -> Runner:
    import lstm_ext

    variant, train = case["variant"], case["mode"] == "train"
    inp, hidden = case["I"], case["H"]
    x, dy = data["x"], data["dy"]
    res: Dict[str, Any] = {}
    if variant == "cell":
        layer = lstm_ext.LSTMCell(inp, hidden, dtype=np.float32)
        layer.load_state_dict(data["state"])
        hx = (data["h0"], data["c0"])

        def run() -> None:
            res["h"], res["c"] = layer(x, hx, training=train)
            if train:
                res["dx"], (res["dh0"], res["dc0"]) = layer.backward(dy)
    else:
        if variant == "gru":
            layer = lstm_ext.GRU(inp, hidden, dtype=np.float32)
        else:
            layer = lstm_ext.LSTM(
                inp, hidden, bidirectional=variant == "bidir", proj_size=data["proj"], dtype=np.float32
            )
        layer.load_state_dict(data["state"])
        lengths = data.get("lengths")

        def run() -> None:
            y, finals = layer(x, None, lengths, training=train)
            res["y"] = y
            res["h"], res["c"] = (finals, None) if variant == "gru" else finals
            if train:
                res["dx"], _ = layer.backward(dy)

    def outputs() -> Dict[str, np.ndarray]:
        out = {k: v for k, v in res.items() if v is not None}
        if train:
            out.update({"grad:" + k: v for k, v in layer.grads.items()})
        return out

    # lstm_ext reads its weights where NumPy put them (16-byte alignment guaranteed): at N=1 the recurrent
    # product is measurably faster when weight_hh happens to be 64-byte aligned, so the report says which.
    hh = [v for k, v in layer.named_parameters() if k.startswith("weight_hh")]
    info = {"weight_hh_aligned64": all(v.ctypes.data % 64 == 0 for v in hh)}
    return Runner(run, outputs, info)


# ------------------------------------------------------------------------------------------------------------
# PyTorch


def _torch(case: Dict[str, Any], data: Dict[str, Any]) -> Runner:
    try:
        import torch
    except ImportError as exc:
        raise Skip(f"torch not installed ({exc})") from None
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    variant, train = case["variant"], case["mode"] == "train"
    inp, hidden = case["I"], case["H"]
    if variant == "cell":
        module = torch.nn.LSTMCell(inp, hidden)
    elif variant == "gru":
        module = torch.nn.GRU(inp, hidden)
    else:
        module = torch.nn.LSTM(inp, hidden, bidirectional=variant == "bidir", proj_size=data["proj"])
    module.load_state_dict({k: torch.from_numpy(v) for k, v in data["state"].items()})
    x = torch.from_numpy(data["x"]).requires_grad_(train)
    dy = torch.from_numpy(data["dy"])
    states = (
        [torch.from_numpy(data[k]).requires_grad_(train) for k in ("h0", "c0")] if variant == "cell" else []
    )
    lengths = torch.from_numpy(data["lengths"]) if "lengths" in data else None
    steps = case["T"]
    res: Dict[str, Any] = {}

    def forward() -> None:
        if variant == "cell":
            res["h"], res["c"] = module(x, (states[0], states[1]))
            res["y"] = res["h"]
            return
        if lengths is not None:
            packed, finals = module(pack_padded_sequence(x, lengths, enforce_sorted=False))
            res["y"] = pad_packed_sequence(packed, total_length=steps)[0]
        else:
            res["y"], finals = module(x)
        res["h"], res["c"] = (finals, None) if variant == "gru" else finals

    if train:

        def run() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            for s in states:
                s.grad = None
            forward()
            res["y"].backward(dy)
    else:

        def run() -> None:
            with torch.inference_mode():
                forward()

    def outputs() -> Dict[str, np.ndarray]:
        out = {
            k: v.detach().numpy()
            for k, v in res.items()
            if v is not None and not (variant == "cell" and k == "y")
        }
        if train:
            out["dx"] = x.grad.numpy()
            if variant == "cell":
                out["dh0"], out["dc0"] = states[0].grad.numpy(), states[1].grad.numpy()
            out.update({"grad:" + k: p.grad.numpy() for k, p in module.named_parameters()})
        return out

    return Runner(run, outputs)


# ------------------------------------------------------------------------------------------------------------
# ONNX Runtime: an ONNX LSTM/GRU node built with onnx.helper from torch's weights (gate blocks reordered)

_ORT_THREADS = {"n": 1}


def set_ort_threads(threads: int) -> None:
    _ORT_THREADS["n"] = threads


def onnx_model(case: Dict[str, Any], data: Dict[str, Any]) -> Any:
    """An ONNX model with one LSTM or GRU node (opset 17) holding the case's weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    variant = case["variant"]
    steps, batch, inp, hidden = case["T"], case["N"], case["I"], case["H"]
    directions = data["directions"]
    state = data["state"]
    # torch i, f, g, o -> ONNX i, o, f, c;  torch r, z, n -> ONNX z, r, h.
    order = [1, 0, 2] if variant == "gru" else [0, 3, 1, 2]

    def reorder(w: np.ndarray) -> np.ndarray:
        blocks = np.split(w, len(order), axis=0)
        return np.concatenate([blocks[k] for k in order], axis=0)

    sfx = [""] if variant == "cell" else ["_l0", "_l0_reverse"][:directions]
    w = np.stack([reorder(state["weight_ih" + s]) for s in sfx])
    r = np.stack([reorder(state["weight_hh" + s]) for s in sfx])
    b = np.stack(
        [np.concatenate([reorder(state["bias_ih" + s]), reorder(state["bias_hh" + s])]) for s in sfx]
    )
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(r, "R"),
        numpy_helper.from_array(b, "B"),
    ]
    node_inputs = ["X", "W", "R", "B"]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, batch, inp])]
    if "lengths" in data:
        node_inputs.append("sequence_lens")
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [batch]))
    else:
        node_inputs.append("")
    if variant == "cell":
        node_inputs += ["initial_h", "initial_c"]
        graph_inputs += [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, batch, hidden])
            for n in ("initial_h", "initial_c")
        ]
    op = "GRU" if variant == "gru" else "LSTM"
    outputs = ["Y", "Y_h"] + ([] if op == "GRU" else ["Y_c"])
    attrs: Dict[str, Any] = {
        "hidden_size": hidden,
        "direction": "bidirectional" if directions == 2 else "forward",
    }
    if op == "GRU":
        attrs["linear_before_reset"] = 1  # torch's GRU
    node = helper.make_node(op, node_inputs, outputs, **attrs)
    graph_outputs = [
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, [steps, directions, batch, hidden]),
        helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [directions, batch, hidden]),
    ]
    if op == "LSTM":
        graph_outputs.append(
            helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [directions, batch, hidden])
        )
    graph = helper.make_graph([node], "rnn", graph_inputs, graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _ort(case: Dict[str, Any], data: Dict[str, Any]) -> Runner:
    if case["mode"] != "fwd":
        raise Skip("inference only")
    if case["variant"] == "proj":
        raise Skip("ONNX's LSTM has no projection")
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise Skip(f"onnxruntime not installed ({exc})") from None
    try:
        model = onnx_model(case, data)
    except ImportError as exc:
        raise Skip(f"onnx not installed ({exc})") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _ORT_THREADS["n"]
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    variant = case["variant"]
    feeds: Dict[str, np.ndarray] = {}
    if variant == "cell":
        feeds["X"] = data["x"][None]
        feeds["initial_h"], feeds["initial_c"] = data["h0"][None], data["c0"][None]
    else:
        feeds["X"] = data["x"]
    if "lengths" in data:
        feeds["sequence_lens"] = data["lengths"].astype(np.int32)
    names = [o.name for o in sess.get_outputs()]
    res: Dict[str, Any] = {}

    def run() -> None:
        res["out"] = sess.run(names, feeds)

    def outputs() -> Dict[str, np.ndarray]:
        got = dict(zip(names, res["out"]))
        y = got["Y"]  # (T, D, N, H)
        out = {"h": got["Y_h"]}
        if "Y_c" in got:
            out["c"] = got["Y_c"]
        if variant == "cell":
            out["h"], out["c"] = out["h"][0], out["c"][0]
        else:
            out["y"] = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
        return out

    return Runner(run, outputs)


# ------------------------------------------------------------------------------------------------------------
# plain NumPy (float32, bench/_numpy_rnn.py)


def _numpy(case: Dict[str, Any], data: Dict[str, Any]) -> Runner:
    import _numpy_rnn

    variant, train = case["variant"], case["mode"] == "train"
    kind = "gru" if variant == "gru" else "lstm"
    state = data["state"]
    if variant == "cell":
        state = {k + "_l0": v for k, v in state.items()}
    layer = _numpy_rnn.NumpyLayer(kind, state)
    lengths = data.get("lengths")
    res: Dict[str, Any] = {}
    if variant == "cell":
        x, h0, c0, dy = data["x"][None], data["h0"][None], data["c0"][None], data["dy"][None]
    else:
        x, h0, c0, dy = data["x"], None, None, data["dy"]

    def run() -> None:
        res["y"], finals = layer.forward(x, h0, c0, lengths, training=train)
        res["h"] = finals[0]
        res["c"] = finals[1] if kind == "lstm" else None
        if train:
            res["dx"], res["dstates"], res["grads"] = layer.backward(dy)

    def outputs() -> Dict[str, np.ndarray]:
        out = {k: res[k] for k in ("y", "h", "c") if res.get(k) is not None}
        if variant == "cell":
            out = {"h": out["h"][0], "c": out["c"][0]}
        if train:
            out["dx"] = res["dx"][0] if variant == "cell" else res["dx"]
            if variant == "cell":
                out["dh0"], out["dc0"] = res["dstates"][0][0], res["dstates"][1][0]
                out.update({"grad:" + k[:-3]: v for k, v in res["grads"].items()})
            else:
                out.update({"grad:" + k: v for k, v in res["grads"].items()})
        return out

    return Runner(run, outputs)


# ------------------------------------------------------------------------------------------------------------
# The check against torch


def max_rel_error(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Per output present in both: ``max |got - want| / max |want|`` (scale-aware, in float64)."""
    errors: Dict[str, float] = {}
    for name, ref in want.items():
        if name not in got:
            continue
        a, b = np.asarray(got[name], np.float64), np.asarray(ref, np.float64)
        if a.shape != b.shape:
            a = a.reshape(b.shape) if a.size == b.size else a
        if a.shape != b.shape:
            errors[name] = math.inf
            continue
        errors[name] = float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-30)
    return errors


def missing_outputs(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray]) -> Optional[str]:
    """A note when ``got`` lacks outputs torch has (other than ones an implementation cannot give)."""
    lacking = sorted(set(want) - set(got))
    return ", ".join(lacking) if lacking else None
