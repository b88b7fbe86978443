"""Interleaved timing and ratios with paired bootstrap confidence intervals.

All variants of one section run in one loop: each repetition visits every
variant once, in a fresh random order, so that slow drifts of a shared
machine hit all alike. Across processes (:mod:`experiments.bench.cli`), a
driver runs one repetition in each process in turn, so repetition ``i`` of
two processes ran side by side too and their ratios are paired as well. A ratio compares two variants' medians; its CI
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


def time_steps(steps: dict[str, list[Any]], grads: Any, reps: int,
               rng: np.random.Generator) -> dict[str, list[float]]:
    """Seconds of one call per repetition of each compiled step, ``reps``
    times, every repetition visiting the steps in a fresh random order.
    ``steps[name] = [compiled, params, state]``: each step carries its own
    params and state (donated: updated in place in ``steps``)."""
    import jax

    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name in rng.permutation(list(steps)):
            c, p, s = steps[name]
            t0 = time.perf_counter()
            p, s = c(p, s, grads)
            jax.block_until_ready(p)
            times[name].append(time.perf_counter() - t0)
            steps[name][1:] = [p, s]
    return times


def _calibrate(v: Variant, target_s: float) -> int:
    # The fastest of three single steps: contention only ever adds time.
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        v.run(1)
        best = min(best, time.perf_counter() - t0)
    return max(1, int(round(target_s / max(best, 1e-6)))) if target_s else 1


class Loop:
    """An interleaved loop, one repetition at a time (so that a driver can alternate processes between them).

    Built: warms every variant up and fixes each one's steps per repetition.
    Every JAX step runs the same number of steps per repetition: ``steps``
    if given (a driver passes one process's figure to the others, so that
    paired processes run alike), else calibrated on the reference,
    ``optax.adamw`` (or the first JAX variant): a variant repeated more often
    would find more of its buffers in cache. Copies and PyTorch calibrate
    alone.
    """

    def __init__(self, variants: Sequence[Variant], *, warmup: int, target_s: float, rng: np.random.Generator,
                 steps: int | None = None):
        self.variants, self.rng = list(variants), rng
        for v in self.variants:
            for _ in range(warmup):
                v.warm()
        jax_steps = [v for v in self.variants if v.kind == "jax"]
        ref = next((v for v in jax_steps if v.name == REF), jax_steps[0] if jax_steps else None)
        if steps is None:
            steps = _calibrate(ref, target_s) if ref is not None else 1
        self.common = steps
        self.steps = {v.name: steps if v.kind == "jax" else _calibrate(v, target_s) for v in self.variants}
        self.wall: dict[str, list[float]] = {v.name: [] for v in self.variants}
        self.cpu: dict[str, list[float]] = {v.name: [] for v in self.variants}

    def rep(self) -> None:
        """One repetition: every variant once, in a fresh random order."""
        for i in self.rng.permutation(len(self.variants)):
            v = self.variants[i]
            k = self.steps[v.name]
            c0, t0 = time.process_time(), time.perf_counter()
            v.run(k)
            t1, c1 = time.perf_counter(), time.process_time()
            self.wall[v.name].append((t1 - t0) / k)
            self.cpu[v.name].append((c1 - c0) / k)

    def results(self) -> dict[str, dict[str, Any]]:
        """Per variant: the per-repetition seconds per step (wall and process CPU) and their medians."""
        return {name: {"samples_s": s, "cpu_samples_s": self.cpu[name], "median_s": float(np.median(s)),
                       "min_s": float(np.min(s)), "cpu_median_s": float(np.median(self.cpu[name])),
                       "steps_per_rep": self.steps[name], "reps": len(s)}
                for name, s in self.wall.items()}


def time_interleaved(variants: Sequence[Variant], *, reps: int, warmup: int, target_s: float,
                     rng: np.random.Generator, log: Callable[[str], None] = lambda s: None) -> dict[str, dict[str, Any]]:
    """:class:`Loop` run for ``reps`` repetitions in one process."""
    loop = Loop(variants, warmup=warmup, target_s=target_s, rng=rng)
    for rep in range(reps):
        loop.rep()
        if rep == 0:
            log(f"    rep 1/{reps} done")
    return loop.results()


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


def median_of_ratios(a: Sequence[float], b: Sequence[float], rng: np.random.Generator,
                     n_boot: int = 2000) -> tuple[float, float, float]:
    """Median of the per-repetition ratios ``a[i] / b[i]`` (first repetition
    dropped as warm-up) with a 95% bootstrap CI: ``(median, lo, hi)``."""
    r = np.asarray(a[1:], float) / np.asarray(b[1:], float)
    boots = [np.median(rng.choice(r, len(r))) for _ in range(n_boot)]
    return float(np.median(r)), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))
