"""decoupled-hyperparameter-landscape: lr x wd grids of test error (Loshchilov & Hutter 2019, Fig. 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments import chains
from experiments.common import grid_runs, new_figure, save_figure, train_mlp
from experiments.report import Claim, Context

ID = "decoupled-hyperparameter-landscape"
MOMENTUM = 0.9
NEAR_BEST = 0.02  # an lr row counts if its best test error is within 2 points of the grid's best


def families(n: int) -> dict[str, dict[str, Any]]:
    """name -> chain builder, lr grid, wd grid (n points each, log-spaced)."""
    adam_lr = np.logspace(-4, -2, n)
    sgd_lr = np.logspace(-3, -1, n)
    return {
        "Adam+L2": dict(make=lambda h: chains.adam_both(h["lr"], h["wd"], 0.0), lr=adam_lr,
                        wd=np.logspace(-5, -1, n), pair="Adam", coupled=True),
        "AdamW, m=1 (paper)": dict(make=lambda h: chains.adam_both(h["lr"], 0.0, h["wd"], multiplier=None),
                                  lr=adam_lr, wd=np.logspace(-6, -2, n), pair="Adam", coupled=False),
        "AdamW, m=lr (PyTorch/optax)": dict(make=lambda h: chains.adam_both(h["lr"], 0.0, h["wd"]), lr=adam_lr,
                                           wd=np.logspace(-3, 1, n), pair="Adam", coupled=None),
        "SGD+L2 (momentum 0.9)": dict(make=lambda h: chains.sgd_both(h["lr"], h["wd"], 0.0, MOMENTUM), lr=sgd_lr,
                                      wd=np.logspace(-5, -1, n), pair="SGD", coupled=True),
        "SGDW, m=1 (paper)": dict(make=lambda h: chains.sgd_both(h["lr"], 0.0, h["wd"], MOMENTUM, multiplier=None),
                                  lr=sgd_lr, wd=np.logspace(-6, -2, n), pair="SGD", coupled=False),
        "SGDW, m=lr (PyTorch)": dict(make=lambda h: chains.sgd_both(h["lr"], 0.0, h["wd"], MOMENTUM), lr=sgd_lr,
                                     wd=np.logspace(-3, 1, n), pair="SGD", coupled=None),
    }


def best_wd_spread(err: np.ndarray, tol: float, wd: np.ndarray) -> tuple[float, list[float | None]]:
    """Range (in decades) of the best wd across the lr rows that train well.

    The best wd of a row is the centre (mean log10 wd) of the cells within
    ``tol`` (2 standard errors of a cell's mean over seeds) of the row's lowest
    error: on a flat row, ties are not broken by noise or by grid order.
    Rows whose best error is more than NEAR_BEST above the grid's best are
    left out: there the lr is too small or too large to train in the budget,
    and the "best" wd is simply the one that interferes least.
    """
    best: list[float | None] = []
    for row in err:
        if row.min() > err.min() + NEAR_BEST:
            best.append(None)
            continue
        near = np.flatnonzero(row <= row.min() + tol)
        best.append(float(10 ** np.mean(np.log10(wd[near]))))
    logs = [np.log10(b) for b in best if b is not None]
    return (float(max(logs) - min(logs)) if len(logs) >= 2 else float("nan")), best


def verdict(m: dict) -> bool:
    """For Adam and for SGD: the spread of the best wd across learning rates is
    smaller with decoupled decay (m=1, the paper's form) than with L2."""
    s = m["spread_decades"]
    return bool(s["AdamW, m=1 (paper)"] < s["Adam+L2"] and s["SGDW, m=1 (paper)"] < s["SGD+L2 (momentum 0.9)"])


def run(ctx: Context) -> Claim:
    mode, data = ctx.mode, ctx.digits
    n, seeds_n = mode.grid, mode.seeds
    fams = families(n)
    errs, spreads, bests, tols, loss_spreads, edge_spreads = {}, {}, {}, {}, {}, {}
    for name, f in fams.items():
        hp, seeds = grid_runs({"lr": f["lr"], "wd": f["wd"]}, seeds_n, ctx.seed)
        h = train_mlp(f["make"], hp, seeds, data, desc=f"{ID}: {name}",
                      steps=mode.steps, records=min(mode.records, 5), hidden=mode.hidden)
        per_seed = 1.0 - h.metrics["test_acc"][:, -1].reshape(n, n, seeds_n)
        err = per_seed.mean(axis=2)
        # noise level: 2 s.e. of a cell's mean over seeds (median over cells)
        tol = 2 * float(np.median(per_seed.std(axis=2, ddof=1))) / np.sqrt(seeds_n) if seeds_n > 1 else 0.0
        errs[name], tols[name] = err, tol
        spreads[name], bests[name] = best_wd_spread(err, tol, f["wd"])
        # Edge of the good region: the largest wd within NEAR_BEST of the grid's best, per row.
        good = [float(f["wd"][np.flatnonzero(r <= err.min() + NEAR_BEST).max()]) if r.min() <= err.min() + NEAR_BEST
                else None for r in err]
        logs = [np.log10(g) for g in good if g is not None]
        edge_spreads[name] = float(max(logs) - min(logs)) if len(logs) >= 2 else float("nan")
        loss = h.metrics["test_loss"][:, -1].reshape(n, n, seeds_n).mean(axis=2)
        loss_spreads[name] = best_wd_spread(loss, 0.0, f["wd"])[0]
    metrics = {
        "grid_points": n, "seeds": seeds_n, "steps": mode.steps, "momentum": MOMENTUM,
        "grid_step_decades": float(4 / (n - 1)),
        "near_best": NEAR_BEST,
        "spread_decades": spreads,
        "tie_tolerance": tols,
        "spread_decades_test_loss": loss_spreads,
        "largest_good_wd_spread_decades": edge_spreads,
        "best_wd_per_lr": bests,
        "lr_grid": {k: f["lr"] for k, f in fams.items()},
        "wd_grid": {k: f["wd"] for k, f in fams.items()},
        "test_error": errs,
        "best_test_error": {k: float(e.min()) for k, e in errs.items()},
    }

    fig, axes = new_figure(3, width=4.3, height=3.8)
    import matplotlib.pyplot as plt

    plt.close(fig)  # new_figure selected the Agg backend; this study needs a 2x3 grid
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    vmin = min(float(e.min()) for e in errs.values())
    vmax = vmin + 0.04  # clip: the interesting structure is within a few points of the best
    for ax, (name, f) in zip(axes.ravel(), fams.items()):
        im = ax.imshow(errs[name], origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(n), [f"{w:.0e}" for w in f["wd"]], rotation=45, fontsize=7)
        ax.set_yticks(range(n), [f"{lr:.0e}" for lr in f["lr"]], fontsize=7)
        ax.set_xlabel("weight decay wd")
        ax.set_ylabel("learning rate")
        for i, b in enumerate(bests[name]):
            if b is not None:
                ax.plot(np.interp(np.log10(b), np.log10(f["wd"]), np.arange(n)), i, "r*", ms=10,
                        label="best wd (centre of ties)")
        ax.set_title(f"{name}\nbest-wd spread {spreads[name]:.1f} decades", fontsize=9)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles[:1], labels[:1], fontsize=6, loc="upper right")
        fig.colorbar(im, ax=ax, label="test error (clipped)", extend="max")
    save_figure(fig, ctx.out_dir / f"{ID}.png")

    s = spreads
    return Claim(
        id=ID,
        statement="With decoupled weight decay the best weight decay depends less on the learning rate "
        "than with L2 regularization (Loshchilov & Hutter 2019, Fig. 2), for Adam and for SGD with momentum.",
        criterion=f"{n}x{n} grids of learning rate x weight decay ({seeds_n} seeds each, digits MLP): for each "
        f"learning rate that trains well (its best test error within {NEAR_BEST:.2f} of the grid's best), the best "
        "wd is the centre (mean log10) of the wd values whose mean test error is within 2 s.e. (seed noise) of "
        "that row's lowest; the spread is max - min of log10(best wd) across learning rates. Holds if the spread is smaller for "
        "AdamW than for Adam+L2 AND smaller for SGDW than for SGD+L2, using the paper's decoupled form "
        "(decay multiplier m=1, i.e. not scaled by the lr). The PyTorch/optax form (m=lr) is shown too. "
        f"Grid resolution: {4 / (n - 1):.2f} decades.",
        holds=verdict(metrics),
        metrics=metrics,
        figure=f"{ID}.png",
        key_number=f"best-wd spread (decades): Adam+L2 {s['Adam+L2']:.1f} vs AdamW {s['AdamW, m=1 (paper)']:.1f}; "
        f"SGD+L2 {s['SGD+L2 (momentum 0.9)']:.1f} vs SGDW {s['SGDW, m=1 (paper)']:.1f}",
        notes="Spreads on test cross-entropy instead of test error (argmin, no ties): "
        + ", ".join(f"{k} {v:.1f}" for k, v in loss_spreads.items())
        + ". Spread of the largest wd that still trains within "
        f"{NEAR_BEST:.2f} of the best (the edge of the good region): "
        + ", ".join(f"{k} {v:.1f}" for k, v in edge_spreads.items())
        + ". On this small task the test error is flat in wd to within seed noise over most of each grid, "
        "so the best-wd location is weakly determined; the edge of the good region is the sharper feature. "
        "A possible reading (not measured here): trained close to convergence, the L2-regularized optimum "
        "does not depend on the lr, while decoupled decay with m=1 balances lr-sized steps against wd, so "
        "its good region moves with the lr; the paper's setting (CIFAR-10, fixed epoch budgets) is "
        "far from convergence. With the PyTorch/optax convention (decay multiplied by the lr), the per-step decay is lr*wd, "
        "so the best wd moves with the lr again; the paper's separability needs m independent of the base lr "
        "(decaytx: learning_rate=None, or lr_multiplier(schedule)).",
    )
