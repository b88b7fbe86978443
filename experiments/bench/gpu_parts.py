"""Pieces of the GPU benchmark (:mod:`experiments.bench.gpu`): devices, contenders, checks, estimate.

* :func:`nominal_gbs`: the device's nominal memory bandwidth, by name;
* :func:`variants`: the optimizer steps timed on each tree (f32, bf16, the
  docs' default configuration) and which recipe each fused step must match;
* :func:`max_ulps`: how far two params trees are apart, in units in the last
  place of the reference's dtype;
* :class:`TorchCuda`: ``torch.optim.AdamW(fused=True)`` on CUDA, or why not;
* :func:`estimate_s`: the run time predicted before anything compiles.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.bench import hlo

PyTree = Any
LR, WD, L2 = hlo.LR, hlo.WD, hlo.L2
REF = "optax.adamw"
CONTROL = "optax.adamw (A/A control)"

# Nominal (datasheet) memory bandwidth, GB/s.
NOMINAL_GBS = {"H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H200": 4800.0, "A100 80GB": 2039.0, "A100 40GB": 1555.0}


def nominal_gbs(device_kind: str) -> tuple[str, float | None]:
    """``(table entry, GB/s)`` for a ``jax.Device.device_kind``; ``("unknown", None)`` when not in the table.

    ``"NVIDIA H100 80GB HBM3"`` is the SXM part; an H100 that says neither
    SXM/HBM3 nor PCIe (e.g. NVL) is unknown.
    """
    k = device_kind.upper().replace("-", " ")
    if "H200" in k:
        return "H200", NOMINAL_GBS["H200"]
    if "H100" in k:
        if "PCIE" in k:
            return "H100 PCIe", NOMINAL_GBS["H100 PCIe"]
        if "SXM" in k or "HBM3" in k:
            return "H100 SXM", NOMINAL_GBS["H100 SXM"]
    if "A100" in k:
        if "80GB" in k.replace(" ", ""):
            return "A100 80GB", NOMINAL_GBS["A100 80GB"]
        if "40GB" in k.replace(" ", ""):
            return "A100 40GB", NOMINAL_GBS["A100 40GB"]
    return "unknown", None


def _schedule() -> optax.Schedule:
    """docs/schedules.md's schedule."""
    return optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000)


def _optax_matrices(params: PyTree) -> PyTree:
    """``decaytx.masks.matrices()`` for optax: leaves with at least 2 dimensions of size > 1."""
    return jax.tree.map(lambda x: sum(d > 1 for d in x.shape) >= 2, params)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One timed optimizer step.

    ``recipe``: the variant whose maths this one must reproduce (checked
    after a few steps); ``same_as``: a variant whose executable this one
    reuses (the A/A control).
    """

    name: str
    make: Callable[[], optax.GradientTransformation]
    dtype: Any = jnp.float32
    recipe: str | None = None
    same_as: str | None = None


CORE = (REF, CONTROL, "decaytx.adamw", "decaytx.fused.adamw", "optax.adamw [schedule+mask]",
        "decaytx.adamw [schedule+mask]", "decaytx.fused.adamw [schedule+mask]")


def variants(bf16: bool = True, default_config: bool = True, core_only: bool = False) -> list[Spec]:
    """The contenders of one tree, reference first (``core_only``: AdamW and the docs' default only)."""
    import decaytx

    s = [
        Spec(REF, lambda: optax.adamw(LR, weight_decay=WD)),
        Spec(CONTROL, lambda: optax.adamw(LR, weight_decay=WD), same_as=REF),
        Spec("decaytx.adamw", lambda: decaytx.adamw(LR, WD), recipe=REF),
        Spec("decaytx.fused.adamw", lambda: decaytx.fused.adamw(LR, WD), recipe="decaytx.adamw"),
        Spec("decaytx.adam_l2", lambda: decaytx.adam_l2(LR, L2)),
        Spec("decaytx.fused.adam_l2", lambda: decaytx.fused.adam_l2(LR, L2), recipe="decaytx.adam_l2"),
        Spec("decaytx.sgdw", lambda: decaytx.sgdw(LR, WD, momentum=0.9)),
        Spec("decaytx.fused.sgdw", lambda: decaytx.fused.sgdw(LR, WD, momentum=0.9), recipe="decaytx.sgdw"),
    ]
    if bf16:
        b = jnp.bfloat16
        s += [
            Spec("optax.adamw [bf16]", lambda: optax.adamw(LR, weight_decay=WD), b),
            Spec("decaytx.adamw [bf16]", lambda: decaytx.adamw(LR, WD), b, recipe="optax.adamw [bf16]"),
            Spec("decaytx.fused.adamw [bf16]", lambda: decaytx.fused.adamw(LR, WD), b,
                 recipe="decaytx.adamw [bf16]"),
        ]
    if default_config:
        m = decaytx.masks.matrices
        s += [
            Spec("optax.adamw [schedule+mask]",
                 lambda: optax.adamw(_schedule(), weight_decay=WD, mask=_optax_matrices)),
            Spec("decaytx.adamw [schedule+mask]", lambda: decaytx.adamw(_schedule(), WD, mask=m()),
                 recipe="optax.adamw [schedule+mask]"),
            Spec("decaytx.fused.adamw [schedule+mask]", lambda: decaytx.fused.adamw(_schedule(), WD, mask=m()),
                 recipe="decaytx.adamw [schedule+mask]"),
        ]
    return [x for x in s if x.name in CORE] if core_only else s


def nominal_bytes_per_param(params: PyTree, state: PyTree) -> float:
    """One pass: read params, grads (params' dtype) and each params-sized state buffer; write params and state."""
    n = max(hlo.tree_size(params), 1)
    big = [x for x in jax.tree_util.tree_leaves(state) if hasattr(x, "shape") and np.prod(x.shape) > 1]
    return (3 * hlo.tree_bytes(params) + 2 * hlo.tree_bytes(big)) / n


def max_ulps(a: PyTree, ref: PyTree, floor: float = LR) -> float:
    """The largest ``|a - ref|`` over all leaves, in ulps of ``max(|ref|, floor)`` in ``ref``'s dtype.

    The floor is the scale of one step (``LR``): where a param crosses zero
    its value is the difference of two step-sized numbers, so two correct
    orders of operations differ by ulps of the step, not of the tiny result.
    """

    def leaf(x: jax.Array, r: jax.Array) -> jax.Array:
        eps = jnp.finfo(r.dtype).eps
        rf = jnp.abs(r.astype(jnp.float32))
        _, e = jnp.frexp(jnp.maximum(rf, floor))
        ulp = jnp.ldexp(jnp.float32(eps), e - 1)
        return jnp.max(jnp.abs(x.astype(jnp.float32) - r.astype(jnp.float32)) / ulp)

    out = jax.jit(lambda a, r: jnp.max(jnp.stack(jax.tree.leaves(jax.tree.map(leaf, a, r)))))(a, ref)
    return float(out)


class TorchCuda:
    """``torch.optim.AdamW(fused=True)`` on CUDA over a tree's shapes, in f32 or bf16."""

    def __init__(self, shapes: tuple[tuple[str, tuple[int, ...]], ...], dtype: str):
        import torch

        self.torch, self.shapes = torch, shapes
        self.dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
        self.params: list[Any] = []
        self.opt: Any = None

    def build(self) -> None:
        t = self.torch
        self.params = [t.nn.Parameter(0.02 * t.randn(s, device="cuda", dtype=self.dtype)) for _, s in self.shapes]
        for p in self.params:
            p.grad = 1e-3 * t.randn_like(p)
        self.opt = t.optim.AdamW(self.params, lr=LR, weight_decay=WD, fused=True)

    def run(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps (synchronised at both ends)."""
        self.torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            self.opt.step()
        self.torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps

    def close(self) -> None:
        self.params, self.opt = [], None


def torch_cuda_status() -> str | None:
    """``None`` when ``torch.optim.AdamW(fused=True)`` can run on CUDA here, else why not."""
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA device here (torch.cuda.is_available() is False)"
    return None


def compile_estimate_s(leaves: int) -> float:
    """Assumed seconds to compile one optimizer step of ``leaves`` leaves on an H100 (1 s + 12 ms per leaf)."""
    return 1.0 + 0.012 * leaves


def estimate_s(leaves: list[int], n: int, n_compiled: dict[int, int], n_timed: dict[int, int], rounds: int,
               steps: int, warmup: int, mlp_compiles: int, gbs: float) -> dict[str, float]:
    """Predicted seconds: compiles (per tree, keyed by its leaf count) and timing.

    Compiles: each compiled step, plus per tree the params programs (f32,
    bf16) and the copy. Timing: each (tree, round, variant) builds its buffers
    (about 4 passes over 16 B/param, and 3 eager fills per leaf at 15 µs)
    and runs ``warmup + steps`` steps of 28 B/param at ``gbs``, plus 5 µs per
    leaf-kernel launch (3 kernels per leaf).
    """
    compile_s = sum((n_compiled[k] + 3) * compile_estimate_s(k) for k in leaves) + mlp_compiles * 2.0
    step_s = {k: 28 * n / (gbs * 1e9) + 3 * k * 5e-6 for k in leaves}
    build_s = {k: 4 * 16 * n / (gbs * 1e9) + 3 * k * 15e-6 for k in leaves}
    timing_s = sum(rounds * n_timed[k] * ((warmup + steps) * s + build_s[k]) for k, s in step_s.items())
    timing_s += sum(6 * n_compiled[k] * s for k, s in step_s.items())  # maths checks: 3 steps of both sides
    return {"compile_s": compile_s, "timing_s": timing_s, "total_s": compile_s + timing_s + 20.0}
