# SPDX-License-Identifier: MIT
"""Time-series forecasting: predict the next value of a noisy two-tone signal from the last 24 values.

    python examples/forecasting.py [--quick]

LSTM -> last step -> Linear(1), trained with Adam and MSE; prints the held-out error next to the persistence
forecast (tomorrow = today), the baseline any forecaster must beat.
"""

from __future__ import annotations

import argparse

import lstm_ext
import numpy as np

WINDOW = 24


def windows(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(N, WINDOW, 1)`` and next values ``(N, 1)`` from a 1-D series."""
    idx = np.arange(len(series) - WINDOW)[:, None] + np.arange(WINDOW)
    return series[idx][:, :, None], series[WINDOW:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for the test suite)")
    args = parser.parse_args()
    lstm_ext.set_num_threads(1)
    rng = np.random.default_rng(0)
    t = np.arange(3000)
    series = np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 13) + 0.1 * rng.standard_normal(len(t))
    series = series.astype(np.float32)
    x, y = windows(series)
    split = int(0.8 * len(x))
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]

    model = lstm_ext.Sequential(
        lstm_ext.LSTM(1, 32, batch_first=True, seed=0),
        lstm_ext.LastStep(batch_first=True),
        lstm_ext.Linear(32, 1, seed=1),
    )
    opt = lstm_ext.optim.Adam(model, lr=5e-3)
    persistence = float(np.mean((x_test[:, -1] - y_test) ** 2))
    for epoch in range(2 if args.quick else 6):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            _, grad = lstm_ext.mse_loss(model(x_train[idx]), y_train[idx])
            model.backward(grad)
            opt.step()
        model.eval()
        mse, _ = lstm_ext.mse_loss(model(x_test), y_test)
        model.train()
        print(
            f"epoch {epoch + 1}: held-out MSE {mse:.4f}  (persistence forecast {persistence:.4f}, "
            f"{persistence / mse:.1f}x worse)"
        )


if __name__ == "__main__":
    main()
