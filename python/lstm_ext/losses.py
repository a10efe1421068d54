# SPDX-License-Identifier: MIT
"""Losses with their gradients: ``mse_loss`` and ``cross_entropy``, as torch.nn.functional defines them.

Each returns ``(loss, grad)``: the loss (a float, or an array with ``reduction="none"``) and its gradient with
respect to the input, ready to feed a layer's ``backward``. With ``reduction="none"`` the gradient is that of
the sum of the unreduced losses.
"""

from __future__ import annotations

from typing import Any, Tuple, Union

import numpy as np

from ._validation import shape_str

Loss = Union[float, np.ndarray]
_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")


def _float_input(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected dtype float32 or float64, got {array.dtype.name}")
    return array


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tuple[Loss, np.ndarray]:
    """Mean squared error, :func:`torch.nn.functional.mse_loss`.

    Parameters
    ----------
    input : array_like
        Predictions, any shape, float32 or float64.
    target : array_like
        Same shape as ``input`` (no broadcasting: a mismatch is a ValueError rather than torch's warning).
    reduction : {"mean", "sum", "none"}
        ``mean(d**2)``, ``sum(d**2)`` or the elementwise ``d**2``, with ``d = input - target``.

    Returns
    -------
    loss : float or ndarray
        A float; with ``"none"``, an array shaped as ``input``.
    grad : ndarray
        d loss / d input, shaped as ``input``, of its dtype.
    """
    _check_reduction(reduction)
    x = _float_input("input", input)
    t = np.asarray(target, dtype=x.dtype)
    if t.shape != x.shape:
        raise ValueError(
            f"target: expected shape {shape_str(x.shape)} (the shape of input), got {shape_str(t.shape)}"
        )
    diff = x - t
    if reduction == "none":
        return diff * diff, 2 * diff
    scale = 1.0 if reduction == "sum" else 1.0 / max(diff.size, 1)
    loss = float(np.vdot(diff, diff)) * scale
    return loss, (2 * scale * diff).astype(x.dtype, copy=False)


def cross_entropy(input: Any, target: Any, reduction: str = "mean") -> Tuple[Loss, np.ndarray]:
    """Softmax cross-entropy on logits with integer class targets, :func:`torch.nn.functional.cross_entropy`.

    ``loss_n = logsumexp(input[n]) - input[n, target[n]]``, computed with the maximum subtracted first, so
    large logits neither overflow nor lose the small ones.

    Parameters
    ----------
    input : array_like
        Logits ``(N, C)``, or unbatched ``(C,)``; float32 or float64.
    target : array_like of int
        Class indices ``(N,)`` (unbatched: a scalar), each in ``[0, C)``.
    reduction : {"mean", "sum", "none"}
        Mean or sum over ``N``, or the per-sample losses ``(N,)``.

    Returns
    -------
    loss : float or ndarray
        A float; with ``"none"``, ``(N,)`` (unbatched: a 0-d array).
    grad : ndarray
        d loss / d input, ``softmax(input) - onehot(target)`` scaled by the reduction; shaped as ``input``.
    """
    _check_reduction(reduction)
    x = _float_input("input", input)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(
            f"input: expected logits of shape (N, C) or (C,) with C >= 1, got {shape_str(x.shape)}"
        )
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices, got dtype {t.dtype.name}")
    if t.shape != x.shape[:-1]:
        raise ValueError(
            f"target: expected shape {shape_str(x.shape[:-1])} (one class index per row of input "
            f"{shape_str(x.shape)}), got {shape_str(t.shape)}"
        )
    classes = x.shape[-1]
    if t.size and (t.min() < 0 or t.max() >= classes):
        bad = int(t.min()) if t.min() < 0 else int(t.max())
        raise ValueError(f"target: expected class indices in [0, {classes}), got {bad}")
    logits = x.reshape(-1, classes)
    rows = np.arange(logits.shape[0])
    idx = t.reshape(-1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1)
    per_sample = np.log(sum_exp) - shifted[rows, idx]
    grad = exp / sum_exp[:, None]
    grad[rows, idx] -= 1
    if reduction == "none":
        return per_sample.reshape(t.shape), grad.reshape(x.shape)
    scale = 1.0 if reduction == "sum" else 1.0 / max(logits.shape[0], 1)
    loss = float(per_sample.sum()) * scale
    grad *= x.dtype.type(scale)
    return loss, grad.reshape(x.shape)
