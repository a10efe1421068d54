# SPDX-License-Identifier: MIT
"""``LSTM`` and ``LSTMCell``: torch.nn-shaped layers over the C++ core.

Everything here is policy (shapes, dtypes, what is kept for the backward); the numerics are in C++.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._module import Module
from ._validation import as_float_array, check_pair, check_shape, check_size

ArrayPair = Tuple[np.ndarray, np.ndarray]


@dataclass
class _Tape:
    """What a training forward keeps for the backward, all time-major ``[T, N, ...]`` and owned by the layer."""

    x: np.ndarray
    h0: Optional[np.ndarray]
    c0: Optional[np.ndarray]
    y: np.ndarray
    cache: Tuple[np.ndarray, np.ndarray, np.ndarray]  # the core's (gates, cells, inner layer outputs)
    w_ih: List[np.ndarray]
    w_hh: List[np.ndarray]
    bias: Optional[List[np.ndarray]]
    y_shape: Tuple[int, ...]   # y's shape as the user saw it
    x_shape: Tuple[int, ...]
    state_shape: Tuple[int, ...]


def _owned(array: Optional[np.ndarray], user: Any) -> Optional[np.ndarray]:
    """``array``, copied if it may still be the caller's memory: the tape must not change under us."""
    if array is not None and isinstance(user, np.ndarray) and np.may_share_memory(array, user):
        return array.copy()
    return array


class _LstmBase(Module):
    """Shared by LSTM and LSTMCell: parameters per (layer, direction), the combined bias, the tape.

    Every call goes to the core's stacked kernel; a cell is a stack of one layer, one direction, one step.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool, dtype: Any, seed: Optional[int],
        suffixes: Sequence[str], directions: int,
    ) -> None:
        super().__init__(dtype)
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = bool(bias)
        self._suffixes = list(suffixes)
        self._directions = directions
        gates = 4 * self.hidden_size
        shapes: Dict[str, Tuple[int, ...]] = {}
        for k, sfx in enumerate(self._suffixes):
            width = self.input_size if k < directions else directions * self.hidden_size
            shapes[f"weight_ih{sfx}"] = (gates, width)
            shapes[f"weight_hh{sfx}"] = (gates, self.hidden_size)
            if self.bias:
                shapes[f"bias_ih{sfx}"] = (gates,)
                shapes[f"bias_hh{sfx}"] = (gates,)
        self._init_params(shapes, 1.0 / math.sqrt(self.hidden_size), seed)
        self._tape: Optional[_Tape] = None

    def _weights(self) -> Tuple[List[np.ndarray], List[np.ndarray], Optional[List[np.ndarray]]]:
        p = self._params
        w_ih = [p[f"weight_ih{s}"] for s in self._suffixes]
        w_hh = [p[f"weight_hh{s}"] for s in self._suffixes]
        bias = [p[f"bias_ih{s}"] + p[f"bias_hh{s}"] for s in self._suffixes] if self.bias else None
        return w_ih, w_hh, bias

    def _state(self, name: str, value: Any, shape: Tuple[int, ...]) -> Optional[np.ndarray]:
        if value is None:
            return None
        array = as_float_array(name, value, self.dtype)
        check_shape(name, array, shape)
        return array

    def _stack_state(self, name: str, value: Any, shape: Tuple[int, ...], batch: int) -> Optional[np.ndarray]:
        """A state given in the user's shape, as the core's ``[L*D, N, H]`` (a view when possible)."""
        array = self._state(name, value, shape)
        return None if array is None else array.reshape(len(self._suffixes), batch, self.hidden_size)

    def _run(
        self, x_tm: np.ndarray, h0: Optional[np.ndarray], c0: Optional[np.ndarray], user: Tuple[Any, Any, Any],
        x_shape: Tuple[int, ...], y_shape: Tuple[int, ...], state_shape: Tuple[int, ...],
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward on time-major arrays; keeps the tape when training. Returns (y [T,N,D*H], h_n, c_n)."""
        w_ih, w_hh, bias = self._weights()
        layers = len(self._suffixes) // self._directions
        y, h_n, c_n, cache = _core.lstm_stack_forward(
            x_tm, w_ih, w_hh, bias, h0, c0, layers, self._directions, self.training
        )
        if self.training:
            self._tape = _Tape(
                x=_owned(x_tm, user[0]), h0=_owned(h0, user[1]), c0=_owned(c0, user[2]), y=y, cache=cache,
                w_ih=w_ih, w_hh=w_hh, bias=bias, y_shape=y_shape, x_shape=x_shape, state_shape=state_shape,
            )
            y = y.copy()  # the tape's y is the saved hidden states: the caller gets its own
        else:
            self._tape = None
        return y, h_n, c_n

    def _check_tape(self) -> _Tape:
        if self._tape is None:
            raise RuntimeError(
                "backward: no training forward to differentiate; call the layer in training mode "
                "(layer.train(), the default) before backward"
            )
        return self._tape

    def _run_backward(
        self, tape: _Tape, dy_tm: np.ndarray, dh_n: Optional[np.ndarray], dc_n: Optional[np.ndarray],
        accumulate: bool,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Backward on time-major arrays; stores the weight gradients. Returns (dx, dh0, dc0) as the core's."""
        layers = len(self._suffixes) // self._directions
        dx, dh0, dc0, dw_ih, dw_hh, dbias = _core.lstm_stack_backward(
            tape.x, tape.w_ih, tape.w_hh, tape.bias, tape.h0, tape.c0, layers, self._directions, tape.y,
            *tape.cache, dy_tm, dh_n, dc_n,
        )
        new: Dict[str, np.ndarray] = {}
        for k, sfx in enumerate(self._suffixes):
            new[f"weight_ih{sfx}"] = dw_ih[k]
            new[f"weight_hh{sfx}"] = dw_hh[k]
            if dbias is not None:
                new[f"bias_ih{sfx}"] = dbias[k]
                new[f"bias_hh{sfx}"] = dbias[k]
        self._store_grads(new, accumulate)
        return dx, dh0, dc0

    @property
    def cache_nbytes(self) -> int:
        """Bytes the last training forward keeps for the backward (0 in inference)."""
        t = self._tape
        if t is None:
            return 0
        kept = [t.x, t.h0, t.c0, t.y, *t.cache]
        return int(sum(a.nbytes for a in kept if a is not None))


class LSTM(_LstmBase):
    r"""Long short-term memory layer over whole sequences, shaped like :class:`torch.nn.LSTM`.

    For each step, with gates in torch's order ``i, f, g, o``::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)     f = sigmoid(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)        o = sigmoid(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g                             h' = o * tanh(c')

    Parameters
    ----------
    input_size, hidden_size : int
        ``I`` and ``H``.
    num_layers : int
        ``L`` stacked layers; layer ``l > 0`` reads the output of layer ``l - 1``.
    bias : bool
        With ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (default True).
    batch_first : bool
        ``x`` and ``y`` are ``(N, T, ...)`` instead of ``(T, N, ...)``. The states keep ``(L*D, N, H)``.
    dropout, proj_size
        torch's arguments, accepted at their defaults only for now (0.0, 0); other values raise
        NotImplementedError. All arguments keep torch's positional order.
    bidirectional : bool
        ``D = 2``: a second direction per layer runs in reverse time (parameters ``*_reverse``); ``y`` holds
        both directions' outputs side by side, ``(T, N, 2H)``.
    dtype : np.float32 or np.float64
        Of the parameters and of every array the layer accepts.
    seed : int, optional
        Seeds the initialisation: uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` as torch.

    Notes
    -----
    Inputs must have the layer's dtype (TypeError otherwise, as torch). C-contiguous arrays reach the C++
    core without a copy; non-contiguous ones and ``batch_first`` inputs are copied to time-major order.
    A training forward (the default mode) keeps its input, the activated gates ``(T, N, 4H)``, the cell
    states and the outputs ``(T, N, H)`` for :meth:`backward`, until the next forward; :meth:`eval` turns
    that off. The weights are referenced, not copied: do not modify them in place between a forward and its
    backward. NaN and Inf propagate as in torch. The kernels release the GIL.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
    ) -> None:
        for name, (value, default) in {"dropout": (dropout, 0.0), "proj_size": (proj_size, 0)}.items():
            if value != default:
                raise NotImplementedError(f"{name}={value!r} is not implemented yet; only {name}={default!r}")
        self.num_layers = check_size("num_layers", num_layers)
        self.dropout = 0.0
        self.bidirectional = bool(bidirectional)
        self.proj_size = 0
        self.batch_first = bool(batch_first)
        directions = 2 if self.bidirectional else 1
        suffixes = [f"_l{l}{'_reverse' if d else ''}" for l in range(self.num_layers) for d in range(directions)]
        super().__init__(input_size, hidden_size, bias, dtype, seed, suffixes, directions)

    def __repr__(self) -> str:
        extra = f", num_layers={self.num_layers}" if self.num_layers > 1 else ""
        extra += "" if self.bias else ", bias=False"
        extra += ", batch_first=True" if self.batch_first else ""
        extra += ", bidirectional=True" if self.bidirectional else ""
        return f"LSTM({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    def _time_major(self, array: np.ndarray) -> Tuple[np.ndarray, bool]:
        """A (T, N, F) C-contiguous view or copy of a batched or unbatched sequence; and whether unbatched."""
        if array.ndim == 2:
            return array[:, None, :], True
        if self.batch_first:
            return np.ascontiguousarray(array.transpose(1, 0, 2)), False
        return array, False

    def __call__(self, x: Any, hx: Optional[Tuple[Any, Any]] = None) -> Tuple[np.ndarray, ArrayPair]:
        """Run the layer over a sequence.

        Parameters
        ----------
        x : array_like
            ``(T, N, I)``, or ``(N, T, I)`` with ``batch_first``, or unbatched ``(T, I)``.
        hx : tuple of two arrays, optional
            ``(h0, c0)``, each ``(L*D, N, H)`` (unbatched: ``(L*D, H)``), ordered layer by layer, forward
            direction first, as torch. Zeros when omitted.

        Returns
        -------
        y : ndarray
            ``(T, N, D*H)`` (``(N, T, D*H)`` with ``batch_first``; ``(T, D*H)`` unbatched): the last layer's
            ``h_t`` for every step, both directions side by side.
        (h_n, c_n) : tuple of ndarray
            The final states, shaped as ``h0`` and ``c0``.
        """
        x_in = x
        x = as_float_array("x", x, self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"x: expected 3 dimensions {'(N, T, I)' if self.batch_first else '(T, N, I)'} "
                             f"or 2 (T, I) for an unbatched sequence, got shape {x.shape}")
        layout = ("T", self.input_size) if x.ndim == 2 else (
            ("N", "T", self.input_size) if self.batch_first else ("T", "N", self.input_size))
        check_shape("x", x, layout, f"input_size={self.input_size}")
        x_tm, unbatched = self._time_major(x)
        steps, batch = x_tm.shape[0], x_tm.shape[1]
        if steps == 0:
            raise ValueError(f"x: empty sequence (T=0) in shape {x.shape}; expected at least one step")
        if batch == 0:
            raise ValueError(f"x: empty batch (N=0) in shape {x.shape}; expected at least one sequence")

        k = len(self._suffixes)
        state_shape = (k, self.hidden_size) if unbatched else (k, batch, self.hidden_size)
        h0 = c0 = h_user = c_user = None
        if hx is not None:
            h_user, c_user = check_pair("hx", hx)
            h0 = self._stack_state("hx[0] (h0)", h_user, state_shape, batch)
            c0 = self._stack_state("hx[1] (c0)", c_user, state_shape, batch)

        out = self._directions * self.hidden_size
        y_shape = (x.shape[0], out) if unbatched else x.shape[:2] + (out,)
        y, h_n, c_n = self._run(x_tm, h0, c0, (x_in, h_user, c_user), x.shape, y_shape, state_shape)
        if self.batch_first and not unbatched:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        return y.reshape(y_shape), (h_n.reshape(state_shape), c_n.reshape(state_shape))

    forward = __call__

    def backward(
        self, dy: Any, dhx: Optional[Tuple[Any, Any]] = None, accumulate: bool = False
    ) -> Tuple[np.ndarray, ArrayPair]:
        """Backward through time of the last training forward.

        Parameters
        ----------
        dy : array_like
            Gradient of the loss with respect to ``y``, shaped as ``y``.
        dhx : tuple, optional
            ``(dh_n, dc_n)``, gradients with respect to the final states, shaped as ``h_n``/``c_n``;
            either may be None (zeros).
        accumulate : bool
            Add the weight gradients to :attr:`grads` instead of overwriting them (torch's ``.grad``
            accumulation).

        Returns
        -------
        dx : ndarray
            Shaped as ``x``.
        (dh0, dc0) : tuple of ndarray
            Shaped as ``h0``/``c0`` (also when ``hx`` was omitted: the gradient with respect to zeros).
        """
        tape = self._check_tape()
        dy = as_float_array("dy", dy, self.dtype)
        check_shape("dy", dy, tape.y_shape, "the shape of y")
        unbatched = len(tape.y_shape) == 2
        dy_tm, _ = self._time_major(dy)
        batch = tape.y.shape[1]
        dh_n = dc_n = None
        if dhx is not None:
            dh_user, dc_user = check_pair("dhx", dhx)
            dh_n = self._stack_state("dhx[0] (dh_n)", dh_user, tape.state_shape, batch)
            dc_n = self._stack_state("dhx[1] (dc_n)", dc_user, tape.state_shape, batch)
        dx, dh0, dc0 = self._run_backward(tape, dy_tm, dh_n, dc_n, accumulate)
        if self.batch_first and not unbatched:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx.reshape(tape.x_shape), (dh0.reshape(tape.state_shape), dc0.reshape(tape.state_shape))


class LSTMCell(_LstmBase):
    """One LSTM step, shaped like :class:`torch.nn.LSTMCell`: for streaming, one input at a time.

    Parameters are ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``,
    initialised and checked as in :class:`LSTM`, whose notes on dtypes, copies and the training cache apply.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, *, dtype: Any = np.float32,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dtype, seed, [""], 1)

    def __repr__(self) -> str:
        extra = "" if self.bias else ", bias=False"
        return f"LSTMCell({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    def __call__(self, x: Any, hx: Optional[Tuple[Any, Any]] = None) -> ArrayPair:
        """One step.

        Parameters
        ----------
        x : array_like
            ``(N, I)``, or unbatched ``(I,)``.
        hx : tuple of two arrays, optional
            ``(h0, c0)``, each ``(N, H)`` (unbatched: ``(H,)``). Zeros when omitted.

        Returns
        -------
        (h1, c1) : tuple of ndarray
            The next states, shaped as ``h0``/``c0``.
        """
        x_in = x
        x = as_float_array("x", x, self.dtype)
        if x.ndim not in (1, 2):
            raise ValueError(f"x: expected 2 dimensions (N, I) or 1 (I,) for an unbatched input, got shape {x.shape}")
        check_shape("x", x, (self.input_size,) if x.ndim == 1 else ("N", self.input_size),
                    f"input_size={self.input_size}")
        batch = 1 if x.ndim == 1 else x.shape[0]
        if batch == 0:
            raise ValueError(f"x: empty batch (N=0) in shape {x.shape}; expected at least one row")
        state_shape = (self.hidden_size,) if x.ndim == 1 else (batch, self.hidden_size)
        h0 = c0 = h_user = c_user = None
        if hx is not None:
            h_user, c_user = check_pair("hx", hx)
            h0 = self._stack_state("hx[0] (h0)", h_user, state_shape, batch)
            c0 = self._stack_state("hx[1] (c0)", c_user, state_shape, batch)
        x_tm = x.reshape(1, batch, self.input_size)
        y, _, c1 = self._run(x_tm, h0, c0, (x_in, h_user, c_user), x.shape, state_shape, state_shape)
        return y.reshape(state_shape), c1.reshape(state_shape)

    forward = __call__

    def backward(self, dh1: Any, dc1: Any = None, accumulate: bool = False) -> Tuple[np.ndarray, ArrayPair]:
        """Backward of the last training step.

        Parameters
        ----------
        dh1, dc1 : array_like
            Gradients with respect to ``h1`` and ``c1`` (``dc1`` None: zeros), shaped as ``h1``/``c1``.
        accumulate : bool
            Add the weight gradients to :attr:`grads` instead of overwriting them.

        Returns
        -------
        dx : ndarray
            Shaped as ``x``.
        (dh0, dc0) : tuple of ndarray
            Shaped as ``h0``/``c0``.
        """
        tape = self._check_tape()
        batch = tape.y.shape[1]
        dh = as_float_array("dh1", dh1, self.dtype)
        check_shape("dh1", dh, tape.state_shape, "the shape of h1")
        dc_n = self._stack_state("dc1", dc1, tape.state_shape, batch)
        # h1 is y's only step, so dh1 enters as dy; dc1 as the gradient of the final cell state.
        dy = dh.reshape(1, batch, self.hidden_size)
        dx, dh0, dc0 = self._run_backward(tape, dy, None, dc_n, accumulate)
        return dx.reshape(tape.x_shape), (dh0.reshape(tape.state_shape), dc0.reshape(tape.state_shape))
