# SPDX-License-Identifier: MIT
"""A slow, obvious float64 LSTM in pure NumPy: the reference the C++ kernels are checked against.

Shapes use ``T`` steps, ``N`` batch, ``I`` input, ``H`` hidden and ``G = 4H``; everything is time-major
(``x`` is ``(T, N, I)``). Gate blocks along ``G`` are ordered ``i, f, g, o`` and the weights are
``torch.nn.LSTM``'s tensors as they are::

    gates = x_t @ w_ih.T + b_ih + h_{t-1} @ w_hh.T + b_hh
    i, f, g, o = sigmoid(gates_i), sigmoid(gates_f), tanh(gates_g), sigmoid(gates_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t),   y_t = h_t

Every input is converted to float64 and every result is float64. The time loop is a Python loop (this is the
reference); each step is a matrix product over the whole batch. Backward through time follows the same
recurrence in reverse and returns the gradients of all inputs and weights.

Only NumPy is needed, so this module also serves as the "plain NumPy" baseline of benchmarks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LstmCache", "lstm_backward", "lstm_forward", "sigmoid"]

_GATES = 4


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-z))``, computed without overflow.

    Parameters
    ----------
    z : ndarray
        Any shape, float dtype.

    Returns
    -------
    ndarray
        Same shape and dtype as `z`. NaN stays NaN; ``+inf`` gives 1 and ``-inf`` gives 0.

    Notes
    -----
    ``exp`` is only ever taken of ``-|z|``, which is at most 0, so it cannot overflow.
    """
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class LstmCache(NamedTuple):
    """What :func:`lstm_forward` keeps for :func:`lstm_backward`. All arrays are float64.

    Attributes
    ----------
    x : ndarray, shape (T, N, I)
        The input.
    h0, c0 : ndarray, shape (N, H)
        The initial states (zeros when the forward was given None).
    w_ih : ndarray, shape (4H, I)
    w_hh : ndarray, shape (4H, H)
    has_bias_ih, has_bias_hh : bool
        Whether the forward had ``b_ih`` / ``b_hh``.
    gates : ndarray, shape (T, N, 4H)
        Activated gates ``i, f, g, o`` of each step.
    cells : ndarray, shape (T, N, H)
        Cell states ``c_1 ... c_T``.
    y : ndarray, shape (T, N, H)
        Hidden states ``h_1 ... h_T``.
    """

    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias_ih: bool
    has_bias_hh: bool
    gates: np.ndarray
    cells: np.ndarray
    y: np.ndarray


def _as_float64(name: str, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`a` as a C-contiguous float64 array, or ValueError naming `name` when its shape is not `shape`."""
    out = np.ascontiguousarray(a, dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {out.shape}")
    return out


def lstm_forward(
    x: np.ndarray,
    h0: np.ndarray | None,
    c0: np.ndarray | None,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None = None,
    b_hh: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LstmCache]:
    """Run a single-layer, single-direction LSTM over a whole sequence.

    Parameters
    ----------
    x : array_like, shape (T, N, I)
        Input sequence, time-major.
    h0, c0 : array_like, shape (N, H), or None
        Initial hidden and cell state; None means zeros.
    w_ih : array_like, shape (4H, I)
        Input-to-hidden weights, gate blocks ``i, f, g, o`` (``torch.nn.LSTM.weight_ih_l0``).
    w_hh : array_like, shape (4H, H)
        Hidden-to-hidden weights (``weight_hh_l0``).
    b_ih, b_hh : array_like, shape (4H,), or None
        Biases (``bias_ih_l0``, ``bias_hh_l0``); None means no such bias.

    Returns
    -------
    y : ndarray, shape (T, N, H)
        Hidden state of every step, ``h_1 ... h_T``.
    h_n, c_n : ndarray, shape (N, H)
        Final hidden and cell state.
    cache : LstmCache
        What :func:`lstm_backward` needs.

    Raises
    ------
    ValueError
        If a shape does not agree with the others, or T, N, I or H is zero.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x: expected 3 dimensions (T, N, I), got shape {x.shape}")
    steps, batch, inp = x.shape
    w_hh = np.asarray(w_hh, dtype=np.float64)
    if w_hh.ndim != 2:
        raise ValueError(f"w_hh: expected shape (4H, H), got {w_hh.shape}")
    hidden = w_hh.shape[1]
    if min(steps, batch, inp, hidden) < 1:
        raise ValueError(f"empty dimension: T={steps}, N={batch}, I={inp}, H={hidden}")
    gates_n = _GATES * hidden
    x = _as_float64("x", x, (steps, batch, inp))
    w_ih = _as_float64("w_ih", w_ih, (gates_n, inp))
    w_hh = _as_float64("w_hh", w_hh, (gates_n, hidden))
    h0 = np.zeros((batch, hidden)) if h0 is None else _as_float64("h0", h0, (batch, hidden))
    c0 = np.zeros((batch, hidden)) if c0 is None else _as_float64("c0", c0, (batch, hidden))

    # The input projection of all T*N rows at once; only the recurrent product stays in the loop.
    x_proj = (x.reshape(steps * batch, inp) @ w_ih.T).reshape(steps, batch, gates_n)
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None:
            x_proj += _as_float64(name, b, (gates_n,))

    gates = np.empty((steps, batch, gates_n))
    cells = np.empty((steps, batch, hidden))
    y = np.empty((steps, batch, hidden))
    w_hh_t = w_hh.T
    h, c = h0, c0
    for t in range(steps):
        z = x_proj[t] + h @ w_hh_t
        a = gates[t]
        a[:, : 2 * hidden] = sigmoid(z[:, : 2 * hidden])  # i, f
        a[:, 2 * hidden : 3 * hidden] = np.tanh(z[:, 2 * hidden : 3 * hidden])  # g
        a[:, 3 * hidden :] = sigmoid(z[:, 3 * hidden :])  # o
        i, f, g, o = np.split(a, _GATES, axis=1)
        c = f * c + i * g
        h = o * np.tanh(c)
        cells[t] = c
        y[t] = h

    cache = LstmCache(
        x=x,
        h0=h0,
        c0=c0,
        w_ih=w_ih,
        w_hh=w_hh,
        has_bias_ih=b_ih is not None,
        has_bias_hh=b_hh is not None,
        gates=gates,
        cells=cells,
        y=y,
    )
    # y is handed out as a copy so that changing it cannot corrupt the cache of the backward.
    return y.copy(), y[-1].copy(), cells[-1].copy(), cache


def lstm_backward(
    cache: LstmCache,
    dy: np.ndarray | None,
    dh_n: np.ndarray | None = None,
    dc_n: np.ndarray | None = None,
) -> dict[str, np.ndarray | None]:
    """Backpropagate through time the forward that produced `cache`.

    Parameters
    ----------
    cache : LstmCache
        As returned by :func:`lstm_forward`.
    dy : array_like, shape (T, N, H), or None
        Gradient of the loss with respect to ``y``; None means zeros.
    dh_n, dc_n : array_like, shape (N, H), or None
        Gradient with respect to the final hidden / cell state; None means zeros.

    Returns
    -------
    dict
        ``dx`` (T, N, I), ``dh0`` (N, H), ``dc0`` (N, H), ``weight_ih`` (4H, I), ``weight_hh`` (4H, H),
        ``bias_ih`` (4H,) and ``bias_hh`` (4H,), all float64. The gradient of ``h0``/``c0`` is given also when
        the forward had None for them (the gradient at zeros). ``bias_ih``/``bias_hh`` are None when the
        forward had no such bias; otherwise both equal the sum of the pre-activation gate gradients.

    Raises
    ------
    ValueError
        If a gradient's shape does not match the forward's.
    """
    steps, batch, inp = cache.x.shape
    hidden = cache.w_hh.shape[1]
    dy = np.zeros((steps, batch, hidden)) if dy is None else _as_float64("dy", dy, (steps, batch, hidden))
    dh = np.zeros((batch, hidden)) if dh_n is None else _as_float64("dh_n", dh_n, (batch, hidden))
    dc = np.zeros((batch, hidden)) if dc_n is None else _as_float64("dc_n", dc_n, (batch, hidden))

    dz = np.empty((steps, batch, _GATES * hidden))  # gradients of the pre-activation gates
    for t in range(steps - 1, -1, -1):
        i, f, g, o = np.split(cache.gates[t], _GATES, axis=1)
        c_prev = cache.cells[t - 1] if t > 0 else cache.c0
        tanh_c = np.tanh(cache.cells[t])
        dh = dh + dy[t]
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        d = dz[t]
        d[:, :hidden] = dc * g * i * (1.0 - i)
        d[:, hidden : 2 * hidden] = dc * c_prev * f * (1.0 - f)
        d[:, 2 * hidden : 3 * hidden] = dc * i * (1.0 - g * g)
        d[:, 3 * hidden :] = dh * tanh_c * o * (1.0 - o)
        dc = dc * f
        dh = d @ cache.w_hh

    # Weight and input gradients as one product each over all T*N rows.
    h_prev = np.concatenate([cache.h0[None], cache.y[:-1]], axis=0)
    dz_rows = dz.reshape(steps * batch, _GATES * hidden)
    db = dz_rows.sum(axis=0)
    return {
        "dx": (dz_rows @ cache.w_ih).reshape(steps, batch, inp),
        "dh0": dh,
        "dc0": dc,
        "weight_ih": dz_rows.T @ cache.x.reshape(steps * batch, inp),
        "weight_hh": dz_rows.T @ h_prev.reshape(steps * batch, hidden),
        "bias_ih": db if cache.has_bias_ih else None,
        "bias_hh": db.copy() if cache.has_bias_hh else None,
    }
