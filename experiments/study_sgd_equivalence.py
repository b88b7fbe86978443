"""sgd-l2-equals-decoupled: with plain SGD, L2 and lr-scaled decoupled decay give the same
trajectory; tested in float64 (an identity in exact arithmetic), with a control that the test
detects a 0.1% change of λ, and the float32 gap shown beside float32's own one-ulp floor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np

from experiments.common import new_figure, save_figure
from experiments.report import Claim, Context

ID = "sgd-l2-equals-decoupled"
LR, WD = 0.05, 5e-3
TOL = 1e-10  # float64: max |θ_L2 - θ_decoupled| / max |θ| over every record point
CONTROL = 1.001  # λ x 1.001 must move the weights by more than 100 x TOL
SIZES = {
    "smoke": dict(data=(600, 200, 600), seeds=2, steps=40, records=4, hidden=32),
    "quick": dict(data=(4000, 1000, 5000), seeds=2, steps=300, records=6, hidden=128),
    "full": dict(data=(4000, 1000, 5000), seeds=2, steps=1000, records=10, hidden=128),
}
SCHEDULES = {"constant lr": 0.0, "cosine lr": 1.0}


def _runs(seeds: list[int]) -> tuple[list[dict], dict[str, tuple[int, int]]]:
    """Runs and the pairs to compare (indices): per seed and schedule, L2 vs decoupled, L2 vs
    L2 with λ x CONTROL, L2 vs L2 from an init one ulp away; SGD+momentum L2 vs decoupled."""
    runs, pairs = [], {}
    for s in seeds:
        for sched, cos in SCHEDULES.items():
            base = {"seed": s, "lr": LR, "cos": cos, "mom": 0.0, "l2": WD, "dec": 0.0}
            i = len(runs)
            runs += [base, {**base, "l2": 0.0, "dec": WD}, {**base, "l2": WD * CONTROL}, {**base, "ulp": 1}]
            pairs[f"{sched}, seed {s}: L2 vs decoupled"] = (i, i + 1)
            pairs[f"{sched}, seed {s}: λ x {CONTROL:g} (control)"] = (i + 2, i)
            pairs[f"{sched}, seed {s}: init one ulp away (floor)"] = (i + 3, i)
        i = len(runs)
        mom = {"seed": s, "lr": LR / 2, "cos": 0.0, "mom": 0.9, "l2": WD, "dec": 0.0}
        runs += [mom, {**mom, "l2": 0.0, "dec": WD}]
        pairs[f"momentum 0.9, seed {s}: L2 vs decoupled (contrast)"] = (i, i + 1)
    return runs, pairs


def _launch(cfg: dict, dtype: str) -> subprocess.Popen:
    env = dict(os.environ, JAX_ENABLE_X64="1" if dtype == "float64" else "0")
    return subprocess.Popen([sys.executable, "-m", "experiments.sgd_x64", json.dumps({**cfg, "dtype": dtype})],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def gaps(ctx: Context, z: dict) -> dict[str, dict[str, list[float]]]:
    """float64 and float32 relative gaps per pair and record point, two processes side by side."""
    runs, pairs = _runs([ctx.seed * 1000 + k for k in range(z["seeds"])])
    cfg = {"data": list(z["data"]), "seed": ctx.seed, "cache": str(ctx.out_dir / "data"), "hidden": z["hidden"],
           "steps": z["steps"], "records": z["records"], "batch": 64, "runs": runs, "pairs": pairs}
    ctx.mnist1d(*z["data"])  # the cached data both processes read
    procs = {d: _launch(cfg, d) for d in ("float64", "float32")}
    out = {}
    for d, p in procs.items():
        stdout, stderr = p.communicate()
        if p.returncode:
            raise RuntimeError(f"experiments.sgd_x64 ({d}) failed:\n{stderr[-3000:]}")
        res = json.loads(stdout.strip().splitlines()[-1])
        assert res["dtype"] == d, res
        out[d] = res["relative_gap"]
    return out


def checks(m: dict) -> dict[str, bool]:
    """Fixed before the run (float64): L2 vs decoupled within TOL (relative) at every record point,
    seed and schedule; the λ x 1.001 control moves the weights by more than 100 x TOL."""
    return {f"float64 L2 vs decoupled <= {TOL:g} (relative)": bool(m["float64_max_gap"] <= TOL),
            f"control: λ x {CONTROL:g} detected (> {100 * TOL:g})": bool(m["float64_min_control"] > 100 * TOL)}


def _worst(g: dict[str, list[float]], tag: str, fn: Any = max) -> float:
    return float(fn(fn(v[1:]) for k, v in g.items() if tag in k))


def run(ctx: Context) -> Claim:
    z = SIZES[ctx.mode.name]
    g = gaps(ctx, z)
    metrics: dict[str, Any] = {
        "dataset": "mnist1d", "model": f"MLP 40-{z['hidden']}-{z['hidden']}-10, ReLU, no normalisation",
        "chains": "L2: chain(add_l2_grad(wd), scale_by_learning_rate(lr)); decoupled: "
        "chain(scale_by_learning_rate(lr), add_decoupled_decay(wd, learning_rate=lr)); kernels only",
        "lr": LR, "wd": WD, "steps": z["steps"], "seeds": z["seeds"], "records": z["records"], "tolerance": TOL,
        "control_factor": CONTROL, "gap": "max |θ_a - θ_b| / max |θ_b| over every weight, at each record point",
        "float64_max_gap": max(max(v[1:]) for k, v in g["float64"].items() if k.endswith("L2 vs decoupled")),
        "float64_min_control": _worst(g["float64"], "(control)", min),
        "float32_max_gap": max(max(v[1:]) for k, v in g["float32"].items() if k.endswith("L2 vs decoupled")),
        "float32_one_ulp_floor": _worst(g["float32"], "(floor)"),
        "momentum_contrast_float64": _worst(g["float64"], "(contrast)"),
        "relative_gap": g,
    }
    _figure(ctx, metrics, z)
    ok = checks(metrics)
    m = metrics
    return Claim(
        id=ID,
        statement="With plain SGD, L2 regularization and decoupled decay scaled by the learning rate give the same "
        "trajectory (an identity in exact arithmetic).",
        criterion=f"MNIST-1D, {m['model']}, {z['steps']} steps, {z['seeds']} seeds, constant and cosine lr {LR:g}, "
        f"λ = {WD:g}, in float64 (JAX_ENABLE_X64, in a subprocess). Gap = max |θ_a - θ_b| / max |θ_b| at each of "
        f"{z['records']} record points. Holds if the L2-vs-decoupled gap is <= {TOL:g} everywhere and a control "
        f"(L2 with λ x {CONTROL:g}) moves the weights by more than {100 * TOL:g}. The float32 gap is reported beside "
        "float32's floor (the same form started one ulp away). Fixed before the run.",
        holds=all(ok.values()), checks=ok, metrics=metrics, figure=f"{ID}.png",
        key_number=f"float64 gap {m['float64_max_gap']:.1e} (control {m['float64_min_control']:.1e}); float32 gap "
        f"{m['float32_max_gap']:.1e} vs one-ulp floor {m['float32_one_ulp_floor']:.1e}",
        notes=f"With momentum the forms differ by design (float64 gap {m['momentum_contrast_float64']:.1e}). The "
        f"float32 gap is {'below' if m['float32_max_gap'] < m['float32_one_ulp_floor'] else 'not below'} float32's "
        "floor (the L2 form against itself from an init one ulp away): a float32 tolerance would test rounding, "
        "so the verdict is taken in float64.",
    )


def _figure(ctx: Context, m: dict, z: dict) -> None:
    fig, (ax,) = new_figure(1, width=7.0, height=4.5)
    steps = np.arange(z["records"] + 1) * (z["steps"] // z["records"])
    styles = {"(control)": ("C3", "--"), "(floor)": ("C7", ":"), "(contrast)": ("C1", "-."),
              "L2 vs decoupled": ("C0", "-")}  # the bracketed tags first: the contrast's name holds the last
    for dtype, mk in (("float64", "o"), ("float32", "s")):
        seen = set()
        for k, v in m["relative_gap"][dtype].items():
            tag = next(t for t in styles if k.endswith(t))
            if dtype == "float32" and tag in ("(control)", "(contrast)"):
                continue
            color, ls = styles[tag]
            lab = f"{dtype}: {tag.strip('()')}" if (dtype, tag) not in seen else None
            seen.add((dtype, tag))
            ax.plot(steps[1:], np.maximum(v[1:], 1e-18), marker=mk, ms=3, color=color, ls=ls,
                    alpha=1.0 if dtype == "float64" else 0.5, label=lab)
    ax.axhline(TOL, color="k", lw=1, label=f"float64 tolerance {TOL:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("max |θ_a − θ_b| / max |θ_b|")
    ax.set_title(f"L2 vs decoupled decay with plain SGD (every seed and schedule): float64 gap "
                 f"{m['float64_max_gap']:.1e}", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, ctx.out_dir / f"{ID}.png")
