"""Compile time against the number of distinct coefficient values.

A coefficient tree (one λ per leaf: layer-wise decay, per-leaf learning
rates) should not cost more compile time when its values differ. This
compiles one step (``update`` + ``optax.apply_updates``, params and state
donated) over ``--leaves`` leaves of ``--shape`` (16x16) whose coefficient
tree holds 1, 10, 100, ... distinct values (leaf ``i`` gets value
``i % d``), each case in a fresh process (no cache shared between cases),
the cases in a fresh random order per repetition, and prints each case's
seconds as a ratio to the shared-λ case (a tree of one repeated value); a
scalar λ is timed beside it. Per case: ``init`` seconds, lowering (tracing)
seconds, XLA compile seconds (wall and process CPU: compiling is contended
on a shared machine), the fused kernels and the number of distinct f32
scalar constants in the compiled HLO (a λ baked into the program is one of
them). The chain (``--form``):

* ``adamw``: ``decaytx.adamw(lr, tree)``;
* ``decoupled``: ``chain(optax.adam(lr), add_decoupled_decay(tree, learning_rate=lr))``;
* ``l2``: ``chain(add_l2_grad(tree), optax.adam(lr))``.

``--baseline`` adds every tree case again with ``decaytx._constants.ENABLED
= False`` (each value a scalar constant in its leaf's kernel, as in decaytx
0.2). ``--step`` times the compiled step of the ``--leaves``-distinct tree
with and without ``_constants`` in one process, interleaved, with an A/A
control::

    python -m experiments.bench.coeff_compile                        # 1000 leaves; 1, 10, 100, 1000 values
    python -m experiments.bench.coeff_compile --leaves 100 --distinct 1 10 100
    python -m experiments.bench.coeff_compile --form decoupled --baseline --repeats 3 --step

It measures whatever decaytx is importable (this worktree's); ``python -m
experiments bench`` runs it as one section of the report, and
``tests/test_constants.py`` compiles :func:`build`'s chain.
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
SHAPE = (16, 16)
# --form -> the chain it compiles.
FORMS: dict[str, str] = {
    "adamw": "decaytx.adamw(lr, λ)",
    "decoupled": "chain(optax.adam(lr), add_decoupled_decay(λ, learning_rate=lr))",
    "l2": "chain(add_l2_grad(λ), optax.adam(lr))",
}
# The benchmark's sizes per mode; --quick uses fewer leaves (1000 distinct values compile in minutes).
MODES: dict[str, dict[str, Any]] = {
    "full": {"leaves": 1000, "distinct": (1, 10, 100, 1000), "repeats": 1},
    "quick": {"leaves": 200, "distinct": (1, 10, 100, 200), "repeats": 1},
    "tiny": {"leaves": 8, "distinct": (1, 2, 8), "repeats": 1},
}
METRICS = ("init_s", "lower_s", "compile_s", "compile_cpu_s", "total_s", "constants", "fusions",
           "hlo_chars")


def chain(leaves: int, distinct: int, form: str = "adamw",
          shape: tuple[int, ...] = SHAPE) -> tuple[Any, Any]:
    """``(optimizer, params)`` of the benchmark; ``distinct == 0``: a scalar λ."""
    import jax.numpy as jnp
    import optax

    import decaytx

    params = {f"layer{i:04d}": jnp.full(shape, 0.5 + i / leaves, jnp.float32) for i in range(leaves)}
    values = [WD * (1 + j / max(distinct, 1)) for j in range(max(distinct, 1))]
    lam: Any = WD if distinct == 0 else {k: values[i % distinct] for i, k in enumerate(params)}
    if form == "adamw":
        opt = decaytx.adamw(LR, lam)
    elif form == "decoupled":
        opt = optax.chain(optax.adam(LR), decaytx.add_decoupled_decay(lam, learning_rate=LR))
    elif form == "l2":
        opt = optax.chain(decaytx.add_l2_grad(lam), optax.adam(LR))
    else:
        raise ValueError(f"form={form!r}: one of {list(FORMS)}")
    return opt, params


def build(leaves: int, distinct: int, form: str = "adamw",
          shape: tuple[int, ...] = SHAPE) -> tuple[Callable[..., Any], Any, Any]:
    """``(step, params, state)`` of the benchmark chain; ``step(params, state, grads)``
    is ``update`` then ``apply_updates``, unjitted."""
    from experiments.bench import hlo

    opt, params = chain(leaves, distinct, form, shape)
    return hlo.step_fn(opt), params, opt.init(params)


def one(leaves: int, distinct: int, form: str, enabled: bool = True,
        shape: tuple[int, ...] = SHAPE) -> dict[str, Any]:
    """One case, in this process (``enabled=False``: decaytx 0.2's scalar constants)."""
    import jax

    from decaytx import _constants
    from experiments.bench import hlo

    _constants.ENABLED = enabled
    opt, params = chain(leaves, distinct, form, shape)
    t0 = time.perf_counter()
    state = jax.block_until_ready(opt.init(params))
    t1 = time.perf_counter()
    lowered = hlo.jit_step(opt).lower(params, state, params)
    t2, c2 = time.perf_counter(), time.process_time()
    compiled = lowered.compile()
    t3, c3 = time.perf_counter(), time.process_time()
    text = compiled.as_text()
    return {"leaves": leaves, "distinct": distinct, "form": form, "enabled": enabled,
            "init_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2, "compile_cpu_s": c3 - c2,
            "total_s": t3 - t1, "fusions": text.count(" fusion("),
            "constants": len(set(re.findall(r"f32\[\] constant\(([^)]*)\)", text))),
            "hlo_chars": len(text)}


def fresh(leaves: int, distinct: int, form: str, enabled: bool = True,
          shape: tuple[int, ...] = SHAPE, env: dict[str, str] | None = None,
          timeout_s: float = 1800) -> dict[str, Any]:
    """:func:`one` in a fresh Python process."""
    case = json.dumps([leaves, distinct, form, enabled, list(shape)])
    cmd = [sys.executable, "-m", "experiments.bench.coeff_compile", "--one", case]
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _medians(rs: list[dict[str, Any]]) -> dict[str, float]:
    return {m: float(np.median([r[m] for r in rs])) for m in METRICS}


def _rows(runs: dict[int, list[dict[str, Any]]], shared: dict[str, float]) -> dict[str, dict[str, float]]:
    """Medians per case (``"scalar"`` for case 0), with ratios to the ``shared`` case."""
    rows = {}
    for k, rs in runs.items():
        row = _medians(rs)
        row["ratio_to_shared"] = row["total_s"] / shared["total_s"]
        row["cpu_ratio_to_shared"] = row["compile_cpu_s"] / max(shared["compile_cpu_s"], 1e-9)
        rows["scalar" if k == 0 else str(k)] = row
    return rows


def measure(leaves: int, distinct: tuple[int, ...], repeats: int = 1, form: str = "adamw",
            baseline: bool = False, shape: tuple[int, ...] = SHAPE,
            env: dict[str, str] | None = None, log: Callable[[str], None] = print,
            seed: int = 0) -> dict[str, Any]:
    """Medians over ``repeats`` fresh processes per case (cases in a fresh random order per repeat).

    Ratios are each case's ``total_s`` (lower + compile) over the shared-λ
    case's (one distinct value); the scalar-λ case is case ``0``. With
    ``baseline``, ``"baseline"`` holds the tree cases with decaytx 0.2's
    scalar constants, their ratios to the same shared-λ case.
    """
    distinct = tuple(d for d in distinct if d <= leaves)
    cases = [(True, d) for d in (0, *distinct)] + [(False, d) for d in distinct if baseline]
    runs: dict[tuple[bool, int], list[dict[str, Any]]] = {c: [] for c in cases}
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        for i in rng.permutation(len(cases)):
            enabled, d = cases[i]
            r = fresh(leaves, d, form, enabled, shape, env)
            runs[cases[i]].append(r)
            log(f"    {leaves} leaves, {'scalar λ' if d == 0 else f'{d} distinct λ'}"
                f"{'' if enabled else ' (0.2 constants)'}: {r['total_s']:.2f} s to lower and "
                f"compile, {r['constants']} distinct f32 constants")
    ours = {d: rs for (e, d), rs in runs.items() if e}
    shared = _medians(ours[1] if 1 in ours else ours[0])
    out: dict[str, Any] = {"leaves": leaves, "form": form, "shape": list(shape), "repeats": repeats,
                           "cases": _rows(ours, shared)}
    if baseline:
        out["baseline"] = _rows({d: rs for (e, d), rs in runs.items() if not e}, shared)
    return out


def step_times(leaves: int, form: str, rounds: int = 15, steps: int = 30,
               shape: tuple[int, ...] = SHAPE) -> dict[str, float]:
    """Median seconds per step: A (0.2 constants), A2 (the same again) and B
    (decaytx) on the ``leaves``-distinct tree, interleaved in one process."""
    import jax

    from decaytx import _constants

    compiled = {}
    for name, enabled in (("A", False), ("A2", False), ("B", True)):
        _constants.ENABLED = enabled
        step, params, state = build(leaves, leaves, form, shape)
        compiled[name] = jax.jit(step).lower(params, state, params).compile()
    _constants.ENABLED = True

    def run(c: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            out = c(params, state, params)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / steps

    for c in compiled.values():
        run(c)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in compiled}
    for _ in range(rounds):
        for k in rng.permutation(list(compiled)):
            times[k].append(run(compiled[k]))
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {**med, "B/A": med["B"] / med["A"], "A2/A": med["A2"] / med["A"]}


def table(res: dict[str, Any]) -> list[str]:
    L = ["| λ | lower + compile (s) | / shared λ | lower (s) | compile (s) | compile CPU (s) "
         "| init (s) | distinct f32 constants in the HLO |",
         "|---|---|---|---|---|---|---|---|"]
    cases = [(k, r, "") for k, r in res["cases"].items()]
    cases += [(k, r, ", 0.2 constants") for k, r in res.get("baseline", {}).items()]
    for k, r, tag in cases:
        name = "one scalar" if k == "scalar" else ("1 value, shared (tree)" if k == "1" else f"{k} distinct (tree)")
        L.append(f"| {name}{tag} | {r['total_s']:.2f} | {r['ratio_to_shared']:.2f} | {r['lower_s']:.2f} "
                 f"| {r['compile_s']:.2f} | {r.get('compile_cpu_s', float('nan')):.2f} "
                 f"| {r['init_s']:.3f} | {r['constants']:.0f} |")
    return L


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench.coeff_compile", description=__doc__.split("\n")[0])
    ap.add_argument("--leaves", type=int, default=1000)
    ap.add_argument("--distinct", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--form", "--transform", dest="form", choices=list(FORMS), default="adamw",
                    help="; ".join(f"{k}: {v}" for k, v in FORMS.items()))
    ap.add_argument("--shape", type=int, nargs="+", default=list(SHAPE), help="each leaf's shape")
    ap.add_argument("--baseline", action="store_true",
                    help="also each tree case with decaytx 0.2's scalar constants")
    ap.add_argument("--step", action="store_true",
                    help="time the compiled step with and without _constants (A/A control)")
    ap.add_argument("--one", metavar="CASE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        leaves, d, form, enabled, shape = json.loads(args.one)
        r = one(leaves, d, form, enabled, tuple(shape))
        print(json.dumps(r), flush=True)
        return r
    import decaytx

    shape = tuple(args.shape)
    print(f"decaytx from {os.path.dirname(decaytx.__file__)}; {args.leaves} leaves of "
          f"{'x'.join(map(str, shape))}, {args.form}; each case in a fresh process", flush=True)
    res = measure(args.leaves, tuple(args.distinct), args.repeats, args.form, args.baseline, shape)
    print("\n".join(table(res)))
    if args.step:
        st = step_times(args.leaves, args.form, shape=shape)
        res["step"] = st
        print(f"step ({args.leaves} distinct): 0.2 constants {st['A'] * 1e3:.3f} ms, "
              f"decaytx {st['B'] * 1e3:.3f} ms; B/A {st['B/A']:.3f}, A/A control {st['A2/A']:.3f}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
