"""One benchmark process, driven in lockstep over a pipe by :mod:`experiments.bench.cli`.

``python -m experiments.bench --worker {plain,flag,control} --mode M --seed S``
is started by :func:`experiments.bench.cli.run` three times: without
XLA:CPU's multi-output fusion option (``plain``), with it (``flag``;
process-wide: it is read when the backend starts), and ``control``: a second
plain process that times ``optax.adamw`` only, the cross-process A/A control.
Each reads one JSON command per line on stdin and answers one JSON line on
stdout (everything else it prints goes to stderr):

* ``{"cmd": "static"}``: the untimed sections (kernels; forms and in-process
  init cost in ``plain``);
* ``{"cmd": "setup", "section": "tree"|"train", "index": i, "steps": N|null}``:
  builds and compiles the section's variants, warms them up, fixes the steps
  per repetition (``N``, or calibrated when null); answers ``{"steps": ...}``;
* ``{"cmd": "rep"}``: one repetition of the section's loop;
* ``{"cmd": "finish"}``: the section's figures (and frees its buffers);
* ``{"cmd": "quit"}``.

The driver alternates processes between repetitions, so repetition ``i`` of
every process ran side by side and cross-process ratios are paired.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments.bench import hlo, init_cost, timing, train, trees, variants

FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"
LABELS = ("plain", "flag", "control")


def only_for(label: str, cfg: trees.Config) -> tuple[str, ...] | None:
    """The optimizers a process times (``None``: all of them)."""
    if label == "control":
        return (variants.REF,)
    if not cfg.subset:
        return None
    return variants.QUICK_FLAG if label == "flag" else variants.QUICK_PLAIN


def section_rng(seed: int, index: int) -> np.random.Generator:
    """The data of section ``index``: the same params and grads in every process."""
    return np.random.default_rng([seed, index])


def tree_variants(tree: trees.Tree, cfg: trees.Config, rng: np.random.Generator,
                  only: tuple[str, ...] | None, torch: bool) -> tuple[list[variants.Variant], dict[str, Any], float]:
    """The optimizers (``only`` these if given), PyTorch AdamW and the copies on ``tree``; compile seconds."""
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
    if torch:
        tv, torch_info = variants.torch_variants(params_np, grads_np)
        vs += tv
    vs += [variants.JaxCopy(cfg.copy_elems), variants.NumpyCopy(cfg.copy_elems)]
    return vs, torch_info, compile_s


def ratios_to_ref(times: dict[str, dict[str, Any]], rng: np.random.Generator) -> dict[str, Any]:
    """Every variant's median step time over ``optax.adamw``'s, with a paired bootstrap CI."""
    ref = times[variants.REF]["samples_s"]
    return {name: timing.paired_ratio(t["samples_s"], ref, rng) for name, t in times.items()
            if name != variants.REF}


def tree_rows(tree: trees.Tree, vs: list[variants.Variant], times: dict[str, dict[str, Any]]) -> tuple[dict, float]:
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
    return rows, copy_gbs


def kernels_section(n: int) -> dict[str, Any]:
    """Params-sized kernels and bytes/param of each optimizer's step on one ``n``-param leaf."""
    return {"params": n, "steps": {name: hlo.leaf_kernels(make(), n)
                                   for name, (make, _) in variants.optimizers().items()
                                   if name != variants.CONTROL}}


class Session:
    """One process's state between commands: its config and the section being timed."""

    def __init__(self, mode: str, seed: int, label: str, log: Callable[[str], None]):
        import decaytx

        self.mode, self.seed, self.label, self.log = mode, seed, label, log
        self.cfg = trees.config(mode)
        self.rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        self.active = decaytx.fused.multi_output_fusion_active()
        self.only = only_for(label, self.cfg)
        self.section: dict[str, Any] = {}
        log(f"worker {label}: XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, multi-output fusion active: "
            f"{self.active}")

    def static(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                               "multi_output_fusion_active": self.active}
        if self.label == "control":
            return out
        out["kernels"] = kernels_section(4096 if self.mode == "tiny" else trees.M)  # one leaf: every optimizer
        if self.label == "plain":
            if self.cfg.forms:
                out["forms"] = hlo.forms_table()
            self.log(f"  init / first compile on {self.cfg.init_tree.label}")
            out["init"] = init_cost.measure(self.cfg.init_tree, self.cfg.init_repeats, self.rng, self.cfg.init_knots)
        return out

    def setup(self, section: str, index: int, steps: int | None) -> dict[str, Any]:
        data = section_rng(self.seed, index)
        cfg = self.cfg
        if section == "tree":
            tree = cfg.trees[index]
            vs, torch_info, compile_s = tree_variants(tree, cfg, data, self.only, cfg.torch and self.label != "control")
            self.section = {"kind": "tree", "tree": tree, "torch": torch_info}
            self.log(f"  {self.label} {tree.label}: {len(vs)} variants ({compile_s:.1f}s to compile)")
        else:
            vs, n = train.train_variants(cfg.mlp_dims, cfg.mlp_batch, data,
                                          self.only if self.label == "control" else None)
            self.section = {"kind": "train", "params": n}
            self.log(f"  {self.label} MLP train step ({n:,} params, batch {cfg.mlp_batch}): {len(vs)} variants")
        self.section["vs"] = vs
        self.section["loop"] = timing.Loop(vs, warmup=cfg.warmup, target_s=cfg.target_s, rng=self.rng, steps=steps)
        return {"steps": self.section["loop"].common}

    def rep(self) -> dict[str, Any]:
        self.section["loop"].rep()
        return {}

    def finish(self) -> dict[str, Any]:
        s, cfg = self.section, self.cfg
        times = s["loop"].results()
        vs = s["vs"]
        if s["kind"] == "tree":
            rows, copy_gbs = tree_rows(s["tree"], vs, times)
            out = {"tree": s["tree"].as_dict(), "variants": rows, "copy_gbs": copy_gbs, "torch": s["torch"],
                   "ratios": ratios_to_ref(times, self.rng)}
        else:
            out = {"dims": list(cfg.mlp_dims), "batch": cfg.mlp_batch, "params": s["params"],
                   "variants": {v.name: v.info() | times[v.name] for v in vs}, "ratios": ratios_to_ref(times, self.rng)}
        for v in vs:
            v.close()
        self.section = {}
        return out


def serve(mode: str, seed: int, label: str) -> None:
    """Answers the driver's commands until ``quit``: one JSON line in, one JSON line out."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed, by Python or by C++, goes to stderr
    sys.stdout = sys.stderr
    session = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        try:
            if cmd == "quit":
                break
            if session is None:
                session = Session(mode, seed, label, lambda s: print(s, file=sys.stderr, flush=True))
            reply = getattr(session, cmd)(**msg)
        except Exception:  # noqa: BLE001 - reported to the driver, which stops the run
            reply = {"error": traceback.format_exc()}
        proto.write(json.dumps(reply, default=float) + "\n")
        proto.flush()
        if "error" in reply:
            break
