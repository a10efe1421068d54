# SPDX-License-Identifier: MIT
"""``python -m lstm_ext``: train an LSTM classifier on a real data set and show how it does.

scikit-learn's bundled handwritten digits (1,797 images of 8x8 pixels, ten classes) are read row by row, top
to bottom, as sequences of 8 steps of 8 features: the LSTM sees one pixel row per step and classifies the digit
from its last hidden state. The held-out accuracy is printed next to the majority-class baseline, and a PNG
shows the loss curve and the confusion matrix. Needs the ``demo`` extra (scikit-learn, matplotlib).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Sequence, TextIO, Tuple

import numpy as np

import lstm_ext
from lstm_ext._progress import Progress

DEFAULT_PLOT = "lstm_ext_demo.png"
CLASSES = 10


def missing_extra() -> Optional[str]:
    """The name of the first missing package of the ``demo`` extra, or None if it is installed."""
    for module in ("sklearn", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            return module
    return None


def load_digits(
    test_fraction: float, seed: int, dtype: type = np.float32
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits as ``(N, T=8, I=8)`` sequences scaled to [0, 1], split stratified into train and held-out.

    Returns ``x_train, y_train, x_test, y_test``; ``y`` are int64 classes 0-9.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    x = (digits.images / 16.0).astype(dtype)  # (1797, 8, 8): row r of the image is time step r
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return x_train, y_train, x_test, y_test


def build_model(hidden: int, seed: int, dtype: type = np.float32) -> lstm_ext.Sequential:
    """LSTM(8 -> hidden) over the rows, its last step, a Linear head to the 10 logits."""
    return lstm_ext.Sequential(
        lstm_ext.LSTM(8, hidden, batch_first=True, dtype=dtype, seed=seed),
        lstm_ext.LastStep(batch_first=True),
        lstm_ext.Linear(hidden, CLASSES, dtype=dtype, seed=seed + 1),
    )


def run_epoch(
    model: lstm_ext.Sequential,
    opt: lstm_ext.optim.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    progress: Optional[Progress] = None,
) -> List[float]:
    """One pass over ``(x, y)`` in shuffled mini-batches; the batch losses."""
    model.train()
    order = rng.permutation(len(x))
    losses = []
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        opt.zero_grad()
        loss, dlogits = lstm_ext.cross_entropy(model(x[idx]), y[idx])
        model.backward(dlogits)
        lstm_ext.clip_grad_norm_(
            model, max_norm=5.0
        )  # a guard against a rare exploding batch, not a tuning knob
        opt.step()
        losses.append(float(loss))
        if progress is not None:
            progress.update(len(idx), float(loss))
    return losses


def predict(model: lstm_ext.Sequential, x: np.ndarray) -> np.ndarray:
    """Predicted classes ``(N,)`` (inference mode: nothing kept for a backward)."""
    model.eval()
    return np.argmax(model(x), axis=1)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``(10, 10)`` counts: row = true class, column = predicted."""
    matrix = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def plot(
    path: str,
    batch_losses: List[float],
    batches_per_epoch: int,
    accuracies: List[float],
    baseline: float,
    matrix: np.ndarray,
) -> None:
    """Write the PNG: training loss and held-out accuracy per epoch; the held-out confusion matrix."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)  # Agg explicitly: no display, no global pyplot state
    ax_loss, ax_cm = fig.subplots(1, 2, width_ratios=[1.25, 1])

    steps = np.arange(1, len(batch_losses) + 1) / batches_per_epoch
    ax_loss.plot(steps, batch_losses, color="tab:blue", alpha=0.3, lw=0.8, label="batch loss")
    epochs = np.arange(1, len(accuracies) + 1)
    per_epoch = [np.mean(batch_losses[(e - 1) * batches_per_epoch : e * batches_per_epoch]) for e in epochs]
    ax_loss.plot(epochs, per_epoch, "o-", color="tab:blue", label="epoch mean loss")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy (train)", yscale="log", title="Training")
    ax_acc = ax_loss.twinx()
    ax_acc.plot(epochs, np.array(accuracies) * 100, "s-", color="tab:green", label="held-out accuracy")
    ax_acc.axhline(baseline * 100, color="tab:red", ls="--", label="majority-class baseline")
    ax_acc.set(ylabel="held-out accuracy (%)", ylim=(0, 100))
    handles = ax_loss.get_legend_handles_labels()[0] + ax_acc.get_legend_handles_labels()[0]
    ax_loss.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 0.12), fontsize=8)

    ax_cm.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax_cm.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if count > matrix.max() / 2 else "black",
            )
    ax_cm.set(
        xticks=range(CLASSES),
        yticks=range(CLASSES),
        xlabel="predicted digit",
        ylabel="true digit",
        title=f"Held-out confusion matrix (accuracy {accuracies[-1]:.1%})",
    )
    fig.savefig(path, dpi=110)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lstm_ext",
        description="Train an LSTM with lstm_ext on scikit-learn's handwritten digits (each 8x8 image read row "
        "by row as an 8-step sequence), print the held-out accuracy next to the majority-class "
        "baseline and write a PNG of the loss curve and the confusion matrix.",
        epilog="Other commands: 'python -m lstm_ext check' (or --check-only) runs the self-check against the "
        "NumPy reference; 'python -m lstm_ext check --help' lists its options.",
    )
    p.add_argument("--dataset", choices=["digits"], default="digits", help="data set (default: digits)")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training set (default: 20)")
    p.add_argument("--hidden", type=int, default=64, help="LSTM hidden size H (default: 64)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    p.add_argument(
        "--lr",
        type=float,
        default=1e-2,
        help="Adam's learning rate at the start, cosine-decayed towards 0 (default: 0.01)",
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.2, help="held-out share of the data (default: 0.2)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="lstm_ext kernel threads (default: 1: at 32 sequences of 8 steps there is little to share)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the batches")
    p.add_argument(
        "--plot",
        default=DEFAULT_PLOT,
        metavar="PATH",
        help=f"where to write the PNG (default: ./{DEFAULT_PLOT})",
    )
    return p


def _check_args(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the options, before any training time is spent on them; None if nothing."""
    for name, value in (
        ("--epochs", args.epochs),
        ("--hidden", args.hidden),
        ("--batch-size", args.batch_size),
        ("--threads", args.threads),
    ):
        if value < 1:
            return f"{name}: expected an int >= 1, got {value}"
    if not args.lr > 0:
        return f"--lr: expected a float > 0, got {args.lr}"
    if not 0 < args.test_fraction < 1:
        return f"--test-fraction: expected a float in (0, 1), got {args.test_fraction}"
    folder = os.path.dirname(os.path.abspath(args.plot))
    if not os.path.isdir(folder):
        return f"--plot: the folder {folder} does not exist"
    return None


def main(argv: Optional[Sequence[str]] = None, stream: Optional[TextIO] = None) -> int:
    args = parser().parse_args(argv)
    out = sys.stdout if stream is None else stream
    # Bad options first: they are wrong whatever is installed.
    problem = _check_args(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    missing = missing_extra()
    if missing is not None:
        print(
            f"The demo needs the 'demo' extra ({missing} is not installed). Install it with:\n"
            f"    {sys.executable} -m pip install 'lstm_ext[demo]'\n"
            f"or, for a local checkout:  {sys.executable} -m pip install '.[demo]'\n"
            f"(that is: {sys.executable} -m pip install scikit-learn matplotlib). "
            "The self-check needs neither: python -m lstm_ext check",
            file=sys.stderr,
        )
        return 2
    lstm_ext.set_num_threads(args.threads)
    # NumPy's OpenBLAS would start its own threads for the head's small matrix products, and they busy-wait
    # after each one: on a machine with few cores they take the cores lstm_ext's threads need (measured: a
    # 2-thread epoch 10x slower). The head's products are too small to gain from threads anyway.
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    with threadpool_limits(limits=1, user_api="blas"):
        return _train(args, out)


def _train(args: argparse.Namespace, out: TextIO) -> int:
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_digits(args.test_fraction, args.seed)
    model = build_model(args.hidden, args.seed)
    opt = lstm_ext.optim.Adam(model, lr=args.lr)
    counts = np.bincount(y_train, minlength=CLASSES)
    majority = int(np.argmax(counts))
    baseline = float(np.mean(y_test == majority))
    print(
        f"lstm_ext {lstm_ext.__version__}  ·  {lstm_ext.get_num_threads()} thread(s)\n"
        f"Data: scikit-learn digits, {len(x_train)} train / {len(x_test)} held-out images, each read as "
        f"T=8 rows of I=8 pixels\nModel: {model!r}".replace("\n(", "\n  ("),
        file=out,
    )
    print(
        f"Training: Adam lr={args.lr} (cosine decay), batch {args.batch_size}, {args.epochs} epochs, "
        "cross-entropy",
        file=out,
    )

    rng = np.random.default_rng(args.seed)
    batch_losses: List[float] = []
    accuracies: List[float] = []
    train_time = 0.0
    for epoch in range(1, args.epochs + 1):
        # Cosine decay: the late epochs refine instead of hopping between minima (the held-out accuracy
        # settles at ~98% instead of swinging between 96% and 99% from one epoch to the next).
        opt.lr = float(args.lr * 0.5 * (1 + np.cos(np.pi * (epoch - 1) / args.epochs)))
        progress = Progress(epoch, args.epochs, len(x_train), out)
        batch_losses += run_epoch(model, opt, x_train, y_train, args.batch_size, rng, progress)
        train_time += time.perf_counter() - progress.start
        accuracies.append(float(np.mean(predict(model, x_test) == y_test)))
        progress.close(f"held-out accuracy {accuracies[-1]:.1%}")

    pred = predict(model, x_test)
    accuracy = float(np.mean(pred == y_test))
    matrix = confusion_matrix(y_test, pred)
    batches_per_epoch = -(-len(x_train) // args.batch_size)
    plot(args.plot, batch_losses, batches_per_epoch, accuracies, baseline, matrix)
    samples = args.epochs * len(x_train)
    print(
        f"\nHeld-out accuracy: {accuracy:.1%}  (majority-class baseline: {baseline:.1%}, always predicting "
        f"digit {majority}; error rate {1 - accuracy:.1%} vs {1 - baseline:.1%})",
        file=out,
    )
    total = time.perf_counter() - start
    print(
        f"Training: {train_time:.1f} s, {samples / train_time:,.0f} samples/s; total {total:.1f} s", file=out
    )
    print(f"Plot: {os.path.abspath(args.plot)}", file=out)
    return 0
