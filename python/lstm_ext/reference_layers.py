# SPDX-License-Identifier: MIT
"""Slow, obvious float64 NumPy references for whole recurrent layers: LSTM (with projection) and GRU, variable
lengths, reverse direction, variational dropout masks, and torch-shaped stacks of them.

The C++ core's layer and stack kernels are checked against these functions. Shapes use ``T`` steps, ``N``
batch, ``I`` input, ``H`` hidden, ``P`` projection size (LSTM only; 0 means none) and ``Hout = P if P > 0 else
H``; everything is time-major (``x`` is ``(T, N, I)``). Weights are torch's tensors as they are.

LSTM step (gate blocks along ``4H`` ordered ``i, f, g, o``), with the masks of the layer ``m_x`` (N, I) and
``m_h`` (N, Hout), the same at every step::

    gates = (x_t * m_x) @ w_ih.T + b_ih + (h_{t-1} * m_h) @ w_hh.T + b_hh
    c_t = f * c_{t-1} + i * g
    h_t = (o * tanh(c_t)) @ w_hr.T      (without w_hr: h_t = o * tanh(c_t))

GRU step (gate blocks along ``3H`` ordered ``r, z, n``), with ``xm = x_t * m_x`` and ``hm = h_{t-1} * m_h``::

    r = sigmoid(W_ir xm + b_ir + W_hr hm + b_hr)
    z = sigmoid(W_iz xm + b_iz + W_hz hm + b_hz)
    n = tanh(W_in xm + b_in + r * (W_hn hm + b_hn))      reset_after=True  (torch, cuDNN)
    n = tanh(W_in xm + b_in + W_hn (r * hm) + b_hn)      reset_after=False (Keras, ONNX linear_before_reset=0)
    h_t = (1 - z) * n + z * h_{t-1}

A mask multiplies only what enters a matrix product: the state carried from step to step is unmasked.

Variable lengths: with ``lengths[b] = L_b``, sequence ``b`` owns steps ``0 ... L_b - 1``. At a padding step
(``t >= L_b``) the state is left as it is, ``y[t, b] = 0`` and ``dy[t, b]`` is ignored. The forward direction
starts at ``t = 0`` and its final state is the one after ``t = L_b - 1``; the reverse direction starts at
``t = L_b - 1`` and its final state is the one after ``t = 0`` (exactly torch's reverse direction over a
``pack_padded_sequence``). ``y[t]`` always belongs to ``x[t]``.

Every input is converted to float64 (and copied into the tape) and every result is float64. Time loops are
Python loops (this is the reference); each step is vectorised over the batch. Only NumPy is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .reference import sigmoid

__all__ = [
    "GruLayerTape",
    "LstmLayerTape",
    "StackTape",
    "gru_layer_backward",
    "gru_layer_forward",
    "lstm_layer_backward",
    "lstm_layer_forward",
    "stack_backward",
    "stack_forward",
]


class LstmLayerTape(NamedTuple):
    """What :func:`lstm_layer_forward` keeps for :func:`lstm_layer_backward`. Arrays are float64 copies.

    Rows of the per-step arrays are indexed by time ``t`` (aligned with ``x``), whatever the direction. At
    padding steps they hold the values computed from the frozen state; the backward ignores them.

    Attributes
    ----------
    x : ndarray, shape (T, N, I)
        The input, unmasked.
    h0 : ndarray, shape (N, Hout)
    c0 : ndarray, shape (N, H)
        The initial states (zeros when the forward was given None).
    w_ih : ndarray, shape (4H, I)
    w_hh : ndarray, shape (4H, Hout)
    w_hr : ndarray, shape (P, H), or None
        None without projection.
    has_bias_ih, has_bias_hh : bool
        Whether the forward had ``b_ih`` / ``b_hh``.
    input_mask : ndarray, shape (N, I), or None
    recurrent_mask : ndarray, shape (N, Hout), or None
    lengths : ndarray of int64, shape (N,)
        Sequence lengths; all ``T`` when the forward was given None.
    reverse : bool
        Whether the layer ran from the last valid step to the first.
    h_prev : ndarray, shape (T, N, Hout)
        Hidden state entering step ``t`` (unmasked).
    c_prev : ndarray, shape (T, N, H)
        Cell state entering step ``t``.
    gates : ndarray, shape (T, N, 4H)
        Activated gates ``i, f, g, o`` of step ``t``.
    tanh_c : ndarray, shape (T, N, H)
        ``tanh(c_t)`` of step ``t``.
    h_full : ndarray, shape (T, N, H)
        ``o * tanh(c_t)``, the hidden state before the projection.
    """

    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    w_hr: Any
    has_bias_ih: bool
    has_bias_hh: bool
    input_mask: Any
    recurrent_mask: Any
    lengths: np.ndarray
    reverse: bool
    h_prev: np.ndarray
    c_prev: np.ndarray
    gates: np.ndarray
    tanh_c: np.ndarray
    h_full: np.ndarray


class GruLayerTape(NamedTuple):
    """What :func:`gru_layer_forward` keeps for :func:`gru_layer_backward`. Arrays are float64 copies.

    Rows of the per-step arrays are indexed by time ``t`` (aligned with ``x``), whatever the direction.

    Attributes
    ----------
    x : ndarray, shape (T, N, I)
        The input, unmasked.
    h0 : ndarray, shape (N, H)
        The initial state (zeros when the forward was given None).
    w_ih : ndarray, shape (3H, I)
    w_hh : ndarray, shape (3H, H)
    has_bias_ih, has_bias_hh : bool
        Whether the forward had ``b_ih`` / ``b_hh``.
    reset_after : bool
        Which candidate formula the forward used (see the module docstring).
    input_mask : ndarray, shape (N, I), or None
    recurrent_mask : ndarray, shape (N, H), or None
    lengths : ndarray of int64, shape (N,)
        Sequence lengths; all ``T`` when the forward was given None.
    reverse : bool
        Whether the layer ran from the last valid step to the first.
    h_prev : ndarray, shape (T, N, H)
        Hidden state entering step ``t`` (unmasked).
    gates : ndarray, shape (T, N, 3H)
        Activated gates ``r, z, n`` of step ``t``.
    hn : ndarray, shape (T, N, H)
        ``W_hn hm + b_hn`` of step ``t`` when ``reset_after`` (what ``r`` multiplies); zeros otherwise.
    """

    x: np.ndarray
    h0: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias_ih: bool
    has_bias_hh: bool
    reset_after: bool
    input_mask: Any
    recurrent_mask: Any
    lengths: np.ndarray
    reverse: bool
    h_prev: np.ndarray
    gates: np.ndarray
    hn: np.ndarray


class StackTape(NamedTuple):
    """What :func:`stack_forward` keeps for :func:`stack_backward`.

    Attributes
    ----------
    kind : str
        ``"lstm"`` or ``"gru"``.
    num_layers : int
        ``L``.
    directions : int
        ``D``: 2 when bidirectional, else 1.
    hidden : int
        ``H``.
    out : int
        ``Hout``.
    input_size : int
        ``I`` of layer 0.
    layers : tuple of LstmLayerTape or GruLayerTape
        One tape per (layer, direction), at index ``k = l * D + d``.
    inter_masks : ndarray, shape (L - 1, T, N, D * Hout), or None
        The inter-layer masks (a float64 copy).
    param_names : tuple of dict of str to str
        For each ``k``, the ``state_dict`` key of each parameter of that layer under the layer functions'
        argument name (``w_ih -> weight_ih_l0``, ...); absent parameters are left out.
    """

    kind: str
    num_layers: int
    directions: int
    hidden: int
    out: int
    input_size: int
    layers: tuple
    inter_masks: Any
    param_names: tuple


# ------------------------------------------------------------------------------------------------------------
# Argument handling


def _array(name: str, a: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 copy of `a`, or ValueError naming `name` when its shape is not `shape`."""
    out = np.array(a, dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {out.shape}")
    return out


def _optional(name: str, a: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """None for None, else :func:`_array`."""
    return None if a is None else _array(name, a, shape)


def _matrix(name: str, a: Any) -> np.ndarray:
    """A float64 copy of the 2-D `a`, or ValueError naming `name`."""
    out = np.array(a, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"{name}: expected 2 dimensions, got shape {out.shape}")
    return out


def _input(x: Any) -> np.ndarray:
    """A float64 copy of the 3-D, non-empty `x`, or ValueError."""
    x = np.array(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x: expected 3 dimensions (T, N, I), got shape {x.shape}")
    if min(x.shape) < 1:
        raise ValueError(f"x: empty dimension in shape {x.shape}")
    return x


def _lengths(lengths: Any, steps: int, batch: int) -> np.ndarray:
    """`lengths` as int64 (N,) with every value in [1, T]; all T for None."""
    if lengths is None:
        return np.full(batch, steps, dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"lengths: expected shape {(batch,)}, got {arr.shape}")
    if arr.min() < 1 or arr.max() > steps:
        raise ValueError(f"lengths: expected values in [1, {steps}], got {arr.tolist()}")
    return arr.astype(np.int64)


def _masked(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """`a` times `mask` (broadcast over leading axes); `a` itself for no mask."""
    return a if mask is None else a * mask


def _step_order(steps: int, reverse: bool) -> range:
    """The time indices in the order a direction visits them (padding steps included; they are no-ops)."""
    return range(steps - 1, -1, -1) if reverse else range(steps)


# ------------------------------------------------------------------------------------------------------------
# LSTM layer


def lstm_layer_forward(
    x: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None = None,
    b_hh: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    *,
    w_hr: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    reverse: bool = False,
    input_mask: np.ndarray | None = None,
    recurrent_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LstmLayerTape]:
    """Run one direction of one LSTM layer over a whole (padded) sequence.

    Parameters
    ----------
    x : array_like, shape (T, N, I)
        Input sequence, time-major.
    w_ih : array_like, shape (4H, I)
        Input-to-hidden weights, gate blocks ``i, f, g, o`` (``weight_ih_l0``).
    w_hh : array_like, shape (4H, Hout)
        Hidden-to-hidden weights (``weight_hh_l0``).
    b_ih, b_hh : array_like, shape (4H,), or None
        Biases (``bias_ih_l0``, ``bias_hh_l0``); None means no such bias.
    h0 : array_like, shape (N, Hout), or None
        Initial hidden state; None means zeros.
    c0 : array_like, shape (N, H), or None
        Initial cell state; None means zeros.
    w_hr : array_like, shape (P, H), or None
        Projection weights (``weight_hr_l0``); None means no projection (``Hout = H``).
    lengths : array_like of int, shape (N,), or None
        Valid steps per sequence, each in ``[1, T]``; None means all ``T``.
    reverse : bool
        Run from the last valid step of each sequence down to step 0.
    input_mask : array_like, shape (N, I), or None
        Multiplies ``x_t`` at every step before the input product; None means no mask.
    recurrent_mask : array_like, shape (N, Hout), or None
        Multiplies ``h_{t-1}`` at every step before the recurrent product (the carried state stays
        unmasked); None means no mask.

    Returns
    -------
    y : ndarray, shape (T, N, Hout)
        ``h_t`` at every valid step, zero at padding steps.
    h_n : ndarray, shape (N, Hout)
        Final hidden state (after ``t = L_b - 1`` forward, after ``t = 0`` reversed).
    c_n : ndarray, shape (N, H)
        Final cell state.
    tape : LstmLayerTape
        What :func:`lstm_layer_backward` needs.

    Raises
    ------
    ValueError
        If a shape does not agree with the others, a dimension is zero or a length is outside ``[1, T]``.
    TypeError
        If `lengths` is not integral.
    """
    x = _input(x)
    steps, batch, inp = x.shape
    w_ih = _matrix("w_ih", w_ih)
    gates_n = w_ih.shape[0]
    if gates_n == 0 or gates_n % 4:
        raise ValueError(f"w_ih: expected shape (4H, I) with H >= 1, got {w_ih.shape}")
    hidden = gates_n // 4
    w_ih = _array("w_ih", w_ih, (gates_n, inp))
    if w_hr is None:
        out = hidden
    else:
        w_hr = _matrix("w_hr", w_hr)
        out = w_hr.shape[0]
        if out < 1 or w_hr.shape[1] != hidden:
            raise ValueError(f"w_hr: expected shape (P, {hidden}) with P >= 1, got {w_hr.shape}")
    w_hh = _array("w_hh", w_hh, (gates_n, out))
    b_ih = _optional("b_ih", b_ih, (gates_n,))
    b_hh = _optional("b_hh", b_hh, (gates_n,))
    h0 = np.zeros((batch, out)) if h0 is None else _array("h0", h0, (batch, out))
    c0 = np.zeros((batch, hidden)) if c0 is None else _array("c0", c0, (batch, hidden))
    input_mask = _optional("input_mask", input_mask, (batch, inp))
    recurrent_mask = _optional("recurrent_mask", recurrent_mask, (batch, out))
    lengths = _lengths(lengths, steps, batch)

    # The input projection of all T*N rows at once (the input mask is the same at every step).
    x_proj = _masked(x, input_mask) @ w_ih.T
    for b in (b_ih, b_hh):
        if b is not None:
            x_proj += b

    y = np.zeros((steps, batch, out))
    h_prev = np.empty((steps, batch, out))
    c_prev = np.empty((steps, batch, hidden))
    gates = np.empty((steps, batch, gates_n))
    tanh_c = np.empty((steps, batch, hidden))
    h_full = np.empty((steps, batch, hidden))
    h, c = h0, c0
    for t in _step_order(steps, reverse):
        active = (t < lengths)[:, None]  # (N, 1): which sequences own step t
        z = x_proj[t] + _masked(h, recurrent_mask) @ w_hh.T
        a = gates[t]
        a[:, : 2 * hidden] = sigmoid(z[:, : 2 * hidden])  # i, f
        a[:, 2 * hidden : 3 * hidden] = np.tanh(z[:, 2 * hidden : 3 * hidden])  # g
        a[:, 3 * hidden :] = sigmoid(z[:, 3 * hidden :])  # o
        i, f, g, o = np.split(a, 4, axis=1)
        c_new = f * c + i * g
        tanh_c[t] = np.tanh(c_new)
        h_full[t] = o * tanh_c[t]
        h_new = h_full[t] if w_hr is None else h_full[t] @ w_hr.T
        h_prev[t], c_prev[t] = h, c
        y[t] = np.where(active, h_new, 0.0)
        # Padding steps leave the state as it is.
        h = np.where(active, h_new, h)
        c = np.where(active, c_new, c)

    tape = LstmLayerTape(
        x=x,
        h0=h0,
        c0=c0,
        w_ih=w_ih,
        w_hh=w_hh,
        w_hr=w_hr,
        has_bias_ih=b_ih is not None,
        has_bias_hh=b_hh is not None,
        input_mask=input_mask,
        recurrent_mask=recurrent_mask,
        lengths=lengths,
        reverse=bool(reverse),
        h_prev=h_prev,
        c_prev=c_prev,
        gates=gates,
        tanh_c=tanh_c,
        h_full=h_full,
    )
    return y, h, c, tape


def lstm_layer_backward(
    tape: LstmLayerTape,
    dy: np.ndarray | None,
    dh_n: np.ndarray | None = None,
    dc_n: np.ndarray | None = None,
) -> dict[str, np.ndarray | None]:
    """Backpropagate through time the loss whose gradients are `dy`, `dh_n`, `dc_n`.

    Parameters
    ----------
    tape : LstmLayerTape
        From :func:`lstm_layer_forward`.
    dy : array_like, shape (T, N, Hout), or None
        Gradient with respect to ``y``; None means zeros. Entries at padding steps are ignored.
    dh_n : array_like, shape (N, Hout), or None
        Gradient with respect to the final hidden state; None means zeros.
    dc_n : array_like, shape (N, H), or None
        Gradient with respect to the final cell state; None means zeros.

    Returns
    -------
    dict
        ``dx`` (T, N, I) (zero at padding steps), ``dh0`` (N, Hout), ``dc0`` (N, H), ``dw_ih`` (4H, I),
        ``dw_hh`` (4H, Hout), ``db_ih`` and ``db_hh`` (4H,) or None when the forward had no such bias (each
        equals the sum of the pre-activation gate gradients), ``dw_hr`` (P, H) or None without projection.
        All float64. Masks are constants: they get no gradient.

    Raises
    ------
    ValueError
        If a gradient's shape does not match the forward's.
    """
    steps, batch, inp = tape.x.shape
    gates_n = tape.w_ih.shape[0]
    hidden = gates_n // 4
    out = tape.w_hh.shape[1]
    dy = np.zeros((steps, batch, out)) if dy is None else _array("dy", dy, (steps, batch, out))
    dh = np.zeros((batch, out)) if dh_n is None else _array("dh_n", dh_n, (batch, out))
    dc = np.zeros((batch, hidden)) if dc_n is None else _array("dc_n", dc_n, (batch, hidden))

    dz = np.zeros((steps, batch, gates_n))  # gradients of the pre-activation gates; zero at padding
    dw_hr = None if tape.w_hr is None else np.zeros_like(tape.w_hr)
    for t in reversed(_step_order(steps, tape.reverse)):
        active = (t < tape.lengths)[:, None]
        # Gradients reaching h_t and c_t, restricted to the sequences that own step t.
        dh_t = np.where(active, dh + dy[t], 0.0)
        dc_t = np.where(active, dc, 0.0)
        i, f, g, o = np.split(tape.gates[t], 4, axis=1)
        if tape.w_hr is None:
            dh_full = dh_t
        else:
            dw_hr += dh_t.T @ tape.h_full[t]
            dh_full = dh_t @ tape.w_hr
        tanh_c = tape.tanh_c[t]
        dc_t = dc_t + dh_full * o * (1.0 - tanh_c * tanh_c)
        d = dz[t]
        d[:, :hidden] = dc_t * g * i * (1.0 - i)
        d[:, hidden : 2 * hidden] = dc_t * tape.c_prev[t] * f * (1.0 - f)
        d[:, 2 * hidden : 3 * hidden] = dc_t * i * (1.0 - g * g)
        d[:, 3 * hidden :] = dh_full * tanh_c * o * (1.0 - o)
        dh_prev = _masked(d @ tape.w_hh, tape.recurrent_mask)
        dc_prev = dc_t * f
        # At padding steps the state passed through unchanged, and so does its gradient.
        dh = np.where(active, dh_prev, dh)
        dc = np.where(active, dc_prev, dc)

    # Weight and input gradients as one product each over all T*N rows.
    dz_rows = dz.reshape(steps * batch, gates_n)
    x_in = _masked(tape.x, tape.input_mask).reshape(steps * batch, inp)
    h_in = _masked(tape.h_prev, tape.recurrent_mask).reshape(steps * batch, out)
    db = dz_rows.sum(axis=0)
    return {
        "dx": _masked((dz_rows @ tape.w_ih).reshape(steps, batch, inp), tape.input_mask),
        "dh0": dh,
        "dc0": dc,
        "dw_ih": dz_rows.T @ x_in,
        "dw_hh": dz_rows.T @ h_in,
        "db_ih": db if tape.has_bias_ih else None,
        "db_hh": db.copy() if tape.has_bias_hh else None,
        "dw_hr": dw_hr,
    }


# ------------------------------------------------------------------------------------------------------------
# GRU layer


def gru_layer_forward(
    x: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None = None,
    b_hh: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    *,
    reset_after: bool = True,
    lengths: np.ndarray | None = None,
    reverse: bool = False,
    input_mask: np.ndarray | None = None,
    recurrent_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, GruLayerTape]:
    """Run one direction of one GRU layer over a whole (padded) sequence.

    Parameters
    ----------
    x : array_like, shape (T, N, I)
        Input sequence, time-major.
    w_ih : array_like, shape (3H, I)
        Input-to-hidden weights, gate blocks ``r, z, n`` (``torch.nn.GRU.weight_ih_l0``).
    w_hh : array_like, shape (3H, H)
        Hidden-to-hidden weights (``weight_hh_l0``).
    b_ih, b_hh : array_like, shape (3H,), or None
        Biases (``bias_ih_l0``, ``bias_hh_l0``); None means no such bias.
    h0 : array_like, shape (N, H), or None
        Initial hidden state; None means zeros.
    reset_after : bool
        True: ``n = tanh(W_in xm + b_in + r * (W_hn hm + b_hn))`` (torch). False:
        ``n = tanh(W_in xm + b_in + W_hn (r * hm) + b_hn)`` (the original GRU, Keras ``reset_after=False``).
    lengths : array_like of int, shape (N,), or None
        Valid steps per sequence, each in ``[1, T]``; None means all ``T``.
    reverse : bool
        Run from the last valid step of each sequence down to step 0.
    input_mask : array_like, shape (N, I), or None
        Multiplies ``x_t`` at every step before the input product; None means no mask.
    recurrent_mask : array_like, shape (N, H), or None
        Multiplies ``h_{t-1}`` at every step where it enters a product with ``w_hh``; the ``z * h_{t-1}``
        term and the carried state stay unmasked. None means no mask.

    Returns
    -------
    y : ndarray, shape (T, N, H)
        ``h_t`` at every valid step, zero at padding steps.
    h_n : ndarray, shape (N, H)
        Final hidden state (after ``t = L_b - 1`` forward, after ``t = 0`` reversed).
    tape : GruLayerTape
        What :func:`gru_layer_backward` needs.

    Raises
    ------
    ValueError
        If a shape does not agree with the others, a dimension is zero or a length is outside ``[1, T]``.
    TypeError
        If `lengths` is not integral.
    """
    x = _input(x)
    steps, batch, inp = x.shape
    w_hh = _matrix("w_hh", w_hh)
    hidden = w_hh.shape[1]
    gates_n = 3 * hidden
    if hidden < 1:
        raise ValueError(f"w_hh: expected shape (3H, H) with H >= 1, got {w_hh.shape}")
    w_hh = _array("w_hh", w_hh, (gates_n, hidden))
    w_ih = _array("w_ih", w_ih, (gates_n, inp))
    b_ih = _optional("b_ih", b_ih, (gates_n,))
    b_hh = _optional("b_hh", b_hh, (gates_n,))
    h0 = np.zeros((batch, hidden)) if h0 is None else _array("h0", h0, (batch, hidden))
    input_mask = _optional("input_mask", input_mask, (batch, inp))
    recurrent_mask = _optional("recurrent_mask", recurrent_mask, (batch, hidden))
    lengths = _lengths(lengths, steps, batch)

    x_proj = _masked(x, input_mask) @ w_ih.T
    if b_ih is not None:
        x_proj += b_ih
    b_hh_or_0 = np.zeros(gates_n) if b_hh is None else b_hh
    w_hrz, w_hn = w_hh[: 2 * hidden], w_hh[2 * hidden :]

    y = np.zeros((steps, batch, hidden))
    h_prev = np.empty((steps, batch, hidden))
    gates = np.empty((steps, batch, gates_n))
    hn = np.zeros((steps, batch, hidden))
    h = h0
    for t in _step_order(steps, reverse):
        active = (t < lengths)[:, None]
        hm = _masked(h, recurrent_mask)
        rz = sigmoid(x_proj[t, :, : 2 * hidden] + hm @ w_hrz.T + b_hh_or_0[: 2 * hidden])
        r, z = rz[:, :hidden], rz[:, hidden:]
        if reset_after:
            hn[t] = hm @ w_hn.T + b_hh_or_0[2 * hidden :]
            n = np.tanh(x_proj[t, :, 2 * hidden :] + r * hn[t])
        else:
            n = np.tanh(x_proj[t, :, 2 * hidden :] + (r * hm) @ w_hn.T + b_hh_or_0[2 * hidden :])
        h_new = (1.0 - z) * n + z * h
        gates[t, :, : 2 * hidden] = rz
        gates[t, :, 2 * hidden :] = n
        h_prev[t] = h
        y[t] = np.where(active, h_new, 0.0)
        h = np.where(active, h_new, h)

    tape = GruLayerTape(
        x=x,
        h0=h0,
        w_ih=w_ih,
        w_hh=w_hh,
        has_bias_ih=b_ih is not None,
        has_bias_hh=b_hh is not None,
        reset_after=bool(reset_after),
        input_mask=input_mask,
        recurrent_mask=recurrent_mask,
        lengths=lengths,
        reverse=bool(reverse),
        h_prev=h_prev,
        gates=gates,
        hn=hn,
    )
    return y, h, tape


def gru_layer_backward(
    tape: GruLayerTape,
    dy: np.ndarray | None,
    dh_n: np.ndarray | None = None,
) -> dict[str, np.ndarray | None]:
    """Backpropagate through time the loss whose gradients are `dy` and `dh_n`.

    Parameters
    ----------
    tape : GruLayerTape
        From :func:`gru_layer_forward`.
    dy : array_like, shape (T, N, H), or None
        Gradient with respect to ``y``; None means zeros. Entries at padding steps are ignored.
    dh_n : array_like, shape (N, H), or None
        Gradient with respect to the final hidden state; None means zeros.

    Returns
    -------
    dict
        ``dx`` (T, N, I) (zero at padding steps), ``dh0`` (N, H), ``dw_ih`` (3H, I), ``dw_hh`` (3H, H),
        ``db_ih`` and ``db_hh`` (3H,) or None when the forward had no such bias. All float64. Unlike the
        LSTM, ``db_ih`` and ``db_hh`` differ in their ``n`` block (``b_hn`` sits inside ``r * (...)`` when
        ``reset_after``). Masks are constants: they get no gradient.

    Raises
    ------
    ValueError
        If a gradient's shape does not match the forward's.
    """
    steps, batch, inp = tape.x.shape
    hidden = tape.w_hh.shape[1]
    gates_n = 3 * hidden
    dy = np.zeros((steps, batch, hidden)) if dy is None else _array("dy", dy, (steps, batch, hidden))
    dh = np.zeros((batch, hidden)) if dh_n is None else _array("dh_n", dh_n, (batch, hidden))
    w_hrz, w_hn = tape.w_hh[: 2 * hidden], tape.w_hh[2 * hidden :]

    # Per step: the gradient of the input pre-activations (= of b_ih) and of the recurrent ones (= of b_hh).
    d_xpre = np.zeros((steps, batch, gates_n))
    d_hpre = np.zeros((steps, batch, gates_n))
    # What the rows of w_hh multiply: hm for the r, z blocks; hm (reset_after) or r * hm for the n block.
    h_in = np.empty((steps, batch, hidden))
    hn_in = np.empty((steps, batch, hidden))
    for t in reversed(_step_order(steps, tape.reverse)):
        active = (t < tape.lengths)[:, None]
        dh_t = np.where(active, dh + dy[t], 0.0)
        r, z, n = np.split(tape.gates[t], 3, axis=1)
        h_prev = tape.h_prev[t]
        hm = _masked(h_prev, tape.recurrent_mask)
        da_n = dh_t * (1.0 - z) * (1.0 - n * n)
        da_z = dh_t * (h_prev - n) * z * (1.0 - z)
        if tape.reset_after:
            dr = da_n * tape.hn[t]
            d_hn = da_n * r
            dhm = d_hn @ w_hn
            hn_in[t] = hm
        else:
            d_hn = da_n
            d_rhm = da_n @ w_hn  # gradient of r * hm
            dr = d_rhm * hm
            dhm = d_rhm * r
            hn_in[t] = r * hm
        da_r = dr * r * (1.0 - r)
        d_xpre[t] = np.concatenate([da_r, da_z, da_n], axis=1)
        d_hpre[t] = np.concatenate([da_r, da_z, d_hn], axis=1)
        dhm = dhm + d_hpre[t, :, : 2 * hidden] @ w_hrz
        h_in[t] = hm
        dh_prev = dh_t * z + _masked(dhm, tape.recurrent_mask)
        dh = np.where(active, dh_prev, dh)

    rows = steps * batch
    d_x_rows = d_xpre.reshape(rows, gates_n)
    d_h_rows = d_hpre.reshape(rows, gates_n)
    x_in = _masked(tape.x, tape.input_mask).reshape(rows, inp)
    dw_hh = np.concatenate(
        [
            d_h_rows[:, : 2 * hidden].T @ h_in.reshape(rows, hidden),
            d_h_rows[:, 2 * hidden :].T @ hn_in.reshape(rows, hidden),
        ]
    )
    return {
        "dx": _masked((d_x_rows @ tape.w_ih).reshape(steps, batch, inp), tape.input_mask),
        "dh0": dh,
        "dw_ih": d_x_rows.T @ x_in,
        "dw_hh": dw_hh,
        "db_ih": d_x_rows.sum(axis=0) if tape.has_bias_ih else None,
        "db_hh": d_h_rows.sum(axis=0) if tape.has_bias_hh else None,
    }


# ------------------------------------------------------------------------------------------------------------
# Stacks shaped like torch.nn.LSTM / torch.nn.GRU


def _layer_names(layer: int, direction: int, bias: bool, proj: bool) -> dict[str, str]:
    """The ``state_dict`` keys of one (layer, direction), under the layer functions' argument names."""
    sfx = f"_l{layer}" + ("_reverse" if direction else "")
    names = {"w_ih": "weight_ih" + sfx, "w_hh": "weight_hh" + sfx}
    if bias:
        names.update({"b_ih": "bias_ih" + sfx, "b_hh": "bias_hh" + sfx})
    if proj:
        names["w_hr"] = "weight_hr" + sfx
    return names


def _mask_list(name: str, masks: Sequence[Any] | None, count: int) -> list[Any]:
    """`masks` as a list of `count` entries (each a mask or None); all None for None."""
    if masks is None:
        return [None] * count
    masks = list(masks)
    if len(masks) != count:
        raise ValueError(f"{name}: expected num_layers * num_directions = {count} masks, got {len(masks)}")
    return masks


def stack_forward(
    kind: str,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    reset_after: bool = True,
    lengths: np.ndarray | None = None,
    go_backwards: bool = False,
    inter_masks: np.ndarray | None = None,
    input_masks: Sequence[np.ndarray | None] | None = None,
    recurrent_masks: Sequence[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, StackTape]:
    """Run a stacked, optionally bidirectional LSTM or GRU the way ``torch.nn.LSTM`` / ``torch.nn.GRU`` do.

    Layer ``l`` reads the output of layer ``l - 1`` (its directions concatenated, forward first). Direction 1
    runs reversed; with `lengths` it is torch's reverse direction over a ``pack_padded_sequence``.

    Parameters
    ----------
    kind : {"lstm", "gru"}
        The cell.
    params : mapping of str to array_like
        Weights under torch's ``state_dict`` keys: ``weight_ih_l{l}``, ``weight_hh_l{l}``, optionally
        ``bias_ih_l{l}`` and ``bias_hh_l{l}`` (for every layer or for none), ``weight_hr_l{l}`` when
        ``proj_size > 0``; with the suffix ``_reverse`` for direction 1.
    x : array_like, shape (T, N, I)
        Input sequence, time-major.
    h0 : array_like, shape (L * D, N, Hout), or None
        Initial hidden states, indexed ``k = l * D + d`` as torch; None means zeros.
    c0 : array_like, shape (L * D, N, H), or None
        Initial cell states (LSTM only; must be None for a GRU); None means zeros.
    num_layers : int
        ``L >= 1``.
    bidirectional : bool
        ``D = 2`` when True, else 1.
    proj_size : int
        ``P`` (LSTM only); 0 means no projection.
    reset_after : bool
        GRU only: the candidate formula (see :func:`gru_layer_forward`). Must stay True for an LSTM.
    lengths : array_like of int, shape (N,), or None
        Valid steps per sequence, each in ``[1, T]``; None means all ``T``.
    go_backwards : bool
        Run direction 0 reversed (Keras ``go_backwards``; ``y`` stays aligned with ``x``). Not with
        `bidirectional`.
    inter_masks : array_like, shape (L - 1, T, N, D * Hout), or None
        The output of layer ``l < L - 1`` is multiplied by ``inter_masks[l]`` before it feeds layer ``l + 1``
        (torch's inter-layer dropout with an explicit mask). None means no mask.
    input_masks, recurrent_masks : sequence of L * D (array_like or None), or None
        Per-(layer, direction) masks of :func:`lstm_layer_forward` / :func:`gru_layer_forward`, at index
        ``k = l * D + d``. Input masks are (N, I) for layer 0 and (N, D * Hout) after; recurrent masks are
        (N, Hout).

    Returns
    -------
    y : ndarray, shape (T, N, D * Hout)
        Output of the last layer, zero at padding steps.
    h_n : ndarray, shape (L * D, N, Hout)
        Final hidden states.
    c_n : ndarray, shape (L * D, N, H), or None
        Final cell states; None for a GRU.
    tape : StackTape
        What :func:`stack_backward` needs.

    Raises
    ------
    ValueError
        For an unknown `kind`, an option the kind does not have, `go_backwards` with `bidirectional`, a
        missing parameter, or shapes that do not agree.
    """
    if kind not in ("lstm", "gru"):
        raise ValueError(f"kind: expected 'lstm' or 'gru', got {kind!r}")
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers: expected an int >= 1, got {num_layers!r}")
    if proj_size < 0 or (kind == "gru" and proj_size):
        raise ValueError(f"proj_size: expected 0 for a GRU and >= 0 for an LSTM, got {proj_size}")
    if kind == "lstm" and not reset_after:
        raise ValueError("reset_after: only a GRU has it; it must stay True for an LSTM")
    if kind == "gru" and c0 is not None:
        raise ValueError("c0: a GRU has no cell state; expected None")
    if go_backwards and bidirectional:
        raise ValueError("go_backwards: not allowed with bidirectional=True")
    x = _input(x)
    steps, batch, inp = x.shape
    directions = 2 if bidirectional else 1
    count = num_layers * directions
    bias = "bias_ih_l0" in params
    if "weight_hh_l0" not in params:
        raise ValueError("params: missing 'weight_hh_l0'")
    w_hh0 = np.asarray(params["weight_hh_l0"])
    hidden = w_hh0.shape[0] // (4 if kind == "lstm" else 3)
    out = proj_size if proj_size else hidden
    h0 = np.zeros((count, batch, out)) if h0 is None else _array("h0", h0, (count, batch, out))
    if kind == "lstm":
        c0 = np.zeros((count, batch, hidden)) if c0 is None else _array("c0", c0, (count, batch, hidden))
    inter_masks = _optional("inter_masks", inter_masks, (num_layers - 1, steps, batch, directions * out))
    input_masks = _mask_list("input_masks", input_masks, count)
    recurrent_masks = _mask_list("recurrent_masks", recurrent_masks, count)

    expected = set()
    for layer in range(num_layers):
        for d in range(directions):
            expected.update(_layer_names(layer, d, bias, proj_size > 0).values())
    if set(params) != expected:
        missing, extra = sorted(expected - set(params)), sorted(set(params) - expected)
        raise ValueError(f"params: missing keys {missing}, unexpected keys {extra}")

    layer_in = x
    tapes = []
    h_n = np.empty((count, batch, out))
    c_n = np.empty((count, batch, hidden)) if kind == "lstm" else None
    param_names = []
    for layer in range(num_layers):
        outputs = []
        for d in range(directions):
            k = layer * directions + d
            names = _layer_names(layer, d, bias, proj_size > 0)
            param_names.append(names)
            weights = {arg: params[key] for arg, key in names.items()}
            options = {
                "lengths": lengths,
                "reverse": d == 1 or go_backwards,
                "input_mask": input_masks[k],
                "recurrent_mask": recurrent_masks[k],
            }
            if kind == "lstm":
                y_d, h_n[k], c_n[k], tape = lstm_layer_forward(
                    layer_in, h0=h0[k], c0=c0[k], **weights, **options
                )
            else:
                y_d, h_n[k], tape = gru_layer_forward(
                    layer_in, h0=h0[k], reset_after=reset_after, **weights, **options
                )
            outputs.append(y_d)
            tapes.append(tape)
        layer_out = np.concatenate(outputs, axis=2)
        if layer < num_layers - 1 and inter_masks is not None:
            layer_out = layer_out * inter_masks[layer]
        layer_in = layer_out

    tape = StackTape(
        kind=kind,
        num_layers=num_layers,
        directions=directions,
        hidden=hidden,
        out=out,
        input_size=inp,
        layers=tuple(tapes),
        inter_masks=inter_masks,
        param_names=tuple(param_names),
    )
    return layer_out, h_n, c_n, tape


def stack_backward(
    tape: StackTape,
    dy: np.ndarray | None,
    dh_n: np.ndarray | None = None,
    dc_n: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """Backpropagate through the stack the loss whose gradients are `dy`, `dh_n`, `dc_n`.

    Parameters
    ----------
    tape : StackTape
        From :func:`stack_forward`.
    dy : array_like, shape (T, N, D * Hout), or None
        Gradient with respect to ``y``; None means zeros. Entries at padding steps are ignored.
    dh_n : array_like, shape (L * D, N, Hout), or None
        Gradient with respect to the final hidden states; None means zeros.
    dc_n : array_like, shape (L * D, N, H), or None
        Gradient with respect to the final cell states (LSTM only; must be None for a GRU); None means zeros.

    Returns
    -------
    dx : ndarray, shape (T, N, I)
    dh0 : ndarray, shape (L * D, N, Hout)
    dc0 : ndarray, shape (L * D, N, H), or None
        None for a GRU.
    grads : dict of str to ndarray
        The gradient of every parameter, under its ``state_dict`` key (each bias its own gradient).

    Raises
    ------
    ValueError
        If a gradient's shape does not match the forward's.
    """
    steps, batch, _ = tape.layers[0].x.shape
    directions, out, hidden = tape.directions, tape.out, tape.hidden
    count = tape.num_layers * directions
    is_lstm = tape.kind == "lstm"
    if not is_lstm and dc_n is not None:
        raise ValueError("dc_n: a GRU has no cell state; expected None")
    y_shape, h_shape, c_shape = (steps, batch, directions * out), (count, batch, out), (count, batch, hidden)
    dy = np.zeros(y_shape) if dy is None else _array("dy", dy, y_shape)
    dh_n = np.zeros(h_shape) if dh_n is None else _array("dh_n", dh_n, h_shape)
    if is_lstm:
        dc_n = np.zeros(c_shape) if dc_n is None else _array("dc_n", dc_n, c_shape)

    grads: dict[str, np.ndarray] = {}
    dh0 = np.empty((count, batch, out))
    dc0 = np.empty((count, batch, hidden)) if is_lstm else None
    d_out = dy  # gradient of the current layer's (masked) output
    for layer in range(tape.num_layers - 1, -1, -1):
        d_in = None
        for d in range(directions):
            k = layer * directions + d
            dy_d = d_out[:, :, d * out : (d + 1) * out]
            if is_lstm:
                g = lstm_layer_backward(tape.layers[k], dy_d, dh_n[k], dc_n[k])
                dc0[k] = g["dc0"]
            else:
                g = gru_layer_backward(tape.layers[k], dy_d, dh_n[k])
            dh0[k] = g["dh0"]
            d_in = g["dx"] if d_in is None else d_in + g["dx"]
            for arg, key in tape.param_names[k].items():
                grads[key] = g["d" + arg]
        if layer > 0 and tape.inter_masks is not None:
            d_in = d_in * tape.inter_masks[layer - 1]
        d_out = d_in
    return d_out, dh0, dc0, grads
