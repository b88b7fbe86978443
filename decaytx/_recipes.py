r"""Recipes: the optimizers people already use, as plain ``optax.chain``\ s.

Each recipe is a short chain of decaytx and optax transforms with no state of
its own (the state is the tuple of its parts' states), so it can be taken
apart, extended or reordered like any chain. Which framework behaviour each
one reproduces is said in its docstring and tested against that framework (or
a NumPy loop of its documented rule) in ``tests/test_parity_*.py``; the
migration table is ``docs/recipes.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from decaytx import _coefficients as coef
from decaytx import _parity
from decaytx._coefficients import Coefficient
from decaytx._decoupled import decoupled_form
from decaytx._gradient import l2_form
from decaytx._proximal import prox_elastic_net
from decaytx._scaling import corrected_decay, lr_multiplier
from decaytx._transform import DecayState, Stage

DecayScaling = Literal["lr", "schedule", "none", "corrected"]

_DECAY_SCALINGS: dict[str, str] = {
    "lr": "m_t = eta_t (PyTorch AdamW, optax adamw, Keras 3)",
    "schedule": "m_t = eta_t / eta_max (the paper, Composer DecoupledAdamW)",
    "none": "m_t = 1 (TF-Addons AdamW/SGDW)",
    "corrected": "m_t = eta_t**2 / eta_max (AdamC)",
}


def decay_multiplier(learning_rate: optax.ScalarOrSchedule, decay_scaling: str) -> Any:
    """The ``learning_rate=`` of the decoupled decay for a ``decay_scaling``.

    Raises a ``ValueError`` listing the valid values for an unknown one.
    """
    if not isinstance(decay_scaling, str) or decay_scaling not in _DECAY_SCALINGS:
        valid = "; ".join(f"{k!r}: {v}" for k, v in _DECAY_SCALINGS.items())
        raise ValueError(
            f"decay_scaling={decay_scaling!r} is not understood. Valid values: "
            f"{valid}. For any other multiplier, build the chain yourself with "
            "decaytx.add_decoupled_decay(weight_decay, learning_rate=m)."
        )
    coef.check("learning_rate", learning_rate)
    if decay_scaling == "lr":
        return learning_rate
    if decay_scaling == "none":
        return None
    if isinstance(learning_rate, jax.Array):
        # What optax.inject_hyperparams passes: the schedule already evaluated
        # at this step. eta_t / eta_max cannot be recovered from eta_t alone,
        # and treating it as a constant would silently give m_t = 1.
        raise ValueError(
            f"decay_scaling={decay_scaling!r} needs the learning-rate schedule "
            f"itself, but learning_rate is an array ({learning_rate!r}), as "
            "optax.inject_hyperparams makes of a schedule. Keep it static: "
            "use decaytx.inject_hyperparams (which does so for this scaling) or "
            "optax.inject_hyperparams(..., static_args=('learning_rate',)), or "
            "pass a Python float for a constant rate. (A traced constant rate, "
            "under jax.vmap/jit/grad over the learning rate: for a constant rate "
            "decay_scaling='schedule' is the same as 'none' and 'corrected' the "
            "same as 'lr'; use those.)"
        )
    if decay_scaling == "schedule":
        return lr_multiplier(learning_rate)
    return corrected_decay(learning_rate)


def l2_stage(weight_decay: Coefficient, mask: Any, anchor: Any) -> Stage | None:
    """The coupled recipes' decay, ``add_l2_grad``'s stage (``None`` when zero)."""
    form = l2_form(weight_decay)
    return None if form is None else Stage(form, mask=mask, anchor=anchor)


def decoupled_stage(
    multiplier: Any, weight_decay: Coefficient, mask: Any, anchor: Any, cautious: bool
) -> Stage | None:
    """The decoupled recipes' decay, ``add_decoupled_decay``'s stage (``None`` when zero)."""
    form = decoupled_form(weight_decay, multiplier, cautious, "add_decoupled_decay")
    return None if form is None else Stage(form, mask=mask, anchor=anchor)


def transform(stage: Stage | None) -> optax.GradientTransformation:
    """A stage as a transform (``optax.identity()`` for no decay)."""
    return optax.identity() if stage is None else optax.GradientTransformation(stage.init, stage.update)


def l2_chain(
    learning_rate: optax.ScalarOrSchedule, stage: Stage | None, optimizer: optax.GradientTransformation
) -> optax.GradientTransformation:
    """``add_l2_grad``, ``optimizer``, ``scale_by_learning_rate``: the coupled recipes' chain."""
    return optax.chain(transform(stage), optimizer, optax.scale_by_learning_rate(learning_rate))


def shared_rate(learning_rate: Any, stage: Stage | None) -> Callable[[Any], dict[str, Any]] | None:
    """How the decay's multiplier follows from eta_t, when both come from one schedule.

    ``None`` when the learning rate is constant or the multiplier does not
    derive from it (``decay_scaling="none"``): then nothing is shared.
    """
    if stage is None or not coef.is_schedule(learning_rate):
        return None
    m = stage.form.multiplier
    if m is learning_rate:
        return lambda eta: {"learning_rate": eta}
    of_rate = getattr(m, "of_rate", None)
    return None if of_rate is None else (lambda eta: {"learning_rate": of_rate(eta)})


def decoupled_chain(
    learning_rate: optax.ScalarOrSchedule, stage: Stage | None, optimizer: optax.GradientTransformation
) -> optax.GradientTransformation:
    """``optimizer``, ``scale_by_learning_rate``, ``add_decoupled_decay``: the decoupled recipes' chain.

    With a schedule that the decay's multiplier follows, the step evaluates it
    once (:func:`_scheduled_decoupled`); the state is the chain's either way.
    """
    share = shared_rate(learning_rate, stage)
    if share is None:
        return optax.chain(optimizer, optax.scale_by_learning_rate(learning_rate), transform(stage))
    assert stage is not None
    return _scheduled_decoupled(learning_rate, stage, optimizer, share)


def _scheduled_decoupled(
    schedule: Any, stage: Stage, optimizer: optax.GradientTransformation,
    share: Callable[[Any], dict[str, Any]],
) -> optax.GradientTransformationExtraArgs:
    """The decoupled chain with eta_t evaluated once per step.

    ``optax.scale_by_learning_rate(schedule)``'s maths and state, and the
    decay's, with the multiplier computed from the same eta_t instead of a
    second evaluation of the schedule at the decay's own (equal) count.
    """
    inner = optax.with_extra_args_support(optimizer)
    lr = optax.scale_by_learning_rate(schedule)

    def init_fn(params: Any) -> tuple[Any, Any, Any]:
        return inner.init(params), lr.init(params), stage.init(params)

    def update_fn(updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        opt_s, lr_s, dec_s = state
        updates, opt_s = inner.update(updates, opt_s, params, **extra)
        eta = schedule(lr_s.count)
        step = -1 * eta  # what optax.scale_by_learning_rate multiplies by
        updates = jax.tree.map(lambda g: jnp.array(step, dtype=g.dtype) * g, updates)
        lr_s = optax.ScaleByScheduleState(count=optax.safe_increment(lr_s.count))
        updates, dec_s = stage.update(updates, dec_s, params, given=share(jnp.asarray(eta)))
        if isinstance(dec_s, DecayState) and dec_s.count is not None:
            # The two counts advance in lockstep; one increment serves both.
            dec_s = dec_s._replace(count=lr_s.count)
        return updates, (opt_s, lr_s, dec_s)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


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
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
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
    coef.check("learning_rate", learning_rate)
    stage = l2_stage(weight_decay, mask, anchor)
    return l2_chain(learning_rate, stage,
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
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
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
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates
      Array([-0.01,  0.02], dtype=float32)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
    """
    m = decay_multiplier(learning_rate, decay_scaling)
    opt = _parity.momentum(momentum, nesterov, dampening, accumulator_dtype)
    return decoupled_chain(learning_rate, decoupled_stage(m, weight_decay, mask, anchor, False), opt)


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
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
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
    coef.check("learning_rate", learning_rate)
    stage = l2_stage(weight_decay, mask, anchor)
    return l2_chain(learning_rate, stage, _parity.adam(b1, b2, eps, 0.0, mu_dtype, False, amsgrad))


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
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
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

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    Raises:
      ValueError: for an unknown ``decay_scaling`` (at construction), and for
        ``"schedule"``/``"corrected"`` with an array ``learning_rate``: the
        schedule already evaluated, as ``optax.inject_hyperparams`` passes it
        (``decaytx.inject_hyperparams`` keeps it static for these scalings).

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
    return decoupled_chain(learning_rate, decoupled_stage(m, weight_decay, mask, anchor, cautious), opt)


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
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      l1: :math:`\lambda_1 \ge 0`, a float, a scalar array or a schedule.
      l2: :math:`\lambda_2 \ge 0` (default 0: the Lasso).
      mask: which leaves to shrink (see :func:`decaytx.add_l2_grad`).

    Returns:
      An ``optax.GradientTransformation`` (an ``optax.chain``).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.proximal_sgd(0.1, 1.0)
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
    coef.check("learning_rate", learning_rate)
    return optax.chain(
        optax.scale_by_learning_rate(learning_rate),
        prox_elastic_net(l1, l2, learning_rate=learning_rate, mask=mask),
    )
