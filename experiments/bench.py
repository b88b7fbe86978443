"""Benchmarks: what decay costs in a jitted step, beside optax and PyTorch.

``python -m experiments bench [--quick] [--out DIR] [--seed N]`` (or
``python -m experiments.bench ...``) writes to ``DIR``:

* ``bench.json``: every figure, with the machine, versions and date;
* ``BENCHMARKS.md``: the same as tables;
* ``scaling_leaves.png``, ``scaling_params.png``: compile and step time
  against the number of leaves and the number of parameters.

Sections (see docs/performance.md for how to read them):

1. Compiled cost (deterministic): per form, fused kernels, scratch bytes,
   state bytes and bytes accessed of ``optimizer + decay`` against the
   optimizer alone.
2. Step time: every form with and without decay, ``decaytx.adamw`` against
   ``optax.adamw``, on three trees, as RATIOS. All variants are interleaved in
   one loop (a random order each repetition), warm-up excluded, params and
   state donated; the figure is the median over the repetitions.
3. PyTorch ``AdamW`` (for-loop, foreach, fused) on the same trees, in the same
   loop, against jitted ``optax.adamw``.
4. Bandwidth: bytes moved per parameter (nominal one-pass minimum, and as
   compiled) and effective GB/s as a fraction of a copy measured in the loop.
5. Scaling: compile and step time against leaves and parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import pathlib
import platform
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import _hlo

PyTree = Any
M = 1 << 20  # "16M" parameters = 16 * 2**20


# ---------------------------------------------------------------------------
# Sizes


@dataclasses.dataclass(frozen=True)
class Tree:
    """A params tree: ``kernels`` (rows, cols) matrices with a bias each, or one flat leaf."""

    label: str
    kernels: int  # number of (rows, cols) kernels, each with a (cols,) bias; 0 = one flat leaf
    rows: int
    cols: int

    @property
    def leaves(self) -> int:
        return 1 if self.kernels == 0 else 2 * self.kernels

    @property
    def size(self) -> int:
        return self.rows * self.cols if self.kernels == 0 else self.kernels * (self.rows + 1) * self.cols

    def shapes(self) -> dict[str, tuple[int, ...]]:
        if self.kernels == 0:
            return {"w": (self.rows * self.cols,)}
        out: dict[str, tuple[int, ...]] = {}
        for i in range(self.kernels):
            out[f"layer{i:04d}/kernel"] = (self.rows, self.cols)
            out[f"layer{i:04d}/bias"] = (self.cols,)
        return out


def flat(n: int, label: str | None = None) -> Tree:
    return Tree(label or f"1 leaf, {_fmt_n(n)}", 0, n, 1)


def layered(leaves: int, total: int, label: str | None = None) -> Tree:
    """``leaves // 2`` square-ish kernels and their biases, about ``total`` params."""
    k = max(leaves // 2, 1)
    side = max(int(round(math.sqrt(total / k))), 1)
    t = Tree("", k, side, side)
    return dataclasses.replace(t, label=label or f"{t.leaves} leaves, {_fmt_n(t.size)}")


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    trees: tuple[Tree, ...]
    reps: int  # timed repetitions per variant (median over them)
    warmup: int
    target_s: float  # each timed repetition runs enough steps to last about this long
    torch: bool
    scaling_leaves: tuple[int, ...]
    scaling_leaves_total: int
    scaling_params: tuple[int, ...]
    copy_elems: int  # f32 elements of the copy baseline (well above the last-level cache)
    note: str = ""


def config(mode: str) -> Config:
    if mode == "full":
        return Config(
            "full",
            trees=(flat(16 * M), layered(200, 16 * M), layered(2000, 2 * M, None)),
            reps=31, warmup=2, target_s=0.05, torch=True,
            scaling_leaves=(10, 30, 100, 300, 1000, 2000), scaling_leaves_total=4 * M,
            scaling_params=(1 * M, 4 * M, 16 * M, 64 * M), copy_elems=32 * M,
        )
    if mode == "quick":
        return Config(
            "quick",
            trees=(flat(4 * M), layered(100, 4 * M), layered(300, M // 2)),
            reps=31, warmup=2, target_s=0.02, torch=True,
            scaling_leaves=(10, 30, 100, 300), scaling_leaves_total=M,
            scaling_params=(M // 4, M, 4 * M, 16 * M), copy_elems=32 * M,
            note=("--quick: trees are smaller than the issue's (4M params, not 16M; "
                  "100 leaves, not 200; 300 small leaves, not 2000) and scaling stops at "
                  "300 leaves / 16M params, "
                  "so that it runs in a few minutes on 2 cores. Run without --quick for the "
                  "issue's sizes."),
        )
    if mode == "tiny":  # tests only: checks the outputs, not the figures
        return Config(
            "tiny",
            trees=(flat(4096),),
            reps=3, warmup=1, target_s=0.0, torch=True,
            scaling_leaves=(2, 4), scaling_leaves_total=4096,
            scaling_params=(1024, 4096), copy_elems=4096,
            note="tiny: a smoke run for the test suite; its figures mean nothing.",
        )
    raise ValueError(f"mode={mode!r}; pass 'quick', 'full' or 'tiny'.")


def _fmt_n(n: int) -> str:
    if n >= M and n % M == 0:
        return f"{n // M}M"
    if n >= M:
        return f"{n / M:.1f}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}K"
    return str(n)


# ---------------------------------------------------------------------------
# Variants: something that runs one step, holding its own buffers.


class Variant:
    """One contender in the timing loop."""

    name: str
    kind: str = "jax"

    def warm(self) -> None:
        self.run(1)

    def run(self, steps: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JaxStep(Variant):
    """A jitted, donated optimizer step; params and state carried across calls."""

    def __init__(self, name: str, opt: optax.GradientTransformation, params: PyTree, grads: PyTree,
                 *, nominal: float | None = None):
        self.name = name
        p = jax.tree.map(jnp.copy, params)
        self.state = opt.init(p)
        self.compiled, self.compile_s = _hlo.compile_step(opt, p, self.state)
        self.cost = _hlo.cost_of_compiled(self.compiled, self.state, p, self.compile_s)
        self.kernels = kernel_table(self.compiled.as_text())
        self.params = p
        self.grads = grads
        self.nominal = nominal

    def run(self, steps: int) -> None:
        p, s = self.params, self.state
        for _ in range(steps):
            p, s = self.compiled(p, s, self.grads)
        jax.block_until_ready(p)
        self.params, self.state = p, s

    def close(self) -> None:
        self.params = self.state = self.compiled = None


class JaxCopy(Variant):
    """The copy baseline: ``x + 1`` in place (donated): reads and writes each element once."""

    kind = "copy"

    def __init__(self, n: int):
        self.name = "copy (jit x+1, donated)"
        self.x = jnp.zeros((n,), jnp.float32)
        self.fn = jax.jit(lambda x: x + 1, donate_argnums=0).lower(self.x).compile()
        self.bytes = 8 * n

    def run(self, steps: int) -> None:
        x = self.x
        for _ in range(steps):
            x = self.fn(x)
        self.x = x.block_until_ready()

    def close(self) -> None:
        self.x = None


class NumpyCopy(Variant):
    """``np.copyto`` between two buffers: the same 8 bytes per element, outside XLA."""

    kind = "copy"

    def __init__(self, n: int):
        self.name = "copy (numpy copyto)"
        self.a = np.zeros(n, np.float32)
        self.b = np.ones(n, np.float32)
        self.bytes = 8 * n

    def run(self, steps: int) -> None:
        for _ in range(steps):
            np.copyto(self.a, self.b)


class TorchAdamW(Variant):
    """``torch.optim.AdamW`` with one of its implementations, on CPU."""

    kind = "torch"

    def __init__(self, impl: str, params_np: dict[str, np.ndarray], grads_np: dict[str, np.ndarray],
                 threads: int | None = None):
        import torch

        self.torch = torch
        self.threads = threads
        self.name = f"torch.AdamW ({impl})" if threads is None else f"torch.AdamW ({impl}, {threads} thread)"
        self.params = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in params_np.values()]
        for p, g in zip(self.params, grads_np.values(), strict=True):
            p.grad = torch.from_numpy(g.copy())
        flags = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
        self.opt = torch.optim.AdamW(self.params, lr=_hlo.LR, weight_decay=_hlo.WD, **flags)
        self.nominal = _hlo.nominal_bytes_per_param("adamw")

    def run(self, steps: int) -> None:
        # torch's intra-op threads are process-wide; a 1-thread variant sets
        # them for its own steps only.
        before = self.torch.get_num_threads()
        if self.threads is not None:
            self.torch.set_num_threads(self.threads)
        try:
            for _ in range(steps):
                self.opt.step()
        finally:
            if self.threads is not None:
                self.torch.set_num_threads(before)

    def close(self) -> None:
        self.params = self.opt = None


# PyTorch's three AdamW implementations at its default thread count, and the
# fused one on one thread (on a loaded machine OpenMP's parallel regions can
# stall; the 1-thread figure shows the kernel alone).
CONTROL = "adam (A/A control)"
TORCH_IMPLS = (("for-loop", None), ("foreach", None), ("fused", None), ("fused", 1))
TORCH_NAMES = tuple(
    f"torch.AdamW ({i})" if t is None else f"torch.AdamW ({i}, {t} thread)" for i, t in TORCH_IMPLS)


def kernel_table(text: str) -> list[dict[str, Any]]:
    """Per fused kernel of the ENTRY computation: array operands, outputs, bytes."""
    entry = _hlo.entry_computation(text)
    shapes = dict(_SHAPE_DEF.findall(entry))
    out = []
    for line in entry.splitlines():
        m = _FUSION_CALL.match(line)
        if not m:
            continue
        name, shape, operands = m.groups()
        ins = [o for o in re.findall(r"%([\w.\-]+)", operands) if o in shapes]
        in_bytes = [_shape_bytes(shapes[o]) for o in ins]
        out.append({
            "name": name,
            "shape": shape,
            "array_inputs": sum(b > 8 for b in in_bytes),
            "bytes": sum(in_bytes) + _shape_bytes(shape),
        })
    return out


_SHAPE_DEF = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(\S+?\[[^\]]*\](?:\{[^}]*\})?)", re.M)
_FUSION_CALL = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.+?)\s+fusion\((.*?)\),\s*kind=")
_ITEMSIZE = {"f64": 8, "f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s64": 8, "pred": 1, "s8": 1, "u8": 1}


def _shape_bytes(shape: str) -> int:
    total = 0
    for dtype, dims in re.findall(r"(\w+)\[([^\]]*)\]", shape):
        n = 1
        for d in dims.split(","):
            if d.strip():
                n *= int(d)
        total += n * _ITEMSIZE.get(dtype, 4)
    return total


# ---------------------------------------------------------------------------
# The timing loop


def time_interleaved(variants: list[Variant], cfg: Config, rng: np.random.Generator,
                     log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """Median (and min) seconds per step of each variant, interleaved.

    Each variant is warmed up, then calibrated to run ``k`` steps per timed
    repetition (about ``cfg.target_s``); every repetition visits all variants
    in a fresh random order, so slow drifts of a shared machine hit all alike.
    """
    def calibrate(v: Variant) -> int:
        # The fastest of three single steps: contention only ever adds time.
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            v.run(1)
            best = min(best, time.perf_counter() - t0)
        return max(1, int(round(cfg.target_s / max(best, 1e-6)))) if cfg.target_s else 1

    for v in variants:
        for _ in range(cfg.warmup):
            v.warm()
    # Every JAX step runs the same number of steps per repetition (set by Adam,
    # the baseline): a variant repeated more often would find more
    # of its own buffers still in cache. Copies and PyTorch calibrate alone.
    jax_steps = [v for v in variants if v.kind == "jax"]
    ref = next((v for v in jax_steps if v.name in ("adam", "optax.adamw")), jax_steps[0] if jax_steps else None)
    common = calibrate(ref) if ref is not None else 1
    steps = {v.name: common if v.kind == "jax" else calibrate(v) for v in variants}
    wall: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    for rep in range(cfg.reps):
        for i in rng.permutation(len(variants)):
            v = variants[i]
            k = steps[v.name]
            c0, t0 = time.process_time(), time.perf_counter()
            v.run(k)
            t1, c1 = time.perf_counter(), time.process_time()
            wall[v.name].append((t1 - t0) / k)
            cpu[v.name].append((c1 - c0) / k)
        if rep == 0:
            log(f"    rep 1/{cfg.reps} done")
    return {
        name: {"median_s": float(np.median(s)), "min_s": float(np.min(s)),
               "p25_s": float(np.percentile(s, 25)), "p75_s": float(np.percentile(s, 75)),
               "cpu_median_s": float(np.median(cpu[name])),
               "steps_per_rep": steps[name], "reps": len(s)}
        for name, s in wall.items()
    }


# ---------------------------------------------------------------------------
# Sections


def make_params(tree: Tree, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    params = {k: (0.02 * rng.standard_normal(s)).astype(np.float32) for k, s in tree.shapes().items()}
    grads = {k: (1e-3 * rng.standard_normal(s)).astype(np.float32) for k, s in tree.shapes().items()}
    return params, grads


def _opt_of(name: str) -> str:
    return name.split(">")[1] if name.split(">")[0] in ("l2", "l1", "elastic_net") else name.split(">")[0]


def hlo_section(log: Callable[[str], None]) -> dict[str, Any]:
    """Section 1 on a small mixed tree (deterministic, fast to compile)."""
    params = {
        "dense": {"kernel": jax.ShapeDtypeStruct((512, 256), jnp.float32),
                  "bias": jax.ShapeDtypeStruct((256,), jnp.float32)},
        "embed": jax.ShapeDtypeStruct((1000, 64), jnp.float32),
        "conv": jax.ShapeDtypeStruct((3, 3, 32, 64), jnp.float32),
    }
    n = _hlo.tree_size(params)
    bases = {"sgd": _hlo._sgd, "sgdm": _hlo._sgdm, "adam": _hlo._adam}
    base_cost = {k: _hlo.step_cost(f(), params) for k, f in bases.items()}
    rows = []
    for form in _hlo.forms():
        b = base_cost[_opt_of(form.name)]
        c = _hlo.step_cost(form.decayed(), params)
        rows.append({
            "form": form.name, "side": form.side, "anchor": form.anchor,
            "base": b.as_dict(), "decayed": c.as_dict(),
            "equal_fusions": c.fusions == b.fusions,
            "equal_temp_bytes": c.temp_bytes == b.temp_bytes,
            "extra_state_bytes": c.state_bytes - b.state_bytes,
            "extra_bytes_per_param": (c.bytes_accessed - b.bytes_accessed) / n,
        })
    ref, ours, label = _hlo.adamw_pair()
    a, b = _hlo.step_cost(ref(), params), _hlo.step_cost(ours(), params)
    # Per-kernel traffic on one 1M-param leaf: where the bytes go.
    one = {"w": jax.ShapeDtypeStruct((M,), jnp.float32)}
    by_name = {f.name: f for f in _hlo.forms()}
    kernels = {}
    for name, make in (("sgdm", _hlo._sgdm), ("l2>sgdm", by_name["l2>sgdm"].decayed),
                       ("adam", _hlo._adam), ("adam>decoupled", by_name["adam>decoupled"].decayed),
                       ("adam>prox_l1", by_name["adam>prox_l1"].decayed),
                       ("l2>adam", by_name["l2>adam"].decayed)):
        compiled, _ = _hlo.compile_step(make(), one)
        kernels[name] = [
            {"name": k["name"], "array_inputs": k["array_inputs"], "bytes_per_param": k["bytes"] / M}
            for k in kernel_table(compiled.as_text()) if not _hlo.is_scalar_shape(k["shape"])
        ]
    log(f"  compiled cost: {len(rows)} forms on a {n}-param, 4-leaf tree")
    return {"tree": "dense 512x256 + bias 256, embed 1000x64, conv 3x3x32x64 (4 leaves)",
            "params": n, "rows": rows, "kernels_1m": kernels,
            "adamw": {"label": label, "optax": a.as_dict(), "decaytx": b.as_dict()}}


def timing_section(tree: Tree, cfg: Config, seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    params_np, grads_np = make_params(tree, rng)
    params = {k: jnp.asarray(v) for k, v in params_np.items()}
    grads = {k: jnp.asarray(v) for k, v in grads_np.items()}
    variants: list[Variant] = []
    t0 = time.perf_counter()
    for o, make in {"sgd": _hlo._sgd, "sgdm": _hlo._sgdm, "adam": _hlo._adam}.items():
        variants.append(JaxStep(o, make(), params, grads, nominal=_hlo.nominal_bytes_per_param(o)))
    for form in _hlo.forms():
        variants.append(JaxStep(form.name, form.decayed(), params, grads,
                                nominal=_hlo.nominal_bytes_per_param(_opt_of(form.name), anchor=form.anchor)))
    ref, ours, label = _hlo.adamw_pair()
    variants.append(JaxStep("optax.adamw", ref(), params, grads, nominal=_hlo.nominal_bytes_per_param("adamw")))
    variants.append(JaxStep("decaytx.adamw", ours(), params, grads, nominal=_hlo.nominal_bytes_per_param("adamw")))
    # A/A control: a second, identical Adam. Its ratio to "adam" is the noise floor.
    variants.append(JaxStep(CONTROL, _hlo._adam(), params, grads, nominal=_hlo.nominal_bytes_per_param("adam")))
    compile_s = time.perf_counter() - t0
    torch_info: dict[str, Any] = {}
    if cfg.torch:
        try:
            import torch

            torch_info = {"version": torch.__version__, "threads": torch.get_num_threads()}
            for impl, threads in TORCH_IMPLS:
                try:
                    variants.append(TorchAdamW(impl, params_np, grads_np, threads))
                except (RuntimeError, ValueError) as e:  # an impl this build lacks
                    torch_info[impl] = f"unavailable: {e}"
        except ImportError:
            torch_info = {"error": "torch not installed (pip install -e '.[parity]')"}
    variants += [JaxCopy(cfg.copy_elems), NumpyCopy(cfg.copy_elems)]
    log(f"  {tree.label}: {len(variants)} variants compiled in {compile_s:.1f}s; timing {cfg.reps} reps")
    times = time_interleaved(variants, cfg, rng, log)
    n = tree.size
    copy = {v.name: v.bytes / times[v.name]["median_s"] / 1e9 for v in variants if isinstance(v, (JaxCopy, NumpyCopy))}
    copy_gbs = copy["copy (jit x+1, donated)"]
    jcopy = next(v for v in variants if isinstance(v, JaxCopy))
    copy_gbs_min = jcopy.bytes / times[jcopy.name]["min_s"] / 1e9
    rows = {}
    for v in variants:
        t = times[v.name]
        row: dict[str, Any] = {"kind": v.kind, **t}
        if isinstance(v, JaxStep):
            row.update(
                fusions=v.cost.fusions, array_fusions=v.cost.array_fusions, temp_bytes=v.cost.temp_bytes,
                state_bytes=v.cost.state_bytes, compile_s=v.compile_s,
                compiled_bytes_per_param=v.cost.bytes_per_param,
            )
            if v.name in ("adam", "optax.adamw", "sgdm"):
                row["kernels"] = v.kernels[:8]
        nominal = getattr(v, "nominal", None)
        if nominal is not None:
            row["nominal_bytes_per_param"] = nominal
            row["nominal_gbs"] = nominal * n / t["median_s"] / 1e9
            row["fraction_of_copy"] = row["nominal_gbs"] / copy_gbs
            row["fraction_of_copy_min"] = nominal * n / t["min_s"] / 1e9 / copy_gbs_min
            if "compiled_bytes_per_param" in row:
                row["compiled_gbs"] = row["compiled_bytes_per_param"] * n / t["median_s"] / 1e9
        rows[v.name] = row
    for v in variants:
        v.close()
    ratios = {"control: adam / adam": _ratio(times, CONTROL, "adam")}
    for form in _hlo.forms():
        base = _opt_of(form.name)
        ratios[form.name] = _ratio(times, form.name, base)
    ratios["decaytx.adamw / optax.adamw"] = _ratio(times, "decaytx.adamw", "optax.adamw")
    for name in TORCH_NAMES:
        if name in times:
            ratios[f"optax.adamw / {name}"] = _ratio(times, "optax.adamw", name)
    return {"tree": dataclasses.asdict(tree) | {"label": tree.label, "leaves": tree.leaves, "params": n},
            "variants": rows, "ratios": ratios, "copy_gbs": copy, "torch": torch_info,
            "adamw_label": label}


def _ratio(times: dict[str, dict[str, float]], a: str, b: str) -> dict[str, float]:
    return {"median": times[a]["median_s"] / times[b]["median_s"],
            "min": times[a]["min_s"] / times[b]["min_s"],
            "cpu_median": times[a]["cpu_median_s"] / times[b]["cpu_median_s"]}


def scaling_section(cfg: Config, seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Compile and step time against leaves (fixed total) and params (one leaf)."""
    rng = np.random.default_rng(seed + 1)
    ref, ours, _ = _hlo.adamw_pair()
    l2 = next(f for f in _hlo.forms() if f.name == "l2>adam")
    makers = {"optax.adamw": ref, "decaytx.adamw": ours, "l2>adam": l2.decayed}
    out: dict[str, Any] = {"leaves": [], "params": []}
    sweeps = [("leaves", [layered(n, cfg.scaling_leaves_total) for n in cfg.scaling_leaves]),
              ("params", [flat(n) for n in cfg.scaling_params])]
    for axis, trees in sweeps:
        for tree in trees:
            params_np, grads_np = make_params(tree, rng)
            params = {k: jnp.asarray(v) for k, v in params_np.items()}
            grads = {k: jnp.asarray(v) for k, v in grads_np.items()}
            vs = [JaxStep(k, f(), params, grads) for k, f in makers.items()]
            times = time_interleaved(vs, dataclasses.replace(cfg, reps=cfg.reps), rng, lambda s: None)
            point = {"leaves": tree.leaves, "params": tree.size, "label": tree.label}
            for v in vs:
                point[v.name] = {"compile_s": v.compile_s, "step_s": times[v.name]["median_s"],
                                 "fusions": v.cost.fusions}
                v.close()
            for k in makers:
                point[k]["compile_ratio"] = point[k]["compile_s"] / point["optax.adamw"]["compile_s"]
                point[k]["step_ratio"] = point[k]["step_s"] / point["optax.adamw"]["step_s"]
            out[axis].append(point)
            log(f"  scaling {axis}: {tree.label}: compile "
                + ", ".join(f"{k} {point[k]['compile_s']:.2f}s" for k in makers))
    return out


def plot_scaling(scaling: dict[str, Any], out_dir: pathlib.Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for axis, xlabel in (("leaves", "number of leaves (total params fixed)"),
                         ("params", "parameters (one f32 leaf)")):
        pts = scaling[axis]
        if not pts:
            continue
        x = [p[axis] for p in pts]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for name, style in (("optax.adamw", "o-"), ("decaytx.adamw", "s--"), ("l2>adam", "^:")):
            axes[0].plot(x, [p[name]["compile_s"] for p in pts], style, label=name)
            axes[1].plot(x, [p[name]["step_s"] * 1e3 for p in pts], style, label=name)
            axes[2].plot(x, [p[name]["step_ratio"] for p in pts], style, label=f"{name} step")
            if name != "optax.adamw":
                axes[2].plot(x, [p[name]["compile_ratio"] for p in pts], style, alpha=0.5,
                             label=f"{name} compile")
        axes[0].set_ylabel("compile time (s)")
        axes[1].set_ylabel("step time (ms, median)")
        axes[2].set_ylabel("ratio to optax.adamw")
        axes[2].axhline(1.0, color="gray", lw=0.8)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        axes[0].set_yscale("log")
        axes[1].set_yscale("log")
        axes[2].legend(fontsize=7)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        name = f"scaling_{axis}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        files.append(name)
    return files


# ---------------------------------------------------------------------------
# Machine, report


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    versions = {"python": platform.python_version(), "jax": jax.__version__, "optax": optax.__version__,
                "numpy": np.__version__}
    try:
        import jaxlib

        versions["jaxlib"] = jaxlib.__version__
    except ImportError:
        pass
    try:
        import decaytx

        versions["decaytx"] = decaytx.__version__
    except (ImportError, AttributeError):
        pass
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "platform": platform.platform(), "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()], "versions": versions,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _f(x: float, nd: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    L = []
    L.append("# Benchmarks")
    L.append("")
    L.append(f"Generated by `{result['command']}` ({result['mode']} mode, seed {result['seed']}, "
             f"{_f(result['wall_s'], 0)} s). Every figure below comes from this one run; "
             "see [docs/performance.md](docs/performance.md) for how to read them.")
    L.append("")
    if result["note"]:
        L.append(f"> {result['note']}")
        L.append("")
    L.append(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}")
    L.append(f"- Backend: {m['backend']} ({', '.join(m['devices'])})")
    L.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    L.append(f"- Date: {m['date']}; load average at start / end: "
             f"{' '.join(_f(x) for x in result['load'][0])} / {' '.join(_f(x) for x in result['load'][1])}")
    L.append("")
    L.append("Timings: one jitted step = `update` + `optax.apply_updates`, params and state "
             "donated, warm-up excluded; all variants of a tree interleaved in one loop in a "
             f"random order per repetition; median of {result['reps']} repetitions (each "
             "repetition runs enough steps to last a few tens of ms). Ratios are of medians; "
             "the `min` column is the ratio of the fastest repetitions; the `CPU-time` column is "
             "the ratio of median process CPU time (all threads), which preemption by other "
             "processes does not inflate. The `control: adam / adam` row times a second, "
             "identical Adam: its distance from 1 is the noise floor of its table.")
    L.append("")

    # 1. compiled cost
    h = result["hlo"]
    L.append("## 1. Compiled cost of decay (deterministic)")
    L.append("")
    L.append(f"Tree: {h['tree']}, {h['params']} params. `fusions` = fused kernels the step "
             "launches; `temp` = `memory_analysis().temp_size_in_bytes`; `state` = optimizer-state "
             "bytes; `B/param` = `cost_analysis()['bytes accessed']` / params. Base = the "
             "optimizer alone.")
    L.append("")
    L.append("| form | fusions (base -> decayed) | temp bytes | state bytes | B/param (base -> decayed) |")
    L.append("|---|---|---|---|---|")
    for r in h["rows"]:
        b, d = r["base"], r["decayed"]
        L.append(f"| `{r['form']}` | {b['fusions']} -> {d['fusions']} | {b['temp_bytes']} -> {d['temp_bytes']} "
                 f"| {b['state_bytes']} -> {d['state_bytes']} "
                 f"| {_f(b['bytes_per_param'])} -> {_f(d['bytes_per_param'])} |")
    a = h["adamw"]
    L.append(f"| `optax.adamw` vs `{a['label']}` | {a['optax']['fusions']} -> {a['decaytx']['fusions']} "
             f"| {a['optax']['temp_bytes']} -> {a['decaytx']['temp_bytes']} "
             f"| {a['optax']['state_bytes']} -> {a['decaytx']['state_bytes']} "
             f"| {_f(a['optax']['bytes_per_param'])} -> {_f(a['decaytx']['bytes_per_param'])} |")
    L.append("")
    L.append("Kernels of one step on a single 1M-param f32 leaf (params-sized fused kernels, "
             "array inputs, bytes read + written per param):")
    L.append("")
    L.append("| step | kernels | B/param |")
    L.append("|---|---|---|")
    for name, ks in h.get("kernels_1m", {}).items():
        desc = "; ".join(f"`{k['name']}` ({k['array_inputs']} in, {k['bytes_per_param']:.0f} B)" for k in ks)
        L.append(f"| `{name}` | {desc} | {sum(k['bytes_per_param'] for k in ks):.0f} |")
    L.append("")

    # 2-4 per tree
    for t in result["trees"]:
        tr = t["tree"]
        L.append(f"## Tree: {tr['label']} ({tr['leaves']} leaves, {tr['params']:,} f32 params)")
        L.append("")
        L.append("### 2. Step-time ratios, decay / no decay")
        L.append("")
        L.append("| form | median ratio | min ratio | CPU-time ratio | decayed step (ms) | base step (ms) |")
        L.append("|---|---|---|---|---|---|")
        v = t["variants"]
        for name, r in t["ratios"].items():
            if name.startswith("optax.adamw /"):
                continue
            if name.startswith("decaytx.adamw"):
                a_, b_ = "decaytx.adamw", "optax.adamw"
            elif name.startswith("control"):
                a_, b_ = CONTROL, "adam"
            else:
                a_, b_ = name, _opt_of(name)
            L.append(f"| `{name}` | {_f(r['median'], 3)} | {_f(r['min'], 3)} | {_f(r['cpu_median'], 3)} "
                     f"| {_f(v[a_]['median_s'] * 1e3, 3)} | {_f(v[b_]['median_s'] * 1e3, 3)} |")
        L.append("")
        if any(k.startswith("torch") for k in v):
            L.append("### 3. Against PyTorch AdamW (CPU), same loop")
            L.append("")
            L.append("| contender | step (ms) | optax.adamw / contender (median) | (min) | (CPU time) |")
            L.append("|---|---|---|---|---|")
            L.append(f"| `optax.adamw` (jit, donated) | {_f(v['optax.adamw']['median_s'] * 1e3, 3)} | 1 | 1 | 1 |")
            for name in TORCH_NAMES:
                if name in v:
                    r = t["ratios"][f"optax.adamw / {name}"]
                    L.append(f"| `{name}` | {_f(v[name]['median_s'] * 1e3, 3)} | {_f(r['median'], 2)} "
                             f"| {_f(r['min'], 2)} | {_f(r['cpu_median'], 2)} |")
            L.append("")
        L.append("### 4. Bandwidth")
        L.append("")
        cg = t["copy_gbs"]
        L.append("Copy baselines in the same loop: " + ", ".join(f"{k}: {_f(g, 1)} GB/s" for k, g in cg.items())
                 + f" ({_fmt_n(result['copy_elems'])} f32 elements, 8 bytes per element: one read, one "
                 "write). Effective GB/s = nominal bytes per param x params / median step time; "
                 "fraction = that / the jit copy's GB/s; `(min times)` uses the fastest repetition of both.")
        L.append("")
        L.append("| variant | kernels (array) | nominal B/param | compiled B/param | GB/s (nominal) | GB/s (compiled) | fraction of copy | (min times) |")
        L.append("|---|---|---|---|---|---|---|---|")
        for name, r in v.items():
            if "nominal_bytes_per_param" not in r:
                continue
            L.append(f"| `{name}` | {r.get('array_fusions', 'n/a')} | {r['nominal_bytes_per_param']} "
                     f"| {_f(r.get('compiled_bytes_per_param', float('nan')), 1)} | {_f(r['nominal_gbs'], 1)} "
                     f"| {_f(r.get('compiled_gbs', float('nan')), 1)} | {_f(r['fraction_of_copy'], 2)} "
                     f"| {_f(r['fraction_of_copy_min'], 2)} |")
        L.append("")
        if "kernels" in v.get("optax.adamw", {}) and tr["leaves"] == 1:
            L.append("Kernels of `optax.adamw` on this one-leaf tree, as compiled (array inputs, bytes moved):")
            L.append("")
            for k in v["optax.adamw"]["kernels"]:
                if _hlo.is_scalar_shape(k["shape"]):
                    continue
                L.append(f"- `{k['name']}` -> `{k['shape']}`: {k['array_inputs']} array inputs, "
                         f"{k['bytes'] / tr['params']:.1f} B/param")
            L.append("")

    # 5. scaling
    s = result["scaling"]
    L.append("## 5. Scaling")
    L.append("")
    for axis, title in (("leaves", f"number of leaves ({_fmt_n(result['scaling_total'])} params in all)"),
                        ("params", "parameters (one leaf)")):
        L.append(f"Against {title}: compile time (s) and step time (ms, median), ratio to `optax.adamw`.")
        L.append("")
        L.append("| point | optax.adamw compile / step | decaytx.adamw compile / step (ratio) | l2>adam compile / step (ratio) |")
        L.append("|---|---|---|---|")
        for p in s[axis]:
            o, d, c = p["optax.adamw"], p["decaytx.adamw"], p["l2>adam"]
            L.append(f"| {p['label']} | {_f(o['compile_s'])} / {_f(o['step_s'] * 1e3, 3)} "
                     f"| {_f(d['compile_s'])} / {_f(d['step_s'] * 1e3, 3)} ({_f(d['compile_ratio'])} / {_f(d['step_ratio'], 3)}) "
                     f"| {_f(c['compile_s'])} / {_f(c['step_s'] * 1e3, 3)} ({_f(c['compile_ratio'])} / {_f(c['step_ratio'], 3)}) |")
        L.append("")
    for f in result["plots"]:
        L.append(f"![{f}]({result['plot_prefix']}{f})")
        L.append("")
    L.append("## 6. GPU")
    L.append("")
    L.append("`python experiments/gpu_bench.py` (1B f32 params, AdamW + each decay form, fraction of "
             "the device's measured copy bandwidth, fusion counts; under 5 minutes on one H100/H200) "
             "writes `gpu_bench.md`, to be added here with the device name. "
             + ("This run had no GPU (backend: " + m["backend"] + "), so the GPU figures are not "
                "measured; the script is tested on CPU at a tiny size (tests/test_bench.py)."
                if m["backend"] == "cpu" else ""))
    L.append("")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------
# Entry points


def run(out_dir: pathlib.Path, cfg: Config, seed: int = 0, *, command: str = "",
        plot_prefix: str = "", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs every section with sizes ``cfg``; writes bench.json, BENCHMARKS.md, PNGs."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda s: print(s, flush=True))
    t0 = time.perf_counter()
    load0 = list(os.getloadavg()) if hasattr(os, "getloadavg") else [float("nan")] * 3
    log(f"bench ({cfg.name}) -> {out_dir}")
    if cfg.note:
        log(f"  {cfg.note}")
    result: dict[str, Any] = {
        "command": command or f"python -m experiments bench{' --quick' if cfg.name == 'quick' else ''}",
        "mode": cfg.name, "seed": seed, "note": cfg.note, "reps": cfg.reps,
        "machine": machine(), "scaling_total": cfg.scaling_leaves_total,
        "plot_prefix": plot_prefix, "copy_elems": cfg.copy_elems,
    }
    result["hlo"] = hlo_section(log)
    result["trees"] = [timing_section(t, cfg, seed, log) for t in cfg.trees]
    result["scaling"] = scaling_section(cfg, seed, log)
    result["plots"] = plot_scaling(result["scaling"], out_dir)
    result["load"] = [load0, list(os.getloadavg()) if hasattr(os, "getloadavg") else [float("nan")] * 3]
    result["wall_s"] = time.perf_counter() - t0
    (out_dir / "bench.json").write_text(json.dumps(result, indent=1, default=float))
    (out_dir / "BENCHMARKS.md").write_text(report(result))
    log(f"wrote {out_dir / 'bench.json'}, {out_dir / 'BENCHMARKS.md'} and {len(result['plots'])} plots "
        f"in {result['wall_s']:.0f}s")
    log(summary(result))
    return result


def summary(result: dict[str, Any]) -> str:
    """The key ratios, one line per tree."""
    lines = []
    for t in result["trees"]:
        r = t["ratios"]
        def span(keys: list[str], field: str, r: dict[str, Any] = r) -> str:
            xs = [r[k][field] for k in keys]
            return f"{min(xs):.3f}..{max(xs):.3f}"

        upd = [k for k in r if ">" in k and k.split(">")[0] in ("adam", "sgd")]
        grd = [k for k in r if ">" in k and k not in upd]
        s = (f"  {t['tree']['label']}: A/A control {r['control: adam / adam']['median']:.3f} "
             f"(CPU {r['control: adam / adam']['cpu_median']:.3f}); update-side decay/no-decay "
             f"{span(upd, 'median')} (CPU {span(upd, 'cpu_median')}); gradient-side "
             f"{span(grd, 'median')} (CPU {span(grd, 'cpu_median')}); "
             f"decaytx.adamw/optax.adamw {r['decaytx.adamw / optax.adamw']['median']:.3f} "
             f"(CPU {r['decaytx.adamw / optax.adamw']['cpu_median']:.3f})")
        if "optax.adamw / torch.AdamW (fused)" in r:
            s += f"; optax.adamw/torch fused {r['optax.adamw / torch.AdamW (fused)']['median']:.2f}"
        if "optax.adamw / torch.AdamW (fused, 1 thread)" in r:
            s += f", fused 1-thread {r['optax.adamw / torch.AdamW (fused, 1 thread)']['median']:.2f}"
        lines.append(s)
    return "\n".join(lines)


def main(out_dir: pathlib.Path, quick: bool, seed: int) -> None:
    """``python -m experiments bench [--quick] [--out DIR] [--seed N]``."""
    cfg = config("quick" if quick else "full")
    cmd = "python -m experiments bench" + (" --quick" if quick else "") + f" --out {out_dir}" + (
        f" --seed {seed}" if seed else "")
    run(pathlib.Path(out_dir), cfg, seed, command=cmd)


def publish(out_dir: pathlib.Path, root: pathlib.Path | None = None, suffix: str = "") -> None:
    """Copies a run's report into the repo: BENCHMARKS.md at the root, plots under docs/assets/bench/.

    ``suffix="full"`` writes BENCHMARKS-full.md and docs/assets/bench-full/ instead.
    """
    import shutil

    root = root or pathlib.Path(__file__).resolve().parents[1]
    result = json.loads((pathlib.Path(out_dir) / "bench.json").read_text())
    tag = f"-{suffix}" if suffix else ""
    assets = root / "docs" / "assets" / f"bench{tag}"
    assets.mkdir(parents=True, exist_ok=True)
    for f in result["plots"]:
        shutil.copyfile(pathlib.Path(out_dir) / f, assets / f)
    shutil.copyfile(pathlib.Path(out_dir) / "bench.json", assets / "bench.json")
    result["plot_prefix"] = f"docs/assets/bench{tag}/"
    (root / f"BENCHMARKS{tag}.md").write_text(report(result))
    print(f"published {out_dir} -> {root / f'BENCHMARKS{tag}.md'}, {assets}")


def _cli(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller trees, a few minutes on 2 cores")
    ap.add_argument("--tiny", action="store_true", help="smoke run (tests): outputs only, figures meaningless")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/bench"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--publish", type=pathlib.Path, metavar="RUN_DIR", default=None,
                    help="copy RUN_DIR's report to ./BENCHMARKS.md and docs/assets/bench/ (no run)")
    ap.add_argument("--as", dest="suffix", default="", metavar="SUFFIX",
                    help="with --publish: write BENCHMARKS-SUFFIX.md and docs/assets/bench-SUFFIX/")
    args = ap.parse_args(argv)
    if args.publish is not None:
        publish(args.publish, suffix=args.suffix)
    elif args.tiny:
        run(args.out, config("tiny"), args.seed, command="python -m experiments.bench --tiny")
    else:
        main(args.out, args.quick, args.seed)


if __name__ == "__main__":
    _cli(sys.argv[1:])
