# SPDX-License-Identifier: MIT
"""Per-call cost of one cell step from Python: N=1, I=H=128, float32 (the "one LSTMCell step" budget).

Prints, per cell, the median over repeats of the mean time per call of an eval forward and of a training
forward + backward, for lstm_ext.LSTMCell / GRUCell and, when importable, torch.nn.LSTMCell / GRUCell (one
thread, in the same run), and the floor: a bare call of the binding with the same arrays. Run:
    python bench/cell_step.py [--calls 2000] [--repeats 7] [--size 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import timeit

import numpy as np

import lstm_ext
from lstm_ext import _core


def per_call_us(fn, calls: int, repeats: int) -> float:
    fn()  # warm up: first-call costs (imports, page faults) are not per-step costs
    return statistics.median(timeit.repeat(fn, number=calls, repeat=repeats)) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    n, size = args.calls, args.size
    rows = []
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, size)).astype(np.float32)
    h = rng.standard_normal((1, size)).astype(np.float32)
    c = rng.standard_normal((1, size)).astype(np.float32)
    dh = rng.standard_normal((1, size)).astype(np.float32)

    lstm = lstm_ext.LSTMCell(size, size, seed=0)
    gru = lstm_ext.GRUCell(size, size, seed=0)

    def lstm_train():
        lstm(x, (h, c))
        lstm.backward(dh, dh)

    def gru_train():
        gru(x, h)
        gru.backward(dh)

    lstm.eval()
    rows.append(("lstm_ext.LSTMCell eval forward", per_call_us(lambda: lstm(x, (h, c)), n, args.repeats)))
    lstm.train()
    rows.append(("lstm_ext.LSTMCell train forward+backward", per_call_us(lstm_train, n, args.repeats)))
    gru.eval()
    rows.append(("lstm_ext.GRUCell eval forward", per_call_us(lambda: gru(x, h), n, args.repeats)))
    gru.train()
    rows.append(("lstm_ext.GRUCell train forward+backward", per_call_us(gru_train, n, args.repeats)))

    # The floor under the Python layer: the binding called directly with ready arrays.
    p, g = lstm._params, lstm._grads
    w = (p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
    rows.append(("_core.lstm_cell_forward eval (bare call)",
                 per_call_us(lambda: _core.lstm_cell_forward(x, h, c, *w, False), n, args.repeats)))
    tape = _core.lstm_cell_forward(x, h, c, *w, True)[2]
    gw = (g["weight_ih"], g["weight_hh"], g["bias_ih"], g["bias_hh"])

    def bare_train():
        t = _core.lstm_cell_forward(x, h, c, *w, True)[2]
        _core.lstm_cell_backward(t, *w, dh, dh, *gw, False)

    rows.append(("_core.lstm_cell_forward+backward (bare calls)", per_call_us(bare_train, n, args.repeats)))
    rows.append(("_core.lstm_cell_backward alone (bare call)",
                 per_call_us(lambda: _core.lstm_cell_backward(tape, *w, dh, dh, *gw, False), n, args.repeats)))

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        tx, th, tc, tdh = (torch.from_numpy(a) for a in (x, h, c, dh))
        tl = torch.nn.LSTMCell(size, size)
        tg = torch.nn.GRUCell(size, size)
        with torch.no_grad():
            rows.append(("torch.nn.LSTMCell no_grad forward", per_call_us(lambda: tl(tx, (th, tc)), n, args.repeats)))
            rows.append(("torch.nn.GRUCell no_grad forward", per_call_us(lambda: tg(tx, th), n, args.repeats)))

        def torch_lstm_train():
            h1, c1 = tl(tx, (th, tc))
            torch.autograd.backward((h1, c1), (tdh, tdh))

        def torch_gru_train():
            torch.autograd.backward(tg(tx, th), tdh)

        rows.append(("torch.nn.LSTMCell forward+backward", per_call_us(torch_lstm_train, n, args.repeats)))
        rows.append(("torch.nn.GRUCell forward+backward", per_call_us(torch_gru_train, n, args.repeats)))

    print(f"N=1 I=H={size} float32, median of {args.repeats} x {n} calls; load average {os.getloadavg()}")
    for name, us in rows:
        print(f"  {name:48s} {us:8.2f} us")


if __name__ == "__main__":
    main()
