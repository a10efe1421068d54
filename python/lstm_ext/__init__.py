# SPDX-License-Identifier: MIT
"""lstm_ext: fast LSTM and GRU layers for the CPU on NumPy arrays, shaped like torch.nn.

A C++17/Eigen core runs whole sequences forward and backward through time with the GIL released; this
package gives it torch's names, shapes and weight layout, so PyTorch weights load as they are.

Training: ``Linear``, ``Sequential``/``Model``/``LastStep``, the losses ``mse_loss`` and ``cross_entropy``,
``clip_grad_norm_``/``clip_grad_value_`` and ``lstm_ext.optim`` (``SGD``, ``Adam``, ``AdamW``) follow torch's
semantics, so a training run can be compared with PyTorch's step by step.
"""

from __future__ import annotations

from ._core import get_num_threads as _get_num_threads
from ._core import set_num_threads as _set_num_threads
from . import optim
from .clip import clip_grad_norm_, clip_grad_value_
from .gru import GRU, GRUCell
from .linear import Linear
from .losses import cross_entropy, mse_loss
from .lstm import LSTM, LSTMCell
from .model import LastStep, Model, Sequential, load, save
from .stream import Stateful

__version__ = "0.1.0"
__all__ = [
    "GRU", "GRUCell", "LSTM", "LSTMCell", "Stateful", "get_num_threads", "set_num_threads", "__version__",
    # training
    "Linear", "Model", "Sequential", "LastStep", "save", "load", "mse_loss", "cross_entropy",
    "clip_grad_norm_", "clip_grad_value_", "optim",
]


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels use, process-wide (``n >= 1``).

    The default is the number of CPUs this process may run on. Results do not depend on it beyond float
    rounding.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n}")
    _set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the kernels use."""
    return _get_num_threads()
