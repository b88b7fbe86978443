"""The cost of ``decaytx.monitor``: kernels, bytes/param and step time over the bare optimizer.

Compiles one step (update + apply, donated) of ``decaytx.adamw`` (decay on
the ndim >= 2 leaves) alone, again alone (an A/A control), under
``decaytx.monitor`` (one entry per decayed leaf) and under
``decaytx.monitor(groups=[""])`` (one entry for everything), on a
transformer-like tree; reports the kernels each launches (ENTRY fusions, and
those with array outputs), the bytes accessed per param from
``compiled.cost_analysis()``, the state bytes per param, and the step time
over the bare one (interleaved repetitions, paired ratios, bootstrap 95% CI
of the median). :func:`measure` is what the benchmark's "Cost of options"
section runs (:mod:`experiments.bench.options`).

    python -m experiments.measure_monitor [--reps 15] [--params 2] [--blocks 25] [--layered N] [--no-donate]
"""

from __future__ import annotations

import argparse
from typing import Any

import decaytx
from decaytx import masks
from experiments.bench import options


def _variants() -> dict:
    def base():
        return decaytx.adamw(1e-3, weight_decay=0.1, mask=masks.ndim_at_least(2))

    return {
        "adamw": base,
        "adamw (A/A)": base,
        "monitor(adamw)": lambda: decaytx.monitor(base()),
        'monitor(adamw, groups=[""])': lambda: decaytx.monitor(base(), groups=[""]),
    }


def measure(*, reps: int = 15, params: float = 2.0, blocks: int = 25, layered: int = 0,
            donate: bool = True, seed: int = 0) -> dict[str, Any]:
    """The monitor's cost, in the shape :mod:`experiments.bench.options` documents."""
    return options.measure_variants("decaytx.monitor", _variants(), reps=reps, params=params,
                                    blocks=blocks, layered=layered, donate=donate, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--params", type=float, default=2.0, help="millions of params")
    ap.add_argument("--blocks", type=int, default=25)
    ap.add_argument("--layered", type=int, default=0,
                    help="N > 0: N/2 square kernels and their biases instead of the transformer")
    ap.add_argument("--no-donate", action="store_true", help="params and state not donated")
    args = ap.parse_args()
    res = measure(reps=args.reps, params=args.params, blocks=args.blocks, layered=args.layered,
                  donate=not args.no_donate)
    print(options.show(res))


if __name__ == "__main__":
    main()
