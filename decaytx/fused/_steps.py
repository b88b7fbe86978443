"""The public fused steps: each recipe's signature, its plain program, and the sibling form.

Each step takes its recipe's arguments (bound against the recipe's own
signature, so an argument added to a recipe reaches its fused step), builds
the recipe's chain on the recipe's decay stage, and adds the sibling update
of :mod:`decaytx.fused._step` on that same stage. The arguments the sibling
form does not fuse run the recipe's exact program.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optax

from decaytx import _coefficients as coef
from decaytx import _parity, _recipes
from decaytx._chains import (
    decay_multiplier,
    decoupled_chain,
    decoupled_stage,
    l2_chain,
    l2_stage,
    shared_rate,
)
from decaytx._coefficients import Coefficient
from decaytx._learning_rate import LearningRate
from decaytx.fused._flat import scale_by_adam_flat
from decaytx.fused._step import (
    Formulation,
    Layout,
    Sibling,
    check_formulation,
    check_layout,
    fused_transform,
    with_layout,
)

_KW = inspect.Parameter.KEYWORD_ONLY


def _recipe_args(recipe: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The recipe's arguments, completed with its defaults (an unknown one is a TypeError)."""
    bound = inspect.signature(recipe).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _signed(recipe: Callable[..., Any], *extra: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Gives a fused step its recipe's signature plus ``extra`` (for ``help`` and ``inspect``)."""

    def sign(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(fn, eval_str=True).parameters
        theirs = inspect.signature(recipe, eval_str=True)  # types, not strings: inject_hyperparams reads them
        params = [*theirs.parameters.values(), *(own[name].replace(kind=_KW) for name in extra)]
        fn.__signature__ = theirs.replace(parameters=params)  # type: ignore[attr-defined]
        return fn

    return sign


def _flat_adam(name: str, layout: Layout, a: dict[str, Any]) -> optax.GradientTransformation | None:
    """The flat-moments Adam, or ``None`` where it cannot hold the state (AMSGrad)."""
    if not a["amsgrad"]:
        return scale_by_adam_flat(b1=a["b1"], b2=a["b2"], eps=a["eps"], eps_root=a.get("eps_root", 0.0),
                                  mu_dtype=a["mu_dtype"], nesterov=a.get("nesterov", False))
    if layout == "flat":
        raise ValueError(
            f"{name}: amsgrad=True keeps a third moment (the running max), which "
            "the flat layout does not hold; pass layout='tree' (or 'auto') with "
            "amsgrad=True, or amsgrad=False with layout='flat'."
        )
    return None


def _sgd_fusable(a: dict[str, Any]) -> bool:
    return coef.concrete_value(a["dampening"]) == 0.0 and a["accumulator_dtype"] is None


@_signed(_recipes.adamw, "formulation", "layout")
def adamw(learning_rate: optax.ScalarOrSchedule, weight_decay: Coefficient, *,
           formulation: Formulation = "auto", layout: Layout = "auto",
           **recipe_kwargs: Any) -> optax.GradientTransformation:
    r""":func:`decaytx.adamw` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        - m_t \lambda (\theta_t - a)

    The recipe's maths, arguments, state and values (to float32 rounding:
    within 8 ulps, ``tests/test_fused.py``), its moments and update written
    as sibling computations over :math:`(\theta, g, m, v)`; the decay is the
    recipe's own stage (masks, coefficient trees, anchors, checks). Per-leaf
    learning rates (a tree or ``per_leaf``) are fused too: each leaf is
    scaled by its own rate from the recipe's learning-rate plan, and its
    decay follows that rate. With
    ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
    each leaf compiles to one kernel moving 28 bytes per f32 parameter (40
    for ``optax.adamw``); without it (or off CPU) ``formulation="auto"`` runs
    exactly :func:`decaytx.adamw`'s program
    (:func:`decaytx.fused.multi_output_fusion_active`).

    Args:
      learning_rate: as :func:`decaytx.adamw`.
      weight_decay: as :func:`decaytx.adamw`.
      formulation: ``"auto"`` (the sibling form exactly when multi-output
        fusion is active), ``"sibling"`` (always: for measurements) or
        ``"plain"`` (always the recipe's program).
      layout: where Adam's moments live, chosen at ``init`` (the states
        differ): ``"tree"`` (like params: the recipe's state), ``"flat"`` (one
        flat buffer per dtype, :mod:`decaytx.fused._flat`: its own state, a
        checkpoint does not move between layouts) or ``"auto"`` (``"flat"``
        exactly when multi-output fusion is active, ``formulation`` is not
        ``"plain"`` and the float leaves average under ``FLAT_MEAN_LEAF_SIZE``
        = 8192 elements, the measured break-even of
        ``experiments/measure_flat_moments.py``; docs/performance.md, "Many
        small leaves: flat moments").
      **recipe_kwargs: every other argument of :func:`decaytx.adamw`, with
        its default (``inspect.signature`` shows them all). ``b1``, ``b2``,
        ``eps``, ``eps_root``, ``mask``, ``anchor`` (read once more per
        step: +4 B/param), ``decay_scaling``, ``cautious`` and ``compensated``
        (the recipe's stage lands each bf16/f16 leaf's step, in both
        layouts; it does not fuse into one kernel: docs/precision.md) are fused;
        ``mu_dtype``, ``nesterov`` and ``amsgrad`` other than their defaults
        run the recipe's program (``amsgrad=True`` with ``layout="flat"``
        raises a ``ValueError`` naming it: the flat buffers hold two moments).

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.adamw`'s
      (in the tree layout).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.fused.adamw(0.1, 0.01)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates  # eta * lambda * theta, as decaytx.adamw
      Array([-0.001,  0.002], dtype=float32)

    References:
      `XLA flags <https://openxla.org/xla/flags_guidance>`_.
    """
    a = _recipe_args(_recipes.adamw, (learning_rate, weight_decay), recipe_kwargs)
    formulation, layout = check_formulation(formulation), check_layout(layout)
    m = decay_multiplier(learning_rate, a["decay_scaling"])
    lr = LearningRate(learning_rate)
    opt = _parity.adam(a["b1"], a["b2"], a["eps"], a["eps_root"], a["mu_dtype"], a["nesterov"], a["amsgrad"])
    stage = decoupled_stage(m, weight_decay, a["mask"], a["anchor"], a["cautious"], a["compensated"])
    fusable = a["mu_dtype"] is None and not a["nesterov"] and not a["amsgrad"]
    sibling = Sibling(adam=True, coupled=False, b1=a["b1"], b2=a["b2"], eps=a["eps"], eps_root=a["eps_root"])
    tree = fused_transform(
        "fused.adamw", decoupled_chain(lr, stage, opt),
        sibling.update(lr, stage, shared_rate(lr, stage)),
        formulation if fusable else "plain")
    flat = _flat_adam("fused.adamw", layout, a)
    flat = None if flat is None else decoupled_chain(lr, stage, flat)
    return with_layout("fused.adamw", tree, flat, layout, formulation)


@_signed(_recipes.adam_l2, "formulation", "layout")
def adam_l2(learning_rate: optax.ScalarOrSchedule, weight_decay: Coefficient, *,
           formulation: Formulation = "auto", layout: Layout = "auto",
           **recipe_kwargs: Any) -> optax.GradientTransformation:
    r""":func:`decaytx.adam_l2` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      g_t \leftarrow g_t + \lambda(\theta_t - a), \qquad
      \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    The recipe's maths, arguments, state and values (to float32 rounding), as
    sibling computations: with the multi-output-fusion flag one kernel per
    leaf at 28 B/param (the plain chain: 48); otherwise exactly
    :func:`decaytx.adam_l2`'s program. See :func:`decaytx.fused.adamw`.

    Args:
      learning_rate: as :func:`decaytx.adam_l2`.
      weight_decay: as :func:`decaytx.adam_l2`.
      formulation: as :func:`decaytx.fused.adamw`.
      layout: as :func:`decaytx.fused.adamw`.
      **recipe_kwargs: every other argument of :func:`decaytx.adam_l2`;
        ``mu_dtype`` and ``amsgrad`` other than their defaults run the
        recipe's program (``amsgrad=True`` with ``layout="flat"`` raises).

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.adam_l2`'s
      (in the tree layout).

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.5])
      >>> fused, recipe = decaytx.fused.adam_l2(0.1, 0.01), decaytx.adam_l2(0.1, 0.01)
      >>> u, _ = fused.update(grads, fused.init(params), params)
      >>> bool(jnp.all(u == recipe.update(grads, recipe.init(params), params)[0]))
      True
    """
    a = _recipe_args(_recipes.adam_l2, (learning_rate, weight_decay), recipe_kwargs)
    formulation, layout = check_formulation(formulation), check_layout(layout)
    lr = LearningRate(learning_rate)
    stage = l2_stage(weight_decay, a["mask"], a["anchor"])
    opt = _parity.adam(a["b1"], a["b2"], a["eps"], 0.0, a["mu_dtype"], False, a["amsgrad"])
    fusable = a["mu_dtype"] is None and not a["amsgrad"]
    sibling = Sibling(adam=True, coupled=True, b1=a["b1"], b2=a["b2"], eps=a["eps"])
    tree = fused_transform("fused.adam_l2", l2_chain(lr, stage, opt),
                           sibling.update(lr, stage, False),
                           formulation if fusable else "plain")
    flat = _flat_adam("fused.adam_l2", layout, a)
    flat = None if flat is None else l2_chain(lr, stage, flat)
    return with_layout("fused.adam_l2", tree, flat, layout, formulation)


@_signed(_recipes.sgdw, "formulation")
def sgdw(learning_rate: optax.ScalarOrSchedule, weight_decay: Coefficient, *,
           formulation: Formulation = "auto",
           **recipe_kwargs: Any) -> optax.GradientTransformation:
    r""":func:`decaytx.sgdw` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      b_t = \mu b_{t-1} + g_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \,(b_t \text{ or } g_t + \mu b_t)
        - m_t \lambda (\theta_t - a)

    The recipe's maths, arguments, state and values (bitwise on XLA:CPU).
    With momentum and the multi-output-fusion flag each leaf is one kernel at
    20 B/param (read :math:`\theta, g, b`; write :math:`\theta, b`);
    otherwise exactly :func:`decaytx.sgdw`'s program (without momentum that
    is one kernel per leaf already).

    Args:
      learning_rate: as :func:`decaytx.sgdw`.
      weight_decay: as :func:`decaytx.sgdw`.
      formulation: as :func:`decaytx.fused.adamw`.
      **recipe_kwargs: every other argument of :func:`decaytx.sgdw`;
        ``compensated`` is fused as in :func:`decaytx.fused.adamw`;
        ``dampening`` and ``accumulator_dtype`` other than their defaults
        run the recipe's program.

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.sgdw`'s.

    Examples:
      >>> import jax, jax.numpy as jnp, decaytx
      >>> opt = decaytx.fused.sgdw(0.1, 0.01, momentum=0.9, decay_scaling="none")
      >>> w = jnp.array([1.0, -2.0])
      >>> opt.update(jnp.zeros(2), opt.init(w), w)[0]  # m = 1: lambda * theta
      Array([-0.01,  0.02], dtype=float32)
      >>> jax.tree.structure(opt.init(w)) == jax.tree.structure(decaytx.sgdw(0.1, 0.01, momentum=0.9).init(w))
      True
    """
    a = _recipe_args(_recipes.sgdw, (learning_rate, weight_decay), recipe_kwargs)
    formulation = check_formulation(formulation)
    m = decay_multiplier(learning_rate, a["decay_scaling"])
    lr = LearningRate(learning_rate)
    opt = _parity.momentum(a["momentum"], a["nesterov"], a["dampening"], a["accumulator_dtype"])
    stage = decoupled_stage(m, weight_decay, a["mask"], a["anchor"], False, a["compensated"])
    sibling = Sibling(adam=False, coupled=False, momentum=a["momentum"], nesterov=a["nesterov"])
    return fused_transform(
        "fused.sgdw", decoupled_chain(lr, stage, opt),
        sibling.update(lr, stage, shared_rate(lr, stage)),
        formulation if _sgd_fusable(a) else "plain")


@_signed(_recipes.sgd_l2, "formulation")
def sgd_l2(learning_rate: optax.ScalarOrSchedule, weight_decay: Coefficient, *,
           formulation: Formulation = "auto",
           **recipe_kwargs: Any) -> optax.GradientTransformation:
    r""":func:`decaytx.sgd_l2` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      g_t \leftarrow g_t + \lambda(\theta_t - a), \qquad
      b_t = \mu b_{t-1} + g_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \,(b_t \text{ or } g_t + \mu b_t)

    The recipe's maths, arguments, state and values (bitwise on XLA:CPU):
    with momentum and the multi-output-fusion flag one kernel per leaf at 20
    B/param; otherwise exactly :func:`decaytx.sgd_l2`'s program.

    Args:
      learning_rate: as :func:`decaytx.sgd_l2`.
      weight_decay: as :func:`decaytx.sgd_l2`.
      formulation: as :func:`decaytx.fused.adamw`.
      **recipe_kwargs: every other argument of :func:`decaytx.sgd_l2`,
        fused as in :func:`decaytx.fused.sgdw`.

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.sgd_l2`'s.

    Examples:
      >>> import inspect, decaytx
      >>> "dampening" in inspect.signature(decaytx.fused.sgd_l2).parameters
      True
    """
    a = _recipe_args(_recipes.sgd_l2, (learning_rate, weight_decay), recipe_kwargs)
    formulation = check_formulation(formulation)
    lr = LearningRate(learning_rate)
    stage = l2_stage(weight_decay, a["mask"], a["anchor"])
    opt = _parity.momentum(a["momentum"], a["nesterov"], a["dampening"], a["accumulator_dtype"])
    sibling = Sibling(adam=False, coupled=True, momentum=a["momentum"], nesterov=a["nesterov"])
    return fused_transform(
        "fused.sgd_l2", l2_chain(lr, stage, opt), sibling.update(lr, stage, False),
        formulation if _sgd_fusable(a) else "plain")
