"""adam-l2-differs-from-adamw: with Adam, L2 and decoupled decay differ; which generalizes
better? (MLP on MNIST-1D; the landscape study's CNN runs answer it over a whole lr x wd grid.)"""

from __future__ import annotations

import jax
import numpy as np

from experiments import chains, stats
from experiments.common import new_figure, save_figure
from experiments.nets import MLP
from experiments.report import Claim, Context
from experiments.train1d import train

ID = "adam-l2-differs-from-adamw"
LR = 1e-3
WDS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
THRESHOLD = 1e-3  # 100x the tolerance under which SGD's two forms agree
SIZES = {
    "smoke": dict(data=(600, 200, 600), seeds=2, steps=60, hidden=32, boot=100),
    "quick": dict(data=(4000, 1000, 5000), seeds=4, steps=1000, hidden=64, boot=1000),
    "full": dict(data=(4000, 1000, 5000), seeds=6, steps=2000, hidden=128, boot=2000),
}


def verdict(m: dict) -> bool:
    """At every wd of the grid, Adam+L2 and AdamW with the same number end more
    than 1e-3 apart (max abs over weights, averaged over seeds)."""
    return min(m["max_abs_diff_by_wd"]) > THRESHOLD


def _flat(params: dict, i: int) -> np.ndarray:
    return np.concatenate([np.asarray(x[i]).ravel() for x in jax.tree.leaves(params)])


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    data, s = ctx.mnist1d(*z["data"]), z["seeds"]
    rows = [(0.0, 0.0)] + [(w, 0.0) for w in WDS] + [(0.0, w) for w in WDS]
    hp = {"l2": np.repeat([r[0] for r in rows], s), "dec": np.repeat([r[1] for r in rows], s)}
    seeds = np.tile(ctx.seed * 1000 + np.arange(s), len(rows))
    h = train(MLP((40, z["hidden"], z["hidden"], 10)), lambda hh: chains.adam_both(LR, hh["l2"], hh["dec"]), hp,
              seeds, data, steps=z["steps"], batch_size=64, records=1, chunks=4, desc=f"{ID}: Adam+L2 and AdamW")
    final = {k: v[:, -1].reshape(len(rows), s) for k, v in h.metrics.items()}
    n = len(WDS)
    l2_rows, w_rows = range(1, 1 + n), range(1 + n, 1 + 2 * n)

    def dist(r1: int, r2: int) -> tuple[float, float]:
        d = [_flat(h.final_params, r1 * s + k) - _flat(h.final_params, r2 * s + k) for k in range(s)]
        ref = [_flat(h.final_params, r2 * s + k) for k in range(s)]
        return (float(np.mean([np.max(np.abs(x)) for x in d])),
                float(np.mean([np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(d, ref)])))

    maxdiff, reldist, effect_l2, effect_w = [], [], [], []
    for a, b in zip(l2_rows, w_rows):
        md, rd = dist(a, b)
        maxdiff.append(md)
        reldist.append(rd)
        effect_l2.append(dist(a, 0)[1])
        effect_w.append(dist(b, 0)[1])
    # Each form's decay chosen on the validation split, then compared on test.
    best_l2 = int(np.argmax(final["val_acc"][1 : 1 + n].mean(axis=1)))
    best_w = int(np.argmax(final["val_acc"][1 + n :].mean(axis=1)))
    acc_l2 = final["test_acc"][1 + best_l2]
    acc_w = final["test_acc"][1 + n + best_w]
    corr = h.correct_test.reshape(len(rows), s, -1)
    boot = stats.paired_bootstrap(corr[1 + n + best_w], corr[1 + best_l2], z["boot"], ctx.seed)  # err(AdamW) - err(L2)
    if boot["ci"][1] < 0:
        better = "AdamW"
    elif boot["ci"][0] > 0:
        better = "Adam+L2"
    else:
        better = "neither (the 95% CI contains 0)"
    metrics = {
        "dataset": "mnist1d", "model": f"MLP 40-{z['hidden']}-{z['hidden']}-10, ReLU, no normalisation",
        "chains": f"Adam+L2: chain(add_l2_grad(wd), scale_by_adam(), scale_by_learning_rate({LR})); AdamW: "
        f"chain(scale_by_adam(), scale_by_learning_rate({LR}), add_decoupled_decay(wd, learning_rate={LR})); kernels only",
        "wd_grid": WDS, "steps": z["steps"], "seeds": s, "train_val_test": list(z["data"]),
        "max_abs_diff_by_wd": maxdiff,
        "relative_distance_by_wd": reldist,
        "decay_effect_l2_by_wd": effect_l2,
        "decay_effect_adamw_by_wd": effect_w,
        "min_max_abs_diff": min(maxdiff),
        "wd_reference": WDS[best_w],
        "max_abs_diff_at_reference": maxdiff[best_w],
        "relative_distance_at_reference": reldist[best_w],
        "test_acc_none": float(final["test_acc"][0].mean()),
        "test_acc_l2_by_wd": final["test_acc"][1 : 1 + n].mean(axis=1),
        "test_acc_adamw_by_wd": final["test_acc"][1 + n :].mean(axis=1),
        "wd_l2_chosen_on_val": WDS[best_l2],
        "wd_adamw_chosen_on_val": WDS[best_w],
        "test_acc_l2_best": float(acc_l2.mean()),
        "test_acc_adamw_best": float(acc_w.mean()),
        "adamw_minus_l2": float(acc_w.mean() - acc_l2.mean()),
        "test_error_adamw_minus_l2": boot["diff"], "test_error_adamw_minus_l2_ci": boot["ci"],
        "better_generalizer": better,
    }
    if "landscape" in ctx.shared:  # the MNIST-1D CNN landscape runs, best validation cell per family
        metrics["mnist1d_generalization"] = ctx.shared["landscape"]["generalization"]
        metrics["mnist1d_best_val_cell"] = ctx.shared["landscape"]["best_val_cell"]

    fig, (ax1, ax2) = new_figure(2)
    for key, label, color in (("test_acc_l2_by_wd", "Adam+L2", "C1"), ("test_acc_adamw_by_wd", "AdamW", "C0")):
        ax1.plot(WDS, metrics[key], "o-", color=color, label=label)
    ax1.axhline(metrics["test_acc_none"], color="C7", ls="--", label="Adam, no decay")
    ax1.set_xscale("log")
    ax1.set_xlabel("weight decay wd (same number passed to both)")
    ax1.set_ylabel("test accuracy (final, mean over seeds)")
    ax1.set_title(f"MNIST-1D MLP, Adam lr={LR:g}", fontsize=9)
    ax1.legend(fontsize=8)
    ax2.plot(WDS, reldist, "o-", color="C3", label="||θ(Adam+L2) − θ(AdamW)|| / ||θ(AdamW)||")
    ax2.plot(WDS, effect_l2, "s--", color="C1", label="Adam+L2 vs no decay")
    ax2.plot(WDS, effect_w, "s--", color="C0", label="AdamW vs no decay")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("weight decay wd")
    ax2.set_ylabel("relative distance of final weights")
    ax2.set_title("how far apart the two forms end")
    ax2.legend(fontsize=7)
    save_figure(fig, ctx.out_dir / f"{ID}.png")

    notes = (
        "Adam divides the L2 gradient wd*θ by the running RMS of the gradient, so weights with small "
        "gradients are decayed much harder: Adam+L2 already moves the weights by "
        f"{effect_l2[0]:.0%} at wd={WDS[0]:g}, where AdamW moves them by {effect_w[0]:.1e}. The same number "
        "means very different decay in the two forms, so each is compared at its own validation-chosen wd."
    )
    if "mnist1d_generalization" in metrics:
        notes += (" On MNIST-1D (the landscape study's CNN runs: each family's best validation cell over the whole "
                  "lr x wd grid, paired bootstrap over seeds and test examples, negative = first better): "
                  + ", ".join(f"{k} {100 * v['diff']:+.1f} pts [{100 * v['ci'][0]:+.1f}, {100 * v['ci'][1]:+.1f}]"
                              for k, v in metrics["mnist1d_generalization"].items()) + ".")
    return Claim(
        id=ID,
        statement="With Adam, L2 regularization and decoupled decay (AdamW) differ; which generalizes better?",
        criterion=f"MNIST-1D, {metrics['model']}, {z['steps']} steps, {s} seeds; same seeds and minibatches, Adam lr={LR:g}, the same wd passed to add_l2_grad (first) and "
        "add_decoupled_decay(learning_rate=lr) (last): holds if, at every wd of the grid "
        f"({WDS[0]:g} to {WDS[-1]:g}), the final weights differ by more than {THRESHOLD:g} (max abs, mean over "
        "seeds; SGD's two forms agree to 1e-5). Generalization: each form's wd chosen on validation, test accuracy compared (paired over "
        "seeds and test examples, paired 95% bootstrap of the test-error difference; reported, not part of the verdict).",
        holds=verdict(metrics),
        metrics=metrics,
        figure=f"{ID}.png",
        notes=notes,
        key_number=f"max diff >= {min(maxdiff):.2f} at every wd ({metrics['max_abs_diff_at_reference']:.2f} at "
        f"AdamW's wd={WDS[best_w]:g}); test acc AdamW {metrics['test_acc_adamw_best']:.3f} "
        f"vs Adam+L2 {metrics['test_acc_l2_best']:.3f} (error diff {100 * boot['diff']:+.1f} pts "
        f"[{100 * boot['ci'][0]:+.1f}, {100 * boot['ci'][1]:+.1f}]): better = {better}",
    )
