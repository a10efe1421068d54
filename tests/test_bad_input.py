# SPDX-License-Identifier: MIT
"""Every error of the API contract: the right exception, and a message that names the argument, what it got
and what was expected. Bad input is never a crash."""

from __future__ import annotations

import re

import lstm_ext
import numpy as np
import pytest
from conftest import assert_close


def shape_error(argument: str, expected: str, got: tuple) -> str:
    """Regex for ``"<argument>...expected...<expected>...got...<got>"``."""
    return re.escape(argument) + r".*expected.*" + re.escape(expected) + r".*got.*" + re.escape(str(got))


def layer64(inp=4, hidden=7, **kwargs):
    return lstm_ext.LSTM(inp, hidden, dtype=np.float64, seed=0, **kwargs)


def trained(layer, x, hx=None):
    layer(x, hx)
    return layer


# ---- x -----------------------------------------------------------------------------------------------------


def test_wrong_input_size_names_argument_and_shapes():
    with pytest.raises(ValueError, match=shape_error("x", "(T, N, 4)", (5, 2, 3))) as excinfo:
        layer64()(np.zeros((5, 2, 3)))
    assert "input_size=4" in str(excinfo.value)


def test_wrong_input_size_with_batch_first_names_the_batch_first_layout():
    with pytest.raises(ValueError, match=shape_error("x", "(N, T, 4)", (2, 5, 3))):
        layer64(batch_first=True)(np.zeros((2, 5, 3)))


def test_wrong_input_size_of_an_unbatched_sequence_names_argument_and_shapes():
    with pytest.raises(ValueError, match=shape_error("x", "(T, 4)", (5, 3))):
        layer64()(np.zeros((5, 3)))


@pytest.mark.parametrize("shape", [(), (4,), (1, 5, 2, 4)], ids=["0d", "1d", "4d"])
def test_wrong_rank_of_x_names_argument_and_shape(shape):
    with pytest.raises(ValueError, match=r"x.*expected.*got.*" + re.escape(str(shape))):
        layer64()(np.zeros(shape))


def test_empty_sequence_is_a_value_error():
    with pytest.raises(ValueError, match=r"x.*T=0"):
        layer64()(np.zeros((0, 2, 4)))
    with pytest.raises(ValueError, match=r"x.*T=0"):
        layer64()(np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"x.*T=0"):
        layer64(batch_first=True)(np.zeros((2, 0, 4)))


def test_empty_batch_is_a_value_error():
    with pytest.raises(ValueError, match=r"x.*N=0"):
        layer64()(np.zeros((5, 0, 4)))
    with pytest.raises(ValueError, match=r"x.*N=0"):
        layer64(batch_first=True)(np.zeros((0, 5, 4)))


def test_x_of_another_float_dtype_is_a_type_error_naming_both_dtypes():
    with pytest.raises(TypeError, match=r"x") as excinfo:
        lstm_ext.LSTM(4, 7, dtype=np.float32)(np.zeros((5, 2, 4), dtype=np.float64))
    message = str(excinfo.value)
    assert "float32" in message and "float64" in message
    with pytest.raises(TypeError, match=r"x") as excinfo:
        layer64()(np.zeros((5, 2, 4), dtype=np.float32))
    message = str(excinfo.value)
    assert "float32" in message and "float64" in message


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128, np.float16])
def test_x_of_a_non_float_or_unsupported_dtype_is_a_type_error(dtype):
    with pytest.raises(TypeError, match=r"x.*" + np.dtype(dtype).name):
        layer64()(np.zeros((5, 2, 4), dtype=dtype))


def test_x_that_cannot_be_converted_is_an_error_not_a_crash():
    with pytest.raises((TypeError, ValueError), match=r"x"):
        layer64()([["a", "b", "c", "d"]])
    with pytest.raises((TypeError, ValueError), match=r"x"):
        layer64()(object())


# ---- hx ----------------------------------------------------------------------------------------------------


def test_wrong_batch_size_of_h0_names_argument_and_shapes():
    x = np.zeros((5, 2, 4))
    h0, c0 = np.zeros((1, 3, 7)), np.zeros((1, 2, 7))
    with pytest.raises(ValueError, match=shape_error("h0", "(1, 2, 7)", (1, 3, 7))):
        layer64()(x, (h0, c0))


def test_wrong_hidden_size_of_c0_names_argument_and_shapes():
    x = np.zeros((5, 2, 4))
    h0, c0 = np.zeros((1, 2, 7)), np.zeros((1, 2, 6))
    with pytest.raises(ValueError, match=shape_error("c0", "(1, 2, 7)", (1, 2, 6))):
        layer64()(x, (h0, c0))


def test_wrong_rank_of_hx_names_argument_and_shapes():
    x = np.zeros((5, 2, 4))
    with pytest.raises(ValueError, match=shape_error("h0", "(1, 2, 7)", (2, 7))):
        layer64()(x, (np.zeros((2, 7)), np.zeros((2, 7))))


def test_batched_hx_with_an_unbatched_x_names_argument_and_shapes():
    x = np.zeros((5, 4))
    with pytest.raises(ValueError, match=shape_error("h0", "(1, 7)", (1, 1, 7))):
        layer64()(x, (np.zeros((1, 1, 7)), np.zeros((1, 1, 7))))


def test_hx_states_use_the_batch_of_x_also_with_batch_first():
    x = np.zeros((2, 5, 4))  # N=2, T=5
    with pytest.raises(ValueError, match=shape_error("h0", "(1, 2, 7)", (1, 5, 7))):
        layer64(batch_first=True)(x, (np.zeros((1, 5, 7)), np.zeros((1, 5, 7))))


def test_hx_of_another_dtype_is_a_type_error_naming_it():
    x = np.zeros((5, 2, 4))
    with pytest.raises(TypeError, match=r"h0") as excinfo:
        layer64()(x, (np.zeros((1, 2, 7), dtype=np.float32), np.zeros((1, 2, 7))))
    assert "float32" in str(excinfo.value) and "float64" in str(excinfo.value)


def test_hx_that_is_not_a_pair_is_an_error_naming_it():
    x = np.zeros((5, 2, 4))
    with pytest.raises((TypeError, ValueError), match=r"hx"):
        layer64()(x, np.zeros((1, 2, 7)))
    with pytest.raises((TypeError, ValueError), match=r"hx"):
        layer64()(x, (np.zeros((1, 2, 7)),))


# ---- dy, dhx -----------------------------------------------------------------------------------------------


def test_wrong_shape_of_dy_names_argument_and_shapes():
    layer = trained(layer64(), np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match=shape_error("dy", "(5, 2, 7)", (5, 2, 6))):
        layer.backward(np.zeros((5, 2, 6)))
    with pytest.raises(ValueError, match=shape_error("dy", "(5, 2, 7)", (4, 2, 7))):
        layer.backward(np.zeros((4, 2, 7)))
    with pytest.raises(ValueError, match=shape_error("dy", "(5, 2, 7)", (5, 14))):
        layer.backward(np.zeros((5, 14)))


def test_dy_in_time_major_order_for_a_batch_first_layer_names_argument_and_shapes():
    layer = trained(layer64(batch_first=True), np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match=shape_error("dy", "(2, 5, 7)", (5, 2, 7))):
        layer.backward(np.zeros((5, 2, 7)))


def test_wrong_shape_of_dhx_names_argument_and_shapes():
    layer = trained(layer64(), np.zeros((5, 2, 4)))
    dy = np.zeros((5, 2, 7))
    with pytest.raises(ValueError, match=shape_error("dh_n", "(1, 2, 7)", (1, 2, 6))):
        layer.backward(dy, (np.zeros((1, 2, 6)), None))
    with pytest.raises(ValueError, match=shape_error("dc_n", "(1, 2, 7)", (2, 7))):
        layer.backward(dy, (None, np.zeros((2, 7))))


def test_dy_of_another_dtype_is_a_type_error_naming_it():
    layer = trained(layer64(), np.zeros((5, 2, 4)))
    with pytest.raises(TypeError, match=r"dy") as excinfo:
        layer.backward(np.zeros((5, 2, 7), dtype=np.float32))
    assert "float32" in str(excinfo.value) and "float64" in str(excinfo.value)


def test_a_rejected_backward_leaves_the_forward_usable(rng):
    layer = layer64()
    x = rng.standard_normal((5, 2, 4))
    dy = rng.standard_normal((5, 2, 7))
    layer(x)
    expected, _ = layer.backward(dy)
    with pytest.raises(ValueError):
        layer.backward(np.zeros((5, 2, 6)))
    dx, _ = layer.backward(dy)
    assert_close(dx, expected, np.float64, "dx")


# ---- backward without a training forward -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_backward_before_any_forward_is_a_runtime_error(kind):
    module = getattr(lstm_ext, kind)(4, 7, dtype=np.float64)
    dy = np.zeros((5, 2, 7)) if kind == "LSTM" else np.zeros((2, 7))
    with pytest.raises(RuntimeError, match="backward"):
        module.backward(dy)


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_backward_after_an_eval_forward_is_a_runtime_error(kind):
    module = getattr(lstm_ext, kind)(4, 7, dtype=np.float64)
    x, dy = (
        (np.zeros((5, 2, 4)), np.zeros((5, 2, 7))) if kind == "LSTM" else (np.zeros((2, 4)), np.zeros((2, 7)))
    )
    module(x)  # a training forward first: the eval forward must drop its cache
    module.eval()
    module(x)
    with pytest.raises(RuntimeError, match="backward"):
        module.backward(dy)
    module.train()  # back in training mode there is still nothing to differentiate until the next forward
    with pytest.raises(RuntimeError, match="backward"):
        module.backward(dy)
    module(x)
    module.backward(dy)


NON_POSITIVE_SIZES = [
    (0, 4, "input_size"),
    (-2, 4, "input_size"),
    (4, 0, "hidden_size"),
    (4, -1, "hidden_size"),
]
NON_INTEGER_SIZES = [
    (4.0, 4, "input_size"),
    ("4", 4, "input_size"),
    (4, 2.5, "hidden_size"),
    (4, None, "hidden_size"),
]


# ---- constructors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
@pytest.mark.parametrize(("input_size", "hidden_size", "bad"), NON_POSITIVE_SIZES)
def test_non_positive_sizes_are_value_errors_naming_the_argument(kind, input_size, hidden_size, bad):
    with pytest.raises(ValueError, match=bad):
        getattr(lstm_ext, kind)(input_size, hidden_size)


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
@pytest.mark.parametrize(("input_size", "hidden_size", "bad"), NON_INTEGER_SIZES)
def test_non_integer_sizes_are_type_errors_naming_the_argument(kind, input_size, hidden_size, bad):
    with pytest.raises(TypeError, match=bad):
        getattr(lstm_ext, kind)(input_size, hidden_size)


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_numpy_integer_sizes_are_accepted(kind):
    module = getattr(lstm_ext, kind)(np.int64(3), np.int32(5))
    assert module.state_dict()[next(iter(module.state_dict()))].shape == (20, 3)


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.complex64, np.longdouble, "int8", object])
def test_unsupported_dtype_is_a_type_error(kind, dtype):
    if np.dtype(dtype) == np.float64:  # long double is double on some platforms
        pytest.skip("np.longdouble is float64 here")
    with pytest.raises(TypeError, match="dtype"):
        getattr(lstm_ext, kind)(3, 5, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32", np.dtype("float64")])
def test_float32_and_float64_are_accepted_in_any_spelling(dtype):
    layer = lstm_ext.LSTM(3, 5, dtype=dtype)
    assert all(p.dtype == np.dtype(dtype) for p in layer.parameters())


# ---- LSTMCell ----------------------------------------------------------------------------------------------


def cell64():
    return lstm_ext.LSTMCell(4, 7, dtype=np.float64, seed=0)


def test_cell_wrong_input_size_names_argument_and_shapes():
    with pytest.raises(ValueError, match=shape_error("x", "(N, 4)", (2, 3))):
        cell64()(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=shape_error("x", "(4,)", (3,))):
        cell64()(np.zeros(3))


def test_cell_wrong_rank_of_x_names_argument_and_shape():
    with pytest.raises(ValueError, match=r"x.*expected.*got.*" + re.escape("(1, 2, 4)")):
        cell64()(np.zeros((1, 2, 4)))


def test_cell_zero_dimensional_x_is_a_rank_error_not_a_vector_of_one():
    # torch.nn.LSTMCell rejects a 0-d input too ("Expected input to be 1D or 2D, got 0D").
    with pytest.raises(ValueError, match=r"x.*expected.*got.*\(\)"):
        lstm_ext.LSTMCell(1, 3, dtype=np.float64)(np.array(0.5))


def test_cell_empty_batch_is_a_value_error():
    with pytest.raises(ValueError, match=r"x.*N=0"):
        cell64()(np.zeros((0, 4)))


def test_cell_wrong_shape_of_hx_names_argument_and_shapes():
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match=shape_error("h0", "(2, 7)", (3, 7))):
        cell64()(x, (np.zeros((3, 7)), np.zeros((2, 7))))
    with pytest.raises(ValueError, match=shape_error("c0", "(7,)", (1, 7))):
        cell64()(np.zeros(4), (np.zeros(7), np.zeros((1, 7))))


def test_cell_wrong_shape_of_dh1_and_dc1_names_argument_and_shapes():
    cell = cell64()
    cell(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=shape_error("dh1", "(2, 7)", (2, 6))):
        cell.backward(np.zeros((2, 6)))
    with pytest.raises(ValueError, match=shape_error("dc1", "(2, 7)", (7,))):
        cell.backward(np.zeros((2, 7)), np.zeros(7))


def test_gru_cell_wrong_shape_or_dtype_of_hx_gets_the_general_paths_message():
    # A cell first hands ndarrays to the core as they are; what the core refuses is then checked again by the
    # general path, whose messages name the argument as the layer calls it.
    cell = lstm_ext.GRUCell(4, 7, dtype=np.float64, seed=0)
    with pytest.raises(ValueError, match=shape_error("hx", "(2, 7)", (3, 7))):
        cell(np.zeros((2, 4)), np.zeros((3, 7)))
    with pytest.raises(TypeError, match=r"hx") as excinfo:
        cell(np.zeros((2, 4)), np.zeros((2, 7), np.float16))
    assert "float16" in str(excinfo.value)


def test_cell_x_of_another_dtype_is_a_type_error():
    with pytest.raises(TypeError, match=r"x") as excinfo:
        lstm_ext.LSTMCell(4, 7, dtype=np.float32)(np.zeros((2, 4)))
    assert "float32" in str(excinfo.value) and "float64" in str(excinfo.value)


# ---- threads -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_below_one_is_a_value_error_and_changes_nothing(n):
    before = lstm_ext.get_num_threads()
    with pytest.raises(ValueError, match=str(n)):
        lstm_ext.set_num_threads(n)
    assert lstm_ext.get_num_threads() == before
