"""``optax.inject_hyperparams`` without the mask trap.

Which arguments are numbers to inject and which are structure to keep static
is read from the factory's signature (:func:`argument_roles`), so a new form
or recipe needs no edit here.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _coefficients as coef
from decaytx import _groups, _schedules, _warnings

COEFFICIENT = "coefficient"  # a decay coefficient: injected, its schedule checked here
NUMBER = "number"  # a numeric hyperparameter: injected, as optax does
STATIC = "static"  # structure: kept static

_NUMBERS = (float, int, np.number, np.ndarray, jax.Array)
_COEFFICIENT_MEMBERS = frozenset(typing.get_args(coef.Coefficient))


def _members(annotation: Any) -> set[Any]:
    """The types a (resolved) annotation admits: the members of a union."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {m for a in typing.get_args(annotation) for m in _members(a)}
    return {annotation}


def _role_of(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return NUMBER  # unannotated: optax's own rule (callables become schedules)
    members = _members(annotation)
    if _COEFFICIENT_MEMBERS <= members:
        return COEFFICIENT
    numeric = any(
        isinstance(m, type) and m is not bool and issubclass(m, _NUMBERS) for m in members
    )
    # Any (masks, anchors, dtypes), bools, strings and literals are structure;
    # so is an optional number, whose None switches a component off
    # (momentum=None builds another chain than momentum=0.9).
    optional = type(None) in members or Any in members
    return NUMBER if numeric and not optional else STATIC


def _resolved_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's annotations as types (``from __future__`` strings evaluated)."""
    target = inspect.unwrap(factory)
    try:
        return typing.get_type_hints(target)
    except Exception:  # a name only imported under TYPE_CHECKING, say
        hints = {}
        namespace = getattr(target, "__globals__", {})
        for name, p in inspect.signature(factory).parameters.items():
            try:
                hints[name] = eval(p.annotation, namespace) if isinstance(p.annotation, str) else p.annotation  # noqa: S307
            except Exception:
                hints[name] = Any  # unknown: kept static (never turned into a schedule)
        return hints


def argument_roles(factory: Callable[..., Any]) -> dict[str, str]:
    """Each argument of ``factory``: ``"coefficient"``, ``"number"`` or ``"static"``.

    Read from the signature's annotations: an argument annotated with
    :data:`decaytx._coefficients.Coefficient` (optionally ``| None``) is a
    coefficient; one whose annotation admits a number (``float``, ``int``,
    ``jax.Array``, ``optax.ScalarOrSchedule``) and neither ``None`` nor
    ``Any`` is a number; everything else (masks and anchors typed ``Any``,
    bools, string literals such as ``decay_scaling``, dtypes, optional numbers
    such as ``momentum``) is static. An unannotated argument is a number, as
    in optax.
    """
    hints = _resolved_hints(factory)
    return {
        name: _role_of(hints.get(name, p.annotation))
        for name, p in inspect.signature(factory).parameters.items()
    }


def _check_coefficient_schedules(bound: Any, names: Iterable[str]) -> None:
    """optax calls a schedule with the count inside init and update, and the
    decay transform then sees only its value (traced under jit): a schedule
    is checked here, where it is still a schedule. An optax
    ``StatefulSchedule`` is called with its own state, never with a step, so
    it is left to optax (as ``optax.inject_hyperparams`` does)."""
    for k in names:
        v = bound.arguments.get(k)
        if v is None or _groups.is_tree(v) or coef.is_stateful_schedule(v):
            continue
        if coef.is_schedule(v):
            _schedules.check_schedule(k, v)


def _optax_static(bound: Any, keep: set[str]) -> dict[str, Any]:
    """The arguments optax keeps out of ``state.hyperparams`` (its own rule)."""
    return {
        k: v for k, v in bound.arguments.items()
        if k in keep or isinstance(v, bool)
        or not (callable(v) or isinstance(v, (int, float, jax.Array, np.ndarray)))
    }


def _check_overflow(bound: Any, static: dict[str, Any], dtype: Any, params: Any) -> None:
    """A float hyperparameter that the cast to ``dtype`` (f16) would make inf."""
    if dtype is None:
        try:
            dtype = optax.tree.dtype(params, "highest")
        except Exception:  # no array leaves: nothing is cast
            return
    if not jnp.issubdtype(dtype, jnp.floating):
        return
    top = float(jnp.finfo(dtype).max)
    for k, v in bound.arguments.items():
        if k in static or isinstance(v, (bool, int)) or coef.is_traced(v):
            continue
        if isinstance(v, jax.Array) and not getattr(v, "weak_type", False):
            continue  # optax leaves a strongly typed array as it is
        if isinstance(v, (float, np.floating, np.ndarray, jax.Array)) and np.ndim(v) == 0:
            x = float(np.real(np.asarray(v)))
            if math.isfinite(x) and abs(x) > top:
                raise ValueError(coef.overflow_message(k, v, dtype))


def _static_clash(static: dict[str, Any], hyperparams: Any) -> None:
    """``state.hyperparams[k] = ...`` for an argument kept static."""
    for k in sorted(set(static) & set(hyperparams)):
        tree = _groups.is_tree(static[k])
        why = ("a coefficient tree, and optax injects only scalars and schedules"
               if tree else "structure (or named in static_args)")
        fix = (
            f"To change it between steps, give {k}= a scalar or a schedule (then it "
            f"is in state.hyperparams), put schedules at the tree's leaves, or build "
            f"one transform per group under optax.multi_transform, each with a scalar "
            f"{k}= under decaytx.inject_hyperparams."
        ) if tree else f"Build a new transform with the {k}= you want."
        raise TypeError(
            f"decaytx.inject_hyperparams: state.hyperparams[{k!r}] was set to "
            f"{coef.show(hyperparams[k])}, but "
            f"{k}={coef.show(static[k])} is kept static ({why}), so it is not a "
            f"hyperparameter and cannot be changed through the state. {fix}"
        )


def _guard(tx: Any, bound: Any, static: dict[str, Any], dtype: Any) -> Any:
    """The injected transform, checked at init and update.

    optax rebuilds the inner transform at every init, so its once-only
    DecayWarnings would fire again; the arguments are the same, so the
    warnings are too. This transform's own record of what has warned lets
    each through once (per params signature), without touching the
    process-wide warning filters. ``init`` also refuses a float that the cast
    to the hyperparameter dtype would overflow, naming the value given, and
    ``update`` a static argument set in ``state.hyperparams`` (optax would
    pass it twice).
    """
    warned: set[Any] = set()

    def init_fn(params: Any) -> Any:
        _check_overflow(bound, static, dtype, params)
        token = _warnings.WARNED.set(warned)
        try:
            return tx.init(params)
        finally:
            _warnings.WARNED.reset(token)

    def update_fn(updates: Any, state: Any, params: Any = None, **extra: Any) -> Any:
        _static_clash(static, getattr(state, "hyperparams", {}))
        return tx.update(updates, state, params, **extra)

    return tx._replace(init=init_fn, update=update_fn)


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., Any]:
    r"""``optax.inject_hyperparams`` that keeps structural arguments static.

    optax treats every callable argument as a schedule; a callable ``mask``
    is then called with the step count and decay is silently turned off.
    This wrapper reads the factory's signature (:func:`argument_roles`):
    arguments typed as structure (``mask``, ``anchor``, ``cautious``,
    ``decay_scaling``, ``nesterov``, dtypes, and ``momentum``, whose ``None``
    builds another chain) are added to ``static_args``, so only the numeric
    coefficients become hyperparameters in the state. Passing a trapped mask
    straight to ``optax.inject_hyperparams`` raises a ``TypeError`` that
    points here. An optax ``StatefulSchedule`` works as with
    ``optax.inject_hyperparams`` (it is never called with a step count).

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
    roles = argument_roles(inner_factory)
    static |= {k for k, role in roles.items() if role == STATIC}
    coefficients = [k for k, role in roles.items() if role == COEFFICIENT and k not in static]
    signature = inspect.signature(inner_factory)
    # decay_scaling="schedule"/"corrected" needs the learning-rate schedule
    # itself (eta_t / eta_max), not its value at the step.
    scaled = {"learning_rate", "decay_scaling"} <= set(roles)
    plain = _injector(inner_factory, static, hyperparam_dtype)  # refuses unknown static_args

    @functools.wraps(inner_factory)
    def factory(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        _check_coefficient_schedules(bound, coefficients)
        keep = set(static)
        # A coefficient tree that is itself callable (an Equinox module of
        # floats) would be taken for a schedule by optax: keep it static.
        keep |= {k for k in coefficients if callable(bound.arguments.get(k))
                 and _groups.is_tree(bound.arguments.get(k))}
        if scaled and bound.arguments["decay_scaling"] in ("schedule", "corrected"):
            keep.add("learning_rate")
        inject = plain if keep == static else _injector(inner_factory, keep, hyperparam_dtype)
        return _guard(inject(*args, **kwargs), bound, _optax_static(bound, keep),
                      hyperparam_dtype)

    return factory


def _injector(inner_factory: Callable[..., Any], static: set[str], dtype: Any) -> Any:
    return optax.inject_hyperparams(inner_factory, static_args=tuple(sorted(static)),
                                    hyperparam_dtype=dtype)
