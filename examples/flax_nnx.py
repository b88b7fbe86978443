"""Flax NNX: an MLP trained with decaytx.adamw, decaying matrices only.

``nnx.Optimizer`` hands the transform the model's ``nnx.Param`` state as
params, so a callable mask such as ``masks.ndim_at_least(2)`` sees the same
tree (kernels decayed; biases and LayerNorm scales not). Masks, anchors and
coefficient trees may also be plain dicts keyed like the model's attributes
(``nnx.to_pure_dict`` gives one): decaytx matches them to the ``nnx.State``
by path, as ``finetune`` below does for decay toward pretrained weights.

Run: ``python examples/flax_nnx.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import decaytx
from decaytx import masks


class MLP(nnx.Module):
    def __init__(self, din: int, dhidden: int, dout: int, *, rngs: nnx.Rngs) -> None:
        self.linear1 = nnx.Linear(din, dhidden, rngs=rngs)
        self.norm = nnx.LayerNorm(dhidden, rngs=rngs)
        self.linear2 = nnx.Linear(dhidden, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(nnx.relu(self.norm(self.linear1(x))))


def make_optimizer(model: MLP, learning_rate: optax.ScalarOrSchedule, weight_decay: float) -> nnx.Optimizer:
    tx = decaytx.adamw(learning_rate, weight_decay, mask=masks.ndim_at_least(2))
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def make_finetune_optimizer(model: MLP, pretrained: dict, learning_rate: float,
                            weight_decay: float) -> nnx.Optimizer:
    """L2-SP: decay the kernels toward ``pretrained`` (a plain dict of arrays)."""
    mask = {"linear1": {"kernel": True, "bias": False}, "norm": False,
            "linear2": {"kernel": True, "bias": False}}
    tx = decaytx.adamw(learning_rate, weight_decay, mask=mask, anchor=pretrained)
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    def loss_fn(model: MLP) -> jax.Array:
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def data(n: int = 256, din: int = 8, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    kx, kw = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (n, din))
    y = jnp.sin(x @ jax.random.normal(kw, (din, 1)))
    return x, y


def finetune(model: MLP, steps: int) -> float:
    """Fine-tunes ``model`` on new data, decaying toward its current weights;
    returns the kernels' largest distance from them."""
    pretrained = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    optimizer = make_finetune_optimizer(model, pretrained, 1e-3, weight_decay=1.0)
    x, y = data(seed=1)
    for _ in range(steps):
        train_step(model, optimizer, x, y)
    now = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return max(float(jnp.max(jnp.abs(now[k]["kernel"] - pretrained[k]["kernel"])))
               for k in ("linear1", "linear2"))


def main(steps: int = 200) -> dict[str, float]:
    x, y = data()
    model = MLP(8, 32, 1, rngs=nnx.Rngs(0))
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, steps)
    optimizer = make_optimizer(model, schedule, weight_decay=0.1)
    losses = [float(train_step(model, optimizer, x, y)) for _ in range(steps)]
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    drift = finetune(model, steps // 4)
    print(f"fine-tuned kernels moved at most {drift:.4f} from the pretrained ones")
    return {"first_loss": losses[0], "last_loss": losses[-1], "finetune_drift": drift}


if __name__ == "__main__":
    main()
