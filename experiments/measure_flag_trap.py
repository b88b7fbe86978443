"""The multi-output-fusion flag's trap for the unfused Adam-L2, and the fused step that avoids it.

``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion`` is
process-wide and changes how XLA:CPU fuses every program, not only the fused
steps. This script compiles one optimizer step (update + apply, donated) of
``decaytx.adam_l2`` (the plain chain) and ``decaytx.fused.adam_l2`` in two
processes, without and with the flag, on the benchmark's trees, and reports
the kernels each launches (ENTRY fusions) and the step time over
``optax.adam``'s with L2 in the same process (interleaved repetitions,
paired ratios with a bootstrap CI, an A/A control).

    python experiments/measure_flag_trap.py [--reps 15] [--tree 100x16M]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"


def _worker(tree_name: str, reps: int) -> dict:
    import jax
    import numpy as np
    import optax

    import decaytx
    from experiments.bench import hlo, trees
    from experiments.bench.timing import time_steps

    tree = {"100x16M": trees.layered(100, 16 * trees.M), "309x0.5M": trees.transformer(trees.M // 2),
            "309x16M": trees.transformer(16 * trees.M)}[tree_name]
    rng = np.random.default_rng(0)
    params, grads = trees.make_params(tree, rng)
    variants = {
        "optax adam + L2": lambda: optax.chain(optax.add_decayed_weights(0.1), optax.adam(1e-3)),
        "optax adam + L2 (A/A)": lambda: optax.chain(optax.add_decayed_weights(0.1), optax.adam(1e-3)),
        "decaytx.adam_l2": lambda: decaytx.adam_l2(1e-3, 0.1),
        "decaytx.fused.adam_l2": lambda: decaytx.fused.adam_l2(1e-3, 0.1, layout="tree"),
    }
    out: dict = {"flag": decaytx.fused.multi_output_fusion_active(), "kernels": {}, "times": {}}
    steps = {}
    for name, make in variants.items():
        opt = make()
        state = opt.init(params)
        compiled = hlo.jit_step(opt).lower(params, state, grads).compile()
        out["kernels"][name] = len(hlo.fusion_shapes(compiled.as_text()))
        steps[name] = [compiled, jax.tree.map(np.array, params), state]
    out["times"] = time_steps(steps, grads, reps, rng)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--tree", default="100x16M", choices=["100x16M", "309x0.5M", "309x16M"])
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.tree, args.reps)))
        return
    import numpy as np

    from experiments.bench.timing import median_of_ratios

    rng = np.random.default_rng(1)
    res = {}
    for label, flags in (("plain", ""), ("flag", FLAG)):
        env = dict(os.environ, XLA_FLAGS=flags, PYTHONPATH=os.getcwd())
        proc = subprocess.run([sys.executable, __file__, "--worker", "--reps", str(args.reps), "--tree", args.tree],
                              capture_output=True, text=True, env=env, check=True)
        res[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"tree {args.tree}, {args.reps} interleaved repetitions; load average {os.getloadavg()}")
    print("| variant | kernels (plain) | kernels (flag) | / optax adam+L2, plain (paired) | / optax adam+L2, flag (paired) |")
    print("|---|---|---|---|---|")
    ref = "optax adam + L2"
    for name in res["plain"]["kernels"]:
        cells = [name, res["plain"]["kernels"][name], res["flag"]["kernels"][name]]
        for label in ("plain", "flag"):
            m, lo, hi = median_of_ratios(res[label]["times"][name], res[label]["times"][ref], rng)
            cells.append(f"{m:.2f} [{lo:.2f}, {hi:.2f}]")
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
