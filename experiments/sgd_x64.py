"""The trajectories of sgd-l2-equals-decoupled, run in a process of their own:
``JAX_ENABLE_X64=1 python -m experiments.sgd_x64 '<json>'`` prints one JSON line.

float64 needs ``JAX_ENABLE_X64`` before JAX starts, so the study runs this module
as a subprocess. Each run trains the MNIST-1D MLP with the chain
add_l2_grad(l2) -> trace(mom) -> scale_by_learning_rate(η_t) ->
add_decoupled_decay(dec, learning_rate=η_t) (the unused coefficient 0) and the
parameter gaps between paired runs are measured at every record point.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import decaytx
from experiments.mnist1d_data import generate
from experiments.nets import MLP

K = decaytx.masks.ndim_at_least(2)


def chain(h: dict[str, jax.Array], steps: int) -> optax.GradientTransformation:
    unit = optax.cosine_decay_schedule(1.0, steps)
    lr = lambda t: h["lr"] * (h["cos"] * unit(t) + 1.0 - h["cos"])  # noqa: E731
    return optax.chain(decaytx.add_l2_grad(h["l2"], mask=K), optax.trace(h["mom"]), optax.scale_by_learning_rate(lr),
                       decaytx.add_decoupled_decay(h["dec"], learning_rate=lr, mask=K))


def trajectories(cfg: dict[str, Any], runs: list[dict[str, float]], dtype: Any) -> list[np.ndarray]:
    """Flattened params of each run at each record point: list over runs of [records + 1, n_params]."""
    d = generate(*cfg["data"], cfg["seed"], pathlib.Path(cfg["cache"]))
    x = jnp.asarray((d["x_train"] - d["x_train"].mean()) / d["x_train"].std(), dtype)
    y = jnp.asarray(d["y_train"])
    model = MLP((40, cfg["hidden"], cfg["hidden"], 10))
    steps, records = cfg["steps"], cfg["records"]

    def loss(p: Any, idx: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x[idx])[0], y[idx]).mean()

    def one(h: dict[str, jax.Array], p: Any, idx: jax.Array) -> jax.Array:
        opt = chain(h, steps)

        def step(c: Any, b: jax.Array) -> Any:
            p, s = c
            u, s = opt.update(jax.grad(loss)(p, b), s, p)
            p = optax.apply_updates(p, u)
            return (p, s), jnp.concatenate([v.ravel() for v in jax.tree.leaves(p)])

        (_, _), traj = jax.lax.scan(step, (p, opt.init(p)), idx)
        return traj[steps // records - 1 :: steps // records]

    out = []
    fn = jax.jit(jax.vmap(one))
    hs = {k: jnp.asarray([r[k] for r in runs], dtype) for k in ("lr", "cos", "mom", "l2", "dec")}
    ps, idxs = [], []
    for r in runs:
        p = model.init_np(np.random.default_rng([int(r["seed"]), 0]))
        p = jax.tree.map(lambda v: np.asarray(v, dtype), p)
        if r.get("ulp"):  # the same init moved by one ulp, every weight
            p = jax.tree.map(lambda v: np.nextafter(v, np.inf).astype(dtype), p)
        ps.append(p)
        idxs.append(np.random.default_rng([int(r["seed"]), 1]).integers(0, x.shape[0], (steps, cfg["batch"])))
    p0 = jax.tree.map(lambda *v: jnp.asarray(np.stack(v)), *ps)
    traj = np.asarray(fn(hs, p0, jnp.asarray(np.stack(idxs), jnp.int32)))
    for k in range(len(runs)):
        first = np.concatenate([np.asarray(v[k]).ravel() for v in jax.tree.leaves(p0)])
        out.append(np.concatenate([first[None], traj[k]]).astype(np.float64))
    return out


def main() -> None:
    cfg = json.loads(sys.argv[1])
    assert jax.config.jax_enable_x64 or cfg["dtype"] == "float32", "float64 needs JAX_ENABLE_X64=1"
    trajs = trajectories(cfg, cfg["runs"], jnp.float64 if cfg["dtype"] == "float64" else jnp.float32)
    gaps = {}
    for name, (a, b) in cfg["pairs"].items():
        gaps[name] = (np.abs(trajs[a] - trajs[b]).max(axis=1) / np.abs(trajs[b]).max(axis=1)).tolist()
    print(json.dumps({"dtype": str(jnp.zeros((), jnp.float64 if cfg["dtype"] == "float64" else jnp.float32).dtype),
                      "relative_gap": gaps}))


if __name__ == "__main__":
    main()
