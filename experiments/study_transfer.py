"""weight-decay-transfer (full mode only): how AdamW's best λ moves with the dataset size at a
fixed number of epochs (Wang & Aitchison 2024: λ* ∝ 1/n) and with the training length on a
fixed dataset (the AdamW paper's normalized decay: λ* ∝ T^-1/2), on the batch-norm CNN."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

import decaytx
from experiments import stats
from experiments.common import new_figure, save_figure
from experiments.nets import CNN
from experiments.report import Claim, Context
from experiments.train1d import grid_runs, train

ID = "weight-decay-transfer"
K = decaytx.masks.ndim_at_least(2)
LR = 10**-2.25  # Adam peak lr, cosine to 0 over each run's own length; m_t = η_t (PyTorch/optax AdamW)
WD = (-2.0, 2.0)  # log10 range of λ, half-decades
BATCH = 32
SIZES = {  # sizes: training-set sizes at `epochs` epochs; lengths: steps on `budget_n` examples
    "smoke": dict(data=(800, 200, 600), sizes=[200, 400, 800], epochs=2, lengths=[20, 40, 80], budget_n=400,
                  seeds=2, n_wd=5, channels=4, boot=100),
    "full": dict(data=(8000, 1000, 5000), sizes=[1000, 2000, 4000, 8000], epochs=8, lengths=[250, 500, 1000, 2000],
                 budget_n=4000, seeds=6, n_wd=9, channels=16, boot=2000),
}
PREDICTED = {"dataset size": -1.0, "training length": -0.5}


def make(h: dict[str, Any]) -> optax.GradientTransformation:
    """AdamW, cosine from LR to 0 over the run's length ``T`` (then lr 0: the run is frozen), m_t = η_t."""
    lr = lambda t: LR * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(t, h["T"]) / h["T"]))  # noqa: E731
    return optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(lr),
                       decaytx.add_decoupled_decay(h["wd"], learning_rate=lr, mask=K))


def _sweep(ctx: Context, z: dict, data: Any, n: int, lengths: list[int], tag: str) -> np.ndarray:
    """Test correctness [length, λ, seed, example] of AdamW on the first ``n`` training examples."""
    sub = dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])
    hp, seeds = grid_runs({"T": lengths, "wd": np.logspace(*WD, z["n_wd"])}, z["seeds"], ctx.seed)
    r = train(CNN(channels=z["channels"], batch_norm=True), make, hp, seeds, sub, steps=max(lengths),
              batch_size=BATCH, records=1, chunks=4, desc=f"{ID}: {tag}")
    return r.correct_test.reshape(len(lengths), z["n_wd"], z["seeds"], -1)


def checks(m: dict) -> dict[str, bool]:
    """Fixed before the run: the 95% bootstrap CI of the slope of log10(best λ) on log10(n) at fixed
    epochs lies below 0 and contains -1. The training-length slope is reported, not in the verdict."""
    ci = m["dataset size"]["slope_ci"]
    return {"dataset size: slope CI below 0": bool(ci[1] < 0),
            "dataset size: slope CI contains -1": bool(ci[0] <= -1 <= ci[1])}


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    data = ctx.mnist1d(*z["data"])
    log_wd = np.linspace(*WD, z["n_wd"])
    by_n = np.concatenate([_sweep(ctx, z, data, n, [z["epochs"] * n // BATCH], f"n={n}") for n in z["sizes"]])
    by_t = _sweep(ctx, z, data, z["budget_n"], z["lengths"], "training lengths")
    res = {}
    for name, corr, x in (("dataset size", by_n, z["sizes"]), ("training length", by_t, z["lengths"])):
        st = stats.landscape_stats(corr, np.log10(x), log_wd, z["boot"], ctx.seed)
        res[name] = {"x": list(x), "test_error": st["test_error"], "slope": st["slope"], "slope_ci": st["slope_ci"],
                     "best_wd": st["best_wd_by_lr"], "censored_rows": st["censored_rows"],
                     "predicted": PREDICTED[name]}
    metrics: dict[str, Any] = {
        "dataset": "mnist1d (nested training subsets)", "model": f"1-D CNN, {z['channels']} channels, batch norm",
        "optimizer": f"AdamW, Adam lr {LR:.3g} cosine to 0 over the run, m_t = η_t", "seeds": z["seeds"],
        "epochs": z["epochs"], "batch_size": BATCH, "budget_n": z["budget_n"], "wd_grid": (10**log_wd).tolist(),
        **res,
    }
    _figure(ctx, metrics)
    ok = checks(metrics)
    d, t = res["dataset size"], res["training length"]
    return Claim(
        id=ID,
        statement="At a fixed number of epochs, AdamW's best weight decay scales as 1/n with the dataset size "
        "(a constant EMA timescale in epochs; Wang & Aitchison 2024).",
        criterion=f"MNIST-1D, batch-norm CNN, AdamW (lr {LR:.3g}, cosine to 0, m_t = η_t), {z['seeds']} seeds, λ on "
        f"half-decades from {10 ** WD[0]:g} to {10 ** WD[1]:g}. Dataset sizes {z['sizes']} (nested subsets) at "
        f"{z['epochs']} epochs, batch {BATCH}; best λ per size from the test error (parabola vertex, edge optima "
        "censored). Holds if the 95% bootstrap CI (seeds x test examples) of the slope of log10(best λ) on "
        "log10(n) lies below 0 and contains -1. Training length (reported): T in "
        f"{z['lengths']} steps on {z['budget_n']} examples; the normalized-decay rule predicts -0.5. Full mode "
        "only. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number=f"slope on log n {_f(d['slope'])} [{_f(d['slope_ci'][0])}, {_f(d['slope_ci'][1])}] (predicted -1); "
        f"on log T {_f(t['slope'])} [{_f(t['slope_ci'][0])}, {_f(t['slope_ci'][1])}] (predicted -0.5)",
        notes=f"Censored rows (optimum on a grid edge): sizes {d['censored_rows']}, lengths {t['censored_rows']}.",
    )


def _f(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.2f}"


def _figure(ctx: Context, m: dict) -> None:
    fig, axes = new_figure(2, width=5.4)
    for ax, name, unit in ((axes[0], "dataset size", "n"), (axes[1], "training length", "T")):
        r = m[name]
        err = np.asarray(r["test_error"])
        for j, x in enumerate(r["x"]):
            ax.plot(m["wd_grid"], err[j], "o-", ms=3, color=f"C{j}", label=f"{unit}={x}")
            if r["best_wd"][j] is not None:
                ax.plot([r["best_wd"][j]], [err[j].min()], "*", ms=11, color=f"C{j}", mec="k")
        ax.set_xscale("log")
        ax.set_xlabel("AdamW λ (m_t = η_t); stars: best λ (parabola vertex)")
        ax.set_ylabel("test error (mean over seeds)")
        ax.set_title(f"{name}: slope of log best λ on log {unit} {_f(r['slope'])} "
                     f"[{_f(r['slope_ci'][0])}, {_f(r['slope_ci'][1])}]; predicted {r['predicted']:g}", fontsize=8)
        ax.legend(fontsize=7)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
