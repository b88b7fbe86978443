"""``python -m experiments <study> [--quick|--smoke] [--out DIR] [--seed N]``."""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import platform
import sys
import time
import warnings

from experiments import FULL_ONLY, SECONDS, STUDIES, common
from experiments.report import Claim, Context, summary_table, write_report, write_results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Test the claims of the weight-decay notes with decaytx; writes "
        "results.json, one PNG per claim and report.md into --out.",
        epilog="studies:\n  all (every claim; --quick leaves out " + ", ".join(sorted(FULL_ONLY)) + ")\n  "
        + "\n  ".join(STUDIES) + "\n  bench (benchmarks)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", choices=["all", *STUDIES, "bench"], metavar="study",
                   help="'all', one claim id (" + ", ".join(STUDIES) + ") or 'bench'")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small runs: all studies in a few minutes on 2 CPU cores")
    size.add_argument("--smoke", action="store_true", help="tiny runs for the test suite (verdicts not meaningful)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/report"), help="output folder (default out/report)")
    p.add_argument("--seed", type=int, default=0, help="base seed (data split, init, minibatches)")
    return p


def run_bench(out_dir: pathlib.Path, quick: bool, seed: int) -> int:
    try:
        bench = importlib.import_module("experiments.bench")
    except ModuleNotFoundError as e:
        if e.name != "experiments.bench":
            raise
        print("experiments.bench is not available yet; skipping the benchmarks.")
        return 0
    main = getattr(bench, "main", None)
    if main is None:
        print("experiments.bench has no main(out_dir, quick, seed) yet; skipping the benchmarks.")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    main(out_dir, quick, seed)
    return 0


def run_study(study_id: str, ctx: Context) -> Claim:
    module = importlib.import_module(f"experiments.{STUDIES[study_id]}")
    t0, c0 = time.perf_counter(), _cpu()
    claim = module.run(ctx)
    claim.seconds = time.perf_counter() - t0
    claim.cpu_seconds = _cpu() - c0  # user + sys of every thread of this process and of its subprocesses
    assert claim.id == study_id, (claim.id, study_id)
    return claim


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.study == "bench":
        return run_bench(args.out, mode != "full", args.seed)
    ids = [i for i in STUDIES if mode != "quick" or i not in FULL_ONLY] if args.study == "all" else [args.study]
    if mode == "quick" and set(ids) & FULL_ONLY:
        print(f"{args.study} runs in full mode only; run it without --quick.")
        return 2
    common.FAST_FIGURES = mode == "smoke"
    ctx = Context.make(args.out, mode, args.seed)
    t0, c0 = time.perf_counter(), _cpu()
    claims = []
    planned = sum(SECONDS[i][mode] for i in ids)
    print(f"{len(ids)} studies ({mode}); estimated {_minutes(planned)} on 2 idle cores "
          "(from measured per-study costs)", flush=True)
    with warnings.catch_warnings():
        # DecayWarnings are part of what some studies show; keep them quiet here.
        warnings.simplefilter("ignore", category=UserWarning)
        for i, study_id in enumerate(ids, 1):
            print(f"[{i}/{len(ids)}] {study_id} ({mode})", flush=True)
            print(f"    {_progress(ids, i - 1, mode, time.perf_counter() - t0)}", flush=True)
            claim = run_study(study_id, ctx)
            print(f"    {'HOLDS' if claim.holds else 'does not hold'} ({claim.seconds:.0f} s wall, "
                  f"{claim.cpu_seconds:.0f} s CPU)", flush=True)
            claims.append(claim)
            # Written after every study, so a crash or a kill keeps the studies already done.
            write_results(args.out, claims, _meta(args, argv, mode, claims, t0, c0, partial=len(claims) < len(ids)))
    path = write_results(args.out, claims, _meta(args, argv, mode, claims, t0, c0, partial=False))
    report = write_report(args.out)
    all_claims = json.loads(path.read_text())["claims"]
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    print()
    print(summary_table(all_claims))
    print(f"\n{len(claims)} studies in {wall:.0f} s wall, {cpu:.0f} s CPU ({mode}).\nReport: {report}\nResults: {path}")
    return 0


def _cpu() -> float:
    """CPU time (user + sys) of this process and of the subprocesses it has waited for."""
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _progress(ids: list[str], done: int, mode: str, elapsed: float) -> str:
    """Overall position and time left: the remaining studies' measured costs, scaled by
    how this run's elapsed time compares with the costs of the studies already done."""
    est_done = sum(SECONDS[i][mode] for i in ids[:done])
    left = sum(SECONDS[i][mode] for i in ids[done:])
    pace = elapsed / est_done if done and est_done > 0 else 1.0
    share = est_done / max(est_done + left, 1e-9)
    return f"{share:.0%} of the estimated work done, {_minutes(elapsed)} elapsed, about {_minutes(left * pace)} left"


def _meta(args: argparse.Namespace, argv: list[str] | None, mode: str, claims: list[Claim], t0: float, c0: float,
          *, partial: bool) -> dict:
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    meta = {
        "mode": mode,
        "seed": args.seed,
        "command": "python -m experiments " + " ".join(sys.argv[1:] if argv is None else argv),
        "wall_seconds": wall,
        "study_seconds": {c.id: c.seconds for c in claims},
        # CPU time (user + sys) does not grow when other jobs share the machine; wall time does.
        # On 2 idle cores the wall time is at least cpu/2 (perfect use of both) and at most cpu.
        "cpu_seconds": cpu,
        "study_cpu_seconds": {c.id: c.cpu_seconds for c in claims},
        "load_average_at_end": _load(),
        "machine": f"{platform.machine()}, {_cpus()} CPU cores, {platform.python_implementation()} {platform.python_version()}",
    }
    if partial:
        meta["partial"] = True  # a run still going (or killed): only the studies listed are done
    return meta


def _load() -> float | None:
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
