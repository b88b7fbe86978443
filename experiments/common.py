"""What every study shares: the run sizes (``Mode``) and the figure helpers.

Data (MNIST-1D) is in ``experiments/mnist1d_data.py``, the models in
``experiments/nets.py``, the vmapped trainer in ``experiments/train1d.py``;
each study keeps its own sizes per mode in a ``SIZES`` table.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Mode:
    """The run size: smoke (tests), quick (README main job), full. Studies key
    their ``SIZES`` on ``name``; the lasso studies read their path sizes here."""

    name: str
    lasso_alphas: int  # points on the lasso / elastic-net paths
    lasso_steps: int  # ISTA iterations per alpha


MODES = {
    "smoke": Mode("smoke", lasso_alphas=6, lasso_steps=1500),
    "quick": Mode("quick", lasso_alphas=20, lasso_steps=4000),
    "full": Mode("full", lasso_alphas=40, lasso_steps=20000),
}


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


# Smoke runs (the tests) render every figure without the layout passes: figures were
# a fifth of a smoke run's CPU time, and skipping these two passes saved about 4 s
# of its 54. Set by the CLI from the mode.
FAST_FIGURES = False


def save_figure(fig: Any, path: Any) -> None:
    """tight_layout plus bbox_inches="tight": no axis label is clipped
    (both skipped when ``FAST_FIGURES``, in smoke runs)."""
    import matplotlib.pyplot as plt

    if FAST_FIGURES:
        fig.savefig(path, dpi=110)
    else:
        fig.tight_layout()
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
