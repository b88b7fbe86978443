"""Flat moments vs the tree layout for the fused AdamW step.

The question: on a tree of many small leaves, does keeping Adam's moments in
ONE flat buffer (params and gradients stay a tree; the gradient is
concatenated once per step and the update split back) beat the per-leaf fused
step, whose cost there is per-kernel overhead rather than bytes? And what does
it cost on one large leaf, where the concatenation and split are pure extra
traffic?

Variants, each one jitted step (``update`` + ``apply_updates``, params and
state donated), interleaved in every repeat:

- ``optax.adamw``: the reference;
- ``tree``: ``decaytx.fused.adamw`` (one kernel per leaf with the flag);
- ``flat``: ``decaytx.fused.adamw(..., layout="flat")``, the shipped
  flat-moments variant (same maths, moments in one buffer).

Trees (``TREES``): 309 leaves of 0.54M params (103 x (64x80 kernel, 80 bias,
80 scale)), 1.6M params as 400 leaves of 4K, 200 of 8K and 100 of 16K, 32 of 64K, 100 of 160K and one 16M-param
leaf: mean float-leaf sizes from 1.7K to 16M elements, which is what
``layout="auto"`` decides by (``decaytx.fused.FLAT_MEAN_LEAF_SIZE``). Reports the median seconds per step and the ratio of
medians against ``tree`` and against ``optax.adamw``, plus the median of the
per-repeat paired ratios.

Run (re-executes itself with the multi-output-fusion flag unless
``--no-flag``)::

  nice -n 19 .venv/bin/python experiments/measure_flat_moments.py [--repeats 15] [--no-flag] [--json out.json]

Timings are of this machine at that moment; the script prints what it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any

# This repository's decaytx, not an installed one (the script runs as a file).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


SMALL = "309 leaves, 0.54M"
# Tree shapes, spanning mean float-leaf sizes from 1.7K to 16M elements.
TREES: dict[str, Any] = {
    SMALL: {f"l{i}": {"kernel": (64, 80), "bias": (80,), "scale": (80,)} for i in range(103)},
    "400 leaves of 4K, 1.6M": {f"w{i}": (64, 64) for i in range(400)},
    "200 leaves of 8K, 1.6M": {f"w{i}": (64, 128) for i in range(200)},
    "100 leaves of 16K, 1.6M": {f"w{i}": (128, 128) for i in range(100)},
    "32 leaves of 64K, 2.1M": {f"w{i}": (256, 256) for i in range(32)},
    "100 leaves of 160K, 16M": {f"w{i}": (400, 400) for i in range(100)},
    "1 leaf, 16M": {"w": (4096, 4096)},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-flag", action="store_true", help="run without multi-output fusion")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--small-only", action="store_true", help="only the 309-leaf tree (quick)")
    ap.add_argument("--trees", default=None, help="comma-separated indices into TREES (default: all)")
    args = ap.parse_args()
    want = not args.no_flag
    if want and "multi_output" not in os.environ.get("XLA_FLAGS", ""):
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + FLAG).strip())
        sys.exit(subprocess.call([sys.executable, *sys.argv], env=env))
    run(args)


def run(args: Any) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import decaytx

    lr, wd = 1e-3, 0.1

    def step_of(opt: optax.GradientTransformation) -> Any:
        def step(p: Any, s: Any, g: Any) -> Any:
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s
        return jax.jit(step, donate_argnums=(0, 1))

    rng = np.random.default_rng(0)
    trees = {name: shapes for name, shapes in TREES.items() if not args.small_only or name == SMALL}
    if args.trees:
        names = list(TREES)
        trees = {names[int(i)]: TREES[names[int(i)]] for i in args.trees.split(",")}
    variants = {
        "optax.adamw": lambda: optax.adamw(lr, weight_decay=wd),
        "tree": lambda: decaytx.fused.adamw(lr, wd, layout="tree"),
        "flat": lambda: decaytx.fused.adamw(lr, wd, layout="flat"),
    }
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"multi_output_fusion_active={decaytx.fused.multi_output_fusion_active()}, repeats={args.repeats}")
    results: dict[str, Any] = {}
    for tname, shapes in trees.items():
        def make(shapes: Any = shapes) -> Any:
            return jax.tree.map(lambda shape: jnp.asarray(rng.standard_normal(shape), jnp.float32), shapes,
                                is_leaf=_is_shape)

        grads = make()
        n = sum(x.size for x in jax.tree.leaves(grads))
        steps_per_rep = max(1, int(2e7 // n))  # ~20M param-updates per timed call
        live = {}
        for vname, factory in variants.items():
            opt = factory()
            p = make()
            live[vname] = [step_of(opt), p, opt.init(p)]
            fn, p, s = live[vname]
            p, s = fn(p, s, grads)  # compile + warm
            jax.block_until_ready(p)
            live[vname][1:] = [p, s]
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for vname in variants:
                fn, p, s = live[vname]
                t0 = time.perf_counter()
                for _ in range(steps_per_rep):
                    p, s = fn(p, s, grads)
                jax.block_until_ready(p)
                times[vname].append((time.perf_counter() - t0) / steps_per_rep)
                live[vname][1:] = [p, s]
        med = {v: statistics.median(t) for v, t in times.items()}
        paired = statistics.median(f / t for f, t in zip(times["flat"], times["tree"], strict=True))
        results[tname] = {"params": n, "leaves": len(jax.tree.leaves(grads)),
                          "mean_leaf": n / len(jax.tree.leaves(grads)), "median_s": med,
                          "flat/tree": med["flat"] / med["tree"], "flat/tree paired": paired,
                          "tree/optax": med["tree"] / med["optax.adamw"],
                          "flat/optax": med["flat"] / med["optax.adamw"]}
        print(f"\n{tname} ({n} params, {len(jax.tree.leaves(grads))} leaves, mean leaf "
              f"{n / len(jax.tree.leaves(grads)):.0f}, {steps_per_rep} steps per call)")
        for v, m in med.items():
            print(f"  {v:12s} median {m * 1e3:9.3f} ms/step")
        r = results[tname]
        print(f"  flat / tree  {r['flat/tree']:.3f} (paired median {paired:.3f}); "
              f"tree / optax {r['tree/optax']:.3f}; flat / optax {r['flat/optax']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
