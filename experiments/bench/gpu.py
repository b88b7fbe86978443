"""GPU benchmark: fused and plain AdamW / Adam-L2 / SGDW, bf16, the docs' default and a train step, paired rounds.

One command, under 5 minutes on one H100 (the estimate is printed first)::

    python -m experiments.bench.gpu                      # 2**28 params per tree, 1, 100, 1000 leaves
    python -m experiments.bench.gpu --size 65536 --leaves 1 4 --rounds 2 --mlp 32 64 8   # CPU smoke run

For each tree (the same number of params split into 1, 100 or 1000 leaves:
many leaves show launch overhead) it compiles one step per optimizer
(``update`` + ``optax.apply_updates``, params and state donated): optax.adamw
and an A/A control (the same executable, its own buffers), decaytx's AdamW,
Adam-L2 and SGDW recipes and their fused steps, AdamW with bf16 params, and
the docs' default configuration (a warmup-cosine schedule and a
``decaytx.masks.matrices()`` mask); ``torch.optim.AdamW(fused=True)`` on
CUDA (f32 and bf16) where torch has CUDA, else its row says why not. Trees
of more than ``--all-up-to`` (100) leaves time AdamW and the docs' default
only: their compiles dominate the run.

Per step: kernels launched, counted as fusions and custom calls in *all*
computations of the compiled HLO (XLA:GPU command buffers move the ENTRY's
kernels into a called computation) and the params-sized ones among them;
XLA's bytes accessed per param; the nominal one-pass bytes per param (read
params, grads and params-sized state, write params and state); the step
time; its fraction of the device's *nominal* memory bandwidth (a table by
device name; "unknown" otherwise) and of an ``x + 1`` copy measured in the
same run.

Timing is paired: ``--rounds`` rounds, each visiting every variant once in
a fresh random order (A B A B ...); a variant's sample in a round is the
mean step time of ``--steps`` steps after ``--warmup`` (buffers rebuilt per
round, one variant's held at a time). A ratio to ``optax.adamw`` is the
ratio of medians over rounds with a 95% bootstrap CI that resamples the
rounds jointly; the A/A control's ratio is the noise floor.

Maths check: from the same params and grads, each fused step's params after
3 steps equal its recipe's (and decaytx's recipes optax's) within
``--ulps`` ulps of ``max(|param|, lr)`` (:func:`gpu_parts.max_ulps`).
Writes ``gpu_bench.json`` and ``gpu_bench.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import pathlib
import platform
import sys
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.bench import gpu_parts as gp
from experiments.bench import hlo, timing
from experiments.bench.trees import Tree, flat, layered

REF, CONTROL = gp.REF, gp.CONTROL


def tree_of(leaves: int, n: int) -> Tree:
    return flat(n) if leaves == 1 else layered(leaves, n)


class Step:
    """One compiled optimizer step on one tree and its figures."""

    def __init__(self, spec: gp.Spec, tree: Tree, same: Step | None):
        self.spec, self.opt = spec, spec.make()
        pspec = {k: jax.ShapeDtypeStruct(s, spec.dtype) for k, s in tree.shapes}
        abstract = jax.eval_shape(self.opt.init, pspec)
        if same is not None:
            self.compiled, self.compile_s, self.info = same.compiled, 0.0, dict(same.info, compile_s=0.0)
        else:
            self.compiled, self.compile_s = hlo.compile_step(self.opt, pspec, abstract)
            text = self.compiled.as_text()
            self.info = {"compile_s": self.compile_s, "launches": hlo.launches(text),
                         "entry_fusions": len(hlo.fusion_shapes(text)),
                         "compiled_bytes_per_param": hlo.cost_analysis(self.compiled).get("bytes accessed", float("nan"))
                         / tree.size}
        self.info["dtype"] = jnp.dtype(spec.dtype).name
        self.info["nominal_bytes_per_param"] = gp.nominal_bytes_per_param(pspec, abstract)
        # A fresh state per round without re-running init (nor compiling a program per variant): eager zeros
        # of the state's shapes, one cached fill kernel per distinct shape.
        self.abstract = abstract

    def zeros(self) -> Any:
        return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), self.abstract)

    def run(self, params: Any, state: Any, grads: Any, steps: int) -> tuple[Any, Any]:
        for _ in range(steps):
            params, state = self.compiled(params, state, grads)
        return params, state


def specs_for(leaves: int, args: argparse.Namespace) -> list[gp.Spec]:
    """The variants timed on a tree of ``leaves`` leaves (above ``--all-up-to`` leaves: AdamW and the default)."""
    specs = gp.variants(not args.no_bf16, not args.no_default, core_only=leaves > args.all_up_to)
    return [s for s in specs if not args.only or s.name in args.only or s.name == REF]


def _data(tree: Tree, dtype: Any) -> tuple[Any, Any]:
    """``(make_params(key), grads)`` of ``tree``'s shapes in ``dtype``."""
    mk = jax.jit(lambda k: {n: (0.02 * jax.random.normal(jax.random.fold_in(k, i), s)).astype(dtype)
                            for i, (n, s) in enumerate(tree.shapes)})
    grads = jax.tree.map(lambda x: (x * 0.05).astype(dtype), mk(jax.random.PRNGKey(1)))
    return mk, grads


def maths_checks(steps: dict[str, Step], data: dict[str, Any], ulps: float) -> dict[str, Any]:
    """Each variant with a ``recipe``: params after 3 steps from the same start, in ulps of the recipe's."""
    out = {}
    for name, st in steps.items():
        r = st.spec.recipe
        if r is None or r not in steps:
            continue
        mk, grads = data[jnp.dtype(st.spec.dtype).name]
        key = jax.random.PRNGKey(0)
        p_a, _ = st.run(mk(key), st.opt.init(mk(key)), grads, 3)
        p_b, _ = steps[r].run(mk(key), steps[r].opt.init(mk(key)), grads, 3)
        d = gp.max_ulps(p_a, p_b)
        out[name] = {"recipe": r, "max_ulps": d, "ok": bool(d <= ulps)}
        del p_a, p_b
    return out


def bench_tree(tree: Tree, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    n = tree.size
    steps: dict[str, Step] = {}
    for spec in specs_for(tree.leaves, args):
        steps[spec.name] = Step(spec, tree, steps.get(spec.same_as) if spec.same_as else None)
    data = {d: _data(tree, getattr(jnp, d)) for d in {s.info["dtype"] for s in steps.values()}}
    checks = maths_checks(steps, data, args.ulps)
    torch_why = gp.torch_cuda_status()
    torch_rows = {} if torch_why else {f"torch.AdamW (fused, CUDA) [{d}]": gp.TorchCuda(tree.shapes, d)
                                       for d in ("f32", "bf16")}
    inc = jax.jit(lambda x: x + 1, donate_argnums=0).lower(jax.ShapeDtypeStruct((n,), jnp.float32)).compile()
    copy_x = jnp.zeros((n,), jnp.float32)
    names = [*steps, *torch_rows, "copy"]
    samples: dict[str, list[float]] = {k: [] for k in names}
    key = jax.random.PRNGKey(0)
    for _ in range(args.rounds):
        for i in rng.permutation(len(names)):
            name = names[i]
            if name == "copy":
                for _ in range(args.warmup):
                    copy_x = inc(copy_x)
                jax.block_until_ready(copy_x)
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    copy_x = inc(copy_x)
                jax.block_until_ready(copy_x)
                samples[name].append((time.perf_counter() - t0) / args.steps)
            elif name in torch_rows:
                tr = torch_rows[name]
                tr.build()
                tr.run(args.warmup)
                samples[name].append(tr.run(args.steps))
                tr.close()
            else:
                st = steps[name]
                mk, grads = data[st.info["dtype"]]
                p, s = st.run(mk(key), st.zeros(), grads, args.warmup)
                jax.block_until_ready((p, s))
                t0 = time.perf_counter()
                p, s = st.run(p, s, grads, args.steps)
                jax.block_until_ready(p)
                samples[name].append((time.perf_counter() - t0) / args.steps)
                del p, s
    copy_gbs = 8 * n / float(np.median(samples["copy"])) / 1e9
    rows: dict[str, Any] = {}
    for name in names[:-1]:
        t = float(np.median(samples[name]))
        row = dict(steps[name].info) if name in steps else {"dtype": name.split("[")[-1].rstrip("]"),
                                                               "nominal_bytes_per_param": 28.0 if "f32" in name else 14.0}
        nb = row["nominal_bytes_per_param"] * n / t / 1e9
        row.update(samples_s=samples[name], median_s=t, achieved_gbs=nb, fraction_of_copy=nb / copy_gbs,
                   fraction_of_nominal=nb / args.nominal_gbs if args.nominal_gbs else None)
        rows[name] = row
    ratios = {k: timing.paired_ratio(samples[k], samples[REF], rng) for k in names[:-1] if k != REF}
    if torch_why:
        rows["torch.AdamW (fused, CUDA)"] = {"unavailable": torch_why}
    print(f"  {tree.label}: copy {copy_gbs:.0f} GB/s; "
          + ", ".join(f"{k} {_r(ratios.get(k))}" for k in (CONTROL, "decaytx.fused.adamw") if k in ratios), flush=True)
    return {"tree": tree.as_dict(), "copy_gbs": copy_gbs, "variants": rows, "ratios": ratios, "maths": checks,
            "compile_s": sum(s.compile_s for s in steps.values())}


def train_section(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    """A whole MLP train step (forward, backward, optimizer), paired rounds like the trees."""
    import decaytx
    from experiments.bench import train

    params = train.mlp_params(tuple(args.mlp), rng)
    x = jnp.asarray(rng.standard_normal((args.batch, args.mlp[0])).astype(np.float32))
    y = jnp.asarray(rng.integers(0, args.mlp[-1], args.batch).astype(np.int32))
    sched = gp._schedule
    opts = {REF: optax.adamw(gp.LR, weight_decay=gp.WD), "decaytx.adamw": decaytx.adamw(gp.LR, gp.WD),
            "decaytx.fused.adamw": decaytx.fused.adamw(gp.LR, gp.WD),
            "optax.adamw [schedule+mask]": optax.adamw(sched(), weight_decay=gp.WD, mask=gp._optax_matrices),
            "decaytx.adamw [schedule+mask]": decaytx.adamw(sched(), gp.WD, mask=decaytx.masks.matrices())}
    t0 = time.perf_counter()
    vs = {k: train.TrainStep(k, o, params, x, y) for k, o in opts.items()}
    vs[CONTROL] = train.TrainStep(CONTROL, optax.adamw(gp.LR, weight_decay=gp.WD), params, x, y)
    compile_s = time.perf_counter() - t0
    names = list(vs)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for v in vs.values():
        v.run(args.warmup)
    for _ in range(args.rounds):
        for i in rng.permutation(len(names)):
            t0 = time.perf_counter()
            vs[names[i]].run(args.steps)
            samples[names[i]].append((time.perf_counter() - t0) / args.steps)
    rows = {k: {"launches": hlo.launches(v.compiled.as_text()), "samples_s": samples[k],
                "median_s": float(np.median(samples[k]))} for k, v in vs.items()}
    for v in vs.values():
        v.close()
    return {"dims": list(args.mlp), "batch": args.batch, "params": hlo.tree_size(params), "compile_s": compile_s,
            "variants": rows, "ratios": {k: timing.paired_ratio(samples[k], samples[REF], rng)
                                         for k in names if k != REF}}


def _r(r: dict[str, Any] | None) -> str:
    return "n/a" if not r else f"{r['median']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def _f(x: Any, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown(r: dict[str, Any]) -> str:
    nom = f"{r['nominal_gbs']:.0f} GB/s ({r['nominal_entry']})" if r["nominal_gbs"] else "unknown"
    est = r["estimate"]
    lines = [f"## GPU: {r['device']} ({r['backend']})", "",
             f"`{r['command']}`, {r['date']}; " + ", ".join(f"{k} {v}" for k, v in r["versions"].items())
             + f"; {r['wall_s']:.0f} s (estimated at start: {est['total_s']:.0f} s; compiles took "
             f"{r['compile_s']:.0f} s, estimated {est['compile_s']:.0f} s).", "",
             f"Nominal memory bandwidth: {nom}. {r['rounds']} paired rounds of {r['steps']} steps per variant "
             "(fresh random order per round); ratios to `optax.adamw` are paired (same rounds) with 95% bootstrap "
             f"CIs. Kernels = fusions + custom calls in all HLO computations (params-sized ones). torch: "
             f"{r['torch']}.", ""]
    for t in r["trees"]:
        lines += [f"### {t['tree']['label']} ({t['tree']['params']:,} params); copy (x+1, 8 B/elem) "
                  f"{t['copy_gbs']:.0f} GB/s", "",
                  "| variant | dtype | kernels (params-sized) | nominal B/param | compiled B/param | step (ms) "
                  "| / optax.adamw (paired, 95% CI) | fraction of nominal BW | fraction of copy | maths vs recipe |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, d in t["variants"].items():
            if "unavailable" in d:
                lines.append(f"| `{name}` | | | | | {d['unavailable']} | | | | |")
                continue
            la = d.get("launches")
            k = f"{la['kernels']} ({la['array_kernels']})" if la else "n/a"
            m = t["maths"].get(name)
            mt = f"{'ok' if m['ok'] else 'DIFFERS'}: {m['max_ulps']:.1f} ulp vs `{m['recipe']}`" if m else ""
            ratio = "1" if name == REF else _r(t["ratios"].get(name))
            lines.append(f"| `{name}` | {d['dtype']} | {k} | {d['nominal_bytes_per_param']:.0f} "
                         f"| {_f(d.get('compiled_bytes_per_param'), '.1f')} | {d['median_s'] * 1e3:.3f} | {ratio} "
                         f"| {_f(d['fraction_of_nominal'])} | {d['fraction_of_copy']:.2f} | {mt} |")
        lines.append("")
    tr = r.get("train")
    if tr:
        lines += [f"### Whole train step: MLP {' -> '.join(map(str, tr['dims']))} ({tr['params']:,} params), "
                  f"batch {tr['batch']}", "", "| optimizer | kernels (params-sized) | step (ms) "
                  "| / optax.adamw (paired, 95% CI) |", "|---|---|---|---|"]
        for name, d in tr["variants"].items():
            la = d["launches"]
            lines.append(f"| `{name}` | {la['kernels']} ({la['array_kernels']}) | {d['median_s'] * 1e3:.3f} "
                         f"| {'1' if name == REF else _r(tr['ratios'].get(name))} |")
        lines.append("")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench.gpu", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1 << 28, help="params per tree (default 2**28)")
    ap.add_argument("--leaves", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--rounds", type=int, default=10, help="paired rounds (each variant once per round)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mlp", type=int, nargs="+", default=[1024, 4096, 4096, 4096, 1024],
                    help="MLP widths of the train-step section (empty: skip it)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ulps", type=float, default=8.0,
                    help="maths check tolerance (decaytx.adamw computes -lr*u - (lr*wd)*p where optax.adamw computes "
                         "-lr*(u + wd*p): same kernels, up to 6 ulps apart after 3 steps on CPU)")
    ap.add_argument("--nominal-gbs", type=float, default=None, help="override the device table")
    ap.add_argument("--all-up-to", type=int, default=100,
                    help="trees with more leaves time AdamW and the docs' default only (compiles dominate the run)")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--no-default", action="store_true", help="skip the docs' default (schedule + mask) rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/gpu_bench"))
    ap.add_argument("--only", nargs="*", default=None, help="run only these optimizers (optax.adamw always)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    import decaytx

    dev = jax.devices()[0]
    entry, table_gbs = gp.nominal_gbs(dev.device_kind)
    args.nominal_gbs = args.nominal_gbs or table_gbs
    specs = {k: specs_for(k, args) for k in args.leaves}
    compiled = {k: sum(s.same_as is None for s in v) for k, v in specs.items()}
    timed = {k: len(v) + (2 if gp.torch_cuda_status() is None else 0) + 1 for k, v in specs.items()}
    est = gp.estimate_s(args.leaves, args.size, compiled, timed, args.rounds, args.steps, args.warmup,
                        6 if len(args.mlp) > 1 else 0, args.nominal_gbs or 3350.0)
    print(f"device: {dev.device_kind} ({jax.default_backend()}); nominal bandwidth "
          f"{f'{args.nominal_gbs:.0f} GB/s' if args.nominal_gbs else 'unknown'}; {args.size:,} params per tree, "
          f"leaves {args.leaves}", flush=True)
    print(f"estimated run time on an H100-class GPU: {est['total_s']:.0f} s ({sum(compiled.values())} compiled "
          f"steps on {len(args.leaves)} trees and 6 train steps, about {est['compile_s']:.0f} s of compiles at "
          f"1 s + 12 ms per leaf each; {est['timing_s']:.0f} s of timing)", flush=True)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # bf16 params at m*lambda = 1e-5: decaytx warns that the decay is below bf16's resolution (it is:
        # these rows time the step, they do not train).
        warnings.simplefilter("ignore", UserWarning)
        trees = [bench_tree(tree_of(k, args.size), args, rng) for k in args.leaves]
        train = train_section(args, rng) if len(args.mlp) > 1 else None
    cmd = "python -m experiments.bench.gpu" + ("" if argv is None else " " + " ".join(argv))
    result = {"device": dev.device_kind, "backend": jax.default_backend(), "command": cmd.strip(),
              "nominal_entry": entry, "nominal_gbs": args.nominal_gbs, "estimate": est,
              "rounds": args.rounds, "steps": args.steps, "torch": gp.torch_cuda_status() or "CUDA fused AdamW",
              "versions": {"jax": jax.__version__, "optax": optax.__version__, "decaytx": decaytx.__version__,
                           "python": platform.python_version()},
              "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "trees": trees, "train": train,
              "compile_s": sum(t["compile_s"] for t in trees) + (train["compile_s"] if train else 0.0),
              "wall_s": time.perf_counter() - t0}
    md = markdown(result)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=1, default=float))
    (args.out / "gpu_bench.md").write_text(md)
    print(f"wrote {args.out / 'gpu_bench.json'} and gpu_bench.md in {result['wall_s']:.0f}s "
          f"(estimated {est['total_s']:.0f} s on an H100)")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
