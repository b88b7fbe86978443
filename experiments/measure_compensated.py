"""The cost of ``compensated=True``: state bytes, kernels, bytes/param and step time.

Compiles one step (update + apply, donated) of ``decaytx.adamw`` (decay on
the ndim >= 2 leaves) plain, again plain (an A/A control) and with
``compensated=True``, on a transformer-like tree in bfloat16 (every leaf
keeps a float32 residual) and in float32 (no residual: the same program);
reports the optimizer state's bytes per param, the kernels the step launches
(ENTRY fusions, and those with array outputs), the bytes accessed per param
from ``compiled.cost_analysis()``, and the step time over the plain step of
the same dtype (interleaved repetitions, paired ratios, bootstrap 95% CI of
the median). ``decaytx.fused.adamw`` (tree layout) with and without
compensation is measured too: run with
``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
for its sibling formulation (without the flag it is the recipe's program).

    python -m experiments.measure_compensated [--reps 15] [--params 2] [--blocks 25] [--no-donate]

``measure(...)`` returns the same figures as a dict (for the benchmark report).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import decaytx
from decaytx import masks
from experiments.bench import hlo, trees
from experiments.bench.timing import median_of_ratios

DTYPES = ("bfloat16", "float32")


def _variants() -> dict[str, Any]:
    def adamw(compensated: bool = False) -> Any:
        return decaytx.adamw(1e-3, weight_decay=0.1, mask=masks.ndim_at_least(2), compensated=compensated)

    def fused(compensated: bool = False) -> Any:
        return decaytx.fused.adamw(1e-3, weight_decay=0.1, mask=masks.ndim_at_least(2), layout="tree",
                                   compensated=compensated)

    return {
        "adamw": adamw,
        "adamw (A/A)": adamw,
        "adamw(compensated=True)": lambda: adamw(True),
        "fused.adamw": fused,
        "fused.adamw(compensated=True)": lambda: fused(True),
    }


def _compile(make: Any, params: Any, grads: Any, donate: bool) -> tuple[Any, Any, dict[str, float]]:
    opt = make()
    state = opt.init(params)
    jitted = hlo.jit_step(opt) if donate else jax.jit(hlo.step_fn(opt))
    compiled = jitted.lower(params, state, grads).compile()
    shapes = hlo.fusion_shapes(compiled.as_text())
    n = hlo.tree_size(params)
    row = {
        "kernels": len(shapes),
        "array_kernels": sum(not hlo.is_scalar_shape(s) for s in shapes),
        "state_bytes_per_param": hlo.tree_bytes(state) / n,
        "bytes_per_param": float(hlo.cost_analysis(compiled).get("bytes accessed", float("nan"))) / n,
    }
    return compiled, state, row


def measure(*, reps: int = 15, params_m: float = 2.0, blocks: int = 25, donate: bool = True,
            dtypes: tuple[str, ...] = DTYPES, seed: int = 0) -> dict[str, Any]:
    """Per dtype and variant: kernels, array kernels, state bytes/param,
    bytes accessed/param, and the step time over plain adamw (median of the
    paired ratios and its 95% CI). Also the tree, the repetitions and the
    load average at the end."""
    tree = trees.transformer(int(params_m * trees.M), blocks=blocks)
    rng = np.random.default_rng(seed)
    p32, g32 = trees.make_params(tree, rng)
    out: dict[str, Any] = {"tree": tree.label, "reps": reps, "donated": donate,
                           "jax": jax.__version__, "platform": jax.devices()[0].platform, "rows": {}}
    for dtype in dtypes:
        params = {k: jnp.asarray(v, dtype) for k, v in p32.items()}
        grads = {k: jnp.asarray(v, dtype) for k, v in g32.items()}
        steps, times, rows = {}, {}, {}
        for name, make in _variants().items():
            compiled, state, rows[name] = _compile(make, params, grads, donate)
            steps[name] = [compiled, jax.tree.map(jnp.copy, params), state]
            times[name] = []
        for _ in range(reps):
            for name in rng.permutation(list(steps)):
                c, p, s = steps[name]
                t0 = time.perf_counter()
                p, s = c(p, s, grads)
                jax.block_until_ready(p)
                times[name].append(time.perf_counter() - t0)
                steps[name][1:] = [p, s]
        for name, row in rows.items():
            m, lo, hi = median_of_ratios(times[name], times["adamw"], rng)
            row["time_ratio"], row["time_ratio_ci"] = m, (lo, hi)
        out["rows"][dtype] = rows
    out["load_average"] = os.getloadavg()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--params", type=float, default=2.0, help="millions of params")
    ap.add_argument("--blocks", type=int, default=25)
    ap.add_argument("--no-donate", action="store_true", help="params and state not donated")
    args = ap.parse_args()
    r = measure(reps=args.reps, params_m=args.params, blocks=args.blocks, donate=not args.no_donate)
    print(f"tree {r['tree']}; {'' if r['donated'] else 'not '}donated; {r['reps']} interleaved "
          f"repetitions; jax {r['jax']} on {r['platform']}; load average {r['load_average']}; "
          f"multi-output fusion {'on' if decaytx.fused.multi_output_fusion_active() else 'off'}")
    print("| params | variant | state B/param | kernels | array kernels | bytes/param "
          "| step time / adamw (paired, 95% CI) |")
    print("|---|---|---|---|---|---|---|")
    for dtype, rows in r["rows"].items():
        for name, row in rows.items():
            lo, hi = row["time_ratio_ci"]
            print(f"| {dtype} | {name} | {row['state_bytes_per_param']:.1f} | {row['kernels']} "
                  f"| {row['array_kernels']} | {row['bytes_per_param']:.1f} "
                  f"| {row['time_ratio']:.2f} [{lo:.2f}, {hi:.2f}] |")


if __name__ == "__main__":
    main()
