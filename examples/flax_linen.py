"""Flax Linen: a ``TrainState`` whose ``tx`` is a decaytx recipe.

``TrainState.apply_gradients`` calls ``tx.update(grads, opt_state, params)``,
so any decaytx chain works unchanged; ``masks.exclude("bias", "scale")``
matches Linen's parameter names.

Run: ``python examples/flax_linen.py``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

import decaytx
from decaytx import masks


class MLP(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.LayerNorm()(nn.Dense(self.hidden)(x)))
        return nn.Dense(1)(x)


def create_state(learning_rate: optax.ScalarOrSchedule, weight_decay: float) -> train_state.TrainState:
    model = MLP()
    params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 8)))["params"]
    tx = decaytx.adamw(learning_rate, weight_decay, mask=masks.exclude("bias", "scale"))
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


@jax.jit
def train_step(state: train_state.TrainState, x: jax.Array, y: jax.Array):
    def loss_fn(params):
        return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def main(steps: int = 200) -> dict[str, float]:
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (256, 8))
    y = jnp.sin(x @ jax.random.normal(kw, (8, 1)))
    state = create_state(optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, steps), 0.1)
    losses = []
    for _ in range(steps):
        state, loss = train_step(state, x, y)
        losses.append(float(loss))
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return {"first_loss": losses[0], "last_loss": losses[-1]}


if __name__ == "__main__":
    main()
