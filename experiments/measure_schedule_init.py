"""Time and memory of the first ``init`` and first compile with a schedule.

The first ``init`` surveys every schedule on a grid of steps (see
docs/schedules.md, "How schedules are checked"). This prints, per schedule
and per optimizer (``decaytx.adamw(schedule, 0.1)`` and
``optax.adamw(schedule, weight_decay=0.1)``, which surveys nothing), the
seconds of the first ``init``, of the first compile of the jitted update
(``jit(update).lower(...).compile()``), and the peak RSS growth over both.
Each repetition runs in a fresh process (nothing cached), the two optimizers
alternating, and the table gives the median with the min-max range. Run from
the repository root:

    python experiments/measure_schedule_init.py                 # every case, 3 repetitions
    python experiments/measure_schedule_init.py piecewise_1000 --repeat 5
    python experiments/measure_schedule_init.py piecewise_1000 decaytx   # one process, one row

Wall-clock figures: run it on an idle machine, or say how loaded it was (the
load average before and after is printed).
"""

from __future__ import annotations

import os
import resource
import statistics
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


def one(case: str, library: str) -> tuple[float, float, float]:
    """(first init s, first compile s, peak RSS growth MiB) in this process."""
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
    jax.block_until_ready(params)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    state = tx.init(params)
    jax.block_until_ready(state)
    t1 = time.perf_counter()
    jax.jit(tx.update).lower(params, state, params).compile()
    t2 = time.perf_counter()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return t1 - t0, t2 - t1, grown


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main(names: list[str], repeat: int) -> None:
    import decaytx

    print(f"decaytx from {os.path.dirname(decaytx.__file__)}; {repeat} fresh processes per row")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| schedule | optimizer | first init (s) | first compile (s) | peak RSS growth (MiB) |")
    print("|---|---|---|---|---|")
    for name in names:
        runs: dict[str, list[tuple[float, ...]]] = {lib: [] for lib in OPTIMIZERS}
        for _ in range(repeat):
            for library in OPTIMIZERS:  # alternating, so a load change hits both
                out = subprocess.run([sys.executable, __file__, name, library], check=True,
                                     capture_output=True, text=True).stdout
                runs[library].append(tuple(float(x) for x in out.split()))
        for library in OPTIMIZERS:
            init, comp, rss = zip(*runs[library], strict=True)
            print(f"| {name} | {library} | {_spread(list(init))} | {_spread(list(comp))} "
                  f"| {statistics.median(rss):.0f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) == 2 and args[1] in OPTIMIZERS:
        print(*(f"{x:.6f}" for x in one(args[0], args[1])))
    else:
        n = 3
        if "--repeat" in sys.argv:
            n = int(sys.argv[sys.argv.index("--repeat") + 1])
            args = [a for a in args if a != str(n)]
        main(args or list(CASES), n)
