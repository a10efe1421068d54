# SPDX-License-Identifier: MIT
"""Load PyTorch LSTM/GRU weights into lstm_ext and compare outputs and every gradient on random configurations.

    python examples/torch_parity.py [--trials 60] [--seed 123]

Random kind (LSTM or GRU), shape, layers, direction, proj_size, batch_first, bias, hx, unbatched input and
variable lengths (through torch's pack_padded_sequence). Needs torch. Prints the worst relative error
(max |a - b| / max |b|) per quantity, float64 and float32.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm_ext


def one_trial(rng: np.random.Generator, dtype: type, worst: dict) -> None:
    # Batches up to 40: from 16 sequences on, two threads split the batch (each its own time loop).
    steps, batch, inp, hidden = (int(rng.integers(1, hi)) for hi in (40, 41, 50, 70))
    batch_first, bias, use_hx, bidirectional = (bool(rng.integers(2)) for _ in range(4))
    is_lstm = bool(rng.integers(2))
    layers = int(rng.integers(1, 4))
    proj = int(rng.integers(1, hidden)) if is_lstm and hidden > 1 and rng.random() < 0.4 else 0
    out = proj or hidden
    states = layers * (2 if bidirectional else 1)
    unbatched = rng.random() < 0.2
    lengths = None if unbatched or rng.random() < 0.4 else rng.integers(1, steps + 1, size=batch)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32

    kwargs = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if is_lstm:
        theirs = torch.nn.LSTM(inp, hidden, proj_size=proj, **kwargs).to(tdtype)
        ours = lstm_ext.LSTM(inp, hidden, proj_size=proj, **kwargs, dtype=dtype)
    else:
        theirs = torch.nn.GRU(inp, hidden, **kwargs).to(tdtype)
        ours = lstm_ext.GRU(inp, hidden, **kwargs, dtype=dtype)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})

    x_shape = (steps, inp) if unbatched else ((batch, steps, inp) if batch_first else (steps, batch, inp))
    widths = [out, hidden] if is_lstm else [hidden]
    x = rng.standard_normal(x_shape).astype(dtype)
    hx = [rng.standard_normal((states, w) if unbatched else (states, batch, w)).astype(dtype) for w in widths]

    x_t = torch.tensor(x, requires_grad=True)
    hx_t = [torch.tensor(a, requires_grad=True) for a in hx]
    arg_t = (hx_t[0], hx_t[1]) if is_lstm else hx_t[0]
    arg = ((hx[0], hx[1]) if is_lstm else hx[0]) if use_hx else None
    if lengths is None:
        y_t, final_t = theirs(x_t, arg_t if use_hx else None)
    else:
        packed = pack_padded_sequence(x_t, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        y_p, final_t = theirs(packed, arg_t if use_hx else None)
        y_t, _ = pad_packed_sequence(y_p, batch_first=batch_first, total_length=steps)
    finals_t = list(final_t) if is_lstm else [final_t]
    dy = rng.standard_normal(tuple(y_t.shape)).astype(dtype)
    d_finals = [rng.standard_normal(tuple(f.shape)).astype(dtype) for f in finals_t]
    loss = (y_t * torch.tensor(dy)).sum() + sum((f * torch.tensor(d)).sum() for f, d in zip(finals_t, d_finals))
    loss.backward()

    y, final = ours(x, arg, lengths)
    if is_lstm:
        dx, d_states = ours.backward(dy, (d_finals[0], d_finals[1]))
        finals = list(final)
    else:
        dx, dh0 = ours.backward(dy, d_finals[0])
        finals, d_states = [final], (dh0,)
    pairs = {"y": (y, y_t), "dx": (dx, x_t.grad)}
    for name, a, b in zip(("h_n", "c_n"), finals, finals_t):
        pairs[name] = (a, b)
    if use_hx:
        for name, a, b in zip(("dh0", "dc0"), d_states, hx_t):
            pairs[name] = (a, b.grad)
    for name, param in theirs.named_parameters():
        pairs["d" + name.split("_l")[0]] = (ours.grads[name], param.grad)
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
        print(f"{np.dtype(dtype).name}: {args.trials} random configurations, worst relative error "
              f"{max(worst.values()):.2e}")
        print("   " + "  ".join(f"{k} {v:.1e}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
