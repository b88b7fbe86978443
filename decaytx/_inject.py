"""``optax.inject_hyperparams`` without the mask trap."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import optax

from decaytx import _coefficients as coef
from decaytx import _groups, _warnings

# Arguments that are structure, not numbers: optax would turn a callable mask
# into a "schedule" (optax #57, #1373) and a bool into an array.
STRUCTURAL_ARGS = ("mask", "anchor", "cautious", "decay_scaling", "nesterov", "momentum")
# Decay coefficients whose schedules are checked when the factory is called.
COEFFICIENT_ARGS = ("weight_decay", "l1", "l2")


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., Any]:
    r"""``optax.inject_hyperparams`` that keeps structural arguments static.

    optax treats every callable argument as a schedule; a callable ``mask``
    is then called with the step count and decay is silently turned off.
    This wrapper adds ``mask``, ``anchor``, ``cautious``, ``decay_scaling``,
    ``nesterov`` and ``momentum`` (those the factory has) to ``static_args``,
    so only the numeric coefficients become hyperparameters in the state.
    (``momentum`` is static because ``None`` and a number build different
    chains.) Passing a trapped mask straight to ``optax.inject_hyperparams``
    raises a ``TypeError`` that points here.

    A recipe called with ``decay_scaling="schedule"`` or ``"corrected"`` needs
    the learning-rate schedule itself (for :math:`\eta_t/\eta_{max}`), not its
    value at the current step, so for that call ``learning_rate`` is kept
    static too (it is then not in ``state.hyperparams``).

    Args:
      inner_factory: a decaytx (or optax) transform factory.
      static_args: further arguments to keep static.
      hyperparam_dtype: as in ``optax.inject_hyperparams``.

    Returns:
      A factory whose state holds the numeric hyperparameters in
      ``state.hyperparams``, changeable between steps.

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> t = decaytx.inject_hyperparams(decaytx.add_l2_grad)(
      ...     0.1, mask=decaytx.masks.ndim_at_least(2))
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
      >>> state = t.init(params)
      >>> hp = state.hyperparams
      >>> hp["weight_decay"] = jnp.asarray(0.5, dtype=hp["weight_decay"].dtype)
      >>> t.update(params, state, params)[0]["w"]
      Array([[1.5, 1.5],
             [1.5, 1.5]], dtype=float32)

    References:
      optax issues `#57 <https://github.com/google-deepmind/optax/issues/57>`_
      and `#1373 <https://github.com/google-deepmind/optax/issues/1373>`_
      (a callable mask under ``inject_hyperparams``).
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    names = inspect.signature(inner_factory).parameters
    static |= {a for a in STRUCTURAL_ARGS if a in names}
    signature = inspect.signature(inner_factory)
    injected = optax.inject_hyperparams(
        inner_factory, static_args=tuple(sorted(static)), hyperparam_dtype=hyperparam_dtype
    )
    injected_static_lr = (
        optax.inject_hyperparams(
            inner_factory,
            static_args=tuple(sorted(static | {"learning_rate"})),
            hyperparam_dtype=hyperparam_dtype,
        )
        if {"learning_rate", "decay_scaling"} <= set(names)
        else None
    )

    def needs_static_lr(args: Any, kwargs: Any) -> bool:
        if injected_static_lr is None:
            return False
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments["decay_scaling"] in ("schedule", "corrected")

    @functools.wraps(inner_factory)
    def factory(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        for k in COEFFICIENT_ARGS:
            v = bound.arguments.get(k)
            # optax calls a schedule with the count inside init and update;
            # the decay transform then sees only its value (traced under jit),
            # so check the schedule here, where it is still a schedule.
            if k not in static and v is not None and not _groups.is_tree(v) and coef.is_schedule(v):
                coef.check_schedule(k, v)
        # A coefficient tree that is itself callable (an Equinox module of
        # floats) would be taken for a schedule by optax: keep it static.
        trees = {k for k in COEFFICIENT_ARGS if callable(bound.arguments.get(k))
                 and _groups.is_tree(bound.arguments.get(k))}
        if trees:
            lr_static = {"learning_rate"} if needs_static_lr(args, kwargs) else set()
            tx = optax.inject_hyperparams(
                inner_factory,
                static_args=tuple(sorted(static | trees | lr_static)),
                hyperparam_dtype=hyperparam_dtype,
            )(*args, **kwargs)
        elif needs_static_lr(args, kwargs):
            assert injected_static_lr is not None
            tx = injected_static_lr(*args, **kwargs)
        else:
            tx = injected(*args, **kwargs)
        # optax rebuilds the inner transform at every init, so its once-only
        # DecayWarnings would fire again; the arguments are the same, so the
        # warnings are too. This transform's own record of what has warned
        # lets each through once (per params signature), without touching
        # the process-wide warning filters.
        warned: set[Any] = set()

        def init_fn(params: Any) -> Any:
            token = _warnings.WARNED.set(warned)
            try:
                return tx.init(params)
            finally:
                _warnings.WARNED.reset(token)

        return tx._replace(init=init_fn)

    return factory
