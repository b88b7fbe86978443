"""Decoupled weight decay (the AdamW kind)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _coefficients as coef
from decaytx import _compensated, _groups, _update_side
from decaytx._coefficients import Coefficient
from decaytx._transform import Form, decay_transform


def _decoupled_term(
    u: jax.Array, p: jax.Array, a: jax.Array | None, rate: jax.Array, cautious: bool
) -> jax.Array:
    d = p if a is None else p - a
    if cautious:
        # Decay only where the step already moves the weight toward the anchor.
        d = jnp.where(jnp.real(jnp.conj(u) * d) <= 0, d, jnp.zeros_like(d))
    # Additive, never u + p*(1 - rate) - p: in f32, 1 - 1e-8 == 1.
    return u - rate * d


def add_decoupled_decay(
    weight_decay: Coefficient,
    *,
    learning_rate: Coefficient | None = _update_side.REQUIRED,
    mask: Any = None,
    anchor: Any = None,
    cautious: bool = False,
    compensated: bool = False,
) -> optax.GradientTransformation:
    r"""Decoupled weight decay, applied to the final step.

    .. math::
      u \leftarrow u - m_t \lambda_t (\theta - a)

    Not the gradient of a penalty: the decay bypasses the optimizer's
    preconditioner (Loshchilov & Hutter, 2019). Place it LAST in a chain, after
    ``optax.scale_by_learning_rate``. The multiplier :math:`m_t` comes from
    ``learning_rate``: ``None`` gives 1 (TF-Addons ``AdamW``); a float or
    schedule :math:`\eta` gives :math:`\eta_t` (PyTorch ``AdamW``, optax
    ``adamw``, Keras 3); :func:`decaytx.lr_multiplier` gives
    :math:`\eta_t/\eta_{max}` (the paper, Composer); :func:`decaytx.corrected_decay`
    gives :math:`\eta_t^2/\eta_{max}` (AdamC).

    With ``cautious=True`` (Chen et al., 2025) a coordinate is decayed only
    where the step already moves it toward the anchor,
    :math:`u_i (\theta_i - a_i) \le 0`.

    Warns once at ``init`` when the largest :math:`m\lambda` is >= 1 (every step
    flips the weights' signs) or below the resolution of a decayed leaf's dtype
    (the decay is silently lost).

    With ``compensated=True`` every bf16/f16 leaf the transform sees (decayed
    or not: ``mask`` chooses the decay only) keeps a float32 residual in the
    state, and its whole update (the optimizer's step and the decay) is
    summed with compensation (Kahan), so that
    :math:`\theta + r` follows float32 master weights and a decay below the
    leaf's resolution accumulates instead of being rounded away
    (docs/precision.md). float32/float64 leaves keep no residual and are
    computed as without it. The transform must then be the LAST in the
    chain: it returns the update that ``optax.apply_updates`` turns into the
    rounded target, and a later transform changing it breaks the bookkeeping.

    Args:
      weight_decay: :math:`\lambda \ge 0`: a float, a scalar array or a schedule.
      learning_rate: the multiplier :math:`m_t`: ``None`` (1), a float, a
        schedule of the step count, or per leaf: a coefficient tree (a prefix
        of params, leaves floats or schedules) or :func:`decaytx.per_leaf`;
        each leaf's decay then follows its own rate (a leaf whose rate is 0
        is not decayed). See "Per-leaf learning rates" in the docs.
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      anchor: ``None`` (toward 0), ``"init"`` (toward the params given to
        ``init``) or a pytree like params; kept in the state.
      cautious: decay only coordinates the step moves toward the anchor.
      compensated: keep a float32 residual per bf16/f16 leaf (a Python bool).

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = optax.chain(
      ...     optax.scale_by_adam(), optax.scale_by_learning_rate(0.1),
      ...     decaytx.add_decoupled_decay(0.01, learning_rate=0.1))
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates
      Array([-0.001,  0.002], dtype=float32)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
      Chen et al., `Cautious Weight Decay <https://arxiv.org/abs/2510.12402>`_, 2025.
    """
    form = decoupled_form(weight_decay, learning_rate, cautious, "add_decoupled_decay", compensated)
    if form is None:
        return optax.identity()
    return decay_transform(form, mask=mask, anchor=anchor)


def _rate(v: dict[str, Any]) -> dict[str, Any]:
    return {"rate": v["learning_rate"] * v["weight_decay"]}


def decoupled_form(weight_decay: Any, learning_rate: Any, cautious: Any, name: str,
                   compensated: Any = False) -> Form | None:
    """The :class:`Form` of ``u - m_t lambda_t (theta - a)``, or ``None`` when it
    is zero and not compensated (a compensated zero decay still compensates)."""
    _groups.check("weight_decay", weight_decay)
    m = _update_side.multiplier(learning_rate, name)
    cautious = _check_cautious(cautious)
    compensated = _compensated.check(compensated)
    if (_groups.is_zero(weight_decay) or _groups.is_zero(m)) and not compensated:
        return None
    return Form(
        name, functools.partial(_decoupled_term, cautious=cautious),
        {"weight_decay": weight_decay, "learning_rate": m},
        side="update", combine=_rate, decides=("weight_decay",), multiplier=m,
        rates=("weight_decay",), cautious=cautious, requires=("learning_rate",),
        compensated=compensated,
    )


def _check_cautious(cautious: Any) -> bool:
    if isinstance(cautious, (bool, jnp.bool_)):
        return bool(cautious)
    if isinstance(cautious, (jax.Array, np.ndarray)) and not coef.is_traced(cautious):
        if cautious.shape != () or cautious.dtype != np.bool_:
            raise TypeError(
                f"cautious={cautious!r} must be one bool (a {cautious.dtype} array of "
                f"shape {cautious.shape} was given); cautious decay is on or off for "
                "the whole transform: pass cautious=True or False, and use mask= "
                "to choose leaves."
            )
        return bool(cautious)
    raise TypeError(
        f"cautious={cautious!r} must be a Python bool. Under "
        "optax.inject_hyperparams use decaytx.inject_hyperparams, which keeps "
        "it static."
    )
