"""elastic-net-both: the elastic net's λ path (sparsity like L1, shrinkage like L2) on a 1-D CNN
on MNIST-1D, and the grouping effect on a synthetic regression against sklearn's enet_path."""

from __future__ import annotations

from experiments import enet_grouping
from experiments.common import new_figure, save_figure
from experiments.penalties1d import EN_L2, L1S, LR, penalty_runs
from experiments.report import Claim, Context
from experiments.study_sparsity import END_ZEROS, RISE_SLACK, SUB_ZEROS, path_checks

ID = "elastic-net-both"


def grouping_verdict(g: dict) -> bool:
    """Grouping (fixed before the run): both proximal paths match enet_path to 1e-3,
    and the elastic net selects a true block whole at least 0.2 more often than the lasso."""
    return bool(max(g["elastic net"]["max_abs_diff_vs_enet_path"], g["lasso"]["max_abs_diff_vs_enet_path"]) <= 1e-3
                and g["elastic net"]["whole_block_fraction"] >= g["lasso"]["whole_block_fraction"] + 0.2)


def run(ctx: Context) -> Claim:
    p = penalty_runs(ctx)
    z, rows = p["z"], p["rows"]
    prox = [rows[f"proximal elastic net {v:g}"] for v in L1S]
    sub = [rows[f"subgradient elastic net {v:g}"] for v in L1S]
    l1 = [rows[f"proximal L1 {v:g}"] for v in L1S]
    g = enet_grouping.grouping(ctx.seed, ctx.mode.lasso_alphas, ctx.mode.lasso_steps)
    paths = {k: g[k].pop("_paths") for k in ("elastic net", "lasso")}
    metrics = {
        "dataset": "mnist1d (+ synthetic regression for the grouping)", "model": p["model"],
        "optimizer": p["optimizer"] + f"; l1 along {L1S}, l2={EN_L2:g}", "l1_path": L1S, "l2": EN_L2,
        "steps": z["steps"], "seeds": z["seeds"], "end_zeros": END_ZEROS, "rise_slack": RISE_SLACK,
        "sub_zeros": SUB_ZEROS,
        "prox_zero_frac": [r["zero_frac"] for r in prox], "subgradient_zero_frac": [r["zero_frac"] for r in sub],
        "prox_weight_norm": [r["weight_norm"] for r in prox], "prox_l1_weight_norm": [r["weight_norm"] for r in l1],
        "prox_test_acc": [r["test_acc"] for r in prox], "subgradient_test_acc": [r["test_acc"] for r in sub],
        "none": rows["none"], "l2_alone": rows["L2 (add_l2_grad)"],
        "grouping": g,
    }
    metrics["grouping_holds"] = grouping_verdict(g)
    ok = {**path_checks(metrics["prox_zero_frac"], metrics["subgradient_zero_frac"], "elastic net"),
          "grouping: whole blocks and enet_path parity": metrics["grouping_holds"]}
    _figure(ctx, metrics, paths, g)
    return Claim(
        id=ID,
        statement="Elastic net gives both sparsity (like L1) and shrinkage with grouping of correlated features (like L2).",
        criterion=f"MNIST-1D, {p['model']}, plain SGD lr {LR:g}, {z['seeds']} seeds, l1 along {L1S} with l2={EN_L2:g}: "
        f"holds if the proximal elastic net's exact zeros rise with l1 (each point >= the previous - {RISE_SLACK:g}) "
        f"and reach >= {END_ZEROS:.0%} at the path's end, the subgradient elastic net has < {SUB_ZEROS:.1%} exact "
        "zeros at every l1, AND (grouping, synthetic regression with 6 blocks of 5 features correlated at ρ=0.9, "
        "2 true blocks) both proximal paths match sklearn's enet_path to 1e-3 and the elastic net (l1_ratio 0.5) "
        "selects a true block whole at least 0.2 more often than the lasso. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number="EN exact zeros along l1: prox " + "/".join(f"{v:.0%}" for v in metrics["prox_zero_frac"])
        + f", subgradient max {max(metrics['subgradient_zero_frac']):.2%}; whole blocks EN "
        f"{g['elastic net']['whole_block_fraction']:.0%} vs lasso {g['lasso']['whole_block_fraction']:.0%}",
        notes="Kernel norm along the path, elastic net vs L1 alone at the same l1: "
        + ", ".join(f"{a:.1f} vs {b:.1f}" for a, b in zip(metrics["prox_weight_norm"], metrics["prox_l1_weight_norm"]))
        + f" (no penalty {rows['none']['weight_norm']:.1f}). Test accuracy of the proximal elastic net along l1: "
        + ", ".join(f"{a:.3f}" for a in metrics["prox_test_acc"]) + f" (no penalty {rows['none']['test_acc']:.3f}).",
    )


def _figure(ctx: Context, m: dict, paths: dict, g: dict) -> None:
    fig, (ax1, ax2) = new_figure(2, width=5.4)
    ax1.plot(L1S, m["prox_zero_frac"], "o-", color="C2", label="proximal elastic net: exact zeros")
    ax1.plot(L1S, m["subgradient_zero_frac"], "s-", color="C1", label="subgradient elastic net: exact zeros")
    ax1.axhline(END_ZEROS, color="k", ls=":", lw=1, label=f"criterion at the path's end ({END_ZEROS:.0%})")
    ax1b = ax1.twinx()
    ax1b.plot(L1S, m["prox_weight_norm"], "o--", color="C0", label="kernel norm, elastic net")
    ax1b.plot(L1S, m["prox_l1_weight_norm"], "^--", color="C9", label="kernel norm, L1 alone")
    ax1b.set_ylabel("kernel norm ||W|| (dashed)")
    ax1.set_xscale("log")
    ax1.set_xlabel(f"l1 (l2 = {EN_L2:g})")
    ax1.set_ylabel("exact-zero fraction (solid)")
    ax1.set_title("elastic net along the l1 path (MNIST-1D CNN)", fontsize=9)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax1b.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=6, loc="center left")
    for k, (name, (alphas, ours, sk)) in enumerate(paths.items()):
        true = slice(0, enet_grouping.TRUE_BLOCKS * enet_grouping.WIDTH)
        ax2.plot(alphas, ours[true].T, color=f"C{k}", lw=1)
        ax2.plot(alphas, sk[true].T, color="k", ls=":", lw=0.8)
        ax2.plot([], [], color=f"C{k}", label=f"{name} (prox), whole blocks {g[name]['whole_block_fraction']:.0%}")
    ax2.plot([], [], color="k", ls=":", label="sklearn enet_path")
    ax2.set_xscale("log")
    ax2.set_xlabel("α")
    ax2.set_ylabel("coefficients of the 2 true blocks")
    ax2.set_title(f"grouping, ρ={enet_grouping.RHO} within blocks of 5", fontsize=9)
    ax2.legend(fontsize=6)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
