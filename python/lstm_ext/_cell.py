# SPDX-License-Identifier: MIT
"""What ``LSTMCell`` and ``GRUCell`` share: one step through the core's cell kernels, with a fast path.

A cell is called once per step from a Python loop, so what each call costs around the kernel matters as much
as the kernel (at ``I = H = 128``, N = 1 the arithmetic is a few microseconds). A forward first hands its
arrays to the core as they are: the core checks every one (dtype, contiguity, alignment, the shapes against
each other and the weights) before any work, and raises TypeError or ValueError. Then, and for anything else,
the general path checks and converts (so every error and its message is the general path's) and runs the same
kernel. A backward's gradient goes as it is when ``ready``. The layers' ``_tape`` of a cell step is a
``CellTape``; nothing besides it is kept between calls except a read-only zeros buffer for an omitted state.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from ._validation import as_float_array, check_shape

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


class CellSteps:
    """Mixin of the two cells: the fast-path shape of an input and the zeros of an omitted state.

    The host class provides ``dtype``, ``input_size``, ``hidden_size`` and ``_cell_input`` (RecurrentBase).
    """

    dtype: np.dtype
    input_size: int
    hidden_size: int
    _zeros_state: Optional[np.ndarray] = None

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

    def _zeros(self, shape: Tuple[int, ...]) -> np.ndarray:
        """Read-only zeros of ``shape`` for an omitted state, kept for the last shape asked for (the core only
        reads its states, and multiplies them: 0 * NaN is NaN, as in torch)."""
        zeros = self._zeros_state
        if zeros is None or zeros.shape != shape:
            zeros = np.zeros(shape, self.dtype)
            zeros.flags.writeable = False
            self._zeros_state = zeros
        return zeros

    def _checked_x(self, x: Any) -> Tuple[np.ndarray, Tuple[int, ...]]:
        """The general path's ``x``: checked and converted as every layer does; with its states' shape."""
        x, _, state_shape = self._cell_input(x)  # type: ignore[attr-defined]
        return x, state_shape

    def _checked_state(self, name: str, value: Any, shape: Tuple[int, ...], note: str = "") -> np.ndarray:
        """The general path's state or state gradient: checked and converted."""
        array = as_float_array(name, value, self.dtype)
        check_shape(name, array, shape, note)
        return array
