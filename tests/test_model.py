# SPDX-License-Identifier: MIT
"""Model, Sequential, LastStep, save/load: torch's dotted names, gradients that accumulate as torch's,
modes that reach every sub-layer, weights that round-trip through .npz and load into torch."""

from __future__ import annotations

import lstm_ext
import numpy as np
import pytest
from conftest import FD_TOL
from gradcheck import numerical_grad


def _classifier(dtype=np.float64) -> lstm_ext.Sequential:
    return lstm_ext.Sequential(
        lstm_ext.LSTM(3, 5, batch_first=True, dtype=dtype, seed=0),
        lstm_ext.LastStep(batch_first=True),
        lstm_ext.Linear(5, 2, dtype=dtype, seed=1),
    )


class Tagger(lstm_ext.Model):
    """A user-written model: a bidirectional LSTM and a head at every step, with named attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = lstm_ext.LSTM(3, 4, bidirectional=True, dtype=np.float64, seed=2)
        self.head = lstm_ext.Linear(8, 2, dtype=np.float64, seed=3)

    def forward(self, x):
        y, _ = self.encoder(x)
        return self.head(y)

    def backward(self, grad):
        return self.encoder.backward(self.head.backward(grad, accumulate=True), accumulate=True)[0]


def test_sequential_names_parameters_as_torch():
    names = [name for name, _ in _classifier().named_parameters()]
    assert names == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0", "2.weight", "2.bias"]
    assert list(_classifier().grads) == names and list(_classifier().state_dict()) == names


def test_a_model_subclass_names_parameters_by_attribute():
    names = [name for name, _ in Tagger().named_parameters()]
    assert names[:2] == ["encoder.weight_ih_l0", "encoder.weight_hh_l0"]
    assert "encoder.weight_hh_l0_reverse" in names and names[-2:] == ["head.weight", "head.bias"]
    assert [n for n, _ in Tagger().named_children()] == ["encoder", "head"]


def test_parameters_are_the_live_arrays_of_the_sub_layers():
    model = _classifier()
    assert model.parameters()[0] is model[0].weight_ih_l0
    assert model.grads["2.weight"] is model[2].grads["weight"]


def _gru_classifier() -> lstm_ext.Sequential:
    return lstm_ext.Sequential(
        lstm_ext.GRU(3, 4, num_layers=2, batch_first=True, dtype=np.float64, seed=4),
        lstm_ext.LastStep(batch_first=True),
        lstm_ext.Linear(4, 2, dtype=np.float64, seed=5),
    )


@pytest.mark.parametrize("make", [_classifier, _gru_classifier, Tagger], ids=["sequential", "gru", "model"])
def test_gradients_match_finite_differences(rng, make):
    model = make()
    x = rng.standard_normal((2, 4, 3))
    out = model(x)
    dout = rng.standard_normal(out.shape)
    model.zero_grad()
    dx = model.backward(dout)

    def f(_):
        return float(np.vdot(model(x), dout))

    np.testing.assert_allclose(dx, numerical_grad(lambda x_: np.vdot(model(x_), dout), x), **FD_TOL)
    for name, param in model.named_parameters():
        np.testing.assert_allclose(model.grads[name], numerical_grad(f, param), **FD_TOL, err_msg=name)


def test_backward_accumulates_and_zero_grad_clears(rng):
    model = _classifier()
    x = rng.standard_normal((2, 4, 3))
    dout = rng.standard_normal((2, 2))
    model(x)
    model.backward(dout)
    once = {k: v.copy() for k, v in model.grads.items()}
    model(x)
    model.backward(dout)
    for name, grad in model.grads.items():
        np.testing.assert_allclose(grad, 2 * once[name], rtol=1e-12, err_msg=name)
    model.zero_grad()
    assert not any(g.any() for g in model.grads.values())


def test_train_and_eval_reach_every_sub_layer(rng):
    model = _classifier()
    assert model.eval() is model and not model.training
    assert not model[0].training and not model[2].training
    model(rng.standard_normal((2, 4, 3)))
    with pytest.raises(RuntimeError, match="backward: no training forward"):
        model.backward(np.zeros((2, 2)))
    model.train()
    assert model[0].training and model[2].training


def test_save_and_load_round_trip_through_npz(tmp_path, rng):
    model, other = _classifier(), _classifier()
    for p in other.parameters():
        p[...] = 0
    path = tmp_path / "weights.npz"
    model.save(path)
    other.load(path)
    x = rng.standard_normal((2, 4, 3))
    np.testing.assert_array_equal(other(x), model(x))
    with np.load(path) as archive:
        assert archive.files == list(model.state_dict())
    lstm_ext.save(model[2], tmp_path / "head")  # a single layer too; NumPy appends .npz
    head = lstm_ext.Linear(5, 2, dtype=np.float64)
    lstm_ext.load(head, tmp_path / "head.npz")
    np.testing.assert_array_equal(head.weight, model[2].weight)


def test_load_state_dict_rejects_wrong_keys_and_shapes_without_changing_anything():
    model = _classifier()
    before = model.state_dict()
    bad = dict(before, **{"2.weight": np.zeros((3, 5))})
    with pytest.raises(ValueError, match=r"2.weight: expected shape \(2, 5\), got \(3, 5\)"):
        model.load_state_dict(bad)
    with pytest.raises(KeyError, match=r"missing keys \['2.bias'\], unexpected keys \['2.b'\]"):
        model.load_state_dict({**{k: v for k, v in before.items() if k != "2.bias"}, "2.b": np.zeros(2)})
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.torch
def test_state_dict_loads_into_the_same_model_written_with_torch():
    torch = pytest.importorskip("torch")

    class TorchTagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.LSTM(3, 4, bidirectional=True, dtype=torch.float64)
            self.head = torch.nn.Linear(8, 2, dtype=torch.float64)

    theirs = TorchTagger()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in Tagger().state_dict().items()}, strict=True)
    ours = Tagger()
    ours.load_state_dict(theirs.state_dict())
    np.testing.assert_array_equal(ours.head.weight, theirs.head.weight.detach().numpy())


def test_last_step_picks_the_last_step_in_either_layout(rng):
    y = rng.standard_normal((4, 2, 3))
    np.testing.assert_array_equal(lstm_ext.LastStep()(y), y[-1])
    np.testing.assert_array_equal(lstm_ext.LastStep(batch_first=True)(y), y[:, -1])
    step = lstm_ext.LastStep()
    step(y[:, 0])  # unbatched (T, F)
    dy = step.backward(np.ones(3))
    assert dy.shape == (4, 3) and dy[-1].all() and not dy[:-1].any()


def test_sequential_applies_a_head_at_every_step_without_last_step(rng):
    model = lstm_ext.Sequential(
        lstm_ext.LSTM(3, 5, dtype=np.float64), lstm_ext.Linear(5, 1, dtype=np.float64)
    )
    assert model(rng.standard_normal((6, 2, 3))).shape == (6, 2, 1)
    assert len(model) == 2 and isinstance(model[1], lstm_ext.Linear) and list(model)[0] is model[0]


def test_bad_layers_raise_clear_errors():
    with pytest.raises(TypeError, match=r"layers\[1\]: LSTMCell runs one step and does not chain"):
        lstm_ext.Sequential(lstm_ext.LSTM(2, 2), lstm_ext.LSTMCell(2, 2))
    with pytest.raises(TypeError, match=r"layers\[0\]: expected a layer or model, got ufunc"):
        lstm_ext.Sequential(np.tanh)
    with pytest.raises(NotImplementedError, match="subclasses of Model implement forward"):
        lstm_ext.Model()(np.zeros(2))
    with pytest.raises(
        ValueError, match=r"y: expected 3 dimensions \(T, N, F\) or 2 \(T, F\), got shape \(3,\)"
    ):
        lstm_ext.LastStep()(np.zeros(3))

    class Forgetful(lstm_ext.Model):
        def __init__(self) -> None:
            self.head = lstm_ext.Linear(2, 2)

    with pytest.raises(
        RuntimeError, match=r"Forgetful: call super\(\).__init__\(\) before assigning attributes"
    ):
        Forgetful()
