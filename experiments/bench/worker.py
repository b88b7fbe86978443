"""One benchmark process: every section under this process's ``XLA_FLAGS``.

``python -m experiments.bench --worker {plain,flag} --mode M --seed S --out F``
is started by :func:`experiments.bench.cli.run`, once without and once with
XLA:CPU's multi-output fusion option (process-wide: it is read when the
backend starts), and writes its figures to the JSON file ``F``.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments.bench import hlo, init_cost, timing, train, trees, variants

FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"


def tree_section(tree: trees.Tree, cfg: trees.Config, rng: np.random.Generator,
                 log: Callable[[str], None], only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The optimizers (``only`` these if given), PyTorch AdamW and the copies on ``tree``, in one loop."""
    params_np, grads_np = trees.make_params(tree, rng)
    params = {k: jnp.asarray(v) for k, v in params_np.items()}
    grads = {k: jnp.asarray(v) for k, v in grads_np.items()}
    t0 = time.perf_counter()
    steps: dict[str, variants.JaxStep] = {}
    for name, (make, nominal) in variants.optimizers().items():
        if only is None or name in only:
            same = steps.get(variants.REF) if name == variants.CONTROL else None
            steps[name] = variants.JaxStep(name, make(), params, grads, nominal, same_as=same)
    vs: list[variants.Variant] = list(steps.values())
    compile_s = time.perf_counter() - t0
    torch_info: dict[str, Any] = {}
    if cfg.torch:
        tv, torch_info = variants.torch_variants(params_np, grads_np)
        vs += tv
    vs += [variants.JaxCopy(cfg.copy_elems), variants.NumpyCopy(cfg.copy_elems)]
    log(f"  {tree.label}: {len(vs)} variants ({compile_s:.1f}s to compile); {cfg.reps} reps")
    times = timing.time_interleaved(vs, reps=cfg.reps, warmup=cfg.warmup, target_s=cfg.target_s, rng=rng, log=log)
    copy = next(v for v in vs if isinstance(v, variants.JaxCopy))
    copy_gbs = copy.bytes / times[copy.name]["median_s"] / 1e9
    rows: dict[str, Any] = {}
    for v in vs:
        row = v.info() | times[v.name]
        if v.nominal is not None:
            row["fraction_of_copy"] = v.nominal * tree.size / times[v.name]["median_s"] / 1e9 / copy_gbs
        if isinstance(v, (variants.JaxCopy, variants.NumpyCopy)):
            row["gbs"] = v.bytes / times[v.name]["median_s"] / 1e9
        rows[v.name] = row
        v.close()
    return {"tree": tree.as_dict(), "variants": rows, "copy_gbs": copy_gbs, "torch": torch_info,
            "ratios": ratios_to_ref(times, rng)}


def ratios_to_ref(times: dict[str, dict[str, Any]], rng: np.random.Generator) -> dict[str, Any]:
    """Every variant's median step time over ``optax.adamw``'s, with a paired bootstrap CI."""
    ref = times[variants.REF]["samples_s"]
    return {name: timing.paired_ratio(t["samples_s"], ref, rng) for name, t in times.items()
            if name != variants.REF}


def train_section(cfg: trees.Config, rng: np.random.Generator, log: Callable[[str], None]) -> dict[str, Any]:
    vs, n = train.train_variants(cfg.mlp_dims, cfg.mlp_batch, rng)
    log(f"  MLP train step ({n:,} params, batch {cfg.mlp_batch}): {len(vs)} variants; {cfg.reps} reps")
    times = timing.time_interleaved(vs, reps=cfg.reps, warmup=cfg.warmup, target_s=cfg.target_s, rng=rng)
    rows = {v.name: v.info() | times[v.name] for v in vs}
    for v in vs:
        v.close()
    return {"dims": list(cfg.mlp_dims), "batch": cfg.mlp_batch, "params": n, "variants": rows,
            "ratios": ratios_to_ref(times, rng)}


def kernels_section(n: int) -> dict[str, Any]:
    """Params-sized kernels and bytes/param of each optimizer's step on one ``n``-param leaf."""
    return {"params": n, "steps": {name: hlo.leaf_kernels(make(), n)
                                   for name, (make, _) in variants.optimizers().items()
                                   if name != variants.CONTROL}}


def run(mode: str, seed: int, label: str, log: Callable[[str], None]) -> dict[str, Any]:
    import decaytx

    cfg = trees.config(mode)
    rng = np.random.default_rng(seed)
    active = decaytx.multi_output_fusion_active()
    log(f"worker {label}: XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, multi-output fusion active: {active}")
    t0 = time.perf_counter()
    out: dict[str, Any] = {"label": label, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                           "multi_output_fusion_active": active}
    out["kernels"] = kernels_section(4096 if mode == "tiny" else trees.M)  # one leaf: every optimizer
    if label == "plain" and cfg.forms:
        out["forms"] = hlo.forms_table()
    only = (variants.QUICK_FLAG if label == "flag" else variants.QUICK_PLAIN) if cfg.subset else None
    out["trees"] = [tree_section(t, cfg, rng, log, only) for t in cfg.trees]
    out["train"] = train_section(cfg, rng, log)
    if label == "plain":
        log(f"  init / first compile on {cfg.init_tree.label}")
        out["init"] = init_cost.measure(cfg.init_tree, cfg.init_repeats, rng, cfg.init_knots)
    out["wall_s"] = time.perf_counter() - t0
    return out


def main(mode: str, seed: int, label: str, out_file: pathlib.Path) -> None:
    result = run(mode, seed, label, lambda s: print(s, flush=True))
    out_file.write_text(json.dumps(result, default=float))
