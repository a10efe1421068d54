# SPDX-License-Identifier: MIT
"""``LSTM`` and ``LSTMCell``: torch.nn-shaped layers over the C++ core.

Everything here is policy (shapes, dtypes, what is kept for the backward); the numerics are in C++.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _core
from ._cell import CellKernels, CellSteps, CellTape, LayerSteps, ready
from ._recurrent import Masks, RecurrentBase, States, Tape
from ._validation import check_pair

ArrayPair = Tuple[np.ndarray, np.ndarray]


class _LstmCore(CellKernels, RecurrentBase):
    """The LSTM's side of RecurrentBase: states ``(h, c)``, the combined bias, the projection; its cell step."""

    _gates = 4

    def _cell_forward(self, x: np.ndarray, states: Any, training: bool,
                      state_shape: Optional[Tuple[int, ...]] = None) -> Tuple[List[np.ndarray], Optional[CellTape]]:
        weights = self._cell_weights()
        h1, c1, buffer = _core.lstm_cell_forward(x, states[0], states[1], *weights, training)
        tape = None if buffer is None else CellTape(buffer, *weights, state_shape or h1.shape)
        return [h1, c1], tape

    def _cell_backward(self, tape: CellTape, dh1: np.ndarray, d_rest: Any, accumulate: bool
                       ) -> Tuple[np.ndarray, List[np.ndarray]]:
        dx, dh0, dc0 = _core.lstm_cell_backward(tape.buffer, tape.w_ih, tape.w_hh, tape.b_ih, tape.b_hh, dh1,
                                                d_rest[0], *self._cell_grads(), accumulate)
        return dx, [dh0, dc0]

    def _init_forget_bias(self) -> None:
        """Keras' ``unit_forget_bias``: biases zero but the forget gate's, whose sum ``b_if + b_hf`` is 1."""
        if not self.bias:
            raise ValueError("unit_forget_bias: needs bias=True")
        h = self.hidden_size
        for sfx in self._suffixes:
            b_ih, b_hh = self._params[f"bias_ih{sfx}"], self._params[f"bias_hh{sfx}"]
            b_ih.fill(0)
            b_hh.fill(0)
            b_ih[h:2 * h] = 1

    def _state_widths(self) -> List[int]:
        return [self.out_size, self.hidden_size]

    def _weights(self) -> Dict[str, Any]:
        p = self._params
        return {
            "w_ih": self._param_list("weight_ih"),
            "w_hh": self._param_list("weight_hh"),
            "bias": [p[f"bias_ih{s}"] + p[f"bias_hh{s}"] for s in self._suffixes] if self.bias else None,
            "w_hr": self._param_list("weight_hr") if self.proj_size > 0 else None,
        }

    def _stack_args(self, batch_sizes: Optional[np.ndarray], masks: Masks) -> Dict[str, Any]:
        return {"layers": len(self._suffixes) // self._directions, "directions": self._directions,
                "reverse": self.go_backwards, "batch_sizes": batch_sizes, **masks.core_args()}

    def _core_forward(self, x: np.ndarray, states: States, training: bool, batch_sizes: Optional[np.ndarray],
                      masks: Masks) -> Tuple[np.ndarray, List[np.ndarray], Any, Dict[str, Any]]:
        weights = self._weights()
        y, h_n, c_n, cache = _core.lstm_stack_forward(
            x, weights["w_ih"], weights["w_hh"], weights["bias"], weights["w_hr"], states[0], states[1],
            training=training, **self._stack_args(batch_sizes, masks))
        return y, [h_n, c_n], cache, weights

    def _core_backward(self, tape: Tape, dy: np.ndarray, d_finals: States
                       ) -> Tuple[np.ndarray, List[np.ndarray], Dict[str, np.ndarray]]:
        w = tape.weights
        gates, cells, hidden = tape.cache
        dx, dh0, dc0, dw_ih, dw_hh, dbias, dw_hr = _core.lstm_stack_backward(
            tape.x, w["w_ih"], w["w_hh"], w["bias"], w["w_hr"], tape.states[0], tape.states[1],
            y=tape.y, gates=gates, cells=cells, hidden=hidden, dy=dy, dh_n=d_finals[0], dc_n=d_finals[1],
            **self._stack_args(None if tape.packing is None else tape.packing.batch_sizes, tape.masks))
        grads: Dict[str, np.ndarray] = {}
        for k, sfx in enumerate(self._suffixes):
            grads[f"weight_ih{sfx}"] = dw_ih[k]
            grads[f"weight_hh{sfx}"] = dw_hh[k]
            if dbias is not None:
                grads[f"bias_ih{sfx}"] = dbias[k]
                grads[f"bias_hh{sfx}"] = dbias[k]
            if dw_hr is not None:
                grads[f"weight_hr{sfx}"] = dw_hr[k]
        return dx, [dh0, dc0], grads


class LSTM(LayerSteps, _LstmCore):
    r"""Long short-term memory layer over whole sequences, shaped like :class:`torch.nn.LSTM`.

    For each step, with gates in torch's order ``i, f, g, o``::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)     f = sigmoid(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)        o = sigmoid(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g                             h' = o * tanh(c')    (with proj_size: h' = W_hr h')

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
    dropout : float
        torch's dropout between layers: in training, each element of every layer's output but the last is
        zeroed with this probability (the rest scaled by ``1/(1-p)``) before it feeds the next layer. Fresh
        masks for every forward; the backward uses the same ones.
    bidirectional : bool
        ``D = 2``: a second direction per layer runs in reverse time (parameters ``*_reverse``); ``y`` holds
        both directions' outputs side by side, ``(T, N, 2*H_out)``.
    proj_size : int
        ``P > 0`` (less than ``H``): LSTM with projections, ``h = W_hr (o * tanh(c))`` with ``weight_hr_l{k}``
        ``(P, H)``; then ``H_out = P``: ``h0``, ``h_n`` are ``(L*D, N, P)``, ``weight_hh`` is ``(4H, P)``.
    input_dropout, recurrent_dropout : float, keyword-only
        Variational dropout (Gal & Ghahramani; Keras' ``dropout`` and ``recurrent_dropout``), not in torch:
        one mask per sequence, the same at every step, on each layer's input ``x_t`` and on the ``h_{t-1}``
        entering the recurrent product (the state carried on is not masked). Training only.
    go_backwards : bool, keyword-only
        Keras' option (``D = 1`` only): the layer runs in reverse time, starting from each sequence's last
        step. Unlike Keras, ``y`` stays aligned with ``x`` (``y[t]`` belongs to ``x[t]``); Keras returns it
        reversed.
    unit_forget_bias : bool, keyword-only
        Keras' initialisation: biases zero except the forget gate's, whose total ``b_if + b_hf`` is 1
        (``bias_ih`` holds the 1).
    dtype : np.float32 or np.float64
        Of the parameters and of every array the layer accepts.
    seed : int, optional
        Seeds the initialisation (uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` as torch) and, from a separate
        stream, the dropout masks; see :meth:`reseed_dropout`.

    Notes
    -----
    Inputs must have the layer's dtype (TypeError otherwise, as torch). C-contiguous arrays reach the C++
    core without a copy; non-contiguous ones, ``batch_first`` inputs and variable-length batches are copied to
    the core's time-major layout. A training forward (the default mode) keeps its input, the activated gates
    ``(T, N, 4H)``, the cell states and the outputs for :meth:`backward`, until the next forward; :meth:`eval`
    turns that off and disables dropout. A call on one step (``T = 1``, a stream fed a step at a time) of a
    layer of one layer and direction without projection, lengths or (in training) variational dropout runs as
    one :class:`LSTMCell` step: it keeps what that step keeps and agrees with the sequence kernels to float
    rounding. The weights are referenced, not copied: do not modify them in place
    between a forward and its backward. NaN and Inf propagate as in torch (an omitted ``hx`` is zeros, so ``0 * NaN`` is NaN there too). The
    kernels release the GIL.

    Threads: separate layers may be used from any number of Python threads at once; one layer in inference
    (``eval()`` or ``training=False``) may run forwards from several threads at once. One layer in training
    mode must not: a training forward keeps its tape (and draws dropout masks) on the layer for the next
    :meth:`backward`; give each thread its own layer (``load_state_dict`` copies the weights).
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
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        go_backwards: bool = False,
        unit_forget_bias: bool = False,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, bias=bias,
            batch_first=batch_first, dropout=dropout, bidirectional=bidirectional, proj_size=proj_size,
            input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, go_backwards=go_backwards,
            dtype=dtype, seed=seed, cell=False,
        )
        if unit_forget_bias:
            self._init_forget_bias()

    def __repr__(self) -> str:
        return f"LSTM({self.input_size}, {self.hidden_size}{self._extra_repr()}, dtype={self.dtype.name})"

    def __call__(
        self, x: Any, hx: Optional[Tuple[Any, Any]] = None, lengths: Any = None, *, training: Optional[bool] = None
    ) -> Tuple[np.ndarray, ArrayPair]:
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        x : array_like
            ``(T, N, I)``, or ``(N, T, I)`` with ``batch_first``, or unbatched ``(T, I)``.
        hx : tuple of two arrays, optional
            ``(h0, c0)``: ``(L*D, N, H_out)`` and ``(L*D, N, H)`` (unbatched: without ``N``), ordered layer by
            layer, forward direction first, as torch. Zeros when omitted.
        lengths : array_like of int, optional
            ``(N,)``, each in ``[1, T]``, in any order: sequence ``b`` is ``x[:lengths[b], b]`` and the rest is
            padding, as with torch's ``pack_padded_sequence(x, lengths, enforce_sorted=False)``. Padding costs no
            compute; ``y`` is zero there, and the final states are each sequence's own (the reverse direction
            starts at the sequence's last step). Unlike ``pad_packed_sequence``, ``y`` keeps ``x``'s ``T``.
        training : bool, optional
            Overrides the layer's mode (:meth:`train`/:meth:`eval`) for this call.

        Returns
        -------
        y : ndarray
            ``(T, N, D*H_out)`` (``(N, T, D*H_out)`` with ``batch_first``; ``(T, D*H_out)`` unbatched): the last
            layer's ``h_t`` for every step, both directions side by side.
        (h_n, c_n) : tuple of ndarray
            The final states, shaped as ``h0`` and ``c0``.
        """
        parts = (None, None) if hx is None else check_pair("hx", hx)
        y, (h_n, c_n) = self._sequence_forward(x, parts, ("hx[0] (h0)", "hx[1] (c0)"), lengths, training)
        return y, (h_n, c_n)

    forward = __call__

    def backward(
        self, dy: Any, dhx: Optional[Tuple[Any, Any]] = None, accumulate: bool = False
    ) -> Tuple[np.ndarray, ArrayPair]:
        """Backward through time of the last training forward.

        Parameters
        ----------
        dy : array_like
            Gradient of the loss with respect to ``y``, shaped as ``y`` (ignored where ``y`` is padding).
        dhx : tuple, optional
            ``(dh_n, dc_n)``, gradients with respect to the final states, shaped as ``h_n``/``c_n``;
            either may be None (zeros).
        accumulate : bool
            Add the weight gradients to :attr:`grads` instead of overwriting them (torch's ``.grad``
            accumulation).

        Returns
        -------
        dx : ndarray
            Shaped as ``x`` (zero where ``x`` is padding).
        (dh0, dc0) : tuple of ndarray
            Shaped as ``h0``/``c0`` (also when ``hx`` was omitted: the gradient with respect to zeros).
        """
        parts = (None, None) if dhx is None else check_pair("dhx", dhx)
        dx, (dh0, dc0) = self._sequence_backward(dy, parts, ("dhx[0] (dh_n)", "dhx[1] (dc_n)"), accumulate)
        return dx, (dh0, dc0)


class LSTMCell(CellSteps, _LstmCore):
    """One LSTM step, shaped like :class:`torch.nn.LSTMCell`: for streaming, one input at a time.

    Parameters are ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``,
    initialised and checked as in :class:`LSTM`, whose notes on dtypes, copies and the training cache apply.
    ``unit_forget_bias`` as in :class:`LSTM`.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, *, unit_forget_bias: bool = False,
        dtype: Any = np.float32, seed: Optional[int] = None,
    ) -> None:
        super().__init__(
            input_size=input_size, hidden_size=hidden_size, num_layers=1, bias=bias, batch_first=False,
            dropout=0.0, bidirectional=False, proj_size=0, input_dropout=0.0, recurrent_dropout=0.0,
            go_backwards=False, dtype=dtype, seed=seed, cell=True,
        )
        if unit_forget_bias:
            self._init_forget_bias()

    def __repr__(self) -> str:
        extra = "" if self.bias else ", bias=False"
        return f"LSTMCell({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    def __call__(self, x: Any, hx: Optional[Tuple[Any, Any]] = None, *, training: Optional[bool] = None) -> ArrayPair:
        """One step.

        Parameters
        ----------
        x : array_like
            ``(N, I)``, or unbatched ``(I,)``.
        hx : tuple of two arrays, optional
            ``(h0, c0)``, each ``(N, H)`` (unbatched: ``(H,)``). Zeros when omitted.
        training : bool, optional
            Overrides the layer's mode for this call.

        Returns
        -------
        (h1, c1) : tuple of ndarray
            The next states, shaped as ``h0``/``c0``.

        Notes
        -----
        A training step keeps the gates ``(N, 4H)`` and copies of ``x``, ``h0``, ``c0`` for :meth:`backward`.
        Arrays of the layer's dtype, C-contiguous and aligned go to the core without any conversion.
        """
        mode = self.training if training is None else bool(training)
        try:
            (h1, c1), tape = self._cell_forward(x, self._direct_states(x, hx, 2), mode)
        except (TypeError, ValueError):
            x, shape = self._checked_x(x)
            h_user, c_user = (None, None) if hx is None else check_pair("hx", hx)
            h = self._zeros(shape) if h_user is None else self._checked_state("hx[0] (h0)", h_user, shape)
            c = self._zeros(shape) if c_user is None else self._checked_state("hx[1] (c0)", c_user, shape)
            (h1, c1), tape = self._cell_forward(x, (h, c), mode)
        self._tape = tape
        return h1, c1

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
        shape = tape.state_shape
        if not ready(dh1, self.dtype, shape):
            dh1 = self._checked_state("dh1", dh1, shape, "the shape of h1")
        if dc1 is not None and not ready(dc1, self.dtype, shape):
            dc1 = self._checked_state("dc1", dc1, shape)
        dx, (dh0, dc0) = self._cell_backward(tape, dh1, (dc1,), accumulate)
        return dx, (dh0, dc0)

    @property
    def cache_nbytes(self) -> int:
        """Bytes the last training step keeps for the backward (0 in inference)."""
        return 0 if self._tape is None else int(self._tape.buffer.nbytes)
