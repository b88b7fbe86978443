"""decoupled-hyperparameter-landscape: lr x wd grids of test error on MNIST-1D
(Loshchilov & Hutter 2019, Fig. 2), five optimizer families, slope of the best wd."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

import decaytx
from experiments import stats
from experiments.common import new_figure, save_figure
from experiments.nets import CNN
from experiments.report import Claim, Context
from experiments.train1d import cosine, grid_runs, train

ID = "decoupled-hyperparameter-landscape"
K = decaytx.masks.ndim_at_least(2)
MOMENTUM = 0.9
SIZES = {  # data (train, val, test), grid, seeds, steps, CNN channels, bootstrap resamples;
    # adam_drop: lowest Adam lr rows left out (in 500 steps the lowest, 1e-3, is undertrained)
    "smoke": dict(data=(600, 200, 600), n_lr=5, n_wd=5, seeds=2, steps=20, channels=4, boot=100, adam_drop=0),
    "quick": dict(data=(4000, 1000, 5000), n_lr=7, n_wd=9, seeds=4, steps=500, channels=16, boot=1000, adam_drop=1),
    "full": dict(data=(4000, 1000, 5000), n_lr=7, n_wd=9, seeds=6, steps=1000, channels=16, boot=2000, adam_drop=0),
}
ADAM_LR = (-3.0, -1.5)  # log10 range of the peak lr (cosine to 0)
SGD_LR = (-2.0, -0.5)
PAIRS = {"Adam": ("Adam+L2", "AdamW, m=η_t/η_max (paper)"), "SGD": ("SGD+L2 (momentum)", "SGDW, m=η_t/η_max (paper)")}


@dataclasses.dataclass(frozen=True)
class Family:
    base: str  # "adam" or "sgd" (momentum): the families of one base train as ONE vmapped program
    penalty: str  # "l2" (add_l2_grad first) or "lr" (decoupled, m_t = η_t) or "unit" (decoupled, m_t = η_t/η_max)
    lr: tuple[float, float]  # log10 range
    wd: tuple[float, float]  # log10 range


FAMILIES: dict[str, Family] = {
    "Adam+L2": Family("adam", "l2", ADAM_LR, (-4.5, -0.5)),
    "AdamW, m=η_t (PyTorch/optax)": Family("adam", "lr", ADAM_LR, (-1.5, 2.5)),
    "AdamW, m=η_t/η_max (paper)": Family("adam", "unit", ADAM_LR, (-4.5, -0.5)),
    "SGD+L2 (momentum)": Family("sgd", "l2", SGD_LR, (-5.0, -1.0)),
    "SGDW, m=η_t/η_max (paper)": Family("sgd", "unit", SGD_LR, (-5.0, -1.0)),
}


def _peak(h: dict[str, Any], unit: optax.Schedule) -> optax.Schedule:
    return lambda t: h["lr"] * unit(t)


def make_opt(base: str, unit: optax.Schedule) -> Callable[[dict[str, Any]], optax.GradientTransformation]:
    """One chain for every family of ``base``; per run, ``l2``, ``dec`` and ``m_lr`` select the family:
    add_l2_grad(l2) -> scale_by_adam() | trace(0.9) -> scale_by_learning_rate(lr·u_t) ->
    add_decoupled_decay(dec, learning_rate=m_t) with m_t = lr·u_t (m_lr = 1) or u_t (m_lr = 0,
    ``lr_multiplier(u, peak=1.0)``). A zero coefficient changes nothing bit for bit (see chains.py), so
    each run is exactly its family's own chain."""
    paper = decaytx.lr_multiplier(unit, peak=1.0)

    def make(h: dict[str, Any]) -> optax.GradientTransformation:
        peak = _peak(h, unit)
        m = lambda t: h["m_lr"] * peak(t) + (1.0 - h["m_lr"]) * paper(t)  # noqa: E731
        return optax.chain(decaytx.add_l2_grad(h["l2"], mask=K),
                           optax.scale_by_adam() if base == "adam" else optax.trace(MOMENTUM),
                           optax.scale_by_learning_rate(peak),
                           decaytx.add_decoupled_decay(h["dec"], learning_rate=m, mask=K))
    return make


def checks(m: dict) -> dict[str, bool]:
    """Criterion fixed before the run: for Adam and for SGD, the paired 95% bootstrap CI of
    |slope(L2)| - |slope(paper's decoupled)|, each over its counted rows (best error <= 2x the
    grid's best, at least 4 uncensored), lies above 0."""
    return {f"{base}: CI of |slope L2| - |slope decoupled| above 0": bool(m["paired"][base]["difference_ci"][0] > 0)
            for base in PAIRS}


def _grids(z: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, f in FAMILIES.items():
        drop = z["adam_drop"] if f.base == "adam" else 0
        out[name] = (np.linspace(*f.lr, z["n_lr"])[drop:], np.linspace(*f.wd, z["n_wd"]))
    return out


def _train_base(ctx: Context, z: dict, base: str, grids: dict, data: Any) -> tuple[dict, dict, dict]:
    """The families of one base optimizer as ONE vmapped program; per family: test and
    validation correctness [n_lr, n_wd, seeds, examples] and its non-finite run count."""
    names = [n for n, f in FAMILIES.items() if f.base == base]
    hps, seeds = [], []
    for name in names:
        f = FAMILIES[name]
        hp, sd = grid_runs({"lr": 10 ** grids[name][0], "wd": 10 ** grids[name][1]}, z["seeds"], ctx.seed)
        zero = np.zeros_like(hp["wd"])
        hps.append({"lr": hp["lr"], "l2": hp["wd"] if f.penalty == "l2" else zero,
                    "dec": zero if f.penalty == "l2" else hp["wd"],
                    "m_lr": np.full_like(zero, 1.0 if f.penalty == "lr" else 0.0)})
        seeds.append(sd)
    model = CNN(channels=z["channels"], batch_norm=True)
    r = train(model, make_opt(base, cosine(z["steps"])), {k: np.concatenate([h[k] for h in hps]) for k in hps[0]},
              np.concatenate(seeds), data, steps=z["steps"], batch_size=32, records=1, chunks=4,
              desc=f"{ID}: {base} families")
    test, val, bad, start = {}, {}, {}, 0
    for name in names:
        shape = (len(grids[name][0]), z["n_wd"], z["seeds"])
        block = slice(start, start + int(np.prod(shape)))
        start = block.stop
        test[name] = r.correct_test[block].reshape(*shape, -1)
        val[name] = r.correct_val[block].reshape(*shape, -1)
        bad[name] = int((~np.isfinite(r.metrics["train_loss"][block, -1])).sum())
    return test, val, bad


def save_correctness(path: Any, correct: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-example test correctness of every grid run, bit-packed: every slope and CI can be
    recomputed from it (``load_correctness``)."""
    keys = {name: f"family{k}" for k, name in enumerate(correct)}
    np.savez_compressed(path, **{keys[n]: np.packbits(c, axis=-1) for n, c in correct.items()},
                        **{keys[n] + "_shape": np.asarray(c.shape) for n, c in correct.items()})
    return {"file": path.name, "keys": keys, "layout": "[lr, wd, seed, test example], np.packbits on the last axis"}


def load_correctness(path: Any, keys: dict[str, str]) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {n: np.unpackbits(z[k], axis=-1, count=int(z[k + "_shape"][-1])).astype(bool).reshape(z[k + "_shape"])
                for n, k in keys.items()}


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    data = ctx.mnist1d(*z["data"])
    grids = _grids(z)
    corr_test, corr_val, bad = {}, {}, {}
    for base in ("adam", "sgd"):
        t, v, b = _train_base(ctx, z, base, grids, data)
        corr_test.update(t), corr_val.update(v), bad.update(b)
    fams = {}
    for name in FAMILIES:
        fams[name] = stats.landscape_stats(corr_test[name], *grids[name], z["boot"], ctx.seed)
        fams[name]["val_error"] = 1.0 - corr_val[name].mean(axis=(2, 3))
        fams[name]["non_finite_runs"] = bad[name]
        fams[name]["counted_rows"] = stats.counted_rows(np.asarray(fams[name]["test_error"]))
    paired = {base: stats.slope_difference(corr_test, grids, pair, z["boot"], ctx.seed) for base, pair in PAIRS.items()}
    generalization = _best_cells(ctx, z, fams, grids, corr_test)
    metrics: dict[str, Any] = {
        "dataset": "mnist1d", "model": f"1-D CNN, {z['channels']} channels, batch norm (im2col)",
        "optimizer": "per base (Adam, SGD momentum 0.9) one chain add_l2_grad(l2) -> base -> scale_by_learning_rate -> "
        "add_decoupled_decay(dec, learning_rate=m_t); each family sets the others' coefficients to 0",
        "seeds": z["seeds"], "steps": z["steps"], "batch_size": 32, "schedule": "cosine to 0",
        "train_val_test": list(z["data"]), "grid": [z["n_lr"], z["n_wd"]], "adam_rows_dropped": z["adam_drop"],
        "bootstrap": z["boot"], "row_factor": stats.ROW_FACTOR, "min_rows": stats.MIN_ROWS,
        "lr_grid": {n: (10 ** g[0]).tolist() for n, g in grids.items()},
        "wd_grid": {n: (10 ** g[1]).tolist() for n, g in grids.items()},
        "families": fams, "paired": paired, "generalization": generalization,
        "correctness": save_correctness(ctx.out_dir / f"{ID}-correct.npz", corr_test),
    }
    _figure(ctx, fams, grids, paired)
    ok = checks(metrics)
    return Claim(
        id=ID,
        statement="With decoupled weight decay whose multiplier does not follow the base lr (the paper's "
        "m_t = η_t/η_max), the best weight decay depends much less on the learning rate than with L2 "
        "regularization (Loshchilov & Hutter 2019, Fig. 2), for Adam and for SGD with momentum.",
        criterion=f"MNIST-1D, 1-D CNN with batch norm, cosine lr to 0, lr x wd log grid ({z['n_wd']} wd columns), "
        f"{z['seeds']} seeds per cell. Best wd per lr row = argmin of the mean test error, refined by a parabola "
        "through its neighbours; an argmin on the first or last wd column is censored. A row counts when its best "
        f"error is <= {stats.ROW_FACTOR:g}x the grid's best; a slope needs >= {stats.MIN_ROWS} counted uncensored "
        "rows. Statistic: |slope L2| - |slope decoupled| of log10(best wd) on log10(lr), with a 95% bootstrap CI "
        f"({z['boot']} resamples of seeds and test examples, shared by the two families). Holds if, for Adam and "
        "for SGD, the CI lies above 0. Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number="; ".join(f"{base}: |L2| - |decoupled| {_fmt(p['difference'])} [{_fmt(p['difference_ci'][0])}, "
                             f"{_fmt(p['difference_ci'][1])}] (slopes {_fmt(p[PAIRS[base][0]]['slope'])} vs "
                             f"{_fmt(p[PAIRS[base][1]]['slope'])})" for base, p in paired.items()),
        notes="Regret (test-error cost of keeping the wd tuned at the best lr, mean over lr rows): "
        + ", ".join(f"{n} {100 * v['regret']:.1f} pts [{100 * v['regret_ci'][0]:.1f}, {100 * v['regret_ci'][1]:.1f}]"
                    for n, v in fams.items())
        + " (counted rows: in the metrics and the figure's last panel). With m=η_t the per-step decay is η·λ, so its optimum should follow the equal-ηλ diagonal "
        "(slope -1, dotted). Best validation cell per family, paired bootstrap of the test-error difference "
        "(negative = first is better): "
        + ", ".join(f"{k} {100 * v['diff']:+.1f} pts [{100 * v['ci'][0]:+.1f}, {100 * v['ci'][1]:+.1f}]"
                    for k, v in generalization.items()) + ".",
    )


def _fmt(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _best_cells(ctx: Context, z: dict, fams: dict, grids: dict, corr_test: dict) -> dict:
    """Each family's best VALIDATION cell; paired bootstrap of test error between families.
    Shared with cautious-decay and adamw-rotational-equilibrium, which start from these cells."""
    best = {n: np.unravel_index(int(np.argmin(f["val_error"])), f["val_error"].shape) for n, f in fams.items()}
    pick = {n: corr_test[n][best[n]] for n in fams}  # [seeds, examples]
    compare = {"AdamW (paper) - Adam+L2": ("AdamW, m=η_t/η_max (paper)", "Adam+L2"),
               "AdamW (m=η_t) - Adam+L2": ("AdamW, m=η_t (PyTorch/optax)", "Adam+L2"),
               "SGDW (paper) - SGD+L2": ("SGDW, m=η_t/η_max (paper)", "SGD+L2 (momentum)")}
    gen = {k: stats.paired_bootstrap(pick[a], pick[b], z["boot"], ctx.seed) for k, (a, b) in compare.items()}
    for n, (i, j) in best.items():
        fams[n]["best_val_cell"] = {"lr": float(10 ** grids[n][0][i]), "wd": float(10 ** grids[n][1][j]),
                                    "test_error": float(1 - pick[n].mean())}
    ctx.shared["landscape"] = {"best_val_cell": {n: fams[n]["best_val_cell"] for n in fams},
                               "wd_grid": {n: (10 ** g[1]).tolist() for n, g in grids.items()}}
    return gen


def _figure(ctx: Context, fams: dict, grids: dict, paired: dict) -> None:
    import matplotlib.pyplot as plt

    plt.close(new_figure()[0])  # selects the Agg backend
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.5))
    for ax, (name, f) in zip(axes.ravel(), fams.items()):
        err = np.asarray(f["test_error"])
        log_lr, log_wd = grids[name]
        lo = float(err.min())
        im = ax.imshow(err, origin="lower", cmap="viridis_r", vmin=lo, vmax=lo + 0.15, aspect="auto")
        ax.set_xticks(range(len(log_wd)), [f"{10**w:.0e}" for w in log_wd], rotation=60, fontsize=7)
        ax.set_yticks(range(len(log_lr)), [f"{10**v:.0e}" for v in log_lr], fontsize=7)
        ax.set_xlabel("weight decay λ")
        ax.set_ylabel("peak learning rate η")
        step = log_wd[1] - log_wd[0]
        xs = [None if b is None else (math.log10(b) - log_wd[0]) / step for b in f["best_wd_by_lr"]]
        ax.plot([x for x in xs if x is not None], [i for i, x in enumerate(xs) if x is not None], "r*-", ms=9,
                label="best λ per η")
        out = [i for i in range(len(log_lr)) if i not in f["counted_rows"]]
        if out:
            ax.plot([-0.5] * len(out), out, ">", color="0.5", ms=9, clip_on=False,
                    label="row not counted (best > 2x grid best)")
        cens = [i for i, x in enumerate(xs) if x is None]
        if cens:
            ax.plot([int(np.argmin(err[i])) for i in cens], cens, "wx", ms=9, mew=2, label="censored (grid edge)")
        if "m=η_t (" in name:  # equal ηλ through the best cell
            i, j = np.unravel_index(int(np.argmin(err)), err.shape)
            c = log_lr[i] + log_wd[j]
            ax.plot([(c - v - log_wd[0]) / step for v in log_lr], np.arange(len(log_lr)), "w:", lw=2,
                    label="equal ηλ")
            ax.set_xlim(-0.5, len(log_wd) - 0.5)
        fs = next((p[name] for p in paired.values() if name in p), None)
        sub = (f"slope (counted rows) {_fmt(fs['slope'])} [{_fmt(fs['slope_ci'][0])}, {_fmt(fs['slope_ci'][1])}]"
               if fs else f"slope (all uncensored rows) {_fmt(f['slope'])}")
        ax.set_title(f"{name}\n{sub}", fontsize=9)
        ax.legend(fontsize=6, loc="upper right")
        fig.colorbar(im, ax=ax, label="test error (clipped at best + 0.15)", extend="max")
    ax = axes.ravel()[-1]
    for k, (name, f) in enumerate(fams.items()):
        log_lr, _ = grids[name]
        fs = next((p[name] for p in paired.values() if name in p), None)
        pts = [(10 ** v, b) for i, (v, b) in enumerate(zip(log_lr, f["best_wd_by_lr"]))
               if b is not None and i in f["counted_rows"]]
        if pts:
            x, y = zip(*pts)
            ax.plot(np.asarray(x) / x[0], np.asarray(y) / y[0], "o-", color=f"C{k}",
                    label=f"{name}: {_fmt(fs['slope'] if fs else f['slope'])}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("η / smallest counted uncensored η")
    ax.set_ylabel("best λ / its value there")
    ax.set_title("best λ vs η, counted rows (log-log; slope 0 = separable)\n" + "; ".join(
        f"{b}: |L2|-|dec| {_fmt(p['difference'])} [{_fmt(p['difference_ci'][0])}, {_fmt(p['difference_ci'][1])}]"
        for b, p in paired.items()), fontsize=8)
    ax.legend(fontsize=6)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
