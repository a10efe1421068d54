# SPDX-License-Identifier: MIT
"""Gradient clipping, :func:`torch.nn.utils.clip_grad_norm_` and :func:`~torch.nn.utils.clip_grad_value_`."""

from __future__ import annotations

import math
from typing import Any, List

import numpy as np

from ._owners import owners

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _gradients(value: Any) -> List[np.ndarray]:
    """The live gradient arrays of a layer or model (or a list of them), or the arrays given themselves."""
    if isinstance(value, np.ndarray):
        return [value]
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if items and all(isinstance(item, np.ndarray) for item in items):
        return items
    return [grad for owner in owners("parameters", items) for grad in owner.grads.values()]


def _norm(array: np.ndarray, norm_type: float) -> float:
    flat = np.abs(array.reshape(-1).astype(np.float64, copy=False))
    if flat.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(flat.max())
    if norm_type == 2.0:
        return float(np.sqrt(np.dot(flat, flat)))
    return float(np.sum(flat**norm_type) ** (1.0 / norm_type))


def clip_grad_norm_(
    parameters: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float:
    """Scale the gradients in place so that their total norm is at most ``max_norm``, as torch.

    The total norm is the ``norm_type``-norm of all gradients taken as one vector (the norm of the per-array
    norms); each gradient is multiplied by ``min(1, max_norm / (total_norm + 1e-6))``, torch's coefficient with
    its ``1e-6``.

    Parameters
    ----------
    parameters : layer or model, a list of them, or gradient arrays
        Whose gradients (``grads``) to clip; or the gradient arrays themselves.
    max_norm : float
        ``>= 0``.
    norm_type : float
        ``p > 0`` of the p-norm, or ``math.inf`` (``float("inf")``, ``"inf"``) for the largest absolute value.
    error_if_nonfinite : bool
        Raise RuntimeError, leaving the gradients alone, if the total norm is NaN or infinite.

    Returns
    -------
    float
        The total norm before clipping (computed in float64).
    """
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"norm_type: expected a float > 0 or inf, got {norm_type}")
    max_norm = float(max_norm)
    if not max_norm >= 0:
        raise ValueError(f"max_norm: expected a float >= 0, got {max_norm}")
    grads = _gradients(parameters)
    if not grads:
        return 0.0
    norms = np.array([_norm(g, norm_type) for g in grads])
    total = _norm(norms, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
            "set error_if_nonfinite=False to clip anyway"
        )
    coef = min(max_norm / (total + 1e-6), 1.0) if not math.isnan(total) else math.nan
    # A non-finite norm gives torch's result without a warning: inf * 0 and anything * nan are NaN.
    with np.errstate(invalid="ignore"):
        for g in grads:
            g *= g.dtype.type(coef)
    return total


def clip_grad_value_(parameters: Any, clip_value: float) -> None:
    """Clamp every gradient in place to ``[-clip_value, clip_value]``, as torch.

    Parameters
    ----------
    parameters : layer or model, a list of them, or gradient arrays
        As in :func:`clip_grad_norm_`.
    clip_value : float
        ``>= 0``.
    """
    clip_value = float(clip_value)
    if not clip_value >= 0:
        raise ValueError(f"clip_value: expected a float >= 0, got {clip_value}")
    for g in _gradients(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
