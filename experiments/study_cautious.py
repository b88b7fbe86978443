"""cautious-decay: cautious AdamW (Chen et al. 2025) against plain AdamW, from scratch on the
landscape's batch-norm CNN, at AdamW's tuned λ (no retuning) and at its own tuned λ."""

from __future__ import annotations

from typing import Any

import numpy as np
import optax

import decaytx
from experiments import stats
from experiments.common import new_figure, save_figure
from experiments.nets import CNN
from experiments.report import Claim, Context
from experiments.study_landscape import SIZES as LANDSCAPE
from experiments.train1d import cosine, grid_runs, train

ID = "cautious-decay"
K = decaytx.masks.ndim_at_least(2)
FAMILY = "AdamW, m=η_t/η_max (paper)"
FALLBACK = {"lr": 10**-2.25, "wd": 10**-2.5}  # when run alone, without the landscape's tuned cell
OFFSETS = [-1.0, -0.5, 0.0, 0.5, 1.0]  # log10 λ around AdamW's tuned λ (the landscape's half-decades)
MARGIN = 0.01  # "better or equal": the CI's upper bound of err(cautious) - err(plain) below +1 point


def make(unit: optax.Schedule) -> Any:
    """Adam -> lr·u_t -> plain decay (``dec``) -> cautious decay (``cdec``), m_t = u_t (the paper's
    η_t/η_max); one of the two coefficients is 0 per run, which changes nothing bit for bit."""
    m = decaytx.lr_multiplier(unit, peak=1.0)

    def opt(h: dict[str, Any]) -> optax.GradientTransformation:
        return optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(lambda t: h["lr"] * unit(t)),
                           decaytx.add_decoupled_decay(h["dec"], learning_rate=m, mask=K),
                           decaytx.add_decoupled_decay(h["cdec"], learning_rate=m, mask=K, cautious=True))
    return opt


def checks(m: dict) -> dict[str, bool]:
    """Fixed before the run: cautious is not worse than plain AdamW by more than MARGIN (upper
    bound of the paired 95% CI of the test-error difference), at AdamW's tuned λ and at its own."""
    return {f"at AdamW's tuned λ: CI upper bound of err(cautious) - err(plain) < +{MARGIN:g}":
            bool(m["at_adamw_wd"]["ci"][1] < MARGIN),
            f"at its own tuned λ: CI upper bound of err(cautious) - err(plain) < +{MARGIN:g}":
            bool(m["at_own_wd"]["ci"][1] < MARGIN)}


def run(ctx: Context) -> Claim:
    z = LANDSCAPE[ctx.mode.name]
    cell = ctx.shared.get("landscape", {}).get("best_val_cell", {}).get(FAMILY, FALLBACK)
    wds = cell["wd"] * 10 ** np.asarray(OFFSETS)
    data = ctx.mnist1d(*z["data"])
    hp, seeds = grid_runs({"cautious": [0.0, 1.0], "wd": wds}, z["seeds"], ctx.seed)
    h = {"lr": np.full_like(hp["wd"], cell["lr"]), "dec": hp["wd"] * (1 - hp["cautious"]),
         "cdec": hp["wd"] * hp["cautious"]}
    r = train(CNN(channels=z["channels"], batch_norm=True), make(cosine(z["steps"])), h, seeds, data,
              steps=z["steps"], batch_size=32, records=1, chunks=4, desc=f"{ID}: plain and cautious AdamW")
    shape = (2, len(wds), z["seeds"])
    val = r.correct_val.reshape(*shape, -1).mean(axis=(2, 3))
    test = r.correct_test.reshape(*shape, -1)
    loss = r.metrics["train_loss"][:, -1].reshape(shape)
    i_plain, i_own = int(np.argmax(val[0])), int(np.argmax(val[1]))
    at_adamw = stats.paired_bootstrap(test[1, i_plain], test[0, i_plain], z["boot"], ctx.seed)
    at_own = stats.paired_bootstrap(test[1, i_own], test[0, i_plain], z["boot"], ctx.seed)
    metrics: dict[str, Any] = {
        "dataset": "mnist1d", "model": f"1-D CNN, {z['channels']} channels, batch norm (the landscape's)",
        "optimizer": "Adam, cosine lr to 0, decoupled decay with m_t = η_t/η_max, plain or cautious=True",
        "seeds": z["seeds"], "steps": z["steps"], "lr": cell["lr"], "wd_grid": wds.tolist(),
        "lr_from_landscape": "landscape" in ctx.shared, "margin": MARGIN,
        "test_error": {arm: (1 - test[k].mean(axis=(1, 2))).tolist() for k, arm in enumerate(("plain", "cautious"))},
        "final_train_loss": {arm: loss[k].mean(axis=1).tolist() for k, arm in enumerate(("plain", "cautious"))},
        "wd_plain_chosen_on_val": float(wds[i_plain]), "wd_cautious_chosen_on_val": float(wds[i_own]),
        "at_adamw_wd": at_adamw, "at_own_wd": at_own,
    }
    _figure(ctx, metrics)
    ok = checks(metrics)
    pts = lambda d: f"{100 * d['diff']:+.1f} pts [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"  # noqa: E731
    return Claim(
        id=ID,
        statement="Cautious weight decay (decay only coordinates whose update already moves them toward 0; "
        "Chen et al. 2025) is better than or equal to plain decoupled decay, without retuning.",
        criterion=f"MNIST-1D, the landscape's batch-norm CNN from scratch, Adam at the landscape's best validation "
        f"lr for AdamW (m=η_t/η_max), λ on half-decades around AdamW's tuned λ, {z['seeds']} seeds, {z['steps']} "
        "steps. Holds if the paired 95% bootstrap CI (seeds x test examples) of test error(cautious) - test "
        f"error(plain AdamW at its validation-chosen λ) has its upper bound below +{MARGIN:g}, both with cautious at "
        "AdamW's λ and at its own validation-chosen λ. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number=f"cautious - plain, test error: at AdamW's λ {pts(at_adamw)}; at its own λ {pts(at_own)}",
        notes="Final training loss (mean over seeds) at AdamW's λ: plain "
        f"{metrics['final_train_loss']['plain'][i_plain]:.3f}, cautious {metrics['final_train_loss']['cautious'][i_plain]:.3f}.",
    )


def _figure(ctx: Context, m: dict) -> None:
    fig, (ax1, ax2) = new_figure(2, width=5.2)
    for k, arm in enumerate(("plain", "cautious")):
        ax1.plot(m["wd_grid"], m["test_error"][arm], "o-", color=f"C{k}", label=f"{arm} AdamW")
        ax2.plot(m["wd_grid"], m["final_train_loss"][arm], "o-", color=f"C{k}", label=f"{arm} AdamW")
    for ax in (ax1, ax2):
        ax.axvline(m["wd_plain_chosen_on_val"], color="C0", ls=":", label="λ chosen on validation (plain)")
        ax.axvline(m["wd_cautious_chosen_on_val"], color="C1", ls="--", lw=1, label="λ chosen (cautious)")
        ax.set_xscale("log")
        ax.set_xlabel("λ (m_t = η_t/η_max)")
        ax.legend(fontsize=7)
    ax1.set_ylabel("test error (mean over seeds)")
    ax1.set_title(f"test error at lr {m['lr']:.2g}; cautious - plain at AdamW's λ: "
                  f"{100 * m['at_adamw_wd']['diff']:+.1f} pts", fontsize=8)
    ax2.set_ylabel("final training loss (mean over seeds)")
    ax2.set_title("training loss", fontsize=9)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
