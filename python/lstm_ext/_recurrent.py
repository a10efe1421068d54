# SPDX-License-Identifier: MIT
"""What the LSTM and GRU layers share: parameters per (layer, direction), input and state layouts,
variable-length packing, dropout masks, and the tape a training forward keeps for the backward.

Everything here is policy; the numerics are in C++. A subclass says how to call the core
(``_core_forward`` / ``_core_backward``) and what its states are (LSTM: ``h, c``; GRU: ``h``).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._cell import StepTape
from ._module import Module
from ._packing import Packing, check_lengths, make_packing
from ._validation import as_float_array, check_shape, check_size

States = List[Optional[np.ndarray]]


@dataclass
class Masks:
    """Dropout masks of one training forward, scaled (0 or 1/(1-p)), in the core's (sorted) batch order."""

    inter: Optional[np.ndarray] = None                 # [L-1, rows, D*H_out]
    input: Optional[List[np.ndarray]] = None           # per k: [N, width_k]
    recurrent: Optional[List[np.ndarray]] = None       # per k: [N, H_out]

    def core_args(self) -> Dict[str, Any]:
        return {"input_masks": self.input, "recurrent_masks": self.recurrent, "inter_masks": self.inter}


@dataclass
class Tape:
    """What a training forward keeps for the backward, all in the core's layout and owned by the layer."""

    x: np.ndarray                  # [T, N, I] dense or [R, I] packed
    states: States                 # initial states, [K, N, W] each, or None
    y: np.ndarray                  # the core's output (the saved hidden states)
    cache: Tuple[np.ndarray, ...]  # the core's buffers
    weights: Dict[str, Any]        # the weight lists the forward ran with
    masks: Masks
    packing: Optional[Packing]
    x_shape: Tuple[int, ...]       # shapes as the user saw them
    y_shape: Tuple[int, ...]
    state_shapes: List[Tuple[int, ...]]
    extra: Dict[str, Any] = field(default_factory=dict)


def tape_copy(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` whose data, when large, comes from the memory cache (so a training loop reuses the
    last step's pages instead of faulting in fresh ones)."""
    if array.flags.c_contiguous and array.dtype in (np.float32, np.float64):
        return _core.copy_array(array)
    return array.copy()


def owned(array: Optional[np.ndarray], user: Any) -> Optional[np.ndarray]:
    """``array``, copied if it may still be the caller's memory: the tape must not change under us."""
    if array is not None and isinstance(user, np.ndarray) and np.may_share_memory(array, user):
        return tape_copy(array)
    return array


def check_seed(seed: Any) -> Optional[int]:
    """None or an int >= 0, as ``np.random.default_rng`` takes it (bools are not seeds)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected None or an int >= 0, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed: expected None or an int >= 0, got {seed}")
    return int(seed)


def physical_memory() -> Optional[int]:
    """Bytes of RAM of this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def check_probability(name: str, value: Any) -> float:
    """A dropout probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a float in [0, 1), got {type(value).__name__}")
    p = float(value)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value}")
    return p


class RecurrentBase(Module):
    """Base of LSTM, GRU and their cells: a stack of ``L`` layers of ``D`` directions over the core.

    Subclasses set ``_gates`` and implement ``_state_widths``, ``_core_forward`` and ``_core_backward``.
    """

    _gates = 0

    def __init__(
        self, *, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
        dropout: float, bidirectional: bool, proj_size: int, input_dropout: float, recurrent_dropout: float,
        go_backwards: bool, dtype: Any, seed: Optional[int], cell: bool,
    ) -> None:
        super().__init__(dtype)
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = check_probability("dropout", dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = check_size("proj_size", proj_size, minimum=0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size: expected 0 or less than hidden_size={self.hidden_size}, got {proj_size}")
        self.input_dropout = check_probability("input_dropout", input_dropout)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.go_backwards = bool(go_backwards)
        if self.go_backwards and self.bidirectional:
            raise ValueError("go_backwards: a bidirectional layer already runs both ways; use one or the other")
        self._directions = 2 if self.bidirectional else 1
        self._check_parameter_memory(1 if cell else self.num_layers)
        if cell:
            self._suffixes = [""]
        else:
            self._suffixes = [
                f"_l{l}{'_reverse' if d else ''}" for l in range(self.num_layers) for d in range(self._directions)
            ]
        self._seed_sequence = np.random.SeedSequence(check_seed(seed))
        self._init_params(self._param_shapes(), 1.0 / math.sqrt(self.hidden_size), seed)
        # Dropout masks come from their own stream, so drawing them never changes the initialisation.
        self._dropout_rng = np.random.default_rng(self._seed_sequence.spawn(1)[0])
        self._tape: Optional[Tape] = None

    # -- parameters -------------------------------------------------------------------------------------
    @property
    def out_size(self) -> int:
        """``H_out``: ``proj_size`` if set, else ``hidden_size``: the width of ``h`` and of each direction's output."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def _input_width(self, k: int) -> int:
        return self.input_size if k < self._directions else self._directions * self.out_size

    def _check_parameter_memory(self, layers: int) -> None:
        """Refuse, before allocating anything, a layer whose parameters cannot be addressed (ValueError naming
        the size) or exceed this machine's memory (MemoryError): allocating them one by one would grow until
        the allocator or the OOM killer stops the process."""
        gates, hidden, out = self._gates * self.hidden_size, self.hidden_size, self.out_size
        item = self.dtype.itemsize
        bias = 2 * gates if self.bias else 0
        proj = self.proj_size * hidden

        def per_direction(width: int) -> int:
            return gates * width + gates * out + bias + proj

        tensors = [
            ("input_size" if self.input_size >= hidden else "hidden_size", gates * self.input_size),
            ("proj_size" if self.proj_size > 0 else "hidden_size", gates * out),
        ]
        total = self._directions * (per_direction(self.input_size)
                                    + (layers - 1) * per_direction(self._directions * out))
        tensors.append(("num_layers", total))
        for blamed, count in tensors:
            if count * item > sys.maxsize:
                raise ValueError(
                    f"{blamed}: too large; the parameters would need {count} elements, more than a 64-bit size "
                    f"can address (input_size={self.input_size}, hidden_size={hidden}, "
                    f"num_layers={self.num_layers})"
                )
        available = physical_memory()
        if available is not None and total * item > available:
            raise MemoryError(
                f"the parameters of this layer need {total * item / 2**30:.3g} GiB, more than the "
                f"{available / 2**30:.3g} GiB of memory of this machine (input_size={self.input_size}, "
                f"hidden_size={hidden}, num_layers={self.num_layers})"
            )

    def _param_shapes(self) -> Dict[str, Tuple[int, ...]]:
        gates = self._gates * self.hidden_size
        shapes: Dict[str, Tuple[int, ...]] = {}
        for k, sfx in enumerate(self._suffixes):
            shapes[f"weight_ih{sfx}"] = (gates, self._input_width(k))
            shapes[f"weight_hh{sfx}"] = (gates, self.out_size)
            if self.bias:
                shapes[f"bias_ih{sfx}"] = (gates,)
                shapes[f"bias_hh{sfx}"] = (gates,)
            if self.proj_size > 0:
                shapes[f"weight_hr{sfx}"] = (self.proj_size, self.hidden_size)
        return shapes

    def _param_list(self, prefix: str) -> List[np.ndarray]:
        return [self._params[f"{prefix}{s}"] for s in self._suffixes]

    def reseed_dropout(self, seed: Optional[int]) -> None:
        """Restart the dropout masks' random stream from ``seed`` (the weights are not touched)."""
        self._dropout_rng = np.random.default_rng(np.random.SeedSequence(check_seed(seed)).spawn(1)[0])

    # -- hooks ------------------------------------------------------------------------------------------
    def _state_widths(self) -> List[int]:
        raise NotImplementedError

    def _core_forward(
        self, x: np.ndarray, states: States, training: bool, batch_sizes: Optional[np.ndarray], masks: Masks
    ) -> Tuple[np.ndarray, List[np.ndarray], Optional[Tuple[np.ndarray, ...]], Dict[str, Any]]:
        """Returns (y, final states, cache or None, the weight lists used)."""
        raise NotImplementedError

    def _core_backward(
        self, tape: Tape, dy: np.ndarray, d_finals: States
    ) -> Tuple[np.ndarray, List[np.ndarray], Dict[str, np.ndarray]]:
        """Returns (dx, gradients of the initial states, weight gradients under the parameter names)."""
        raise NotImplementedError

    # -- dropout ----------------------------------------------------------------------------------------
    def _keep_mask(self, p: float, shape: Tuple[int, ...]) -> np.ndarray:
        draw = self._dropout_rng.random(shape, dtype=np.float32 if self.dtype == np.float32 else np.float64)
        return np.where(draw >= p, self.dtype.type(1.0 / (1.0 - p)), self.dtype.type(0.0)).astype(self.dtype)

    def _draw_masks(self, rows: int, batch: int, packing: Optional[Packing]) -> Masks:
        """Fresh masks for one training forward. Per-sequence masks are drawn in the caller's batch order and
        then sorted, so a sequence's mask does not depend on the other sequences' lengths."""
        masks = Masks()
        k_count = len(self._suffixes)
        layers = k_count // self._directions
        if self.dropout > 0 and layers > 1:
            masks.inter = self._keep_mask(self.dropout, (layers - 1, rows, self._directions * self.out_size))
        order = None if packing is None else packing.order
        if self.input_dropout > 0:
            masks.input = [self._keep_mask(self.input_dropout, (batch, self._input_width(k))) for k in range(k_count)]
        if self.recurrent_dropout > 0:
            masks.recurrent = [self._keep_mask(self.recurrent_dropout, (batch, self.out_size)) for _ in range(k_count)]
        if order is not None:
            masks.input = None if masks.input is None else [np.ascontiguousarray(m[order]) for m in masks.input]
            masks.recurrent = None if masks.recurrent is None else [np.ascontiguousarray(m[order]) for m in masks.recurrent]
        return masks

    # -- the sequence path ------------------------------------------------------------------------------
    def _run(
        self, x_tm: np.ndarray, states: States, lengths: Any, user: Sequence[Any], x_shape: Tuple[int, ...],
        y_shape: Tuple[int, ...], state_shapes: List[Tuple[int, ...]], training: bool,
    ) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Forward on a time-major ``(T, N, I)`` input and ``(K, N, W)`` states in the caller's batch order.

        Returns y ``(T, N, D*H_out)`` and the final states ``(K, N, W)``; keeps the tape when training.
        """
        steps, batch = x_tm.shape[0], x_tm.shape[1]
        # An omitted state is zeros, passed as zeros: the core may skip work on a null state (a product with
        # zeros), which differs from multiplying by zero once a gate is NaN or Inf (0 * NaN is NaN in torch).
        states = [
            np.zeros((len(self._suffixes), batch, w), self.dtype) if s is None else s
            for s, w in zip(states, self._state_widths())
        ]
        packing = None if lengths is None else make_packing(check_lengths(lengths, steps, batch), steps)
        if packing is None:
            x_core, states_core, batch_sizes, rows = x_tm, states, None, steps * batch
        else:
            x_core = packing.pack(x_tm)
            states_core = [packing.sort_states(s) for s in states]
            batch_sizes, rows = packing.batch_sizes, packing.rows
        masks = self._draw_masks(rows, batch, packing) if training else Masks()
        # The inputs are checked: the last forward's tape goes now, its buffers back to the memory cache, where
        # this forward finds them, so the two never live at once (should the core fail, backward says so).
        self._tape = None
        y, finals, cache, weights = self._core_forward(x_core, states_core, training, batch_sizes, masks)
        if training:
            assert cache is not None
            kept_states = [owned(s, u) for s, u in zip(states_core, user[1:])]
            self._tape = Tape(
                x=owned(x_core, user[0]), states=kept_states, y=y, cache=cache, weights=weights, masks=masks,
                packing=packing, x_shape=x_shape, y_shape=y_shape, state_shapes=state_shapes,
            )
        else:
            self._tape = None
        if packing is None:
            # The tape's y is the saved hidden states: the caller gets its own.
            y_tm = tape_copy(y) if training else y
        else:
            y_tm = packing.unpack(y)
            finals = [packing.unsort_states(f) for f in finals]
        return y_tm, finals

    def _check_tape(self) -> Tape:
        if self._tape is None:
            raise RuntimeError(
                "backward: no training forward to differentiate; call the layer in training mode "
                "(layer.train(), the default) before backward"
            )
        return self._tape

    def _run_backward(self, tape: Tape, dy_tm: np.ndarray, d_finals: States, accumulate: bool
                      ) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Backward on a time-major dy and ``(K, N, W)`` final-state gradients in the caller's batch order."""
        packing = tape.packing
        if packing is not None:
            dy_tm = packing.pack(dy_tm)
            d_finals = [packing.sort_states(d) for d in d_finals]
        dx, d_states, grads = self._core_backward(tape, dy_tm, d_finals)
        self._store_grads(grads, accumulate)
        if packing is not None:
            dx = packing.unpack(dx)
            d_states = [packing.unsort_states(d) for d in d_states]
        return dx, d_states

    @property
    def cache_nbytes(self) -> int:
        """Bytes the last training forward keeps for the backward (0 in inference)."""
        t = self._tape
        if t is None:
            return 0
        if isinstance(t, StepTape):
            return int(t.cell.buffer.nbytes)
        kept = [t.x, t.y, *t.states, *t.cache]
        return int(sum(a.nbytes for a in kept if a is not None))

    # -- user-facing layouts ----------------------------------------------------------------------------
    def _state(self, name: str, value: Any, shape: Tuple[int, ...], core_shape: Tuple[int, ...]) -> Optional[np.ndarray]:
        """A state given in the user's shape, as the core's ``(K, N, W)`` (a view when possible)."""
        if value is None:
            return None
        array = as_float_array(name, value, self.dtype)
        check_shape(name, array, shape)
        return array.reshape(core_shape)

    def _cell_input(self, x: Any) -> Tuple[np.ndarray, int, Tuple[int, ...]]:
        """A cell's ``x`` ``(N, I)`` or unbatched ``(I,)``, checked; with N and the shape of its states."""
        x = as_float_array("x", x, self.dtype)
        if x.ndim not in (1, 2):
            raise ValueError(f"x: expected 2 dimensions (N, I) or 1 (I,) for an unbatched input, got shape {x.shape}")
        check_shape("x", x, (self.input_size,) if x.ndim == 1 else ("N", self.input_size),
                    f"input_size={self.input_size}")
        batch = 1 if x.ndim == 1 else x.shape[0]
        if batch == 0:
            raise ValueError(f"x: empty batch (N=0) in shape {x.shape}; expected at least one row")
        return x, batch, ((self.hidden_size,) if x.ndim == 1 else (batch, self.hidden_size))

    def _time_major(self, array: np.ndarray) -> Tuple[np.ndarray, bool]:
        """A (T, N, F) C-contiguous view or copy of a batched or unbatched sequence; and whether unbatched."""
        if array.ndim == 2:
            return array[:, None, :], True
        if self.batch_first:
            return np.ascontiguousarray(array.transpose(1, 0, 2)), False
        return array, False

    def _user_layout(self, y_tm: np.ndarray, unbatched: bool, shape: Tuple[int, ...]) -> np.ndarray:
        if self.batch_first and not unbatched:
            y_tm = np.ascontiguousarray(y_tm.transpose(1, 0, 2))
        return y_tm.reshape(shape)

    def _sequence_forward(
        self, x: Any, hx_parts: Sequence[Any], hx_names: Sequence[str], lengths: Any, training: Optional[bool]
    ) -> Tuple[np.ndarray, List[np.ndarray]]:
        """The whole forward of a full layer, from the user's arrays to the user's arrays."""
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
        if lengths is not None and unbatched:
            raise ValueError("lengths: an unbatched sequence (T, I) has no lengths; pass x[:length] instead")

        k = len(self._suffixes)
        widths = self._state_widths()
        state_shapes = [(k, w) if unbatched else (k, batch, w) for w in widths]
        states: States = [
            self._state(name, value, shape, (k, batch, w))
            for name, value, shape, w in zip(hx_names, hx_parts, state_shapes, widths)
        ]
        out = self._directions * self.out_size
        y_shape = (x.shape[0], out) if unbatched else x.shape[:2] + (out,)
        mode = self.training if training is None else bool(training)
        y, finals = self._run(x_tm, states, lengths, [x_in, *hx_parts], x.shape, y_shape, state_shapes, mode)
        return self._user_layout(y, unbatched, y_shape), [f.reshape(s) for f, s in zip(finals, state_shapes)]

    def _sequence_backward(
        self, dy: Any, d_parts: Sequence[Any], d_names: Sequence[str], accumulate: bool
    ) -> Tuple[np.ndarray, List[np.ndarray]]:
        tape = self._check_tape()
        dy = as_float_array("dy", dy, self.dtype)
        check_shape("dy", dy, tape.y_shape, "the shape of y")
        unbatched = len(tape.y_shape) == 2
        dy_tm, _ = self._time_major(dy)
        batch = dy_tm.shape[1]
        widths = self._state_widths()
        k = len(self._suffixes)
        d_finals: States = [
            self._state(name, value, shape, (k, batch, w))
            for name, value, shape, w in zip(d_names, d_parts, tape.state_shapes, widths)
        ]
        dx, d_states = self._run_backward(tape, dy_tm, d_finals, accumulate)
        dx = self._user_layout(dx, unbatched, tape.x_shape)
        return dx, [d.reshape(s) for d, s in zip(d_states, tape.state_shapes)]

    def _extra_repr(self) -> str:
        parts = []
        if len(self._suffixes) > 1 or self.num_layers > 1:
            parts.append(f"num_layers={self.num_layers}")
        defaults = {"bias": (self.bias, True), "batch_first": (self.batch_first, False),
                    "dropout": (self.dropout, 0.0), "bidirectional": (self.bidirectional, False),
                    "proj_size": (self.proj_size, 0), "input_dropout": (self.input_dropout, 0.0),
                    "recurrent_dropout": (self.recurrent_dropout, 0.0), "go_backwards": (self.go_backwards, False)}
        parts += [f"{name}={value!r}" for name, (value, default) in defaults.items() if value != default]
        return "".join(", " + p for p in parts)
