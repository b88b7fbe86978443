"""One training loop shared by the parity tests (optax / PyTorch comparisons).

``run_jax`` trains a params dict of NumPy arrays with an optax optimizer for a
number of steps on a full-batch loss, one jitted step, and returns NumPy
arrays; each test module supplies its own problem and loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


def run_jax(
    opt: optax.GradientTransformation,
    params: dict[str, Any],
    loss: Callable[[Any], jax.Array],
    steps: int,
    dtype: Any,
) -> dict[str, np.ndarray]:
    """``steps`` jitted steps of ``opt`` on ``loss`` from ``params`` (cast to ``dtype``).

    ``params`` may be nested dicts; the result has the same structure, as
    float64 NumPy arrays, and is checked finite.
    """

    @jax.jit
    def step(p: Any, s: Any) -> tuple[Any, Any]:
        u, s = opt.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    p = jax.tree.map(lambda v: jnp.asarray(v, dtype), params)
    assert all(v.dtype == jnp.dtype(dtype) for v in jax.tree.leaves(p))
    s = opt.init(p)
    for _ in range(steps):
        p, s = step(p, s)
    out = jax.tree.map(lambda v: np.asarray(v, np.float64), p)
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(out))
    return out


def tanh_regression(seed: int, d_in: int, d_out: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A two-layer problem ``(params, x, y)``: hidden width 8, 32 examples, ``y = sin(x A)``.

    Params ``w1, b1, w2, b2`` are float64 NumPy arrays; the caller supplies the loss.
    """
    rng = np.random.default_rng(seed)
    params = {
        "w1": rng.normal(size=(d_in, 8)) / 2,
        "b1": rng.normal(size=(8,)) / 4,
        "w2": rng.normal(size=(8, d_out)) / 3,
        "b2": rng.normal(size=(d_out,)),
    }
    x = rng.normal(size=(32, d_in))
    y = np.sin(x @ rng.normal(size=(d_in, d_out)))
    return params, x, y


def warmup_cosine(count: Any, *, lr: float, warmup: int, steps: int) -> Any:
    """Linear warm-up to ``lr`` over ``warmup`` steps, cosine to ``lr/10`` at ``steps``.

    float64 on both sides of a comparison: NumPy for a Python int count (what
    ``torch.optim.lr_scheduler.LambdaLR`` is given), ``jax.numpy`` for a traced
    one. Written out rather than optax's schedule, which computes in float32
    at an int32 count even under x64.
    """
    xp = np if isinstance(count, (int, np.integer)) else jnp
    c = xp.asarray(count, dtype=xp.float64)
    t = xp.clip((c - warmup) / (steps - warmup), 0.0, 1.0)
    cosine = lr / 10 + (lr - lr / 10) * 0.5 * (1 + xp.cos(np.pi * t))
    return xp.where(c < warmup, lr * c / warmup, cosine)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Any:
    """Intra-op threads only add contention for tiny tensors (import it to use it)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
