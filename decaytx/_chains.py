"""The chains the recipes and the fused steps share, built on the decay's :class:`Stage`.

A recipe is ``optimizer, scale_by_learning_rate, decay`` (decoupled) or
``decay, optimizer, scale_by_learning_rate`` (coupled). The fused steps take
the same stage object, so their plain program and their sibling update read
one plan. With a learning-rate schedule that the decoupled decay's
multiplier follows, the chain evaluates the schedule once per step.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import optax

from decaytx import _coefficients as coef
from decaytx import _groups, _plan
from decaytx._coefficients import Coefficient
from decaytx._decoupled import decoupled_form
from decaytx._gradient import l2_form
from decaytx._learning_rate import LearningRate, Rates
from decaytx._scaling import corrected_decay, lr_multiplier
from decaytx._transform import DecayState, Stage

DecayScaling = Literal["lr", "schedule", "none", "corrected"]

_DECAY_SCALINGS: dict[str, str] = {
    "lr": "m_t = eta_t (PyTorch AdamW, optax adamw, Keras 3)",
    "schedule": "m_t = eta_t / eta_max (the paper, Composer DecoupledAdamW)",
    "none": "m_t = 1 (TF-Addons AdamW/SGDW)",
    "corrected": "m_t = eta_t**2 / eta_max (AdamC)",
}


def decay_multiplier(learning_rate: Any, decay_scaling: str) -> Any:
    """The ``learning_rate=`` of the decoupled decay for a ``decay_scaling``.

    Per-leaf rates (a coefficient tree or ``per_leaf``) give per-leaf
    multipliers: each leaf's own eta_t, eta_t/eta_max or eta_t**2/eta_max.
    Raises a ``ValueError`` listing the valid values for an unknown one.
    """
    if not isinstance(decay_scaling, str) or decay_scaling not in _DECAY_SCALINGS:
        valid = "; ".join(f"{k!r}: {v}" for k, v in _DECAY_SCALINGS.items())
        raise ValueError(
            f"decay_scaling={decay_scaling!r} is not understood. Valid values: "
            f"{valid}. For any other multiplier, build the chain yourself with "
            "decaytx.add_decoupled_decay(weight_decay, learning_rate=m)."
        )
    _groups.check("learning_rate", learning_rate)
    if decay_scaling == "lr":
        return learning_rate
    if decay_scaling == "none":
        return None
    if _evaluated(learning_rate):
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


def _evaluated(learning_rate: Any) -> bool:
    """Whether a rate (or a leaf of a tree of rates) is a JAX array."""
    if isinstance(learning_rate, _groups.PerLeaf):
        return False
    leaves = jax.tree_util.tree_leaves(learning_rate, is_leaf=coef.is_schedule)
    return any(isinstance(v, jax.Array) for v in leaves)


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
    lr: LearningRate, stage: Stage | None, optimizer: optax.GradientTransformation
) -> optax.GradientTransformation:
    """``add_l2_grad``, ``optimizer``, ``scale_by_learning_rate``: the coupled recipes' chain."""
    return optax.chain(transform(stage), optimizer, lr.transform())


def shared_rate(lr: LearningRate, stage: Stage | None) -> bool:
    """Whether the decay's multiplier follows from the step's eta_t (one evaluation serves both).

    False when no rate is a schedule or the multiplier does not derive from
    the rate (``decay_scaling="none"``): then nothing is shared.
    """
    if stage is None or not _plan.any_schedule({"learning_rate": lr.learning_rate}) and not lr.per_leaf:
        return False
    m = stage.form.multiplier
    if lr.per_leaf:
        return _groups.is_tree(m)
    return m is lr.learning_rate or getattr(m, "of_rate", None) is not None


def decoupled_chain(
    lr: LearningRate, stage: Stage | None, optimizer: optax.GradientTransformation
) -> optax.GradientTransformation:
    """``optimizer``, ``scale_by_learning_rate``, ``add_decoupled_decay``: the decoupled recipes' chain.

    With schedules that the decay's multiplier follows, the step evaluates
    each once (:func:`_scheduled_decoupled`); the state is the chain's either way.
    """
    if not shared_rate(lr, stage):
        return optax.chain(optimizer, lr.transform(), transform(stage))
    assert stage is not None
    return _scheduled_decoupled(lr, stage, optimizer)


def _scheduled_decoupled(
    lr: LearningRate, stage: Stage, optimizer: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
    """The decoupled chain with each eta_t evaluated once per step.

    ``scale_by_learning_rate``'s maths and state, and the decay's, with each
    leaf's multiplier computed from the same eta_t (:class:`Rates`) instead
    of a second evaluation of its schedule at the decay's own (equal) count.
    """
    inner = optax.with_extra_args_support(optimizer)

    def init_fn(params: Any) -> tuple[Any, Any, Any]:
        return inner.init(params), lr.init(params), stage.init(params)

    def update_fn(updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        opt_s, lr_s, dec_s = state
        updates, opt_s = inner.update(updates, opt_s, params, **extra)
        rates = Rates(getattr(lr_s, "count", None))
        updates, lr_s = lr.update(updates, lr_s, rates=rates)
        updates, dec_s = stage.update(updates, dec_s, params, given={"learning_rate": rates.multiplier})
        if (isinstance(dec_s, DecayState) and dec_s.count is not None
                and isinstance(lr_s, optax.ScaleByScheduleState)):
            # The two counts advance in lockstep; one increment serves both.
            dec_s = dec_s._replace(count=lr_s.count)
        return updates, (opt_s, lr_s, dec_s)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
