"""prevents-overfitting: does decay narrow the train/test gap on digits?"""

from __future__ import annotations

import numpy as np

from experiments import chains
from experiments.common import grid_runs, mean_se, new_figure, save_figure, train_mlp
from experiments.report import Claim, Context

ID = "prevents-overfitting"
LR = 1e-3
WDS = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0]  # AdamW lambda, multiplier m_t = lr
DROPOUT = 0.3


def verdict(m: dict) -> bool:
    """Gap (train acc - test acc) at the validation-chosen decay is smaller than
    without decay, by more than 2 standard errors of the paired difference."""
    return m["gap_reduction"] > 0 and m["gap_reduction"] > 2 * m["gap_reduction_se"]


def run(ctx: Context) -> Claim:
    mode, data = ctx.mode, ctx.digits
    size = dict(steps=mode.steps, records=mode.records, hidden=mode.hidden)
    hp, seeds = grid_runs({"wd": WDS}, mode.seeds, ctx.seed)
    sweep = train_mlp(lambda h: chains.adamw(LR, h["wd"]), hp, seeds, data, desc=f"{ID}: wd sweep", **size)
    final = {k: v[:, -1].reshape(len(WDS), mode.seeds) for k, v in sweep.metrics.items()}
    gap = final["train_acc"] - final["test_acc"]
    # Choose the decay on the validation split (never on test), among wd > 0.
    best = 1 + int(np.argmax(final["val_acc"][1:].mean(axis=1)))
    wd_best = WDS[best]

    hp_d, seeds_d = grid_runs({"wd": [0.0, wd_best]}, mode.seeds, ctx.seed)
    drop = train_mlp(lambda h: chains.adamw(LR, h["wd"]), hp_d, seeds_d, data, dropout=DROPOUT,
                     desc=f"{ID}: dropout", **size)
    final_d = {k: v[:, -1].reshape(2, mode.seeds) for k, v in drop.metrics.items()}
    gap_d = final_d["train_acc"] - final_d["test_acc"]

    rows = {
        "none": (final, 0),
        f"decay wd={wd_best:g}": (final, best),
        f"dropout {DROPOUT}": (final_d, 0),
        f"dropout {DROPOUT} + decay wd={wd_best:g}": (final_d, 1),
    }
    table = {}
    for name, (f, i) in rows.items():
        table[name] = {
            k: float(f[k][i].mean()) for k in ("train_acc", "test_acc", "train_loss", "test_loss", "weight_norm")
        }
        table[name]["gap"] = float((f["train_acc"][i] - f["test_acc"][i]).mean())
        table[name]["loss_gap"] = float((f["test_loss"][i] - f["train_loss"][i]).mean())
    diff = gap[0] - gap[best]  # paired over seeds
    red, red_se = mean_se(diff)
    metrics = {
        "optimizer": f"AdamW chain: scale_by_adam, scale_by_learning_rate({LR}), add_decoupled_decay(wd, learning_rate={LR}, mask=kernels)",
        "train_size": int(data.x_train.shape[0]),
        "test_size": int(data.x_test.shape[0]),
        "steps": mode.steps,
        "seeds": mode.seeds,
        "wd_grid": WDS,
        "wd_chosen_on_val": wd_best,
        "gap_by_wd": gap.mean(axis=1),
        "test_acc_by_wd": final["test_acc"].mean(axis=1),
        "train_acc_by_wd": final["train_acc"].mean(axis=1),
        "val_acc_by_wd": final["val_acc"].mean(axis=1),
        "gap_none": float(gap[0].mean()),
        "gap_decay": float(gap[best].mean()),
        "gap_reduction": float(red),
        "gap_reduction_se": float(red_se),
        "test_acc_gain": float((final["test_acc"][best] - final["test_acc"][0]).mean()),
        "gap_dropout": float(gap_d[0].mean()),
        "gap_dropout_decay": float(gap_d[1].mean()),
        "rows": table,
    }

    fig, (ax1, ax2) = new_figure(2)
    x = np.arange(len(WDS))
    for key, label in (("train_acc", "train"), ("test_acc", "test")):
        m, se = mean_se(final[key])
        ax1.errorbar(x, m, yerr=se, marker="o", capsize=3, label=f"{label} accuracy")
    ax1.set_xticks(x, [f"{w:g}" for w in WDS])
    ax1.axvline(best, color="gray", ls=":", label=f"chosen on validation (wd={wd_best:g})")
    ax1.set_xlabel("AdamW weight decay wd (per-step decay lr*wd)")
    ax1.set_ylabel("accuracy (final)")
    ax1.set_title(f"digits, {data.x_train.shape[0]} training examples")
    ax1.legend(fontsize=8)
    names = list(rows)
    gaps = [np.asarray(rows[n][0]["train_acc"][rows[n][1]] - rows[n][0]["test_acc"][rows[n][1]]) for n in names]
    ax2.bar(range(len(names)), [g.mean() for g in gaps],
            yerr=[mean_se(g)[1] for g in gaps], capsize=4, color=["C7", "C0", "C1", "C2"])
    ax2.set_xticks(range(len(names)), [n.replace(" + ", "\n+ ") for n in names], fontsize=7)
    ax2.set_ylabel("train acc - test acc (gap)")
    ax2.set_title("generalization gap (mean ± s.e. over seeds)")
    save_figure(fig, ctx.out_dir / f"{ID}.png")

    holds = verdict(metrics)
    return Claim(
        id=ID,
        statement="Weight decay narrows the train/test gap (MLP on scikit-learn digits, small training split).",
        criterion="AdamW with wd chosen on a validation split vs wd=0, same seeds: holds if the gap "
        "(train accuracy - test accuracy, final) shrinks by more than 2 standard errors of the "
        "paired per-seed difference.",
        holds=holds,
        metrics=metrics,
        figure=f"{ID}.png",
        key_number=f"gap {metrics['gap_none']:.3f} -> {metrics['gap_decay']:.3f} (wd={wd_best:g}); "
        f"test acc {metrics['test_acc_gain']:+.3f}",
    )
