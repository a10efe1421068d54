# SPDX-License-Identifier: MIT
"""A/B of two lstm_ext builds from Python: the installed one ("new") against another one installed with
``pip install --target DIR`` ("base"), on the grid's LSTM/GRU shapes, each (build, case) in its own process,
the two builds interleaved round by round in alternating order; prints medians and new/base.

    pip install --no-deps --target /tmp/base_pkg <a checkout of the base commit>
    python bench/ab.py --base /tmp/base_pkg --cases s2:fwd,s2:train,s3:train --rounds 4

With ``--in-process`` each case runs once per round in one process holding both builds (the base one copied
under another package name), blocks of calls alternating between them: on a host whose speed changes within
seconds (an EPYC guest whose two vCPUs are sometimes placed far apart, BENCHMARKS.md) separate processes can
land in different states, one process sees both builds in the same one.

Meant for one change at a time; ``bench/compare.py`` is the comparison with the other libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

SHAPES = {  # (T, N, I, H), calls per sample block
    "s1": ((100, 1, 128, 128), 200),
    "s2": ((100, 32, 256, 256), 30),
    "s3": ((100, 64, 512, 512), 6),
    "s4": ((50, 128, 1024, 1024), 3),
    "s5": ((1000, 1, 64, 64), 100),
    "t1": ((1, 1, 128, 128), 4000),  # one step of one sequence (the short-sequence path)
    "t8": ((8, 1, 256, 256), 1000),
}

CHILD = r"""
import json, sys, time
import numpy as np
import lstm_ext
T, N, I, H, calls, threads = map(int, sys.argv[1:7])
mode, kind = sys.argv[7], sys.argv[8]
lstm_ext.set_num_threads(threads)
rng = np.random.default_rng(0)
layer = (lstm_ext.GRU if kind == "gru" else lstm_ext.LSTM)(I, H, dtype=np.float32, seed=0)
x = rng.standard_normal((T, N, I), dtype=np.float32)
dy = rng.standard_normal((T, N, H), dtype=np.float32)
def call():
    if mode == "fwd":
        layer(x, None, training=False)
    else:
        layer(x, None, training=True)
        layer.backward(dy)
for _ in range(2):
    call()
times = []
for _ in range(calls):
    t = time.perf_counter()
    call()
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "module": lstm_ext.__file__}))
"""

# Both builds in one process: "new" is the installed lstm_ext, "base" the base build's package copied as
# lstm_ext_base (the package imports itself relatively, so it loads under another name). Blocks of calls
# alternate between the two; each reports its own times.
CHILD_BOTH = r"""
import json, sys, time
import numpy as np
T, N, I, H, calls, threads = map(int, sys.argv[1:7])
mode, kind, base_dir = sys.argv[7], sys.argv[8], sys.argv[9]
sys.path.insert(0, base_dir)
import lstm_ext, lstm_ext_base
rng = np.random.default_rng(0)
x = rng.standard_normal((T, N, I), dtype=np.float32)
dy = rng.standard_normal((T, N, H), dtype=np.float32)
layers = {}
for name, mod in (("base", lstm_ext_base), ("new", lstm_ext)):
    mod.set_num_threads(threads)
    layers[name] = (mod.GRU if kind == "gru" else mod.LSTM)(I, H, dtype=np.float32, seed=0)
def call(layer):
    if mode == "fwd":
        layer(x, None, training=False)
    else:
        layer(x, None, training=True)
        layer.backward(dy)
times = {"base": [], "new": []}
block = max(1, calls // 20)
for r in range(20):
    for name in ("base", "new") if r % 2 == 0 else ("new", "base"):
        call(layers[name])
        for _ in range(block):
            t = time.perf_counter()
            call(layers[name])
            times[name].append(time.perf_counter() - t)
print(json.dumps({"times": times, "modules": {"base": lstm_ext_base.__file__, "new": lstm_ext.__file__}}))
"""


def run_child(script: str, case: str, threads: int, kind: str, extra: List[str], path: str, label: str) -> dict:
    """Runs a child script on a case (argv: T N I H calls threads mode kind, then `extra`) with `path` (if any)
    as its PYTHONPATH; returns its JSON reply."""
    shape, mode = case.split(":")
    (T, N, I, H), calls = SHAPES[shape]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = path
    args = [str(v) for v in (T, N, I, H, calls, threads)] + [mode, kind] + extra
    # cwd outside the source tree, so `import lstm_ext` never finds the checkout's python/ by accident
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir(), check=False)
    if out.returncode != 0:
        raise SystemExit(f"{case} ({label}): the child failed:\n{out.stderr}")
    return json.loads(out.stdout)


def run_both(base_copy: str, case: str, threads: int, kind: str) -> Tuple[Dict[str, List[float]], Dict[str, str]]:
    reply = run_child(CHILD_BOTH, case, threads, kind, [base_copy], "", "in process")
    return reply["times"], reply["modules"]


def run_one(path: str, case: str, threads: int, kind: str) -> Tuple[List[float], str]:
    reply = run_child(CHILD, case, threads, kind, [], path, path or "installed")
    return reply["times"], reply["module"]


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="directory of the base build (pip install --target DIR)")
    p.add_argument("--cases", default="s2:fwd,s2:train,s3:fwd,s3:train,s4:fwd,s4:train",
                   help="comma-separated shape:mode (shapes s1..s5, t1, t8; modes fwd, train)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kind", choices=["lstm", "gru"], default="lstm")
    p.add_argument("--in-process", action="store_true", help="both builds in one process, blocks alternating")
    a = p.parse_args(argv)
    cases = a.cases.split(",")
    for case in cases:
        shape, _, mode = case.partition(":")
        if shape not in SHAPES or mode not in ("fwd", "train"):
            p.error(f"--cases: expected shape:mode with shapes {', '.join(SHAPES)} and modes fwd, train; "
                    f"got {case!r}")
    builds = [("base", os.path.abspath(a.base)), ("new", "")]
    samples: Dict[Tuple[str, str], List[float]] = {}
    modules: Dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        base_copy = os.path.join(scratch, "lstm_ext_base")
        if a.in_process:
            shutil.copytree(os.path.join(builds[0][1], "lstm_ext"), base_copy)
        for r in range(a.rounds):
            for case in cases:
                if a.in_process:
                    both, modules = run_both(scratch, case, a.threads, a.kind)
                    for name in ("base", "new"):
                        samples.setdefault((case, name), []).extend(both[name])
                    continue
                for name, path in builds if r % 2 == 0 else builds[::-1]:
                    times, modules[name] = run_one(path, case, a.threads, a.kind)
                    samples.setdefault((case, name), []).extend(times)
    print(f"base: {modules['base']}\nnew:  {modules['new']}\n{a.kind}, {a.threads} thread(s), {a.rounds} rounds")
    print("| case | base | new | new / base |\n|---|---|---|---|")
    for case in cases:
        b, n = (statistics.median(samples[(case, k)]) for k in ("base", "new"))
        print(f"| {case} | {b * 1e3:.3f} ms | {n * 1e3:.3f} ms | {n / b:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
