"""The vmapped MNIST-1D trainer: many runs (grid points x seeds) in one program.

Run ``r`` trains ``model`` with ``make_opt({k: hparams[k][r]})`` (built inside
``vmap``: the coefficients are traced arrays) from seed ``seeds[r]``; runs
that share a seed share their initial weights and minibatches (paired
comparisons). Training advances in jitted ``lax.scan`` chunks; inside the scan
the largest minibatch gradient norm of every chunk is tracked (non-finite
counts as infinite). Runs are evaluated with ``lax.map`` (one run at a time;
a vmapped evaluation of hundreds of runs would hold gigabytes), and the final
evaluation keeps each run's per-example correctness on validation and test,
so a bootstrap can resample the test set as well as the seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from experiments.mnist1d_data import Split
from experiments.nets import Model

PyTree = Any
MakeOpt = Callable[[dict[str, jax.Array]], optax.GradientTransformation]
BN_STAT_EXAMPLES = 2000  # training inputs used for the evaluation batch-norm statistics
TRAIN_EVAL_EXAMPLES = 2000  # training examples evaluated at each record point


@dataclasses.dataclass
class Runs:
    """What :func:`train` returns; arrays have a leading [runs] axis."""

    steps: np.ndarray  # step of each record point, [records + 1]
    metrics: dict[str, np.ndarray]  # [runs, records + 1]
    max_grad: np.ndarray  # largest minibatch gradient norm per chunk, [runs, chunks]
    correct_val: np.ndarray  # bool [runs, n_val], final weights
    correct_test: np.ndarray  # bool [runs, n_test], final weights
    final_params: PyTree
    snapshots: list[PyTree] | None = None  # params at each record point (incl. init), if asked for
    step_stats: np.ndarray | None = None  # mean of ``step_stat`` over each chunk's steps, [runs, chunks, ...]


def kernels(params: PyTree) -> list[jax.Array]:
    return [leaf for leaf in jax.tree_util.tree_leaves(params) if leaf.ndim >= 2]


def tree_norm(leaves: list[jax.Array]) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in leaves))


def init_params(model: Model, seeds: np.ndarray) -> PyTree:
    """Initial weights drawn with NumPy per seed (no PRNG kernel to compile)."""
    uniq, inv = np.unique(seeds, return_inverse=True)
    ps = [model.init_np(np.random.default_rng([int(s), 0])) for s in uniq]
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)[inv]), *ps)


def train(
    model: Model,
    make_opt: MakeOpt,
    hparams: dict[str, Any],
    seeds: np.ndarray,
    data: Split,
    *,
    steps: int,
    batch_size: int = 64,
    records: int = 1,
    chunks: int | None = None,
    params0: PyTree | None = None,
    keep_snapshots: bool = False,
    step_stat: Callable[[PyTree, PyTree], jax.Array] | None = None,
    desc: str = "train",
) -> Runs:
    """Trains ``len(seeds)`` runs; evaluates ``records`` times (plus at init).

    ``chunks`` (default ``records``, a multiple of it) sets the progress-bar
    granularity. ``params0`` (leading [runs] axis) replaces the seeded
    initialisation, e.g. pretrained weights for fine-tuning. ``keep_snapshots``:
    also return the parameters at every record point. ``step_stat(old, new)``: a
    per-step statistic of one run's parameters before and after the step (e.g. an
    angular update), averaged over each chunk inside the scan.
    """
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
    seeds = np.asarray(seeds)
    chunks = records if chunks is None else chunks
    if chunks % records:
        raise ValueError(f"chunks={chunks} must be a multiple of records={records}")
    per_chunk = math.ceil(steps / chunks)
    n_train = data.x_train.shape[0]
    uniq, seed_of_run = np.unique(seeds, return_inverse=True)
    batches = np.stack([
        np.random.default_rng([int(s), 1]).integers(0, n_train, (chunks * per_chunk, batch_size))
        for s in uniq
    ]).astype(np.int32)

    def loss(params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x)[0], y).mean()

    # Data goes in as an argument: closed-over arrays would be constant-folded.
    def chunk_one(h: dict[str, jax.Array], state: Any, idx: jax.Array, data: Split) -> Any:
        opt = make_opt(h)

        def step(carry: Any, batch: jax.Array) -> Any:
            params, opt_state, gmax = carry
            grads = jax.grad(loss)(params, data.x_train[batch], data.y_train[batch])
            g = optax.global_norm(grads)
            gmax = jnp.maximum(gmax, jnp.where(jnp.isfinite(g), g, jnp.inf))
            updates, opt_state = opt.update(grads, opt_state, params)
            new = optax.apply_updates(params, updates)
            return (new, opt_state, gmax), (step_stat(params, new) if step_stat else None)

        params, opt_state = state
        (params, opt_state, gmax), per_step = jax.lax.scan(step, (params, opt_state, jnp.float32(0.0)), idx)
        return (params, opt_state), (gmax, None if per_step is None else per_step.mean(axis=0))

    def evaluate_one(params: PyTree, data: Split) -> dict[str, jax.Array]:
        stats = model.apply(params, data.x_train[:BN_STAT_EXAMPLES])[1] or None
        out = {}
        for part, x, y in (("train", data.x_train[:TRAIN_EVAL_EXAMPLES], data.y_train[:TRAIN_EVAL_EXAMPLES]),
                           ("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
            logits = model.apply(params, x, stats)[0]
            correct = jnp.argmax(logits, axis=-1) == y
            out[f"{part}_loss"] = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            out[f"{part}_acc"] = correct.mean()
            out[f"correct_{part}"] = correct
        out["weight_norm"] = tree_norm(kernels(params))
        return out

    init_opt = jax.jit(jax.vmap(lambda h, p: make_opt(h).init(p)))
    advance = jax.jit(jax.vmap(chunk_one, in_axes=(0, 0, 0, None)))
    evaluate = jax.jit(lambda ps, data: jax.lax.map(lambda p: evaluate_one(p, data), ps))

    params = init_params(model, seeds) if params0 is None else jax.tree.map(jnp.asarray, params0)
    state = (params, init_opt(hp, params))
    rows = [jax.device_get(evaluate(params, data))]
    snaps = [jax.device_get(params)] if keep_snapshots else None
    gmax, sstats = [], []
    for c in tqdm(range(chunks), desc=desc, unit="chunk", leave=False):
        idx = jnp.asarray(batches[seed_of_run, c * per_chunk : (c + 1) * per_chunk])
        state, (g, st) = advance(hp, state, idx, data)
        gmax.append(np.asarray(g))
        if st is not None:
            sstats.append(np.asarray(st))
        if (c + 1) % (chunks // records) == 0:
            rows.append(jax.device_get(evaluate(state[0], data)))
            if snaps is not None:
                snaps.append(jax.device_get(state[0]))
    scalar = [k for k in rows[0] if not k.startswith("correct_")]
    return Runs(
        steps=np.arange(records + 1) * per_chunk * (chunks // records),
        metrics={k: np.stack([np.asarray(r[k]) for r in rows], axis=1) for k in scalar},
        max_grad=np.stack(gmax, axis=1),
        correct_val=np.asarray(rows[-1]["correct_val"]),
        correct_test=np.asarray(rows[-1]["correct_test"]),
        final_params=jax.device_get(state[0]),
        snapshots=snaps,
        step_stats=np.stack(sstats, axis=1) if sstats else None,
    )


def grid_runs(grid: dict[str, Any], n_seeds: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Cartesian product of ``grid`` x seeds on one run axis (grid-major, seed-minor),
    so ``metric.reshape(*grid_shape, n_seeds)`` recovers the grid."""
    names = list(grid)
    mesh = np.meshgrid(*[np.asarray(grid[k], np.float64) for k in names], indexing="ij")
    flat = {k: np.repeat(m.reshape(-1), n_seeds) for k, m in zip(names, mesh)}
    n_points = mesh[0].size if names else 1
    return flat, np.tile(seed * 1000 + np.arange(n_seeds), n_points)


def cosine(steps: int) -> optax.Schedule:
    """The unit cosine schedule 1 -> 0 over ``steps`` (multiply by the peak lr)."""
    return optax.cosine_decay_schedule(1.0, steps)
