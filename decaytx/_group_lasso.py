r"""Group lasso: whole groups of weights at exactly zero (structured sparsity).

L1 zeros single weights; pruning wants whole rows, columns or filters at zero.
The group lasso penalty :math:`\lambda\sum_g\lVert\theta_g\rVert_2` does
that, and its prox (block soft thresholding) is an operator on each group: a
plain function here (:func:`_group_shrink`, as jaxopt's ``prox_group_lasso``),
wired to theta, u and the step count by one :class:`decaytx._transform.Form`.

A group is one slice of a leaf along the axes NOT in ``axis``; the norm runs
over ``axis``. ``axis`` is a static fact about each leaf's rank, so it is
checked against every decayed leaf where the plan is decided (``init``, and
``update`` on params it has not seen), with the leaf's path in the message.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from decaytx import _coefficients as coef
from decaytx import _groups, _mask_arg, _trees, _update_side
from decaytx._coefficients import Coefficient
from decaytx._transform import Form, Stage

Axes = tuple[int, ...] | None  # normalised: None is every axis (one group per leaf)


def _check_axis(name: str, axis: Any) -> Axes:
    """``axis`` as a tuple of ints (or ``None``), refused clearly at construction."""
    if axis is None:
        return None
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    if any(isinstance(a, jax.Array) for a in items):
        raise TypeError(
            f"{name}: axis arrived as an array ({type(axis).__name__}): axis is structure "
            "(it shapes the groups), so it must be Python ints. optax.inject_hyperparams "
            "injects int arguments as numbers: use decaytx.inject_hyperparams (which "
            "keeps axis static), or static_args=('axis',)."
        )
    try:
        if any(isinstance(a, bool) for a in items):
            raise TypeError
        axes = tuple(operator.index(a) for a in items)
    except TypeError:
        raise TypeError(
            f"{name}: axis={axis!r} must be an int, a tuple of ints or None: the "
            "axes the norm runs over (each group is one slice along the other axes). "
            "E.g. axis=1 on a (features, outputs) kernel zeros whole input features, "
            "axis=0 zeros whole output units."
        ) from None
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name}: axis={axis!r} repeats an axis; give each axis once.")
    return axes


def _leaf_axes(axes: Axes, ndim: int) -> tuple[int, ...]:
    """``axes`` as non-negative axes of a leaf of rank ``ndim`` (unchecked)."""
    return tuple(range(ndim)) if axes is None else tuple(a % ndim if ndim else a for a in axes)


def _check_leaf_axes(name: str, axis: Any, axes: Axes, keypath: Any, leaf: Any) -> None:
    """Raises, naming the leaf, where ``axis`` is not a set of axes of ``leaf``."""
    nd = leaf.ndim
    fix = ("Give an axis every decayed leaf has, or leave the other leaves out "
           "with mask= (e.g. mask=decaytx.masks.ndim_at_least(2)).")
    where = f"the leaf at {_trees.where(keypath)} (shape {tuple(leaf.shape)}, ndim {nd})"
    if axes is None:
        return
    bad = [a for a in axes if not -nd <= a < nd]
    if bad:
        valid = f"axes {-nd}..{nd - 1}" if nd else "no axes (axis=() or None)"
        raise ValueError(f"{name}: axis={axis!r} is out of range for {where}, which has "
                         f"{valid}. {fix}")
    if len(set(_leaf_axes(axes, nd))) != len(axes):
        raise ValueError(f"{name}: axis={axis!r} names the same axis twice for {where}. {fix}")


def _group_norm(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    r""":math:`\lVert x_g\rVert_2` per group (kept dims), float32 or wider.

    Half-precision leaves are summed in float32 (a float16 square overflows
    past 256). A group of norm 0 gets norm 0 and a derivative of 0 (the
    subgradient the L1 forms take at 0), not the NaN of ``sqrt``'s at 0.
    """
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    sq = jnp.sum(jnp.real(x * jnp.conj(x)), axis=axes, keepdims=True)
    nonzero = sq > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1)), 0)


def _group_shrink(x: jax.Array, tau: Any, axes: tuple[int, ...]) -> jax.Array:
    r"""Block soft thresholding, the prox of :math:`\tau\sum_g\lVert\cdot\rVert_2`.

    .. math::
      x_g \max(0, 1 - \tau/\lVert x_g\rVert_2)
      = \operatorname{argmin}_z \tfrac12\lVert z - x_g\rVert^2 + \tau\lVert z\rVert_2

    Computed as :math:`x - x\,r` with :math:`r = \min(\tau/\lVert x_g\rVert, 1)`
    (additively: :math:`x(1 - r)` rounds a small :math:`r` away), in float32
    or wider and rounded once to ``x``'s dtype; a group with
    :math:`\lVert x_g\rVert \le \tau` (a zero group included) is exactly 0.
    Complex ``x``: the modulus of the group shrinks, the phases are kept.
    """
    norm = _group_norm(x, axes)
    tau = jnp.asarray(tau).astype(norm.dtype)
    keep = norm > tau  # false for a zero group, whatever tau >= 0
    ratio = jnp.where(keep, tau / jnp.where(keep, norm, 1), 1)
    xw = x.astype(jnp.promote_types(x.dtype, norm.dtype))
    return (xw - xw * ratio).astype(x.dtype)


def _prox_term(u: jax.Array, p: jax.Array, a: Any, t: jax.Array, *, axes: Axes) -> jax.Array:
    z = p + u
    # theta + (P - theta) is exactly P = 0 where the group is shrunk to 0.
    return _group_shrink(z, t, _leaf_axes(axes, p.ndim)) - p


def _threshold(v: dict[str, Any]) -> dict[str, Any]:
    """``t = m * l1``, the threshold on each group's norm."""
    return {"t": v["learning_rate"] * v["l1"]}


def prox_group_lasso(
    l1: Coefficient,
    *,
    learning_rate: Coefficient | None = _update_side.REQUIRED,
    axis: int | Sequence[int] | None,
    mask: Any = None,
) -> optax.GradientTransformation:
    r"""Proximal group-lasso step: whole groups of weights at exactly 0.

    .. math::
      \theta^+ = \theta + u, \qquad
      \theta_g \leftarrow \theta^+_g \max\Bigl(0,\;
        1 - \frac{m_t\lambda_t}{\lVert\theta^+_g\rVert_2}\Bigr), \qquad
      u \leftarrow \theta_{\text{new}} - \theta

    the proximal step for the penalty :math:`\lambda\sum_g\lVert\theta_g\rVert_2`
    (:func:`decaytx.group_lasso_penalty`). A group is one slice of a leaf
    along the axes *not* in ``axis``; the norm runs over ``axis``. For a
    ``(in, out)`` kernel, ``axis=1`` groups by input feature (zeroes rows:
    feature selection, scikit-learn's ``MultiTaskLasso`` with tasks as
    outputs), ``axis=0`` by output unit (zeroes columns: neuron pruning); for
    an ``(h, w, in, out)`` convolution kernel ``axis=(0, 1, 2)`` zeroes whole
    filters. A group with :math:`\lVert\theta^+_g\rVert \le m_t\lambda_t`
    becomes exactly 0, and a group at 0 with a zero step stays exactly 0.
    ``axis=()`` (groups of one weight) is :func:`decaytx.prox_l1`. Complex
    leaves: the group's modulus shrinks, the phases are kept (as
    :func:`decaytx.soft_threshold`).

    Place it LAST in a chain, after ``optax.scale_by_learning_rate``; for the
    true proximal-gradient step pass the optimizer's learning rate
    (:math:`m_t = \eta_t`).

    Args:
      l1: :math:`\lambda \ge 0`: a float, a scalar array, a schedule, a
        coefficient tree (a prefix of params) or :func:`decaytx.per_leaf`.
      learning_rate: the multiplier :math:`m_t` (see
        :func:`decaytx.add_decoupled_decay`); ``None`` gives 1; a coefficient
        tree or :func:`decaytx.per_leaf` gives each leaf its own. Required.
      axis: the axes the norm runs over: an int, a tuple of ints (negative
        counts from the end) or ``None`` (every axis: each leaf is one
        group). Checked against every decayed leaf at ``init`` (and at
        ``update`` on new params); mask out leaves of another rank.
      mask: which leaves to shrink (see :func:`decaytx.add_l2_grad`).

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> t = decaytx.prox_group_lasso(1.0, learning_rate=None, axis=1)
      >>> params = jnp.array([[3.0, 4.0], [0.3, 0.4]])  # row norms 5 and 0.5
      >>> u, _ = t.update(jnp.zeros_like(params), t.init(params), params)
      >>> optax.apply_updates(params, u)
      Array([[2.4, 3.2],
             [0. , 0. ]], dtype=float32)

    References:
      Yuan & Lin, `Model selection and estimation in regression with grouped
      variables <https://doi.org/10.1111/j.1467-9868.2005.00532.x>`_, 2006.
      Parikh & Boyd, `Proximal Algorithms
      <https://web.stanford.edu/~boyd/papers/prox_algs.html>`_, 2014, sec. 6.5.1
      (the prox of the :math:`\ell_2` norm).
    """
    name = "prox_group_lasso"
    axes = _check_axis(name, axis)
    _groups.check("l1", l1)
    m = _update_side.multiplier(learning_rate, name)
    if _groups.is_zero(l1) or _groups.is_zero(m):
        return optax.identity()
    form = Form(
        name, functools.partial(_prox_term, axes=axes), {"l1": l1, "learning_rate": m},
        side="update", combine=_threshold, decides=("l1",), multiplier=m,
        params_dtype_out=True, requires=("learning_rate",),
    )
    checked = _AxisChecked(Stage(form, mask=mask), axis, axes)
    return optax.GradientTransformation(checked.init, checked.update)


class _AxisChecked:
    """The stage's ``init``/``update``, with ``axis`` checked against each decayed leaf.

    A class, not closures, so that the transform pickles like every form
    (its ``init`` and ``update`` are bound methods of a picklable object).
    """

    def __init__(self, stage: Stage, axis: Any, axes: Axes) -> None:
        self.stage, self.axis, self.axes = stage, axis, axes

    def check(self, params: Any) -> None:
        plan = self.stage.plan(params)  # the plan init decides (cached); it names the leaves
        for lf, p in zip(plan.leaves, _trees.flatten(params)[0], strict=True):
            if lf.decayed:
                _check_leaf_axes(self.stage.name, self.axis, self.axes, lf.keypath, p)

    def init(self, params: Any) -> Any:
        if not _trees.is_params_placeholder(params):
            self.check(params)
        return self.stage.init(params)

    def update(self, updates: Any, state: Any, params: Any = None) -> Any:
        if updates is not None and params is not None:
            self.check(params)
        return self.stage.update(updates, state, params)  # pyright: ignore[reportArgumentType]


def group_lasso_penalty(
    params: Any, l1: Any, *, axis: int | Sequence[int] | None, mask: Any = None
) -> jax.Array:
    r"""The group-lasso penalty :math:`\lambda\sum_g\lVert\theta_g\rVert_2`.

    Groups as in :func:`decaytx.prox_group_lasso` (the norm runs over
    ``axis``), whose prox it is. Its gradient (``jax.grad``) is
    :math:`\lambda\,\theta_g/\lVert\theta_g\rVert_2` on a non-zero group and
    0 on a zero group (the subgradient the L1 forms take at 0), never NaN.

    Args:
      params: a pytree of arrays.
      l1: :math:`\lambda \ge 0` (a float or scalar array).
      axis: the axes the norm runs over (an int, a tuple of ints, or ``None``
        for each leaf as one group).
      mask: which leaves to include (see :func:`decaytx.add_l2_grad`).

    Returns:
      A scalar (float32, or wider if params are wider); complex leaves
      contribute :math:`\sqrt{\sum |z|^2}` per group.

    Examples:
      >>> import jax, jax.numpy as jnp, decaytx
      >>> params = {"w": jnp.array([[3.0, 4.0], [0.0, 0.0]])}
      >>> decaytx.group_lasso_penalty(params, 0.5, axis=1)
      Array(2.5, dtype=float32)
      >>> jax.grad(decaytx.group_lasso_penalty)(params, 0.5, axis=1)["w"]
      Array([[0.3, 0.4],
             [0. , 0. ]], dtype=float32)

    References:
      Yuan & Lin, `Model selection and estimation in regression with grouped
      variables <https://doi.org/10.1111/j.1467-9868.2005.00532.x>`_, 2006.
    """
    name = "group_lasso_penalty"
    coef.check("l1", l1)
    axes = _check_axis(name, axis)
    # A Python float or string leaf would otherwise be skipped silently.
    _trees.check_leaves(params, "penalty")
    masked = jax.tree_util.tree_leaves(_mask_arg.resolve(mask, params), is_leaf=_trees.is_empty)
    terms = []
    for (keypath, p), m in zip(_trees.flatten_with_path(params), masked, strict=True):
        if m and _trees.is_decayable(p):
            _check_leaf_axes(name, axis, axes, keypath, p)
            terms.append(jnp.sum(_group_norm(p, _leaf_axes(axes, p.ndim))))
    return l1 * sum(terms, jnp.zeros([], jnp.float32))
