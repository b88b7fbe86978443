"""GPU benchmark: plain and fused AdamW / Adam-L2 / SGDW on 1, 100 and 1000 leaves, against copy bandwidth.

One command, under 5 minutes on one H100/H200::

    python -m experiments.bench.gpu                      # 256M f32 params per tree, default device
    python -m experiments.bench.gpu --size 65536 --leaves 1 4   # any size, e.g. a CPU smoke run

For each tree (the same number of params split into 1, 100 or 1000 leaves:
many leaves show launch overhead) and each optimizer it compiles one step
(``update`` + ``optax.apply_updates``, params and state donated), counts the
kernels it launches (ENTRY fusions, and the params-sized ones), reads the
bytes XLA says it accesses, and times it: ``--rounds`` rounds, each building
the variant's buffers, warming up and timing ``--steps`` steps one by one
(median over all). Variants run one after another within a round (only one
variant's buffers are held at a time); the rounds interleave them.

The bandwidth baseline is measured in the same run: ``x + 1`` on a donated
f32 array of the tree's size (8 bytes per element). A variant's fraction of
copy is its nominal one-pass traffic (AdamW, Adam-L2: 28 B/param; SGD with
momentum: 20) over its step time, over the copy's bandwidth.

On a GPU ``decaytx.fused_*`` compile to the plain recipe's program (XLA:CPU's
multi-output fusion option is the fused form's precondition), so their rows
check that the fallback costs nothing there. Writes ``gpu_bench.json`` and
``gpu_bench.md`` to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import pathlib
import platform
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.bench import hlo
from experiments.bench.trees import Tree, flat, layered

LR, WD, L2 = hlo.LR, hlo.WD, hlo.L2


def optimizers() -> dict[str, tuple[Any, int]]:
    """name -> (factory, nominal bytes per param)."""
    import decaytx

    return {
        "optax.adamw": (lambda: optax.adamw(LR, weight_decay=WD), 28),
        "decaytx.adamw": (lambda: decaytx.adamw(LR, WD), 28),
        "decaytx.fused.adamw": (lambda: decaytx.fused.adamw(LR, WD), 28),
        "decaytx.adam_l2": (lambda: decaytx.adam_l2(LR, L2), 28),
        "decaytx.fused.adam_l2": (lambda: decaytx.fused.adam_l2(LR, L2), 28),
        "decaytx.sgdw": (lambda: decaytx.sgdw(LR, WD, momentum=0.9), 20),
        "decaytx.fused.sgdw": (lambda: decaytx.fused.sgdw(LR, WD, momentum=0.9), 20),
    }


def tree_of(leaves: int, n: int) -> Tree:
    return flat(n) if leaves == 1 else layered(leaves, n)


def _timed(fn: Any, x: Any, steps: int, warmup: int, *rest: Any) -> tuple[Any, list[float]]:
    for _ in range(warmup):
        x = fn(x, *rest)
    jax.block_until_ready(x)
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        x = fn(x, *rest)
        jax.block_until_ready(x)
        out.append(time.perf_counter() - t0)
    return x, out


def bench_tree(tree: Tree, args: argparse.Namespace) -> dict[str, Any]:
    n = tree.size
    spec = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in tree.shapes}
    key = jax.random.PRNGKey(0)
    make_params = jax.jit(lambda k: {name: 0.02 * jax.random.normal(k, s, jnp.float32) for name, s in tree.shapes})
    grads = jax.jit(lambda k: {name: 1e-3 * jax.random.normal(k, s, jnp.float32) for name, s in tree.shapes})(
        jax.random.PRNGKey(1))
    inc = jax.jit(lambda x: x + 1, donate_argnums=0).lower(jax.ShapeDtypeStruct((n,), jnp.float32)).compile()
    chosen = {k: v for k, v in optimizers().items() if not args.only or k in args.only}
    info: dict[str, dict[str, Any]] = {}
    compiled = {}
    for name, (make, nominal) in chosen.items():
        opt = make()
        c, seconds = hlo.compile_step(opt, spec)
        shapes = hlo.fusion_shapes(c.as_text())
        compiled[name] = (opt, c)
        info[name] = {"compile_s": seconds, "fusions": len(shapes),
                      "array_fusions": sum(not hlo.is_scalar_shape(s) for s in shapes),
                      "nominal_bytes_per_param": nominal,
                      "compiled_bytes_per_param": hlo.cost_analysis(c).get("bytes accessed", float("nan")) / n,
                      "times": []}
    copy_times: list[float] = []
    for _ in range(args.rounds):
        x, ts = _timed(inc, jnp.zeros((n,), jnp.float32), args.steps, args.warmup)
        copy_times += ts
        del x
        for name, (opt, c) in compiled.items():
            p = make_params(key)
            s = opt.init(p)

            def step(ps: Any, c: Any = c) -> Any:
                return c(ps[0], ps[1], grads)

            ps, ts = _timed(step, (p, s), args.steps, args.warmup)
            info[name]["times"] += ts
            del p, s, ps
    copy_s = float(np.median(copy_times))
    copy_gbs = 8 * n / copy_s / 1e9
    ref = float(np.median(info["optax.adamw"]["times"])) if "optax.adamw" in info else None
    for d in info.values():
        t = float(np.median(d["times"]))
        d.update(median_s=t, ratio_to_optax=t / ref if ref else None,
                 fraction_of_copy=d["nominal_bytes_per_param"] * n / t / 1e9 / copy_gbs)
    print(f"  {tree.label}: copy {copy_gbs:.0f} GB/s; "
          + ", ".join(f"{k} {d['fraction_of_copy']:.2f}" for k, d in info.items()), flush=True)
    return {"tree": tree.as_dict(), "copy_gbs": copy_gbs, "variants": info}


def markdown(r: dict[str, Any]) -> str:
    lines = [f"## GPU: {r['device']} ({r['backend']})", "",
             f"`{r['command']}`, {r['date']}; " + ", ".join(f"{k} {v}" for k, v in r["versions"].items())
             + f"; {r['wall_s']:.0f} s.", ""]
    for t in r["trees"]:
        lines += [f"### {t['tree']['label']} ({t['tree']['params']:,} f32 params); copy (x+1, 8 B/elem) "
                  f"{t['copy_gbs']:.0f} GB/s", "",
                  "| variant | kernels per step (params-sized) | nominal B/param | compiled B/param | step (ms) "
                  "| / optax.adamw | fraction of copy |", "|---|---|---|---|---|---|---|"]
        for name, d in t["variants"].items():
            ratio = f"{d['ratio_to_optax']:.3f}" if d["ratio_to_optax"] else "n/a"
            lines.append(f"| `{name}` | {d['fusions']} ({d['array_fusions']}) | {d['nominal_bytes_per_param']} "
                         f"| {d['compiled_bytes_per_param']:.1f} | {d['median_s'] * 1e3:.3f} | {ratio} "
                         f"| {d['fraction_of_copy']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench.gpu", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1 << 28, help="f32 params per tree (default 2**28)")
    ap.add_argument("--leaves", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/gpu_bench"))
    ap.add_argument("--only", nargs="*", default=None, help="run only these optimizers")
    args = ap.parse_args(argv)
    import decaytx

    dev = jax.devices()[0]
    t0 = time.perf_counter()
    print(f"device: {dev.device_kind} ({jax.default_backend()}), {args.size:,} f32 params per tree", flush=True)
    trees = [bench_tree(tree_of(k, args.size), args) for k in args.leaves]
    cmd = "python -m experiments.bench.gpu" + ("" if argv is None else " " + " ".join(argv))
    result = {"device": dev.device_kind, "backend": jax.default_backend(), "command": cmd.strip(),
              "versions": {"jax": jax.__version__, "optax": optax.__version__, "decaytx": decaytx.__version__,
                           "python": platform.python_version()},
              "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "trees": trees, "wall_s": time.perf_counter() - t0}
    md = markdown(result)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=1, default=float))
    (args.out / "gpu_bench.md").write_text(md)
    print(f"wrote {args.out / 'gpu_bench.json'} and gpu_bench.md in {result['wall_s']:.0f}s")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
