# SPDX-License-Identifier: MIT
"""Every script in examples/ runs to the end (with ``--quick``: a second or two each) and prints its result,
so the examples stay in step with the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# script: (arguments, a piece of the output that shows it got to its result)
CASES = {
    "sequence_classification.py": (["--quick"], "held-out accuracy"),
    "forecasting.py": (["--quick"], "persistence forecast"),
    "stacked_bidirectional.py": (["--quick"], "held-out MSE: bidirectional"),
    "variational_dropout.py": (["--quick"], "input/recurrent dropout 0.4"),
    "gradient_clipping.py": (["--quick"], "update, clipped"),
}


def _run(script: str, args: list) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("script", list(CASES))
def test_example_runs_and_prints_its_result(script):
    args, expected = CASES[script]
    assert expected in _run(script, args)


@pytest.mark.torch
def test_torch_parity_example_runs():
    pytest.importorskip("torch")
    assert "float64" in _run("torch_parity.py", ["--trials", "3"])


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(CASES) | {"torch_parity.py"}
