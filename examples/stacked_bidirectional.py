# SPDX-License-Identifier: MIT
"""A stacked bidirectional LSTM tagger: a target at every step that needs the past and the future.

    python examples/stacked_bidirectional.py [--quick]

The target at step t is ``x[t+1] - x[t-1]``, so a model that reads only forward cannot know it at step t. Two
layers, both directions (``num_layers=2, bidirectional=True``), a Linear head applied at every step; the same
model with one direction is trained next to it for comparison.
"""

from __future__ import annotations

import argparse

import lstm_ext
import numpy as np


def make_data(rng: np.random.Generator, n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((steps + 2, n, 1)).astype(np.float32)
    return x[1:-1], x[2:] - x[:-2]  # time-major (T, N, 1): the target of step t uses x[t-1] and x[t+1]


def train(bidirectional: bool, epochs: int, rng: np.random.Generator) -> float:
    directions = 2 if bidirectional else 1
    model = lstm_ext.Sequential(
        lstm_ext.LSTM(1, 16, num_layers=2, bidirectional=bidirectional, seed=0),
        lstm_ext.Linear(directions * 16, 1, seed=1),
    )
    print(
        f"{'bidirectional' if bidirectional else 'forward only '}: {len(model.parameters())} parameter arrays, "
        f"first {model.named_parameters()[0][0]}, last of the LSTM {model.named_parameters()[-3][0]}"
    )
    opt = lstm_ext.optim.Adam(model, lr=1e-2)
    for _ in range(epochs):
        for _ in range(20):
            x, y = make_data(rng, 32, 20)
            opt.zero_grad()
            _, grad = lstm_ext.mse_loss(model(x), y)
            model.backward(grad)
            opt.step()
    x, y = make_data(np.random.default_rng(123), 256, 20)
    mse, _ = lstm_ext.mse_loss(model.eval()(x), y)
    return mse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for the test suite)")
    args = parser.parse_args()
    lstm_ext.set_num_threads(1)
    epochs = 2 if args.quick else 10
    both = train(True, epochs, np.random.default_rng(0))
    forward = train(False, epochs, np.random.default_rng(0))
    print(f"held-out MSE: bidirectional {both:.4f}, forward only {forward:.4f} (predicting 0: 2.0)")


if __name__ == "__main__":
    main()
