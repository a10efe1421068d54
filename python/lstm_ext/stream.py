# SPDX-License-Identifier: MIT
"""``Stateful``: feed a long stream through a layer chunk by chunk, carrying the state across calls."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from .gru import GRU
from .lstm import LSTM

Layer = Union[LSTM, GRU]


class Stateful:
    """A full layer that remembers its final state between calls (Keras' ``stateful=True``).

    ``stream = Stateful(layer)``; then ``y1 = stream(x[:100])``, ``y2 = stream(x[100:])`` gives ``layer(x)[0]``
    split in two, for any split, batched or not: the same recurrence, equal to float rounding. (Not always to the
    last bit: a chunk's input projection is one matrix product whose kernel, and so its rounding, follows the
    chunk's row count; differences are a few ulp, 1e-16 in float64.)

    Parameters
    ----------
    layer : LSTM or GRU
        Any full layer that runs forward in time only: not bidirectional, not ``go_backwards`` (those need the
        future of the stream). Its mode applies: in training mode each chunk keeps its own tape, so
        :meth:`LSTM.backward` differentiates the last chunk (truncated backpropagation through time), and
        variational dropout masks are drawn per chunk.
    hx : optional
        The initial state, as the layer's ``hx`` (zeros when omitted).

    Attributes
    ----------
    hx
        The state after the last chunk, as the layer returned it (``(h, c)`` for an LSTM, ``h`` for a GRU), or
        the initial one before any chunk.
    """

    def __init__(self, layer: Layer, hx: Any = None) -> None:
        if not isinstance(layer, (LSTM, GRU)):
            raise TypeError(f"layer: expected an lstm_ext.LSTM or lstm_ext.GRU, got {type(layer).__name__}")
        if layer.bidirectional or layer.go_backwards:
            raise ValueError("layer: a bidirectional or go_backwards layer needs the whole sequence; "
                             "streaming needs a forward-only layer")
        self.layer = layer
        self.hx: Optional[Any] = hx

    def __call__(self, chunk: Any) -> np.ndarray:
        """Run the next chunk (shaped as the layer's ``x``); returns its ``y`` and keeps the final state."""
        y, self.hx = self.layer(chunk, self.hx)
        return y

    def reset(self, hx: Any = None) -> None:
        """Start a new stream from ``hx`` (zeros when omitted)."""
        self.hx = hx
