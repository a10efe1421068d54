# SPDX-License-Identifier: MIT
"""lstm_ext.LSTM forward: outputs and final states against the float64 reference, in every layout."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import layout_inputs, SHAPE_IDS, SHAPES, assert_close, make_lstm_inputs, reference_lstm, tol

LAYOUTS = ["time_major", "batch_first", "unbatched"]


def make_layer(shape, layout="time_major", bias=True, dtype=np.float64, seed=0):
    _, _, inp, hidden = shape
    return lstm_ext.LSTM(inp, hidden, bias=bias, batch_first=layout == "batch_first", dtype=dtype, seed=seed)




@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_forward_matches_the_reference(rng, shape, layout, with_hx, bias):
    layer = make_layer(shape, layout, bias)
    x, hx, _, _ = layout_inputs(rng, shape, layout, with_hx)
    y, (h_n, c_n) = layer(x, hx)
    expected = reference_lstm(layer.state_dict(), x, hx, batch_first=layout == "batch_first")
    assert_close(y, expected["y"], np.float64, "y")
    assert_close(h_n, expected["h_n"], np.float64, "h_n")
    assert_close(c_n, expected["c_n"], np.float64, "c_n")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_outputs_have_torch_shapes_and_the_layer_dtype(rng, layout, dtype):
    steps, batch, _inp, hidden = shape = (5, 3, 4, 7)
    layer = make_layer(shape, layout, dtype=dtype)
    x, hx, _, _ = layout_inputs(rng, shape, layout, dtype=dtype)
    y, (h_n, c_n) = layer(x, hx)
    expected_y = {"time_major": (steps, batch, hidden), "batch_first": (batch, steps, hidden)}
    expected_state = (1, hidden) if layout == "unbatched" else (1, batch, hidden)
    assert y.shape == expected_y.get(layout, (steps, hidden))
    assert h_n.shape == c_n.shape == expected_state
    for out in (y, h_n, c_n):
        assert isinstance(out, np.ndarray) and out.dtype == dtype


def test_final_hidden_state_is_the_last_output_step(rng):
    layer = make_layer((6, 3, 4, 5))
    x, hx, _, _ = layout_inputs(rng, (6, 3, 4, 5), "time_major")
    y, (h_n, _) = layer(x, hx)
    np.testing.assert_array_equal(h_n[0], y[-1])


def test_batch_first_equals_time_major_on_transposed_input(rng):
    shape = (7, 3, 4, 5)
    time_major = make_layer(shape, "time_major")
    batch_first = make_layer(shape, "batch_first")
    x, hx, _, _ = layout_inputs(rng, shape, "time_major")
    y, (h_n, c_n) = time_major(x, hx)
    y_bf, (h_n_bf, c_n_bf) = batch_first(np.ascontiguousarray(x.swapaxes(0, 1)), hx)
    assert_close(y_bf, y.swapaxes(0, 1), np.float64, "y")
    assert_close(h_n_bf, h_n, np.float64, "h_n")
    assert_close(c_n_bf, c_n, np.float64, "c_n")


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_unbatched_input_equals_a_batch_of_one(rng, batch_first):
    layer = lstm_ext.LSTM(3, 4, batch_first=batch_first, dtype=np.float64, seed=1)
    x = rng.standard_normal((6, 3))
    h0, c0 = rng.standard_normal((1, 4)), rng.standard_normal((1, 4))
    y, (h_n, c_n) = layer(x, (h0, c0))
    x_batched = x[None] if batch_first else x[:, None]
    y_b, (h_n_b, c_n_b) = layer(x_batched, (h0[:, None], c0[:, None]))
    assert_close(y, y_b[0] if batch_first else y_b[:, 0], np.float64, "y")
    assert_close(h_n, h_n_b[:, 0], np.float64, "h_n")
    assert_close(c_n, c_n_b[:, 0], np.float64, "c_n")


def test_missing_hx_equals_zero_initial_states(rng):
    layer = make_layer((5, 3, 4, 7))
    x, _, _, _ = layout_inputs(rng, (5, 3, 4, 7), "time_major")
    zeros = np.zeros((1, 3, 7))
    y, (h_n, c_n) = layer(x)
    y0, (h_n0, c_n0) = layer(x, (zeros, zeros.copy()))
    assert_close(y, y0, np.float64, "y")
    assert_close(h_n, h_n0, np.float64, "h_n")
    assert_close(c_n, c_n0, np.float64, "c_n")


def test_batch_rows_are_independent(rng):
    layer = make_layer((5, 4, 3, 6))
    x, hx, _, _ = layout_inputs(rng, (5, 4, 3, 6), "time_major")
    y, (h_n, c_n) = layer(x, hx)
    for n in range(4):
        y_n, (h_n_n, c_n_n) = layer(
            x[:, n : n + 1].copy(), (hx[0][:, n : n + 1].copy(), hx[1][:, n : n + 1].copy())
        )
        assert_close(y_n[:, 0], y[:, n], np.float64, f"y row {n}")
        assert_close(h_n_n[:, 0], h_n[:, n], np.float64, f"h_n row {n}")
        assert_close(c_n_n[:, 0], c_n[:, n], np.float64, f"c_n row {n}")


def test_a_sequence_split_in_two_continues_from_the_final_states(rng):
    layer = make_layer((8, 2, 3, 5))
    x, hx, _, _ = layout_inputs(rng, (8, 2, 3, 5), "time_major")
    y, (h_n, c_n) = layer(x, hx)
    y1, hx1 = layer(x[:3].copy(), hx)
    y2, (h_n2, c_n2) = layer(x[3:].copy(), hx1)
    assert_close(np.concatenate([y1, y2]), y, np.float64, "y")
    assert_close(h_n2, h_n, np.float64, "h_n")
    assert_close(c_n2, c_n, np.float64, "c_n")


def test_eval_forward_gives_the_same_outputs_as_training_forward(rng):
    layer = make_layer((5, 3, 4, 7))
    x, hx, _, _ = layout_inputs(rng, (5, 3, 4, 7), "time_major")
    y, (h_n, c_n) = layer(x, hx)
    assert layer.training
    layer.eval()
    assert not layer.training
    y_eval, (h_n_eval, c_n_eval) = layer(x, hx)
    assert_close(y_eval, y, np.float64, "y")
    assert_close(h_n_eval, h_n, np.float64, "h_n")
    assert_close(c_n_eval, c_n, np.float64, "c_n")


def test_forward_does_not_modify_its_layout_inputs(rng):
    layer = make_layer((5, 3, 4, 7))
    x, hx, _, _ = layout_inputs(rng, (5, 3, 4, 7), "time_major")
    saved = [a.copy() for a in (x, *hx)]
    weights = layer.state_dict()
    layer(x, hx)
    for before, after in zip(saved, (x, *hx)):
        np.testing.assert_array_equal(after, before)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, weights[name], err_msg=name)


def test_outputs_are_new_arrays_not_views_of_layout_inputs(rng):
    layer = make_layer((3, 2, 7, 7))
    x, hx, _, _ = layout_inputs(rng, (3, 2, 7, 7), "time_major")
    y, (h_n, c_n) = layer(x, hx)
    for out in (y, h_n, c_n):
        for arg in (x, *hx, *layer.parameters()):
            assert not np.shares_memory(out, arg)


def test_python_lists_are_converted_to_the_layer_dtype(rng):
    layer = make_layer((4, 2, 3, 5), dtype=np.float32)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    y, (h_n, c_n) = layer(x.tolist())
    y_ref, (h_n_ref, c_n_ref) = layer(x)
    assert y.dtype == np.float32
    assert_close(y, y_ref, np.float32, "y")
    assert_close(h_n, h_n_ref, np.float32, "h_n")
    assert_close(c_n, c_n_ref, np.float32, "c_n")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_float32_forward_is_close_to_float64(rng, shape, layout):
    layer32 = make_layer(shape, layout, dtype=np.float32)
    layer64 = make_layer(shape, layout, dtype=np.float64)
    layer64.load_state_dict(layer32.state_dict())
    x, hx, _, _ = layout_inputs(rng, shape, layout, dtype=np.float32)
    y, (h_n, c_n) = layer32(x, hx)
    y64, (h_n64, c_n64) = layer64(x.astype(np.float64), tuple(a.astype(np.float64) for a in hx))
    assert_close(y, y64, np.float32, "y")
    assert_close(h_n, h_n64, np.float32, "h_n")
    assert_close(c_n, c_n64, np.float32, "c_n")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_gives_the_same_weights_and_outputs(rng, dtype):
    a = lstm_ext.LSTM(4, 6, dtype=dtype, seed=123)
    b = lstm_ext.LSTM(4, 6, dtype=dtype, seed=123)
    for (name_a, value_a), (name_b, value_b) in zip(a.named_parameters(), b.named_parameters()):
        assert name_a == name_b
        np.testing.assert_array_equal(value_a, value_b, err_msg=name_a)
    x = rng.standard_normal((3, 2, 4)).astype(dtype)
    assert_close(a(x)[0], b(x)[0], dtype, "y")


def test_different_seeds_give_different_weights():
    a = lstm_ext.LSTM(4, 6, dtype=np.float64, seed=1)
    b = lstm_ext.LSTM(4, 6, dtype=np.float64, seed=2)
    assert not np.array_equal(a.weight_ih_l0, b.weight_ih_l0)
    assert not np.array_equal(a.weight_hh_l0, b.weight_hh_l0)


def test_default_dtype_is_float32():
    layer = lstm_ext.LSTM(3, 4)
    assert all(p.dtype == np.float32 for p in layer.parameters())
    y, _ = layer(np.zeros((2, 1, 3), dtype=np.float32))
    assert y.dtype == np.float32


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_inf_in_the_input_propagate_without_error(rng, value):
    layer = make_layer((4, 2, 3, 5))
    x = rng.standard_normal((4, 2, 3))
    x[1, 0, 2] = value
    y, (_h_n, c_n) = layer(x)
    expected = reference_lstm(layer.state_dict(), x)
    # Row 0 from step 1 on carries the value (NaN, or saturated gates for +-inf); row 1 is untouched.
    np.testing.assert_allclose(y, expected["y"], equal_nan=True, **tol(np.float64))
    np.testing.assert_allclose(c_n, expected["c_n"], equal_nan=True, **tol(np.float64))
    assert np.isfinite(y[:, 1]).all()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected["y"]))
