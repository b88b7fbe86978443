"""Penalties as loss terms: their ``jax.grad`` is what the gradient-side
forms add to g.

Use them to report the regularised objective, or to regularise through the
loss instead of through the chain (not both: that doubles the decay).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from decaytx import _coefficients as coef
from decaytx import _mask_arg, _trees


@jax.custom_jvp
def _abs(x: jax.Array) -> jax.Array:
    """|x| whose derivative is sign(x) with sign(0) = 0 (z/|z| for complex z).

    ``jax.grad(jnp.abs)(0.0)`` is 1, which would not match the 0 that
    :func:`decaytx.add_l1_subgrad` adds at 0.
    """
    return jnp.abs(x)


@_abs.defjvp
def _abs_jvp(primals: Any, tangents: Any) -> Any:
    (x,), (t,) = primals, tangents
    return jnp.abs(x), jnp.real(jnp.conj(jnp.sign(x)) * t)


def _masked_sum(params: Any, mask: Any, fn: Any, anchor: Any = None) -> jax.Array:
    # A Python float or string leaf would otherwise be skipped silently.
    _trees.check_leaves(params, "penalty")
    mask_tree = _mask_arg.resolve(mask, params)
    if anchor is None:
        anchor = jax.tree.map(lambda _: None, params, is_leaf=_trees.is_empty)
    elif jax.tree_util.tree_structure(anchor, is_leaf=_trees.is_empty) != jax.tree_util.tree_structure(
        params, is_leaf=_trees.is_empty
    ):
        raise _trees.structure_error(
            "anchor", anchor, params, "Pass a pytree with exactly the structure of params."
        )
    terms = [
        jnp.sum(fn(p if a is None else p - a)).astype(jnp.float32)
        if jnp.finfo(p.dtype).bits < 32
        else jnp.sum(fn(p if a is None else p - a))
        for p, m, a in zip(
            jax.tree_util.tree_leaves(params, is_leaf=_trees.is_empty),
            jax.tree_util.tree_leaves(mask_tree, is_leaf=_trees.is_empty),
            jax.tree_util.tree_leaves(anchor, is_leaf=_trees.is_empty),
            strict=True,
        )
        if m and _trees.is_decayable(p)
    ]
    return sum(terms, jnp.zeros([], jnp.float32))


def l2_penalty(params: Any, weight_decay: Any, *, mask: Any = None, anchor: Any = None) -> jax.Array:
    r"""The L2 penalty :math:`\tfrac{\lambda}{2}\lVert\theta - a\rVert^2`.

    Its gradient is :math:`\lambda(\theta - a)`, exactly what
    :func:`decaytx.add_l2_grad` adds. Note the 1/2: a loss written
    :math:`\lambda\lVert\theta\rVert^2` (Keras ``L2(l2=lambda)``) equals
    ``l2_penalty(params, 2 * lambda)``.

    Args:
      params: a pytree of arrays.
      weight_decay: :math:`\lambda \ge 0` (a float or scalar array).
      mask: which leaves to include (see :func:`decaytx.add_l2_grad`).
      anchor: ``None`` or a pytree like params.

    Returns:
      A scalar (float32, or wider if params are wider); complex leaves
      contribute :math:`|z - a|^2`.

    Examples:
      >>> import jax, jax.numpy as jnp, decaytx
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> decaytx.l2_penalty(params, 0.1)
      Array(1.25, dtype=float32)
      >>> jax.grad(decaytx.l2_penalty)(params, 0.1)["w"]
      Array([0.3, 0.4], dtype=float32)

    References:
      Krogh & Hertz, `A Simple Weight Decay Can Improve Generalization
      <https://papers.nips.cc/paper/563>`_, NeurIPS 1991.
    """
    coef.check("weight_decay", weight_decay)
    return weight_decay / 2 * _masked_sum(params, mask, lambda d: jnp.real(d * jnp.conj(d)), anchor)


def l1_penalty(params: Any, l1: Any, *, mask: Any = None) -> jax.Array:
    r"""The L1 penalty :math:`\lambda\lVert\theta\rVert_1`.

    Its gradient (``jax.grad``, which takes 0 at 0) is
    :math:`\lambda\operatorname{sign}(\theta)`, what :func:`decaytx.add_l1_subgrad` adds.

    Args:
      params: a pytree of arrays.
      l1: :math:`\lambda \ge 0`.
      mask: which leaves to include.

    Returns:
      A scalar; complex leaves contribute :math:`|z|`.

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> decaytx.l1_penalty({"w": jnp.array([3.0, -4.0])}, 0.5)
      Array(3.5, dtype=float32)

    References:
      Tibshirani, `Regression Shrinkage and Selection via the Lasso
      <https://doi.org/10.1111/j.2517-6161.1996.tb02080.x>`_, 1996.
    """
    coef.check("l1", l1)
    return l1 * _masked_sum(params, mask, _abs)


def elastic_net_penalty(params: Any, l1: Any, l2: Any, *, mask: Any = None) -> jax.Array:
    r"""The elastic-net penalty :math:`\lambda_1\lVert\theta\rVert_1 + \tfrac{\lambda_2}{2}\lVert\theta\rVert^2`.

    Its gradient is what :func:`decaytx.add_elastic_net_grad` adds.

    Args:
      params: a pytree of arrays.
      l1: :math:`\lambda_1 \ge 0`.
      l2: :math:`\lambda_2 \ge 0`.
      mask: which leaves to include.

    Returns:
      A scalar.

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> decaytx.elastic_net_penalty({"w": jnp.array([3.0, -4.0])}, 0.5, 0.1)
      Array(4.75, dtype=float32)

    References:
      Zou & Hastie, `Regularization and variable selection via the elastic net
      <https://doi.org/10.1111/j.1467-9868.2005.00503.x>`_, 2005.
    """
    # Checked here so that a bad l2 is reported as l2, not as weight_decay.
    coef.check("l1", l1)
    coef.check("l2", l2)
    return l1_penalty(params, l1, mask=mask) + l2_penalty(params, l2, mask=mask)
