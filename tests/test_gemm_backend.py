# SPDX-License-Identifier: MIT
"""The backend of the products over all time steps (the input projection, dx and the weight gradients):
lstm_ext's own float32 kernel ("native", the default) and Eigen always, OpenBLAS from the scipy-openblas32
wheel where the build has it. Each must give the float64 reference's results (float32 to float rounding), and
they must agree with each other, on shapes large enough for the products to be split over two threads by rows
and by columns.
"""

from __future__ import annotations

from typing import Dict, Iterator, List

import numpy as np
import pytest

import lstm_ext
from lstm_ext import reference_layers

BACKENDS = lstm_ext.gemm_backends()


@pytest.fixture
def restore_backend() -> Iterator[str]:
    before = lstm_ext.get_gemm_backend()
    try:
        yield before
    finally:
        lstm_ext.set_gemm_backend(before)


def forward_backward(kind: str, dtype, rng, **options) -> Dict[str, object]:
    """A layer, its inputs and everything one forward + backward gives, for T=20, N=24, I=40, H=48: the input
    projection is 480 x 192 x 40 (LSTM), the weight gradients 192 x 40 x 480, both split over threads."""
    steps, batch, inp, hidden = 20, 24, 40, 48
    if kind == "lstm":
        layer = lstm_ext.LSTM(inp, hidden, 2, dtype=dtype, seed=3, **options)
    else:
        layer = lstm_ext.GRU(inp, hidden, 2, dtype=dtype, seed=3, **options)
    out = layer.out_size if kind == "lstm" else hidden
    x = rng.standard_normal((steps, batch, inp))
    h0 = 0.5 * rng.standard_normal((2, batch, out))
    c0 = 0.5 * rng.standard_normal((2, batch, hidden))
    dy = rng.standard_normal((steps, batch, out))
    lengths = rng.integers(1, steps + 1, size=batch)
    cast = [a.astype(dtype) for a in (x, h0, c0, dy)]
    if kind == "lstm":
        y, (h_n, c_n) = layer(cast[0], (cast[1], cast[2]), lengths)
        dx, (dh0, dc0) = layer.backward(cast[3])
        got = {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx, "dh0": dh0, "dc0": dc0}
    else:
        y, h_n = layer(cast[0], cast[1], lengths)
        dx, dh0 = layer.backward(cast[3])
        got = {"y": y, "h_n": h_n, "dx": dx, "dh0": dh0}
    got.update({name: g.copy() for name, g in layer.grads.items()})
    return {"layer": layer, "got": got, "inputs": (x, h0, c0, dy, lengths)}


VARIANTS = [("lstm", {}), ("lstm", {"proj_size": 16}), ("gru", {}), ("gru", {"reset_after": False})]
VARIANT_IDS = ["lstm", "lstm-proj", "gru", "gru-reset_before"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("kind", "options"), VARIANTS, ids=VARIANT_IDS)
def test_each_backend_matches_the_float64_reference(rng, restore_backend, restore_num_threads, backend, kind,
                                                    options, dtype):
    lstm_ext.set_gemm_backend(backend)
    lstm_ext.set_num_threads(2)
    run = forward_backward(kind, dtype, rng, **options)
    layer, got = run["layer"], run["got"]
    x, h0, c0, dy, lengths = run["inputs"]
    extra = dict(options)
    y, h_n, c_n, tape = reference_layers.stack_forward(kind, layer.state_dict(), x, h0, c0 if kind == "lstm" else None,
                                                       num_layers=2, lengths=lengths, **extra)
    dx, dh0, dc0, grads = reference_layers.stack_backward(tape, dy, None, None)
    want: Dict[str, object] = {"y": y, "h_n": h_n, "dx": dx, "dh0": dh0, **grads}
    if kind == "lstm":
        want.update(c_n=c_n, dc0=dc0)
    rtol, atol = (1e-10, 1e-11) if dtype == np.float64 else (1e-3, 1e-4)
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="this build has Eigen only")
@pytest.mark.parametrize(("kind", "options"), VARIANTS, ids=VARIANT_IDS)
def test_backends_agree_to_float_rounding(rng, restore_backend, kind, options):
    results: List[Dict[str, np.ndarray]] = []
    for backend in BACKENDS:
        lstm_ext.set_gemm_backend(backend)
        results.append(forward_backward(kind, np.float32, np.random.default_rng(5), **options)["got"])
    for other in results[1:]:
        for name in results[0]:
            np.testing.assert_allclose(other[name], results[0][name], rtol=1e-4, atol=2e-5, err_msg=name)


def test_the_default_backend_is_native_and_eigen_is_always_there(restore_backend):
    assert BACKENDS[0] == "native" and BACKENDS[-1] == "eigen"
    assert restore_backend == BACKENDS[0]
    for name in BACKENDS:
        lstm_ext.set_gemm_backend(name)
        assert lstm_ext.get_gemm_backend() == name


def test_an_unknown_backend_is_a_clear_error(restore_backend):
    with pytest.raises(ValueError, match="name: expected 'native', 'openblas' or 'eigen', got 'mkl'"):
        lstm_ext.set_gemm_backend("mkl")
    with pytest.raises(TypeError, match="name: expected 'native', 'openblas' or 'eigen', got int"):
        lstm_ext.set_gemm_backend(1)  # type: ignore[arg-type]
    assert lstm_ext.get_gemm_backend() == restore_backend
