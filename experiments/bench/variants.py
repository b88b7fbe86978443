"""The contenders: jitted optimizer steps, PyTorch AdamW, and copy baselines.

Each :class:`Variant` holds its own buffers and runs ``steps`` steps in
place; :mod:`experiments.bench.timing` interleaves them.
"""

from __future__ import annotations

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
# --quick times these (all of them without --quick): compiling a 309-leaf step
# takes 10-40 s on a loaded 2-core machine, several times longer with the option.
QUICK_PLAIN = (REF, CONTROL, "decaytx.adamw", "decaytx.fused.adamw", "optax adam + add_decayed_weights (L2)",
               "decaytx.adam_l2", "decaytx.fused.adam_l2", "decaytx.fused.adamw (layout=flat)")
QUICK_FLAG = (REF, CONTROL, "decaytx.fused.adamw", "decaytx.fused.adam_l2", "decaytx.fused.adamw (layout=flat)")


def optimizers() -> dict[str, tuple[Callable[[], optax.GradientTransformation], int]]:
    """name -> (factory, nominal one-pass bytes per f32 param).

    AdamW and Adam-L2 read θ, g, m, v and write θ, m, v (28 B); SGD with
    momentum reads θ, g, b and writes θ, b (20 B).
    """
    import decaytx

    out: dict[str, tuple[Callable[[], optax.GradientTransformation], int]] = {
        REF: (lambda: optax.adamw(LR, weight_decay=WD), 28),
        CONTROL: (lambda: optax.adamw(LR, weight_decay=WD), 28),
        "decaytx.adamw": (lambda: decaytx.adamw(LR, WD), 28),
        "decaytx.fused.adamw": (lambda: decaytx.fused.adamw(LR, WD, layout="tree"), 28),
        "optax adam + add_decayed_weights (L2)": (
            lambda: optax.chain(optax.add_decayed_weights(L2), optax.adam(LR)), 28),
        "decaytx.adam_l2": (lambda: decaytx.adam_l2(LR, L2), 28),
        "decaytx.fused.adam_l2": (lambda: decaytx.fused.adam_l2(LR, L2, layout="tree"), 28),
        "optax sgd(momentum) + add_decayed_weights (L2)": (
            lambda: optax.chain(optax.add_decayed_weights(L2), optax.sgd(LR, momentum=0.9)), 20),
        "decaytx.sgd_l2": (lambda: decaytx.sgd_l2(LR, L2, momentum=0.9), 20),
        "decaytx.fused.sgd_l2": (lambda: decaytx.fused.sgd_l2(LR, L2, momentum=0.9), 20),
        "decaytx.sgdw": (lambda: decaytx.sgdw(LR, WD, momentum=0.9), 20),
        "decaytx.fused.sgdw": (lambda: decaytx.fused.sgdw(LR, WD, momentum=0.9), 20),
    }
    # Flat moments (one buffer per dtype; params stay a tree): what layout="auto"
    # picks with the option on for trees of small leaves.
    out["decaytx.fused.adamw (layout=flat)"] = (lambda: decaytx.fused.adamw(LR, WD, layout="flat"), 28)
    return out


class Variant:
    """One contender in the timing loop."""

    name: str
    kind: str = "jax"
    nominal: int | None = None

    def warm(self) -> None:
        self.run(1)

    def run(self, steps: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "nominal_bytes_per_param": self.nominal}


class JaxStep(Variant):
    """A jitted, donated optimizer step; params and state carried across calls."""

    def __init__(self, name: str, opt: optax.GradientTransformation, params: PyTree, grads: PyTree,
                 nominal: int | None = None, same_as: JaxStep | None = None):
        """``same_as``: a step of the same optimizer whose executable this one reuses (the A/A control)."""
        self.name = name
        p = jax.tree.map(jnp.copy, params)
        self.state = opt.init(p)
        if same_as is None:
            self.compiled, self.compile_s = hlo.compile_step(opt, p, self.state)
            self.cost = hlo.cost_of_compiled(self.compiled, self.state, p, self.compile_s)
        else:
            self.compiled, self.compile_s, self.cost = same_as.compiled, same_as.compile_s, same_as.cost
        self.params, self.grads, self.nominal = p, grads, nominal

    def run(self, steps: int) -> None:
        p, s = self.params, self.state
        for _ in range(steps):
            p, s = self.compiled(p, s, self.grads)
        jax.block_until_ready(p)
        self.params, self.state = p, s

    def close(self) -> None:
        self.params = self.state = self.compiled = None

    def info(self) -> dict[str, Any]:
        return super().info() | {
            "fusions": self.cost.fusions, "array_fusions": self.cost.array_fusions,
            "compiled_bytes_per_param": self.cost.bytes_per_param, "compile_s": self.compile_s,
        }


class JaxCopy(Variant):
    """The copy baseline: ``x + 1`` in place (donated): reads and writes each element once (8 B)."""

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
    """``np.copyto`` between two buffers: the same 8 B per element, outside XLA."""

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
    """``torch.optim.AdamW`` (``"fused"`` or ``"foreach"``) on CPU, at ``threads`` intra-op threads."""

    kind = "torch"
    nominal = 28

    def __init__(self, impl: str, threads: int, params_np: dict[str, np.ndarray],
                 grads_np: dict[str, np.ndarray], all_threads: int):
        import torch

        self.torch, self.threads, self.all_threads = torch, threads, all_threads
        self.name = torch_name(impl, threads, all_threads)
        self.params = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in params_np.values()]
        for p, g in zip(self.params, grads_np.values(), strict=True):
            p.grad = torch.from_numpy(g.copy())
        flags = {"foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
        self.opt = torch.optim.AdamW(self.params, lr=LR, weight_decay=WD, **flags)

    def run(self, steps: int) -> None:
        # Intra-op threads are process-wide: set them for this variant's steps only.
        self.torch.set_num_threads(self.threads)
        try:
            for _ in range(steps):
                self.opt.step()
        finally:
            self.torch.set_num_threads(self.all_threads)

    def close(self) -> None:
        self.params = self.opt = None


def torch_name(impl: str, threads: int, all_threads: int) -> str:
    return f"torch.AdamW ({impl}, {'1 thread' if threads == 1 else f'{all_threads} threads'})"


def torch_variants(params_np: dict[str, np.ndarray], grads_np: dict[str, np.ndarray]) -> tuple[list[Variant], dict[str, Any]]:
    """PyTorch's fused and foreach AdamW at 1 thread and at all threads, if torch is installed."""
    try:
        import torch
    except ImportError:
        return [], {"error": "torch not installed (pip install -e '.[parity]')"}
    n = torch.get_num_threads()
    out: list[Variant] = []
    info: dict[str, Any] = {"version": torch.__version__, "threads": n}
    for impl in ("fused", "foreach"):
        for threads in sorted({1, n}):
            try:
                out.append(TorchAdamW(impl, threads, params_np, grads_np, n))
            except (RuntimeError, ValueError) as e:  # an impl this build lacks
                info[torch_name(impl, threads, n)] = f"unavailable: {e}"
    return out, info
