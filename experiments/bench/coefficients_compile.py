"""Compile time against the count of distinct coefficient values.

``python -m experiments.bench.coefficients_compile [--leaves N] [--repeats R]
[--distinct 1 10 100 1000] [--form decoupled|l2] [--baseline] [--step]``

A coefficient tree over ``N`` leaves of shape (64,) holds ``d`` distinct
values (leaf ``i`` gets ``1e-4 * (1 + i % d)``), in
``chain(scale_by_adam, scale_by_learning_rate(1e-3), add_decoupled_decay(tree,
learning_rate=1e-3))`` (``--form l2``: ``add_l2_grad(tree)`` first). Each
figure is the seconds of ``jit(step).lower(...).compile()`` in a fresh
process (nothing cached), the medians of ``R`` rounds, the values of ``d``
visited in a fresh random order each round; the ratio is to ``d = 1`` (one
shared value). ``--baseline`` adds the same with ``decaytx._constants.ENABLED
= False``, i.e. every value a scalar constant as in decaytx 0.2. ``--step``
times the compiled step of the ``N``-distinct tree with and without
``_constants`` in one process, interleaved, with an A/A control.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build(leaves: int, distinct: int, form: str) -> tuple[Any, Any, Any]:
    """``(step, params, state)`` of the benchmark chain."""
    import jax.numpy as jnp
    import optax

    import decaytx

    params = {f"p{i:04d}": jnp.full((64,), 0.5 + i / leaves, jnp.float32) for i in range(leaves)}
    tree = {k: 1e-4 * (1 + i % distinct) for i, k in enumerate(params)}
    adam = (optax.scale_by_adam(), optax.scale_by_learning_rate(1e-3))
    if form == "l2":
        opt = optax.chain(decaytx.add_l2_grad(tree), *adam)
    else:
        opt = optax.chain(*adam, decaytx.add_decoupled_decay(tree, learning_rate=1e-3))

    def step(p: Any, s: Any, g: Any) -> Any:
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    return step, params, opt.init(params)


def compile_seconds(leaves: int, distinct: int, form: str, enabled: bool) -> dict[str, Any]:
    """One measurement (run in a fresh process by :func:`measure`)."""
    import jax

    from decaytx import _constants

    _constants.ENABLED = enabled
    step, params, state = build(leaves, distinct, form)
    lowered = jax.jit(step).lower(params, state, params)
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = lowered.compile()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    text = compiled.as_text()
    return {"compile_s": seconds, "compile_cpu_s": cpu, "fusions": text.count(" fusion("),
            "hlo_chars": len(text)}


def measure(leaves: int, distinct: list[int], form: str, repeats: int, baseline: bool,
            seed: int = 0) -> dict[str, Any]:
    """``{label: {d: [seconds per round]}}`` (wall and process CPU), each in a fresh process."""
    rng = np.random.default_rng(seed)
    labels = ["decaytx"] + (["constants (0.2)"] if baseline else [])
    cases = [(lab, d) for lab in labels for d in distinct]
    out: dict[str, dict[int, list[float]]] = {lab: {d: [] for d in distinct} for lab in labels}
    cpu: dict[str, dict[int, list[float]]] = {lab: {d: [] for d in distinct} for lab in labels}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for _ in range(repeats):
        for i in rng.permutation(len(cases)):
            lab, d = cases[i]
            cmd = [sys.executable, "-m", "experiments.bench.coefficients_compile", "--one",
                   str(leaves), str(d), form, str(int(lab == "decaytx"))]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                            env=env, cwd=ROOT).stdout.splitlines()[-1])
            out[lab][d].append(res["compile_s"])
            cpu[lab][d].append(res["compile_cpu_s"])
    return {"leaves": leaves, "form": form, "repeats": repeats, "seconds": out, "cpu_seconds": cpu}


def step_times(leaves: int, form: str, rounds: int = 15, steps: int = 30) -> dict[str, float]:
    """Median seconds per step: A (0.2 constants), A2 (the same again) and B
    (decaytx) on the ``leaves``-distinct tree, interleaved in one process."""
    import jax

    from decaytx import _constants

    compiled = {}
    for name, enabled in (("A", False), ("A2", False), ("B", True)):
        _constants.ENABLED = enabled
        step, params, state = build(leaves, leaves, form)
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--leaves", type=int, default=1000)
    ap.add_argument("--distinct", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--form", choices=["decoupled", "l2"], default="decoupled")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", action="store_true")
    ap.add_argument("--step", action="store_true")
    args = ap.parse_args(argv)
    if args.one:
        n, d, form, enabled = args.one
        print(json.dumps(compile_seconds(int(n), int(d), form, bool(int(enabled)))))
        return
    distinct = [d for d in args.distinct if d <= args.leaves]
    res = measure(args.leaves, distinct, args.form, args.repeats, args.baseline)
    print(f"{args.leaves} leaves of (64,), form {args.form}, medians of {args.repeats} fresh processes")
    for lab, by_d in res["seconds"].items():
        by_cpu = res["cpu_seconds"][lab]
        base, base_cpu = float(np.median(by_d[distinct[0]])), float(np.median(by_cpu[distinct[0]]))
        for d in distinct:
            med, med_cpu = float(np.median(by_d[d])), float(np.median(by_cpu[d]))
            print(f"  {lab:16s} distinct={d:5d}  compile {med:6.2f} s wall, {med_cpu:6.2f} s CPU;"
                  f"  ratio to {distinct[0]}: {med / base:.2f} wall, {med_cpu / base_cpu:.2f} CPU")
    if args.step:
        st = step_times(args.leaves, args.form)
        print(f"  step ({args.leaves} distinct): 0.2 constants {st['A'] * 1e3:.3f} ms, "
              f"decaytx {st['B'] * 1e3:.3f} ms; B/A {st['B/A']:.3f}, A/A control {st['A2/A']:.3f}")


if __name__ == "__main__":
    main()
