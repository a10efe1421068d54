# SPDX-License-Identifier: MIT
"""``python -m lstm_ext check`` (and ``python -m lstm_ext --check-only``): a self-check and timings of the
installed package.

1. Self-check: forward and backward of LSTM and GRU layers (one layer; two bidirectional layers with ragged
   lengths and, for the LSTM, a projection) in float64 and float32, every output and gradient compared with
   the pure-NumPy reference (``lstm_ext.reference_layers``).
2. Timings (skipped with ``--check-only``): the time of a forward (inference) and of a training step (forward + backward) next to the same
   computation in plain NumPy, medians over repeats.

Exits with status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

import lstm_ext
from lstm_ext import reference, reference_layers

# Worst relative error allowed against the float64 reference: float64 to rounding, float32 to its precision.
_TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-4}


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max(|want|), a scale-aware error that does not blow up near zero entries."""
    scale = max(float(np.max(np.abs(want))), 1e-30)
    return float(np.max(np.abs(got.astype(np.float64) - want))) / scale


# The self-check's configurations: (name, kind, layer arguments, ragged lengths?).
_CHECKS = [
    ("LSTM", "lstm", {}, False),
    ("LSTM, 2 layers, bidirectional, proj, ragged", "lstm", {"num_layers": 2, "bidirectional": True, "proj": True}, True),
    ("GRU", "gru", {}, False),
    ("GRU, 2 layers, bidirectional, ragged", "gru", {"num_layers": 2, "bidirectional": True}, True),
]


def self_check(shape: Tuple[int, int, int, int], dtype: np.dtype, seed: int, kind: str, options: Dict[str, object],
               ragged: bool) -> Dict[str, float]:
    """Relative errors of one layer's outputs and gradients against the float64 reference."""
    steps, batch, inp, hidden = shape
    rng = np.random.default_rng(seed)
    layers = int(options.get("num_layers", 1))
    bidirectional = bool(options.get("bidirectional", False))
    proj = max(1, hidden // 2) if options.get("proj") and hidden > 1 else 0
    if kind == "lstm":
        layer = lstm_ext.LSTM(inp, hidden, layers, bidirectional=bidirectional, proj_size=proj, dtype=dtype, seed=seed)
    else:
        layer = lstm_ext.GRU(inp, hidden, layers, bidirectional=bidirectional, dtype=dtype, seed=seed)
    k = layers * (2 if bidirectional else 1)
    out = proj or hidden
    x = rng.standard_normal((steps, batch, inp))
    h0 = rng.standard_normal((k, batch, out)) * 0.5
    c0 = rng.standard_normal((k, batch, hidden)) * 0.5 if kind == "lstm" else None
    lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
    dy = rng.standard_normal((steps, batch, (2 if bidirectional else 1) * out))
    dh_n = rng.standard_normal(h0.shape)
    dc_n = rng.standard_normal((k, batch, hidden)) if kind == "lstm" else None

    cast = {np.dtype(np.float32): lambda a: a.astype(np.float32)}.get(dtype, lambda a: a)
    if kind == "lstm":
        y, finals = layer(cast(x), (cast(h0), cast(c0)), lengths)
        dx, d_states = layer.backward(cast(dy), (cast(dh_n), cast(dc_n)))
    else:
        y, h_n = layer(cast(x), cast(h0), lengths)
        dx, dh0 = layer.backward(cast(dy), cast(dh_n))
        finals, d_states = (h_n,), (dh0,)

    params = {name: value.astype(np.float64) for name, value in layer.state_dict().items()}
    y_ref, h_ref, c_ref, tape = reference_layers.stack_forward(
        kind, params, x, h0, c0, num_layers=layers, bidirectional=bidirectional, proj_size=proj, lengths=lengths)
    dx_ref, dh0_ref, dc0_ref, g_ref = reference_layers.stack_backward(tape, dy, dh_n, dc_n)
    pairs = {"y": (y, y_ref), "h_n": (finals[0], h_ref), "dx": (dx, dx_ref), "dh0": (d_states[0], dh0_ref)}
    if kind == "lstm":
        pairs.update(c_n=(finals[1], c_ref), dc0=(d_states[1], dc0_ref))
    for name, grad in g_ref.items():
        pairs["d" + name] = (layer.grads[name], grad)
    return {name: _rel_err(got, want) for name, (got, want) in pairs.items()}


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-touch of buffers, thread pool start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def demo_timings(shape: Tuple[int, int, int, int], repeats: int, seed: int) -> List[Tuple[str, float, float]]:
    """(what, lstm_ext ms, NumPy ms) rows; NumPy is the reference in float64, so float64 is compared too."""
    steps, batch, inp, hidden = shape
    rng = np.random.default_rng(seed)
    x64 = rng.standard_normal((steps, batch, inp))
    dy64 = rng.standard_normal((steps, batch, hidden))
    rows = []
    numpy_ms: Dict[str, float] = {}
    layer64 = lstm_ext.LSTM(inp, hidden, dtype=np.float64, seed=seed)
    p = layer64.state_dict()
    args = (x64, None, None, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"])
    numpy_ms["forward"] = _median_ms(lambda: reference.lstm_forward(*args), repeats)
    numpy_ms["train"] = _median_ms(lambda: reference.lstm_backward(reference.lstm_forward(*args)[3], dy64), repeats)

    for dtype in (np.float64, np.float32):
        layer = lstm_ext.LSTM(inp, hidden, dtype=dtype, seed=seed)
        x, dy = x64.astype(dtype), dy64.astype(dtype)

        def train_step() -> None:
            layer(x)
            layer.backward(dy)

        layer.eval()
        fwd = _median_ms(lambda: layer(x), repeats)
        layer.train()
        step = _median_ms(train_step, repeats)
        name = np.dtype(dtype).name
        rows.append((f"forward (inference), {name}", fwd, numpy_ms["forward"]))
        rows.append((f"forward + backward, {name}", step, numpy_ms["train"]))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_ext check",
        description="Self-check lstm_ext against its NumPy reference and time it (the training demo is plain "
                    "'python -m lstm_ext').",
    )
    parser.add_argument("--shape", type=int, nargs=4, metavar=("T", "N", "I", "H"), default=(100, 32, 128, 128),
                        help="shape of the timing demo (default: 100 32 128 128)")
    parser.add_argument("--check-shape", type=int, nargs=4, metavar=("T", "N", "I", "H"), default=(50, 16, 64, 96),
                        help="shape of the self-check (default: 50 16 64 96)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: all CPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-only", action="store_true", help="run the self-check, skip the timings")
    args = parser.parse_args(argv)
    if args.threads is not None:
        lstm_ext.set_num_threads(args.threads)

    print(f"lstm_ext {lstm_ext.__version__}  ·  NumPy {np.__version__}  ·  {lstm_ext.get_num_threads()} thread(s)")
    print(f"\nSelf-check: forward + backward, shape (T, N, I, H) = {tuple(args.check_shape)}, against the float64 "
          "NumPy reference (worst relative error over outputs, states and every gradient)")
    ok = True
    for name, kind, options, ragged in _CHECKS:
        for dtype in (np.dtype(np.float64), np.dtype(np.float32)):
            errors = self_check(tuple(args.check_shape), dtype, args.seed, kind, options, ragged)
            worst = max(errors, key=errors.get)
            passed = errors[worst] <= _TOLERANCE[dtype]
            ok = ok and passed
            print(f"  {'PASS' if passed else 'FAIL'}  {name + ', ' + dtype.name:52s} worst {worst} {errors[worst]:.2e} "
                  f"(limit {_TOLERANCE[dtype]:.0e})")

    if not args.check_only:
        shape = tuple(args.shape)
        print(f"\nTiming: shape (T, N, I, H) = {shape}, median of {args.repeats}")
        print(f"  {'':34s} {'lstm_ext':>10s} {'NumPy f64':>10s} {'speed-up':>9s}")
        for what, ours, theirs in demo_timings(shape, args.repeats, args.seed):
            print(f"  {what:34s} {ours:8.2f}ms {theirs:8.2f}ms {theirs / ours:8.1f}x")
    print("\nself-check " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1
