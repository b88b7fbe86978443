"""l1-sparsity: subgradient L1 vs proximal L1 vs none on the same MLP."""

from __future__ import annotations

import numpy as np

from experiments import chains
from experiments.common import Digits, History, new_figure, save_figure, train_mlp
from experiments.report import Claim, Context

ID = "l1-sparsity"
LR = 0.1  # plain SGD
L1S = [3e-4, 1e-3, 3e-3, 1e-2]
L1_REF = 1e-3  # reference strength for the verdict, fixed before running
PENALTY_KEYS = ("l1_sub", "en_sub_l1", "en_sub_l2", "l2", "prox_l1", "prox_l2")


def train_penalties(rows: list[dict[str, float]], ctx: Context, data: Digits, desc: str) -> History:
    """Plain SGD (lr 0.1) on the MLP, one row of penalty coefficients per config, x seeds."""
    s = ctx.mode.seeds
    hp = {k: np.repeat([r.get(k, 0.0) for r in rows], s) for k in PENALTY_KEYS}
    seeds = np.tile(ctx.seed * 1000 + np.arange(s), len(rows))
    return train_mlp(lambda h: chains.sgd_penalties(LR, h), hp, seeds, data, desc=desc,
                     steps=ctx.mode.steps, records=ctx.mode.records, hidden=ctx.mode.hidden)


def verdict(m: dict) -> bool:
    """Proximal L1 gives >= 10% exact zeros, and both L1 forms give >= 5x the
    near-zero (|w| < 1e-3) fraction of no penalty, at the reference strength."""
    r = m["at_reference"]
    return (r["prox"]["zero_frac"] >= 0.1
            and r["prox"]["small_frac"] >= 5 * r["none"]["small_frac"]
            and r["subgradient"]["small_frac"] >= 5 * r["none"]["small_frac"])


def run(ctx: Context) -> Claim:
    data, s = ctx.digits, ctx.mode.seeds
    rows = [{}] + [r for lam in L1S for r in ({"l1_sub": lam}, {"prox_l1": lam})]
    h = train_penalties(rows, ctx, data, f"{ID}: L1 sweep")
    final = {k: v[:, -1].reshape(len(rows), s) for k, v in h.metrics.items()}

    def stats(i: int) -> dict:
        return {k: float(final[k][i].mean()) for k in ("zero_frac", "small_frac", "weight_norm", "test_acc", "train_acc")}

    ref = L1S.index(L1_REF)
    at_ref = {"none": stats(0), "subgradient": stats(1 + 2 * ref), "prox": stats(2 + 2 * ref)}
    metrics = {
        "optimizer": f"plain SGD lr={LR}; subgradient: add_l1_subgrad(l1) first; proximal: prox_l1(l1, learning_rate={LR}) last; kernels only",
        "l1_grid": L1S,
        "l1_reference": L1_REF,
        "steps": ctx.mode.steps,
        "seeds": s,
        "subgradient_zero_frac": [float(final["zero_frac"][1 + 2 * i].mean()) for i in range(len(L1S))],
        "subgradient_small_frac": [float(final["small_frac"][1 + 2 * i].mean()) for i in range(len(L1S))],
        "prox_zero_frac": [float(final["zero_frac"][2 + 2 * i].mean()) for i in range(len(L1S))],
        "prox_small_frac": [float(final["small_frac"][2 + 2 * i].mean()) for i in range(len(L1S))],
        "subgradient_test_acc": [float(final["test_acc"][1 + 2 * i].mean()) for i in range(len(L1S))],
        "prox_test_acc": [float(final["test_acc"][2 + 2 * i].mean()) for i in range(len(L1S))],
        "at_reference": at_ref,
    }

    fig, (ax1, ax2) = new_figure(2)
    ax1.plot(L1S, metrics["prox_zero_frac"], "o-", color="C2", label="proximal L1: exact zeros")
    ax1.plot(L1S, metrics["prox_small_frac"], "o--", color="C2", label="proximal L1: |w| < 1e-3")
    ax1.plot(L1S, metrics["subgradient_zero_frac"], "s-", color="C1", label="subgradient L1: exact zeros")
    ax1.plot(L1S, metrics["subgradient_small_frac"], "s--", color="C1", label="subgradient L1: |w| < 1e-3")
    ax1.axhline(at_ref["none"]["small_frac"], color="C7", ls="--", label="no penalty: |w| < 1e-3")
    ax1.set_xscale("log")
    ax1.set_xlabel("L1 strength λ")
    ax1.set_ylabel("fraction of kernel weights")
    ax1.set_title("sparsity after training (mean over seeds)")
    ax1.legend(fontsize=7)
    bins = np.linspace(-8, 0.5, 60)
    for i, (label, color) in ((0, ("no penalty", "C7")), (1 + 2 * ref, (f"subgradient L1 λ={L1_REF:g}", "C1")),
                              (2 + 2 * ref, (f"proximal L1 λ={L1_REF:g}", "C2"))):
        w = np.concatenate([np.abs(np.asarray(p["w"][i * s])).ravel() for p in h.final_params.values()])
        zeros = np.mean(w == 0)
        ax2.hist(np.log10(w[w > 0]), bins=bins, histtype="step", color=color, lw=1.5,
                 label=f"{label} ({zeros:.0%} exact zeros, not shown)")
    ax2.axvline(-3, color="k", ls=":", lw=1)
    ax2.set_xlabel("log10 |w| (kernel weights, seed 0)")
    ax2.set_ylabel("count")
    ax2.set_title("weight magnitudes")
    ax2.legend(fontsize=7)
    save_figure(fig, ctx.out_dir / f"{ID}.png")

    return Claim(
        id=ID,
        statement="L1 regularization yields sparse weights.",
        criterion=f"Same MLP, plain SGD, L1 strength λ={L1_REF:g} (fixed in advance) on the kernels: holds if "
        "proximal L1 leaves >= 10% of the weights exactly 0 and both L1 forms (subgradient and "
        "proximal) leave at least 5x as many weights with |w| < 1e-3 as no penalty.",
        holds=verdict(metrics),
        metrics=metrics,
        figure=f"{ID}.png",
        key_number=f"exact zeros: prox {at_ref['prox']['zero_frac']:.0%}, subgradient "
        f"{at_ref['subgradient']['zero_frac']:.0%}; |w|<1e-3: {at_ref['prox']['small_frac']:.0%} / "
        f"{at_ref['subgradient']['small_frac']:.0%} vs {at_ref['none']['small_frac']:.1%} none",
        notes="Subgradient L1 drives weights near zero, where they oscillate with amplitude about lr*λ, "
        "but almost never to exactly zero; only the proximal (soft-threshold) step produces exact zeros.",
    )
