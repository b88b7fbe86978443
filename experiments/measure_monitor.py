"""The cost of ``decaytx.monitor``: kernels, bytes/param and step time over the bare optimizer.

Compiles one step (update + apply, donated) of ``decaytx.adamw`` (decay on
the ndim >= 2 leaves) alone, again alone (an A/A control), under
``decaytx.monitor`` (one entry per decayed leaf) and under
``decaytx.monitor(groups=[""])`` (one entry for everything), on a
transformer-like tree; reports the kernels each launches (ENTRY fusions, and
those with array outputs), the bytes accessed per param from
``compiled.cost_analysis()``, and the step time over the bare one
(interleaved repetitions, paired ratios, bootstrap 95% CI of the median).

    python -m experiments.measure_monitor [--reps 15] [--params 2] [--blocks 25] [--layered N] [--no-donate]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import decaytx
from decaytx import masks
from experiments.bench import hlo, trees
from experiments.bench.timing import median_of_ratios


def _variants() -> dict:
    def base():
        return decaytx.adamw(1e-3, weight_decay=0.1, mask=masks.ndim_at_least(2))

    return {
        "adamw": base,
        "adamw (A/A)": base,
        "monitor(adamw)": lambda: decaytx.monitor(base()),
        'monitor(adamw, groups=[""])': lambda: decaytx.monitor(base(), groups=[""]),
    }




def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--params", type=float, default=2.0, help="millions of params")
    ap.add_argument("--blocks", type=int, default=25)
    ap.add_argument("--layered", type=int, default=0,
                    help="N > 0: N/2 square kernels and their biases instead of the transformer")
    ap.add_argument("--no-donate", action="store_true", help="params and state not donated")
    args = ap.parse_args()
    total = int(args.params * trees.M)
    tree = (trees.layered(args.layered, total) if args.layered
            else trees.transformer(total, blocks=args.blocks))
    rng = np.random.default_rng(0)
    params, grads = trees.make_params(tree, rng)
    n = hlo.tree_size(params)
    rows, steps, times = {}, {}, {}
    for name, make in _variants().items():
        opt = make()
        state = opt.init(params)
        jitted = jax.jit(hlo.step_fn(opt)) if args.no_donate else hlo.jit_step(opt)
        compiled = jitted.lower(params, state, grads).compile()
        shapes = hlo.fusion_shapes(compiled.as_text())
        cost = hlo.cost_analysis(compiled)
        rows[name] = (len(shapes), sum(not hlo.is_scalar_shape(s) for s in shapes),
                      float(cost.get("bytes accessed", float("nan"))) / n)
        steps[name] = [compiled, jax.tree.map(np.array, params), state]
        times[name] = []
    for _ in range(args.reps):
        for name in rng.permutation(list(steps)):
            c, p, s = steps[name]
            t0 = time.perf_counter()
            p, s = c(p, s, grads)
            jax.block_until_ready(p)
            times[name].append(time.perf_counter() - t0)
            steps[name][1:] = [p, s]
    print(f"tree {tree.label}; {'not ' if args.no_donate else ''}donated; "
          f"{args.reps} interleaved repetitions; jax {jax.__version__} "
          f"on {jax.devices()[0].platform}; load average {os.getloadavg()}")
    print("| variant | kernels | array kernels | bytes/param | step time / adamw (paired, 95% CI) |")
    print("|---|---|---|---|---|")
    for name, (k, ak, bpp) in rows.items():
        m, lo, hi = median_of_ratios(times[name], times["adamw"], rng)
        print(f"| {name} | {k} | {ak} | {bpp:.1f} | {m:.2f} [{lo:.2f}, {hi:.2f}] |")


if __name__ == "__main__":
    main()
