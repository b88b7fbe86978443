"""schedule-coupling: cosine lr with decay_scaling "lr", "schedule", "none", "corrected" (MLP on
MNIST-1D). How the best λ moves with the training length is weight-decay-transfer's."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

import decaytx
from experiments.common import new_figure, save_figure
from experiments.nets import MLP
from experiments.report import Claim, Context
from experiments.train1d import train

ID = "schedule-coupling"
PEAK = 3e-3  # Adam peak learning rate at scale 1
SCALES = [1.0, 3.0]  # the base lr is multiplied by these (same wd): coupling to the base lr
TAU_FRACTION = 0.2  # EMA timescale at the peak, as a fraction of the run (decay_scaling="lr")
LATE = 0.75  # the "late phase" is the last quarter of training
K = decaytx.masks.ndim_at_least(2)
VARIANTS = ("lr", "schedule", "none", "corrected")
BATCH = 64
SIZES = {
    "smoke": dict(data=(600, 200, 600), seeds=2, steps=60, records=6, hidden=32),
    "quick": dict(data=(4000, 1000, 5000), seeds=4, steps=1000, records=20, hidden=64),
    "full": dict(data=(4000, 1000, 5000), seeds=6, steps=3000, records=30, hidden=128),
}


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


def checks(m: dict) -> dict[str, bool]:
    """'none' keeps shrinking the weights in the last quarter (late shrink > 2x that
    of 'lr'), and 'corrected' shrinks them no more than 'lr' does there."""
    s = m["late_shrink"]
    return {"late shrink(none) > 2 x late shrink(lr)": bool(s["none"] > 2 * s["lr"]),
            "late shrink(corrected) <= late shrink(lr) + 1e-3": bool(s["corrected"] <= s["lr"] + 1e-3)}


def _multiplier(h: dict[str, Any], base: Any) -> Any:
    """m_t of the run's variant (one-hot ``v_*``): 'lr' scale·η_t; 'schedule' lr_multiplier(base, peak);
    'none' 1; 'corrected' scale·corrected_decay(base, peak)."""
    sched = decaytx.lr_multiplier(base, peak=PEAK)
    corr = decaytx.corrected_decay(base, peak=PEAK)
    return lambda t: (h["v_lr"] * h["scale"] * base(t) + h["v_schedule"] * sched(t) + h["v_none"]
                      + h["v_corrected"] * h["scale"] * corr(t))


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    data, seeds_n, steps = ctx.mnist1d(*z["data"]), z["seeds"], z["steps"]
    steps_per_epoch = data.x_train.shape[0] // BATCH  # minibatches drawn with replacement
    base = optax.cosine_decay_schedule(PEAK, steps)
    tau_epochs = TAU_FRACTION * steps / steps_per_epoch
    wd_lr = decaytx.weight_decay_for_timescale(tau_epochs, learning_rate=PEAK, steps_per_epoch=steps_per_epoch)
    var = variants(base, wd_lr)
    # One program: variant (one-hot) x base-lr scale x seeds.
    rows = [(v, sc) for v in VARIANTS for sc in SCALES]
    hp = {f"v_{v}": np.repeat([float(r[0] == v) for r in rows], seeds_n) for v in VARIANTS}
    hp["scale"] = np.repeat([r[1] for r in rows], seeds_n)
    hp["wd"] = np.repeat([var[r[0]][1] for r in rows], seeds_n)
    seeds = np.tile(ctx.seed * 1000 + np.arange(seeds_n), len(rows))

    def make(h: dict) -> optax.GradientTransformation:
        lr = lambda c: h["scale"] * base(c)  # noqa: E731
        return optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(lr),
                           decaytx.add_decoupled_decay(h["wd"], learning_rate=_multiplier(h, base), mask=K))

    hist = train(MLP((40, z["hidden"], z["hidden"], 10)), make, hp, seeds, data, steps=steps, batch_size=BATCH,
                 records=z["records"], desc=f"{ID}: four decay_scaling x two base lrs")
    t = np.arange(steps)
    results, curves = {}, {}
    for k, (name, (mult, wd)) in enumerate(var.items()):
        block = slice(k * len(SCALES) * seeds_n, (k + 1) * len(SCALES) * seeds_n)
        wn = hist.metrics["weight_norm"][block].reshape(len(SCALES), seeds_n, -1).mean(axis=1)
        acc = hist.metrics["test_acc"][block, -1].reshape(len(SCALES), seeds_n).mean(axis=1)
        late = int(np.searchsorted(hist.steps, LATE * steps))
        m_fn = mult(1.0)
        ts = t[:: max(1, steps // 200)]
        m_t = np.ones(len(ts)) if m_fn is None else np.asarray(m_fn(jnp.asarray(ts)), np.float64)  # one call
        per_step = wd * m_t
        curves[name] = (hist.steps, wn, ts, per_step)
        peak_rate = float(per_step.max())
        results[name] = {
            "wd": wd,
            "peak_per_step_decay": peak_rate,
            "ema_timescale_at_peak_steps": 1.0 / peak_rate,
            "ema_timescale_at_peak_epochs": 1.0 / peak_rate / steps_per_epoch,
            "final_per_step_decay": float(per_step[-1]),
            "total_decay": float(np.sum(wd * (np.ones(steps) if m_fn is None else np.asarray(m_fn(t))))),
            "effective_decay_over_training": {"steps": ts.tolist(), "per_step_decay": per_step.tolist()},
            "weight_norm_final": {f"x{s:g}": float(wn[i, -1]) for i, s in enumerate(SCALES)},
            "test_acc_final": {f"x{s:g}": float(acc[i]) for i, s in enumerate(SCALES)},
            "late_shrink": float(np.log(wn[0, late] / wn[0, -1])),
            "base_lr_sensitivity": float(np.log(wn[1, -1] / wn[0, -1])),
        }
    metrics = {
        "dataset": "mnist1d", "model": f"MLP 40-{z['hidden']}-{z['hidden']}-10, ReLU, no normalisation",
        "seeds": seeds_n, "steps": steps, "train_val_test": list(z["data"]),
        "optimizer": f"AdamW chain, cosine lr from {PEAK:g} (x{SCALES}) to 0 over {steps} steps; the four "
        "decay_scaling multipliers as m_t of add_decoupled_decay (one vmapped program)",
        "tau_epochs_at_peak": tau_epochs,
        "steps_per_epoch": steps_per_epoch,
        "wd_lr": wd_lr,
        "late_shrink": {k: r["late_shrink"] for k, r in results.items()},
        "variants": results,
    }

    _figure(ctx, metrics, curves, results, steps)
    ls = metrics["late_shrink"]
    ok = checks(metrics)
    return Claim(
        id=ID,
        statement="Under a cosine learning-rate schedule, how the decoupled decay is scaled decides what the "
        "weights do as the lr anneals: decay_scaling='none' keeps shrinking them after the lr has gone to 0, "
        "'lr' and 'schedule' fade with the lr, 'corrected' (lr²) fades fastest.",
        criterion=f"AdamW on MNIST-1D ({metrics['model']}, {steps} steps, {seeds_n} seeds), wd matched so every "
        f"variant starts with the same per-step decay (EMA timescale 1/(η·λ) = {TAU_FRACTION:.0%} of the run at "
        "the peak, from weight_decay_for_timescale). Late shrink = log(norm at 75% of training / final norm). "
        "Holds if late shrink('none') > 2 x late shrink('lr') and late shrink('corrected') <= late shrink('lr') + "
        "1e-3. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number="late shrink: " + ", ".join(f"{k} {v:.3f}" for k, v in ls.items()),
        notes="'lr' and 'schedule' are the same decay at the base lr; they part when it changes (dashed; "
        "metrics.variants.*.base_lr_sensitivity). 'none' shrinking late is what m_t = 1 means; this shows its size.",
    )


def _figure(ctx: Context, metrics: dict, curves: dict, results: dict, steps: int) -> None:
    fig, (ax1, ax2) = new_figure(2, width=5.2)
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
