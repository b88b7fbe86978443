"""Entry points: run both benchmark processes, merge their figures, write the report.

``python -m experiments bench [--quick] [--out DIR] [--seed N]`` (or
``python -m experiments.bench ...``) starts two worker processes one after
the other, without and with ``XLA_FLAGS=--xla_backend_extra_options=
xla_cpu_use_multi_output_fusion`` (process-wide, so it cannot be toggled
within one process), and writes to ``DIR``: ``plain.json``, ``flag.json``
(each worker's figures), ``bench.json`` (merged, with the machine, versions,
load and date) and ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

from experiments.bench import report, timing
from experiments.bench.variants import REF
from experiments.bench.worker import FLAG

ROOT = pathlib.Path(__file__).resolve().parents[2]


def worker_env(label: str) -> dict[str, str]:
    """This process's environment with the multi-output fusion option removed (plain) or added (flag)."""
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


def cross_ratios(flag: dict[str, Any], plain: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Each flag-process variant's time over the plain process's ``optax.adamw`` (unpaired bootstrap)."""
    ref = plain["variants"][REF]["samples_s"]
    return {name: timing.paired_ratio(v["samples_s"], ref, rng, paired=False)
            for name, v in flag["variants"].items() if "samples_s" in v and v.get("kind") == "jax"}


def run(out_dir: pathlib.Path, mode: str, seed: int = 0, command: str = "", timeout_s: float = 3600) -> dict[str, Any]:
    """Runs both workers, merges their JSON into ``bench.json``, writes ``BENCHMARKS.md``."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0, stat0 = time.perf_counter(), cpu_times()
    load = {"start": list(os.getloadavg())}
    workers: dict[str, Any] = {}
    for label in ("plain", "flag"):
        f = out_dir / f"{label}.json"
        print(f"bench ({mode}): worker {label} -> {f}", flush=True)
        subprocess.run([sys.executable, "-m", "experiments.bench", "--worker", label, "--mode", mode,
                        "--seed", str(seed), "--out", str(f)],
                       check=True, env=worker_env(label), cwd=ROOT, timeout=timeout_s)
        workers[label] = json.loads(f.read_text())
        load[f"after_{label}"] = list(os.getloadavg())
    rng = np.random.default_rng(seed + 1)
    from experiments.bench.trees import config

    result: dict[str, Any] = {
        "command": command or f"python -m experiments bench{' --quick' if mode == 'quick' else ''}",
        "mode": mode, "seed": seed, "note": config(mode).note, "reps": config(mode).reps,
        "machine": machine(), "load": load, "cpu_share": load_during(stat0, cpu_times()),
        "workers": workers,
        "cross": {"trees": [cross_ratios(f, p, rng) for f, p in zip(workers["flag"]["trees"], workers["plain"]["trees"],
                                                                     strict=True)],
                  "train": cross_ratios(workers["flag"]["train"], workers["plain"]["train"], rng)},
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
    ap.add_argument("--quick", action="store_true", help="the issue's trees, fewer repetitions")
    ap.add_argument("--tiny", action="store_true", help="smoke run (tests): outputs only, figures meaningless")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/bench"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--publish", type=pathlib.Path, metavar="RUN_DIR", default=None,
                    help="copy RUN_DIR's report to ./BENCHMARKS.md and docs/assets/bench/ (no run)")
    ap.add_argument("--worker", choices=("plain", "flag"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="quick", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        from experiments.bench import worker

        worker.main(args.mode, args.seed, args.worker, args.out)
    elif args.publish is not None:
        publish(args.publish)
    elif args.tiny:
        run(args.out, "tiny", args.seed, command=f"python -m experiments.bench --tiny --out {args.out}")
    else:
        main(args.out, args.quick, args.seed)
