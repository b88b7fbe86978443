r"""Recipes: the optimizers people already use, as plain ``optax.chain``\ s.

Each recipe is a short chain of decaytx and optax transforms with no state of
its own (the state is the tuple of its parts' states), so it can be taken
apart, extended or reordered like any chain. Which framework behaviour each
one reproduces is said in its docstring and tested against that framework (or
a NumPy loop of its documented rule) in ``tests/test_parity_*.py``; the
migration table is ``docs/recipes.md``.
"""

from __future__ import annotations

from typing import Any

import optax

from decaytx import _parity
from decaytx._chains import (
    DecayScaling,
    decay_multiplier,
    decoupled_chain,
    decoupled_stage,
    l2_chain,
    l2_stage,
)
from decaytx._coefficients import Coefficient
from decaytx._learning_rate import LearningRate, scale_by_learning_rate
from decaytx._proximal import prox_elastic_net


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
) -> optax.GradientTransformation:
    r"""SGD with coupled L2 regularization: PyTorch ``SGD(weight_decay=)``.

    .. math::
      g_t \leftarrow g_t + \lambda \theta_t, \qquad
      b_t = \mu b_{t-1} + g_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \,(b_t \text{ or } g_t + \mu b_t)

    the gradient of :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2` is added
    before the momentum buffer, exactly as ``torch.optim.SGD``: the buffer
    starts at the first gradient, later gradients enter it multiplied by
    :math:`1 - \text{dampening}`, and ``nesterov`` is PyTorch's. PyTorch's
    ``maximize=True`` is ``optax.chain(optax.scale(-1.0), sgd_l2(...))``. Without momentum this is full-batch gradient
    descent on the loss plus :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2`,
    and takes the same steps as :func:`sgdw` with ``decay_scaling="lr"``.

    The chain is ``add_l2_grad(weight_decay, mask=mask)``,
    ``optax.trace(momentum, nesterov, accumulator_dtype)`` (when ``momentum``
    is not ``None``; a dampened buffer when ``dampening > 0``),
    ``optax.scale_by_learning_rate(learning_rate)``: with ``dampening=0`` the
    same program as ``optax.chain(add_l2_grad(λ), optax.sgd(η, momentum))``.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count,
        or per leaf: a coefficient tree (a prefix of params, leaves floats or
        schedules) or :func:`decaytx.per_leaf` (PyTorch's param groups with
        their own ``lr``; see :func:`decaytx.scale_by_learning_rate`).
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a
        schedule. A loss written as :math:`c\lVert\theta\rVert^2` (Keras
        ``L2(c)``, scikit-learn ``Ridge(alpha=c)``) needs ``weight_decay = 2c``
        on the same loss scale.
      momentum: :math:`\mu \in [0, 1)`, or ``None`` for plain SGD.
      nesterov: Nesterov momentum (needs ``momentum`` and ``dampening=0``).
      dampening: PyTorch's ``dampening`` in :math:`[0, 1]`: gradients after the
        first enter the buffer as :math:`(1 - \text{dampening})\,g_t`.
      mask: which leaves to decay: a pytree of bools, a prefix of params, or a
        callable of params (see :mod:`decaytx.masks`).
      anchor: decay toward this instead of 0: ``None``, ``"init"`` or a
        pytree like params (see :func:`decaytx.add_l2_grad`, L2-SP).
      accumulator_dtype: dtype of the momentum buffer (``None``: that of
        params), as ``optax.sgd``.

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.sgd_l2(0.1, 0.5, momentum=0.9)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates
      Array([-0.05,  0.1 ], dtype=float32)

    References:
      `torch.optim.SGD
      <https://pytorch.org/docs/stable/generated/torch.optim.SGD.html>`_.
      Sutskever et al., `On the importance of initialization and momentum in
      deep learning <https://proceedings.mlr.press/v28/sutskever13.html>`_,
      ICML 2013.
    """
    lr = LearningRate(learning_rate)
    stage = l2_stage(weight_decay, mask, anchor)
    return l2_chain(lr, stage,
                    _parity.momentum(momentum, nesterov, dampening, accumulator_dtype))


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
    compensated: bool = False,
) -> optax.GradientTransformation:
    r"""SGD with decoupled weight decay (SGDW).

    .. math::
      b_t = \mu b_{t-1} + g_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \,(b_t \text{ or } g_t + \mu b_t)
        - m_t \lambda \theta_t

    The decay bypasses the momentum buffer (Loshchilov & Hutter, 2019,
    Algorithm 1). ``decay_scaling`` picks :math:`m_t`:

    * ``"lr"``: :math:`m_t = \eta_t` (what Keras 3 ``SGD(weight_decay=)``
      does, with Keras' own momentum convention, see ``docs/recipes.md``);
    * ``"schedule"``: :math:`m_t = \eta_t/\eta_{max}` (Composer
      ``DecoupledSGDW``; a constant learning rate gives :math:`m_t = 1`);
    * ``"none"``: :math:`m_t = 1` (TF-Addons ``SGDW``);
    * ``"corrected"``: :math:`m_t = \eta_t^2/\eta_{max}`.

    Without momentum and with ``"lr"`` this takes the same steps as
    :func:`sgd_l2` (up to rounding); with momentum it does not.

    The chain is ``optax.trace(momentum, nesterov)`` (when ``momentum`` is
    not ``None``), ``optax.scale_by_learning_rate(learning_rate)``,
    ``add_decoupled_decay(weight_decay, learning_rate=m, mask=mask)``.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count,
        or per leaf: a coefficient tree (a prefix of params, leaves floats or
        schedules) or :func:`decaytx.per_leaf` (PyTorch's param groups with
        their own ``lr``; see :func:`decaytx.scale_by_learning_rate`).
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      momentum: :math:`\mu \in [0, 1)` (PyTorch convention), or ``None`` for
        plain SGD.
      nesterov: Nesterov momentum (needs ``momentum`` and ``dampening=0``).
      dampening: PyTorch's ``dampening`` (see :func:`sgd_l2`).
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      anchor: decay toward this instead of 0: ``None``, ``"init"`` or a
        pytree like params (see :func:`decaytx.add_decoupled_decay`).
      decay_scaling: ``"lr"``, ``"schedule"``, ``"none"`` or ``"corrected"``.
        ``"schedule"`` and ``"corrected"`` find :math:`\eta_{max}` as
        :func:`decaytx.lr_multiplier` does.
      accumulator_dtype: dtype of the momentum buffer (``None``: that of
        params), as ``optax.sgd``.
      compensated: keep a float32 residual per bf16/f16 param so that the
        whole step (momentum step and decay) accumulates as with float32
        master weights; every bf16/f16 leaf, decayed or not (see
        :func:`decaytx.add_decoupled_decay`, docs/precision.md).

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    Raises:
      ValueError: for an unknown ``decay_scaling`` (at construction), and for
        ``"schedule"``/``"corrected"`` with an array ``learning_rate``: the
        schedule already evaluated, as ``optax.inject_hyperparams`` passes it
        (``decaytx.inject_hyperparams`` keeps it static for these scalings).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.sgdw(0.1, 0.01, momentum=0.9, decay_scaling="none")
      >>> w = jnp.array([1.0, -2.0])
      >>> opt.update(jnp.zeros(2), opt.init(w), w)[0]  # m = 1: lambda * theta, momentum or not
      Array([-0.01,  0.02], dtype=float32)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
    """
    m = decay_multiplier(learning_rate, decay_scaling)
    opt = _parity.momentum(momentum, nesterov, dampening, accumulator_dtype)
    return decoupled_chain(LearningRate(learning_rate), decoupled_stage(m, weight_decay, mask, anchor, False, compensated), opt)


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
) -> optax.GradientTransformation:
    r"""Adam with coupled L2 regularization: PyTorch ``Adam(weight_decay=)``.

    .. math::
      g_t \leftarrow g_t + \lambda\theta_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    with Adam's bias-corrected moments :math:`\hat m_t, \hat v_t` of the
    penalised gradient: the preconditioner divides the decay too, so weights
    with large gradients are decayed less (the reason for :func:`adamw`).
    :math:`\epsilon` is added to :math:`\sqrt{\hat v_t}`, as in PyTorch and
    optax (Keras adds it before bias correction). ``amsgrad=True`` is
    PyTorch's AMSGrad: :math:`v^{max}_t = \max(v^{max}_{t-1}, v_t)` of the raw
    second moments and :math:`\sqrt{v^{max}_t}/\sqrt{1-\beta_2^t} + \epsilon`
    in the denominator (``optax.scale_by_amsgrad`` takes the max of the
    bias-corrected moments, a different rule). PyTorch's ``maximize=True`` is
    ``optax.chain(optax.scale(-1.0), adam_l2(...))``.

    The chain is ``add_l2_grad(weight_decay, mask=mask)``,
    ``optax.scale_by_parity.adam(b1, b2, eps, mu_dtype=mu_dtype)`` (PyTorch's AMSGrad
    when ``amsgrad``), ``optax.scale_by_learning_rate(learning_rate)``.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count,
        or per leaf: a coefficient tree (a prefix of params, leaves floats or
        schedules) or :func:`decaytx.per_leaf` (PyTorch's param groups with
        their own ``lr``; see :func:`decaytx.scale_by_learning_rate`).
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`.
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      anchor: decay toward this instead of 0: ``None``, ``"init"`` or a
        pytree like params (see :func:`decaytx.add_l2_grad`, L2-SP).
      mu_dtype: dtype of the first moment (``None``: that of params), as
        ``optax.adam``.
      amsgrad: PyTorch's AMSGrad variant.

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.adam_l2(0.1, 0.01)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> [round(float(u), 4) for u in updates]  # the first step: eta, whatever lambda
      [-0.1, 0.1]

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, ICLR 2015.
      `torch.optim.Adam
      <https://pytorch.org/docs/stable/generated/torch.optim.Adam.html>`_.
    """
    lr = LearningRate(learning_rate)
    stage = l2_stage(weight_decay, mask, anchor)
    return l2_chain(lr, stage, _parity.adam(b1, b2, eps, 0.0, mu_dtype, False, amsgrad))


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
    compensated: bool = False,
) -> optax.GradientTransformation:
    r"""Adam with decoupled weight decay (AdamW), with a choice of multiplier.

    .. math::
      \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        - m_t \lambda \theta_t

    ``decay_scaling`` picks :math:`m_t`:

    * ``"lr"`` (default): :math:`m_t = \eta_t`. PyTorch ``AdamW``, optax
      ``adamw``, Keras 3 ``weight_decay`` (up to Keras' placement of
      :math:`\epsilon`).
    * ``"schedule"``: :math:`m_t = \eta_t/\eta_{max}`. The paper's Algorithm 2
      and Composer ``DecoupledAdamW``: the decay follows the schedule's shape
      but not the size of the learning rate (a constant learning rate gives
      :math:`m_t = 1`). :math:`\eta_{max}` is found as
      :func:`decaytx.lr_multiplier` does.
    * ``"none"``: :math:`m_t = 1`. TF-Addons ``AdamW`` (which asks users to
      schedule ``weight_decay`` themselves: pass a schedule as ``weight_decay``).
    * ``"corrected"``: :math:`m_t = \eta_t^2/\eta_{max}`. AdamC (Defazio, 2025).

    ``cautious=True`` decays a coordinate only where the step already moves
    it toward the anchor, :math:`u_i(\theta_i - a_i) \le 0` (Chen et al.,
    2025). ``anchor`` decays toward :math:`a` instead of 0 (``"init"``: the
    params given to ``init``). ``nesterov=True`` is NAdamW (``optax.nadamw``);
    ``amsgrad=True`` PyTorch's AMSGrad (see :func:`adam_l2`). PyTorch's
    ``maximize=True`` is ``optax.chain(optax.scale(-1.0), adamw(...))``.

    The chain is ``optax.scale_by_parity.adam(b1, b2, eps, eps_root, mu_dtype,
    nesterov)``, ``optax.scale_by_learning_rate(learning_rate)``,
    ``add_decoupled_decay(weight_decay, learning_rate=m, mask=mask,
    anchor=anchor, cautious=cautious)``. It matches ``optax.adamw`` (which
    decays before scaling by :math:`\eta`) up to rounding, and PyTorch
    ``AdamW`` (which multiplies :math:`\theta` by :math:`1 - \eta\lambda`
    before the Adam step, the same :math:`\theta_{t+1}`). With a constant
    learning rate it compiles to the same program as ``optax.adamw``; with a
    schedule the decay evaluates the schedule at its own step count, so the
    jitted step computes :math:`\eta_t` twice (same values, a larger program
    for long schedules: see ``docs/optimizers.md``).

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count,
        or per leaf: a coefficient tree (a prefix of params, leaves floats or
        schedules) or :func:`decaytx.per_leaf` (PyTorch's param groups with
        their own ``lr``; see :func:`decaytx.scale_by_learning_rate`).
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`.
      eps_root: :math:`\epsilon` added to :math:`\hat v_t` inside the square
        root, as ``optax.adamw``.
      mu_dtype: dtype of the first moment (``None``: that of params), as
        ``optax.adamw``.
      nesterov: Nesterov momentum in Adam's first moment (NAdamW).
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`); the
        nanoGPT rule is ``decaytx.masks.ndim_at_least(2)``.
      anchor: decay toward this instead of 0: ``None``, ``"init"`` or a
        pytree like params (see :func:`decaytx.add_decoupled_decay`).
      decay_scaling: ``"lr"``, ``"schedule"``, ``"none"`` or ``"corrected"``.
      cautious: decay only the coordinates the step moves toward the anchor.
      amsgrad: PyTorch's AMSGrad variant (not with ``nesterov`` or
        ``eps_root``).
      compensated: keep a float32 residual per bf16/f16 param so that the
        whole step (Adam step and decay) accumulates as with float32 master
        weights; every bf16/f16 leaf, decayed or not (see
        :func:`decaytx.add_decoupled_decay`, docs/precision.md).

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    Raises:
      ValueError: as :func:`sgdw` (an unknown ``decay_scaling``; ``"schedule"``
        or ``"corrected"`` with an already evaluated, array ``learning_rate``);
        for ``b1``/``b2`` outside ``[0, 1)`` or a negative or non-finite
        ``eps``/``eps_root`` (checked when concrete, at construction).
      TypeError: for a ``mu_dtype`` that is not a float dtype JAX knows.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.adamw(0.1, 0.01)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates  # eta * lambda * theta
      Array([-0.001,  0.002], dtype=float32)
      >>> opt = decaytx.adamw(0.1, 0.01, decay_scaling="none")
      >>> opt.update(jnp.zeros(2), opt.init(params), params)[0]  # lambda * theta
      Array([-0.01,  0.02], dtype=float32)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
      Defazio, `Why Gradients Rapidly Increase Near the End of Training
      <https://arxiv.org/abs/2506.02285>`_, 2025.
      Chen et al., `Cautious Weight Decay <https://arxiv.org/abs/2510.12402>`_, 2025.
    """
    m = decay_multiplier(learning_rate, decay_scaling)
    opt = _parity.adam(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad)
    return decoupled_chain(LearningRate(learning_rate), decoupled_stage(m, weight_decay, mask, anchor, cautious, compensated), opt)


def proximal_sgd(
    learning_rate: optax.ScalarOrSchedule,
    l1: Coefficient,
    l2: Coefficient = 0.0,
    *,
    mask: Any = None,
) -> optax.GradientTransformation:
    r"""Proximal gradient descent (ISTA/FOBOS) for L1 and elastic-net penalties.

    .. math::
      \theta_{t+1} = \frac{S(\theta_t - \eta_t g_t,\ \eta_t\lambda_1)}
        {1 + \eta_t\lambda_2}

    the proximal-gradient step for the loss plus
    :math:`\lambda_1\lVert\theta\rVert_1 + \tfrac{\lambda_2}{2}\lVert\theta\rVert^2`,
    with :math:`S` the soft threshold: weights land on exact zeros. With the
    full-batch gradient and :math:`\eta = 1/L` (:math:`L` the Lipschitz
    constant of the loss' gradient) it converges to the minimiser that
    scikit-learn's ``Lasso(alpha)`` (``l1 = alpha``) and
    ``ElasticNet(alpha, l1_ratio)`` (``l1 = alpha * l1_ratio``,
    ``l2 = alpha * (1 - l1_ratio)``) find, for the loss
    :math:`\tfrac{1}{2n}\lVert y - X\theta\rVert^2`.

    The chain is ``optax.scale_by_learning_rate(learning_rate)``,
    ``prox_elastic_net(l1, l2, learning_rate=learning_rate, mask=mask)``.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count,
        or per leaf: a coefficient tree (a prefix of params, leaves floats or
        schedules) or :func:`decaytx.per_leaf` (PyTorch's param groups with
        their own ``lr``; see :func:`decaytx.scale_by_learning_rate`).
      l1: :math:`\lambda_1 \ge 0`, a float, a scalar array or a schedule.
      l2: :math:`\lambda_2 \ge 0` (default 0: the Lasso).
      mask: which leaves to shrink (see :func:`decaytx.add_l2_grad`).

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.proximal_sgd(0.1, 1.0, l2=1.0)  # elastic net: shrink, then scale
      >>> w = jnp.array([0.05, 1.1])
      >>> optax.apply_updates(w, opt.update(jnp.zeros(2), opt.init(w), w)[0])
      Array([0.       , 0.9090909], dtype=float32)

    References:
      ISTA/FOBOS: see :func:`decaytx.prox_l1` (Duchi & Singer 2009; Beck &
      Teboulle 2009); the elastic net's prox: :func:`decaytx.prox_elastic_net`.
    """
    return optax.chain(
        scale_by_learning_rate(learning_rate),
        prox_elastic_net(l1, l2, learning_rate=learning_rate, mask=mask),
    )
