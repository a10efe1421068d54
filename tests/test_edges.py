# SPDX-License-Identifier: MIT
"""Edges: one step and a hundred thousand, sizes of one, saturated gates, sizes too large for memory or for a
64-bit index, and out-of-memory. Each is finite and right, or a clean Python exception; never a crash.

Anything that may allocate more than the machine has runs in a child interpreter whose address space is capped
(``RLIMIT_AS``): the cap makes the failing allocation fail whatever the kernel's overcommit policy (with
``vm.overcommit_memory=1`` a 16 TiB ``malloc`` can succeed, and the first write would then call the OOM
killer), and a crash there fails one test instead of taking pytest down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import lstm_ext
import numpy as np
import pytest
from conftest import SEED, assert_close
from lstm_ext import _core
from lstm_ext.reference_layers import stack_backward, stack_forward

# ---- helpers -----------------------------------------------------------------------------------------------


def reference_params(layer) -> dict:
    """The layer's weights as float64 under the reference's keys (a cell's keys get the ``_l0`` suffix)."""
    state = layer.state_dict()
    if isinstance(layer, (lstm_ext.LSTMCell, lstm_ext.GRUCell)):
        state = {k + "_l0": v for k, v in state.items()}
    return {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}


def check_against_reference(layer, x, dy, lengths=None):
    """Training forward and backward of the full `layer` on time-major `x` (no hx) against the reference."""
    kind = "lstm" if isinstance(layer, lstm_ext.LSTM) else "gru"
    y, states = layer(x, lengths=lengths)
    h_n = states[0] if kind == "lstm" else states
    if kind == "lstm":
        dx, (dh0, _) = layer.backward(dy)
    else:
        dx, dh0 = layer.backward(dy)
    y_ref, h_ref, _, tape = stack_forward(
        kind,
        reference_params(layer),
        x,
        num_layers=layer.num_layers,
        bidirectional=layer.bidirectional,
        proj_size=getattr(layer, "proj_size", 0),
        reset_after=getattr(layer, "reset_after", True),
        lengths=lengths,
    )
    dx_ref, dh0_ref, _, grads_ref = stack_backward(tape, dy)
    for name, got, want in [("y", y, y_ref), ("h_n", h_n, h_ref), ("dx", dx, dx_ref), ("dh0", dh0, dh0_ref)]:
        assert_close(got, want, layer.dtype, name)
    for name, value in layer.grads.items():
        assert_close(value, grads_ref[name], layer.dtype, name)


def all_finite(*arrays) -> bool:
    return all(np.isfinite(a).all() for a in arrays)


CHILD_PRELUDE = """
import json, resource, sys
def cap_address_space(extra):
    # The cap is what the interpreter already maps plus `extra` bytes.
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, mapped + extra))
def peak_rss():
    # VmHWM belongs to this address space; ru_maxrss survives exec and would start at the parent's size.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
def outcome(fn):
    try:
        fn()
    except BaseException as exc:
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": None, "message": ""}
import numpy as np
import lstm_ext
"""


def run_capped(code: str, timeout: float = 120.0) -> dict:
    """Runs `code` after :data:`CHILD_PRELUDE` in a fresh interpreter and returns the JSON of its last stdout line.

    The child must call ``cap_address_space`` itself (``preexec_fn`` is unsafe in a process with threads).
    """
    script = CHILD_PRELUDE + textwrap.dedent(code)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"the child interpreter died (return code {proc.returncode}, a negative one is a signal):\n"
        f"{proc.stderr[-3000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


needs_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's"
)

# ---- T = 1 -------------------------------------------------------------------------------------------------


LAYER_OPTIONS = [
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("LSTM", {"proj_size": 2}),
    ("GRU", {}),
    ("GRU", {"num_layers": 2, "bidirectional": True}),
    ("GRU", {"reset_after": False}),
]
LAYER_IDS = [
    "LSTM",
    "LSTM-stacked-bidirectional",
    "LSTM-projected",
    "GRU",
    "GRU-stacked-bidirectional",
    "GRU-reset-before",
]


@pytest.mark.parametrize(("kind", "options"), LAYER_OPTIONS, ids=LAYER_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_single_step_matches_the_reference(kind, options, dtype):
    rng = np.random.default_rng(SEED)
    layer = getattr(lstm_ext, kind)(3, 5, dtype=dtype, seed=1, **options)
    out = layer.out_size * (2 if layer.bidirectional else 1)
    x = rng.standard_normal((1, 4, 3)).astype(dtype)
    check_against_reference(layer, x, rng.standard_normal((1, 4, out)).astype(dtype))
    check_against_reference(layer, x, rng.standard_normal((1, 4, out)).astype(dtype), lengths=[1, 1, 1, 1])


# ---- N = 1, H = 1, I = 1 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_sequence_one_input_and_one_hidden_unit_match_the_reference(kind, steps, bidirectional, dtype):
    rng = np.random.default_rng(SEED)
    layer = getattr(lstm_ext, kind)(1, 1, num_layers=2, bidirectional=bidirectional, dtype=dtype, seed=2)
    out = 2 if bidirectional else 1
    x = rng.standard_normal((steps, 1, 1)).astype(dtype)
    check_against_reference(layer, x, rng.standard_normal((steps, 1, out)).astype(dtype))


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cells_of_size_one_match_the_reference(kind, dtype):
    rng = np.random.default_rng(SEED)
    cell = getattr(lstm_ext, kind)(1, 1, dtype=dtype, seed=3)
    x = rng.standard_normal((1, 1)).astype(dtype)
    dh = rng.standard_normal((1, 1)).astype(dtype)
    ref_kind = "lstm" if kind == "LSTMCell" else "gru"
    y_ref, _, _, tape = stack_forward(ref_kind, reference_params(cell), x[None])
    dx_ref, _, _, grads_ref = stack_backward(tape, dh[None])
    h1 = cell(x)[0] if kind == "LSTMCell" else cell(x)
    dx = cell.backward(dh)[0]
    assert_close(h1, y_ref[0], dtype, "h1")
    assert_close(dx, dx_ref[0], dtype, "dx")
    for name, value in cell.grads.items():
        assert_close(value, grads_ref[name + "_l0"], dtype, name)


# ---- T = 100 000 -------------------------------------------------------------------------------------------
# A recursion over time (one frame per step) would need far more than the small stack the work runs on here, and
# a quadratic cost in T (10^10 step-updates) would not finish within the suite's time; linear work takes well
# under a second. The check of values uses causality: y[:k] of the long run is the k-step run's y, and a dy
# that is zero after step k gives exactly zero dx there and, before it, the k-step run's gradients.

LONG_STEPS = 100_000
PREFIX = 300


@pytest.fixture
def one_kernel_thread():
    """The long runs use one kernel thread: their cost is the time loop, which is serial anyway, and the
    weight-gradient products over all T*N rows (depth 2e5, a tiny result) are where a multi-threaded GEMM's
    spin-waiting turns seconds-long when the machine is oversubscribed."""
    before = lstm_ext.get_num_threads()
    lstm_ext.set_num_threads(1)
    try:
        yield
    finally:
        lstm_ext.set_num_threads(before)


def run_on_small_stack(fn, stack_bytes: int = 2 * 1024 * 1024):
    """Runs `fn()` in a thread with a `stack_bytes` stack (Eigen may put up to 128 KiB of blocks on the stack;
    a frame per step of 10^5 steps would not fit) and returns its result or re-raises its exception."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller
            result["error"] = exc

    previous = threading.stack_size(stack_bytes)
    try:
        thread = threading.Thread(target=target)
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_sequence_of_100000_steps_runs_forward_and_backward_on_a_small_stack(
    kind, bidirectional, one_kernel_thread
):
    rng = np.random.default_rng(SEED)
    layer = getattr(lstm_ext, kind)(2, 3, bidirectional=bidirectional, dtype=np.float64, seed=4)
    width = 6 if bidirectional else 3
    x = rng.standard_normal((LONG_STEPS, 2, 2))
    dy = np.zeros((LONG_STEPS, 2, width))
    dy[:PREFIX] = rng.standard_normal((PREFIX, 2, width))

    def long_run():
        y, _ = layer(x)
        dx = layer.backward(dy)[0]
        return y, dx, {k: v.copy() for k, v in layer.grads.items()}

    y, dx, grads = run_on_small_stack(long_run)
    assert y.shape == (LONG_STEPS, 2, width) and dx.shape == x.shape
    assert all_finite(y, dx, *grads.values())
    if bidirectional:
        # The reverse direction sees the whole sequence: only its gradient is checked for finiteness above;
        # the forward direction's half of y still obeys causality.
        short_y, _ = layer(x[:PREFIX])
        assert_close(y[:PREFIX, :, :3], short_y[:, :, :3], np.float64, "y prefix, forward direction")
        return
    short_y, _ = layer(x[:PREFIX])
    short_dx = layer.backward(dy[:PREFIX])[0]
    assert_close(y[:PREFIX], short_y, np.float64, "y prefix")
    assert_close(dx[:PREFIX], short_dx, np.float64, "dx prefix")
    assert not dx[PREFIX:].any(), "dx after the last nonzero dy must be exactly zero"
    for name, value in layer.grads.items():
        assert_close(grads[name], value, np.float64, name)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_sequence_of_100000_steps_with_ragged_lengths_gives_each_sequence_its_own_final_state(
    kind, one_kernel_thread
):
    rng = np.random.default_rng(SEED)
    layer = getattr(lstm_ext, kind)(2, 3, dtype=np.float32, seed=5)
    x = rng.standard_normal((LONG_STEPS, 3, 2)).astype(np.float32)
    lengths = np.array([LONG_STEPS, 1, LONG_STEPS // 2])

    def long_run():
        y, states = layer(x, lengths=lengths)
        dx = layer.backward(np.ones_like(y))[0]
        return y, (states[0] if kind == "LSTM" else states), dx

    y, h_n, dx = run_on_small_stack(long_run)
    assert all_finite(y, h_n, dx)
    for b, length in enumerate(lengths):
        assert not y[length:, b].any() and not dx[length:, b].any(), f"padding of sequence {b}"
        assert np.array_equal(h_n[0, b], y[length - 1, b]), f"h_n of sequence {b} is its last step's output"


# ---- saturated gates ---------------------------------------------------------------------------------------


def saturated(rng, shape, dtype, scale=1e4):
    """Values of magnitude `scale` with random signs: every gate pre-activation is far beyond saturation."""
    return (scale * rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.0, size=shape)).astype(dtype)


@pytest.mark.parametrize(("kind", "options"), LAYER_OPTIONS, ids=LAYER_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_inputs_give_finite_outputs_and_gradients_that_match_the_reference(kind, options, dtype):
    rng = np.random.default_rng(SEED)
    layer = getattr(lstm_ext, kind)(3, 4, dtype=dtype, seed=6, **options)
    # Large recurrent weights too, so the recurrent path saturates as well as the input path.
    for name, value in layer.named_parameters():
        if name.startswith("weight_hh"):
            setattr(layer, name, value * 1e3)
    out = layer.out_size * (2 if layer.bidirectional else 1)
    x = saturated(rng, (6, 3, 3), dtype)
    dy = rng.standard_normal((6, 3, out)).astype(dtype)
    y, states = layer(x)
    grads_out = layer.backward(dy)
    states = states if kind == "LSTM" else (states,)
    d_states = grads_out[1] if kind == "LSTM" else (grads_out[1],)
    assert all_finite(y, *states, grads_out[0], *d_states, *layer.grads.values())
    if dtype == np.float64:
        # float32 rounds a pre-activation of size 1e4 by ~1e-3; the rare one that lands near zero is then off by
        # that much, beyond the float32 tolerance. float64 rounds it by ~1e-12.
        check_against_reference(layer, x, dy)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_inputs_and_states_give_finite_cell_outputs_and_gradients(kind, dtype):
    rng = np.random.default_rng(SEED)
    cell = getattr(lstm_ext, kind)(3, 4, dtype=dtype, seed=7)
    x = saturated(rng, (5, 3), dtype)
    h0 = saturated(rng, (5, 4), dtype)
    if kind == "LSTMCell":
        c0 = saturated(rng, (5, 4), dtype)
        h1, c1 = cell(x, (h0, c0))
        dx, (dh0, dc0) = cell.backward(np.ones_like(h1), np.ones_like(c1))
        assert all_finite(h1, c1, dx, dh0, dc0, *cell.grads.values())
    else:
        h1 = cell(x, h0)
        dx, dh0 = cell.backward(np.ones_like(h1))
        assert all_finite(h1, dx, dh0, *cell.grads.values())


def test_saturated_inputs_to_a_100_step_sequence_keep_the_state_bounded():
    rng = np.random.default_rng(SEED)
    layer = lstm_ext.LSTM(3, 4, dtype=np.float32, seed=8, unit_forget_bias=True)
    x = saturated(rng, (100, 2, 3), np.float32)
    y, (h_n, c_n) = layer(x)
    dx, (dh0, dc0) = layer.backward(np.ones_like(y))
    assert all_finite(y, h_n, c_n, dx, dh0, dc0, *layer.grads.values())
    assert np.abs(y).max() <= 1.0  # h = o * tanh(c): bounded by 1 however large c grows
    assert np.abs(c_n).max() <= 100.0  # |c_t| grows at most by |i * g| <= 1 per step


# ---- sizes too large ---------------------------------------------------------------------------------------


@needs_linux
def test_a_layer_whose_parameters_do_not_fit_in_memory_is_a_memory_error_at_construction():
    result = run_capped("""
        cap_address_space(2 << 30)
        cases = {
            # Sizes whose parameter count fits in 64 bits (2**24 squared), but not in any memory; a count that
            # does not fit is a ValueError (the test below).
            "LSTM hidden_size": lambda: lstm_ext.LSTM(1, 2**24),
            "LSTM input_size": lambda: lstm_ext.LSTM(2**40, 1),
            "GRU hidden_size": lambda: lstm_ext.GRU(1, 2**24, dtype=np.float64),
            "LSTMCell hidden_size": lambda: lstm_ext.LSTMCell(1, 2**24),
            "GRUCell input_size": lambda: lstm_ext.GRUCell(2**40, 1),
            "LSTM proj_size": lambda: lstm_ext.LSTM(1, 2**40, proj_size=1),
        }
        print(json.dumps({name: outcome(fn) for name, fn in cases.items()}))
    """)
    for name, got in result.items():
        assert got["type"] == "MemoryError", f"{name}: {got}"


@pytest.mark.parametrize(
    ("kind", "args", "argument"),
    [
        ("LSTM", (1, 2**62), "hidden_size"),
        ("LSTM", (2**62, 1), "input_size"),
        ("GRU", (1, 2**62), "hidden_size"),
        ("LSTMCell", (1, 2**62), "hidden_size"),
        ("GRUCell", (2**62, 3), "input_size"),
    ],
)
def test_sizes_whose_parameter_count_overflows_64_bits_are_a_value_error_naming_the_size(
    kind, args, argument
):
    # 4 * 2**62 elements cannot be addressed: NumPy refuses the shape before allocating anything, so this is
    # safe in-process. The error must still say which argument is too large.
    with pytest.raises(ValueError) as excinfo:
        getattr(lstm_ext, kind)(*args)
    assert argument in str(excinfo.value), f"the message does not name {argument}: {excinfo.value}"


@needs_linux
def test_a_num_layers_too_large_for_memory_fails_before_filling_the_memory():
    # The layer cannot exist (2**40 layers); it must fail up front, not by growing until the allocator gives up
    # (without an address-space cap that is the OOM killer, i.e. a crash, after every page of RAM is taken).
    result = run_capped("""
        cap_address_space(256 << 20)
        before = peak_rss()
        got = outcome(lambda: lstm_ext.LSTM(1, 1, num_layers=2**40))
        got["growth"] = peak_rss() - before
        print(json.dumps(got))
    """)
    assert result["type"] in ("MemoryError", "ValueError"), result
    if result["type"] == "ValueError":
        assert "num_layers" in result["message"], result
    assert result["growth"] < 64 << 20, (
        f"LSTM(1, 1, num_layers=2**40) took {result['growth'] >> 20} MiB before failing with {result['type']}"
    )


def small_lstm_args(dtype=np.float32, rows=1, inp=1, hidden=1):
    """The one-layer arguments of ``_core.lstm_stack_forward`` on a packed x ``(rows, inp)``."""
    return (
        np.zeros((rows, inp), dtype),
        [np.zeros((4 * hidden, inp), dtype)],
        [np.zeros((4 * hidden, hidden), dtype)],
        None,
        None,
        None,
        None,
    )


def small_gru_args(dtype=np.float32, rows=1, inp=1, hidden=1):
    return (
        np.zeros((rows, inp), dtype),
        [np.zeros((3 * hidden, inp), dtype)],
        [np.zeros((3 * hidden, hidden), dtype)],
        None,
        None,
        None,
    )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(
    "batch_sizes",
    [[2**62] * 4, [2**62, 2**62], [2**63 - 1] * 3, [2**62, 2**62, 1]],
    ids=["sum_wraps_to_zero", "sum_is_2_63", "max_index_thrice", "sum_is_2_63_plus_1"],
)
def test_batch_sizes_whose_sum_overflows_a_64_bit_index_are_a_value_error(kind, batch_sizes):
    # Through the private binding: the Python layers never build such batch_sizes, but the core must not trust
    # them either. x is tiny; the claimed sequence is astronomically long.
    args = small_lstm_args() if kind == "lstm" else small_gru_args()
    forward = _core.lstm_stack_forward if kind == "lstm" else _core.gru_stack_forward
    for training in (False, True):
        with pytest.raises(ValueError, match="overflow|batch_sizes|rows"):
            forward(
                *args, layers=1, directions=1, training=training, batch_sizes=np.array(batch_sizes, np.int64)
            )


@pytest.mark.parametrize(
    ("batch_sizes", "rows", "pattern"),
    [
        ([3, 1], 1, r"x: expected 4 rows"),
        ([1, 2], 3, r"non-increasing"),
        ([2, 0], 2, r"non-increasing and >= 1"),
        ([-1], 1, r"N=-1"),
        ([], 1, r"batch_sizes.*at least one"),
        ([2, 2], 3, r"x: expected 4 rows"),
    ],
    ids=["sum_larger_than_x", "increasing", "zero", "negative", "empty", "sum_smaller_than_x"],
)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_inconsistent_batch_sizes_through_the_binding_are_value_errors(kind, batch_sizes, rows, pattern):
    args = small_lstm_args(rows=rows) if kind == "lstm" else small_gru_args(rows=rows)
    forward = _core.lstm_stack_forward if kind == "lstm" else _core.gru_stack_forward
    with pytest.raises(ValueError, match=pattern):
        forward(*args, layers=1, directions=1, training=True, batch_sizes=np.array(batch_sizes, np.int64))


@pytest.mark.parametrize("layers", [2**62, 2**63 - 1])
def test_a_layer_count_whose_product_with_the_directions_overflows_is_a_value_error(layers):
    # 2**62 layers * 2 directions is 2**63: one past the largest 64-bit index.
    x = np.zeros((1, 1, 1), np.float32)
    w = [np.zeros((4, 1), np.float32)]
    for directions in (1, 2):
        with pytest.raises(ValueError, match="w_hh|layers"):
            _core.lstm_stack_forward(
                x, w, w, None, None, None, None, layers=layers, directions=directions, training=False
            )


def test_a_layer_count_beyond_a_64_bit_index_is_rejected_by_the_binding():
    x = np.zeros((1, 1, 1), np.float32)
    w = [np.zeros((4, 1), np.float32)]
    with pytest.raises(TypeError):
        _core.lstm_stack_forward(x, w, w, None, None, None, None, layers=2**64, directions=1, training=False)


# Products past 32 bits (T*N*4H > 2**31, realistic) are not run here: every buffer of that many values needs
# 8 GiB or more, more than CI has. They are handled by construction (Index is 64-bit everywhere, and the
# core's checked_product rejects what does not fit 64 bits, as the tests above show through the binding).

# ---- out of memory -----------------------------------------------------------------------------------------
# The inputs stay small and the weights O(H) by using a projection (P = 1: weight_hh is (4H, 1), weight_hr
# (1, H)), so H can be large: H = 2**18 with T*N = 2**22 rows makes the training cache (T*N*4H values) 16 TiB,
# while x is 16 MiB and the parameters 20 MiB. An inference forward keeps one chunk of steps' pre-activations
# (about 512 rows x 4H): H = 2**20 makes that 8 GiB.

OOM_CHILD = """
    cap_address_space(4 << 30)
    H, T, N = 2**18, 2**21, 2
    layer = lstm_ext.LSTM(1, H, proj_size=1, seed=0)
    x = np.ones((T, N, 1), np.float32)
    # Inference keeps only a chunk of steps' pre-activations (about 512 rows x 4H), not T * N rows: with
    # H = 2**20 that chunk alone is 8 GiB (with 2**18 the forward fits and would run for hours).
    wide = lstm_ext.LSTM(1, 2**20, proj_size=1, seed=0)
    results = {
        "lstm training forward": outcome(lambda: layer(x, training=True)),
        "lstm inference forward": outcome(lambda: wide(x, training=False)),
        "lstm ragged training forward": outcome(lambda: layer(x, lengths=np.full(N, T - 1), training=True)),
        "lstm bidirectional inference forward": outcome(
            lambda: lstm_ext.LSTM(1, 2**20, proj_size=1, bidirectional=True, seed=0)(x, training=False)),
    }
    # A GRU has no projection, so weight_hh is (3H, H): H = 2**10 keeps it at 12 MiB, and T*N = 2**24 rows make the
    # output y (T*N*H values) 64 GiB alone.
    gru = lstm_ext.GRU(1, 2**10, seed=0)
    xg = np.ones((2**12, 2**12, 1), np.float32)
    results["gru training forward"] = outcome(lambda: gru(xg, training=True))
    results["gru inference forward"] = outcome(lambda: gru(xg, training=False))
    cell = lstm_ext.LSTMCell(1, 2**10, seed=0)
    results["cell forward"] = outcome(lambda: cell(np.ones((2**22, 1), np.float32)))
    # After the failures the layer still works on an input that fits.
    small = outcome(lambda: layer(np.ones((2, 1, 1), np.float32)))
    results["small forward afterwards"] = small
    print(json.dumps(results))
"""


@needs_linux
def test_a_forward_that_does_not_fit_in_memory_is_a_memory_error_not_a_crash():
    result = run_capped(OOM_CHILD)
    small = result.pop("small forward afterwards")
    for name, got in result.items():
        assert got["type"] == "MemoryError", f"{name}: {got}"
    assert small["type"] is None, small


@needs_linux
def test_a_backward_after_an_out_of_memory_forward_is_the_previous_forward_s_or_a_runtime_error():
    # Either policy is sound (keep the last tape that was completed, or drop it); a half-written tape is not.
    result = run_capped("""
        cap_address_space(4 << 30)
        layer = lstm_ext.LSTM(1, 2**18, proj_size=1, dtype=np.float64, seed=0)
        x = np.linspace(-1, 1, 6).reshape(3, 2, 1)
        y, _ = layer(x)
        dx, _ = layer.backward(np.ones_like(y))
        failed = outcome(lambda: layer(np.ones((2**21, 2, 1))))
        again = {}
        after = outcome(lambda: again.setdefault("dx", layer.backward(np.ones_like(y))[0]))
        same = "dx" in again and bool(np.array_equal(dx, again["dx"]))
        print(json.dumps({"failed": failed, "after": after, "same": same}))
    """)
    assert result["failed"]["type"] == "MemoryError", result
    assert result["after"]["type"] == "RuntimeError" or (
        result["after"]["type"] is None and result["same"]
    ), result


@needs_linux
def test_a_broadcast_input_too_large_to_copy_is_a_memory_error_under_an_address_space_cap():
    result = run_capped("""
        cap_address_space(2 << 30)
        x = np.broadcast_to(np.float32(0.5), (2**20, 2**20, 1))
        print(json.dumps(outcome(lambda: lstm_ext.LSTM(1, 2, seed=0)(x))))
    """)
    assert result["type"] == "MemoryError", result
