"""keeps-weights-small: a deep unnormalised MLP trained with SGD + momentum at constant
learning rates across the band where training starts to fail, with and without L2; does
decay keep the weights small and move the failure to higher learning rates?"""

from __future__ import annotations

import math
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
LRS = [0.03, 0.05, 0.08, 0.12, 0.2, 0.3]  # across the transition band; the first is the stable reference
L2_GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]  # half decades: the decay arm's λ is tuned on these, at the stable lr
TUNE_LR = LRS[0]  # the stable lr the tuning runs at (validation accuracy, before the lr sweep)
FAIL_LOSS = math.log(10)  # a final training loss at or above chance level (ln 10) counts as failed
SIZES = {
    "smoke": dict(data=(600, 200, 600), seeds=2, steps=60, chunks=6, depth=3, hidden=32),
    "quick": dict(data=(4000, 1000, 5000), seeds=4, steps=800, chunks=16, depth=6, hidden=128),
    "full": dict(data=(4000, 1000, 5000), seeds=6, steps=3000, chunks=30, depth=6, hidden=128),
}


def sgd_l2(h: dict[str, Any]) -> optax.GradientTransformation:
    return optax.chain(decaytx.add_l2_grad(h["wd"], mask=K), optax.trace(MOMENTUM), optax.scale_by_learning_rate(h["lr"]))


def stratified_exact_p(fail: np.ndarray) -> float:
    """One-sided exact test, stratified by lr: fail [lr, arm (0 none, 1 decay), seed] bool. Given each
    stratum's margins, the no-decay failures are hypergeometric; p = P(total >= observed)."""
    pmf = np.array([1.0])
    for stratum in fail:
        n, k, t = stratum.size, int(stratum.sum()), stratum.shape[1]
        pmf = np.convolve(pmf, sps.hypergeom(n, k, t).pmf(np.arange(t + 1)))
    observed = int(fail[:, 0].sum())
    return float(min(1.0, pmf[observed:].sum()))


def critical_lr(fail: np.ndarray) -> np.ndarray:
    """Per arm and seed, the smallest lr of the grid at which the run failed (inf if none): [arm, seed]."""
    lrs = np.asarray(LRS)[:, None, None]
    return np.where(fail, lrs, np.inf).min(axis=0)


def tune_l2(val_acc: np.ndarray) -> int:
    """Index into L2_GRID of the λ with the best mean final validation accuracy ([λ, seed]); the smaller λ on a tie."""
    return int(np.argmax(val_acc.mean(axis=1)))


def checks(m: dict) -> dict[str, bool]:
    """Fixed before the run: at the stable lr the paired 95% t CI of final kernel norm (no decay -
    decay) lies above 0; the lr-stratified exact test of fewer failures with decay has p < 0.05;
    and for every seed the critical lr with decay is at least that without."""
    return {"kernel norm at the stable lr: CI of (none - decay) above 0": bool(m["norm_reduction_ci"][0] > 0),
            "lr-stratified exact test p < 0.05": bool(m["stratified_p"] < 0.05),
            "critical lr with decay >= without, every seed": bool(m["critical_lr_not_lower_every_seed"])}


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    s = z["seeds"]
    sizes = (40, *[z["hidden"]] * z["depth"], 10)
    data = ctx.mnist1d(*z["data"])
    # λ tuned first, on validation at the stable lr; the sweep then compares λ = 0 with it.
    hp, seeds = grid_runs({"lr": [TUNE_LR], "wd": L2_GRID}, s, ctx.seed)
    t = train(MLP(sizes), sgd_l2, hp, seeds, data, steps=z["steps"], batch_size=64, records=1, chunks=z["chunks"],
              desc=f"{ID}: tune L2 at lr {TUNE_LR:g}")
    val_acc = t.metrics["val_acc"][:, -1].reshape(len(L2_GRID), s)
    l2 = L2_GRID[tune_l2(np.nan_to_num(val_acc, nan=0.0))]
    hp, seeds = grid_runs({"lr": LRS, "wd": [0.0, l2]}, s, ctx.seed)
    r = train(MLP(sizes), sgd_l2, hp, seeds, data, steps=z["steps"], batch_size=64,
              records=z["chunks"] // 2, chunks=z["chunks"], desc=f"{ID}: lr x L2")
    shape = (len(LRS), 2, s)
    loss = r.metrics["train_loss"][:, -1].reshape(shape)
    gmax = r.max_grad.max(axis=1).reshape(shape)
    wn = r.metrics["weight_norm"].reshape(*shape, -1)
    fail = ~(np.isfinite(loss) & np.isfinite(gmax)) | (np.nan_to_num(loss, nan=np.inf) >= FAIL_LOSS)
    crit = critical_lr(fail)
    red = stats.t_ci(wn[0, 0, :, -1] - wn[0, 1, :, -1])
    metrics: dict[str, Any] = {
        "dataset": "mnist1d", "model": f"MLP {'-'.join(map(str, sizes))}, ReLU, no normalisation",
        "optimizer": f"chain(add_l2_grad(wd), trace({MOMENTUM}), scale_by_learning_rate(lr)), constant lr",
        "seeds": s, "steps": z["steps"], "lr_grid": LRS, "l2": l2, "l2_grid": L2_GRID, "tune_lr": TUNE_LR,
        "l2_val_acc": val_acc.mean(axis=1).tolist(), "fail_loss": FAIL_LOSS,
        "failed": {"no decay": fail[:, 0].astype(int).tolist(), "L2": fail[:, 1].astype(int).tolist()},
        "failures_no_decay": int(fail[:, 0].sum()), "failures_decay": int(fail[:, 1].sum()),
        "stratified_p": stratified_exact_p(fail),
        "critical_lr": {"no decay": _inf(crit[0]), "L2": _inf(crit[1])},
        "critical_lr_not_lower_every_seed": bool(np.all(crit[1] >= crit[0])),
        "final_train_loss": {"no decay": _inf(loss[:, 0]), "L2": _inf(loss[:, 1])},
        "final_weight_norm_none": float(wn[0, 0, :, -1].mean()), "final_weight_norm_decay": float(wn[0, 1, :, -1].mean()),
        "norm_reduction": red[0], "norm_reduction_ci": list(red[1:]),
        "norm_growth_before_failure": _growth(wn, fail),
    }
    _figure(ctx, r, wn, fail, z, metrics)
    ok = checks(metrics)
    cr = metrics["critical_lr"]
    return Claim(
        id=ID,
        statement="Weight decay keeps the weights small, and so helps avoid training blowing up at high learning rates.",
        criterion=f"MNIST-1D, {z['depth']}x{z['hidden']} ReLU MLP without normalisation, SGD momentum {MOMENTUM}, "
        f"constant lr in {LRS} x L2 in {{0, λ*}}, λ* chosen first from {L2_GRID} by mean validation accuracy at lr "
        f"{TUNE_LR:g} (here {l2:g}), {s} seeds, {z['steps']} steps. A run fails if its loss or a "
        f"gradient norm is non-finite or its final training loss is >= ln 10. Holds if (1) at lr {LRS[0]:g} the "
        "paired 95% t CI of final kernel norm (no decay - decay) lies above 0, (2) the lr-stratified one-sided "
        "exact test gives p < 0.05 for fewer failures with decay, and (3) for every seed the critical lr "
        "(smallest failing lr) with decay is at least that without. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number=f"λ* {l2:g}; norm at lr {LRS[0]:g}: {metrics['final_weight_norm_none']:.1f} -> "
        f"{metrics['final_weight_norm_decay']:.1f}; failures {metrics['failures_no_decay']}/{fail[:, 0].size} vs "
        f"{metrics['failures_decay']}/{fail[:, 1].size} (stratified p={metrics['stratified_p']:.3f}); critical lr per seed "
        f"{_lrs(cr['no decay'])} -> {_lrs(cr['L2'])}",
        notes=f"Validation accuracy at lr {TUNE_LR:g} along λ {L2_GRID}: "
        + "/".join(f"{v:.3f}" for v in metrics["l2_val_acc"]) + f" -> λ* = {l2:g}. "
        "Critical lr 'none': trained at every lr. Kernel-norm growth before failure (last finite record / "
        f"initial, median over failed runs): {metrics['norm_growth_before_failure']}.",
    )


def _inf(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.ravel(a)] if np.ndim(a) == 1 else [_inf(x) for x in a]


def _lrs(v: list) -> str:
    return "/".join("none" if x is None else f"{x:g}" for x in v)


def _growth(wn: np.ndarray, fail: np.ndarray) -> dict[str, float | None]:
    out = {}
    for j, arm in enumerate(("no decay", "L2")):
        g = []
        for i, k in zip(*np.nonzero(fail[:, j])):
            w = wn[i, j, k]
            finite = w[np.isfinite(w)]
            g.append(float(finite[-1] / w[0]) if finite.size else math.nan)
        out[arm] = float(np.nanmedian(g)) if g and np.isfinite(g).any() else None
    return out


def _figure(ctx: Context, r: Any, wn: np.ndarray, fail: np.ndarray, z: dict, m: dict) -> None:
    fig, (ax1, ax2) = new_figure(2, width=5.5)
    for j, (arm, mk) in enumerate((("no decay", "s--"), (f"L2 {m['l2']:g} (tuned)", "o-"))):
        ax1.plot(LRS, fail[:, j].sum(axis=1), mk, color=f"C{j}", label=arm)
    ax1.set_xscale("log")
    ax1.set_xlabel("constant learning rate")
    ax1.set_ylabel(f"failed runs (of {z['seeds']} seeds)")
    ax1.set_title(f"failures (non-finite or train loss >= ln 10); stratified exact p = {m['stratified_p']:.3f}", fontsize=8)
    ax1.legend(fontsize=7)
    for i, lr in enumerate(LRS):
        for j, ls in ((0, "--"), (1, "-")):
            w = np.where(np.isfinite(wn[i, j]), wn[i, j], np.nan)
            ax2.plot(r.steps, np.nanmedian(w, axis=0), ls=ls, color=f"C{i}",
                     label=f"lr={lr:g}" if j == 0 else None)
    ax2.plot([], [], "k--", label="no decay")
    ax2.plot([], [], "k-", label=f"L2 {m['l2']:g}")
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_ylabel("kernel norm ||W|| (median over seeds)")
    ax2.set_title("weight norm (gaps: non-finite)", fontsize=9)
    ax2.legend(fontsize=6, ncol=2)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
