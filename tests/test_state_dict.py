# SPDX-License-Identifier: MIT
"""Parameters under torch's names: state_dict keys and shapes, strict loading, initialisation."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import DTYPES, assert_close

LSTM_KEYS = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
CELL_KEYS = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def both_kinds(inp=3, hidden=5, **kwargs):
    return [lstm_ext.LSTM(inp, hidden, **kwargs), lstm_ext.LSTMCell(inp, hidden, **kwargs)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_state_dict_keys_shapes_and_dtype_are_torchs(dtype, bias):
    inp, hidden = 3, 5
    shapes = [(4 * hidden, inp), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)]
    n = 4 if bias else 2
    for module, keys in zip(both_kinds(inp, hidden, bias=bias, dtype=dtype), (LSTM_KEYS, CELL_KEYS)):
        state = module.state_dict()
        assert list(state) == keys[:n]
        assert [v.shape for v in state.values()] == shapes[:n]
        assert all(v.dtype == dtype for v in state.values())
        assert [name for name, _ in module.named_parameters()] == keys[:n]


@pytest.mark.torch
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_state_dict_keys_and_shapes_equal_torch_modules(bias):
    torch = pytest.importorskip("torch")
    pairs = [
        (lstm_ext.LSTM(3, 5, bias=bias), torch.nn.LSTM(3, 5, bias=bias)),
        (lstm_ext.LSTMCell(3, 5, bias=bias), torch.nn.LSTMCell(3, 5, bias=bias)),
    ]
    for ours, theirs in pairs:
        expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert {k: v.shape for k, v in ours.state_dict().items()} == expected
        assert list(ours.state_dict()) == list(expected)


@pytest.mark.torch
def test_torch_tensors_load_directly():
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(3, 5)
    layer = lstm_ext.LSTM(3, 5, dtype=np.float64)
    layer.load_state_dict(module.state_dict())
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(layer.state_dict()[name], value.numpy().astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_load_state_dict_round_trip_restores_outputs(rng, dtype):
    source = lstm_ext.LSTM(3, 5, dtype=dtype, seed=1)
    target = lstm_ext.LSTM(3, 5, dtype=dtype, seed=2)
    x = rng.standard_normal((4, 2, 3)).astype(dtype)
    assert not np.array_equal(source(x)[0], target(x)[0])
    target.load_state_dict(source.state_dict())
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value, err_msg=name)
    assert_close(target(x)[0], source(x)[0], dtype, "y")


def test_loading_changes_the_outputs(rng):
    layer = lstm_ext.LSTM(3, 5, dtype=np.float64, seed=1)
    x = rng.standard_normal((4, 2, 3))
    before = layer(x)[0]
    state = layer.state_dict()
    state["weight_hh_l0"] = state["weight_hh_l0"] * 2.0
    layer.load_state_dict(state)
    after = layer(x)[0]
    assert not np.allclose(after, before)
    layer.load_state_dict({k: np.zeros_like(v) for k, v in state.items()})
    # With all weights zero every gate is 1/2 and g = 0, so c and h stay exactly zero.
    np.testing.assert_array_equal(layer(x)[0], np.zeros((4, 2, 5)))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_load_state_dict_casts_any_float_dtype_to_the_layer_dtype(dtype):
    layer = lstm_ext.LSTM(3, 5, dtype=dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    state = {k: v.astype(other) for k, v in lstm_ext.LSTM(3, 5, dtype=other, seed=7).state_dict().items()}
    layer.load_state_dict(state)
    for name, value in layer.state_dict().items():
        assert value.dtype == dtype
        np.testing.assert_array_equal(value, state[name].astype(dtype), err_msg=name)
    for value in layer.parameters():
        assert value.dtype == dtype


def test_load_state_dict_copies_and_state_dict_returns_copies(rng):
    layer = lstm_ext.LSTM(3, 5, dtype=np.float64, seed=1)
    x = rng.standard_normal((4, 2, 3))
    state = layer.state_dict()
    layer.load_state_dict(state)
    y = layer(x)[0]
    state["weight_ih_l0"][...] = 0.0  # neither the loaded dict nor a later state_dict() are the live arrays
    layer.state_dict()["weight_hh_l0"][...] = 0.0
    assert_close(layer(x)[0], y, np.float64, "y")
    assert np.any(layer.weight_ih_l0 != 0) and np.any(layer.weight_hh_l0 != 0)


def test_parameters_are_the_live_arrays_in_state_dict_order(rng):
    layer = lstm_ext.LSTM(3, 5, dtype=np.float64, seed=1)
    x = rng.standard_normal((4, 2, 3))
    params = layer.parameters()
    assert len(params) == 4
    for param, (name, named), (key, value) in zip(
        params, layer.named_parameters(), layer.state_dict().items()
    ):
        assert name == key
        assert param is named
        assert param is getattr(layer, name)
        np.testing.assert_array_equal(param, value)
    before = layer(x)[0]
    for param in params:  # an optimizer step in place
        param *= 0.5
    after = layer(x)[0]
    assert not np.allclose(after, before)
    np.testing.assert_array_equal(layer.state_dict()["weight_ih_l0"], params[0])


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_missing_key_is_a_key_error(kind):
    module = getattr(lstm_ext, kind)(3, 5, dtype=np.float64)
    state = module.state_dict()
    missing = next(iter(state))
    del state[missing]
    with pytest.raises(KeyError, match=missing):
        module.load_state_dict(state)


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_unexpected_key_is_a_key_error(kind):
    module = getattr(lstm_ext, kind)(3, 5, dtype=np.float64)
    state = module.state_dict()
    state["weight_ih_l1"] = np.zeros((20, 5))
    with pytest.raises(KeyError, match="weight_ih_l1"):
        module.load_state_dict(state)


def test_bias_keys_are_unexpected_for_a_layer_without_bias():
    state = lstm_ext.LSTM(3, 5, bias=True).state_dict()
    with pytest.raises(KeyError, match="bias_ih_l0"):
        lstm_ext.LSTM(3, 5, bias=False).load_state_dict(state)


@pytest.mark.parametrize("key", LSTM_KEYS)
def test_wrong_shape_is_a_value_error_naming_the_key(key):
    layer = lstm_ext.LSTM(3, 5, dtype=np.float64)
    state = layer.state_dict()
    good_shape = state[key].shape
    state[key] = np.zeros((good_shape[0] + 1,) + good_shape[1:])
    with pytest.raises(ValueError, match=key) as excinfo:
        layer.load_state_dict(state)
    message = str(excinfo.value)
    assert str(good_shape) in message and str(state[key].shape) in message


def test_failed_load_changes_nothing(rng):
    layer = lstm_ext.LSTM(3, 5, dtype=np.float64, seed=1)
    before = layer.state_dict()
    bad = {k: np.full_like(v, 0.25) for k, v in before.items()}
    bad["bias_hh_l0"] = np.zeros(3)  # the last key is the bad one: the others must not have been loaded
    with pytest.raises(ValueError, match="bias_hh_l0"):
        layer.load_state_dict(bad)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("hidden", [1, 4, 25])
def test_init_is_uniform_within_one_over_sqrt_hidden(hidden):
    bound = 1.0 / np.sqrt(hidden)
    for module in both_kinds(7, hidden, dtype=np.float64, seed=0):
        values = np.concatenate([p.ravel() for p in module.parameters()])
        assert np.all(np.abs(values) <= bound)
        # Spread over the whole range, not a narrower one (40 samples or more here; the seed is fixed).
        assert values.min() < -0.8 * bound and values.max() > 0.8 * bound
        assert abs(values.mean()) < 0.2 * bound


def test_grads_have_the_state_dict_keys_and_shapes():
    for module in both_kinds(3, 5, dtype=np.float64):
        grads = module.grads
        assert list(grads) == list(module.state_dict())
        for name, value in module.state_dict().items():
            assert grads[name].shape == value.shape and grads[name].dtype == value.dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_parameters_and_grads_start_on_a_cache_line_after_init_and_load(rng, dtype):
    layers = both_kinds(7, 9, dtype=dtype) + [lstm_ext.GRU(7, 9, dtype=dtype), lstm_ext.GRUCell(7, 9, dtype=dtype)]
    for layer in layers:
        arrays = list(layer.state_dict().items())
        for name, array in layer.named_parameters():
            assert array.ctypes.data % 64 == 0 and array.flags.c_contiguous and array.flags.writeable, name
        for name, array in layer.grads.items():
            assert array.ctypes.data % 64 == 0 and array.flags.c_contiguous, name
        # Loaded from arrays NumPy placed 16 bytes past a line, the layer's copies are aligned again and equal.
        loaded = {}
        for name, array in arrays:
            raw = np.empty(array.size + 16, dtype)
            shifted = raw[(-raw.ctypes.data % 64) // raw.itemsize + 16 // raw.itemsize:][: array.size]
            shifted[...] = rng.standard_normal(array.size)
            loaded[name] = shifted.reshape(array.shape)
            assert loaded[name].ctypes.data % 64 == 16
        layer.load_state_dict(loaded)
        for name, array in layer.named_parameters():
            assert array.ctypes.data % 64 == 0, name
            np.testing.assert_array_equal(array, loaded[name])
            assert not np.shares_memory(array, loaded[name])
