"""The cost of ``compensated=True``: state bytes, kernels, bytes/param and step time.

Compiles one step (update + apply, donated) of ``decaytx.adamw`` (decay on
the ndim >= 2 leaves) plain, again plain (an A/A control) and with
``compensated=True``, on a transformer-like tree in bfloat16 (every leaf
keeps a float32 residual) and in float32 (no residual: the same program);
reports the optimizer state's bytes per param, the kernels the step launches
(ENTRY fusions, and those with array outputs), the bytes accessed per param
from ``compiled.cost_analysis()``, and the step time over the plain step of
the same dtype (interleaved repetitions, paired ratios, bootstrap 95% CI of
the median). ``decaytx.fused.adamw`` (tree layout) with and without
compensation is measured too: run with
``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
for its sibling formulation (without the flag it is the recipe's program).

    python -m experiments.measure_compensated [--reps 15] [--params 2] [--blocks 25] [--no-donate]

``measure(..., dtype=)`` returns the same figures as a dict, in the shape
:mod:`experiments.bench.options` documents (the benchmark's "Cost of
options" runs ``measure_bfloat16`` and ``measure_float32``).
"""

from __future__ import annotations

import argparse
import functools
import warnings
from typing import Any

import decaytx
from decaytx import masks
from experiments.bench import options

DTYPES = ("bfloat16", "float32")


def _variants() -> dict[str, Any]:
    def adamw(compensated: bool = False) -> Any:
        return decaytx.adamw(1e-3, weight_decay=0.1, mask=masks.ndim_at_least(2), compensated=compensated)

    def fused(compensated: bool = False) -> Any:
        return decaytx.fused.adamw(1e-3, weight_decay=0.1, mask=masks.ndim_at_least(2), layout="tree",
                                   compensated=compensated)

    return {
        "adamw": adamw,
        "adamw (A/A)": adamw,
        "adamw(compensated=True)": lambda: adamw(True),
        "fused.adamw": fused,
        "fused.adamw(compensated=True)": lambda: fused(True),
    }


def measure(*, reps: int = 15, params: float = 2.0, blocks: int = 25, donate: bool = True,
            seed: int = 0, dtype: str = "bfloat16") -> dict[str, Any]:
    """The cost on params of ``dtype``, in the shape :mod:`experiments.bench.options` documents."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)  # plain bf16: the decay is lost
        return options.measure_variants(f"compensated=True ({dtype} params)", _variants(), reps=reps,
                                        params=params, blocks=blocks, donate=donate, seed=seed,
                                        dtype=dtype)


measure_bfloat16 = functools.partial(measure, dtype="bfloat16")
measure_float32 = functools.partial(measure, dtype="float32")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--params", type=float, default=2.0, help="millions of params")
    ap.add_argument("--blocks", type=int, default=25)
    ap.add_argument("--no-donate", action="store_true", help="params and state not donated")
    args = ap.parse_args()
    print(f"multi-output fusion {'on' if decaytx.fused.multi_output_fusion_active() else 'off'}")
    for dtype in DTYPES:
        r = measure(reps=args.reps, params=args.params, blocks=args.blocks,
                    donate=not args.no_donate, dtype=dtype)
        print("\n" + options.show(r))


if __name__ == "__main__":
    main()
