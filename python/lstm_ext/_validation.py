# SPDX-License-Identifier: MIT
"""Input checks shared by the layers: dtype and shape policy, with messages that name the argument, what
it got and what it expected (torch's wording where torch has one)."""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

#: A dimension of an expected shape: a fixed size, or a symbol (``"T"``, ``"N"``) that accepts any size.
Dim = Union[int, str]

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def resolve_dtype(dtype: Any) -> np.dtype:
    """The layer dtype as an ``np.dtype``; TypeError unless float32 or float64."""
    if dtype is None:  # torch's dtype=None is the default dtype; np.dtype(None) would be float64
        return np.dtype(np.float32)
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {dtype!r}") from exc
    if resolved.kind == "f" and not resolved.isnative:
        resolved = resolved.newbyteorder("=")  # the layer computes in native order whatever order was named
    if resolved not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {resolved.name}")
    return resolved


def check_size(name: str, value: Any, minimum: int = 1) -> int:
    """A positive integer constructor argument (bools are rejected: ``True`` is not a size)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``.

    An ndarray of ``dtype`` that is already C-contiguous is returned as it is (no copy); a non-contiguous
    one is copied. An ndarray of any other dtype is a TypeError (a silent float64 -> float32 cast would
    lose precision unannounced, and torch refuses it too). Anything else (lists, scalars) is converted.
    """
    if not isinstance(value, np.ndarray):
        if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
            value = value.detach().cpu().numpy()
        else:
            try:
                value = np.asarray(value, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name}: expected an array of {dtype.name}, got {type(value).__name__}") from exc
    if value.dtype != dtype and value.dtype.newbyteorder("=") == dtype:
        # A big-endian array on a little-endian machine (or the reverse): the same values, converted once.
        return value.astype(dtype, order="C")
    if value.dtype != dtype:
        hint = f"cast with .astype(np.{dtype.name})" if value.dtype.kind in "fiub" else "use a float array"
        raise TypeError(f"{name}: expected dtype {dtype.name}, got {value.dtype.name} ({hint})")
    if not value.flags.aligned:
        # A view at an odd offset of a byte buffer: the kernels load whole elements, so they get an aligned copy.
        return value.copy()
    # ascontiguousarray would turn a 0-d array into shape (1,): leave it for the rank check to reject.
    return value if value.ndim == 0 else np.ascontiguousarray(value)


def shape_str(shape: Sequence[Dim]) -> str:
    """``(T, N, 4)`` for a shape spec; a 1-tuple keeps its comma as Python prints it."""
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def check_shape(name: str, array: np.ndarray, expected: Sequence[Dim], note: str = "") -> None:
    """ValueError unless ``array.shape`` matches ``expected`` (symbols match any size)."""
    ok = array.ndim == len(expected) and all(
        isinstance(want, str) or got == want for got, want in zip(array.shape, expected)
    )
    if not ok:
        suffix = f" ({note})" if note else ""
        raise ValueError(f"{name}: expected shape {shape_str(expected)}{suffix}, got {shape_str(array.shape)}")


def check_pair(name: str, value: Any) -> tuple[Any, Any]:
    """A ``(h, c)`` pair such as ``hx`` or ``dhx``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name}: expected a tuple (h, c) of two arrays, got {type(value).__name__}")
    return value[0], value[1]
