# SPDX-License-Identifier: MIT
"""Central finite differences, the independent check of every analytic gradient in this suite."""

from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_grad(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Gradient of the scalar function `f` at `x` by central differences.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``. It is called with `x` itself, perturbed in place, so it may also read `x` through
        another reference (a weight array owned by a layer, for instance).
    x : ndarray
        Float64, writeable, any layout. Each element is perturbed by ``+eps`` and ``-eps`` in turn and
        restored exactly afterwards, also when `f` raises.
    eps : float
        Step. With float64 the error is about ``eps**2 * |f'''|`` (truncation) plus
        ``1e-16 * |f| / eps`` (rounding): about 1e-10 relative for well-scaled functions and 1e-6.

    Returns
    -------
    ndarray
        Same shape as `x`, float64.
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical_grad needs a float64 array, got {x.dtype}")
    grad = np.empty(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        saved = x[idx]
        try:
            x[idx] = saved + eps
            f_plus = float(f(x))
            x[idx] = saved - eps
            f_minus = float(f(x))
        finally:
            x[idx] = saved
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad
