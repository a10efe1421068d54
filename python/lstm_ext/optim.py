# SPDX-License-Identifier: MIT
"""Optimizers with torch's update rules: ``SGD``, ``Adam``, ``AdamW`` (:mod:`torch.optim`, for-loop variant).

An optimizer is given the layers or models it trains (where torch is given ``model.parameters()``: here a
parameter is a plain array and its gradient lives in its owner's ``grads``). :meth:`Optimizer.step` updates
the live parameter arrays in place from the gradients there; as in torch, the backward of a model accumulates
into the gradients and :meth:`Optimizer.zero_grad` (or the model's ``zero_grad``) clears them::

    opt = lstm_ext.optim.Adam(model, lr=1e-3)
    for x, y in batches:
        opt.zero_grad()
        loss, dlogits = lstm_ext.cross_entropy(model(x), y)
        model.backward(dlogits)
        opt.step()
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from ._owners import owners, params_and_grads

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a float >= 0, got {type(value).__name__}")
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name}: expected a float >= 0, got {value}")
    return float(value)


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """``start += weight * (end - start)`` in place, in torch's two forms (the one it uses for the weight, so
    float64 results agree to the last bit)."""
    if weight < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)


class Optimizer:
    """Base class: the owners of the parameters, the learning rate, per-parameter state.

    Parameters
    ----------
    params : layer or model, or a list of them
        Anything with ``named_parameters()`` and ``grads`` (``LSTM``, ``Linear``, ``Sequential``, a
        :class:`~lstm_ext.Model`...). The parameters are looked up at every step, so weights loaded with
        ``load_state_dict`` are trained from then on, keeping the optimizer's state.
    lr : float
        Learning rate, ``>= 0``. A plain attribute: a schedule may change ``opt.lr`` between steps.
    """

    def __init__(self, params: Any, lr: float) -> None:
        self._owners = owners("params", params)
        self.lr = _non_negative("lr", lr)
        self.state: Dict[Tuple[int, str], Dict[str, Any]] = {}

    def zero_grad(self) -> None:
        """Set every gradient of the trained layers to zero (torch's ``set_to_none=False``)."""
        for owner in self._owners:
            owner.zero_grad()

    def step(self) -> None:
        """Update every parameter in place from its gradient."""
        for key, param, grad in params_and_grads(self._owners):
            self._update(param, grad, self.state.setdefault(key, {}))

    def _update(self, param: np.ndarray, grad: np.ndarray, state: Dict[str, Any]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, :class:`torch.optim.SGD`.

    With ``g = grad + weight_decay * p``; with momentum, ``b = g`` at the first step and
    ``b = momentum * b + (1 - dampening) * g`` after, then ``g = b`` (or ``g = g + momentum * b`` with
    ``nesterov``); finally ``p = p - lr * g``.

    Parameters
    ----------
    params : layer or model, or a list of them
        See :class:`Optimizer`.
    lr, momentum, dampening, weight_decay : float
        Each ``>= 0``; torch's defaults (``lr = 1e-3``).
    nesterov : bool
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``, as in torch.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _non_negative("momentum", momentum)
        self.dampening = _non_negative("dampening", dampening)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov: needs momentum > 0 and dampening == 0, got momentum={momentum}, "
                f"dampening={dampening}"
            )

    def _update(self, param: np.ndarray, grad: np.ndarray, state: Dict[str, Any]) -> None:
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * param
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        param += -self.lr * grad


class Adam(Optimizer):
    r"""Adam, :class:`torch.optim.Adam` (and, with ``decoupled_weight_decay``, :class:`torch.optim.AdamW`).

    At step ``t`` (from 1), with ``g = grad + weight_decay * p`` (coupled decay) or ``p = p * (1 - lr *
    weight_decay)`` first (decoupled)::

        m = m + (1 - beta1) * (g - m)            v = beta2 * v + (1 - beta2) * g * g
        v_hat = max(v_hat, v) with amsgrad, else v
        p = p - lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    which is torch's arithmetic, bias corrections included (``eps`` is added after the correction).

    Parameters
    ----------
    params : layer or model, or a list of them
        See :class:`Optimizer`.
    lr : float
        ``>= 0`` (default 1e-3).
    betas : (float, float)
        Each in ``[0, 1)`` (default (0.9, 0.999)).
    eps, weight_decay : float
        Each ``>= 0`` (defaults 1e-8 and 0).
    amsgrad : bool
        Use the running maximum of ``v``.
    decoupled_weight_decay : bool
        AdamW's decay of the weights themselves rather than of the gradient.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        for k, beta in enumerate(betas):
            if not 0.0 <= _non_negative(f"betas[{k}]", beta) < 1.0:
                raise ValueError(f"betas[{k}]: expected a float in [0, 1), got {beta}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _non_negative("eps", eps)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: Dict[str, Any]) -> None:
        beta1, beta2 = self.betas
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        step = state["step"]
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                param *= 1 - self.lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * param
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        _lerp_(exp_avg, grad, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        else:
            second = exp_avg_sq
        denom = np.sqrt(second) / bias_correction2_sqrt + self.eps
        param += -step_size * exp_avg / denom


class AdamW(Adam):
    """AdamW, :class:`torch.optim.AdamW`: :class:`Adam` with decoupled weight decay (default 1e-2).

    Parameters
    ----------
    params : layer or model, or a list of them
        See :class:`Optimizer`.
    lr, betas, eps, weight_decay, amsgrad
        As in :class:`Adam`; ``weight_decay`` defaults to torch's 1e-2.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True)
