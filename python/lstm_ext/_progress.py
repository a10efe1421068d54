# SPDX-License-Identifier: MIT
"""A plain-text progress bar for training loops: loss and throughput, redrawn in place on a terminal."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    """One epoch's progress: ``epoch 3/15 [#########-----------]  640/1437  loss 0.2345  51,200 samples/s``.

    On a terminal the line is redrawn with ``\\r`` after every batch (at most 20 times a second); otherwise
    (a pipe, a CI log) one line is printed when the epoch ends, so logs stay short.

    Parameters
    ----------
    epoch, epochs : int
        The current epoch (from 1) and the total.
    total : int
        Samples in the epoch.
    stream : text stream, optional
        Where to write (default ``sys.stdout``).
    """

    width = 24

    def __init__(self, epoch: int, epochs: int, total: int, stream: Optional[TextIO] = None) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = f"epoch {epoch:{len(str(epochs))}d}/{epochs}"
        self.total = total
        self.done = 0
        self.loss_sum = 0.0
        self.start = time.perf_counter()
        self._last_draw = 0.0

    @property
    def loss(self) -> float:
        """Mean loss per sample so far."""
        return self.loss_sum / max(self.done, 1)

    @property
    def rate(self) -> float:
        """Samples per second so far."""
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def update(self, samples: int, loss: float) -> None:
        """Count a batch of ``samples`` with mean loss ``loss``."""
        self.done += samples
        self.loss_sum += loss * samples
        now = time.perf_counter()
        if self.tty and (now - self._last_draw > 0.05 or self.done >= self.total):
            self._last_draw = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def close(self, extra: str = "") -> None:
        """End the epoch's line (with ``extra``, e.g. a held-out metric)."""
        line = self._line() + (f"  {extra}" if extra else "")
        self.stream.write(("\r" if self.tty else "") + line + "\n")
        self.stream.flush()

    def _line(self) -> str:
        filled = int(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        digits = len(str(self.total))
        return (
            f"{self.label} [{bar}] {self.done:{digits}d}/{self.total}  loss {self.loss:.4f}  "
            f"{self.rate:9,.0f} samples/s"
        )
