# SPDX-License-Identifier: MIT
"""lstm_ext side by side with PyTorch, ONNX Runtime (inference) and plain NumPy, float32, on this machine.

    python bench/compare.py                          # the full grid, 1 and 2 threads (~7 min on 2 cores)
    python bench/compare.py --quick                  # a subset, few repeats (under 2 minutes)
    python bench/compare.py --shapes s1,s5 --threads 1 --repeats 5
    python bench/compare.py --write BENCHMARKS.md    # also write the tables into that file

Cases: the performance issue's grid ``s1``..``s5`` and ``cell`` (an ``LSTMCell`` step) for the LSTM, ``step``
(the ``cell``'s shape through a whole layer: ``T = 1``, a stream fed a step at a time) for LSTM and GRU, plus
variants on some shapes: ``gru``, ``proj`` (``proj_size = H/2``), ``bidir`` and ``ragged`` (unsorted variable
lengths: lstm_ext's ``lengths=`` against torch's ``pack_padded_sequence(enforce_sorted=False)`` and ONNX's
``sequence_lens``). Modes: ``fwd`` (inference) and ``train`` (training forward + backward for a given
``dL/dy``, computing ``dx`` and every weight gradient).

Method:

- Every implementation runs in its own worker process per thread count (``lstm_ext.set_num_threads``,
  ``torch.set_num_threads``, ONNX Runtime's ``intra_op_num_threads``, ``OPENBLAS/OMP/MKL_NUM_THREADS`` for
  NumPy), which stays alive for the whole run, so each thread pool is settled.
- Before timing a case the driver runs every implementation once on the same weights (torch's state dict,
  loaded into each) and checks outputs, final states and, for ``train``, ``dx`` and every weight gradient
  against PyTorch (worst ``max|a-b|/max|b|`` at most 2e-4); a mismatch is reported and makes the exit
  status 1.
- Each worker warms up (a first call, then at least two more and 0.2 s). Rounds are interleaved: in each round
  every worker times one block, the order rotating between rounds, with a short pause between workers (idle
  thread pools spin for a while after their last job). A sample is the mean of ``inner`` back-to-back calls,
  ``inner`` chosen so that a sample lasts at least 1 ms; a block is as many samples as fit in 0.1 s (at least
  one). Rounds: as many as fit a per-case budget, between 5 and 10 (``--repeats`` fixes them).
- The machine may be shared: /proc tells how much CPU other processes used during each block; a block during
  which they took more than 20% is thrown away and timed again once they are quiet (``--noisy``,
  ``--quiet-wait``). The report says how many.
- Reported: the median over all samples, min–max, and ratios ``lstm_ext time / anchor time`` (below 1:
  lstm_ext is faster).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _impls  # noqa: E402  (after the path set-up, for the worker processes too)

TOLERANCE = 2e-4
MARK_BEGIN = "<!-- bench/compare.py: begin (generated; rerun with --write to update) -->"
MARK_END = "<!-- bench/compare.py: end -->"


# ------------------------------------------------------------------------------------------------------------
# Worker process: one implementation at one thread count, commands as JSON lines on stdin/stdout


def worker_main(impl: str, threads: int) -> int:
    warnings.filterwarnings("ignore")
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    _impls.set_threads(impl, threads)
    _impls.set_ort_threads(threads)
    runner: Optional[_impls.Runner] = None

    def reply(obj: Dict[str, Any]) -> None:
        proto_out.write(json.dumps(obj) + "\n")

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "quit":
                break
            if op == "setup":
                runner = None
                case = cmd["case"]
                try:
                    runner = _impls.make_runner(impl, case, _impls.make_data(case, cmd["seed"]))
                except _impls.Skip as exc:
                    reply({"skip": str(exc)})
                    continue
                runner.run()  # first call: allocation, first touch, pool start
                times: List[float] = []
                start = time.perf_counter()
                while len(times) < 2 or (time.perf_counter() - start < cmd["warm"] and len(times) < 10000):
                    t0 = time.perf_counter()
                    runner.run()
                    times.append(time.perf_counter() - t0)
                times.sort()
                reply({"t_est": times[len(times) // 2], "info": runner.info})
            elif op == "time":
                assert runner is not None
                run, inner = runner.run, cmd["inner"]
                if cmd["prewarm"]:
                    for _ in range(inner):
                        run()
                samples = []
                for _ in range(cmd["samples"]):
                    t0 = time.perf_counter()
                    for _ in range(inner):
                        run()
                    samples.append((time.perf_counter() - t0) / inner)
                reply({"samples": samples})
            elif op == "release":
                runner = None
                reply({"ok": True})
        except Exception as exc:  # reported to the driver, which notes it and carries on
            runner = None
            reply({"error": f"{type(exc).__name__}: {exc}"})
    return 0


class Worker:
    """The driver's handle on a worker process."""

    def __init__(self, impl: str, threads: int) -> None:
        self.impl, self.threads = impl, threads
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", f"{impl}:{threads}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )

    def ask(self, **cmd: Any) -> Dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"worker {self.impl}:{self.threads} exited (status {self.proc.poll()})"}
        return json.loads(line)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


# ------------------------------------------------------------------------------------------------------------
# Other load on the machine: CPU time used by processes that are not this benchmark, and the VM's steal time


class LoadMonitor:
    """Reads /proc (Linux only; elsewhere reports nothing) to tell how much of the machine was not ours."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.cpus = os.cpu_count() or 1
        self.waited = 0.0

    def snapshot(self) -> Optional[Tuple[float, float, float, float]]:
        """(wall, busy CPU seconds of the whole machine, steal seconds, CPU seconds of our processes)."""
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                f = [int(v) for v in fh.readline().split()[1:]]
            busy = f[0] + f[1] + f[2] + f[5] + f[6]  # user nice system irq softirq
            steal = f[7] if len(f) > 7 else 0
            own = 0
            for pid in self.pids:
                with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                    rest = fh.read().rsplit(")", 1)[1].split()
                own += int(rest[11]) + int(rest[12])  # utime stime
            t = os.times()
            return time.time(), busy / self.tick, steal / self.tick, own / self.tick + t.user + t.system
        except (OSError, ValueError, IndexError):
            return None

    def between(self, a: Any, b: Any) -> Optional[Dict[str, float]]:
        """Shares of the machine's CPU capacity between two snapshots: used by others, stolen by the host."""
        if a is None or b is None or b[0] <= a[0]:
            return None
        cap = (b[0] - a[0]) * self.cpus
        return {"others": max(0.0, (b[1] - a[1]) - (b[3] - a[3])) / cap, "steal": (b[2] - a[2]) / cap}

    def wait_quiet(self, limit: float, max_wait: float) -> float:
        """Wait (at most ``max_wait`` s) until others use less than ``limit`` of the CPU over half a second;
        returns the seconds waited."""
        start = time.time()
        while time.time() - start < max_wait:
            a = self.snapshot()
            time.sleep(0.5)
            load = self.between(a, self.snapshot())
            if load is None or load["others"] + load["steal"] < limit:
                break
        self.waited += time.time() - start
        return time.time() - start


# ------------------------------------------------------------------------------------------------------------
# Driver


def build_cases(shapes: Sequence[str], variants: Sequence[str], modes: Sequence[str]) -> List[Dict[str, Any]]:
    cases = []
    for variant in variants:
        for shape in _impls.VARIANT_SHAPES[variant]:
            if shape not in shapes:
                continue
            steps, batch, inp, hidden = _impls.SHAPES[shape]
            for mode in modes:
                cases.append(
                    {
                        "shape": shape,
                        "T": steps,
                        "N": batch,
                        "I": inp,
                        "H": hidden,
                        "variant": variant,
                        "mode": mode,
                    }
                )
    return cases


def available_impls(wanted: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """The implementations that can run here and a note for each one skipped."""
    have, notes = [], {}
    for impl in wanted:
        missing = {"torch": ["torch"], "ort": ["onnxruntime", "onnx"]}.get(impl, [])
        absent = [m for m in missing if importlib.util.find_spec(m) is None]
        if absent:
            notes[impl] = f"{_impls.IMPL_LABELS[impl]} skipped: {' and '.join(absent)} not installed"
        else:
            have.append(impl)
    return have, notes


def verify(case: Dict[str, Any], impls: Sequence[str], seed: int) -> Dict[str, Dict[str, Any]]:
    """Run each implementation once in this process; compare with torch (or, without torch, with NumPy)."""
    data = _impls.make_data(case, seed)
    ref_impl = "torch" if "torch" in impls else "numpy"
    outputs: Dict[str, Dict[str, Any]] = {}
    report: Dict[str, Dict[str, Any]] = {}
    for impl in impls:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runner = _impls.make_runner(impl, case, data)
                runner.run()
                outputs[impl] = runner.outputs()
        except _impls.Skip as exc:
            report[impl] = {"skip": str(exc)}
        except Exception as exc:
            report[impl] = {"error": f"{type(exc).__name__}: {exc}"}
    want = outputs.get(ref_impl)
    for impl, got in outputs.items():
        if impl == ref_impl:
            report[impl] = {"reference": True}
            continue
        errors = _impls.max_rel_error(got, want) if want is not None else {}
        worst = max(errors, key=errors.get) if errors else None
        entry: Dict[str, Any] = {
            "against": ref_impl,
            "worst": worst,
            "rel_error": None if worst is None else errors[worst],
        }
        missing = _impls.missing_outputs(got, want) if want is not None else None
        if missing and impl != "ort":
            entry["missing"] = missing
        entry["ok"] = worst is not None and errors[worst] <= TOLERANCE and "missing" not in entry
        report[impl] = entry
    return report


def time_case(
    case: Dict[str, Any], workers: List[Worker], args: argparse.Namespace, monitor: LoadMonitor
) -> Dict[str, Dict[str, Any]]:
    """Set up every worker for ``case`` (warm-up), then interleaved rounds of timed blocks.

    A block during which other processes took more than ``--noisy`` of the CPU is thrown away and timed again
    once the machine is quiet, while this case's waiting budget (``--quiet-wait``) lasts."""
    results: Dict[str, Dict[str, Any]] = {}
    # worker, inner, samples per block, block seconds, seconds per call
    active: List[Tuple[Worker, int, int, float, float]] = []
    for w in workers:
        key = f"{w.impl}:{w.threads}"
        time.sleep(args.cooldown)
        r = w.ask(op="setup", case=case, seed=args.seed, warm=args.warm)
        if "t_est" not in r:
            results[key] = r
            continue
        t_est = max(r["t_est"], 1e-7)
        inner = max(1, math.ceil(args.min_sample / t_est))
        per_block = max(1, min(50, round(args.block / (inner * t_est))))
        active.append((w, inner, per_block, per_block * inner * t_est, t_est))
        results[key] = {"t_est": t_est, "inner": inner, "samples": [], "discarded": 0, "noisy_kept": 0}
        results[key].update(r.get("info", {}))
    per_round = sum(max(b, t) for _, _, _, b, t in active) + args.cooldown * len(active)
    if args.repeats:
        rounds = args.repeats
    else:
        rounds = int(max(args.min_rounds, min(args.max_rounds, args.budget // max(per_round, 1e-9))))
    # Waiting budget: --quiet-wait, or more for cases whose blocks are long (s4: seconds per call).
    wait_left = args.quiet_wait and max(args.quiet_wait, 3 * rounds * per_round)
    for rnd in range(rounds):
        k = rnd % max(1, len(active))
        for w, inner, per_block, block_s, _ in active[k:] + active[:k]:
            entry = results[f"{w.impl}:{w.threads}"]
            for _attempt in range(4):
                time.sleep(args.cooldown)
                before = monitor.snapshot()
                r = w.ask(op="time", inner=inner, samples=per_block, prewarm=block_s < 0.05)
                load = monitor.between(before, monitor.snapshot())
                noisy = load is not None and load["others"] + load["steal"] > args.noisy
                if "error" in r or not noisy:
                    break
                if wait_left <= 0:
                    entry["noisy_kept"] += 1
                    break
                entry["discarded"] += 1
                wait_left -= monitor.wait_quiet(0.05, min(wait_left, 10.0))
            if "samples" in r and "error" not in entry:
                entry["samples"].extend(r["samples"])
            elif "error" in r:
                entry["error"] = r["error"]
    for w, *_ in active:
        w.ask(op="release")
    for entry in results.values():
        s = sorted(entry.get("samples") or [])
        if s:
            n = len(s)
            entry.update(median=(s[(n - 1) // 2] + s[n // 2]) / 2, min=s[0], max=s[-1], n=n, rounds=rounds)
    return results


# ------------------------------------------------------------------------------------------------------------
# Report


def fmt_time(sec: Optional[float]) -> str:
    if sec is None:
        return "–"
    if sec < 1e-3:
        return f"{sec * 1e6:.3g} µs"
    if sec < 1:
        return f"{sec * 1e3:.3g} ms"
    return f"{sec:.3g} s"


def fmt_range(entry: Dict[str, Any]) -> str:
    if "median" not in entry:
        return "–"
    lo, hi = entry["min"], entry["max"]
    scale = 1e6 if entry["median"] < 1e-3 else 1e3 if entry["median"] < 1 else 1
    return f"{fmt_time(entry['median'])} ({_num(lo * scale)}–{_num(hi * scale)})"


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def fmt_ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None:
        return "–"
    return f"{a / b:.2f}"


def case_label(case: Dict[str, Any]) -> str:
    return f"{case['shape']} {_impls.VARIANT_LABELS[case['variant']]}"


def shape_line(shape: str) -> str:
    steps, batch, inp, hidden = _impls.SHAPES[shape]
    return f"{shape} = (T={steps}, N={batch}, I={inp}, H={hidden})"


def median_of(results: Dict[str, Dict[str, Any]], impl: str, threads: int) -> Optional[float]:
    return results.get(f"{impl}:{threads}", {}).get("median")


def detail_table(
    cases: List[Dict[str, Any]], all_results: Dict[str, Any], impls: List[str], threads: List[int]
) -> str:
    anchors = [i for i in impls if i != "lstm_ext"]
    head = (
        ["case", "mode", "threads"]
        + [_impls.IMPL_LABELS[i] for i in impls]
        + [f"ext / {_impls.IMPL_LABELS[a]}" for a in anchors]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        res = all_results[_impls.case_key(case)]["timing"]
        for t in threads:
            ext = median_of(res, "lstm_ext", t)
            row = [case_label(case), case["mode"], str(t)]
            row += [
                fmt_range(res.get(f"{i}:{t}", {}))
                + (" ᵃ" if res.get(f"{i}:{t}", {}).get("weight_hh_aligned64") else "")
                for i in impls
            ]
            row += [fmt_ratio(ext, median_of(res, a, t)) for a in anchors]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def best_table(
    cases: List[Dict[str, Any]], all_results: Dict[str, Any], impls: List[str], threads: List[int]
) -> str:
    anchors = [i for i in impls if i != "lstm_ext"]
    tmax = max(threads)
    head = (
        ["case", "mode"]
        + [f"lstm_ext @{t}" for t in threads]
        + ["best anchor (impl @threads)", f"ext @{tmax} / best", "ext best / best", f"ext GFLOP/s @{tmax}"]
    )
    scaling = len(threads) > 1
    if scaling:
        head += [f"{_impls.IMPL_LABELS[i]} @{tmax}/@{min(threads)}" for i in impls]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        res = all_results[_impls.case_key(case)]["timing"]
        ext = {t: median_of(res, "lstm_ext", t) for t in threads}
        cands = [
            (median_of(res, a, t), a, t) for a in anchors for t in threads if median_of(res, a, t) is not None
        ]
        best = min(cands) if cands else None
        ext_best = min([v for v in ext.values() if v is not None], default=None)
        noisy = any(e.get("noisy_kept") for e in res.values())
        row = [case_label(case) + (" ⚠" if noisy else ""), case["mode"]] + [fmt_time(ext[t]) for t in threads]
        row += [
            f"{fmt_time(best[0])} ({_impls.IMPL_LABELS[best[1]]} @{best[2]})" if best else "–",
            f"**{fmt_ratio(ext[tmax], best[0] if best else None)}**",
            fmt_ratio(ext_best, best[0] if best else None),
            f"{_impls.case_flops(case) / ext[tmax] / 1e9:.0f}" if ext[tmax] else "–",
        ]
        if scaling:
            row += [fmt_ratio(median_of(res, i, tmax), median_of(res, i, min(threads))) for i in impls]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def check_table(cases: List[Dict[str, Any]], all_results: Dict[str, Any], impls: List[str]) -> str:
    others = [i for i in impls if i != "torch"] if "torch" in impls else [i for i in impls if i != "numpy"]
    head = ["case", "mode"] + [_impls.IMPL_LABELS[i] for i in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        rep = all_results[_impls.case_key(case)]["check"]
        row = [case_label(case), case["mode"]]
        for impl in others:
            e = rep.get(impl, {})
            if "skip" in e:
                row.append("skipped")
            elif "error" in e:
                row.append(f"error: {e['error']}")
            elif e.get("rel_error") is None:
                row.append("–")
            else:
                mark = "ok" if e["ok"] else "**MISMATCH**"
                extra = f"; missing {e['missing']}" if e.get("missing") else ""
                row.append(f"{mark} {e['rel_error']:.1e} ({e['worst']}{extra})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine_info() -> Dict[str, str]:
    info = {"model": platform.processor() or platform.machine(), "cpus": str(os.cpu_count())}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["model"] = fields.get("Model name", info["model"])
        info["cpus"] = fields.get("CPU(s)", info["cpus"])
        info["cores"] = (
            f"{fields.get('Core(s) per socket', '?')} core(s) per socket × {fields.get('Socket(s)', '?')}"
            f" socket(s), {fields.get('Thread(s) per core', '?')} thread(s) per core"
        )
        flags = fields.get("Flags", "").split()
        info["isa"] = ", ".join(
            f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags
        )
        if fields.get("Hypervisor vendor"):
            info["hypervisor"] = fields["Hypervisor vendor"]
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return info


def versions() -> Dict[str, str]:
    import numpy

    import lstm_ext

    v = {"python": platform.python_version(), "numpy": numpy.__version__, "lstm_ext": lstm_ext.__version__}
    # Which build of lstm_ext: the extension's modification time, and the source tree's commit.
    try:
        from lstm_ext import _core

        built = datetime.datetime.fromtimestamp(os.path.getmtime(_core.__file__), datetime.timezone.utc)
        v["lstm_ext"] += f" (extension built {built:%Y-%m-%d %H:%M} UTC"
        git = ["git", "-C", os.path.dirname(HERE)]
        head = subprocess.run(
            git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            git + ["status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        v["lstm_ext"] += f"; source tree at {head.stdout.strip()}{' with local changes' if dirty else ''})"
    except (OSError, AttributeError, subprocess.CalledProcessError):
        v["lstm_ext"] += ")" if "(" in v["lstm_ext"] else ""
    for mod in ("torch", "onnxruntime", "onnx"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            v[mod] = "not installed"
    try:
        blas = numpy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        v["numpy BLAS"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        pass
    return v


def render(
    cases: List[Dict[str, Any]],
    all_results: Dict[str, Any],
    impls: List[str],
    threads: List[int],
    notes: List[str],
    meta: Dict[str, Any],
) -> str:
    shapes = sorted({c["shape"] for c in cases}, key=list(_impls.SHAPES).index)
    out = [
        "## bench/compare.py — lstm_ext vs "
        + ", ".join(_impls.IMPL_LABELS[i] for i in impls if i != "lstm_ext"),
        "",
        f"- Command: `{meta['command']}` (run time {meta['runtime_s'] / 60:.1f} min, of which "
        f"{meta['waited_s'] / 60:.1f} min waiting for other processes to go quiet)",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine'].get('model')}; {meta['machine'].get('cpus')} CPU(s) "
        f"({meta['machine'].get('cores', '?')}); {meta['machine'].get('isa', '')}"
        + (f"; {meta['machine']['hypervisor']} guest" if meta["machine"].get("hypervisor") else ""),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- Threads: {', '.join(map(str, threads))} (each implementation and thread count in its own "
        "process); "
        "float32 throughout",
        "- Shapes (T steps, N batch, I input, H hidden): " + "; ".join(shape_line(s) for s in shapes),
        "- Variants: GRU (torch's reset-after form, ONNX `linear_before_reset=1`); LSTM proj H/2 "
        "(`proj_size = H/2`); LSTM bidir (one bidirectional layer); LSTM ragged (unsorted lengths uniform in "
        "[T/4, T]: lstm_ext `lengths=`, torch `pack_padded_sequence(enforce_sorted=False)` + "
        "`pad_packed_sequence`, ONNX `sequence_lens`); LSTMCell (one step, N=1, given `(h, c)`).",
        "- Modes: `fwd` = inference (torch under `inference_mode`; ONNX Runtime `InferenceSession.run`); "
        "`train` = training forward + backward for a given dL/dy, with `dx` and every weight gradient "
        "(torch: `x.requires_grad_()`, `y.backward(dy)`). ONNX Runtime: inference only. NumPy: float32, "
        "written by hand "
        "(`bench/_numpy_rnn.py`: one input GEMM, one product per step, NumPy gate ops).",
        "- Timing: warm-up, then interleaved rounds (every worker one block per round, rotating order); a "
        "sample is the mean of back-to-back calls lasting ≥ 1 ms. Cells: median (min–max) over all samples; "
        "ratios are lstm_ext's median / the anchor's median: **below 1 means lstm_ext is faster**.",
    ]
    for note in notes:
        out.append(f"- Note: {note}")
    out += [
        "",
        "### lstm_ext against the best anchor",
        "",
        f"`ext @{max(threads)} / best`: lstm_ext at {max(threads)} threads over the fastest anchor at any "
        "thread count; `ext best / best`: lstm_ext's best thread count over the same; GFLOP/s: the matrix "
        "products' arithmetic (2·rows·G·(I+H_out) per direction, ×3 for train) over lstm_ext's median. "
        "The last columns are "
        f"each implementation's own thread scaling (time @{max(threads)} / time @{min(threads)}: above 1 "
        "means more threads made it slower).",
        "",
        best_table(cases, all_results, impls, threads),
        "",
        "### Every implementation, per thread count",
        "",
        "Median (min–max), then lstm_ext's median over each anchor's at the same thread count. ᵃ: in that "
        "worker lstm_ext's `weight_hh` happened to be 64-byte aligned (NumPy guarantees 16 bytes). Before the "
        "recurrent weights were packed once per call (December 2026) that alone made N=1 calls up to ~35% "
        "faster; the kernels no longer read `weight_hh` in place, so the mark is a diagnostic only.",
        "",
        detail_table(cases, all_results, impls, threads),
        "",
        "### Check against PyTorch before timing",
        "",
        "Worst relative error `max|a - b| / max|b|` over outputs, final states and, for `train`, dx and "
        "every "
        f"weight gradient (limit {TOLERANCE:g}; float32).",
        "",
        check_table(cases, all_results, impls),
        "",
    ]
    return "\n".join(out)


def write_section(path: str, text: str) -> None:
    block = f"{MARK_BEGIN}\n{text}\n{MARK_END}\n"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        if MARK_BEGIN in old and MARK_END in old:
            head, rest = old.split(MARK_BEGIN, 1)
            tail = rest.split(MARK_END, 1)[1].lstrip("\n")
            new = head + block + ("\n" + tail if tail else "")
        else:
            new = old.rstrip("\n") + "\n\n" + block
    else:
        new = "# Benchmarks\n\n" + block
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(new)


# ------------------------------------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="shapes s1,s2,s5,cell, 3 rounds, shorter blocks and warm-up (under 2 minutes)",
    )
    p.add_argument("--shapes", help=f"comma-separated subset of {','.join(_impls.SHAPES)} (default: all)")
    p.add_argument(
        "--variants", help=f"comma-separated subset of {','.join(_impls.VARIANT_SHAPES)} (default: all)"
    )
    p.add_argument("--modes", default="fwd,train", help="fwd, train or both (default)")
    p.add_argument("--impls", default=",".join(_impls.IMPLS), help="default: lstm_ext,torch,ort,numpy")
    p.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    p.add_argument("--repeats", type=int, help="interleaved rounds per case (default: 5-10 by a time budget)")
    p.add_argument(
        "--budget", type=float, default=6.0, help="seconds of timing per case that set the rounds (default 6)"
    )
    p.add_argument("--block", type=float, default=0.1, help="seconds per worker block (default 0.1)")
    p.add_argument(
        "--warm", type=float, default=0.2, help="warm-up seconds per worker and case (default 0.2)"
    )
    p.add_argument(
        "--cooldown",
        type=float,
        default=0.01,
        help="pause before each block, so the previous worker's thread pool goes idle (default 0.01 s)",
    )
    p.add_argument(
        "--noisy",
        type=float,
        default=0.2,
        help="a block during which other processes used more than this share of the CPU is timed again "
        "(default 0.2)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds per case to spend waiting for other processes to go quiet before re-timing a "
        "noisy block (0: keep noisy blocks; default 120)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--write", metavar="FILE", help="write/update the results section in FILE (e.g. BENCHMARKS.md)"
    )
    p.add_argument("--json", metavar="FILE", help="also dump every sample as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.min_sample, args.min_rounds, args.max_rounds = 1e-3, 5, 10
    if args.quick:
        args.shapes = args.shapes or "s1,s2,s5,cell"
        args.repeats = args.repeats or 3
        args.block, args.warm, args.budget = 0.05, 0.1, 2.0
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        impl, threads = args.worker.split(":")
        return worker_main(impl, int(threads))

    started = time.time()
    shapes = args.shapes.split(",") if args.shapes else list(_impls.SHAPES)
    variants = args.variants.split(",") if args.variants else list(_impls.VARIANT_SHAPES)
    modes = args.modes.split(",")
    threads = sorted({int(t) for t in args.threads.split(",")})
    for name, values, allowed in (
        ("shapes", shapes, _impls.SHAPES),
        ("variants", variants, _impls.VARIANT_SHAPES),
        ("modes", modes, ("fwd", "train")),
        ("impls", args.impls.split(","), _impls.IMPLS),
    ):
        bad = [v for v in values if v not in allowed]
        if bad:
            print(f"--{name}: unknown {bad}; expected some of {list(allowed)}", file=sys.stderr)
            return 2
    if "cell" in shapes and "cell" not in variants and not args.variants:
        variants.append("cell")
    cases = build_cases(shapes, variants, modes)
    if not cases:
        print(
            "no cases: check --shapes and --variants (variants run on "
            + "; ".join(f"{v}: {','.join(s)}" for v, s in _impls.VARIANT_SHAPES.items())
            + ")",
            file=sys.stderr,
        )
        return 2
    impls, skipped = available_impls(args.impls.split(","))
    if "lstm_ext" not in impls:
        print("--impls must include lstm_ext", file=sys.stderr)
        return 2
    notes = list(skipped.values())
    if "torch" not in impls:
        notes.append("without PyTorch, outputs are checked against the NumPy baseline")
    print(f"compare: {len(cases)} cases × {len(impls)} implementations × threads {threads}", file=sys.stderr)

    workers = [Worker(impl, t) for impl in impls for t in threads]
    monitor = LoadMonitor([w.proc.pid for w in workers])
    run_start = monitor.snapshot()
    all_results: Dict[str, Any] = {}
    failed = False
    try:
        for n, case in enumerate(cases, 1):
            t0 = time.time()
            check = verify(case, impls, args.seed)
            failed |= any(e.get("ok") is False or "error" in e for e in check.values())
            # The machine may be shared: let other load settle before the warm-ups.
            monitor.wait_quiet(0.05, min(args.quiet_wait, 10.0))
            before = monitor.snapshot()
            timing = time_case(case, workers, args, monitor)
            load = monitor.between(before, monitor.snapshot())
            all_results[_impls.case_key(case)] = {
                "case": case,
                "check": check,
                "timing": timing,
                "load": load,
            }
            ext = {t: median_of(timing, "lstm_ext", t) for t in threads}
            print(
                f"[{n}/{len(cases)}] {case_label(case):24s} {case['mode']:5s} "
                + "  ".join(f"ext@{t} {fmt_time(v)}" for t, v in ext.items())
                + (f"  others {load['others']:.0%} steal {load['steal']:.0%}" if load else "")
                + f"  waited {monitor.waited:.0f} s"
                + f"  re-timed {sum(e.get('discarded', 0) for e in timing.values())}"
                + f" kept-noisy {sum(e.get('noisy_kept', 0) for e in timing.values())}"
                + f"  ({time.time() - t0:.1f} s, total {(time.time() - started) / 60:.1f} min)",
                file=sys.stderr,
            )
    finally:
        run_load = monitor.between(run_start, monitor.snapshot())
        for w in workers:
            w.close()
    if run_load is not None:
        retimed = sum(e.get("discarded", 0) for r in all_results.values() for e in r["timing"].values())
        kept = {
            f"{case_label(r['case'])} {r['case']['mode']}": sum(
                e.get("noisy_kept", 0) for e in r["timing"].values()
            )
            for r in all_results.values()
        }
        kept = {k: v for k, v in kept.items() if v}
        notes.append(
            f"the machine is shared: other processes used {run_load['others']:.1%} of its CPU time during "
            f"the run (waits included), the hypervisor stole {run_load['steal']:.1%}; {retimed} timing "
            f"block(s) were thrown away and timed again because others used more than {args.noisy:.0%} "
            "of the CPU meanwhile"
            + (
                "; noisy blocks kept because the waiting budget was spent (cases marked ⚠): "
                + ", ".join(f"{k} ({v})" for k, v in kept.items())
                if kept
                else ""
            )
        )

    ort_skips = sorted(
        {
            e["skip"]
            for r in all_results.values()
            for k, e in r["timing"].items()
            if k.startswith("ort:") and "skip" in e
        }
    )
    if ort_skips:
        notes.append("ONNX Runtime not timed: " + "; ".join(ort_skips))
    errors = sorted(
        {
            f"{k} on {key}: {e['error']}"
            for key, r in all_results.items()
            for k, e in r["timing"].items()
            if "error" in e
        }
    )
    notes += [f"error: {e}" for e in errors]
    failed |= bool(errors)

    command = "python " + " ".join(
        shlex.quote(a) for a in ([os.path.relpath(__file__)] + list(sys.argv[1:] if argv is None else argv))
    )
    meta = {
        "command": command,
        "runtime_s": time.time() - started,
        "waited_s": monitor.waited,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": versions(),
    }
    text = render(cases, all_results, impls, threads, notes, meta)
    print(text)
    if args.write:
        write_section(args.write, text)
        print(f"\nwrote {args.write}", file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "notes": notes, "results": all_results}, fh, indent=1)
    if failed:
        print(
            "compare: some outputs did not match PyTorch or a worker failed (see the tables)", file=sys.stderr
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
