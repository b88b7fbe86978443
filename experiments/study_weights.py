"""keeps-weights-small: a deep unnormalised MLP trained with SGD + momentum at high
constant learning rates, with and without L2; does decay keep the weights small
and prevent the runs from blowing up?"""

from __future__ import annotations

from typing import Any

import numpy as np
import optax
from scipy import stats as sps

import decaytx
from experiments import stats
from experiments.common import new_figure, save_figure
from experiments.nets import MLP
from experiments.report import Claim, Context
from experiments.train1d import grid_runs, train

ID = "keeps-weights-small"
K = decaytx.masks.ndim_at_least(2)
MOMENTUM = 0.9
STABLE_LR = 0.03  # the reference lr (expected to train without decay)
HIGH_LRS = [0.1, 0.2, 0.3]  # where the prototype saw runs blow up
L2 = 1e-3
COLLAPSED = 0.2  # final test accuracy below this (chance = 0.1) counts as collapsed
SIZES = {
    "smoke": dict(data=(600, 200, 600), seeds=2, steps=60, chunks=6, depth=3, hidden=32),
    "quick": dict(data=(4000, 1000, 5000), seeds=4, steps=800, chunks=16, depth=6, hidden=128),
    "full": dict(data=(4000, 1000, 5000), seeds=6, steps=3000, chunks=30, depth=6, hidden=128),
}


def sgd_l2(h: dict[str, Any]) -> optax.GradientTransformation:
    return optax.chain(decaytx.add_l2_grad(h["wd"], mask=K), optax.trace(MOMENTUM), optax.scale_by_learning_rate(h["lr"]))


def outcome(final_loss: float, max_grad: float, test_acc: float) -> str:
    """non-finite (loss or a gradient norm), collapsed (test acc < 0.2) or trained."""
    if not (np.isfinite(final_loss) and np.isfinite(max_grad)):
        return "non-finite"
    return "collapsed" if test_acc < COLLAPSED else "trained"


def verdict(m: dict) -> bool:
    """Criterion fixed before running. Weights: at the stable lr, the paired 95% t CI of
    final kernel norm (no decay - decay) lies above 0. Explosion: over the high lrs,
    decay has fewer failed runs (non-finite or collapsed) than no decay, one-sided
    Fisher exact p < 0.05. Holds if both do."""
    return bool(m["norm_reduction_ci"][0] > 0 and m["explosion_prevented"])


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    data = ctx.mnist1d(*z["data"])
    lrs = [STABLE_LR, *HIGH_LRS]
    hp, seeds = grid_runs({"lr": lrs, "wd": [0.0, L2]}, z["seeds"], ctx.seed)
    sizes = (40, *[z["hidden"]] * z["depth"], 10)
    r = train(MLP(sizes), sgd_l2, hp, seeds, data, steps=z["steps"], batch_size=64, records=z["chunks"] // 2,
              chunks=z["chunks"], desc=f"{ID}: lr x L2")
    s = z["seeds"]
    shape = (len(lrs), 2, s)
    loss = r.metrics["train_loss"][:, -1].reshape(shape)
    acc = r.metrics["test_acc"][:, -1].reshape(shape)
    gmax = r.max_grad.max(axis=1).reshape(shape)
    wn = r.metrics["weight_norm"].reshape(*shape, -1)
    out = np.vectorize(outcome)(loss, gmax, acc)
    counts = {f"lr={lr:g}, {'L2' if j else 'no decay'}": {o: int((out[i, j] == o).sum()) for o in
              ("non-finite", "collapsed", "trained")} for i, lr in enumerate(lrs) for j in range(2)}
    fail = (out != "trained")[1:]  # high lrs
    f_none, f_decay, n = int(fail[:, 0].sum()), int(fail[:, 1].sum()), fail[:, 0].size
    p = float(sps.fisher_exact([[f_none, n - f_none], [f_decay, n - f_decay]], alternative="greater")[1])
    red = stats.t_ci(wn[0, 0, :, -1] - wn[0, 1, :, -1])
    rescued = acc[1:, 1][(out[1:, 0] != "trained") & (out[1:, 1] == "trained")]
    best_stable = float(max(acc[0, 0].mean(), acc[0, 1].mean()))
    metrics: dict[str, Any] = {
        "dataset": "mnist1d", "model": f"MLP {'-'.join(map(str, sizes))}, ReLU, no normalisation",
        "optimizer": f"chain(add_l2_grad(wd), trace({MOMENTUM}), scale_by_learning_rate(lr)), constant lr",
        "seeds": s, "steps": z["steps"], "lr_grid": lrs, "l2": L2, "collapsed_below": COLLAPSED,
        "outcomes": counts, "failures_no_decay": f_none, "failures_decay": f_decay, "runs_per_arm": n,
        "fisher_p": p, "explosion_prevented": bool(f_decay < f_none and p < 0.05),
        "max_grad_norm": {f"lr={lr:g}, {'L2' if j else 'no decay'}": [None if not np.isfinite(v) else float(v)
                          for v in gmax[i, j]] for i, lr in enumerate(lrs) for j in range(2)},
        "final_weight_norm_none": float(wn[0, 0, :, -1].mean()), "final_weight_norm_decay": float(wn[0, 1, :, -1].mean()),
        "norm_reduction": red[0], "norm_reduction_ci": list(red[1:]),
        "test_acc_by_lr": {f"lr={lr:g}, {'L2' if j else 'no decay'}": float(np.nanmean(acc[i, j]))
                           for i, lr in enumerate(lrs) for j in range(2)},
        "rescued_runs": int(rescued.size), "rescued_test_acc": rescued.tolist(),
        "best_stable_lr_test_acc": best_stable,
    }

    fig, (ax1, ax2) = new_figure(2, width=5.5)
    t = np.arange(1, z["chunks"] + 1) * (z["steps"] // z["chunks"])
    g = r.max_grad.reshape(*shape, -1)
    for i, lr in enumerate(lrs):
        for j, ls in ((0, "--"), (1, "-")):
            lab = f"lr={lr:g}, {'L2 ' + format(L2, 'g') if j else 'no decay'}"
            ax1.plot(t, np.median(np.minimum(g[i, j], 1e30), axis=0), ls=ls, color=f"C{i}", label=lab)
            ax2.plot(r.steps, np.median(np.where(np.isfinite(wn[i, j]), wn[i, j], np.nan), axis=0), ls=ls,
                     color=f"C{i}", label=lab)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("largest minibatch gradient norm in the chunk (median over seeds)")
    ax1.set_title("gradient norm (inf drawn at 1e30)", fontsize=9)
    ax1.legend(fontsize=6)
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_ylabel("kernel norm ||W|| (median over seeds)")
    ax2.set_title("weight norm", fontsize=9)
    save_figure(fig, ctx.out_dir / f"{ID}.png")

    return Claim(
        id=ID,
        statement="Weight decay keeps the weights small, and so helps avoid gradient explosion.",
        criterion=f"MNIST-1D, {z['depth']}x{z['hidden']} ReLU MLP without normalisation, SGD momentum {MOMENTUM}, "
        f"constant lr in {lrs} x L2 in {{0, {L2:g}}}, {s} seeds, {z['steps']} steps; the largest minibatch gradient "
        "norm of every step is tracked inside the scan. Weights: holds if, at lr "
        f"{STABLE_LR:g}, the paired 95% t CI of final kernel norm (no decay - decay) lies above 0. Explosion: a run "
        f"fails if its loss or any gradient norm is non-finite or its test accuracy ends below {COLLAPSED:g}; holds if, "
        f"over lr in {HIGH_LRS}, decay has fewer failures than no decay with one-sided Fisher exact p < 0.05. "
        "The claim holds if both parts do. Fixed before running.",
        holds=verdict(metrics),
        metrics=metrics,
        figure=f"{ID}.png",
        key_number=f"norm at lr {STABLE_LR:g}: {metrics['final_weight_norm_none']:.1f} -> {metrics['final_weight_norm_decay']:.1f}; "
        f"failed runs at high lr: {f_none}/{n} without decay vs {f_decay}/{n} with (Fisher p={p:.3f})",
        notes=f"Rescued runs (failed without decay, trained with it, same seed and lr): {rescued.size}, test accuracy "
        + (", ".join(f"{a:.2f}" for a in rescued) if rescued.size else "none")
        + f", against {best_stable:.2f} at the stable lr {STABLE_LR:g}: decay can keep a run finite without making "
        "the too-high lr a good choice.",
    )
