"""Interleaved timing and ratios with paired bootstrap confidence intervals.

All variants of one section run in one loop: each repetition visits every
variant once, in a fresh random order, so that slow drifts of a shared
machine hit all alike. A ratio compares two variants' medians; its CI
resamples the repetitions (the same indices for both, since repetition ``i``
of both ran side by side) and takes the 2.5th and 97.5th percentiles of the
resampled ratio of medians.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from experiments.bench.variants import REF, Variant


def _calibrate(v: Variant, target_s: float) -> int:
    # The fastest of three single steps: contention only ever adds time.
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        v.run(1)
        best = min(best, time.perf_counter() - t0)
    return max(1, int(round(target_s / max(best, 1e-6)))) if target_s else 1


def time_interleaved(variants: Sequence[Variant], *, reps: int, warmup: int, target_s: float,
                     rng: np.random.Generator, log: Callable[[str], None] = lambda s: None) -> dict[str, dict[str, Any]]:
    """Per variant: the per-repetition seconds per step (wall and process CPU) and their medians.

    Every JAX step runs the same number of steps per repetition (calibrated on
    the reference, ``optax.adamw``, or the first JAX variant): a variant
    repeated more often would find more of its buffers in cache. Copies and
    PyTorch calibrate alone.
    """
    for v in variants:
        for _ in range(warmup):
            v.warm()
    jax_steps = [v for v in variants if v.kind == "jax"]
    ref = next((v for v in jax_steps if v.name == REF), jax_steps[0] if jax_steps else None)
    common = _calibrate(ref, target_s) if ref is not None else 1
    steps = {v.name: common if v.kind == "jax" else _calibrate(v, target_s) for v in variants}
    wall: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    for rep in range(reps):
        for i in rng.permutation(len(variants)):
            v = variants[i]
            k = steps[v.name]
            c0, t0 = time.process_time(), time.perf_counter()
            v.run(k)
            t1, c1 = time.perf_counter(), time.process_time()
            wall[v.name].append((t1 - t0) / k)
            cpu[v.name].append((c1 - c0) / k)
        if rep == 0:
            log(f"    rep 1/{reps} done")
    return {name: {"samples_s": s, "cpu_samples_s": cpu[name], "median_s": float(np.median(s)),
                   "min_s": float(np.min(s)), "cpu_median_s": float(np.median(cpu[name])),
                   "steps_per_rep": steps[name], "reps": len(s)}
            for name, s in wall.items()}


def paired_ratio(a: Sequence[float], b: Sequence[float], rng: np.random.Generator,
                 n_boot: int = 2000, paired: bool = True) -> dict[str, float]:
    """``median(a) / median(b)`` with a 95% bootstrap CI.

    ``paired=True`` resamples repetition indices jointly (a and b timed side
    by side in one loop); ``paired=False`` resamples each independently (two
    separate loops, e.g. two processes).
    """
    x, y = np.asarray(a, float), np.asarray(b, float)
    if paired and len(x) != len(y):
        raise ValueError(f"paired samples must have equal length, got {len(x)} and {len(y)}")
    ia = rng.integers(0, len(x), (n_boot, len(x)))
    ib = ia if paired else rng.integers(0, len(y), (n_boot, len(y)))
    boot = np.median(x[ia], axis=1) / np.median(y[ib], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"median": float(np.median(x) / np.median(y)), "lo": float(lo), "hi": float(hi),
            "paired": paired}
