# SPDX-License-Identifier: MIT
"""Where the optimizers and the clip functions find parameters and gradients: the layers and models that own
them. Parameters are plain arrays without a ``.grad``, so the owner (anything with ``named_parameters()`` and
``grads``) is what gets passed around, where torch passes ``model.parameters()``."""

from __future__ import annotations

from typing import Any, Iterator, List, Tuple

import numpy as np


def is_owner(value: Any) -> bool:
    """Whether ``value`` is a layer or model: it has ``named_parameters()`` and ``grads``."""
    return callable(getattr(value, "named_parameters", None)) and hasattr(value, "grads")


def owners(name: str, value: Any) -> List[Any]:
    """``value`` as a list of owners: one layer or model, or a list or tuple of them; TypeError otherwise."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not is_owner(item):
            hint = (
                (
                    " (parameters are plain arrays without gradients here: pass the model itself, e.g. "
                    "SGD(model, lr=0.1))"
                )
                if isinstance(item, np.ndarray)
                else ""
            )
            raise TypeError(
                f"{name}: expected a layer or model with named_parameters() and grads, or a list of "
                f"them, got {type(item).__name__}{hint}"
            )
    if not items:
        raise ValueError(f"{name}: expected at least one layer or model, got an empty {type(value).__name__}")
    return items


def params_and_grads(items: List[Any]) -> Iterator[Tuple[Tuple[int, str], np.ndarray, np.ndarray]]:
    """``((owner index, name), parameter, gradient)`` for every parameter, looked up afresh (the live arrays:
    ``load_state_dict`` replaces a layer's arrays, so nothing is cached between calls)."""
    for k, owner in enumerate(items):
        grads = owner.grads
        for name, param in owner.named_parameters():
            yield (k, name), param, grads[name]
