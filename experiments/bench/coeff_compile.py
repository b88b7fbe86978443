"""Compile time against the number of distinct coefficient values.

A coefficient tree (one λ per leaf: layer-wise decay, per-leaf learning
rates) should not cost more compile time when its values differ. This
compiles one step (``update`` + ``optax.apply_updates``, params and state
donated) of ``decaytx.adamw(lr, λ_tree)`` over ``--leaves`` leaves whose
coefficient tree holds 1, 10, 100, ... distinct values, each case in a fresh
process (no cache shared between cases), and prints each case's seconds as a
ratio to the shared-λ case (a tree of one repeated value); a scalar λ is
timed beside it. Per case: ``init`` seconds, lowering (tracing) seconds, XLA
compile seconds, and the number of distinct f32 scalar constants in the
compiled HLO (a λ baked into the program is one of them)::

    python -m experiments.bench.coeff_compile                        # 1000 leaves; 1, 10, 100, 1000 values
    python -m experiments.bench.coeff_compile --leaves 100 --distinct 1 10 100

It measures whatever decaytx is importable (this worktree's); ``python -m
experiments bench`` runs it as one section of the report.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
LR, WD = 1e-3, 1e-2
# The benchmark's sizes per mode; --quick uses fewer leaves (1000 distinct values compile in minutes).
MODES: dict[str, dict[str, Any]] = {
    "full": {"leaves": 1000, "distinct": (1, 10, 100, 1000), "repeats": 1},
    "quick": {"leaves": 200, "distinct": (1, 10, 100, 200), "repeats": 1},
    "tiny": {"leaves": 8, "distinct": (1, 2, 8), "repeats": 1},
}


def one(leaves: int, distinct: int, transform: str) -> dict[str, Any]:
    """One case, in this process: ``distinct == 0`` means a scalar λ."""
    import jax
    import jax.numpy as jnp
    import optax

    import decaytx
    from experiments.bench import hlo

    params = {f"layer{i:04d}": jnp.zeros((16, 16), jnp.float32) for i in range(leaves)}
    values = [WD * (1 + j / max(distinct, 1)) for j in range(max(distinct, 1))]
    lam: Any = WD if distinct == 0 else {k: values[i % distinct] for i, k in enumerate(params)}
    if transform == "adamw":
        opt = decaytx.adamw(LR, lam)
    else:
        opt = optax.chain(optax.adam(LR), decaytx.add_decoupled_decay(lam, learning_rate=LR))
    t0 = time.perf_counter()
    state = jax.block_until_ready(opt.init(params))
    t1 = time.perf_counter()
    lowered = hlo.jit_step(opt).lower(params, state, params)
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    text = compiled.as_text()
    return {"leaves": leaves, "distinct": distinct, "transform": transform, "init_s": t1 - t0,
            "lower_s": t2 - t1, "compile_s": t3 - t2, "total_s": t3 - t1,
            "constants": len(set(re.findall(r"f32\[\] constant\(([^)]*)\)", text))), "hlo_chars": len(text)}


def fresh(leaves: int, distinct: int, transform: str, env: dict[str, str] | None = None,
          timeout_s: float = 1800) -> dict[str, Any]:
    """:func:`one` in a fresh Python process."""
    cmd = [sys.executable, "-m", "experiments.bench.coeff_compile", "--one", str(leaves), str(distinct), transform]
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(leaves: int, distinct: tuple[int, ...], repeats: int = 1, transform: str = "adamw",
            env: dict[str, str] | None = None, log: Callable[[str], None] = print, seed: int = 0) -> dict[str, Any]:
    """Medians over ``repeats`` fresh processes per case (cases in a fresh random order per repeat).

    Ratios are each case's ``total_s`` (lower + compile) over the shared-λ
    case's (one distinct value); the scalar-λ case is case ``0``.
    """
    cases = [0, *distinct]
    runs: dict[int, list[dict[str, Any]]] = {k: [] for k in cases}
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        for i in rng.permutation(len(cases)):
            r = fresh(leaves, cases[i], transform, env)
            runs[cases[i]].append(r)
            log(f"    {leaves} leaves, {'scalar λ' if cases[i] == 0 else f'{cases[i]} distinct λ'}: "
                f"{r['total_s']:.2f} s to lower and compile, {r['constants']} distinct f32 constants")
    rows = {k: {m: float(np.median([r[m] for r in rs])) for m in ("init_s", "lower_s", "compile_s", "total_s",
                                                                    "constants", "hlo_chars")}
            for k, rs in runs.items()}
    shared = rows[1]["total_s"] if 1 in rows else rows[0]["total_s"]
    for row in rows.values():
        row["ratio_to_shared"] = row["total_s"] / shared
    return {"leaves": leaves, "transform": transform, "repeats": repeats,
            "cases": {("scalar" if k == 0 else str(k)): v for k, v in rows.items()}}


def table(res: dict[str, Any]) -> list[str]:
    L = ["| λ | lower + compile (s) | / shared λ | lower (s) | compile (s) | init (s) | distinct f32 constants in the HLO |",
         "|---|---|---|---|---|---|---|"]
    for k, r in res["cases"].items():
        name = "one scalar" if k == "scalar" else ("1 value, shared (tree)" if k == "1" else f"{k} distinct (tree)")
        L.append(f"| {name} | {r['total_s']:.2f} | {r['ratio_to_shared']:.2f} | {r['lower_s']:.2f} "
                 f"| {r['compile_s']:.2f} | {r['init_s']:.3f} | {r['constants']:.0f} |")
    return L


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench.coeff_compile", description=__doc__.split("\n")[0])
    ap.add_argument("--leaves", type=int, default=1000)
    ap.add_argument("--distinct", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--transform", choices=("adamw", "decoupled"), default="adamw",
                    help="decaytx.adamw(lr, tree), or chain(optax.adam, add_decoupled_decay(tree))")
    ap.add_argument("--one", nargs=3, metavar=("LEAVES", "DISTINCT", "TRANSFORM"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        r = one(int(args.one[0]), int(args.one[1]), args.one[2])
        print(json.dumps(r), flush=True)
        return r
    import decaytx

    print(f"decaytx from {os.path.dirname(decaytx.__file__)}; {args.leaves} leaves of 16x16, "
          f"{args.transform}; each case in a fresh process", flush=True)
    res = measure(args.leaves, tuple(args.distinct), args.repeats, args.transform)
    print("\n".join(table(res)))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
