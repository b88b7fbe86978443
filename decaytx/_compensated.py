r"""Compensated (Kahan) summation of the applied update for low-precision params.

With bf16 params, :math:`\theta + u` rounds back to :math:`\theta` whenever
:math:`|u| < \operatorname{ulp}(\theta)/2`: a decay of :math:`m\lambda = 10^{-5}`
(:math:`2^{-8} \approx 0.004` is bf16's half ulp at 1) is lost at every step,
and so is any small optimizer step. ``compensated=True`` keeps, per bf16/f16
leaf, a float32 residual :math:`r` of what rounding took away. Each step, in
float32,

.. math::
  \tilde\theta = \theta + r, \qquad
  t = \tilde\theta + u(\tilde\theta), \qquad
  \theta' = \operatorname{round}(t), \qquad
  u' = \theta' - \theta, \qquad
  r' = t - (\theta + u')_{\text{as applied}}

where :math:`u(\tilde\theta)` is the form's update computed at the float32
value the residual stands for (the decay :math:`u - m\lambda(\tilde\theta - a)`,
the prox :math:`S(\tilde\theta + u, m\lambda) - \tilde\theta`). ``optax.apply_updates``
(``(p + u').astype(p.dtype)``) then lands on :math:`\theta'`, and :math:`r'` is
computed with that same arithmetic, so the bookkeeping is exact even where
:math:`\theta' - \theta` is not representable in the update's dtype.
:math:`\theta + r` follows float32 master weights.

Only leaves narrower than float32 keep a residual; float32/float64 leaves
are computed exactly as without compensation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _trees

PyTree = Any

__all__ = ["check", "init", "land", "needs_residual", "next_tree", "state_leaves"]


def check(compensated: Any) -> bool:
    """``compensated`` as a Python bool; a ``TypeError`` naming it for anything else."""
    if isinstance(compensated, (bool, np.bool_)):
        return bool(compensated)
    if isinstance(compensated, (jax.Array, np.ndarray)):
        raise TypeError(
            f"compensated={compensated!r} must be a Python bool, not an array (a "
            f"{compensated.dtype} array of shape {compensated.shape}): it decides the "
            "state's structure (a float32 residual per bf16/f16 leaf), so it cannot "
            "be traced or injected. Pass compensated=True or False; to compensate "
            "only some leaves, wrap the transform in optax.masked."
        )
    raise TypeError(
        f"compensated={compensated!r} must be a Python bool (True keeps a float32 "
        "residual per bf16/f16 leaf so that small updates accumulate); pass "
        "compensated=True or False."
    )


def needs_residual(p: Any) -> bool:
    """Whether a params leaf keeps a residual: a real float array narrower than float32."""
    if not _trees.is_decayable(p) or not jnp.issubdtype(p.dtype, jnp.floating):
        return False
    return jnp.finfo(p.dtype).bits < 32


def init(params: PyTree, residual: list[bool]) -> PyTree:
    """Zeros in float32 where ``residual`` (sharded like the params leaf), ``MaskedNode`` elsewhere."""
    leaves, treedef = _trees.flatten(params)
    return treedef.unflatten([
        jnp.zeros_like(p, dtype=jnp.float32) if keep else optax.MaskedNode()
        for p, keep in zip(leaves, residual, strict=True)
    ])


def state_leaves(name: str, tree: Any, params: PyTree, keypaths: list[Any],
                 residual: list[bool]) -> list[Any]:
    """The state's residual leaves, checked against params (one per params leaf)."""
    p_leaves, p_def = _trees.flatten(params)
    r_leaves, r_def = _trees.flatten(tree)
    if r_def != p_def:
        raise _trees.structure_error(
            "state.residual", tree, params,
            f"The state of {name} was built for other params; rebuild it with this "
            "transform's init (compensated=True keeps one float32 residual per "
            "bf16/f16 leaf).",
        )
    for r, p, keep, kp in zip(r_leaves, p_leaves, residual, keypaths, strict=True):
        if keep and (getattr(r, "shape", None) != p.shape or getattr(r, "dtype", None) != jnp.float32):
            raise ValueError(
                f"{name}.update: the residual at {_trees.where(kp)} is "
                f"{getattr(r, 'dtype', type(r).__name__)}{getattr(r, 'shape', '')}, not the "
                f"float32{p.shape} a {jnp.dtype(p.dtype).name} params leaf keeps with "
                "compensated=True; the state was built for other params (call init "
                "with these params)."
            )
    return r_leaves


def land(target: jax.Array, p: jax.Array, ud: Any) -> tuple[jax.Array, jax.Array]:
    """``(u', r')``: the update that ``optax.apply_updates`` turns into
    ``round(target)``, and what that leaves of ``target``."""
    theta = target.astype(p.dtype)
    u_out = (theta.astype(target.dtype) - p.astype(target.dtype)).astype(ud)
    landed = jnp.asarray(p + u_out).astype(p.dtype)  # optax.apply_updates' own arithmetic
    return u_out, target - landed.astype(target.dtype)


def next_tree(tree: PyTree, new: dict[int, Any]) -> PyTree:
    """The residual tree with leaf ``i`` replaced by ``new[i]`` (kept where absent)."""
    leaves, treedef = _trees.flatten(tree)
    return treedef.unflatten([
        new[i].astype(r.dtype) if i in new else r for i, r in enumerate(leaves)])
