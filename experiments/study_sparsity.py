"""l1-sparsity: the λ path of proximal L1 and subgradient L1 on a 1-D CNN on MNIST-1D, with
magnitude pruning of the unpenalised model as the baseline at equal sparsity."""

from __future__ import annotations

from typing import Any

from experiments.common import new_figure, save_figure
from experiments.penalties1d import L1S, LR, penalty_runs
from experiments.report import Claim, Context

ID = "l1-sparsity"
END_ZEROS = 0.5  # the proximal form's exact-zero fraction at the path's end
RISE_SLACK = 0.01  # "rises": each point at least the previous minus this
SUB_ZEROS = 0.001  # "no exact zeros": the subgradient form below 0.1% at every λ


def path_checks(prox: list[float], sub: list[float], form: str) -> dict[str, bool]:
    """The λ-path criterion shared with elastic-net-both (fixed before the run)."""
    return {f"proximal {form}: exact zeros rise with λ": all(b >= a - RISE_SLACK for a, b in zip(prox, prox[1:])),
            f"proximal {form}: >= {END_ZEROS:.0%} exact zeros at the path's end": prox[-1] >= END_ZEROS,
            f"subgradient {form}: < {SUB_ZEROS:.1%} exact zeros at every λ": max(sub) < SUB_ZEROS}


def run(ctx: Context) -> Claim:
    p = penalty_runs(ctx)
    rows, z = p["rows"], p["z"]
    prox = [rows[f"proximal L1 {v:g}"] for v in L1S]
    sub = [rows[f"subgradient L1 {v:g}"] for v in L1S]
    pruned = p["frontier"]([r["zero_frac"] for r in prox])
    metrics: dict[str, Any] = {
        "dataset": "mnist1d", "model": p["model"], "optimizer": p["optimizer"],
        "seeds": z["seeds"], "steps": z["steps"], "train_val_test": list(z["data"]), "l1_path": L1S,
        "end_zeros": END_ZEROS, "rise_slack": RISE_SLACK, "sub_zeros": SUB_ZEROS,
        "prox_zero_frac": [r["zero_frac"] for r in prox], "subgradient_zero_frac": [r["zero_frac"] for r in sub],
        "prox_small_frac": [r["small_frac"] for r in prox], "subgradient_small_frac": [r["small_frac"] for r in sub],
        "prox_test_acc": [r["test_acc"] for r in prox], "subgradient_test_acc": [r["test_acc"] for r in sub],
        "pruned_test_acc_at_prox_sparsity": pruned, "test_acc_none": rows["none"]["test_acc"],
    }
    _figure(ctx, metrics, p)
    ok = path_checks(metrics["prox_zero_frac"], metrics["subgradient_zero_frac"], "L1")
    better = [a > b for a, b in zip(metrics["prox_test_acc"], pruned)]
    return Claim(
        id=ID,
        statement="L1 regularization yields sparse weights: with the proximal (soft-threshold) step the exact "
        "zeros grow with λ; the subgradient form leaves weights near zero but not at it.",
        criterion=f"MNIST-1D {z['data'][0]}/{z['data'][1]}/{z['data'][2]}, {p['model']}, plain SGD lr {LR:g} for "
        f"{z['steps']} steps, {z['seeds']} seeds, L1 on the kernels along λ in {L1S}. Holds if the proximal form's "
        f"exact-zero fraction rises with λ (each point >= the previous - {RISE_SLACK:g}) and reaches >= "
        f"{END_ZEROS:.0%} at the path's end, and the subgradient form has < {SUB_ZEROS:.1%} exact zeros at every λ. "
        "The accuracy-sparsity frontier against magnitude pruning of the unpenalised model at equal sparsity is "
        "reported, not part of the verdict. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number="exact zeros along λ: prox " + "/".join(f"{v:.0%}" for v in metrics["prox_zero_frac"])
        + ", subgradient max " + f"{max(metrics['subgradient_zero_frac']):.2%}",
        notes="Frontier (test accuracy at the proximal path's sparsity; prox vs magnitude pruning of the "
        "unpenalised model): " + ", ".join(f"{s:.0%} zeros {a:.3f} vs {b:.3f}" for s, a, b in
                                           zip(metrics["prox_zero_frac"], metrics["prox_test_acc"], pruned))
        + f"; prox ahead at {sum(better)} of {len(better)} points. Unpenalised: {metrics['test_acc_none']:.3f}.",
    )


def _figure(ctx: Context, m: dict, p: dict) -> None:
    fig, (ax1, ax2) = new_figure(2, width=5.4)
    ax1.plot(L1S, m["prox_zero_frac"], "o-", color="C2", label="proximal L1: exact zeros")
    ax1.plot(L1S, m["subgradient_zero_frac"], "s-", color="C1", label="subgradient L1: exact zeros")
    ax1.plot(L1S, m["subgradient_small_frac"], "s:", color="C1", label="subgradient L1: |w| < 1e-3")
    ax1.axhline(END_ZEROS, color="k", ls=":", lw=1, label=f"criterion at the path's end ({END_ZEROS:.0%})")
    ax1.set_xscale("log")
    ax1.set_xlabel("L1 strength λ")
    ax1.set_ylabel("fraction of kernel weights (mean over seeds)")
    ax1.set_title("sparsity along the λ path", fontsize=9)
    ax1.legend(fontsize=7)
    ax2.plot(m["prox_zero_frac"], m["prox_test_acc"], "o-", color="C2", label="proximal L1 (path)")
    ax2.plot(m["prox_zero_frac"], m["pruned_test_acc_at_prox_sparsity"], "^--", color="C7",
             label="magnitude pruning of the unpenalised model")
    ax2.axhline(m["test_acc_none"], color="C7", lw=0.8, label="unpenalised, unpruned")
    ax2.set_xlabel("exact-zero fraction of the kernels")
    ax2.set_ylabel("test accuracy (mean over seeds)")
    ax2.set_title("accuracy-sparsity frontier at equal sparsity", fontsize=9)
    ax2.legend(fontsize=7)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
