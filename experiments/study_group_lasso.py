"""group-lasso-filters: whole conv filters at exactly zero along a group-lasso λ path
(``decaytx.prox_group_lasso``, one group per output filter), against unstructured L1
(``decaytx.prox_l1``) at the same fraction of zero weights, on a 1-D CNN on MNIST-1D."""

from __future__ import annotations

from typing import Any

import numpy as np
import optax

import decaytx
from experiments import stats
from experiments.common import new_figure, save_figure
from experiments.nets import CNN
from experiments.report import Claim, Context
from experiments.train1d import train

ID = "group-lasso-filters"
CONVS = decaytx.masks.include(r"^conv\d+/w$")  # the conv kernels [k * c_in, c_out]; head and biases free
LR = 0.05  # plain SGD, constant (the l1-sparsity study's)
GROUP_LS = [0.02, 0.03, 0.05, 0.07, 0.1]  # group-lasso λ path (norm of each filter)
L1_LS = [10 ** (e / 4) for e in range(-14, -3)]  # L1 path, quarter decades 10^-3.5 ... 10^-1: the matching grid
END_FILTERS = 0.25  # group lasso removes at least this fraction of the filters at the path's end
MIN_ZEROS = 0.2  # a group-lasso point is compared when its zero fraction is at least this...
MIN_MATCHED = 2  # ...and inside the L1 path's range for every seed; at least this many such points
SIZES = {
    "smoke": dict(data=(600, 200, 600), seeds=2, steps=60, channels=4),
    "quick": dict(data=(4000, 1000, 5000), seeds=4, steps=800, channels=16),
    "full": dict(data=(4000, 1000, 5000), seeds=6, steps=3000, channels=16),
}


def chain(h: dict[str, Any]) -> optax.GradientTransformation:
    """Plain SGD, then the two proximal steps; a coefficient of 0 leaves the weights bit for bit."""
    return optax.chain(optax.scale_by_learning_rate(LR),
                       decaytx.prox_l1(h["l1"], learning_rate=LR, mask=CONVS),
                       decaytx.prox_group_lasso(h["group"], learning_rate=LR, axis=0, mask=CONVS))


def structure(params: Any, run: int) -> dict[str, float]:
    """Exact-zero fraction of the conv kernels' weights, fraction of filters (output columns)
    entirely zero, and the share of the zero weights that lie in such whole zero filters."""
    ws = [np.asarray(params[k]["w"][run]) for k in sorted(params) if k.startswith("conv")]
    zeros = sum(int((w == 0).sum()) for w in ws)
    whole = [np.all(w == 0, axis=0) for w in ws]
    in_whole = sum(int(f.sum()) * w.shape[0] for f, w in zip(whole, ws))
    return {"zero_frac": zeros / sum(w.size for w in ws),
            "filters_removed": float(np.concatenate(whole).mean()),
            "zeros_in_whole_filters": in_whole / zeros if zeros else float("nan")}


def matched(gl: np.ndarray, l1: np.ndarray, l1_y: np.ndarray) -> np.ndarray:
    """Per seed, ``l1_y`` interpolated (linearly) along the L1 path at the group-lasso zero fraction
    ``gl`` [point, seed]; nan where ``gl`` lies outside that seed's L1 range. l1, l1_y: [L1 point, seed]."""
    out = np.full(gl.shape, np.nan)
    for s in range(gl.shape[1]):
        order = np.argsort(l1[:, s], kind="stable")
        x, y = l1[order, s], l1_y[order, s]
        inside = (gl[:, s] >= x[0]) & (gl[:, s] <= x[-1])
        out[inside, s] = np.interp(gl[inside, s], x, y)
    return out


def checks(m: dict) -> dict[str, bool]:
    """Fixed before the run: the group-lasso path removes >= END_FILTERS of the filters at its end;
    at least MIN_MATCHED of its points (zero fraction >= MIN_ZEROS) fall inside the L1 path's range
    for every seed; and at every such point the paired 95% t CI over seeds of the fraction of filters
    removed (group lasso - L1 at the same zero fraction) lies above 0."""
    pts = m["matched_points"]
    return {f"group lasso removes >= {END_FILTERS:.0%} of filters at the path's end":
            bool(m["group_filters_removed"][-1] >= END_FILTERS),
            f">= {MIN_MATCHED} matched points": len(pts) >= MIN_MATCHED,
            "every matched point: CI of filters removed (group lasso - L1) above 0":
            bool(pts) and all(p["filters_diff_ci"][0] > 0 for p in pts)}


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    s = z["seeds"]
    rows = [(0.0, 0.0)] + [(0.0, g) for g in GROUP_LS] + [(v, 0.0) for v in L1_LS]
    hp = {"l1": np.repeat([a for a, _ in rows], s), "group": np.repeat([b for _, b in rows], s)}
    seeds = np.tile(ctx.seed * 1000 + np.arange(s), len(rows))
    model = CNN(channels=z["channels"], batch_norm=False)
    r = train(model, chain, hp, seeds, ctx.mnist1d(*z["data"]), steps=z["steps"], batch_size=64,
              records=1, chunks=4, desc=f"{ID}: group lasso and L1 paths")
    st = [structure(r.final_params, k) for k in range(len(rows) * s)]
    get = lambda key: np.asarray([x[key] for x in st]).reshape(len(rows), s)  # noqa: E731
    zf, ff, share = get("zero_frac"), get("filters_removed"), get("zeros_in_whole_filters")
    acc = r.metrics["test_acc"][:, -1].reshape(len(rows), s)
    g, l1 = slice(1, 1 + len(GROUP_LS)), slice(1 + len(GROUP_LS), None)
    f_at, a_at = matched(zf[g], zf[l1], ff[l1]), matched(zf[g], zf[l1], acc[l1])
    points = []
    for i, lam in enumerate(GROUP_LS):
        if zf[g][i].mean() < MIN_ZEROS or np.isnan(f_at[i]).any():
            continue
        d, da = stats.t_ci(ff[g][i] - f_at[i]), stats.t_ci(acc[g][i] - a_at[i])
        points.append({"group_l1": lam, "zero_frac": zf[g][i].tolist(), "group_filters": ff[g][i].tolist(),
                       "l1_filters_at_same_zeros": f_at[i].tolist(), "filters_diff": d[0], "filters_diff_ci": list(d[1:]),
                       "group_test_acc": acc[g][i].tolist(), "l1_test_acc_at_same_zeros": a_at[i].tolist(),
                       "acc_diff": da[0], "acc_diff_ci": list(da[1:])})
    mean = lambda a: a.mean(axis=1).tolist()  # noqa: E731
    metrics: dict[str, Any] = {
        "dataset": "mnist1d", "model": f"1-D CNN, {z['channels']} channels, no batch norm (im2col)",
        "optimizer": f"plain SGD lr={LR}, batch 64; prox_l1 and prox_group_lasso(axis=0: one group per output "
        "filter) last; conv kernels only", "seeds": s, "steps": z["steps"], "train_val_test": list(z["data"]),
        "group_path": GROUP_LS, "l1_path": L1_LS, "end_filters": END_FILTERS, "min_zeros": MIN_ZEROS,
        "min_matched": MIN_MATCHED,
        "group_zero_frac": mean(zf[g]), "group_filters_removed": mean(ff[g]), "group_test_acc": mean(acc[g]),
        "group_zeros_in_whole_filters": np.nanmean(share[g], axis=1).tolist(),
        "l1_zero_frac": mean(zf[l1]), "l1_filters_removed": mean(ff[l1]), "l1_test_acc": mean(acc[l1]),
        "l1_zeros_in_whole_filters": np.nanmean(np.where(zf[l1] > 0, share[l1], np.nan), axis=1).tolist()
        if (zf[l1] > 0).any(axis=1).all() else None,
        "per_seed": {"group_zero_frac": zf[g].tolist(), "group_filters_removed": ff[g].tolist(),
                     "l1_zero_frac": zf[l1].tolist(), "l1_filters_removed": ff[l1].tolist()},
        "test_acc_none": float(acc[0].mean()), "matched_points": points,
    }
    _figure(ctx, metrics)
    ok = checks(metrics)
    key = "; ".join(f"{np.mean(p['zero_frac']):.0%} zeros: filters {np.mean(p['group_filters']):.0%} vs "
                    f"{np.mean(p['l1_filters_at_same_zeros']):.0%}" for p in points) or "no matched point"
    return Claim(
        id=ID,
        statement="The group lasso (proximal, one group per conv filter) sets whole filters to zero; unstructured "
        "L1 at the same fraction of zero weights scatters its zeros and removes few whole filters.",
        criterion=f"MNIST-1D {z['data'][0]}/{z['data'][1]}/{z['data'][2]}, {metrics['model']}, plain SGD lr {LR:g} "
        f"for {z['steps']} steps, {s} seeds; conv kernels penalised, group-lasso λ in {GROUP_LS}, L1 λ on quarter "
        f"decades {L1_LS[0]:.2g} ... {L1_LS[-1]:.2g}, L1 interpolated per seed to each group-lasso point's zero "
        f"fraction. Holds if group lasso removes >= {END_FILTERS:.0%} of filters at its path's end, >= {MIN_MATCHED} "
        f"of its points (>= {MIN_ZEROS:.0%} zeros) lie in every seed's L1 range, and at each the paired 95% t CI of "
        "filters removed (group lasso - L1) lies above 0. Accuracy reported only. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png", key_number=key,
        notes="Test accuracy at equal sparsity (group lasso vs L1): "
        + ", ".join(f"{np.mean(p['zero_frac']):.0%} zeros {np.mean(p['group_test_acc']):.3f} vs "
                    f"{np.mean(p['l1_test_acc_at_same_zeros']):.3f} (difference {p['acc_diff']:+.3f} "
                    f"[{p['acc_diff_ci'][0]:+.3f}, {p['acc_diff_ci'][1]:+.3f}])" for p in points)
        + f"; unpenalised {metrics['test_acc_none']:.3f}. Share of zero weights in whole zero filters: group lasso " + "/".join(f"{v:.0%}" for v in metrics["group_zeros_in_whole_filters"] if v == v)
        + "; L1 " + ("/".join(f"{v:.0%}" for v in metrics["l1_zeros_in_whole_filters"])
                      if metrics["l1_zeros_in_whole_filters"] else "n/a") + ".",
    )


def _figure(ctx: Context, m: dict) -> None:
    fig, (ax1, ax2) = new_figure(2, width=5.2)
    ax1.plot(m["l1_zero_frac"], m["l1_filters_removed"], "s-", color="C1", ms=4, label="L1 (prox_l1) path")
    ax1.plot(m["group_zero_frac"], m["group_filters_removed"], "o-", color="C2", label="group lasso path")
    ax1.plot([0, 1], [0, 1], "k:", lw=0.8, label="filters removed = zero fraction")
    for p in m["matched_points"]:
        ax1.plot([np.mean(p["zero_frac"])] * 2, [np.mean(p["l1_filters_at_same_zeros"]), np.mean(p["group_filters"])],
                 color="0.5", lw=0.8)
    ax1.set_xlabel("exact-zero fraction of the conv kernels")
    ax1.set_ylabel("fraction of conv filters entirely zero")
    ax1.set_title("whole filters removed at equal sparsity (mean over seeds)", fontsize=9)
    ax1.legend(fontsize=7)
    ax2.plot(m["l1_zero_frac"], m["l1_test_acc"], "s-", color="C1", ms=4, label="L1 (prox_l1)")
    ax2.plot(m["group_zero_frac"], m["group_test_acc"], "o-", color="C2", label="group lasso")
    ax2.axhline(m["test_acc_none"], color="C7", lw=0.8, label="unpenalised")
    ax2.set_xlabel("exact-zero fraction of the conv kernels")
    ax2.set_ylabel("test accuracy (mean over seeds)")
    ax2.set_title("accuracy against sparsity", fontsize=9)
    ax2.legend(fontsize=7)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
