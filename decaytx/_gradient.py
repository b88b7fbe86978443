"""Gradient-side (coupled) forms: the penalty's gradient is added to g.

These go FIRST in a chain, so that the optimizer's preconditioner sees the
penalised gradient. This is "L2 regularization" in Loshchilov & Hutter's
terms, and what PyTorch's ``SGD``/``Adam`` ``weight_decay=`` does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from decaytx import _groups
from decaytx._coefficients import Coefficient
from decaytx._transform import Form, decay_transform


def sign(x: jax.Array) -> jax.Array:
    """sign(x) with sign(0) = 0; z/|z| for complex z (0 at 0)."""
    return jnp.sign(x)


def _l2_term(u: jax.Array, p: jax.Array, a: jax.Array | None, weight_decay: jax.Array) -> jax.Array:
    return u + weight_decay * (p if a is None else p - a)


def _elastic_term(
    u: jax.Array, p: jax.Array, a: Any, l1: jax.Array | None, l2: jax.Array | None
) -> jax.Array:
    if l1 is not None:
        u = u + l1 * sign(p)
    if l2 is not None:
        u = u + l2 * p
    return u


def _l1_term(u: jax.Array, p: jax.Array, a: Any, l1: jax.Array) -> jax.Array:
    return _elastic_term(u, p, a, l1, None)


def add_l2_grad(
    weight_decay: Coefficient, *, mask: Any = None, anchor: Any = None
) -> optax.GradientTransformation:
    r"""Adds the gradient of an L2 penalty to the incoming gradient.

    .. math::
      g \leftarrow g + \lambda_t (\theta - a)

    the gradient of :math:`\tfrac{\lambda}{2}\lVert\theta - a\rVert^2`
    (:func:`decaytx.l2_penalty`). Place it FIRST in a chain: the optimizer then
    sees the penalised gradient. This is PyTorch's ``weight_decay=`` on
    ``SGD``/``Adam``; a loss written as :math:`\lambda\lVert\theta\rVert^2`
    (no 1/2, as Keras' ``L2`` regularizer) needs ``weight_decay = 2 * lambda``.

    Args:
      weight_decay: :math:`\lambda \ge 0`: a float, a scalar array or a
        schedule of the step count.
      mask: which leaves to decay: a pytree of bools (or a prefix of params),
        or a callable of params returning one (see :mod:`decaytx.masks`).
      anchor: ``None`` (decay toward 0), ``"init"`` (toward the params given
        to ``init``) or a pytree like params (kept in the state).

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = optax.chain(decaytx.add_l2_grad(0.1), optax.sgd(1.0))
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates
      Array([-0.1,  0.2], dtype=float32)

    References:
      Krogh & Hertz, `A Simple Weight Decay Can Improve Generalization
      <https://papers.nips.cc/paper/563>`_, NeurIPS 1991.
    """
    form = l2_form(weight_decay)
    return optax.identity() if form is None else decay_transform(form, mask=mask, anchor=anchor)


def l2_form(weight_decay: Any) -> Form | None:
    """The :class:`Form` of ``g + lambda_t (theta - a)``, or ``None`` when it is zero."""
    _groups.check("weight_decay", weight_decay)
    if _groups.is_zero(weight_decay):
        return None
    return Form("add_l2_grad", _l2_term, {"weight_decay": weight_decay})


def add_l1_subgrad(l1: Coefficient, *, mask: Any = None) -> optax.GradientTransformation:
    r"""Adds a subgradient of an L1 penalty to the incoming gradient.

    .. math::
      g \leftarrow g + \lambda_t \operatorname{sign}(\theta), \qquad
      \operatorname{sign}(0) = 0

    a subgradient of :math:`\lambda\lVert\theta\rVert_1`
    (:func:`decaytx.l1_penalty`); for complex :math:`z`, :math:`z/|z|`.
    Place it FIRST in a chain. The subgradient makes weights oscillate around 0
    rather than reach it: for exact zeros use :func:`decaytx.prox_l1`.

    Args:
      l1: :math:`\lambda \ge 0`: a float, a scalar array or a schedule.
      mask: which leaves to decay (see :func:`add_l2_grad`).

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> t = decaytx.add_l1_subgrad(0.5)
      >>> params = jnp.array([2.0, 0.0, -3.0])
      >>> t.update(jnp.ones(3), t.init(params), params)[0]
      Array([1.5, 1. , 0.5], dtype=float32)

    References:
      Tibshirani, `Regression Shrinkage and Selection via the Lasso
      <https://doi.org/10.1111/j.2517-6161.1996.tb02080.x>`_, 1996.
    """
    _groups.check("l1", l1)
    if _groups.is_zero(l1):
        return optax.identity()
    return decay_transform(Form("add_l1_subgrad", _l1_term, {"l1": l1}), mask=mask)


def add_elastic_net_grad(
    l1: Coefficient, l2: Coefficient, *, mask: Any = None
) -> optax.GradientTransformation:
    r"""Adds a subgradient of the elastic-net penalty to the incoming gradient.

    .. math::
      g \leftarrow g + \lambda_1 \operatorname{sign}(\theta) + \lambda_2 \theta

    a subgradient of :math:`\lambda_1\lVert\theta\rVert_1 +
    \tfrac{\lambda_2}{2}\lVert\theta\rVert^2`
    (:func:`decaytx.elastic_net_penalty`). Place it FIRST in a chain.
    A concrete zero coefficient drops its term.

    Args:
      l1: :math:`\lambda_1 \ge 0`: a float, a scalar array or a schedule.
      l2: :math:`\lambda_2 \ge 0`: a float, a scalar array or a schedule.
      mask: which leaves to decay (see :func:`add_l2_grad`).

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> t = decaytx.add_elastic_net_grad(0.5, 0.1)
      >>> params = jnp.array([2.0, 0.0, -3.0])
      >>> t.update(jnp.zeros(3), t.init(params), params)[0]
      Array([ 0.7,  0. , -0.8], dtype=float32)

    References:
      Zou & Hastie, `Regularization and variable selection via the elastic net
      <https://doi.org/10.1111/j.1467-9868.2005.00503.x>`_, 2005.
    """
    _groups.check("l1", l1)
    _groups.check("l2", l2)
    if _groups.is_zero(l1) and _groups.is_zero(l2):
        return optax.identity()
    return decay_transform(
        Form("add_elastic_net_grad", _elastic_term,
             {"l1": None if _groups.is_zero(l1) else l1, "l2": None if _groups.is_zero(l2) else l2}),
        mask=mask,
    )
