"""Init time and first-compile time of each optimizer with a schedule.

decaytx checks a schedule at the first ``init`` (finite, non-negative, on a
grid of steps), once per schedule object; optax checks
nothing. This measures what that costs: for each optimizer and each schedule,
a fresh schedule object (so no check is cached), then the seconds of
``opt.init(params)`` and of lowering and compiling the first jitted step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.bench import hlo
from experiments.bench.trees import Tree


def schedules(knots: int = 1000) -> dict[str, Callable[[], optax.Schedule]]:
    """A warmup-cosine schedule and a piecewise-constant one with ``knots`` knots (factories)."""
    return {
        "warmup-cosine": lambda: optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000),
        f"piecewise, {knots} knots": lambda: optax.piecewise_constant_schedule(
            1e-3, {100 * i: 0.999 for i in range(1, knots + 1)}),
    }


def optimizers() -> dict[str, Callable[[optax.Schedule], optax.GradientTransformation]]:
    """name -> factory of a learning-rate schedule."""
    import decaytx

    wd, l2 = hlo.WD, hlo.L2
    return {
        "optax.adamw": lambda s: optax.adamw(s, weight_decay=wd),
        "decaytx.adamw": lambda s: decaytx.adamw(s, wd),
        "decaytx.fused.adamw": lambda s: decaytx.fused.adamw(s, wd),
        "decaytx.adam_l2": lambda s: decaytx.adam_l2(s, l2),
    }


def measure(tree: Tree, repeats: int, rng: np.random.Generator, knots: int = 1000) -> dict[str, Any]:
    """``{schedule: {optimizer: {"init_s", "compile_s"}}}``, medians over ``repeats`` fresh objects."""
    params = {k: jnp.zeros(s, jnp.float32) for k, s in tree.shapes}
    # Warm the process (first jit, backend start) so that the first case pays nothing extra.
    hlo.compile_step(optax.adam(1e-3), params)
    out: dict[str, Any] = {"tree": tree.as_dict(), "repeats": repeats, "cases": {}}
    opts = optimizers()
    for sname, make_schedule in schedules(knots).items():
        rows: dict[str, dict[str, list[float]]] = {k: {"init_s": [], "compile_s": []} for k in opts}
        for _ in range(repeats):
            for i in rng.permutation(len(opts)):
                name = list(opts)[i]
                opt = opts[name](make_schedule())
                t0 = time.perf_counter()
                state = jax.block_until_ready(opt.init(params))
                t1 = time.perf_counter()
                hlo.compile_step(opt, params, state)
                t2 = time.perf_counter()
                rows[name]["init_s"].append(t1 - t0)
                rows[name]["compile_s"].append(t2 - t1)
        out["cases"][sname] = {k: {m: float(np.median(v)) for m, v in r.items()} for k, r in rows.items()}
    return out
