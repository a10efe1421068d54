# SPDX-License-Identifier: MIT
"""``Linear``: the affine layer a model puts on top of a recurrent one, shaped like :class:`torch.nn.Linear`."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ._module import Module
from ._validation import as_float_array, check_shape, check_size, shape_str


class Linear(Module):
    r"""``y = x W^T + b`` over the last axis, shaped like :class:`torch.nn.Linear`.

    Parameters
    ----------
    in_features, out_features : int
        ``I`` and ``O``.
    bias : bool
        With ``bias`` ``(O,)`` (default True). As in torch, ``layer.bias`` is then the parameter array (None
        without it), ``layer.weight`` the ``(O, I)`` weight.
    dtype : np.float32 or np.float64
        Of the parameters and of every array the layer accepts.
    seed : int, optional
        Seeds the initialisation: ``weight`` ``(O, I)`` and ``bias`` uniform in ``[-1/sqrt(I), 1/sqrt(I)]``,
        the distribution torch's default (Kaiming-uniform with ``a = sqrt(5)``) works out to.

    Notes
    -----
    A training forward (the default mode) keeps a reference to its input for :meth:`backward`; do not modify
    it in place in between. :meth:`eval` keeps nothing.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(dtype)
        self.in_features = check_size("in_features", in_features)
        self.out_features = check_size("out_features", out_features)
        self._has_bias = bool(bias)
        shapes: Dict[str, Tuple[int, ...]] = {"weight": (self.out_features, self.in_features)}
        if self._has_bias:
            shapes["bias"] = (self.out_features,)
        else:
            self.bias = None  # as torch: ``layer.bias`` is the parameter, or None without one
        self._init_params(shapes, 1.0 / math.sqrt(self.in_features), seed)
        self._x: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        extra = "" if self._has_bias else ", bias=False"
        return f"Linear({self.in_features}, {self.out_features}{extra}, dtype={self.dtype.name})"

    def __call__(self, x: Any, *, training: Optional[bool] = None) -> np.ndarray:
        """Apply the layer.

        Parameters
        ----------
        x : array_like
            ``(..., I)``: any number of leading axes, e.g. ``(N, I)`` or ``(N, T, I)``.
        training : bool, optional
            Overrides the layer's mode (:meth:`train`/:meth:`eval`) for this call.

        Returns
        -------
        ndarray
            ``(..., O)``.
        """
        x = as_float_array("x", x, self.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected shape (..., {self.in_features}) (in_features={self.in_features}), "
                f"got {shape_str(x.shape)}"
            )
        y = x @ self._params["weight"].T
        if self._has_bias:
            y += self._params["bias"]
        self._x = x if (self.training if training is None else training) else None
        return y

    forward = __call__

    def backward(self, dy: Any, accumulate: bool = False) -> np.ndarray:
        """Gradients of the last training forward.

        Parameters
        ----------
        dy : array_like
            Gradient of the loss with respect to ``y``, ``(..., O)`` shaped as ``y``.
        accumulate : bool
            Add the weight gradients to :attr:`grads` instead of overwriting them (torch's ``.grad``
            accumulation), as in :meth:`LSTM.backward`.

        Returns
        -------
        dx : ndarray
            ``(..., I)`` shaped as ``x``.
        """
        if self._x is None:
            raise RuntimeError(
                "backward: no training forward to differentiate; call the layer in training mode "
                "(layer.train(), the default) before backward"
            )
        x = self._x
        dy = as_float_array("dy", dy, self.dtype)
        check_shape("dy", dy, (*x.shape[:-1], self.out_features), "the shape of y")
        dy2, x2 = dy.reshape(-1, self.out_features), x.reshape(-1, self.in_features)
        grads = {"weight": dy2.T @ x2}
        if self._has_bias:
            grads["bias"] = dy2.sum(axis=0)
        self._store_grads(grads, accumulate)
        return dy @ self._params["weight"]
