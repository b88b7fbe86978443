r"""The sibling formulation: the same values, written so that XLA:CPU fuses them.

XLA:CPU compiles ``decaytx.adamw`` (and ``optax.adamw``) to three kernels per
leaf: one per moment and one for the parameter update, which reads the
moments the first two wrote, 40 bytes per f32 parameter in all. The one-pass
minimum is 28 (read :math:`\theta, g, m, v`; write :math:`\theta, m, v`).
XLA:CPU can merge kernels that read the same inputs ("sibling" multi-output
fusion), but only when the option is on, and only when the update does not
consume the moment kernels' outputs. The expressions here recompute
:math:`m_t, v_t` (and the penalised gradient) for the update with no
subexpression in common with the stored ones (``-(g·(-c) + m·(-b))`` for
``c·g + b·m``), so common-subexpression elimination cannot fold them back.
They are bitwise equal: IEEE negation is exact, ``-(-a + -b) == a + b`` and
``a * -c == -(a * c)`` in round-to-nearest.

Each function is a pure per-leaf expression; the decay's own leaf maths, its
dtype rules and its checks come from the decay's :class:`~decaytx._transform.Stage`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def l2_negated(u: jax.Array, p: jax.Array, a: jax.Array | None, weight_decay: jax.Array) -> jax.Array:
    """``u + wd (p - a)`` as ``-((-u) + (-(wd (p - a))))``: the L2 leaf, a second time."""
    neg = p * (-weight_decay) if a is None else (a - p) * weight_decay  # == -(wd * d), exactly
    return -((-u) + neg)


def l2_subtracted(u: jax.Array, p: jax.Array, a: jax.Array | None, weight_decay: jax.Array) -> jax.Array:
    """``u + wd (p - a)`` as ``u - (-(wd (p - a)))``: the L2 leaf, a third time."""
    neg = (-p) * weight_decay if a is None else (a + (-p)) * weight_decay  # == -(wd * d), exactly
    return u - neg


def adam_pair(
    gm: jax.Array, gu: jax.Array, m: jax.Array, v: jax.Array, b1: float, b2: float,
    gv: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Adam's moments as ``optax.scale_by_adam`` writes them, and siblings.

    ``gm``/``gv`` feed the stored first/second moments (``gv`` defaults to
    ``gm``), ``gu`` the recomputed ones.
    """
    gv = gm if gv is None else gv
    m1 = (1 - b1) * gm + b1 * m
    v1 = (1 - b2) * (gv**2) + b2 * v
    m2 = -(gu * (-(1 - b1)) + m * (-b1))
    v2 = -((gu * (-gu)) * (1 - b2) + v * (-b2))
    return m1, v1, m2, v2


def trace_pair(
    gm: jax.Array, gu: jax.Array, t: jax.Array, mu: float, nesterov: bool
) -> tuple[jax.Array, jax.Array]:
    """``optax.trace``'s buffer ``g + mu t`` and the update it gives, as a sibling."""
    t1 = gm + mu * t
    t2 = -((-gu) + t * (-mu))
    return t1, (gu + mu * t2 if nesterov else t2)


def lr_factor(learning_rate: Any, rates: Any) -> Any:
    """What ``optax.scale_by_learning_rate`` multiplies by, before its cast
    (a schedule's eta_t from ``rates``, the step's one evaluation)."""
    if callable(learning_rate):
        return -1 * rates.raw(learning_rate)
    return -1 * learning_rate


def lr_scale(u: jax.Array, learning_rate: Any, factor: Any) -> jax.Array:
    """What ``optax.scale_by_learning_rate`` does to one leaf (``factor`` from :func:`lr_factor`)."""
    if callable(learning_rate):
        return jnp.array(factor, dtype=u.dtype) * u
    return factor * u

