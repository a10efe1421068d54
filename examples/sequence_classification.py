# SPDX-License-Identifier: MIT
"""Sequence classification: which of three frequencies is hidden in a noisy signal?

    python examples/sequence_classification.py [--quick]

LSTM -> last step -> Linear, trained with Adam and cross-entropy; prints the held-out accuracy next to chance.
"""

from __future__ import annotations

import argparse

import lstm_ext
import numpy as np


def make_data(rng: np.random.Generator, n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, T, 1): a sine of frequency 1, 2 or 3 cycles per sequence, random phase, noise; ``y`` (N,)."""
    y = rng.integers(0, 3, size=n)
    t = np.linspace(0, 1, steps)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t + phase) + 0.5 * rng.standard_normal((n, steps))
    return x[:, :, None].astype(np.float32), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for the test suite)")
    args = parser.parse_args()
    lstm_ext.set_num_threads(1)  # batches of 32: one thread is fastest at this size
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(rng, 1024, 40)
    x_test, y_test = make_data(rng, 256, 40)

    model = lstm_ext.Sequential(
        lstm_ext.LSTM(1, 32, batch_first=True, seed=0),
        lstm_ext.LastStep(batch_first=True),
        lstm_ext.Linear(32, 3, seed=1),
    )
    opt = lstm_ext.optim.Adam(model, lr=5e-3)
    for epoch in range(2 if args.quick else 12):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            opt.zero_grad()
            loss, dlogits = lstm_ext.cross_entropy(model(x_train[idx]), y_train[idx])
            model.backward(dlogits)
            lstm_ext.clip_grad_norm_(model, 1.0)
            opt.step()
        model.eval()
        accuracy = np.mean(np.argmax(model(x_test), axis=1) == y_test)
        model.train()
        print(
            f"epoch {epoch + 1}: last batch loss {loss:.3f}, held-out accuracy {accuracy:.1%} (chance 33.3%)"
        )


if __name__ == "__main__":
    main()
