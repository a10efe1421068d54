# SPDX-License-Identifier: MIT
"""The main job's promise: training a model with lstm_ext gives PyTorch's loss curve, step by step.

The same model (LSTM -> Linear head, as ``Sequential`` in both libraries, so the state_dict keys are the same),
the same initial weights (lstm_ext's, loaded into torch), the same batches and optimizer settings, 50 steps in
float64. The two differ only in the order of float64 sums, ~1e-16 per operation: the losses agree to ~6e-16
relative over the 50 steps (measured), so 1e-12 leaves a factor 1000 of margin while any wrong formula (a
missed bias correction, another momentum rule, a wrong clip coefficient) moves the curve by 1e-3 or more
within a few steps.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Tuple

import lstm_ext
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

STEPS = 50
RTOL = 1e-12
I, H, T, N, CLASSES = 5, 12, 7, 6, 4


class _TakeOutput(torch.nn.Module):
    """torch's counterpart of a recurrent layer in lstm_ext.Sequential (y only), then LastStep if ``last``."""

    def __init__(self, last: bool) -> None:
        super().__init__()
        self.last = last

    def forward(self, out: Tuple[Any, Any]) -> Any:
        y = out[0]
        return y[:, -1] if self.last else y


def build(task: str, num_layers: int) -> Tuple[lstm_ext.Sequential, Any]:
    """The lstm_ext model and torch's twin with the same weights: LastStep + 4 logits for classification, a
    per-step scalar for regression."""
    lstm = lstm_ext.LSTM(I, H, num_layers, batch_first=True, dtype=np.float64, seed=1)
    if task == "classification":
        ours = lstm_ext.Sequential(
            lstm, lstm_ext.LastStep(batch_first=True), lstm_ext.Linear(H, CLASSES, dtype=np.float64, seed=2)
        )
        theirs = torch.nn.Sequential(
            torch.nn.LSTM(I, H, num_layers, batch_first=True), _TakeOutput(True), torch.nn.Linear(H, CLASSES)
        )
    else:
        ours = lstm_ext.Sequential(lstm, lstm_ext.Linear(H, 1, dtype=np.float64, seed=2))
        theirs = torch.nn.Sequential(
            torch.nn.LSTM(I, H, num_layers, batch_first=True), _TakeOutput(False), torch.nn.Linear(H, 1)
        )
    theirs = theirs.double()
    theirs.load_state_dict(
        {_torch_key(task, k): torch.from_numpy(v) for k, v in ours.state_dict().items()}, strict=True
    )
    return ours, theirs


def _torch_key(task: str, key: str) -> str:
    """torch's key for ours: in regression torch needs an adapter at index 1 (its LSTM returns a tuple), where
    lstm_ext's Sequential passes ``y`` on by itself, so our head ``1.`` is torch's ``2.``."""
    return "2." + key[2:] if task == "regression" and key.startswith("1.") else key


def batches(task: str) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Fixed batches with learnable targets: signs at the last steps as 4 classes, or the running mean."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(STEPS):
        x = rng.standard_normal((N, T, I))
        if task == "classification":
            target = (x[:, -1, 0] > 0).astype(np.int64) * 2 + (x[:, -2:, 1].sum(axis=1) > 0)
        else:
            target = np.cumsum(x[:, :, :1], axis=1) / np.arange(1, T + 1)[None, :, None]
        out.append((x, target))
    return out


# name: (task, layers, our optimizer, torch's optimizer, clip) with clip in ("norm", "value", None)
CASES: Dict[str, Tuple[str, int, Callable[[Any], Any], Callable[[Any], Any], Any]] = {
    "adam_cross_entropy_two_layers_clip_norm": (
        "classification",
        2,
        lambda m: lstm_ext.optim.Adam(m, lr=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01),
        "norm",
    ),
    "sgd_momentum_mse": (
        "regression",
        1,
        lambda m: lstm_ext.optim.SGD(m, lr=0.05, momentum=0.9, weight_decay=1e-3),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
        None,
    ),
    "sgd_nesterov_cross_entropy_clip_value": (
        "classification",
        1,
        lambda m: lstm_ext.optim.SGD(m, lr=0.3, momentum=0.8, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.8, nesterov=True),
        "value",
    ),
    "adamw_amsgrad_mse_clip_norm": (
        "regression",
        2,
        lambda m: lstm_ext.optim.AdamW(m, lr=0.005, weight_decay=0.1, amsgrad=True),
        lambda p: torch.optim.AdamW(p, lr=0.005, weight_decay=0.1, amsgrad=True),
        "norm",
    ),
}


@functools.lru_cache(maxsize=None)  # both tests of a case read the same run
def train_both(case: str) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray], Dict[str, Any]]:
    task, layers, make_ours, make_theirs, clip = CASES[case]
    ours, theirs = build(task, layers)
    opt, topt = make_ours(ours), make_theirs(theirs.parameters())
    ours_losses, theirs_losses = [], []
    for x, target in batches(task):
        opt.zero_grad()
        out = ours(x)
        loss, grad = (
            lstm_ext.cross_entropy(out, target)
            if task == "classification"
            else lstm_ext.mse_loss(out, target)
        )
        ours.backward(grad)
        if clip == "norm":
            lstm_ext.clip_grad_norm_(ours, max_norm=0.5)
        elif clip == "value":
            lstm_ext.clip_grad_value_(ours, 0.5)
        opt.step()
        ours_losses.append(loss)

        topt.zero_grad()
        tout = theirs(torch.from_numpy(x))
        ttarget = torch.from_numpy(target)
        tloss = (
            torch.nn.functional.cross_entropy(tout, ttarget)
            if task == "classification"
            else torch.nn.functional.mse_loss(tout, ttarget)
        )
        tloss.backward()
        if clip == "norm":
            torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm=0.5)
        elif clip == "value":
            torch.nn.utils.clip_grad_value_(theirs.parameters(), 0.5)
        topt.step()
        theirs_losses.append(tloss.item())
    theirs_state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    return (
        np.array(ours_losses),
        np.array(theirs_losses),
        {_torch_key(task, k): v for k, v in ours.state_dict().items()},
        theirs_state,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_loss_curve_matches_torch_at_every_step(case):
    ours, theirs, _, _ = train_both(case)
    rel = np.abs(ours - theirs) / np.abs(theirs)
    assert rel.max() < RTOL, f"worst relative loss difference {rel.max():.2e} at step {rel.argmax()}"
    # The model learns: parity of a flat curve would prove little.
    assert ours[-10:].mean() < 0.9 * ours[:10].mean()


@pytest.mark.parametrize("case", list(CASES))
def test_weights_after_training_match_torch(case):
    _, _, ours, theirs = train_both(case)
    assert list(ours) == list(theirs)
    for name, value in ours.items():
        np.testing.assert_allclose(value, theirs[name], rtol=1e-8, atol=1e-10, err_msg=name)
