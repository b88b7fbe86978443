"""The chains the recipes and the fused steps share, built on the decay's :class:`Stage`.

A recipe is ``optimizer, scale_by_learning_rate, decay`` (decoupled) or
``decay, optimizer, scale_by_learning_rate`` (coupled). The fused steps take
the same stage object, so their plain program and their sibling update read
one plan. With a learning-rate schedule that the decoupled decay's
multiplier follows, the chain evaluates the schedule once per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from decaytx import _coefficients as coef
from decaytx._coefficients import Coefficient
from decaytx._decoupled import decoupled_form
from decaytx._gradient import l2_form
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
    multiplier: Any, weight_decay: Coefficient, mask: Any, anchor: Any, cautious: bool,
    compensated: bool = False,
) -> Stage | None:
    """The decoupled recipes' decay, ``add_decoupled_decay``'s stage (``None`` when zero)."""
    form = decoupled_form(weight_decay, multiplier, cautious, "add_decoupled_decay", compensated)
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
