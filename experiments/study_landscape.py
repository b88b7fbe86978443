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


def argmin_spread(err: np.ndarray, wd: np.ndarray) -> tuple[float, list[float | None]]:
    """Range (in decades) of the best wd over the lr rows that train well.

    Rows whose best error is more than NEAR_BEST above the grid's best are
    left out: there the lr is too small or too large to train in the budget,
    and the "best" wd is simply the one that interferes least.
    """
    best = []
    for row in err:
        best.append(float(wd[int(np.argmin(row))]) if row.min() <= err.min() + NEAR_BEST else None)
    logs = [np.log10(b) for b in best if b is not None]
    return (float(max(logs) - min(logs)) if len(logs) >= 2 else float("nan")), best


def verdict(m: dict) -> bool:
    """For Adam and for SGD: the spread of the best wd across learning rates is
    smaller with decoupled decay (m=1, the paper's form) than with L2."""
    s = m["spread_decades"]
    return bool(s["AdamW, m=1 (paper)"] < s["Adam+L2"] and s["SGDW, m=1 (paper)"] < s["SGD+L2 (momentum 0.9)"])


def run(ctx: Context) -> Claim:
    mode, data = ctx.mode, ctx.digits
    n, seeds_n = mode.grid, min(mode.seeds, 2) if mode.name != "full" else mode.seeds
    fams = families(n)
    errs, spreads, bests = {}, {}, {}
    for name, f in fams.items():
        hp, seeds = grid_runs({"lr": f["lr"], "wd": f["wd"]}, seeds_n, ctx.seed)
        h = train_mlp(f["make"], hp, seeds, data, desc=f"{ID}: {name}",
                      steps=mode.steps, records=min(mode.records, 5), hidden=mode.hidden)
        err = 1.0 - h.metrics["test_acc"][:, -1].reshape(n, n, seeds_n).mean(axis=2)
        errs[name] = err
        spreads[name], bests[name] = argmin_spread(err, f["wd"])
    metrics = {
        "grid_points": n, "seeds": seeds_n, "steps": mode.steps, "momentum": MOMENTUM,
        "grid_step_decades": float(4 / (n - 1)),
        "near_best": NEAR_BEST,
        "spread_decades": spreads,
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
    vmax = vmin + 0.1  # clip: the interesting structure is within a few points of the best
    for ax, (name, f) in zip(axes.ravel(), fams.items()):
        im = ax.imshow(errs[name], origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(n), [f"{w:.0e}" for w in f["wd"]], rotation=45, fontsize=7)
        ax.set_yticks(range(n), [f"{lr:.0e}" for lr in f["lr"]], fontsize=7)
        ax.set_xlabel("weight decay wd")
        ax.set_ylabel("learning rate")
        for i, b in enumerate(bests[name]):
            if b is not None:
                ax.plot(list(f["wd"]).index(b), i, "r*", ms=10, label="best wd (rows that train well)")
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
        f"learning rate that trains well (its best test error within {NEAR_BEST:.2f} of the grid's best), take the wd of lowest mean test error; the "
        "spread is max - min of log10(best wd) across learning rates. Holds if the spread is smaller for "
        "AdamW than for Adam+L2 AND smaller for SGDW than for SGD+L2, using the paper's decoupled form "
        "(decay multiplier m=1, i.e. not scaled by the lr). The PyTorch/optax form (m=lr) is shown too. "
        f"Grid resolution: {4 / (n - 1):.2f} decades.",
        holds=verdict(metrics),
        metrics=metrics,
        figure=f"{ID}.png",
        key_number=f"best-wd spread (decades): Adam+L2 {s['Adam+L2']:.1f} vs AdamW {s['AdamW, m=1 (paper)']:.1f}; "
        f"SGD+L2 {s['SGD+L2 (momentum 0.9)']:.1f} vs SGDW {s['SGDW, m=1 (paper)']:.1f}",
        notes="With the PyTorch/optax convention (decay multiplied by the lr), the per-step decay is lr*wd, "
        "so the best wd moves with the lr again; the paper's separability needs m independent of the base lr "
        "(decaytx: learning_rate=None, or lr_multiplier(schedule)).",
    )
