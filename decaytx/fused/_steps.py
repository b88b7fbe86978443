"""The public fused steps: each recipe's signature, its plain program, and the sibling form.

Each step is its recipe (the plain program, the state) plus the sibling
update of :mod:`decaytx.fused._step` on the recipe's own decay stage. The
arguments the sibling form does not fuse run the recipe's exact program.
"""

from __future__ import annotations

from typing import Any

import optax

from decaytx import _coefficients as coef
from decaytx import _parity
from decaytx._chains import (
    DecayScaling,
    decay_multiplier,
    decoupled_chain,
    decoupled_stage,
    l2_chain,
    l2_stage,
    shared_rate,
)
from decaytx._coefficients import Coefficient
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


def _flat_adam(name: str, layout: Layout, amsgrad: bool, b1: float, b2: float, eps: float,
               eps_root: float, mu_dtype: Any, nesterov: bool) -> optax.GradientTransformation | None:
    """The flat-moments Adam, or ``None`` where it cannot hold the state (AMSGrad)."""
    if not amsgrad:
        return scale_by_adam_flat(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)
    if layout == "flat":
        raise ValueError(
            f"{name}: amsgrad=True keeps a third moment (the running max), which "
            "the flat layout does not hold; pass layout='tree' (or 'auto') with "
            "amsgrad=True, or amsgrad=False with layout='flat'."
        )
    return None


def _sgd_fusable(dampening: Any, accumulator_dtype: Any) -> bool:
    return coef.concrete_value(dampening) == 0.0 and accumulator_dtype is None


def adamw(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Coefficient,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = False,
    mask: Any = None,
    anchor: Any = None,
    decay_scaling: DecayScaling = "lr",
    cautious: bool = False,
    amsgrad: bool = False,
    formulation: Formulation = "auto",
    layout: Layout = "auto",
) -> optax.GradientTransformation:
    r""":func:`decaytx.adamw` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        - m_t \lambda (\theta_t - a)

    The same maths, arguments, state and values as :func:`decaytx.adamw`
    (bitwise on XLA:CPU, see ``tests/paths``), written so that the
    moments and the update are sibling computations over
    :math:`(\theta, g, m, v)`. With
    ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
    each leaf compiles to one kernel moving 28 bytes per f32 parameter (40 for
    ``optax.adamw``); without it (or off CPU) the update is exactly
    :func:`decaytx.adamw`'s program. See :func:`decaytx.fused.multi_output_fusion_active`.
    Every argument of :func:`decaytx.adamw` is taken; those the sibling form
    does not fuse (``mu_dtype``, ``nesterov``, ``amsgrad``) run the recipe's
    exact program instead.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`.
      eps_root: :math:`\epsilon_{root}`, added to :math:`\hat v_t` inside the root (fused).
      mu_dtype: dtype of the first moment; not ``None``: the recipe's program.
      nesterov: NAdamW (as :func:`decaytx.adamw`); ``True``: the recipe's program.
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      decay_scaling: ``"lr"``, ``"schedule"``, ``"none"`` or ``"corrected"``
        (see :func:`decaytx.adamw`).
      cautious: decay only the coordinates the step moves toward the anchor.
      amsgrad: PyTorch's AMSGrad (as :func:`decaytx.adamw`); ``True``: the
        recipe's program in the tree layout, and a ``ValueError`` naming
        ``amsgrad`` with ``layout="flat"`` (the flat buffers hold two moments).
      anchor: ``None`` (toward 0), ``"init"`` or a pytree like params, as in
        :func:`decaytx.add_decoupled_decay` (read once more per step: +4 B/param).
      formulation: ``"auto"`` (fused exactly when multi-output fusion is
        active), ``"sibling"`` (always the fused formulation: for
        measurements) or ``"plain"`` (always the recipe's program).
      layout: where Adam's moments live, chosen at ``init`` from the params
        (the states differ). ``"tree"``: like params, the recipe's state.
        ``"flat"``: one flat buffer per dtype (:mod:`decaytx.fused._flat`; the
        decay stage is still the recipe's per-leaf transform, so masks,
        coefficient trees, schedules, anchors and ``decay_scaling`` work
        unchanged); the state is NOT the recipe's, and a checkpoint does not
        move between layouts (an update with the other layout's state raises
        a ``ValueError`` naming ``layout=``). ``"auto"`` (default): ``"flat"``
        exactly when multi-output fusion is active, ``formulation`` is not
        ``"plain"`` and the params' float leaves average under
        ``FLAT_MEAN_LEAF_SIZE`` = 8192 elements (measured with the flag,
        ``experiments/measure_flat_moments.py``: flat / tree step time 0.37
        on 309 leaves averaging 1.8K elements, 0.59 on 4K leaves, 0.91 on 8K,
        1.04 on 16K, 1.9 on 64K, 3.0 on 100 leaves of 160K, 1.10 on one 16M
        leaf; docs/performance.md, "Many small leaves: flat moments");
        otherwise ``"tree"``, so without the flag ``"auto"`` is exactly the
        tree layout.

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
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
      `XLA flags <https://openxla.org/xla/flags_guidance>`_.
    """
    formulation, layout = check_formulation(formulation), check_layout(layout)
    m = decay_multiplier(learning_rate, decay_scaling)
    opt = _parity.adam(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad)
    stage = decoupled_stage(m, weight_decay, mask, anchor, cautious)
    fusable = mu_dtype is None and not nesterov and not amsgrad
    sibling = Sibling(adam=True, coupled=False, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    tree = fused_transform(
        "fused.adamw", decoupled_chain(learning_rate, stage, opt),
        sibling.update(learning_rate, stage, shared_rate(learning_rate, stage)),
        formulation if fusable else "plain")
    flat = _flat_adam("fused.adamw", layout, amsgrad, b1, b2, eps, eps_root, mu_dtype, nesterov)
    flat = None if flat is None else decoupled_chain(learning_rate, stage, flat)
    return with_layout("fused.adamw", tree, flat, layout, formulation)


def adam_l2(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Coefficient,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    mask: Any = None,
    anchor: Any = None,
    mu_dtype: Any = None,
    amsgrad: bool = False,
    formulation: Formulation = "auto",
    layout: Layout = "auto",
) -> optax.GradientTransformation:
    r""":func:`decaytx.adam_l2` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      g_t \leftarrow g_t + \lambda(\theta_t - a), \qquad
      \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    The same maths, arguments, state and values as :func:`decaytx.adam_l2`
    (bitwise on XLA:CPU), written as sibling computations: with
    ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
    one kernel per leaf at 28 B/param (the plain chain: 48); otherwise exactly
    :func:`decaytx.adam_l2`'s program. See :func:`decaytx.fused.adamw`.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`.
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      anchor: ``None``, ``"init"`` or a pytree like params (as
        :func:`decaytx.add_l2_grad`).
      mu_dtype: dtype of the first moment; not ``None``: the recipe's program.
      amsgrad: PyTorch's AMSGrad; ``True``: the recipe's program in the tree
        layout, a ``ValueError`` naming ``amsgrad`` with ``layout="flat"``.
      formulation: ``"auto"``, ``"sibling"`` or ``"plain"`` (see :func:`decaytx.fused.adamw`).
      layout: ``"auto"``, ``"tree"`` or ``"flat"``: Adam's moments like
        params or in one flat buffer per dtype, chosen at ``init`` (see
        :func:`decaytx.fused.adamw`; the flat state is not the recipe's).

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.adam_l2`'s
      (in the tree layout).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.fused.adam_l2(0.1, 0.01)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> [round(float(u), 4) for u in updates]
      [-0.1, 0.1]

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, ICLR 2015.
    """
    formulation, layout = check_formulation(formulation), check_layout(layout)
    coef.check("learning_rate", learning_rate)
    stage = l2_stage(weight_decay, mask, anchor)
    opt = _parity.adam(b1, b2, eps, 0.0, mu_dtype, False, amsgrad)
    fusable = mu_dtype is None and not amsgrad
    sibling = Sibling(adam=True, coupled=True, b1=b1, b2=b2, eps=eps)
    tree = fused_transform("fused.adam_l2", l2_chain(learning_rate, stage, opt),
                           sibling.update(learning_rate, stage, None),
                           formulation if fusable else "plain")
    flat = _flat_adam("fused.adam_l2", layout, amsgrad, b1, b2, eps, 0.0, mu_dtype, False)
    flat = None if flat is None else l2_chain(learning_rate, stage, flat)
    return with_layout("fused.adam_l2", tree, flat, layout, formulation)


def sgdw(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Coefficient,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    dampening: float = 0.0,
    mask: Any = None,
    anchor: Any = None,
    decay_scaling: DecayScaling = "lr",
    accumulator_dtype: Any = None,
    formulation: Formulation = "auto",
) -> optax.GradientTransformation:
    r""":func:`decaytx.sgdw` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      b_t = \mu b_{t-1} + g_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \,(b_t \text{ or } g_t + \mu b_t)
        - m_t \lambda (\theta_t - a)

    The same maths, arguments, state and values as :func:`decaytx.sgdw`
    (bitwise on XLA:CPU). With momentum and
    ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
    each leaf is one kernel at 20 B/param (read :math:`\theta, g, b`; write
    :math:`\theta, b`); otherwise exactly :func:`decaytx.sgdw`'s program
    (without momentum that is one kernel per leaf already).

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      momentum: :math:`\mu \in [0, 1)` (PyTorch convention), or ``None``.
      nesterov: Nesterov momentum (needs ``momentum``).
      dampening: PyTorch's ``dampening``; not 0: the recipe's program.
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      decay_scaling: ``"lr"``, ``"schedule"``, ``"none"`` or ``"corrected"``.
      anchor: ``None``, ``"init"`` or a pytree like params.
      accumulator_dtype: dtype of the momentum buffer; not ``None``: the
        recipe's program.
      formulation: ``"auto"``, ``"sibling"`` or ``"plain"`` (see :func:`decaytx.fused.adamw`).

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.sgdw`'s.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.fused.sgdw(0.1, 0.01, momentum=0.9, decay_scaling="none")
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates
      Array([-0.01,  0.02], dtype=float32)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
    """
    formulation = check_formulation(formulation)
    m = decay_multiplier(learning_rate, decay_scaling)
    opt = _parity.momentum(momentum, nesterov, dampening, accumulator_dtype)
    stage = decoupled_stage(m, weight_decay, mask, anchor, False)
    sibling = Sibling(adam=False, coupled=False, momentum=momentum, nesterov=nesterov)
    return fused_transform(
        "fused.sgdw", decoupled_chain(learning_rate, stage, opt),
        sibling.update(learning_rate, stage, shared_rate(learning_rate, stage)),
        formulation if _sgd_fusable(dampening, accumulator_dtype) else "plain")


def sgd_l2(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Coefficient,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    dampening: float = 0.0,
    mask: Any = None,
    anchor: Any = None,
    accumulator_dtype: Any = None,
    formulation: Formulation = "auto",
) -> optax.GradientTransformation:
    r""":func:`decaytx.sgd_l2` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      g_t \leftarrow g_t + \lambda(\theta_t - a), \qquad
      b_t = \mu b_{t-1} + g_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \,(b_t \text{ or } g_t + \mu b_t)

    The same maths, arguments, state and values as :func:`decaytx.sgd_l2`
    (bitwise on XLA:CPU): with momentum and the multi-output-fusion flag one
    kernel per leaf at 20 B/param; otherwise exactly :func:`decaytx.sgd_l2`'s
    program.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      momentum: :math:`\mu \in [0, 1)`, or ``None``.
      nesterov: Nesterov momentum (needs ``momentum``).
      dampening: PyTorch's ``dampening``; not 0: the recipe's program.
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      anchor: ``None``, ``"init"`` or a pytree like params.
      accumulator_dtype: dtype of the momentum buffer; not ``None``: the
        recipe's program.
      formulation: ``"auto"``, ``"sibling"`` or ``"plain"`` (see :func:`decaytx.fused.adamw`).

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.sgd_l2`'s.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.fused.sgd_l2(0.1, 0.5, momentum=0.9)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates
      Array([-0.05,  0.1 ], dtype=float32)

    References:
      `torch.optim.SGD
      <https://pytorch.org/docs/stable/generated/torch.optim.SGD.html>`_.
    """
    formulation = check_formulation(formulation)
    coef.check("learning_rate", learning_rate)
    stage = l2_stage(weight_decay, mask, anchor)
    opt = _parity.momentum(momentum, nesterov, dampening, accumulator_dtype)
    sibling = Sibling(adam=False, coupled=True, momentum=momentum, nesterov=nesterov)
    return fused_transform(
        "fused.sgd_l2", l2_chain(learning_rate, stage, opt), sibling.update(learning_rate, stage, None),
        formulation if _sgd_fusable(dampening, accumulator_dtype) else "plain")
