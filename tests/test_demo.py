# SPDX-License-Identifier: MIT
"""``python -m lstm_ext``: the training demo runs to the end, prints its metric and writes its PNG; the
dispatcher keeps the self-check reachable as before (``--check-only``, CI's command) and as ``check``."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from lstm_ext import __main__ as entry
from lstm_ext import _demo
from lstm_ext._progress import Progress

TINY = ["--epochs", "1", "--hidden", "8", "--batch-size", "64"]


def test_demo_prints_accuracy_and_baseline_and_writes_a_png(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = io.StringIO()
    path = tmp_path / "demo.png"
    assert _demo.main([*TINY, "--plot", str(path)], stream=out) == 0
    text = out.getvalue()
    assert "Held-out accuracy:" in text and "majority-class baseline: " in text
    assert "samples/s" in text and f"Plot: {path}" in text
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_runs_as_a_module_from_the_command_line(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    path = tmp_path / "cli.png"
    done = subprocess.run(
        [sys.executable, "-m", "lstm_ext", *TINY, "--plot", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Held-out accuracy:" in done.stdout
    assert path.exists()


def test_missing_demo_extra_names_the_pip_install_and_exits_non_zero(monkeypatch, capsys):
    monkeypatch.setattr(_demo, "missing_extra", lambda: "sklearn")
    assert _demo.main([]) == 2
    err = capsys.readouterr().err
    assert "sklearn is not installed" in err and "-m pip install 'lstm_ext[demo]'" in err


@pytest.mark.parametrize(
    ("option", "value"), [("--epochs", "0"), ("--hidden", "0"), ("--batch-size", "0"), ("--threads", "0")]
)
def test_demo_rejects_a_non_positive_size_naming_the_option(capsys, option, value):
    assert _demo.main([option, value]) == 2
    assert f"{option}: expected an int >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1"], "--lr: expected a float > 0, got -1.0"),
        (["--test-fraction", "1"], "--test-fraction: expected a float in (0, 1), got 1.0"),
        (["--plot", "/nonexistent-folder/x.png"], "--plot: the folder /nonexistent-folder does not exist"),
    ],
)
def test_demo_rejects_bad_options_before_training(capsys, argv, message):
    assert _demo.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--check-only"], ["check", "--check-only"]])
def test_self_check_is_reached_by_check_only_and_by_the_check_command(capsys, argv):
    assert entry.main([*argv, "--check-shape", "3", "2", "2", "3"]) == 0
    text = capsys.readouterr().out
    assert "self-check passed" in text and "Timing" not in text


def test_progress_bar_redraws_on_a_terminal_and_prints_one_line_per_epoch_otherwise():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(1, 2, 64, stream)
        bar._last_draw = -1.0  # draw the first update regardless of the clock
        bar.update(32, 0.5)
        bar.update(32, 0.25)
        bar.close("held-out accuracy 50.0%")
    assert tty.getvalue().startswith("\repoch 1/2 [############------------] 32/64  loss 0.5000")
    assert pipe.getvalue().count("\n") == 1 and "\r" not in pipe.getvalue()
    assert "64/64  loss 0.3750" in pipe.getvalue() and pipe.getvalue().endswith("held-out accuracy 50.0%\n")
