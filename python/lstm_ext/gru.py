# SPDX-License-Identifier: MIT
"""``GRU`` and ``GRUCell``: torch.nn-shaped gated recurrent units over the C++ core."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _core
from ._cell import CellKernels, CellSteps, CellTape, LayerSteps, ready
from ._recurrent import Masks, RecurrentBase, States, Tape
from ._validation import as_float_array, check_shape


class _GruCore(CellKernels, RecurrentBase):
    """The GRU's side of RecurrentBase: one state ``h``, torch's two biases, the reset-gate formulation; its
    cell step (``reset_after`` only)."""

    _gates = 3
    reset_after = True

    def _cell_kernels_apply(self) -> bool:
        return self.reset_after

    def _cell_forward(self, x: np.ndarray, states: Any, training: bool,
                      state_shape: Optional[Tuple[int, ...]] = None) -> Tuple[List[np.ndarray], Optional[CellTape]]:
        weights = self._cell_weights()
        h1, buffer = _core.gru_cell_forward(x, states[0], *weights, training)
        return [h1], None if buffer is None else CellTape(buffer, *weights, state_shape or h1.shape)

    def _cell_backward(self, tape: CellTape, dh1: np.ndarray, d_rest: Any, accumulate: bool
                       ) -> Tuple[np.ndarray, List[np.ndarray]]:
        dx, dh0 = _core.gru_cell_backward(tape.buffer, tape.w_ih, tape.w_hh, tape.b_ih, tape.b_hh, dh1,
                                          *self._cell_grads(), accumulate)
        return dx, [dh0]

    def _state_widths(self) -> List[int]:
        return [self.hidden_size]

    def _weights(self) -> Dict[str, Any]:
        return {
            "w_ih": self._param_list("weight_ih"),
            "w_hh": self._param_list("weight_hh"),
            "b_ih": self._param_list("bias_ih") if self.bias else None,
            "b_hh": self._param_list("bias_hh") if self.bias else None,
        }

    def _stack_args(self, batch_sizes: Optional[np.ndarray], masks: Masks) -> Dict[str, Any]:
        return {"layers": len(self._suffixes) // self._directions, "directions": self._directions,
                "reverse": self.go_backwards, "reset_after": self.reset_after, "batch_sizes": batch_sizes,
                **masks.core_args()}

    def _core_forward(self, x: np.ndarray, states: States, training: bool, batch_sizes: Optional[np.ndarray],
                      masks: Masks) -> Tuple[np.ndarray, List[np.ndarray], Any, Dict[str, Any]]:
        weights = self._weights()
        y, h_n, cache = _core.gru_stack_forward(
            x, weights["w_ih"], weights["w_hh"], weights["b_ih"], weights["b_hh"], states[0], training=training,
            **self._stack_args(batch_sizes, masks))
        return y, [h_n], cache, weights

    def _core_backward(self, tape: Tape, dy: np.ndarray, d_finals: States
                       ) -> Tuple[np.ndarray, List[np.ndarray], Dict[str, np.ndarray]]:
        w = tape.weights
        gates, hidden_n, hidden = tape.cache
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = _core.gru_stack_backward(
            tape.x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], tape.states[0], y=tape.y, gates=gates,
            hidden_n=hidden_n, hidden=hidden, dy=dy, dh_n=d_finals[0],
            **self._stack_args(None if tape.packing is None else tape.packing.batch_sizes, tape.masks))
        grads: Dict[str, np.ndarray] = {}
        for k, sfx in enumerate(self._suffixes):
            grads[f"weight_ih{sfx}"] = dw_ih[k]
            grads[f"weight_hh{sfx}"] = dw_hh[k]
            if db_ih is not None:
                grads[f"bias_ih{sfx}"] = db_ih[k]
                grads[f"bias_hh{sfx}"] = db_hh[k]
        return dx, [dh0], grads


class GRU(LayerSteps, _GruCore):
    r"""Gated recurrent unit over whole sequences, shaped like :class:`torch.nn.GRU`.

    For each step, with gates in torch's order ``r, z, n``::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)     z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))  h' = (1 - z) * n + z * h

    The reset gate multiplies the recurrent product plus its bias, as torch and cuDNN do (Keras
    ``reset_after=True``). ``reset_after=False`` gives the original formulation (Keras ``reset_after=False``,
    ONNX ``linear_before_reset=0``): ``n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)``, same parameters.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        As :class:`torch.nn.GRU` (see :class:`lstm_ext.LSTM` for each), parameters ``weight_ih_l{k}``
        ``(3H, I)``, ``weight_hh_l{k}`` ``(3H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(3H,)``, suffix
        ``_reverse`` for the second direction.
    reset_after : bool, keyword-only
        Where the reset gate applies (above). Default True, torch's.
    input_dropout, recurrent_dropout, go_backwards : keyword-only
        Variational dropout and reverse-only processing, as in :class:`lstm_ext.LSTM` (not in torch).
    dtype, seed
        As :class:`lstm_ext.LSTM`.

    Notes
    -----
    Those of :class:`lstm_ext.LSTM` apply: dtypes, copies, what a training forward keeps (here the activated
    gates ``(T, N, 3H)`` and, with ``reset_after``, ``W_hn h + b_hn``), eval mode, NaN, the GIL, and the one-step
    call (as one :class:`GRUCell` step, with ``reset_after`` only).
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
        *,
        reset_after: bool = True,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        go_backwards: bool = False,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
    ) -> None:
        self.reset_after = bool(reset_after)
        super().__init__(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, bias=bias,
            batch_first=batch_first, dropout=dropout, bidirectional=bidirectional, proj_size=0,
            input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, go_backwards=go_backwards,
            dtype=dtype, seed=seed, cell=False,
        )

    def __repr__(self) -> str:
        extra = "" if self.reset_after else ", reset_after=False"
        return f"GRU({self.input_size}, {self.hidden_size}{self._extra_repr()}{extra}, dtype={self.dtype.name})"

    def __call__(
        self, x: Any, hx: Any = None, lengths: Any = None, *, training: Optional[bool] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        x : array_like
            ``(T, N, I)``, or ``(N, T, I)`` with ``batch_first``, or unbatched ``(T, I)``.
        hx : array_like, optional
            ``h0``, ``(L*D, N, H)`` (unbatched: ``(L*D, H)``), ordered as torch. Zeros when omitted.
        lengths : array_like of int, optional
            Per-sequence lengths, as in :meth:`lstm_ext.LSTM.__call__`.
        training : bool, optional
            Overrides the layer's mode for this call.

        Returns
        -------
        y : ndarray
            ``(T, N, D*H)`` (``batch_first``: ``(N, T, D*H)``; unbatched: ``(T, D*H)``).
        h_n : ndarray
            The final states, shaped as ``h0``.
        """
        y, (h_n,) = self._sequence_forward(x, (hx,), ("hx (h0)",), lengths, training)
        return y, h_n

    forward = __call__

    def backward(self, dy: Any, dh_n: Any = None, accumulate: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """Backward through time of the last training forward.

        Parameters
        ----------
        dy : array_like
            Gradient of the loss with respect to ``y``, shaped as ``y``.
        dh_n : array_like, optional
            Gradient with respect to ``h_n``, shaped as ``h_n`` (None: zeros).
        accumulate : bool
            Add the weight gradients to :attr:`grads` instead of overwriting them.

        Returns
        -------
        dx : ndarray
            Shaped as ``x``.
        dh0 : ndarray
            Shaped as ``h0`` (also when ``hx`` was omitted).
        """
        dx, (dh0,) = self._sequence_backward(dy, (dh_n,), ("dh_n",), accumulate)
        return dx, dh0


class GRUCell(CellSteps, _GruCore):
    """One GRU step, shaped like :class:`torch.nn.GRUCell`: ``weight_ih (3H, I)``, ``weight_hh (3H, H)``,
    ``bias_ih (3H,)``, ``bias_hh (3H,)``; ``reset_after`` as in :class:`GRU`."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, *, reset_after: bool = True,
        dtype: Any = np.float32, seed: Optional[int] = None,
    ) -> None:
        self.reset_after = bool(reset_after)
        super().__init__(
            input_size=input_size, hidden_size=hidden_size, num_layers=1, bias=bias, batch_first=False,
            dropout=0.0, bidirectional=False, proj_size=0, input_dropout=0.0, recurrent_dropout=0.0,
            go_backwards=False, dtype=dtype, seed=seed, cell=True,
        )

    def __repr__(self) -> str:
        extra = ("" if self.bias else ", bias=False") + ("" if self.reset_after else ", reset_after=False")
        return f"GRUCell({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    def __call__(self, x: Any, hx: Any = None, *, training: Optional[bool] = None) -> np.ndarray:
        """One step: ``x`` ``(N, I)`` or ``(I,)``, ``hx`` ``(N, H)`` or ``(H,)`` (zeros when omitted); returns h1.

        A training step keeps the gates ``(N, 3H)``, ``W_hn h + b_hn`` ``(N, H)`` and copies of ``x`` and ``hx``
        for :meth:`backward`. Arrays of the layer's dtype, C-contiguous, aligned and writeable go to the core
        without any conversion. (``reset_after=False`` steps through the sequence kernels, over ``T = 1``.)
        """
        mode = self.training if training is None else bool(training)
        if not self.reset_after:
            return self._sequence_step(x, hx, mode)
        try:
            (h1,), tape = self._cell_forward(x, self._direct_states(x, hx, 1), mode)
        except (TypeError, ValueError):
            x, shape = self._checked_x(x)
            h = self._zeros(shape) if hx is None else self._checked_state("hx", hx, shape)
            (h1,), tape = self._cell_forward(x, (h,), mode)
        self._tape = tape
        return h1

    forward = __call__

    def backward(self, dh1: Any, accumulate: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """Backward of the last training step: ``dh1`` shaped as ``h1``; returns ``(dx, dh0)``."""
        tape = self._check_tape()
        if isinstance(tape, Tape):
            return self._sequence_step_backward(tape, dh1, accumulate)
        shape = tape.state_shape
        if not ready(dh1, self.dtype, shape):
            dh1 = self._checked_state("dh1", dh1, shape, "the shape of h1")
        dx, (dh0,) = self._cell_backward(tape, dh1, (), accumulate)
        return dx, dh0

    @property
    def cache_nbytes(self) -> int:
        """Bytes the last training step keeps for the backward (0 in inference)."""
        tape = self._tape
        if isinstance(tape, CellTape):
            return int(tape.buffer.nbytes)
        return super().cache_nbytes

    # -- reset_after=False: the cell kernels have torch's formulation only --------------------------------
    def _sequence_step(self, x: Any, hx: Any, mode: bool) -> np.ndarray:
        x_in = x
        x, batch, state_shape = self._cell_input(x)
        states: States = [self._state("hx", hx, state_shape, (1, batch, self.hidden_size))]
        y, _ = self._run(x.reshape(1, batch, self.input_size), states, None, (x_in, hx), x.shape, state_shape,
                         [state_shape], mode)
        return y.reshape(state_shape)

    def _sequence_step_backward(self, tape: Tape, dh1: Any, accumulate: bool) -> Tuple[np.ndarray, np.ndarray]:
        state_shape = tape.state_shapes[0]
        batch = 1 if len(state_shape) == 1 else state_shape[0]
        dh = as_float_array("dh1", dh1, self.dtype)
        check_shape("dh1", dh, state_shape, "the shape of h1")
        dx, (dh0,) = self._run_backward(tape, dh.reshape(1, batch, self.hidden_size), [None], accumulate)
        return dx.reshape(tape.x_shape), dh0.reshape(state_shape)
