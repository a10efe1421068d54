# SPDX-License-Identifier: MIT
"""lstm_ext: fast LSTM and GRU layers for the CPU on NumPy arrays, shaped like torch.nn.

A C++17/Eigen core runs whole sequences forward and backward through time with the GIL released; this
package gives it torch's names, shapes and weight layout, so PyTorch weights load as they are.

Training: ``Linear``, ``Sequential``/``Model``/``LastStep``, the losses ``mse_loss`` and ``cross_entropy``,
``clip_grad_norm_``/``clip_grad_value_`` and ``lstm_ext.optim`` (``SGD``, ``Adam``, ``AdamW``) follow torch's
semantics, so a training run can be compared with PyTorch's step by step.
"""

from __future__ import annotations

from typing import List

from ._blas import preload_openblas

preload_openblas()  # before _core: the extension links OpenBLAS from the scipy-openblas32 wheel

from . import _core  # noqa: E402
from ._core import get_num_threads as _get_num_threads  # noqa: E402
from ._core import set_num_threads as _set_num_threads  # noqa: E402
from . import optim  # noqa: E402
from .clip import clip_grad_norm_, clip_grad_value_  # noqa: E402
from .gru import GRU, GRUCell  # noqa: E402
from .linear import Linear  # noqa: E402
from .losses import cross_entropy, mse_loss  # noqa: E402
from .lstm import LSTM, LSTMCell  # noqa: E402
from .model import LastStep, Model, Sequential, load, save  # noqa: E402
from .stream import Stateful  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "GRU", "GRUCell", "LSTM", "LSTMCell", "Stateful", "get_num_threads", "set_num_threads", "__version__",
    "gemm_backends", "get_gemm_backend", "set_gemm_backend",
    "set_memory_cache_limit", "get_memory_cache_limit", "memory_cache_bytes", "empty_memory_cache",
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


def set_memory_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of freed large buffers for reuse, process-wide (``0``: keep none).

    The layers' outputs from 64 KB (``y``, ``dx``, weight gradients, the training tape) and the kernels'
    workspaces come from a cache of memory blocks. A block comes back to it when its array is garbage
    collected, and the next call of the same sizes reuses it instead of asking the system for fresh pages,
    whose first touch costs a page fault each: 6-8% of a training step at (T, N, I, H) = (50, 128, 1024,
    1024) and up to 15% of a smaller forward. The default limit is 1 GiB or an eighth of this machine's
    memory, whichever is less. Lowering it returns blocks to the system at once. Results never depend on it.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"nbytes: expected an int, got {type(nbytes).__name__}")
    if nbytes < 0:
        raise ValueError(f"nbytes: expected an int >= 0, got {nbytes}")
    _core.set_memory_cache_limit(min(nbytes, 2**64 - 1))


def get_memory_cache_limit() -> int:
    """The most bytes of freed buffers the memory cache keeps (see :func:`set_memory_cache_limit`)."""
    return int(_core.get_memory_cache_limit())


def memory_cache_bytes() -> int:
    """Bytes of freed buffers the memory cache holds now, ready for reuse (not counting buffers in use)."""
    return int(_core.memory_cache_bytes())


def empty_memory_cache() -> None:
    """Return every buffer the memory cache holds to the system; arrays in use are not affected."""
    _core.empty_memory_cache()


def gemm_backends() -> List[str]:
    """The kernels this build can run the products over all time steps on, the default first:
    ``["native", "openblas", "eigen"]`` (no ``"openblas"`` in a build without the scipy-openblas32 wheel).

    Those products are the input projection of a forward and, in a backward, ``dx`` and the weight gradients.
    ``"native"`` is lstm_ext's own register-blocked float32 kernel, the one the per-step recurrent products
    always run on (float64 runs those on Eigen's kernel, and on Eigen under ``"native"``).
    """
    return list(_core.gemm_backends())


def set_gemm_backend(name: str) -> None:
    """Run the products over all time steps on ``"native"``, ``"openblas"`` or ``"eigen"``, process-wide.

    Results differ between them by float rounding only. Each runs single-threaded under lstm_ext's own split
    over :func:`get_num_threads` threads (OpenBLAS's thread pool stays idle), so none competes with the
    kernels' threads.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected 'native', 'openblas' or 'eigen', got {type(name).__name__}")
    _core.set_gemm_backend(name)


def get_gemm_backend() -> str:
    """The backend of the products over all time steps: ``"native"``, ``"openblas"`` or ``"eigen"``."""
    return str(_core.get_gemm_backend())
