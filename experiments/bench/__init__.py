"""Benchmarks: decaytx's optimizer steps beside optax and PyTorch, with and without multi-output fusion.

``python -m experiments bench [--quick] [--out DIR] [--seed N]`` (or
``python -m experiments.bench ...``). One module per stage:

* :mod:`~experiments.bench.trees`: the params trees (three of 16M params:
  1, 100 and 309 leaves; one of 0.5M params in 309 leaves) and each mode's sizes;
* :mod:`~experiments.bench.variants`: the contenders (optax, decaytx, the
  fused steps, PyTorch AdamW, copy baselines);
* :mod:`~experiments.bench.timing`: the interleaved loop (one repetition at
  a time), ratios with paired bootstrap CIs;
* :mod:`~experiments.bench.hlo`: compiled cost (kernels, bytes per param);
* :mod:`~experiments.bench.train`, :mod:`~experiments.bench.init_cost`:
  a whole MLP train step; init and first-compile time with schedules;
* :mod:`~experiments.bench.coeff_compile`: compile time against the number
  of distinct coefficient values, fresh processes (beside decaytx 0.2's
  constants with ``--baseline``);
* :mod:`~experiments.bench.options`: the cost of opt-in options
  (``decaytx.monitor``), one registry line per option, fresh processes;
* :mod:`~experiments.bench.sched_init`: the scheduled first init and first
  compile (runs ``experiments/measure_schedule_init.py``);
* :mod:`~experiments.bench.worker`: one process, answering the driver's
  commands over a pipe;
* :mod:`~experiments.bench.report`: BENCHMARKS.md;
* :mod:`~experiments.bench.cli`: drives a plain, a flag and a control
  process in lockstep (paired cross-process ratios), merges them;
* :mod:`~experiments.bench.gpu` (with :mod:`~experiments.bench.gpu_parts`):
  the GPU script (``python -m experiments.bench.gpu``).
"""

from experiments.bench.cli import main, publish, run

__all__ = ["main", "publish", "run"]
