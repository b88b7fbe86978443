"""Time and memory of the first ``init`` with a schedule (issue 12, item 19).

The first ``init`` checks every schedule on a grid of steps (see
docs/schedules.md, "How schedules are checked"). This prints, per schedule
and per optimizer (``decaytx.adamw`` and ``optax.adamw``, which checks
nothing), the seconds of the first ``init``, of the first jitted step
(compilation included), and the peak RSS growth over both, each case in a
fresh process. Run from the repository root:

    python experiments/measure_schedule_init.py            # every case
    python experiments/measure_schedule_init.py piecewise_1000 decaytx   # one

Wall-clock figures: run it on an idle machine, or say how loaded it was.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

# Measure the decaytx of the directory this runs from (a worktree or main).
sys.path.insert(0, os.getcwd())

CASES = {
    "cosine": "optax.cosine_decay_schedule(1e-3, 10_000)",
    "warmup_cosine": "optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000)",
    "piecewise_1000": "optax.piecewise_constant_schedule(1e-3, {100 * i: 0.999 for i in range(1, 1001)})",
    "join_1000": "optax.join_schedules([optax.constant_schedule(1e-3 / (i + 1)) for i in range(1001)], "
    "[100 * i for i in range(1, 1001)])",
}
OPTIMIZERS = ("decaytx", "optax")


def one(case: str, library: str) -> None:
    import jax
    import jax.numpy as jnp
    import optax

    import decaytx

    schedule = eval(CASES[case], {"optax": optax})
    if library == "decaytx":
        tx = decaytx.adamw(schedule, 0.1)
    else:
        tx = optax.adamw(schedule, weight_decay=0.1)
    params = {"w": jnp.ones((4,))}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    state = tx.init(params)
    jax.block_until_ready(state)
    t1 = time.perf_counter()
    updates, _ = jax.jit(tx.update)(params, state, params)
    jax.block_until_ready(updates)
    t2 = time.perf_counter()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(
        f"| {case} | {library} | {t1 - t0:.3f} | {t2 - t1:.3f} | {grown / 1024:.0f} |",
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) > 2:
        one(sys.argv[1], sys.argv[2])
    else:
        import decaytx

        names = sys.argv[1:] or list(CASES)
        print(f"decaytx from {os.path.dirname(decaytx.__file__)}")
        print("| schedule | optimizer | first init (s) | first jitted step (s) | peak RSS growth (MiB) |")
        print("|---|---|---|---|---|")
        for name in names:
            for library in OPTIMIZERS:
                subprocess.run([sys.executable, __file__, name, library], check=True)
