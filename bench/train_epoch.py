# SPDX-License-Identifier: MIT
"""Epoch time of the demo's training loop, lstm_ext next to the same loop written with torch.

    python bench/train_epoch.py [--epochs 5] [--threads 1 2] [--hidden 64] [--batch-size 32] [--numpy-blas-threads 1]

The loop of ``python -m lstm_ext``: scikit-learn's digits as 8-step sequences (1,437 training images), LSTM(8 ->
H) -> last step -> Linear(H -> 10), cross-entropy, clip_grad_norm_(5), Adam, float32, shuffled mini-batches.
torch runs the same model, data, batch order and optimizer. For each thread count (``lstm_ext.set_num_threads``
and ``torch.set_num_threads``): one warm-up epoch, then the median of ``--epochs`` timed epochs, each
library and thread count in a fresh process (two OpenMP runtimes, torch's and lstm_ext's, or one library's
threads left over from the previous measurement, would otherwise compete for the cores). Prints a markdown
table. Needs the demo extra and torch.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from typing import Callable, List

import lstm_ext
import numpy as np
import torch
from lstm_ext import _demo
from threadpoolctl import threadpool_limits


def lstm_ext_epoch(
    hidden: int, batch_size: int, x: np.ndarray, y: np.ndarray
) -> Callable[[np.random.Generator], None]:
    model = _demo.build_model(hidden, seed=0)
    opt = lstm_ext.optim.Adam(model, lr=1e-2)
    return lambda rng: _demo.run_epoch(model, opt, x, y, batch_size, rng)


def torch_epoch(
    hidden: int, batch_size: int, x: np.ndarray, y: np.ndarray
) -> Callable[[np.random.Generator], None]:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(8, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 10)

        def forward(self, xb: torch.Tensor) -> torch.Tensor:
            return self.head(self.lstm(xb)[0][:, -1])

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(rng: np.random.Generator) -> None:
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(tx[idx]), ty[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()

    return epoch


def median_seconds(epoch: Callable[[np.random.Generator], None], repeats: int) -> float:
    rng = np.random.default_rng(0)
    epoch(rng)  # warm-up: allocations, thread pools
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch(rng)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(library: str, threads: int, args: argparse.Namespace) -> float:
    """Median seconds per epoch of one library at one thread count, in this process."""
    if args.numpy_blas_threads > 0:
        # As the demo does: OpenBLAS threads busy-wait after each small product and take the cores
        # lstm_ext's threads need (see BENCHMARKS_TRAINING.md). torch does not use NumPy's BLAS.
        threadpool_limits(limits=args.numpy_blas_threads, user_api="blas")
    lstm_ext.set_num_threads(threads)
    torch.set_num_threads(threads)
    x, y, _, _ = _demo.load_digits(0.2, seed=0)
    make = lstm_ext_epoch if library == "lstm_ext" else torch_epoch
    return median_seconds(make(args.hidden, args.batch_size, x, y), args.epochs)


def in_fresh_process(library: str, threads: int) -> float:
    command = [sys.executable, __file__, *sys.argv[1:], "--only", library, "--only-threads", str(threads)]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per measurement (median)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--numpy-blas-threads",
        type=int,
        default=1,
        help="threads of NumPy's BLAS (the Linear head's products); 0: leave OpenBLAS's default",
    )
    parser.add_argument("--only", choices=["lstm_ext", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--only-threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:  # a child: print one number
        print(measure(args.only, args.only_threads, args))
        return
    print(
        f"lstm_ext {lstm_ext.__version__}, torch {torch.__version__}, NumPy {np.__version__}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(
        f"digits: 1437 training sequences of T=8, I=8; H={args.hidden}, batch {args.batch_size}, float32; "
        f"median of {args.epochs} epochs; NumPy BLAS threads: {args.numpy_blas_threads or 'OpenBLAS default'}\n"
    )
    print("| threads | lstm_ext s/epoch | torch s/epoch | torch / lstm_ext | lstm_ext samples/s |")
    print("|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        ours, theirs = in_fresh_process("lstm_ext", threads), in_fresh_process("torch", threads)
        print(
            f"| {threads} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x | {1437 / ours:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
