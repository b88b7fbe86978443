"""Coefficients: validation, schedules, concrete zeros and dtype casting.

Every decay form takes coefficients that are a Python/NumPy number, a JAX
array (possibly traced, e.g. under ``optax.inject_hyperparams``) or a schedule
(a callable of the step count). This module is the one place that knows how to
check, evaluate and cast them; the forms only write their maths.
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Callable
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

Schedule = Callable[[jax.Array], Any]
Coefficient = Union[float, int, np.floating, jax.Array, Schedule]  # noqa: UP007 (runtime alias)

# Steps at which a schedule is evaluated to find its peak when the caller does
# not say it: every step of the first 100k (warm-ups, short runs) and a
# geometric grid up to the int32 limit (long cosine/linear schedules).
_PEAK_GRID = np.unique(
    np.concatenate(
        [
            np.arange(0, 100_001),
            np.geomspace(1, np.iinfo(np.int32).max, 4000).astype(np.int64),
        ]
    )
).astype(np.int32)


def is_schedule(value: Any) -> bool:
    """Whether ``value`` is a schedule (a callable of the step count)."""
    return callable(value)


def is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]


def concrete_value(value: Any) -> float | None:
    """The float value of a concrete scalar coefficient, else ``None``."""
    if value is None or is_schedule(value) or is_traced(value):
        return None
    return float(np.real(np.asarray(value)))


def is_zero(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy zero (so the form can be skipped).

    JAX arrays never count, even concrete ones: ``optax.inject_hyperparams``
    passes arrays that may be zero at ``init`` and non-zero later, and the
    state built at ``init`` must serve every later value.
    """
    if isinstance(value, jax.Array):
        return False
    v = concrete_value(value)
    return v is not None and v == 0.0


def check(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """Validates a coefficient and returns it unchanged.

    Raises before any tracing, naming the argument, the value and the fix.
    Traced values (e.g. from ``optax.inject_hyperparams`` under ``jit``)
    cannot be inspected and are accepted as they are.
    """
    if value is None:
        if allow_none:
            return value
        raise TypeError(
            f"{name}=None is not a coefficient; pass a non-negative float, a "
            "scalar array or a schedule (a callable of the step count)."
        )
    if is_schedule(value) or is_traced(value):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name}={value!r} is a bool, not a coefficient; pass a "
            "non-negative float such as 1e-4."
        )
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name}={value!r} is complex; decay coefficients are real. Pass a "
            "non-negative float such as 1e-4."
        )
    if not isinstance(value, (numbers.Real, np.ndarray, np.generic, jax.Array)):
        raise TypeError(
            f"{name}={value!r} has type {type(value).__name__}; pass a "
            "non-negative float, a scalar array or a schedule (a callable of "
            "the step count)."
        )
    arr: Any = np.asarray(value)
    if arr.shape != ():
        raise TypeError(
            f"{name} must be a scalar, got an array of shape {arr.shape}; use "
            "mask= or separate transforms for per-parameter coefficients."
        )
    if np.issubdtype(arr.dtype, np.complexfloating) and arr.imag == 0:
        # optax.inject_hyperparams casts hyperparameters to the params' widest
        # dtype, complex for complex params; the real part is the coefficient.
        arr = arr.real
    # jnp.issubdtype knows bfloat16 (np.issubdtype does not): inject_hyperparams
    # casts coefficients to bf16 for bf16 params.
    elif not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(
            f"{name}={value!r} has dtype {arr.dtype}; decay coefficients are "
            "real. Pass a non-negative float such as 1e-4."
        )
    v = float(arr)
    if not math.isfinite(v):
        raise ValueError(
            f"{name}={v!r} is not finite; pass a finite non-negative value."
        )
    if v < 0:
        raise ValueError(
            f"{name}={v!r} is negative; decay coefficients must be >= 0 (a "
            f"negative {name} grows the weights). Pass abs({name}) or 0 to "
            "disable."
        )
    return value


def value_at(value: Any, count: jax.Array | None) -> jax.Array:
    """The scalar value of a coefficient at step ``count``."""
    value = jnp.asarray(value(count) if is_schedule(value) else value)
    # Complex-typed coefficients come from optax.inject_hyperparams on
    # complex params; the coefficient is the real part.
    return jnp.real(value) if jnp.iscomplexobj(value) else value


def cast_for(scalar: jax.Array, leaf: jax.Array) -> jax.Array:
    """Casts a real scalar to the real dtype of ``leaf``.

    The scalar is cast, never the leaf: a bf16 leaf meets a bf16 coefficient
    and stays bf16 (optax's ``add_decayed_weights`` promotes it to f32). For a
    complex leaf the coefficient takes the matching real dtype.
    """
    real = jnp.finfo(leaf.dtype).dtype
    return jnp.asarray(scalar).astype(real)


# Raised when a schedule's values depend on traced inputs and cannot be seen.
TRACED_VALUE_ERRORS = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


# Grid values per schedule object (and per x64 setting, which changes the
# values' precision): the first init checks a schedule and then finds its peak
# for the warnings, and lr_multiplier finds the same peak at construction; a
# schedule is a pure function of the step, so once is enough.
_GRID_CACHE: weakref.WeakKeyDictionary[Any, dict[bool, tuple[np.ndarray, np.ndarray]]] = (
    weakref.WeakKeyDictionary()
)


def _grid_values(schedule: Any) -> tuple[np.ndarray, np.ndarray]:
    """The steps of the peak grid and the schedule's values there (NumPy).

    Computed once per schedule object and x64 setting (cached while the
    schedule lives; one that cannot be weakly referenced or hashed is
    evaluated every time).
    """
    x64 = bool(jax.config.read("jax_enable_x64"))
    try:
        return _GRID_CACHE[schedule][x64]
    except (KeyError, TypeError):
        pass
    result = _evaluate_grid(schedule)
    try:
        _GRID_CACHE.setdefault(schedule, {})[x64] = result
    except TypeError:
        pass
    return result


def _evaluate_grid(schedule: Any) -> tuple[np.ndarray, np.ndarray]:
    # Runs eagerly even when called while an outer function is being traced
    # (jax.jit(opt.init)): the grid is a constant, so its values are too.
    with jax.ensure_compile_time_eval():
        try:
            values = jax.jit(jax.vmap(schedule))(jnp.asarray(_PEAK_GRID))
            return _PEAK_GRID, np.asarray(values)
        except Exception:  # a schedule written with Python control flow
            steps = np.unique(
                np.concatenate([[0], np.geomspace(1, np.iinfo(np.int32).max, 400).astype(np.int64)])
            )
            return steps, np.asarray([np.asarray(schedule(int(s))) for s in steps])


def schedule_peak(schedule: Any) -> float:
    """The largest value of ``schedule``, found on a grid of steps.

    Used where the caller does not pass ``peak=``. The grid holds every step
    below 100,001 and 4,000 geometrically spaced steps up to ``2**31 - 1``,
    evaluated in one vectorised call (a schedule that cannot be vectorised is
    evaluated step by step on the geometric part only).
    """
    if not is_schedule(schedule):
        return float(np.real(np.asarray(schedule)))
    return float(np.max(np.real(_grid_values(schedule)[1])))


def check_schedule(name: str, schedule: Any) -> None:
    """Rejects a schedule that returns a non-scalar, non-finite or negative
    coefficient at any step of the peak grid (see :func:`schedule_peak`).

    Called once, at the first ``init``: a schedule is a callable, so this is
    the earliest point where its values can be seen.
    """
    try:
        steps, values = _grid_values(schedule)
    except TRACED_VALUE_ERRORS:
        # The schedule closes over traced values (e.g. hyperparameters under
        # jax.vmap): its values are not known here, so there is nothing to check.
        return
    if values.shape != steps.shape:
        raise TypeError(
            f"{name}: the schedule returns values of shape {values.shape[1:]}, "
            "not scalars; a schedule must map the step count to a scalar."
        )
    if np.iscomplexobj(values) or not (
        jnp.issubdtype(values.dtype, jnp.floating) or jnp.issubdtype(values.dtype, jnp.integer)
    ):
        raise TypeError(
            f"{name}: the schedule returns values of dtype {values.dtype}; "
            "decay coefficients are real. Return a non-negative float."
        )
    # optax.linear_schedule(eta, 0.0, n) returns -1.5e-10 at step n (float32
    # rounding of eta + (0 - eta) * 1): tolerate negatives within rounding.
    tol = 1e-6 * float(np.max(np.abs(values[np.isfinite(values)]), initial=0.0))
    bad = np.flatnonzero(~np.isfinite(values) | (values < -tol))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}: the schedule returns {float(values[i])!r} at step "
            f"{int(steps[i])}; a schedule's values must be finite and >= 0 at "
            "every step. Clip it, e.g. lambda t: jnp.maximum(schedule(t), 0.0)."
        )
