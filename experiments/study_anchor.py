"""anchor-toward-pretrained: fine-tuning with decay toward the pretrained weights (L2-SP, via
``anchor="init"``) against decay toward 0, on MNIST-1D under a domain shift (same classes, the
pretrained head kept), with zero-shot, linear-probe and from-scratch baselines; a class-disjoint
task (new classes, new head) is the reported contrast."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax

import decaytx
from experiments import stats
from experiments.common import new_figure, save_figure
from experiments.nets import CNN
from experiments.report import Claim, Context
from experiments.train1d import init_params, train

ID = "anchor-toward-pretrained"
K = decaytx.masks.ndim_at_least(2)
PRE_LR, FT_LR = 3e-3, 1e-3  # Adam, constant
WDS = [1.0, 3.16, 10.0, 31.6, 100.0, 316.0]  # λ on half-decades, m_t = η (per-step decay 1e-3·λ)
# The target domain: other draws (seed) with stronger correlated and iid noise and more shear.
SHIFT = {"corr_noise_scale": 0.5, "iid_noise_scale": 0.1, "shear_scale": 1.25}
SIZES = {
    "smoke": dict(data=(600, 200, 600), fine_tune=100, seeds=2, pre_steps=40, ft_steps=30, channels=4, boot=100),
    "quick": dict(data=(4000, 1000, 5000), fine_tune=250, seeds=4, pre_steps=600, ft_steps=400, channels=16, boot=1000),
    "full": dict(data=(4000, 1000, 5000), fine_tune=250, seeds=6, pre_steps=2000, ft_steps=1000, channels=16, boot=2000),
}


def freeze_body(probe: Any) -> optax.GradientTransformation:
    """Scales every update but the head's by (1 - probe): probe = 1 is a linear probe."""
    def update(u: Any, state: Any, params: Any = None) -> Any:
        return {k: v if k == "head" else jax.tree.map(lambda x: x * (1 - probe), v) for k, v in u.items()}, state
    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


def fine_tune_opt(h: dict[str, Any]) -> optax.GradientTransformation:
    """Adam, then decay toward 0 (``d0``) and toward the pretrained weights (``dinit``); unused ones 0."""
    return optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(FT_LR),
                       decaytx.add_decoupled_decay(h["d0"], learning_rate=FT_LR, mask=K),
                       decaytx.add_decoupled_decay(h["dinit"], learning_rate=FT_LR, mask=K, anchor="init"),
                       freeze_body(h["probe"]))


def configs(baselines: bool) -> dict[str, dict[str, float]]:
    out = {"fine-tune, no decay": {}}
    out |= {f"toward 0, λ={w:g}": {"d0": w} for w in WDS}
    out |= {f"toward init, λ={w:g}": {"dinit": w} for w in WDS}
    if baselines:
        out |= {"linear probe": {"probe": 1.0}, "from scratch": {"scratch": 1.0}}
    return out


def pretrain(ctx: Context, z: dict, model: CNN, data: Any, tag: str) -> Any:
    s = z["seeds"]
    adam = lambda h: optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(PRE_LR))  # noqa: E731
    return train(model, adam, {"lr": np.full(s, PRE_LR)}, ctx.seed * 1000 + np.arange(s), data, steps=z["pre_steps"],
                 batch_size=32, records=1, chunks=2, desc=f"{ID}: pretrain ({tag})")


def fine_tune(ctx: Context, z: dict, model: CNN, start: Any, data: Any, baselines: bool, tag: str) -> dict:
    """Every config x seed in one program; returns per config: test correctness [seeds, examples],
    validation accuracy and record-0 (zero-shot) test accuracy."""
    cfg, s = configs(baselines), z["seeds"]
    seeds = np.tile(ctx.seed * 1000 + np.arange(s), len(cfg))
    h = {k: np.repeat([c.get(k, 0.0) for c in cfg.values()], s) for k in ("d0", "dinit", "probe")}
    scratch = np.repeat([c.get("scratch", 0.0) for c in cfg.values()], s).astype(bool)
    fresh = init_params(model, seeds)
    p0 = jax.tree.map(lambda a, b: np.where(scratch.reshape((-1,) + (1,) * (a.ndim - 1)), np.asarray(b),
                                            np.tile(np.asarray(a), (len(cfg),) + (1,) * (a.ndim - 1))), start, fresh)
    r = train(model, fine_tune_opt, h, seeds, data, steps=z["ft_steps"], batch_size=32, records=1, chunks=2,
              params0=p0, desc=f"{ID}: fine-tune ({tag})")
    corr = r.correct_test.reshape(len(cfg), s, -1)
    val = r.metrics["val_acc"][:, -1].reshape(len(cfg), s).mean(axis=1)
    zero = r.metrics["test_acc"][:, 0].reshape(len(cfg), s).mean(axis=1)
    return {n: {"correct": corr[i], "val_acc": float(val[i]), "test_acc": float(corr[i].mean()),
                "zero_shot": float(zero[i])} for i, n in enumerate(cfg)}


def summarize(res: dict, z: dict, seed: int) -> dict:
    """Each decay's λ chosen on validation; paired bootstraps against toward-0 and no decay."""
    out: dict[str, Any] = {"test_acc": {n: r["test_acc"] for n, r in res.items()}}
    for form in ("toward 0", "toward init"):
        best = max(WDS, key=lambda w: res[f"{form}, λ={w:g}"]["val_acc"])
        out[f"{form}: λ chosen on val"] = best
        out[form] = res[f"{form}, λ={best:g}"]["correct"]
    boot = lambda a, b: stats.paired_bootstrap(a, b, z["boot"], seed)  # noqa: E731
    out["init_vs_0"] = boot(out["toward 0"], out["toward init"])  # err(toward 0) - err(toward init)
    out["init_vs_none"] = boot(res["fine-tune, no decay"]["correct"], out["toward init"])
    out["zero_shot_acc"] = res["fine-tune, no decay"]["zero_shot"]
    del out["toward 0"], out["toward init"]
    return out


def checks(m: dict) -> dict[str, bool]:
    """Fixed before the run: on the domain-shift task, the paired 95% bootstrap CI of test error(toward 0)
    - test error(toward init), each at its validation-chosen λ, lies above 0."""
    return {"domain shift: CI of err(toward 0) - err(toward init) above 0": bool(m["domain_shift"]["init_vs_0"]["ci"][0] > 0)}


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    few = lambda d: dataclasses.replace(d, x_train=d.x_train[: z["fine_tune"]], y_train=d.y_train[: z["fine_tune"]])  # noqa: E731
    model = CNN(channels=z["channels"], batch_norm=True)
    pre = pretrain(ctx, z, model, ctx.mnist1d(*z["data"]), "source domain")
    target = few(ctx.mnist1d(*z["data"], shift={**SHIFT, "seed": 5000 + ctx.seed}))
    shift = summarize(fine_tune(ctx, z, model, pre.final_params, target, True, "domain shift"), z, ctx.seed)
    model5 = CNN(channels=z["channels"], batch_norm=True, classes=5)
    pre5 = pretrain(ctx, z, model5, ctx.mnist1d(*z["data"], classes=(0, 1, 2, 3, 4)), "digits 0-4")
    zero_head = jax.tree.map(lambda x: np.zeros_like(np.asarray(x)), pre5.final_params["head"])
    disjoint = summarize(fine_tune(ctx, z, model5, {**pre5.final_params, "head": zero_head},
                                   few(ctx.mnist1d(*z["data"], classes=(5, 6, 7, 8, 9))), False, "digits 5-9"),
                         z, ctx.seed)
    metrics: dict[str, Any] = {
        "dataset": "mnist1d: pretrain on the standard generator, fine-tune on a shifted one (same 10 classes); "
        "contrast: pretrain digits 0-4, fine-tune 5-9", "model": f"1-D CNN, {z['channels']} channels, batch norm",
        "shift": SHIFT, "seeds": z["seeds"], "pretrain_steps": z["pre_steps"], "fine_tune_steps": z["ft_steps"],
        "fine_tune_examples": z["fine_tune"], "wd_grid": WDS, "domain_shift": shift, "class_disjoint": disjoint,
    }
    _figure(ctx, metrics)
    ok = checks(metrics)
    pts = lambda d: f"{100 * d['diff']:+.1f} pts [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"  # noqa: E731
    acc = shift["test_acc"]
    return Claim(
        id=ID,
        statement="When fine-tuning on a task whose pretrained features are relevant, decaying toward the "
        "pretrained weights (L2-SP; anchor='init') generalizes better than decaying toward 0.",
        criterion=f"CNN pretrained on MNIST-1D, fine-tuned (pretrained head kept) on {z['fine_tune']} examples of a "
        f"shifted MNIST-1D (same classes; generator {SHIFT}, other draws) with Adam lr {FT_LR:g}, {z['seeds']} seeds; "
        f"each decay's λ chosen on validation from {WDS} (m_t = η). Holds if the paired 95% bootstrap CI (seeds x "
        "test examples) of test error(toward 0) - test error(toward init) lies above 0. Zero-shot, linear-probe "
        "and from-scratch baselines and the class-disjoint contrast are reported. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number=f"domain shift: toward init vs toward 0 {pts(shift['init_vs_0'])}; class-disjoint contrast "
        f"{pts(disjoint['init_vs_0'])}",
        notes=f"Domain shift, test accuracy: zero-shot {shift['zero_shot_acc']:.3f}, linear probe "
        f"{acc['linear probe']:.3f}, from scratch {acc['from scratch']:.3f}, fine-tune without decay "
        f"{acc['fine-tune, no decay']:.3f}; toward init vs no decay {pts(shift['init_vs_none'])} (positive = toward "
        "init better; zero-shot with the target's batch-norm statistics). Class-disjoint (new zero head, so only "
        f"pretrained layers are anchored): toward init vs no decay {pts(disjoint['init_vs_none'])}.",
    )


def _figure(ctx: Context, m: dict) -> None:
    fig, axes = new_figure(2, width=5.4)
    for ax, task, title in ((axes[0], "domain_shift", "domain shift (same classes, head kept)"),
                            (axes[1], "class_disjoint", "contrast: new classes 5-9, new head")):
        r = m[task]
        for k, form in enumerate(("toward 0", "toward init")):
            ax.plot(WDS, [r["test_acc"][f"{form}, λ={w:g}"] for w in WDS], "o-", color=f"C{k}", label=form)
            ax.axvline(r[f"{form}: λ chosen on val"], color=f"C{k}", ls=":", lw=1)
        ax.axhline(r["test_acc"]["fine-tune, no decay"], color="C7", ls="--", label="fine-tune, no decay")
        if task == "domain_shift":
            ax.axhline(r["test_acc"]["linear probe"], color="C4", ls="-.", label="linear probe")
            ax.axhline(r["test_acc"]["from scratch"], color="C5", ls="-.", label="from scratch")
            ax.axhline(r["zero_shot_acc"], color="k", ls=":", label="zero-shot")
        ax.set_xscale("log")
        ax.set_xlabel(f"λ (per-step decay {FT_LR:g}·λ); dotted: λ chosen on validation")
        ax.set_ylabel("test accuracy (mean over seeds)")
        d = r["init_vs_0"]
        ax.set_title(f"{title}\nerr(toward 0) - err(toward init): {100 * d['diff']:+.1f} pts "
                     f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]", fontsize=8)
        ax.legend(fontsize=6)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
