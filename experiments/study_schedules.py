"""schedule-coupling: cosine lr with decay_scaling "lr", "schedule", "none", "corrected"."""

from __future__ import annotations

from typing import Any

import numpy as np
import optax

import decaytx
from experiments import chains
from experiments.common import new_figure, save_figure, train_mlp
from experiments.report import Claim, Context

ID = "schedule-coupling"
PEAK = 3e-3  # Adam peak learning rate at scale 1
SCALES = [1.0, 3.0]  # the base lr is multiplied by these (same wd): coupling to the base lr
TAU_FRACTION = 0.2  # EMA timescale at the peak, as a fraction of the run (decay_scaling="lr")
LATE = 0.75  # the "late phase" is the last quarter of training


def variants(base: Any, wd_lr: float) -> dict[str, tuple[Any, float]]:
    """decay_scaling -> (multiplier m_t given the run's scale, wd).

    wd is matched at the peak for scale 1: every variant's per-step decay
    m_0 * wd equals PEAK * wd_lr at step 0.
    """
    return {
        "lr": (lambda scale: (lambda t: scale * base(t)), wd_lr),  # m_t = eta_t
        "schedule": (lambda scale: decaytx.lr_multiplier(base, peak=PEAK), PEAK * wd_lr),  # eta_t/eta_max
        "none": (lambda scale: None, PEAK * wd_lr),  # m_t = 1
        "corrected": (lambda scale: (lambda t: scale * decaytx.corrected_decay(base, peak=PEAK)(t)), wd_lr),
    }


def verdict(m: dict) -> bool:
    """'none' keeps shrinking the weights in the last quarter (late shrink > 2x that
    of 'lr'), and 'corrected' shrinks them no more than 'lr' does there."""
    s = m["late_shrink"]
    return bool(s["none"] > 2 * s["lr"] and s["corrected"] <= s["lr"] + 1e-3)


def run(ctx: Context) -> Claim:
    mode, data, seeds_n = ctx.mode, ctx.digits, ctx.mode.seeds
    steps = mode.steps
    steps_per_epoch = data.x_train.shape[0] // 32  # minibatches of 32, with replacement
    base = optax.cosine_decay_schedule(PEAK, steps)
    tau_epochs = TAU_FRACTION * steps / steps_per_epoch
    wd_lr = decaytx.weight_decay_for_timescale(tau_epochs, learning_rate=PEAK, steps_per_epoch=steps_per_epoch)
    hp = {"scale": np.repeat(SCALES, seeds_n)}
    seeds = np.tile(ctx.seed * 1000 + np.arange(seeds_n), len(SCALES))
    t = np.arange(steps)
    results, curves = {}, {}
    for name, (mult, wd) in variants(base, wd_lr).items():

        def make(h: dict, mult: Any = mult, wd: float = wd) -> optax.GradientTransformation:
            lr = lambda c: h["scale"] * base(c)  # noqa: E731
            return chains.adamw(lr, wd, multiplier=mult(h["scale"]))

        hist = train_mlp(make, hp, seeds, data, desc=f"{ID}: decay_scaling={name}",
                         steps=steps, records=mode.records * 2, hidden=mode.hidden)
        wn = hist.metrics["weight_norm"].reshape(len(SCALES), seeds_n, -1).mean(axis=1)
        acc = hist.metrics["test_acc"][:, -1].reshape(len(SCALES), seeds_n).mean(axis=1)
        late = int(np.searchsorted(hist.steps, LATE * steps))
        m_fn = mult(1.0)
        m_t = np.ones(steps) if m_fn is None else np.asarray([float(m_fn(i)) for i in t[:: max(1, steps // 200)]])
        per_step = wd * m_t
        curves[name] = (hist.steps, wn, t[:: max(1, steps // 200)] if m_fn is not None else t, per_step)
        peak_rate = float(per_step.max())
        results[name] = {
            "wd": wd,
            "peak_per_step_decay": peak_rate,
            "ema_timescale_at_peak_steps": 1.0 / peak_rate,
            "ema_timescale_at_peak_epochs": 1.0 / peak_rate / steps_per_epoch,
            "final_per_step_decay": float(per_step[-1]),
            "total_decay": float(np.sum(wd * (np.ones(steps) if m_fn is None else np.asarray(m_fn(t))))),
            "weight_norm_final": {f"x{s:g}": float(wn[i, -1]) for i, s in enumerate(SCALES)},
            "test_acc_final": {f"x{s:g}": float(acc[i]) for i, s in enumerate(SCALES)},
            "late_shrink": float(np.log(wn[0, late] / wn[0, -1])),
            "base_lr_sensitivity": float(np.log(wn[1, -1] / wn[0, -1])),
        }
    metrics = {
        "optimizer": f"AdamW chain, cosine lr from {PEAK:g} (x{SCALES}) to 0 over {steps} steps",
        "tau_epochs_at_peak": tau_epochs,
        "steps_per_epoch": steps_per_epoch,
        "wd_lr": wd_lr,
        "late_shrink": {k: r["late_shrink"] for k, r in results.items()},
        "variants": results,
    }

    fig, (ax1, ax2) = new_figure(2, width=5.5)
    for i, (name, (rec_steps, wn, ts, per_step)) in enumerate(curves.items()):
        ax1.plot(ts, per_step, color=f"C{i}", label=f"{name}: τ at peak {results[name]['ema_timescale_at_peak_epochs']:.0f} epochs")
        for j, s in enumerate(SCALES):
            acc = results[name]["test_acc_final"][f"x{s:g}"]
            ax2.plot(rec_steps, wn[j], color=f"C{i}", ls="-" if j == 0 else "--",
                     label=f"{name}, lr x{s:g} (test acc {acc:.3f})")
    ax1.set_xlabel("step")
    ax1.set_ylabel("per-step decay m_t·wd (lr x1)")
    ax1.set_title("decay multiplier under a cosine lr")
    ax1.legend(fontsize=7)
    ax2.axvspan(LATE * steps, steps, color="0.9", label="late phase")
    ax2.set_xlabel("step")
    ax2.set_ylabel("weight norm ||W|| (kernels, mean over seeds)")
    ax2.set_title("weight norm; dashed: base lr x3, same wd")
    ax2.legend(fontsize=6)
    save_figure(fig, ctx.out_dir / f"{ID}.png")

    ls = metrics["late_shrink"]
    return Claim(
        id=ID,
        statement="Under a cosine learning-rate schedule, how the decoupled decay is scaled decides what the "
        "weights do as the lr anneals: decay_scaling='none' keeps shrinking them after the lr has gone to 0, "
        "'lr' and 'schedule' fade with the lr, 'corrected' (lr²) fades fastest.",
        criterion="AdamW on digits, wd matched so every variant starts with the same per-step decay "
        f"(EMA timescale 1/(η·λ) = {TAU_FRACTION:.0%} of the run at the peak, from "
        "weight_decay_for_timescale). Late shrink = log(norm at 75% of training / final norm). Holds if "
        "late shrink('none') > 2 x late shrink('lr') and late shrink('corrected') <= late shrink('lr') + 1e-3.",
        holds=verdict(metrics),
        metrics=metrics,
        figure=f"{ID}.png",
        key_number="late shrink: " + ", ".join(f"{k} {v:.3f}" for k, v in ls.items()),
        notes="With wd matched at the peak, 'lr' and 'schedule' are the same decay at the base learning rate; "
        "they part when the base lr changes (dashed): 'lr' scales the decay with it, 'schedule' does not "
        "(metrics.variants.*.base_lr_sensitivity = log of the final-norm ratio lr x3 / lr x1).",
    )
