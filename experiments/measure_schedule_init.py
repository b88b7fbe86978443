"""Time and memory of the first ``init`` with a schedule (issue 12, item 19).

The first ``init`` checks every schedule on a grid of steps. This prints, per
schedule, the seconds of that first ``init`` and the peak RSS growth, each
case in a fresh process. Run from the repository root:

    python experiments/measure_schedule_init.py
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
    "cosine": "optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000)",
    "piecewise_1000": "optax.piecewise_constant_schedule(1e-3, {100 * i: 0.999 for i in range(1, 1001)})",
    "join_1000": "optax.join_schedules([optax.constant_schedule(1e-3 / (i + 1)) for i in range(1001)], "
    "[100 * i for i in range(1, 1001)])",
}


def one(case: str) -> None:
    import jax.numpy as jnp
    import optax

    import decaytx

    schedule = eval(CASES[case], {"optax": optax})
    tx = decaytx.add_decoupled_decay(1e-2, learning_rate=schedule)
    params = {"w": jnp.ones((4,))}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    tx.init(params)
    seconds = time.perf_counter() - t0
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(f"{decaytx.__file__}: {case:16s} first init {seconds:7.2f} s   peak RSS +{grown / 1024:6.0f} MiB")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        one(sys.argv[1])
    else:
        for name in CASES:
            subprocess.run([sys.executable, __file__, name], check=True)
