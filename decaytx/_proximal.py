"""Proximal forms: exact zeros from the soft-threshold operator.

The operator is a plain function, testable alone (as in jaxopt's ``prox``);
the transforms only wire it to theta, u and the step count.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from decaytx import _coefficients as coef
from decaytx import _compensated, _groups, _update_side
from decaytx._coefficients import Coefficient
from decaytx._transform import Form, decay_transform


def soft_threshold(x: jax.Array, tau: Any) -> jax.Array:
    r"""The soft-threshold operator, the prox of :math:`\tau\lVert\cdot\rVert_1`.

    .. math::
      S(x, \tau) = \operatorname{sign}(x) \max(|x| - \tau, 0)
      = \operatorname{argmin}_z \tfrac12 (z - x)^2 + \tau |z|

    Elementwise; exactly 0 on :math:`[-\tau, \tau]`. For complex :math:`x` it
    shrinks the modulus and keeps the phase: :math:`x \max(|x| - \tau, 0)/|x|`.

    Args:
      x: an array (real or complex).
      tau: the threshold :math:`\tau \ge 0`, a scalar (cast to the real dtype
        of ``x``).

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> decaytx.soft_threshold(jnp.array([-2.0, -0.5, 0.0, 0.5, 3.0]), 1.0)
      Array([-1.,  0.,  0.,  0.,  2.], dtype=float32)

    References:
      Donoho, `De-noising by soft-thresholding
      <https://doi.org/10.1109/18.382009>`_, 1995.
    """
    coef.check("tau", tau)
    return _soft_threshold(x, tau)


def _soft_threshold(x: jax.Array, tau: Any) -> jax.Array:
    # The operator without the check on tau: the transforms pass factors
    # built from coefficients already checked.
    x = jnp.asarray(x)
    tau = coef.cast_for(tau, x)
    if jnp.iscomplexobj(x):
        # x * (1 - tau/|x|), not (x/|x|) * (|x| - tau): |x| overflows to inf
        # for finite x near the dtype's max, where that is nan (and 1 -
        # tau/inf ignores tau); there tau/|x| = (tau/2)/|x/2|, exactly.
        # (Dividing by max(|re|, |im|) instead gets rewritten by XLA into a
        # product that overflows again.)
        mag = jnp.abs(x)
        ratio = jnp.where(jnp.isfinite(mag), tau / mag, (tau * 0.5) / jnp.abs(x * 0.5))
        keep = ratio < 1  # false at x = 0 (ratio inf or nan)
        factor = jnp.where(keep, 1 - ratio, jnp.zeros_like(ratio))
        return x * factor.astype(x.dtype)
    # x - clip(x, -tau, tau) equals sign(x) * max(|x| - tau, 0) bit for bit,
    # and gives +0 (not -0) on [-tau, tau].
    return x - jnp.clip(x, -tau, tau)


def _prox_term(
    u: jax.Array, p: jax.Array, a: Any, t1: jax.Array | None, t2: jax.Array | None
) -> jax.Array:
    z = p + u
    if t1 is not None:
        z = _soft_threshold(z, t1)
    if t2 is not None:
        # A multiplication by the reciprocal, which is what XLA makes of a
        # division by a constant: the same bits whether t2 is a constant, an
        # operand (decaytx._constants.pick), traced or eager.
        z = z * (1 / (1 + t2))
    # theta + (S - theta) is exactly S = 0 where S is 0.
    return z - p


def prox_l1(
    l1: Coefficient, *, learning_rate: Coefficient | None = _update_side.REQUIRED, mask: Any = None,
    compensated: bool = False,
) -> optax.GradientTransformation:
    r"""Proximal L1 step: exact zeros.

    .. math::
      \theta^+ = \theta + u, \qquad u \leftarrow S(\theta^+, m_t\lambda_t) - \theta

    so that ``optax.apply_updates`` lands on :math:`S(\theta + u, m_t\lambda_t)`,
    the proximal (ISTA/FOBOS) step for :math:`\lambda\lVert\theta\rVert_1`:
    weights with :math:`|\theta + u| \le m_t\lambda_t` become exactly 0.
    Place it LAST in a chain, after ``optax.scale_by_learning_rate``; for the
    true proximal-gradient step pass the same ``learning_rate`` as the
    optimizer (``m_t = \eta_t``).

    ``compensated=True`` keeps a float32 residual per bf16/f16 leaf and
    applies the prox at :math:`\theta + r` (the float32 value the residual
    stands for), so that small shrinkage accumulates instead of rounding away
    (see :func:`decaytx.add_decoupled_decay`, docs/precision.md).

    Args:
      l1: :math:`\lambda \ge 0`: a float, a scalar array or a schedule.
      learning_rate: the multiplier :math:`m_t` (see
        :func:`decaytx.add_decoupled_decay`); ``None`` gives 1; a
        coefficient tree or :func:`decaytx.per_leaf` gives each leaf its own.
      mask: which leaves to shrink (see :func:`decaytx.add_l2_grad`).
      compensated: keep a float32 residual per bf16/f16 leaf (a Python bool).

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = optax.chain(optax.sgd(0.1), decaytx.prox_l1(1.0, learning_rate=0.1))
      >>> params = jnp.array([0.05, 1.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> optax.apply_updates(params, updates)
      Array([0. , 0.9], dtype=float32)

    References:
      Duchi & Singer, `Efficient Online and Batch Learning Using Forward
      Backward Splitting <https://jmlr.org/papers/v10/duchi09a.html>`_, JMLR 2009.
      Beck & Teboulle, `A Fast Iterative Shrinkage-Thresholding Algorithm
      <https://doi.org/10.1137/080716542>`_, 2009.
    """
    return _prox("prox_l1", l1, 0.0, learning_rate, mask, compensated)


def prox_elastic_net(
    l1: Coefficient,
    l2: Coefficient,
    *,
    learning_rate: Coefficient | None = _update_side.REQUIRED,
    mask: Any = None,
    compensated: bool = False,
) -> optax.GradientTransformation:
    r"""Proximal elastic-net step: exact zeros and shrinkage.

    .. math::
      u \leftarrow \frac{S(\theta + u, m_t\lambda_1)}{1 + m_t\lambda_2} - \theta

    the prox of :math:`m_t(\lambda_1\lVert\theta\rVert_1 +
    \tfrac{\lambda_2}{2}\lVert\theta\rVert^2)` at :math:`\theta + u`. Place it
    LAST in a chain. ``l2 = 0`` is :func:`prox_l1`; ``l1 = 0`` is the
    implicit (backward) L2 step :math:`\theta^+/(1 + m\lambda_2)`.
    ``compensated=True``: as :func:`decaytx.prox_l1`.

    Args:
      l1: :math:`\lambda_1 \ge 0`: a float, a scalar array or a schedule.
      l2: :math:`\lambda_2 \ge 0`: a float, a scalar array or a schedule.
      learning_rate: the multiplier :math:`m_t`; ``None`` gives 1; a
        coefficient tree or :func:`decaytx.per_leaf` gives each leaf its own.
      mask: which leaves to shrink (see :func:`decaytx.add_l2_grad`).
      compensated: keep a float32 residual per bf16/f16 leaf (a Python bool).

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> t = decaytx.prox_elastic_net(0.5, 1.0, learning_rate=None)
      >>> params = jnp.array([0.25, 2.5])
      >>> updates, _ = t.update(jnp.zeros(2), t.init(params), params)
      >>> optax.apply_updates(params, updates)
      Array([0., 1.], dtype=float32)

    References:
      Zou & Hastie, `Regularization and variable selection via the elastic net
      <https://doi.org/10.1111/j.1467-9868.2005.00503.x>`_, 2005.
      Parikh & Boyd, `Proximal Algorithms
      <https://web.stanford.edu/~boyd/papers/prox_algs.html>`_, 2014, sec. 6.5.
    """
    return _prox("prox_elastic_net", l1, l2, learning_rate, mask, compensated)


def _prox(name: str, l1: Any, l2: Any, learning_rate: Any, mask: Any,
          compensated: Any = False) -> optax.GradientTransformation:
    _groups.check("l1", l1)
    _groups.check("l2", l2)
    m = _update_side.multiplier(learning_rate, name)
    compensated = _compensated.check(compensated)
    if ((_groups.is_zero(l1) and _groups.is_zero(l2)) or _groups.is_zero(m)) and not compensated:
        return optax.identity()
    form = Form(
        name, _prox_term,
        {
            "l1": None if _groups.is_zero(l1) else l1,
            "l2": None if _groups.is_zero(l2) else l2,
            "learning_rate": m,
        },
        side="update", combine=_thresholds, decides=("l1", "l2"), multiplier=m,
        params_dtype_out=True, requires=("learning_rate",), compensated=compensated,
    )
    return decay_transform(form, mask=mask)


def _thresholds(v: dict[str, Any]) -> dict[str, Any]:
    """``t1 = m * l1``, ``t2 = m * l2`` (``None`` for a zero coefficient)."""
    return {
        "t1": None if v["l1"] is None else v["learning_rate"] * v["l1"],
        "t2": None if v["l2"] is None else v["learning_rate"] * v["l2"],
    }
