# SPDX-License-Identifier: MIT
"""Gradient clipping on long sequences: the gradient norm grows with the sequence length, and
``clip_grad_norm_`` keeps each update a small step whatever the length.

    python examples/gradient_clipping.py [--quick]

An LSTM with a long memory (forget-gate bias 3) and recurrent weights at 4x torch's initial scale (a state
training can reach) reads sequences of growing length T; the loss is the MSE at the last step against the mean
of the first 10 inputs. For each T the script prints the total gradient norm (``clip_grad_norm_`` returns it)
and the size of one SGD update without and with clipping to norm 1, next to the size of the weights: at long T
the unclipped update is many times larger than the weights themselves, the clipped one is at most lr * 1.
"""

from __future__ import annotations

import argparse

import lstm_ext
import numpy as np

LR, MAX_NORM = 0.1, 1.0


def make_model() -> lstm_ext.Sequential:
    lstm = lstm_ext.LSTM(1, 32, seed=0)
    lstm.weight_hh_l0 = 4 * lstm.weight_hh_l0
    lstm.bias_hh_l0[32:64] += 3.0  # forget gates open: a long memory, so gradients reach far back
    return lstm_ext.Sequential(lstm, lstm_ext.LastStep(), lstm_ext.Linear(32, 1, seed=1))


def norm_of(arrays: list) -> float:
    return float(np.sqrt(sum(float(np.vdot(a, a)) for a in arrays)))


def one_step(x: np.ndarray, y: np.ndarray, clip: bool) -> tuple[float, float, float]:
    """(gradient norm, update norm, weight norm) of one SGD step from the initial weights."""
    model = make_model()
    before = [p.copy() for p in model.parameters()]
    opt = lstm_ext.optim.SGD(model, lr=LR)
    opt.zero_grad()
    _, grad = lstm_ext.mse_loss(model(x), y)
    model.backward(grad)
    total = lstm_ext.clip_grad_norm_(model, MAX_NORM if clip else float("inf"))
    opt.step()
    return total, norm_of([p - b for p, b in zip(model.parameters(), before)]), norm_of(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter sequences (for the test suite)")
    args = parser.parse_args()
    lstm_ext.set_num_threads(1)
    print(f"one SGD step (lr={LR}) from the same weights; clipping to a total gradient norm of {MAX_NORM}")
    print(f"{'T':>5} {'grad norm':>10} {'update, no clip':>16} {'update, clipped':>16} {'weights':>8}")
    for steps in (10, 50, 200) if args.quick else (10, 50, 200, 500):
        x = np.random.default_rng(0).standard_normal((steps, 32, 1)).astype(np.float32)
        y = x[:10].mean(axis=0) * np.sqrt(10)
        total, unclipped, weights = one_step(x, y, clip=False)
        _, clipped, _ = one_step(x, y, clip=True)
        print(f"{steps:5d} {total:10.3g} {unclipped:16.3g} {clipped:16.3g} {weights:8.3g}")


if __name__ == "__main__":
    main()
