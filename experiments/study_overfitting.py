"""prevents-overfitting: an unnormalised MLP that overfits MNIST-1D, AdamW with wd
chosen on validation vs wd = 0 (and vs early stopping at wd = 0)."""

from __future__ import annotations

from typing import Any

import numpy as np
import optax

import decaytx
from experiments import stats
from experiments.common import new_figure, save_figure
from experiments.nets import MLP
from experiments.report import Claim, Context
from experiments.train1d import Runs, grid_runs, train

ID = "prevents-overfitting"
K = decaytx.masks.ndim_at_least(2)
LR = 1e-3  # Adam, constant
WDS = [0.0, 0.03, 0.1, 0.3, 1.0, 3.0]  # AdamW λ with m_t = η (per-step decay 1e-3·λ)
SIZES = {  # label-noise settings run; steps; records along training
    "smoke": dict(data=(600, 200, 600), noise=[0.0], seeds=2, steps=60, records=3, hidden=32, boot=100),
    "quick": dict(data=(4000, 1000, 5000), noise=[0.0], seeds=4, steps=2000, records=10, hidden=128, boot=1000),
    "full": dict(data=(4000, 1000, 5000), noise=[0.0, 0.25], seeds=6, steps=6000, records=20, hidden=128, boot=2000),
}


def adamw(h: dict[str, Any]) -> optax.GradientTransformation:
    return optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(LR),
                       decaytx.add_decoupled_decay(h["wd"], learning_rate=LR, mask=K))


def verdict(m: dict) -> bool:
    """Criterion fixed before running: in every setting, the paired 95% bootstrap CI
    (seeds x test examples) of test error(wd = 0) - test error(wd chosen on
    validation) lies above 0."""
    return all(s["test_gain_ci"][0] > 0 for s in m["settings"].values())


def _setting(ctx: Context, z: dict, noise: float) -> tuple[dict, Runs]:
    data = ctx.mnist1d(*z["data"], label_noise=noise)
    hp, seeds = grid_runs({"wd": WDS}, z["seeds"], ctx.seed)
    r = train(MLP((40, z["hidden"], z["hidden"], 10)), adamw, hp, seeds, data, steps=z["steps"],
              batch_size=64, records=z["records"], desc=f"{ID}: label noise {noise:g}")
    s = z["seeds"]
    final = {k: v[:, -1].reshape(len(WDS), s) for k, v in r.metrics.items()}
    chosen = 1 + int(np.argmax(final["val_acc"][1:].mean(axis=1)))  # among wd > 0, on validation
    corr = r.correct_test.reshape(len(WDS), s, -1)
    boot = stats.paired_bootstrap(corr[0], corr[chosen], z["boot"], ctx.seed)  # err(0) - err(chosen)
    gain_t = stats.t_ci(final["test_acc"][chosen] - final["test_acc"][0])
    gap = final["train_acc"] - final["test_acc"]
    gap_red = stats.t_ci(gap[0] - gap[chosen])
    # Early stopping at wd = 0: the record point with the best validation accuracy, per seed.
    curves = {k: v.reshape(len(WDS), s, -1) for k, v in r.metrics.items()}
    stop = np.argmax(curves["val_acc"][0], axis=1)
    es_test = curves["test_acc"][0, np.arange(s), stop]
    vs_es = stats.t_ci(final["test_acc"][chosen] - es_test)
    out = {
        "label_noise": noise, "wd_chosen_on_val": WDS[chosen],
        "test_acc_by_wd": final["test_acc"].mean(axis=1), "val_acc_by_wd": final["val_acc"].mean(axis=1),
        "train_acc_by_wd": final["train_acc"].mean(axis=1), "gap_by_wd": gap.mean(axis=1),
        "test_acc_none": float(final["test_acc"][0].mean()), "test_acc_decay": float(final["test_acc"][chosen].mean()),
        "test_gain": boot["diff"], "test_gain_ci": boot["ci"], "test_gain_t_ci": list(gain_t[1:]),
        "gap_none": float(gap[0].mean()), "gap_decay": float(gap[chosen].mean()),
        "gap_reduction": gap_red[0], "gap_reduction_ci": list(gap_red[1:]),
        "early_stopping_test_acc": float(es_test.mean()), "early_stopping_step": r.steps[stop].tolist(),
        "decay_minus_early_stopping": vs_es[0], "decay_minus_early_stopping_ci": list(vs_es[1:]),
    }
    return out, r


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    settings, curves = {}, {}
    for noise in z["noise"]:
        name = "clean labels" if noise == 0 else f"{noise:.0%} label noise"
        settings[name], curves[name] = _setting(ctx, z, noise)
    metrics = {
        "dataset": "mnist1d", "model": f"MLP 40-{z['hidden']}-{z['hidden']}-10, ReLU, no normalisation",
        "optimizer": f"chain(scale_by_adam(), scale_by_learning_rate({LR}), add_decoupled_decay(wd, learning_rate={LR}, mask=kernels))",
        "seeds": z["seeds"], "steps": z["steps"], "batch_size": 64, "train_val_test": list(z["data"]),
        "wd_grid": WDS, "settings": settings,
    }

    fig, axes = new_figure(1 + len(settings), width=5.0)
    for j, (name, r) in enumerate(curves.items()):
        s, chosen = z["seeds"], WDS.index(settings[name]["wd_chosen_on_val"])
        for i, ls in ((0, "--"), (chosen, "-")):
            for key, color in (("train_acc", "C0"), ("test_acc", "C3")):
                v = r.metrics[key].reshape(len(WDS), s, -1)[i].mean(axis=0)
                axes[j].plot(r.steps, v, ls=ls, color=color, label=f"{key.split('_')[0]}, wd={WDS[i]:g}")
        axes[j].set_xlabel("step")
        axes[j].set_ylabel("accuracy (mean over seeds)")
        axes[j].set_title(f"{name}: overfitting over training", fontsize=9)
        axes[j].legend(fontsize=7)
    ax = axes[-1]
    for k, (name, st) in enumerate(settings.items()):
        x = np.arange(len(WDS))
        ax.plot(x, st["test_acc_by_wd"], "o-", color=f"C{k}", label=f"{name}: test")
        ax.plot(x, st["train_acc_by_wd"], "s:", color=f"C{k}", label=f"{name}: train")
        ax.axhline(st["early_stopping_test_acc"], color=f"C{k}", lw=0.8, ls="-.", label=f"{name}: early stopping, wd=0")
    ax.set_xticks(np.arange(len(WDS)), [f"{w:g}" for w in WDS])
    ax.set_xlabel(f"AdamW λ (per-step decay {LR:g}·λ)")
    ax.set_ylabel("final accuracy")
    ax.set_title("accuracy vs weight decay", fontsize=9)
    ax.legend(fontsize=6)
    save_figure(fig, ctx.out_dir / f"{ID}.png")

    key = "; ".join(f"{n}: test acc {100 * s['test_gain']:+.1f} pts [{100 * s['test_gain_ci'][0]:+.1f}, "
                    f"{100 * s['test_gain_ci'][1]:+.1f}] at wd={s['wd_chosen_on_val']:g}, gap {s['gap_none']:.3f} -> "
                    f"{s['gap_decay']:.3f}" for n, s in settings.items())
    return Claim(
        id=ID,
        statement="Weight decay reduces overfitting: with decay chosen on validation, a model that overfits "
        "generalizes better than without decay.",
        criterion=f"MNIST-1D {z['data'][0]}/{z['data'][1]}/{z['data'][2]} (train/val/test), MLP without normalisation, "
        f"Adam lr {LR:g} for {z['steps']} steps, {z['seeds']} seeds. λ chosen on the validation split among λ > 0 "
        "(mean over seeds). Holds if the paired 95% bootstrap CI (resampling seeds and test examples) of "
        "test accuracy(chosen λ) - test accuracy(λ = 0) lies above 0, in every setting run. The train-test gap "
        "is secondary (it also shrinks by underfitting). Fixed before running.",
        holds=verdict(metrics),
        checks={f"{k}: CI of err(wd=0) - err(chosen wd) above 0": bool(v["test_gain_ci"][0] > 0)
                for k, v in metrics["settings"].items()},
        metrics=metrics,
        figure=f"{ID}.png",
        key_number=key,
        notes="Also reported: the gap reduction (t CI over seeds) and decay vs early stopping at λ = 0 (the "
        "record point with the best validation accuracy): "
        + "; ".join(f"{n}: gap reduction {s['gap_reduction']:.3f} [{s['gap_reduction_ci'][0]:.3f}, "
                    f"{s['gap_reduction_ci'][1]:.3f}], decay - early stopping {100 * s['decay_minus_early_stopping']:+.1f} pts "
                    f"[{100 * s['decay_minus_early_stopping_ci'][0]:+.1f}, {100 * s['decay_minus_early_stopping_ci'][1]:+.1f}]"
                    for n, s in settings.items()) + ".",
    )
