"""Warnings: settings that are legal but almost certainly not what was meant.

The rules here are the ones :func:`decaytx.audit` reports too (it calls the
same predicates), so a warning and an audit row never disagree.
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["DecayWarning", "below_resolution", "warn_empty_mask", "warn_step_decay"]


class DecayWarning(UserWarning):
    """A decay setting that is legal but almost certainly not what was meant."""


# Set by decaytx.inject_hyperparams around each init: the (transform, plan
# signature) pairs that have warned already, for transforms rebuilt per init.
WARNED: contextvars.ContextVar[set[Any] | None] = contextvars.ContextVar(
    "decaytx_warned", default=None
)


def below_resolution(factor: float, dtype: Any) -> bool:
    """Whether a per-step decay factor is lost in a leaf of ``dtype``.

    The factor as the update computes it (float32, then cast to the leaf's
    real dtype) is at most a quarter of the dtype's machine epsilon, so
    :math:`x - m\\lambda x` rounds back to :math:`x` for every :math:`x` (half
    an ulp of :math:`x` is at least :math:`\\epsilon/4\\,|x|`). A zero factor
    is no decay, not a lost one.
    """
    if factor <= 0:
        return False
    info = jnp.finfo(dtype)
    with np.errstate(over="ignore"):  # a factor beyond f16's range casts to inf: not lost
        return float(np.asarray(np.float32(factor), dtype=info.dtype)) <= float(info.eps) / 4


def warn_empty_mask(name: str, mask: Any, masked_in: Sequence[bool]) -> None:
    """Warns when a mask selects none of the float leaves: the decay is off.

    ``masked_in`` holds the mask's verdict on each float params leaf. The
    classic silent bug: ``masks.include("weight")`` on params whose matrices
    are called ``kernel``.
    """
    if masked_in and not any(masked_in):
        warnings.warn(
            f"{name}: mask={mask!r} selects none of the {len(masked_in)} float "
            "params leaves, so this transform decays nothing. Check the mask "
            "against the paths ([decaytx.masks.path_of(k) for k, _ in "
            "jax.tree_util.tree_flatten_with_path(params)[0]]); "
            "if no decay is intended, leave the transform out.",
            DecayWarning,
            stacklevel=5,
        )


def _lost_advice(dtypes: Sequence[str]) -> str:
    if any(jnp.finfo(d).bits < 32 for d in dtypes):
        return ("Pass compensated=True (a float32 residual per low-precision leaf), keep "
                "float32 master weights (apply updates to an f32 copy), or raise weight_decay.")
    # f32/f64 params: there is no wider copy to suggest; with noisy updates
    # the decay still survives on average through rounding.
    return ("Raise weight_decay, or keep float64 master weights; with noisy updates the "
            "decay survives only on average, through rounding.")


def warn_step_decay(name: str, rates: list[tuple[Any, float | None, str]]) -> None:
    """The two init-time warnings of an update-side form.

    ``rates`` holds ``(dtype, m * lambda, path)`` for each decayed leaf, the
    largest per-step factor (``None`` when it is not concrete) and the leaf's
    "/" path, so the warning can name the leaves it is about. A factor >= 1
    flips the sign of every decayed weight; a factor :func:`below_resolution`
    moves no weight of that dtype at all.
    """
    known = [(d, r, path) for d, r, path in rates if r is not None]
    if not known:
        return
    top = max(r for _, r, _ in known)
    if top >= 1.0:
        warnings.warn(
            f"{name}: the per-step decay factor m*lambda = {top:g} is >= 1, so "
            "each step flips the sign of every decayed weight. Lower "
            "weight_decay or the learning_rate multiplier so that m*lambda << 1.",
            DecayWarning,
            stacklevel=5,
        )
    lost_leaves = [(d, r, path) for d, r, path in known if below_resolution(r, d)]
    if not lost_leaves:
        return
    lost = sorted({str(jnp.dtype(d)) for d, _, _ in lost_leaves})
    paths = [path or "<root>" for _, _, path in lost_leaves]
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    warnings.warn(
        f"{name}: the per-step decay factor m*lambda = {max(r for _, r, _ in lost_leaves):g} "
        f"is below the resolution of {', '.join(lost)} params ({shown}): x - m*lambda*x "
        "rounds back to x, so the decay is silently lost. " + _lost_advice(lost),
        DecayWarning,
        stacklevel=5,
    )
