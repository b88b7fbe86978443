"""Entry points: run the benchmark processes in lockstep, merge their figures, write the report.

``python -m experiments bench [--quick] [--out DIR] [--seed N]`` (or
``python -m experiments.bench ...``) starts three worker processes
(:mod:`experiments.bench.worker`): **plain** (no option), **flag**
(``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``,
process-wide, so it cannot be toggled within one process) and **control**
(plain again, timing ``optax.adamw`` only: the cross-process A/A control).
They hold their sections' buffers side by side and the driver runs one
repetition in each process in turn (a fresh random order of the processes
per round: A B C, B A C, ...), so that repetition ``i`` of every process ran
within a second of the others: every cross-process ratio is a *paired*
ratio with a paired bootstrap CI. After the timed sections, the driver
measures compile time against the number of distinct coefficient values
(:mod:`experiments.bench.coeff_compile`), the scheduled first ``init``
and first compile (``experiments/measure_schedule_init.py``) and the cost of
opt-in options such as ``decaytx.monitor`` (:mod:`experiments.bench.options`),
in fresh processes.

Writes to ``DIR``: ``plain.json``, ``flag.json``, ``control.json`` (each
worker's figures), ``bench.json`` (merged, with the cross-process ratios, the
machine, versions, load and date) and ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import pathlib
import platform
import select
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from experiments.bench import report, timing
from experiments.bench.variants import REF
from experiments.bench.worker import FLAG, LABELS

ROOT = pathlib.Path(__file__).resolve().parents[2]


def worker_env(label: str) -> dict[str, str]:
    """This process's environment with the multi-output fusion option removed (plain, control) or added (flag)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_cpu_use_multi_output_fusion" not in f]
    if label == "flag":
        flags.append(FLAG)
    env["XLA_FLAGS"] = " ".join(flags)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def cpu_times() -> list[int]:
    """The ``cpu`` line of /proc/stat: user, nice, system, idle, iowait, ... (empty where absent)."""
    try:
        return [int(x) for x in pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return []


def load_during(before: list[int], after: list[int]) -> dict[str, float]:
    """Shares of all CPU time during the run: user (this benchmark and any normal-priority job), nice, system, idle."""
    if not before or not after:
        return {}
    d = [b - a for a, b in zip(before, after, strict=False)]
    total = max(sum(d), 1)
    return {k: d[i] / total for i, k in enumerate(("user", "nice", "system", "idle"))}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    versions = {"python": platform.python_version()}
    for mod in ("jax", "jaxlib", "optax", "numpy", "decaytx", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "platform": platform.platform(),
            "versions": versions, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def cross_ratios(plain: dict[str, Any], flag: dict[str, Any], control: dict[str, Any],
                 rng: np.random.Generator) -> dict[str, Any]:
    """Paired cross-process ratios of one section (repetition ``i`` of each process ran side by side).

    ``vs_plain_optax``: each flag variant over plain ``optax.adamw``;
    ``vs_plain_same``: each flag variant over the same variant in plain (the
    option's effect on it); ``control``: the control process's
    ``optax.adamw`` over plain's (the cross-process A/A control).
    """
    pv, fv = plain["variants"], flag["variants"]
    ref = pv[REF]["samples_s"]
    jax_rows = {k: v for k, v in fv.items() if "samples_s" in v and v.get("kind") == "jax"}
    return {
        "vs_plain_optax": {k: timing.paired_ratio(v["samples_s"], ref, rng) for k, v in jax_rows.items()},
        "vs_plain_same": {k: timing.paired_ratio(v["samples_s"], pv[k]["samples_s"], rng)
                          for k, v in jax_rows.items() if k in pv},
        "control": timing.paired_ratio(control["variants"][REF]["samples_s"], ref, rng),
    }


class Worker:
    """A worker process and its command pipe."""

    def __init__(self, label: str, mode: str, seed: int, deadline: float):
        self.label, self.deadline = label, deadline
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.bench", "--worker", label, "--mode", mode, "--seed", str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=worker_env(label), cwd=ROOT)

    def call(self, cmd: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], max(self.deadline - time.monotonic(), 0))
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise RuntimeError(f"bench worker {self.label}: no answer to {cmd!r} "
                               f"({'timed out' if not ready else f'exit code {self.proc.wait()}'})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"bench worker {self.label} failed on {cmd!r}:\n{reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def lockstep(mode: str, seed: int, timeout_s: float, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Every worker's figures; the timed sections' repetitions alternate between the processes."""
    from experiments.bench.trees import config

    cfg = config(mode)
    deadline = time.monotonic() + timeout_s
    ws = {label: Worker(label, mode, seed, deadline) for label in LABELS}
    order = np.random.default_rng([seed, 7])
    try:
        out = {label: w.call("static") for label, w in ws.items()}
        for label in ws:
            out[label]["trees"] = []
        sections = [("tree", i) for i in range(len(cfg.trees))] + [("train", len(cfg.trees))]
        for kind, i in sections:
            log(f"bench ({mode}): {kind} {i}: setting up {', '.join(ws)}")
            steps = ws["plain"].call("setup", section=kind, index=i, steps=None)["steps"]
            for label in ("flag", "control"):
                ws[label].call("setup", section=kind, index=i, steps=steps)
            for _ in range(cfg.reps):
                for j in order.permutation(len(LABELS)):
                    ws[LABELS[j]].call("rep")
            for label, w in ws.items():
                r = w.call("finish")
                if kind == "tree":
                    out[label]["trees"].append(r)
                else:
                    out[label]["train"] = r
    finally:
        for w in ws.values():
            w.close()
    return out


TIMEOUT_S = {"full": 6 * 3600, "quick": 2 * 3600, "tiny": 1800}


def run(out_dir: pathlib.Path, mode: str, seed: int = 0, command: str = "",
        timeout_s: float | None = None) -> dict[str, Any]:
    """Runs the workers in lockstep and the fresh-process sections; writes ``bench.json`` and ``BENCHMARKS.md``."""
    from experiments.bench import coeff_compile, options, sched_init
    from experiments.bench.trees import config

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0, stat0 = time.perf_counter(), cpu_times()
    load = {"start": list(os.getloadavg())}

    def log(s: str) -> None:
        print(s, flush=True)

    workers = lockstep(mode, seed, timeout_s or TIMEOUT_S[mode], log)
    load["after_timed"] = list(os.getloadavg())
    for label, w in workers.items():
        (out_dir / f"{label}.json").write_text(json.dumps(w, default=float))
    log(f"bench ({mode}): compile time against distinct coefficient values (fresh processes)")
    coeff = coeff_compile.measure(**coeff_compile.MODES[mode], env=worker_env("plain"), log=log)
    log(f"bench ({mode}): scheduled first init / first compile (experiments/measure_schedule_init.py)")
    sched = sched_init.measure(sched_init.MODES[mode], env=worker_env("plain"))
    log(f"bench ({mode}): cost of options ({', '.join(options.OPTIONS)}; fresh processes)")
    costs = options.measure(mode, env=worker_env("plain"), log=log)
    load["end"] = list(os.getloadavg())
    rng = np.random.default_rng(seed + 1)
    p, f, c = workers["plain"], workers["flag"], workers["control"]
    result: dict[str, Any] = {
        "command": command or f"python -m experiments bench{' --quick' if mode == 'quick' else ''}",
        "mode": mode, "seed": seed, "note": config(mode).note, "reps": config(mode).reps,
        "machine": machine(), "load": load, "cpu_share": load_during(stat0, cpu_times()),
        "workers": workers,
        "cross": {"trees": [cross_ratios(*t, rng) for t in zip(p["trees"], f["trees"], c["trees"], strict=True)],
                  "train": cross_ratios(p["train"], f["train"], c["train"], rng)},
        "coeff_compile": coeff, "schedule_init": sched, "options": costs,
        "wall_s": time.perf_counter() - t0,
    }
    (out_dir / "bench.json").write_text(json.dumps(result, indent=1, default=float))
    (out_dir / "BENCHMARKS.md").write_text(report.render(result))
    print(f"wrote {out_dir / 'bench.json'} and {out_dir / 'BENCHMARKS.md'} in {result['wall_s']:.0f}s", flush=True)
    print(report.summary(result), flush=True)
    return result


def main(out_dir: pathlib.Path, quick: bool, seed: int) -> None:
    """``python -m experiments bench [--quick] [--out DIR] [--seed N]``."""
    cmd = "python -m experiments bench" + (" --quick" if quick else "") + f" --out {out_dir}" + (
        f" --seed {seed}" if seed else "")
    run(pathlib.Path(out_dir), "quick" if quick else "full", seed, command=cmd)


def publish(out_dir: pathlib.Path, root: pathlib.Path | None = None) -> None:
    """Copies a run's report to ``BENCHMARKS.md`` and its ``bench.json`` to ``docs/assets/bench/``."""
    root = root or ROOT
    result = json.loads((pathlib.Path(out_dir) / "bench.json").read_text())
    assets = root / "docs" / "assets" / "bench"
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "bench.json").write_text((pathlib.Path(out_dir) / "bench.json").read_text())
    (root / "BENCHMARKS.md").write_text(report.render(result))
    print(f"published {out_dir} -> {root / 'BENCHMARKS.md'}, {assets / 'bench.json'}")


def cli(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the full run's trees, fewer repetitions")
    ap.add_argument("--tiny", action="store_true", help="smoke run (tests): outputs only, figures meaningless")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/bench"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--publish", type=pathlib.Path, metavar="RUN_DIR", default=None,
                    help="copy RUN_DIR's report to ./BENCHMARKS.md and docs/assets/bench/ (no run)")
    ap.add_argument("--worker", choices=LABELS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="quick", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        from experiments.bench import worker

        worker.serve(args.mode, args.seed, args.worker)
    elif args.publish is not None:
        publish(args.publish)
    elif args.tiny:
        run(args.out, "tiny", args.seed, command=f"python -m experiments.bench --tiny --out {args.out}")
    else:
        main(args.out, args.quick, args.seed)
