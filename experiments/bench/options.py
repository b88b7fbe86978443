"""Cost of options: what an opt-in decaytx option adds to the optimizer's step.

:data:`OPTIONS` maps an option's name to the module that measures it; adding
an option to the report is one line there. Such a module exposes
``measure(*, reps, params, blocks, seed=0) -> dict`` (``params`` in
millions, ``blocks`` the transformer tree's blocks), usually through
:func:`measure_variants`, which returns::

    {"option": "decaytx.monitor", "tree": "309 leaves, 2M", "params": 2097152,
     "donated": True, "reps": 15, "baseline": "adamw", "control": "adamw (A/A)",
     "rows": {variant: {"kernels": int, "array_kernels": int,
                        "bytes_per_param": float, "state_bytes_per_param": float,
                        "ratio": {"median": float, "lo": float, "hi": float}}},
     "jax": "0.10.2", "platform": "cpu", "load": [1, 5, 15 min]}

``kernels``: ENTRY fusions of the compiled step; ``array_kernels``: those
with a non-scalar result; ``bytes_per_param``: ``cost_analysis()``'s bytes
accessed per param; ``ratio``: step time over the baseline's, the median of
per-repetition paired ratios (interleaved repetitions) with a bootstrap 95%
CI; the control is the baseline built again (an A/A control).

The benchmark (``python -m experiments bench``) runs each option in a fresh
process with the plain process's environment (:func:`measure`); one that
fails is reported with its error instead of stopping the run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]

# option -> "module" or "module:function" whose measure(**MODES[mode]) measures it.
OPTIONS: dict[str, str] = {
    "decaytx.monitor": "experiments.measure_monitor",
    "compensated=True (bfloat16 params)": "experiments.measure_compensated:measure_bfloat16",
    "compensated=True (float32 params)": "experiments.measure_compensated:measure_float32",
}

MODES: dict[str, dict[str, Any]] = {
    "full": {"reps": 41, "params": 2.0, "blocks": 25},
    "quick": {"reps": 21, "params": 2.0, "blocks": 25},
    "tiny": {"reps": 3, "params": 0.02, "blocks": 2},
}


def measure_variants(option: str, variants: dict[str, Callable[[], Any]], *, reps: int,
                     params: float, blocks: int, layered: int = 0, donate: bool = True,
                     seed: int = 0, dtype: str = "float32") -> dict[str, Any]:
    """Compiles and times each variant on params (and gradients) of ``dtype``;
    the first variant is the baseline, the second its A/A control."""
    import jax
    import numpy as np

    from experiments.bench import hlo, trees
    from experiments.bench.timing import median_of_ratios, time_steps

    total = int(params * trees.M)
    tree = trees.layered(layered, total) if layered else trees.transformer(total, blocks=blocks)
    rng = np.random.default_rng(seed)
    p0, grads = (jax.tree.map(lambda x: x.astype(jax.numpy.dtype(dtype)), t)
                 for t in trees.make_params(tree, rng))
    n = hlo.tree_size(p0)
    rows: dict[str, dict[str, Any]] = {}
    steps: dict[str, list[Any]] = {}
    for name, make in variants.items():
        opt = make()
        state = opt.init(p0)
        jitted = hlo.jit_step(opt) if donate else jax.jit(hlo.step_fn(opt))
        compiled = jitted.lower(p0, state, grads).compile()
        shapes = hlo.fusion_shapes(compiled.as_text())
        rows[name] = {"kernels": len(shapes),
                      "array_kernels": sum(not hlo.is_scalar_shape(s) for s in shapes),
                      "bytes_per_param": float(hlo.cost_analysis(compiled).get(
                          "bytes accessed", float("nan"))) / n,
                      "state_bytes_per_param": hlo.tree_bytes(state) / n}
        steps[name] = [compiled, jax.tree.map(np.array, p0), state]
    times = time_steps(steps, grads, reps, rng)
    baseline, control = list(variants)[:2]
    for name, row in rows.items():
        m, lo, hi = median_of_ratios(times[name], times[baseline], rng)
        row["ratio"] = {"median": m, "lo": lo, "hi": hi}
    return {"option": option, "tree": tree.label, "params": n, "donated": donate, "reps": reps,
            "baseline": baseline, "control": control, "rows": rows, "jax": jax.__version__,
            "platform": jax.devices()[0].platform, "dtype": dtype, "load": list(os.getloadavg())}


def table(res: dict[str, Any]) -> list[str]:
    """One option's measurement as a Markdown table (or its error)."""
    if "error" in res:
        return [f"Not measured: {res['error']}"]
    lines = [f"| variant | kernels | array kernels | bytes/param | state bytes/param "
             f"| step time / {res['baseline']} (paired, 95% CI) |", "|---|---|---|---|---|---|"]
    for name, r in res["rows"].items():
        q = r["ratio"]
        lines.append(f"| `{name}` | {r['kernels']} | {r['array_kernels']} | {r['bytes_per_param']:.1f} "
                     f"| {r['state_bytes_per_param']:.1f} "
                     f"| {q['median']:.2f} [{q['lo']:.2f}, {q['hi']:.2f}] |")
    return lines


def show(res: dict[str, Any]) -> str:
    """A measurement as a script prints it: one line on the run, then :func:`table`."""
    return "\n".join([
        f"{res['option']}: tree {res['tree']}; {'' if res['donated'] else 'not '}donated; "
        f"{res['reps']} interleaved repetitions; jax {res['jax']} on {res['platform']}; "
        f"load average {tuple(res['load'])}", *table(res)])


def one(name: str, mode: str) -> dict[str, Any]:
    """The option ``name`` measured at ``mode``'s sizes, in this process."""
    module, _, function = OPTIONS[name].partition(":")
    return getattr(importlib.import_module(module), function or "measure")(**MODES[mode])


def fresh(name: str, mode: str, env: dict[str, str] | None = None,
          timeout_s: float = 3600) -> dict[str, Any]:
    """:func:`one` in a fresh Python process; ``{"error": ...}`` if it fails."""
    cmd = [sys.executable, "-m", "experiments.bench.options", "--one", name, mode]
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"option": name, "error": f"timed out after {timeout_s:.0f} s"}
    if proc.returncode != 0:
        return {"option": name, "error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(mode: str, env: dict[str, str] | None = None,
            log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Every option of :data:`OPTIONS`, each in a fresh process."""
    out = {}
    for name in OPTIONS:
        log(f"    cost of {name} ({OPTIONS[name]})")
        out[name] = fresh(name, mode, env)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench.options",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--one", nargs=2, metavar=("OPTION", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=list(MODES), default="quick")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(*args.one), default=float), flush=True)
        return
    for name, res in measure(args.mode).items():
        print(f"{name}:", "\n".join(table(res)), sep="\n")


if __name__ == "__main__":
    main(sys.argv[1:])
