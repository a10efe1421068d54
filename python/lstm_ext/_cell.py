# SPDX-License-Identifier: MIT
"""One step through the core's cell kernels: ``LSTMCell`` and ``GRUCell``, and a full layer's one-step call.

A cell is called once per step from a Python loop, so what each call costs around the kernel matters as much
as the kernel (at ``I = H = 128``, N = 1 the arithmetic is a few microseconds). A forward first hands its
arrays to the core as they are: the core checks every one (dtype, contiguity, alignment, the shapes against
each other and the weights) before any work, and raises TypeError or ValueError. Then, and for anything else,
the general path checks and converts (so every error and its message is the general path's) and runs the same
kernel. A backward's gradient goes as it is when ``ready``. The layers' ``_tape`` of a cell step is a
``CellTape``; nothing besides it is kept between calls except a read-only zeros buffer for an omitted state.

A full layer (``LSTM``, ``GRU``) called on one step (``T = 1``, a stream fed a step at a time) is that cell
step when nothing the cell lacks is asked for (one layer, one direction, no projection, no lengths, no
variational dropout in training; the GRU's ``reset_after``): ``LayerSteps``. Its tape is a ``StepTape``.
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ._validation import as_float_array, check_shape

StatesOut = List[np.ndarray]

_ndarray = np.ndarray


class CellTape(NamedTuple):
    """What a training step keeps for its backward."""

    buffer: np.ndarray                 # the core's tape: the gates etc., then copies of x and the states
    w_ih: np.ndarray                   # the parameter arrays the step ran with (load_state_dict replaces
    w_hh: np.ndarray                   # the layer's arrays, so these are what the backward must use)
    b_ih: Optional[np.ndarray]
    b_hh: Optional[np.ndarray]
    state_shape: Tuple[int, ...]       # h's shape as the caller saw it: (N, H) or unbatched (H,)


def ready(a: Any, dtype: np.dtype, shape: Tuple[int, ...]) -> bool:
    """Whether ``a`` can go to the core as it is: an ndarray (not a subclass) of exactly ``dtype`` and
    ``shape``, C-contiguous and aligned (``flags.carray``, which also asks for writeable: a read-only array
    takes the general path, which passes it on as it is)."""
    return type(a) is _ndarray and a.dtype is dtype and a.shape == shape and a.flags.carray


class StepTape(NamedTuple):
    """What a full layer's one-step training call keeps for its backward: the cell step's tape (whose
    ``state_shape`` is the layer's, ``(1, N, H)`` or unbatched ``(1, H)``) and the shapes the caller saw."""

    cell: CellTape
    x_shape: Tuple[int, ...]
    y_shape: Tuple[int, ...]


class CellKernels:
    """Mixin: the cell kernels on the host's parameters (those of its one layer, suffix ``_suffixes[0]``), and
    the zeros of an omitted state.

    The host class (LSTM or GRU side of RecurrentBase) provides ``dtype``, ``hidden_size``, ``_params``,
    ``_grads``, ``_suffixes``, and the core calls ``_cell_forward`` and ``_cell_backward``.
    """

    dtype: np.dtype
    hidden_size: int
    _params: Any
    _grads: Any
    _suffixes: List[str]
    _zeros_state: Optional[np.ndarray] = None

    def _cell_forward(self, x: np.ndarray, states: Sequence[np.ndarray], training: bool,
                      state_shape: Optional[Tuple[int, ...]] = None) -> Tuple[StatesOut, Optional[CellTape]]:
        """One step on the core: the next states and, when training, the tape (its ``state_shape`` the given
        one, else that of the states)."""
        raise NotImplementedError

    def _cell_backward(self, tape: CellTape, dh1: np.ndarray, d_rest: Sequence[Optional[np.ndarray]],
                       accumulate: bool) -> Tuple[np.ndarray, StatesOut]:
        """The backward of a step into the live gradients: ``dx`` and the initial states' gradients."""
        raise NotImplementedError

    def _cell_kernels_apply(self) -> bool:
        """Whether the cell kernels compute this layer's step (the GRU's with ``reset_after`` only)."""
        return True

    def _cell_weights(self) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        """``w_ih, w_hh, b_ih, b_hh`` (biases None without bias), the arrays of now (load_state_dict replaces them)."""
        p, s = self._params, self._suffixes[0]
        return p["weight_ih" + s], p["weight_hh" + s], p.get("bias_ih" + s), p.get("bias_hh" + s)

    def _cell_grads(self) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        """The live gradients of ``_cell_weights``, which the core writes into."""
        g, s = self._grads, self._suffixes[0]
        return g["weight_ih" + s], g["weight_hh" + s], g.get("bias_ih" + s), g.get("bias_hh" + s)

    def _zeros(self, shape: Tuple[int, ...]) -> np.ndarray:
        """Read-only zeros of ``shape`` for an omitted state, kept for the last shape asked for (the core only
        reads its states, and multiplies them: 0 * NaN is NaN, as in torch)."""
        zeros = self._zeros_state
        if zeros is None or zeros.shape != shape:
            zeros = np.zeros(shape, self.dtype)
            zeros.flags.writeable = False
            self._zeros_state = zeros
        return zeros


class CellSteps(CellKernels):
    """Mixin of the two cells: the states a forward tries the core with first, and the general path's checks.

    The host class also provides ``input_size`` and ``_cell_input`` (RecurrentBase).
    """

    input_size: int

    def _direct_states(self, x: Any, hx: Any, count: int) -> Tuple[Any, ...]:
        """The ``count`` states to try the core with as they are: ``hx`` itself (for the LSTM a tuple of two),
        or zeros shaped after ``x`` when omitted. TypeError when ``x`` is no ndarray or ``hx`` not of that form."""
        if type(x) is not _ndarray:
            raise TypeError("x: not an ndarray")
        if hx is None:
            return (self._zeros(x.shape[:-1] + (self.hidden_size,)),) * count
        if count == 1:
            return (hx,)
        if type(hx) is not tuple or len(hx) != count:
            raise TypeError("hx: not a tuple")
        return hx

    def _checked_x(self, x: Any) -> Tuple[np.ndarray, Tuple[int, ...]]:
        """The general path's ``x``: checked and converted as every layer does; with its states' shape."""
        x, _, state_shape = self._cell_input(x)  # type: ignore[attr-defined]
        return x, state_shape

    def _checked_state(self, name: str, value: Any, shape: Tuple[int, ...], note: str = "") -> np.ndarray:
        """The general path's state or state gradient: checked and converted."""
        array = as_float_array(name, value, self.dtype)
        check_shape(name, array, shape, note)
        return array


class LayerSteps(CellKernels):
    """Mixin of the full layers: a one-step call (``T = 1``) as one cell step, where it can be one.

    The cell kernels skip what a sequence needs (packing the weights, the input projection as a GEMM over all
    steps, the sequence's buffers and loops): from Python a one-step call costs about a third of the general
    path's. Their results agree with the sequence kernels' to float rounding (see the module's docstring),
    and a one-step call gives the same bits in training and in inference. The host also provides
    ``input_size``, ``batch_first``, ``proj_size``, the dropout probabilities, ``training`` and ``_tape``.
    """

    batch_first: bool
    proj_size: int
    input_dropout: float
    recurrent_dropout: float
    training: bool
    _tape: Any

    def _steps_as_cells(self, training: bool) -> bool:
        """Whether a one-step call of this layer is one cell step: one layer, one direction (``go_backwards``
        over one step is that step), no projection, no variational dropout in training."""
        return (len(self._suffixes) == 1 and self.proj_size == 0 and self._cell_kernels_apply()
                and not (training and (self.input_dropout > 0 or self.recurrent_dropout > 0)))

    def _sequence_forward(self, x: Any, hx_parts: Sequence[Any], hx_names: Sequence[str], lengths: Any,
                          training: Optional[bool]) -> Tuple[np.ndarray, StatesOut]:
        """RecurrentBase's, but a one-step call that can be a cell step is one."""
        step = None if lengths is not None else self._step_forward(x, hx_parts, training)
        if step is not None:
            return step
        return super()._sequence_forward(x, hx_parts, hx_names, lengths, training)  # type: ignore[misc]

    def _sequence_backward(self, dy: Any, d_parts: Sequence[Any], d_names: Sequence[str], accumulate: bool
                           ) -> Tuple[np.ndarray, StatesOut]:
        """RecurrentBase's, but the backward of a one-step call run as a cell step is that step's."""
        tape = self._tape
        if isinstance(tape, StepTape):
            return self._step_backward(tape, dy, d_parts, d_names, accumulate)
        return super()._sequence_backward(dy, d_parts, d_names, accumulate)  # type: ignore[misc]

    def _step_forward(self, x: Any, parts: Sequence[Any], training: Optional[bool]
                      ) -> Optional[Tuple[np.ndarray, StatesOut]]:
        """``(y, final states)`` of a call on one step, run as a cell step, in the caller's shapes.

        None when the call is not such a step (``x`` is no ndarray or has another ``T``, a state is not an
        ndarray of its exact shape, the layer is not one the cell kernels run) or the core refuses an array:
        then the general path runs the call, with its checks and messages. ``parts`` are ``hx``'s states.
        """
        if type(x) is not _ndarray:
            return None
        mode = self.training if training is None else bool(training)
        if not self._steps_as_cells(mode):
            return None
        shape, hidden = x.shape, self.hidden_size
        if len(shape) == 3 and shape[1 if self.batch_first else 0] == 1:
            batch = shape[0 if self.batch_first else 1]
            state_shape: Tuple[int, ...] = (1, batch, hidden)
        elif len(shape) == 2 and shape[0] == 1:
            batch, state_shape = 1, (1, hidden)
        else:
            return None
        if batch == 0:
            return None
        flat = (batch, hidden)
        states = []
        for part in parts:
            if part is None:
                states.append(self._zeros(flat))
            elif type(part) is _ndarray and part.shape == state_shape:
                states.append(part.reshape(flat))
            else:
                return None
        try:
            finals, tape = self._cell_forward(x.reshape(batch, shape[-1]), states, mode, state_shape)
        except (TypeError, ValueError):
            return None
        y_shape = shape[:-1] + (hidden,)
        self._tape = None if tape is None else StepTape(tape, shape, y_shape)
        y = finals[0].reshape(y_shape).copy()  # y and h_n are two arrays, as in torch
        return y, [f.reshape(state_shape) for f in finals]

    def _step_backward(self, tape: StepTape, dy: Any, parts: Sequence[Any], names: Sequence[str],
                       accumulate: bool) -> Tuple[np.ndarray, StatesOut]:
        """The backward of a one-step call: ``dx`` and the initial states' gradients in the caller's shapes.
        ``parts`` are the final states' gradients (None: zeros), checked as the general path checks them."""
        cell = tape.cell
        state_shape = cell.state_shape
        if not ready(dy, self.dtype, tape.y_shape):
            dy = as_float_array("dy", dy, self.dtype)
            check_shape("dy", dy, tape.y_shape, "the shape of y")
        flat = (1 if len(state_shape) == 2 else state_shape[1], self.hidden_size)
        grads: List[Optional[np.ndarray]] = []
        for name, part in zip(names, parts):
            if part is not None and not ready(part, self.dtype, state_shape):
                part = as_float_array(name, part, self.dtype)
                check_shape(name, part, state_shape)
            grads.append(None if part is None else part.reshape(flat))
        dh1 = dy.reshape(flat)
        if grads[0] is not None:
            dh1 = dh1 + grads[0]  # h_n is y's step: both gradients reach h1
        dx, d_states = self._cell_backward(cell, dh1, grads[1:], accumulate)
        return dx.reshape(tape.x_shape), [d.reshape(state_shape) for d in d_states]
