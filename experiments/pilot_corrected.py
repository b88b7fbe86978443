"""The pilot that chose corrected-decay's lr and λ: ``python -m experiments.pilot_corrected --out DIR``.

The corrected-decay design (batch-norm CNN, Adam, cosine lr to 0, 1,000 steps; ‖∇w‖/‖w‖ of the conv
kernels at the end over at 40% of training) on a grid of peak lr x λ, on seeds the study does not use
(base seed 7), 2 seeds. The rule, fixed before the pilot ran: take the cell where the mechanism AdamC
corrects is strongest, i.e. where log ratio(m = η_t) - log ratio(no decay) is largest, among the cells
whose m = η_t test accuracy is within 2 points of the pilot's best. Corrected decay's own ratio plays
no part in the choice (it is what the study then tests, on its own seeds).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from experiments.common import new_figure, save_figure
from experiments.mnist1d_data import load
from experiments.nets import CNN
from experiments.study_corrected import ARMS, EARLY, GRAD_EXAMPLES, grad_over_weight, make
from experiments.train1d import cosine, train

LRS = [1e-3, 3e-3, 1e-2]
WDS = [0.1, 1.0, 10.0]
SEED, SEEDS, STEPS, RECORDS, CHANNELS = 7, 2, 1000, 10, 16
ACC_MARGIN = 0.02


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.pilot_corrected")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/pilot"))
    out = p.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    data = load(out / "data", 4000, 1000, 5000, SEED)
    model = CNN(channels=CHANNELS, batch_norm=True)
    cells = []
    for lr in LRS:
        arms = [(name, wd) for wd in WDS for name in ARMS]
        h = {"wd_lr": np.repeat([wd * ARMS[a][0] for a, wd in arms], SEEDS),
             "wd_c": np.repeat([wd * ARMS[a][1] for a, wd in arms], SEEDS)}
        seeds = np.tile(SEED * 1000 + np.arange(SEEDS), len(arms))
        r = train(model, make(cosine(STEPS), lr), h, seeds, data, steps=STEPS, batch_size=32, records=RECORDS,
                  keep_snapshots=True, desc=f"pilot lr {lr:g}")
        gw = grad_over_weight(model, r.snapshots, data.x_train[:GRAD_EXAMPLES], data.y_train[:GRAD_EXAMPLES])
        gw = gw.reshape(len(WDS), len(ARMS), SEEDS, -1)
        acc = r.metrics["test_acc"][:, -1].reshape(len(WDS), len(ARMS), SEEDS).mean(axis=-1)
        early = int(round(EARLY * RECORDS))
        for i, wd in enumerate(WDS):
            ratio = (gw[i, :, :, -1] / gw[i, :, :, early]).mean(axis=-1)
            cells.append({"lr": lr, "wd": wd, "ratio": dict(zip(ARMS, ratio.tolist())),
                          "test_acc": dict(zip(ARMS, acc[i].tolist())),
                          "grad_over_weight": {a: gw[i, j].mean(axis=0).tolist() for j, a in enumerate(ARMS)}})
    best = max(c["test_acc"]["m = η_t"] for c in cells)
    ok = [c for c in cells if c["test_acc"]["m = η_t"] >= best - ACC_MARGIN]
    chosen = max(ok, key=lambda c: np.log(c["ratio"]["m = η_t"]) - np.log(c["ratio"]["no decay"]))
    res = {"lrs": LRS, "wds": WDS, "seed": SEED, "seeds": SEEDS, "steps": STEPS, "acc_margin": ACC_MARGIN,
           "rule": "largest log ratio(m = η_t) - log ratio(no decay) among cells with m = η_t test accuracy "
           "within 2 points of the best", "cells": cells, "chosen": {"lr": chosen["lr"], "wd": chosen["wd"]},
           "record_steps": r.steps.tolist()}
    (out / "corrected-decay-pilot.json").write_text(json.dumps(res, indent=1) + "\n")
    _figure(out, res)
    for c in cells:
        print(f"lr {c['lr']:g} λ {c['wd']:g}: " + ", ".join(f"{a} {c['ratio'][a]:.2f} ({c['test_acc'][a]:.3f})" for a in ARMS))
    print("chosen", res["chosen"])


def _figure(out: pathlib.Path, res: dict) -> None:
    fig, axes = new_figure(len(LRS), width=4.2)
    steps = np.asarray(res["record_steps"])
    for ax, lr in zip(axes, LRS):
        for c in (c for c in res["cells"] if c["lr"] == lr):
            ls = {0.1: ":", 1.0: "-", 10.0: "--"}[c["wd"]]
            for j, a in enumerate(ARMS):
                if a == "no decay" and c["wd"] != WDS[0]:
                    continue
                ax.plot(steps[1:], c["grad_over_weight"][a][1:], ls=ls, color=f"C{j}",
                        label=f"{a}" + ("" if a == "no decay" else f", λ {c['wd']:g}"))
        ax.set_yscale("log")
        ax.set_title(f"peak lr {lr:g}" + (" (chosen)" if res["chosen"]["lr"] == lr else ""), fontsize=9)
        ax.set_xlabel("step")
        ax.axvline(EARLY * steps[-1], color="k", lw=0.5)
    axes[0].set_ylabel("‖∇w‖/‖w‖ of the conv kernels (mean of 2 seeds)")
    axes[-1].legend(fontsize=6)
    save_figure(fig, out / "corrected-decay-pilot.png")


if __name__ == "__main__":
    main()
