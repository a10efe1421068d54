# SPDX-License-Identifier: MIT
"""The plain-NumPy baseline of ``bench/compare.py``: an LSTM and a GRU layer, forward and backward through
time, written the way a user writes them by hand, in the dtype of the inputs (float32 in the benchmark).

One GEMM for the input projection of all steps, one matrix product per step for the recurrence, NumPy
element-wise ops for the gates; the backward keeps the gate gradients of all steps and forms ``dx`` and the
weight gradients as one GEMM each. Optional: projection (``w_hr``), reverse direction, ragged lengths (a
per-step mask: padding steps are computed and discarded, the state is held). Weights use torch's layout and
gate order (LSTM ``i, f, g, o``; GRU ``r, z, n``), so ``torch.nn.LSTM``/``GRU`` state dicts apply as they are.

Shapes: ``T`` steps, ``N`` batch, ``I`` input, ``H`` hidden, ``P`` the output width (``H``, or ``proj_size``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` as ``0.5 * tanh(0.5 z) + 0.5``: one transcendental, no overflow."""
    out = np.multiply(z, 0.5)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def _step_masks(lengths: Optional[np.ndarray], steps: int, dtype: Any) -> Optional[np.ndarray]:
    """``(T, N, 1)``: 1 where step ``t`` is inside sequence ``b``, else 0; None without lengths."""
    if lengths is None:
        return None
    return (np.arange(steps)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)[:, :, None]


# ------------------------------------------------------------------------------------------------------------
# LSTM


def lstm_forward(
    x: np.ndarray,
    p: Dict[str, np.ndarray],
    h0: Optional[np.ndarray] = None,
    c0: Optional[np.ndarray] = None,
    lengths: Optional[np.ndarray] = None,
    reverse: bool = False,
    training: bool = False,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[Dict[str, Any]]]:
    """One direction of one LSTM layer. ``p``: ``w_ih (4H, I)``, ``w_hh (4H, P)``, ``b (4H,)`` (the two biases
    summed), ``w_hr (P, H)`` or None. Returns ``y (T, N, P)`` (zero past each length), ``h_n (N, P)``,
    ``c_n (N, H)`` and, when training, the cache for :func:`lstm_backward`."""
    steps, batch, _ = x.shape
    w_hh, w_hr = p["w_hh"], p["w_hr"]
    hidden, out = w_hh.shape[0] // 4, w_hh.shape[1]
    dt = x.dtype
    xg = (x.reshape(steps * batch, -1) @ p["w_ih"].T).reshape(steps, batch, 4 * hidden)
    xg += p["b"]
    h = np.zeros((batch, out), dt) if h0 is None else h0
    c = np.zeros((batch, hidden), dt) if c0 is None else c0
    masks = _step_masks(lengths, steps, dt)
    y = np.empty((steps, batch, out), dt)
    if training:
        gates, c_prev, h_prev = xg, np.empty((steps, batch, hidden), dt), np.empty((steps, batch, out), dt)
        tanh_c = np.empty((steps, batch, hidden), dt)
        h_raw = np.empty((steps, batch, hidden), dt) if w_hr is not None else None
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        g = xg[t]
        g += h @ w_hh.T
        g[:, : 2 * hidden] = _sigmoid(g[:, : 2 * hidden])
        np.tanh(g[:, 2 * hidden : 3 * hidden], out=g[:, 2 * hidden : 3 * hidden])
        g[:, 3 * hidden :] = _sigmoid(g[:, 3 * hidden :])
        i, f, gg, o = (
            g[:, :hidden],
            g[:, hidden : 2 * hidden],
            g[:, 2 * hidden : 3 * hidden],
            g[:, 3 * hidden :],
        )
        c_new = f * c + i * gg
        tc = np.tanh(c_new)
        hr = o * tc
        h_new = hr @ w_hr.T if w_hr is not None else hr
        if training:
            c_prev[t], h_prev[t], tanh_c[t] = c, h, tc
            if h_raw is not None:
                h_raw[t] = hr
        if masks is None:
            c, h = c_new, h_new
            y[t] = h_new
        else:
            m = masks[t]
            c = c + m * (c_new - c)
            h = h + m * (h_new - h)
            np.multiply(h_new, m, out=y[t])
    cache = None
    if training:
        cache = {
            "x": x,
            "p": p,
            "gates": gates,
            "c_prev": c_prev,
            "h_prev": h_prev,
            "tanh_c": tanh_c,
            "h_raw": h_raw,
            "masks": masks,
            "reverse": reverse,
        }
    return y, h, c, cache


def lstm_backward(
    cache: Dict[str, Any],
    dy: np.ndarray,
    dh_n: Optional[np.ndarray] = None,
    dc_n: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """Backward through time of :func:`lstm_forward`: ``dx, dh0, dc0`` and the weight gradients ``w_ih, w_hh,
    b`` (and ``w_hr``)."""
    x, p, gates, masks = cache["x"], cache["p"], cache["gates"], cache["masks"]
    c_prev, h_prev, tanh_c, h_raw = cache["c_prev"], cache["h_prev"], cache["tanh_c"], cache["h_raw"]
    steps, batch, inp = x.shape
    w_hh, w_hr = p["w_hh"], p["w_hr"]
    hidden, out = w_hh.shape[0] // 4, w_hh.shape[1]
    dt = x.dtype
    dgates = np.empty_like(gates)
    dh = np.zeros((batch, out), dt) if dh_n is None else dh_n.copy()
    dc = np.zeros((batch, hidden), dt) if dc_n is None else dc_n.copy()
    dw_hr = np.zeros_like(w_hr) if w_hr is not None else None
    order = range(steps) if cache["reverse"] else range(steps - 1, -1, -1)
    for t in order:
        g = gates[t]
        i, f, gg, o = (
            g[:, :hidden],
            g[:, hidden : 2 * hidden],
            g[:, 2 * hidden : 3 * hidden],
            g[:, 3 * hidden :],
        )
        if masks is None:
            dh_new, dc_new = dh + dy[t], dc
            dh_keep = dc_keep = None
        else:
            m = masks[t]
            dh_new, dc_new = m * (dh + dy[t]), m * dc
            dh_keep, dc_keep = dh - m * dh, dc - m * dc
        if w_hr is not None:
            dw_hr += dh_new.T @ h_raw[t]
            dh_new = dh_new @ w_hr
        tc = tanh_c[t]
        dc_new = dc_new + dh_new * o * (1 - tc * tc)
        dg = dgates[t]
        dg[:, :hidden] = dc_new * gg * i * (1 - i)
        dg[:, hidden : 2 * hidden] = dc_new * c_prev[t] * f * (1 - f)
        dg[:, 2 * hidden : 3 * hidden] = dc_new * i * (1 - gg * gg)
        dg[:, 3 * hidden :] = dh_new * tc * o * (1 - o)
        dh = dg @ w_hh
        dc = dc_new * f
        if masks is not None:
            dh += dh_keep
            dc += dc_keep
    flat = dgates.reshape(steps * batch, 4 * hidden)
    dx = (flat @ p["w_ih"]).reshape(steps, batch, inp)
    grads = {
        "w_ih": flat.T @ x.reshape(steps * batch, inp),
        "w_hh": flat.T @ h_prev.reshape(steps * batch, out),
        "b": flat.sum(axis=0),
    }
    if dw_hr is not None:
        grads["w_hr"] = dw_hr
    return dx, dh, dc, grads


# ------------------------------------------------------------------------------------------------------------
# GRU (torch's formulation: the reset gate multiplies the recurrent product plus its bias)


def gru_forward(
    x: np.ndarray,
    p: Dict[str, np.ndarray],
    h0: Optional[np.ndarray] = None,
    lengths: Optional[np.ndarray] = None,
    reverse: bool = False,
    training: bool = False,
) -> Tuple[np.ndarray, np.ndarray, Optional[Dict[str, Any]]]:
    """One direction of one GRU layer. ``p``: ``w_ih (3H, I)``, ``w_hh (3H, H)``, ``b_ih``, ``b_hh (3H,)``.
    Returns ``y (T, N, H)`` (zero past each length), ``h_n (N, H)`` and, when training, the cache."""
    steps, batch, _ = x.shape
    w_hh, b_hh = p["w_hh"], p["b_hh"]
    hidden = w_hh.shape[1]
    dt = x.dtype
    xg = (x.reshape(steps * batch, -1) @ p["w_ih"].T).reshape(steps, batch, 3 * hidden)
    xg += p["b_ih"]
    h = np.zeros((batch, hidden), dt) if h0 is None else h0
    masks = _step_masks(lengths, steps, dt)
    y = np.empty((steps, batch, hidden), dt)
    if training:
        gates, hn_all, h_prev = xg, np.empty((steps, batch, hidden), dt), np.empty((steps, batch, hidden), dt)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        g = xg[t]
        hg = h @ w_hh.T
        hg += b_hh
        g[:, : 2 * hidden] = _sigmoid(g[:, : 2 * hidden] + hg[:, : 2 * hidden])
        r, z = g[:, :hidden], g[:, hidden : 2 * hidden]
        hn = hg[:, 2 * hidden :]
        n = g[:, 2 * hidden :]
        n += r * hn
        np.tanh(n, out=n)
        h_new = n + z * (h - n)
        if training:
            hn_all[t], h_prev[t] = hn, h
        if masks is None:
            h = h_new
            y[t] = h_new
        else:
            m = masks[t]
            h = h + m * (h_new - h)
            np.multiply(h_new, m, out=y[t])
    cache = None
    if training:
        cache = {
            "x": x,
            "p": p,
            "gates": gates,
            "hn": hn_all,
            "h_prev": h_prev,
            "masks": masks,
            "reverse": reverse,
        }
    return y, h, cache


def gru_backward(
    cache: Dict[str, Any], dy: np.ndarray, dh_n: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """Backward through time of :func:`gru_forward`: ``dx, dh0`` and the gradients of ``w_ih, w_hh, b_ih,
    b_hh``."""
    x, p, gates, masks = cache["x"], cache["p"], cache["gates"], cache["masks"]
    hn_all, h_prev = cache["hn"], cache["h_prev"]
    steps, batch, inp = x.shape
    w_hh = p["w_hh"]
    hidden = w_hh.shape[1]
    dt = x.dtype
    dxg = np.empty_like(gates)  # gradients of the input-side pre-activations
    dhg = np.empty_like(gates)  # of the recurrent-side ones (they differ in the n block)
    dh = np.zeros((batch, hidden), dt) if dh_n is None else dh_n.copy()
    order = range(steps) if cache["reverse"] else range(steps - 1, -1, -1)
    for t in order:
        g = gates[t]
        r, z, n = g[:, :hidden], g[:, hidden : 2 * hidden], g[:, 2 * hidden :]
        hp = h_prev[t]
        if masks is None:
            dh_new, dh_keep = dh + dy[t], None
        else:
            m = masks[t]
            dh_new, dh_keep = m * (dh + dy[t]), dh - m * dh
        dn = dh_new * (1 - z) * (1 - n * n)
        dxt, dht = dxg[t], dhg[t]
        dxt[:, :hidden] = dn * hn_all[t] * r * (1 - r)
        dxt[:, hidden : 2 * hidden] = dh_new * (hp - n) * z * (1 - z)
        dxt[:, 2 * hidden :] = dn
        dht[:, : 2 * hidden] = dxt[:, : 2 * hidden]
        dht[:, 2 * hidden :] = dn * r
        dh = dht @ w_hh
        dh += dh_new * z
        if dh_keep is not None:
            dh += dh_keep
    flat_x = dxg.reshape(steps * batch, 3 * hidden)
    flat_h = dhg.reshape(steps * batch, 3 * hidden)
    dx = (flat_x @ p["w_ih"]).reshape(steps, batch, inp)
    grads = {
        "w_ih": flat_x.T @ x.reshape(steps * batch, inp),
        "w_hh": flat_h.T @ h_prev.reshape(steps * batch, hidden),
        "b_ih": flat_x.sum(axis=0),
        "b_hh": flat_h.sum(axis=0),
    }
    return dx, dh, grads


# ------------------------------------------------------------------------------------------------------------
# A one-layer, optionally bidirectional layer over a torch state dict


class NumpyLayer:
    """``torch.nn.LSTM``/``GRU`` (one layer) in plain NumPy: ``forward``, ``backward``, torch's state dict.

    ``kind`` is ``"lstm"`` or ``"gru"``; directions follow the keys present (``*_reverse``). ``forward``
    returns
    ``y (T, N, D*P)`` and the final states ``(D, N, P)`` (and ``(D, N, H)`` for the LSTM's cells); with
    ``training`` it keeps what ``backward`` needs, which returns ``dx``, the initial-state gradients and the
    gradients under the state dict's keys.
    """

    def __init__(self, kind: str, state: Dict[str, np.ndarray]) -> None:
        self.kind = kind
        self.directions = 2 if "weight_ih_l0_reverse" in state else 1
        self.params: List[Dict[str, np.ndarray]] = []
        for d in range(self.directions):
            s = "_l0_reverse" if d else "_l0"
            if kind == "lstm":
                self.params.append(
                    {
                        "w_ih": state["weight_ih" + s],
                        "w_hh": state["weight_hh" + s],
                        "b": state["bias_ih" + s] + state["bias_hh" + s],
                        "w_hr": state.get("weight_hr" + s),
                    }
                )
            else:
                self.params.append(
                    {
                        "w_ih": state["weight_ih" + s],
                        "w_hh": state["weight_hh" + s],
                        "b_ih": state["bias_ih" + s],
                        "b_hh": state["bias_hh" + s],
                    }
                )
        self._caches: List[Any] = []

    def forward(
        self,
        x: np.ndarray,
        h0: Optional[np.ndarray] = None,
        c0: Optional[np.ndarray] = None,
        lengths: Optional[np.ndarray] = None,
        training: bool = False,
    ) -> Tuple[np.ndarray, List[np.ndarray]]:
        ys, hs, cs, self._caches = [], [], [], []
        for d in range(self.directions):
            h_init = None if h0 is None else h0[d]
            if self.kind == "lstm":
                y, h, c, cache = lstm_forward(
                    x,
                    self.params[d],
                    h_init,
                    None if c0 is None else c0[d],
                    lengths,
                    reverse=d == 1,
                    training=training,
                )
                cs.append(c)
            else:
                y, h, cache = gru_forward(
                    x, self.params[d], h_init, lengths, reverse=d == 1, training=training
                )
            ys.append(y)
            hs.append(h)
            self._caches.append(cache)
        y = ys[0] if self.directions == 1 else np.concatenate(ys, axis=2)
        finals = [np.stack(hs)] + ([np.stack(cs)] if self.kind == "lstm" else [])
        return y, finals

    def backward(self, dy: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray], Dict[str, np.ndarray]]:
        out = dy.shape[2] // self.directions
        dx = None
        dh0s, dc0s, grads = [], [], {}
        for d in range(self.directions):
            s = "_l0_reverse" if d else "_l0"
            dy_d = dy[:, :, d * out : (d + 1) * out]
            if self.kind == "lstm":
                dx_d, dh0, dc0, g = lstm_backward(self._caches[d], dy_d)
                dc0s.append(dc0)
                grads.update(
                    {
                        "weight_ih" + s: g["w_ih"],
                        "weight_hh" + s: g["w_hh"],
                        "bias_ih" + s: g["b"],
                        "bias_hh" + s: g["b"],
                    }
                )
                if "w_hr" in g:
                    grads["weight_hr" + s] = g["w_hr"]
            else:
                dx_d, dh0, g = gru_backward(self._caches[d], dy_d)
                grads.update(
                    {
                        "weight_ih" + s: g["w_ih"],
                        "weight_hh" + s: g["w_hh"],
                        "bias_ih" + s: g["b_ih"],
                        "bias_hh" + s: g["b_hh"],
                    }
                )
            dh0s.append(dh0)
            dx = dx_d if dx is None else dx + dx_d
        return dx, [np.stack(dh0s)] + ([np.stack(dc0s)] if self.kind == "lstm" else []), grads
