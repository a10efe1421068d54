# SPDX-License-Identifier: MIT
"""Fixtures, the one tolerance table, the shape grid, and helpers shared by the test modules.

The helpers translate between the layouts of ``lstm_ext.LSTM`` (time- or batch-major, batched or
unbatched, ``hx`` with a leading layer axis) and the time-major ``(T, N, ...)`` layout of
``lstm_ext.reference``, and copy weights between ``lstm_ext`` and ``torch`` (whose ``state_dict`` keys are the
same as ours). torch is imported only inside the torch helpers, so the suite runs without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import lstm_ext
from lstm_ext import reference

SEED = 20240531

# One table for the whole suite. Why these values:
# - float64 against the float64 reference (or torch float64): both sides round to ~1e-16 per operation; over
#   at most a few hundred operations per element and values of order 1-10 that stays far below 1e-12.
# - float32 against float64 or against torch float32: ~6e-8 per operation, with weight gradients summed over
#   T*N rows (up to ~50 here) and values up to ~10: a few 1e-6 absolute at most, so 2e-5 leaves margin and
#   still catches any real bug (a wrong gate or a missed term moves results by 1e-2 or more).
# - finite differences (float64, eps=1e-6): truncation ~1e-12, rounding ~1e-16*|f|/eps ~ 1e-9 for |f| ~ 10.
TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"rtol": 1e-10, "atol": 1e-12},
    "float32": {"rtol": 2e-5, "atol": 2e-5},
    "finite_differences": {"rtol": 1e-6, "atol": 1e-8},
}
FD_TOL = TOLERANCES["finite_differences"]


def tol(dtype: Any) -> dict[str, float]:
    """``rtol``/``atol`` for results computed in `dtype`, for ``np.testing.assert_allclose(**tol(dtype))``."""
    return TOLERANCES[np.dtype(dtype).name]


# (T, N, I, H): T=1, N=1, I=1, odd sizes, T longer than the others, N larger than H.
SHAPES = [(1, 1, 1, 1), (5, 3, 4, 7), (17, 2, 9, 16), (3, 5, 1, 2)]
SHAPE_IDS = ["T{}N{}I{}H{}".format(*s) for s in SHAPES]
# Shapes small enough for finite differences over every element.
TINY_SHAPES = [(1, 1, 1, 1), (3, 2, 2, 3), (4, 1, 3, 2)]
TINY_IDS = ["T{}N{}I{}H{}".format(*s) for s in TINY_SHAPES]
DTYPES = [np.float32, np.float64]


@pytest.fixture
def restore_num_threads():
    """Whatever a test sets, the next test starts with the thread count it had (yields that count)."""
    before = lstm_ext.get_num_threads()
    try:
        yield before
    finally:
        lstm_ext.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator with a fixed seed for every test: results do not depend on the test order."""
    return np.random.default_rng(SEED)


# ------------------------------------------------------------------------------------------------------------
# Layout helpers: lstm_ext.LSTM's layout <-> the reference's time-major (T, N, ...) layout.


def make_lstm_inputs(
    rng: np.random.Generator,
    shape: tuple[int, int, int, int],
    *,
    batch_first: bool = False,
    unbatched: bool = False,
    with_hx: bool = True,
    dtype: Any = np.float64,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Random ``x``, ``hx`` (or None), ``dy`` and ``dhx`` shaped as ``lstm_ext.LSTM`` takes them.

    Unbatched uses N=1 of `shape`'s values only for the state shapes ``(1, H)``.
    """
    steps, batch, inp, hidden = shape
    if unbatched:
        x_shape, y_shape, state_shape = (steps, inp), (steps, hidden), (1, hidden)
    elif batch_first:
        x_shape, y_shape, state_shape = (batch, steps, inp), (batch, steps, hidden), (1, batch, hidden)
    else:
        x_shape, y_shape, state_shape = (steps, batch, inp), (steps, batch, hidden), (1, batch, hidden)
    x = rng.standard_normal(x_shape).astype(dtype)
    hx = (
        (rng.standard_normal(state_shape).astype(dtype), rng.standard_normal(state_shape).astype(dtype))
        if with_hx
        else None
    )
    dy = rng.standard_normal(y_shape).astype(dtype)
    dhx = (rng.standard_normal(state_shape).astype(dtype), rng.standard_normal(state_shape).astype(dtype))
    return x, hx, dy, dhx


def layout_inputs(rng, shape, layout="time_major", with_hx=True, dtype=np.float64):
    """:func:`make_lstm_inputs` for a layout name: ``time_major``, ``batch_first`` or ``unbatched``."""
    return make_lstm_inputs(
        rng, shape, batch_first=layout == "batch_first", unbatched=layout == "unbatched", with_hx=with_hx,
        dtype=dtype,
    )


def reference_weights(state: dict[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """The float64 ``w_ih, w_hh, b_ih, b_hh`` keyword arguments of the reference from an LSTM or LSTMCell
    ``state_dict`` (keys with or without the ``_l0`` suffix)."""
    suffix = "_l0" if "weight_ih_l0" in state else ""

    def get(name: str) -> np.ndarray | None:
        value = state.get(name + suffix)
        return None if value is None else np.asarray(value, dtype=np.float64)

    return {
        "w_ih": get("weight_ih"),
        "w_hh": get("weight_hh"),
        "b_ih": get("bias_ih"),
        "b_hh": get("bias_hh"),
    }


def reference_lstm(
    state: dict[str, np.ndarray],
    x: np.ndarray,
    hx: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    batch_first: bool = False,
    dy: np.ndarray | None = None,
    dhx: tuple[np.ndarray | None, np.ndarray | None] | None = None,
) -> dict[str, np.ndarray]:
    """What ``lstm_ext.LSTM`` with weights `state` should return, computed by the float64 reference.

    `x`, `hx`, `dy` and `dhx` are laid out as ``LSTM.__call__``/``LSTM.backward`` take them; so are the
    results: ``y``, ``h_n``, ``c_n`` and, when `dy` is given, ``dx``, ``dh0``, ``dc0`` and the weight
    gradients under their ``state_dict`` names.
    """
    weights = reference_weights(state)
    hidden = weights["w_hh"].shape[1]
    unbatched = x.ndim == 2
    x64 = np.asarray(x, dtype=np.float64)
    if unbatched:
        x_tm = x64[:, None, :]
    elif batch_first:
        x_tm = x64.swapaxes(0, 1)
    else:
        x_tm = x64
    batch = x_tm.shape[1]
    state_shape = (1, hidden) if unbatched else (1, batch, hidden)

    def to_tm(a: np.ndarray) -> np.ndarray:  # (T, N, H) / (N, T, H) / (T, H) -> (T, N, H)
        a = np.asarray(a, dtype=np.float64)
        return a[:, None, :] if unbatched else (a.swapaxes(0, 1) if batch_first else a)

    def from_tm(a: np.ndarray) -> np.ndarray:
        return a[:, 0, :] if unbatched else (a.swapaxes(0, 1) if batch_first else a)

    def state_in(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a, dtype=np.float64).reshape(batch, hidden)

    h0, c0 = (None, None) if hx is None else hx
    y, h_n, c_n, cache = reference.lstm_forward(x_tm, state_in(h0), state_in(c0), **weights)
    out = {"y": from_tm(y), "h_n": h_n.reshape(state_shape), "c_n": c_n.reshape(state_shape)}
    if dy is not None:
        dh_n, dc_n = (None, None) if dhx is None else dhx
        grads = reference.lstm_backward(cache, to_tm(dy), state_in(dh_n), state_in(dc_n))
        out["dx"] = from_tm(grads["dx"])
        out["dh0"] = grads["dh0"].reshape(state_shape)
        out["dc0"] = grads["dc0"].reshape(state_shape)
        suffix = "_l0" if "weight_ih_l0" in state else ""
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if grads[name] is not None:
                out[name + suffix] = grads[name]
    return out


def assert_close(actual: Any, desired: Any, dtype: Any, what: str = "") -> None:
    """``np.testing.assert_allclose`` with the table's tolerance for `dtype`, and shape equality."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    np.testing.assert_allclose(actual, desired, err_msg=what, **tol(dtype))


# ------------------------------------------------------------------------------------------------------------
# torch helpers (torch is imported lazily: only torch tests call these).


def torch_dtype(dtype: Any) -> Any:
    """The torch dtype of the NumPy float dtype `dtype`."""
    import torch

    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def torch_lstm_like(layer: Any, *, batch_first: bool = False) -> Any:
    """A ``torch.nn.LSTM`` with the weights and dtype of the ``lstm_ext.LSTM`` `layer`."""
    import torch

    state = layer.state_dict()
    w_hh = state["weight_hh_l0"]
    module = torch.nn.LSTM(
        state["weight_ih_l0"].shape[1],
        w_hh.shape[1],
        bias="bias_ih_l0" in state,
        batch_first=batch_first,
        dtype=torch_dtype(w_hh.dtype),
    )
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    return module


def torch_cell_like(cell: Any) -> Any:
    """A ``torch.nn.LSTMCell`` with the weights and dtype of the ``lstm_ext.LSTMCell`` `cell`."""
    import torch

    state = cell.state_dict()
    w_hh = state["weight_hh"]
    module = torch.nn.LSTMCell(
        state["weight_ih"].shape[1], w_hh.shape[1], bias="bias_ih" in state, dtype=torch_dtype(w_hh.dtype)
    )
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    return module


def load_from_torch(target: Any, module: Any) -> None:
    """Copy the weights of the torch `module` into the ``lstm_ext`` layer or cell `target`."""
    target.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
