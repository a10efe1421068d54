# SPDX-License-Identifier: MIT
"""The memory cache (``lstm_ext.set_memory_cache_limit`` and friends): large outputs and workspaces come from
blocks kept between calls. What must hold: results never depend on it, an array in use is never handed out
again, the limit is honoured and its setter checks its argument."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import lstm_ext

T, N, I, H = 12, 48, 40, 96  # the gates of all steps: 12*48*384*4 bytes = 885 KB, a cached block


@pytest.fixture(autouse=True)
def restore_limit():
    saved = lstm_ext.get_memory_cache_limit()
    yield
    lstm_ext.set_memory_cache_limit(saved)


def make_layer(cls=lstm_ext.LSTM, **kw):
    layer = cls(I, H, seed=3, **kw)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    dy = rng.standard_normal((T, N, layer.out_size * (2 if layer.bidirectional else 1))).astype(np.float32)
    return layer, x, dy


def train_step(layer, x, dy):
    y, _ = layer(x, training=True)
    dx, _ = layer.backward(dy)
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}


def test_default_limit_is_at_most_one_gib():
    assert 0 < lstm_ext.get_memory_cache_limit() <= 2**30


def test_limit_round_trips():
    lstm_ext.set_memory_cache_limit(12345678)
    assert lstm_ext.get_memory_cache_limit() == 12345678


@pytest.mark.parametrize("bad", [1.5, "1", None, True])
def test_limit_of_the_wrong_type_names_the_argument(bad):
    with pytest.raises(TypeError, match=r"nbytes: expected an int, got"):
        lstm_ext.set_memory_cache_limit(bad)


def test_negative_limit_names_the_argument_and_value():
    with pytest.raises(ValueError, match=r"nbytes: expected an int >= 0, got -1"):
        lstm_ext.set_memory_cache_limit(-1)


def test_a_training_step_leaves_blocks_in_the_cache_and_emptying_returns_them():
    lstm_ext.set_memory_cache_limit(256 << 20)
    lstm_ext.empty_memory_cache()
    layer, x, dy = make_layer()
    train_step(layer, x, dy)
    layer(x, training=False)  # drops the tape: its blocks go back
    gc.collect()
    assert lstm_ext.memory_cache_bytes() > 0
    lstm_ext.empty_memory_cache()
    assert lstm_ext.memory_cache_bytes() == 0


def test_a_zero_limit_keeps_nothing():
    lstm_ext.set_memory_cache_limit(0)
    layer, x, dy = make_layer()
    train_step(layer, x, dy)
    layer(x, training=False)
    gc.collect()
    assert lstm_ext.memory_cache_bytes() == 0


def test_the_cache_never_holds_more_than_its_limit():
    lstm_ext.set_memory_cache_limit(1 << 20)
    layer, x, dy = make_layer()
    for _ in range(3):
        train_step(layer, x, dy)
        assert lstm_ext.memory_cache_bytes() <= 1 << 20


@pytest.mark.parametrize(
    "cls, kw",
    [(lstm_ext.LSTM, {}), (lstm_ext.LSTM, {"num_layers": 2, "bidirectional": True, "proj_size": 50}),
     (lstm_ext.GRU, {}), (lstm_ext.GRU, {"num_layers": 2})],
    ids=["lstm", "lstm_stacked_bidirectional_projected", "gru", "gru_stacked"],
)
def test_results_are_the_same_bits_with_and_without_the_cache(cls, kw):
    layer, x, dy = make_layer(cls, **kw)
    lstm_ext.set_memory_cache_limit(0)
    y0, dx0, g0 = train_step(layer, x, dy)
    inf0, _ = layer(x, training=False)
    lstm_ext.set_memory_cache_limit(256 << 20)
    for _ in range(2):  # the second round runs on the first round's blocks
        y1, dx1, g1 = train_step(layer, x, dy)
        inf1, _ = layer(x, training=False)
        np.testing.assert_array_equal(y1, y0)
        np.testing.assert_array_equal(dx1, dx0)
        np.testing.assert_array_equal(inf1, inf0)
        for k in g0:
            np.testing.assert_array_equal(g1[k], g0[k], err_msg=k)


def test_arrays_in_use_keep_their_values_through_later_calls_and_emptying():
    lstm_ext.set_memory_cache_limit(256 << 20)
    layer, x, dy = make_layer()
    _, dx_first, _ = train_step(layer, x, dy)
    y_first, _ = layer(x, training=False)
    kept = (dx_first.copy(), y_first.copy())
    rng = np.random.default_rng(9)
    for _ in range(4):  # other values through blocks of the same sizes
        train_step(layer, rng.standard_normal(x.shape).astype(np.float32), dy)
        layer(rng.standard_normal(x.shape).astype(np.float32), training=False)
    lstm_ext.empty_memory_cache()
    np.testing.assert_array_equal(dx_first, kept[0])
    np.testing.assert_array_equal(y_first, kept[1])


def test_large_outputs_are_writeable_aligned_c_contiguous_arrays():
    layer, x, dy = make_layer()
    y, dx, _ = train_step(layer, x, dy)
    y_inf, (h_n, c_n) = layer(x, training=False)
    for a in (dx, y_inf):  # (the training y is a NumPy copy of the tape's, the gradients are copied in place)
        assert a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable
        assert a.ctypes.data % 64 == 0
    assert y_inf.shape == (T, N, H) and dx.shape == (T, N, I)
    y_inf[...] = 0  # ours to change
    assert not y_inf.any()


def test_changing_x_or_y_after_a_training_forward_does_not_change_its_backward():
    # x and the returned y are large enough here for the tape's copies to be blocks of the cache.
    layer, x, dy = make_layer()
    layer(x.copy(), training=True)
    expected_dx, _ = layer.backward(dy)
    expected = {k: v.copy() for k, v in layer.grads.items()}
    y, _ = layer(x, training=True)
    x[...] = np.nan
    y[...] = np.nan
    dx, _ = layer.backward(dy)
    np.testing.assert_array_equal(dx, expected_dx)
    for name, value in layer.grads.items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
