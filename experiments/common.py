"""What every study shares: data, a small MLP in pure JAX, a vmapped trainer, plots.

The trainer runs many configurations (grid points x seeds) at once: the
hyperparameters are traced arrays with a leading run axis, the optimizer is
built from them inside ``jax.vmap``, and training advances in jitted
``lax.scan`` chunks so a tqdm bar can show progress between chunks.
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

PyTree = Any
MakeOpt = Callable[[dict[str, jax.Array]], optax.GradientTransformation]


# ---------------------------------------------------------------------------
# Run size: smoke (tests), quick (README main job), full.


@dataclasses.dataclass(frozen=True)
class Mode:
    """How big each study runs. Every study reads its sizes from here."""

    name: str
    seeds: int  # independent seeds per configuration
    steps: int  # optimizer steps for the MLP studies
    records: int  # evaluation points along training
    grid: int  # points per axis of the lr x wd landscape
    hidden: int  # MLP hidden width
    lasso_alphas: int  # points on the lasso path
    lasso_steps: int  # ISTA iterations per alpha


MODES = {
    "smoke": Mode("smoke", seeds=2, steps=120, records=6, grid=3, hidden=32, lasso_alphas=6, lasso_steps=1500),
    "quick": Mode("quick", seeds=3, steps=1500, records=15, grid=5, hidden=64, lasso_alphas=20, lasso_steps=4000),
    "full": Mode("full", seeds=5, steps=4000, records=20, grid=7, hidden=128, lasso_alphas=40, lasso_steps=20000),
}


# ---------------------------------------------------------------------------
# Data: scikit-learn's bundled digits (no download), a small training split.


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Digits:
    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array


TRAIN_SIZE = 300
VAL_SIZE = 300


def load_digits_split(seed: int) -> Digits:
    """1797 8x8 digits: 300 train, 300 validation, the rest (1197) test.

    A small training split so that a 64-wide MLP can overfit it. Pixels are
    scaled to [0, 1] and centred with the training mean.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32) / 16.0
    x_tr, x_rest, y_tr, y_rest = train_test_split(
        x, y, train_size=TRAIN_SIZE, stratify=y, random_state=seed
    )
    x_val, x_te, y_val, y_te = train_test_split(
        x_rest, y_rest, train_size=VAL_SIZE, stratify=y_rest, random_state=seed
    )
    mean = x_tr.mean(axis=0)
    f = lambda a: jnp.asarray(a - mean, jnp.float32)  # noqa: E731
    i = lambda a: jnp.asarray(a, jnp.int32)  # noqa: E731
    return Digits(f(x_tr), i(y_tr), f(x_val), i(y_val), f(x_te), i(y_te))


# ---------------------------------------------------------------------------
# The model: a one-hidden-layer tanh MLP as a plain dict of arrays.


def init_mlp(key: jax.Array, sizes: tuple[int, ...]) -> PyTree:
    """LeCun-normal kernels, zero biases: {"layer0": {"w", "b"}, ...}."""
    params = {}
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        w = jax.random.normal(k, (n_in, n_out), jnp.float32) / math.sqrt(n_in)
        params[f"layer{i}"] = {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}
    return params


def init_mlp_np(rng: np.random.Generator, sizes: tuple[int, ...]) -> PyTree:
    """LeCun-normal kernels, zero biases, drawn with NumPy (no compile)."""
    return {
        f"layer{i}": {
            "w": (rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)).astype(np.float32),
            "b": np.zeros((n_out,), np.float32),
        }
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))
    }


def apply_mlp(params: PyTree, x: jax.Array, *, dropout: float = 0.0, key: jax.Array | None = None) -> jax.Array:
    n = len(params)
    h = x
    for i in range(n):
        layer = params[f"layer{i}"]
        h = h @ layer["w"] + layer["b"]
        if i < n - 1:
            h = jnp.tanh(h)
            if dropout > 0.0 and key is not None:
                key, sub = jax.random.split(key)
                keep = jax.random.bernoulli(sub, 1.0 - dropout, h.shape)
                h = jnp.where(keep, h / (1.0 - dropout), 0.0)
    return h


def cross_entropy(params: PyTree, x: jax.Array, y: jax.Array, dropout: float = 0.0, key: jax.Array | None = None) -> jax.Array:
    logits = apply_mlp(params, x, dropout=dropout, key=key)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def accuracy(params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(apply_mlp(params, x), axis=-1) == y)


def kernels(params: PyTree) -> list[jax.Array]:
    """The weight matrices (the leaves a decay mask of ndim >= 2 selects)."""
    return [leaf for leaf in jax.tree_util.tree_leaves(params) if leaf.ndim >= 2]


def tree_norm(leaves: list[jax.Array]) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in leaves))


# ---------------------------------------------------------------------------
# The trainer.


@dataclasses.dataclass
class History:
    """Per-run metrics at each record point: arrays of shape [runs, records + 1]."""

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    final_params: PyTree  # leaves with a leading [runs] axis
    snapshots: list[PyTree] | None = None  # params at each record point


def train_mlp(
    make_opt: MakeOpt,
    hparams: dict[str, Any],
    seeds: np.ndarray,
    data: Digits,
    *,
    steps: int,
    records: int,
    hidden: int,
    batch_size: int = 32,
    dropout: float = 0.0,
    keep_snapshots: bool = False,
    desc: str = "train",
) -> History:
    """Trains ``len(seeds)`` MLPs at once, one per row of ``hparams``.

    Run ``r`` uses ``make_opt({k: hparams[k][r]})`` (built inside ``vmap``, so
    the coefficients are traced arrays) and seed ``seeds[r]``: runs that share
    a seed share their initial weights and their minibatch sequence, so
    comparisons between optimizers are paired.
    """
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
    seeds = np.asarray(seeds)
    sizes = (data.x_train.shape[1], hidden, 10)
    n_train = data.x_train.shape[0]
    chunk = max(1, steps // records)
    n_chunks = math.ceil(steps / chunk)

    # Initial weights and minibatch indices come from NumPy, per seed: runs
    # that share a seed are paired, and no PRNG kernel has to be compiled.
    uniq, seed_of_run = np.unique(seeds, return_inverse=True)
    params0 = [init_mlp_np(np.random.default_rng([int(s), 0]), sizes) for s in uniq]
    params0 = jax.tree.map(lambda *xs: np.stack(xs)[seed_of_run], *params0)
    batches = np.stack([
        np.random.default_rng([int(s), 1]).integers(0, n_train, (n_chunks * chunk, batch_size))
        for s in uniq
    ]).astype(np.int32)
    drop_seeds = jnp.asarray(seeds, jnp.uint32)

    # Data goes in as arguments, not closed-over constants: XLA would
    # constant-fold the closed-over arrays and compile for many seconds.
    def chunk_one(h: dict[str, jax.Array], state: Any, idx: jax.Array, data: Digits) -> Any:
        opt = make_opt(h)

        def step(carry: Any, batch: jax.Array) -> Any:
            params, opt_state, key = carry
            k_drop = None
            if dropout > 0.0:
                key, k_drop = jax.random.split(key)
            grads = jax.grad(cross_entropy)(params, data.x_train[batch], data.y_train[batch], dropout, k_drop)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, key), None

        state, _ = jax.lax.scan(step, state, idx)
        return state

    init_opt = jax.jit(jax.vmap(lambda h, p: make_opt(h).init(p)))
    advance = jax.jit(jax.vmap(chunk_one, in_axes=(0, 0, 0, None)))

    params0 = jax.tree.map(jnp.asarray, params0)
    keys = jax.vmap(jax.random.PRNGKey)(drop_seeds) if dropout > 0.0 else drop_seeds
    state = (params0, init_opt(hp, params0), keys)
    rows = [jax.device_get(_evaluate(state[0], data))]
    snaps = [jax.device_get(state[0])] if keep_snapshots else None
    for c in tqdm(range(n_chunks), desc=desc, unit="chunk", leave=False):
        idx = batches[seed_of_run, c * chunk : (c + 1) * chunk]
        state = advance(hp, state, jnp.asarray(idx), data)
        rows.append(jax.device_get(_evaluate(state[0], data)))
        if snaps is not None:
            snaps.append(jax.device_get(state[0]))
    metrics = {k: np.stack([np.asarray(r[k]) for r in rows], axis=1) for k in rows[0]}
    return History(
        steps=np.arange(n_chunks + 1) * chunk,
        metrics=metrics,
        final_params=jax.device_get(state[0]),
        snapshots=snaps,
    )


def _evaluate_one(params: PyTree, data: Digits) -> dict[str, jax.Array]:
    grads = jax.grad(cross_entropy)(params, data.x_train, data.y_train)
    return {
        "train_loss": cross_entropy(params, data.x_train, data.y_train),
        "train_acc": accuracy(params, data.x_train, data.y_train),
        "val_acc": accuracy(params, data.x_val, data.y_val),
        "test_loss": cross_entropy(params, data.x_test, data.y_test),
        "test_acc": accuracy(params, data.x_test, data.y_test),
        "weight_norm": tree_norm(kernels(params)),
        "grad_norm": tree_norm(jax.tree_util.tree_leaves(grads)),
        "zero_frac": _frac(kernels(params), lambda w: w == 0),
        "small_frac": _frac(kernels(params), lambda w: jnp.abs(w) < 1e-3),
    }


_evaluate = jax.jit(jax.vmap(_evaluate_one, in_axes=(0, None)))


def _frac(leaves: list[jax.Array], pred: Callable[[jax.Array], jax.Array]) -> jax.Array:
    total = sum(leaf.size for leaf in leaves)
    return sum(jnp.sum(pred(leaf)) for leaf in leaves) / total


def grid_runs(grid: dict[str, list[float]], n_seeds: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Cartesian product of ``grid`` x seeds, flattened to one run axis.

    Returns (hparams, seeds); the run axis is ordered grid-major, seed-minor,
    so ``metric.reshape(*grid_shape, n_seeds, ...)`` recovers the grid.
    """
    names = list(grid)
    mesh = np.meshgrid(*[np.asarray(grid[k], np.float64) for k in names], indexing="ij")
    flat = {k: np.repeat(m.reshape(-1), n_seeds) for k, m in zip(names, mesh)}
    n_points = mesh[0].size if names else 1
    seeds = np.tile(seed * 1000 + np.arange(n_seeds), n_points)
    return flat, seeds


def mean_se(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over ``axis``."""
    x = np.asarray(x, np.float64)
    n = x.shape[axis]
    se = x.std(axis=axis, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(x.mean(axis=axis))
    return x.mean(axis=axis), se


# ---------------------------------------------------------------------------
# Plots.


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def save_figure(fig: Any, path: Any) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
