# SPDX-License-Identifier: MIT
"""Load PyTorch LSTM weights into lstm_ext and compare outputs and every gradient on random configurations.

    python examples/torch_parity.py [--trials 60] [--seed 123]

Needs torch. Prints the worst relative error (max |a - b| / max |b|) per quantity, float64 and float32.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import lstm_ext


def one_trial(rng: np.random.Generator, dtype: type, worst: dict) -> None:
    steps, batch, inp, hidden = (int(rng.integers(1, hi)) for hi in (40, 12, 50, 70))
    batch_first, bias, use_hx, bidirectional = (bool(rng.integers(2)) for _ in range(4))
    layers = int(rng.integers(1, 4))
    states = layers * (2 if bidirectional else 1)
    unbatched = rng.random() < 0.2
    tdtype = torch.float64 if dtype == np.float64 else torch.float32

    kwargs = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    theirs = torch.nn.LSTM(inp, hidden, **kwargs).to(tdtype)
    ours = lstm_ext.LSTM(inp, hidden, **kwargs, dtype=dtype)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})

    x_shape = (steps, inp) if unbatched else ((batch, steps, inp) if batch_first else (steps, batch, inp))
    state_shape = (states, hidden) if unbatched else (states, batch, hidden)
    x = rng.standard_normal(x_shape).astype(dtype)
    hx = tuple(rng.standard_normal(state_shape).astype(dtype) for _ in range(2)) if use_hx else None

    x_t = torch.tensor(x, requires_grad=True)
    hx_t = tuple(torch.tensor(a, requires_grad=True) for a in hx) if hx else None
    y_t, (h_t, c_t) = theirs(x_t, hx_t)
    dy, dh, dc = (rng.standard_normal(tuple(a.shape)).astype(dtype) for a in (y_t, h_t, c_t))
    loss = (y_t * torch.tensor(dy)).sum() + (h_t * torch.tensor(dh)).sum() + (c_t * torch.tensor(dc)).sum()
    loss.backward()

    y, (h, c) = ours(x, hx)
    dx, (dh0, dc0) = ours.backward(dy, (dh, dc))
    pairs = {"y": (y, y_t), "h_n": (h, h_t), "c_n": (c, c_t), "dx": (dx, x_t.grad)}
    if hx_t:
        pairs.update(dh0=(dh0, hx_t[0].grad), dc0=(dc0, hx_t[1].grad))
    for name, param in theirs.named_parameters():
        pairs["d" + name] = (ours.grads[name], param.grad)
    for name, (a, b) in pairs.items():
        b = b.detach().numpy()
        err = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
        worst[name] = max(worst.get(name, 0.0), err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for dtype in (np.float64, np.float32):
        worst: dict = {}
        for _ in range(args.trials):
            one_trial(rng, dtype, worst)
        print(f"{np.dtype(dtype).name}: {args.trials} random shapes, worst relative error {max(worst.values()):.2e}")
        print("   " + "  ".join(f"{k} {v:.1e}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
