# SPDX-License-Identifier: MIT
"""An LSTM inference forward runs the sequence in chunks of steps (about 512 rows each: the input projection of
a chunk, then its recurrence), keeping one chunk's pre-activations instead of all T * N rows'. The chunks must
be invisible: outputs equal to the training forward's (which projects all rows at once) and to the float64
reference, with several chunks and a partial last one, both directions, variable lengths and a projection.
"""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from lstm_ext import reference_layers

CASES = [
    # (steps, batch, hidden, proj, bidirectional, ragged): batch 16 makes chunks of 32 steps, 40 of 12
    (100, 16, 24, 0, False, False),
    (75, 16, 24, 0, True, True),
    (50, 40, 20, 7, True, False),
    (31, 40, 20, 0, False, True),
    (513, 1, 24, 0, False, False),  # one sequence: chunks of 512 steps, the last of a single row
]
IDS = [f"T{t}-N{n}-H{h}{f'-proj{p}' if p else ''}{'-bidir' if b else ''}{'-ragged' if r else ''}"
       for t, n, h, p, b, r in CASES]


def inputs(steps, batch, hidden, proj, bidirectional, ragged, dtype):
    rng = np.random.default_rng(11)
    directions, out = (2 if bidirectional else 1), proj or hidden
    x = rng.standard_normal((steps, batch, 5)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((directions, batch, out))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((directions, batch, hidden))).astype(dtype)
    lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
    if lengths is not None:
        lengths[0] = steps  # the longest sequence sets T
    return x, h0, c0, lengths


@pytest.mark.parametrize(("steps", "batch", "hidden", "proj", "bidirectional", "ragged"), CASES, ids=IDS)
def test_chunked_inference_matches_the_float64_reference(steps, batch, hidden, proj, bidirectional, ragged):
    layer = lstm_ext.LSTM(5, hidden, proj_size=proj, bidirectional=bidirectional, dtype=np.float64, seed=2)
    x, h0, c0, lengths = inputs(steps, batch, hidden, proj, bidirectional, ragged, np.float64)
    y, (h_n, c_n) = layer(x, (h0, c0), lengths, training=False)
    want_y, want_h, want_c, _ = reference_layers.stack_forward("lstm", layer.state_dict(), x, h0, c0,
                                                               lengths=lengths, bidirectional=bidirectional,
                                                               proj_size=proj)
    np.testing.assert_allclose(y, want_y, rtol=1e-10, atol=1e-12, err_msg="y")
    np.testing.assert_allclose(h_n, want_h, rtol=1e-10, atol=1e-12, err_msg="h_n")
    np.testing.assert_allclose(c_n, want_c, rtol=1e-10, atol=1e-12, err_msg="c_n")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("steps", "batch", "hidden", "proj", "bidirectional", "ragged"), CASES, ids=IDS)
def test_chunked_inference_equals_the_training_forward_bitwise(restore_num_threads, threads, steps, batch, hidden,
                                                               proj, bidirectional, ragged):
    # The native kernel's rows do not depend on the rows computed with them, so chunking changes no bit.
    lstm_ext.set_num_threads(threads)
    assert lstm_ext.get_gemm_backend() == "native"
    layer = lstm_ext.LSTM(5, hidden, proj_size=proj, bidirectional=bidirectional, dtype=np.float32, seed=2)
    x, h0, c0, lengths = inputs(steps, batch, hidden, proj, bidirectional, ragged, np.float32)
    inference = layer(x, (h0, c0), lengths, training=False)
    training = layer(x, (h0, c0), lengths, training=True)
    np.testing.assert_array_equal(inference[0], training[0])
    np.testing.assert_array_equal(inference[1][0], training[1][0])
    np.testing.assert_array_equal(inference[1][1], training[1][1])
