# SPDX-License-Identifier: MIT
"""Variational dropout (``input_dropout=``, ``recurrent_dropout=``): one mask per sequence, the same at every
step, on the inputs and on the recurrent state (Gal & Ghahramani; Keras' ``dropout``/``recurrent_dropout``).

    python examples/variational_dropout.py [--quick]

1. The masks: in training, an input feature that a sequence's mask drops is dropped at every step of that
   sequence (it gets no gradient at any step); in eval mode nothing is dropped and the output is
   deterministic.
2. A small, noisy training set that a 64-unit LSTM overfits when trained long: the same model trained with
   and without dropout, held-out MSE of both next to the persistence forecast.
"""

from __future__ import annotations

import argparse

import lstm_ext
import numpy as np

WINDOW = 20


def show_masks() -> None:
    layer = lstm_ext.LSTM(6, 4, input_dropout=0.5, dtype=np.float64, seed=0)
    x = np.ones((5, 2, 6))  # T=5 steps, N=2 sequences, I=6 features
    y, _ = layer(x)
    dx, _ = layer.backward(np.ones_like(y))
    # A dropped input feature gets no gradient, at any step: the mask is per sequence, not per step.
    for n in range(2):
        kept = (dx[:, n] != 0).astype(int)
        print(
            f"{'1.' if n == 0 else '  '} sequence {n}: features reaching the LSTM at steps 0..4 (1 = kept):",
            " ".join("".join(map(str, row)) for row in kept),
        )
    layer.eval()
    print("   eval mode: no dropout, deterministic:", np.array_equal(layer(x)[0], layer(x)[0]))


def series_windows(rng: np.random.Generator, length: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(length)
    s = np.sin(2 * np.pi * t / 30) * np.sin(2 * np.pi * t / 170) + 0.3 * rng.standard_normal(length)
    idx = np.arange(length - WINDOW)[:, None] + np.arange(WINDOW)
    return s[idx][:, :, None].astype(np.float32), s[WINDOW:, None].astype(np.float32)


def train(dropout: float, epochs: int, data: tuple) -> float:
    x_train, y_train, x_test, y_test = data
    model = lstm_ext.Sequential(
        lstm_ext.LSTM(1, 64, batch_first=True, input_dropout=dropout, recurrent_dropout=dropout, seed=0),
        lstm_ext.LastStep(batch_first=True),
        lstm_ext.Linear(64, 1, seed=1),
    )
    opt = lstm_ext.optim.Adam(model, lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), 16):
            idx = order[start : start + 16]
            opt.zero_grad()
            _, grad = lstm_ext.mse_loss(model(x_train[idx]), y_train[idx])
            model.backward(grad)
            opt.step()
    mse, _ = lstm_ext.mse_loss(model.eval()(x_test), y_test)
    return mse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for the test suite)")
    args = parser.parse_args()
    lstm_ext.set_num_threads(1)
    show_masks()
    x, y = series_windows(np.random.default_rng(1), 1200)
    data = (x[:120], y[:120], x[600:], y[600:])  # 120 training windows: few enough to overfit
    persistence = float(np.mean((x[600:, -1] - y[600:]) ** 2))
    epochs = 5 if args.quick else 150
    plain, dropped = train(0.0, epochs, data), train(0.4, epochs, data)
    print(
        f"2. held-out MSE after {epochs} epochs on 120 windows: no dropout {plain:.4f}, input/recurrent "
        f"dropout 0.4 {dropped:.4f} (persistence forecast {persistence:.4f})"
    )


if __name__ == "__main__":
    main()
