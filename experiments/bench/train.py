"""A whole MLP train step (forward, backward, optimizer) as a timed variant.

The optimizer step is a small part of a train step; the multi-output fusion
option changes how the forward and backward passes fuse too. This times the
whole step so that the option's cost there is counted with its gain.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.bench import hlo
from experiments.bench.variants import Variant

PyTree = Any


def mlp_params(dims: tuple[int, ...], rng: np.random.Generator) -> dict[str, dict[str, jax.Array]]:
    """He-initialised dense layers ``dims[0] -> ... -> dims[-1]``."""
    out = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=False)):
        out[f"dense{i}"] = {"kernel": jnp.asarray((rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)),
                            "bias": jnp.zeros((b,), jnp.float32)}
    return out


def loss_fn(params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    """Softmax cross-entropy of a ReLU MLP."""
    h = x
    names = sorted(params)
    for name in names[:-1]:
        h = jax.nn.relu(h @ params[name]["kernel"] + params[name]["bias"])
    logits = h @ params[names[-1]]["kernel"] + params[names[-1]]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


class TrainStep(Variant):
    """One jitted train step, params and state donated, on a fixed batch."""

    def __init__(self, name: str, opt: optax.GradientTransformation, params: PyTree,
                 x: jax.Array, y: jax.Array):
        self.name = name

        def step(p: PyTree, s: PyTree, x: jax.Array, y: jax.Array) -> tuple[PyTree, PyTree]:
            g = jax.grad(loss_fn)(p, x, y)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        p = jax.tree.map(jnp.copy, params)
        self.state = opt.init(p)
        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(p, self.state, x, y).compile()
        text = compiled.as_text()
        n = hlo.tree_size(p)
        self.kernels = sum(1 for _ in hlo.fusion_shapes(text))
        self.bytes_per_param = float(hlo.cost_analysis(compiled).get("bytes accessed", float("nan"))) / n
        self.compiled, self.params, self.x, self.y = compiled, p, x, y

    def run(self, steps: int) -> None:
        p, s = self.params, self.state
        for _ in range(steps):
            p, s = self.compiled(p, s, self.x, self.y)
        jax.block_until_ready(p)
        self.params, self.state = p, s

    def close(self) -> None:
        self.params = self.state = self.compiled = None

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "fusions": self.kernels, "compiled_bytes_per_param": self.bytes_per_param}


def train_variants(dims: tuple[int, ...], batch: int, rng: np.random.Generator,
                   only: tuple[str, ...] | None = None) -> tuple[list[Variant], int]:
    """``optax.adamw``, ``decaytx.adamw`` and ``decaytx.fused.adamw`` train steps (``only`` those named); params."""
    import decaytx
    from experiments.bench.variants import LR, REF, WD

    params = mlp_params(dims, rng)
    x = jnp.asarray(rng.standard_normal((batch, dims[0])).astype(np.float32))
    y = jnp.asarray(rng.integers(0, dims[-1], batch).astype(np.int32))
    opts = {REF: optax.adamw(LR, weight_decay=WD), "decaytx.adamw": decaytx.adamw(LR, WD),
            "decaytx.fused.adamw": decaytx.fused.adamw(LR, WD)}
    return [TrainStep(k, o, params, x, y) for k, o in opts.items() if only is None or k in only], hlo.tree_size(params)
