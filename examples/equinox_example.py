"""Equinox: an MLP trained with decaytx, decaying the weight matrices only.

The optimizer sees ``eqx.filter(model, eqx.is_array)``: the model with every
non-array field (activation functions, sizes) replaced by ``None``. decaytx
passes ``None`` leaves through, and a callable mask sees the same tree.

Run: ``python examples/equinox_example.py``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import decaytx
from decaytx import masks


def make_optimizer(learning_rate: optax.ScalarOrSchedule, weight_decay: float) -> optax.GradientTransformation:
    return decaytx.adamw(learning_rate, weight_decay, mask=masks.ndim_at_least(2))


def make_step(optimizer: optax.GradientTransformation):
    @eqx.filter_jit
    def step(model: eqx.Module, opt_state: optax.OptState, x: jax.Array, y: jax.Array):
        def loss_fn(model: eqx.Module) -> jax.Array:
            return jnp.mean((jax.vmap(model)(x) - y) ** 2)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        params = eqx.filter(model, eqx.is_array)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return eqx.apply_updates(model, updates), opt_state, loss

    return step


def data(n: int = 256, din: int = 8, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    kx, kw = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (n, din))
    y = jnp.sin(x @ jax.random.normal(kw, (din, 1)))
    return x, y


def main(steps: int = 200) -> dict[str, float]:
    x, y = data()
    model = eqx.nn.MLP(8, 1, width_size=32, depth=2, key=jax.random.PRNGKey(0))
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, steps)
    optimizer = make_optimizer(schedule, weight_decay=0.1)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    step = make_step(optimizer)
    losses = []
    for _ in range(steps):
        model, opt_state, loss = step(model, opt_state, x, y)
        losses.append(float(loss))
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return {"first_loss": losses[0], "last_loss": losses[-1]}


if __name__ == "__main__":
    main()
