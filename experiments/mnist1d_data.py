"""MNIST-1D (Greydanus 2020), generated locally and cached under the output folder.

``mnist1d.data.make_dataset`` draws the examples from its own seed; nothing is
downloaded. The generated arrays are cached as ``<out>/data/mnist1d-*.npz``
so a second run (or a second study) reads them back in milliseconds.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Split:
    """Train / validation / test arrays (float32 inputs, int32 labels)."""

    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array


def generate(n_train: int, n_val: int, n_test: int, seed: int, cache_dir: pathlib.Path,
             shift: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """``n_train + n_val + n_test`` MNIST-1D examples (length 40, 10 classes). ``shift``: generator
    arguments that differ from MNIST-1D's defaults (a domain shift, e.g. more noise)."""
    tag = "".join(f"-{k}{v:g}" for k, v in sorted((shift or {}).items()))
    path = cache_dir / f"mnist1d-{n_train}-{n_val}-{n_test}-s{seed}{tag}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    total = n_train + n_val + n_test
    args.num_samples = total
    args.train_split = (n_train + n_val) / total
    args.seed = 1000 + seed
    for k, v in (shift or {}).items():
        setattr(args, k, v)
    d = make_dataset(args)
    out = {
        "x_train": d["x"][:n_train], "y_train": d["y"][:n_train],
        "x_val": d["x"][n_train:], "y_val": d["y"][n_train:],
        "x_test": d["x_test"], "y_test": d["y_test"],
    }
    out = {k: np.asarray(v, np.float32 if k.startswith("x") else np.int32) for k, v in out.items()}
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    return out


def load(
    cache_dir: pathlib.Path,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    *,
    label_noise: float = 0.0,
    classes: tuple[int, ...] | None = None,
    shift: dict[str, float] | None = None,
) -> Split:
    """A split, standardised with the training mean and std.

    ``label_noise``: that fraction of the TRAINING labels (only) replaced by a
    uniformly drawn different class, seeded. ``classes``: keep only these
    classes, relabelled 0..len(classes)-1 (for the transfer task). ``shift``: see
    :func:`generate`; the split is then standardised with its own training statistics.
    """
    d = generate(n_train, n_val, n_test, seed, cache_dir, shift)
    if classes is not None:
        relabel = np.full(10, -1, np.int32)
        relabel[list(classes)] = np.arange(len(classes))
        for part in ("train", "val", "test"):
            keep = relabel[d[f"y_{part}"]] >= 0
            d[f"x_{part}"], d[f"y_{part}"] = d[f"x_{part}"][keep], relabel[d[f"y_{part}"][keep]]
    if label_noise > 0:
        rng = np.random.default_rng([seed, 11])
        y = d["y_train"].copy()
        flip = rng.random(len(y)) < label_noise
        k = int(y.max()) + 1
        y[flip] = (y[flip] + rng.integers(1, k, flip.sum())) % k
        d["y_train"] = y
    mean, std = d["x_train"].mean(), d["x_train"].std()
    f = lambda a: jnp.asarray((a - mean) / std, jnp.float32)  # noqa: E731
    i = lambda a: jnp.asarray(a, jnp.int32)  # noqa: E731
    return Split(f(d["x_train"]), i(d["y_train"]), f(d["x_val"]), i(d["y_val"]), f(d["x_test"]), i(d["y_test"]))
