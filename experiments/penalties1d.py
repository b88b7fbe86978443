"""The L1 / L2 / elastic-net runs on MNIST-1D that ``l1-sparsity`` and
``elastic-net-both`` read: one vmapped program (``chains.sgd_penalties``, every
unused coefficient 0), a 1-D CNN without batch norm (a normalised layer's
kernel is scale-invariant, so a penalty on it would mean little), plain SGD.
The first of the two studies to run trains it; the other reuses it.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from experiments import chains
from experiments.nets import CNN
from experiments.report import Context
from experiments.train1d import Runs, train

LR = 0.05  # plain SGD, constant
L1S = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2]  # the λ path of both L1 and (as its l1) elastic net
EN_L2 = 1e-2  # elastic net's l2 along its path
KEYS = ("l1_sub", "en_sub_l1", "en_sub_l2", "l2", "prox_l1", "prox_l2")
ROWS: dict[str, dict[str, float]] = {
    "none": {},
    **{f"subgradient L1 {v:g}": {"l1_sub": v} for v in L1S},
    **{f"proximal L1 {v:g}": {"prox_l1": v} for v in L1S},
    "L2 (add_l2_grad)": {"l2": EN_L2},
    **{f"proximal elastic net {v:g}": {"prox_l1": v, "prox_l2": EN_L2} for v in L1S},
    **{f"subgradient elastic net {v:g}": {"en_sub_l1": v, "en_sub_l2": EN_L2} for v in L1S},
}
SIZES = {
    "smoke": dict(data=(600, 200, 600), seeds=2, steps=60, channels=4, boot=100),
    "quick": dict(data=(4000, 1000, 5000), seeds=4, steps=800, channels=8, boot=1000),
    "full": dict(data=(4000, 1000, 5000), seeds=6, steps=3000, channels=16, boot=2000),
}


def kernel_values(params: Any, run: int) -> np.ndarray:
    """All kernel weights (2-D leaves) of one run, flattened."""
    return np.concatenate([np.asarray(x[run]).ravel() for x in jax.tree.leaves(params) if x.ndim >= 3])


def penalty_runs(ctx: Context) -> dict[str, Any]:
    """Trains (once per report) every row of ROWS x seeds; returns per-row summaries."""
    if "penalties1d" in ctx.shared:
        return ctx.shared["penalties1d"]
    z = SIZES[ctx.mode.name]
    s = z["seeds"]
    data = ctx.mnist1d(*z["data"])
    hp = {k: np.repeat([r.get(k, 0.0) for r in ROWS.values()], s) for k in KEYS}
    seeds = np.tile(ctx.seed * 1000 + np.arange(s), len(ROWS))
    model = CNN(channels=z["channels"], batch_norm=False)
    r: Runs = train(model, lambda h: chains.sgd_penalties(LR, h), hp, seeds, data, steps=z["steps"], batch_size=64,
                    records=1, chunks=4, desc="L1 / L2 / elastic net on MNIST-1D")
    rows = {}
    for i, name in enumerate(ROWS):
        runs = range(i * s, (i + 1) * s)
        w = [kernel_values(r.final_params, k) for k in runs]
        rows[name] = {
            "zero_frac": float(np.mean([np.mean(v == 0) for v in w])),
            "small_frac": float(np.mean([np.mean(np.abs(v) < 1e-3) for v in w])),
            "weight_norm": float(r.metrics["weight_norm"][list(runs), -1].mean()),
            "test_acc": float(r.metrics["test_acc"][list(runs), -1].mean()),
            "train_acc": float(r.metrics["train_acc"][list(runs), -1].mean()),
            "mean_abs_nonzero": float(np.mean([np.abs(v[v != 0]).mean() for v in w])),
        }
    none = list(ROWS).index("none")
    out = {
        "z": z, "rows": rows, "frontier": lambda zeros: pruning_frontier(model, r.final_params, data, none * s, s, zeros), "correct_test": {n: r.correct_test[i * s:(i + 1) * s] for i, n in enumerate(ROWS)},
        "weights_seed0": {n: kernel_values(r.final_params, i * s) for i, n in enumerate(ROWS)},
        "model": f"1-D CNN, {z['channels']} channels, no batch norm (im2col)",
        "optimizer": f"plain SGD lr={LR}, batch 64; subgradient forms first, prox_elastic_net(l1, l2, "
        f"learning_rate={LR}) last; kernels only",
    }
    ctx.shared["penalties1d"] = out
    return out


def magnitude_prune(params: Any, zero_frac: float) -> Any:
    """Sets the smallest-magnitude ``zero_frac`` of all kernel weights (one threshold over every
    kernel, per run) to exactly 0; biases untouched."""
    kern = [x for x in jax.tree.leaves(params) if x.ndim >= 2]
    flat = np.concatenate([np.abs(np.asarray(x)).ravel() for x in kern])
    cut = np.quantile(flat, zero_frac) if zero_frac > 0 else -1.0
    return jax.tree.map(lambda x: np.where(np.abs(x) <= cut, 0.0, x).astype(x.dtype) if x.ndim >= 2 else x, params)


def pruning_frontier(model: CNN, final: Any, data: Any, start: int, n: int, zeros: list[float]) -> list[float]:
    """Test accuracy (mean over the ``n`` runs from ``start``, no penalty) after magnitude pruning
    to each sparsity in ``zeros``: the baseline a sparsifying penalty has to beat."""
    apply = jax.jit(lambda p, x: model.apply(p, x)[0])
    accs = []
    for frac in zeros:
        a = []
        for k in range(start, start + n):
            p = magnitude_prune(jax.tree.map(lambda x, k=k: np.asarray(x[k]), final), frac)
            logits = apply(p, data.x_test)
            a.append(float(np.mean(np.argmax(np.asarray(logits), axis=-1) == np.asarray(data.y_test))))
        accs.append(float(np.mean(a)))
    return accs
