"""One coefficient: what it may be, its validation, value, zero test and dtype.

Every decay form takes coefficients that are a Python/NumPy number, a JAX
array (possibly traced, e.g. under ``optax.inject_hyperparams``) or a schedule
(a callable of the step count). This module is the one place that knows how to
check, evaluate and cast one of them; the forms only write their maths. What a
schedule does over its steps (its survey, peak and horizon) is
:mod:`decaytx._schedules`; :func:`number` is the one validator of plain numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np
from optax.schedules import StatefulSchedule

Schedule = Callable[[jax.Array], Any]
Coefficient = Union[float, int, np.floating, jax.Array, Schedule]  # noqa: UP007 (runtime alias)

_INT32_MAX = int(np.iinfo(np.int32).max)

# Schedule names that lived here before decaytx 0.3 split the survey into
# decaytx._schedules; still importable from here (``coef.schedule_peak``).
_MOVED_TO_SCHEDULES = frozenset({
    "HorizonSchedule", "Survey", "check_schedule", "peak", "remember",
    "schedule_peak", "survey", "_grid_values",
})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_SCHEDULES:
        from decaytx import _schedules

        return getattr(_schedules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_schedule(value: Any) -> bool:
    """Whether ``value`` is a schedule (a callable of the step count).

    Not every callable is one: a type (``jnp.float32``, ``float``) is refused
    by :func:`check`, and a callable that is a pytree with leaves (an Equinox
    module of floats) is a tree of coefficients, the rule masks use too. A
    ``jax.tree_util.Partial`` (a function with bound arguments) is a schedule.
    """
    if not callable(value) or isinstance(value, type):
        return False
    if isinstance(value, jax.tree_util.Partial):
        return True
    leaves = jax.tree_util.tree_leaves(value)
    return not leaves or (len(leaves) == 1 and leaves[0] is value)


def is_stateful_schedule(value: Any) -> bool:
    """Whether ``value`` is an optax ``StatefulSchedule`` (called with its state).

    optax's own test (``isinstance``, as in ``optax.inject_hyperparams``): such a
    schedule must never be called with a step count.
    """
    return isinstance(value, StatefulSchedule)


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


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened to about ``limit`` characters for messages."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"an int of {len(str(abs(value)))} digits"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 15]}...{text[-10:]} ({len(text)} characters)"


_PER_LEAF_FIX = (
    "for per-parameter coefficients pass a pytree of coefficients (a prefix "
    "of params), or use mask= or separate transforms."
)


def check(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """Validates a coefficient and returns it unchanged.

    Raises before any tracing, naming the argument, the value and the fix.
    A traced value (e.g. from ``optax.inject_hyperparams`` under ``jit``)
    cannot be inspected, but its shape and dtype are static: a traced array
    that is not a scalar, or is boolean, is refused; its value is used as given.
    """
    if value is None:
        if allow_none:
            return value
        raise TypeError(
            f"{name}=None is not a coefficient; pass a non-negative float, a "
            "scalar array or a schedule (a callable of the step count)."
        )
    if is_traced(value):
        return _check_traced(name, value)
    if isinstance(value, type):
        raise TypeError(
            f"{name}={show(value)} is a type, not a coefficient or a schedule; "
            f"pass a number (e.g. {name}=1e-4, or jnp.float32(1e-4) for a typed "
            "scalar) or a schedule (a function of the step count)."
        )
    if is_stateful_schedule(value):
        raise TypeError(
            f"{name}={show(value)} is an optax StatefulSchedule, which is called "
            "with its own state, not with the step count; pass it through "
            "decaytx.inject_hyperparams (or optax.inject_hyperparams), which "
            "keeps its state and hands the transform its value at each step."
        )
    if is_schedule(value):
        return value
    if callable(value):
        raise TypeError(
            f"{name}={show(value)} is a callable pytree with leaves (e.g. an "
            "Equinox module), which is a tree of coefficients, not a schedule "
            "and not one coefficient; pass a number or a schedule here, or "
            "wrap a schedule-like module in a plain function: lambda t: module(t)."
        )
    _check_number_type(name, value)
    _check_scalar(name, value)
    return value


def _check_traced(name: str, value: Any) -> Any:
    shape = tuple(getattr(value, "shape", ()))
    if shape != ():
        raise TypeError(
            f"{name} is a traced array of shape {shape} ({show(value)}); a "
            "coefficient must be a scalar (shape ()), and a tracer's shape is "
            f"known before tracing. Pass a 0-d value such as jnp.asarray(0.1); "
            + _PER_LEAF_FIX
        )
    dtype = getattr(value, "dtype", None)
    if dtype is not None and not jnp.issubdtype(dtype, jnp.number):
        raise TypeError(
            f"{name} is a traced array of dtype {dtype} ({show(value)}); decay "
            "coefficients are real numbers. Pass a float such as jnp.asarray(0.1)."
        )
    return value


def _check_number_type(name: str, value: Any) -> None:
    """Refuses what is not a real number JAX can hold (bool, Decimal, complex...)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name}={value!r} is a bool, not a coefficient; pass a "
            "non-negative float such as 1e-4."
        )
    if isinstance(value, numbers.Number) and not isinstance(
        value, (int, float, complex, np.generic)
    ):
        # decimal.Decimal, fractions.Fraction and other number types: JAX has
        # no dtype for them (NumPy makes an object array).
        try:
            as_float = f" = {float(value)!r}"  # pyright: ignore[reportArgumentType]
        except (TypeError, ValueError, OverflowError):
            as_float = ""
        raise TypeError(
            f"{name}={show(value)} is a {type(value).__module__}."
            f"{type(value).__name__}, which JAX cannot hold; pass a Python "
            f"float instead: {name}=float({show(value)}){as_float}."
        )
    if isinstance(value, complex) or (
        isinstance(value, np.generic) and np.iscomplexobj(value)
    ):
        raise TypeError(
            f"{name}={show(value)} is complex; decay coefficients are real. Pass "
            "a non-negative float such as 1e-4."
        )
    if isinstance(value, int) and abs(value) > _INT32_MAX:
        raise ValueError(
            f"{name}={show(value)} is too large for a coefficient (JAX holds a "
            "Python int as int32); pass a finite non-negative value, as a float "
            "if it must be large."
        )
    if not isinstance(value, (numbers.Real, np.ndarray, np.generic, jax.Array)):
        raise TypeError(
            f"{name}={show(value)} has type {type(value).__name__}; pass a "
            "non-negative float, a scalar array or a schedule (a callable of "
            "the step count)."
        )


def _check_scalar(name: str, value: Any) -> None:
    """A concrete array or number: a real scalar, finite and >= 0."""
    arr: Any = np.asarray(value)
    if arr.shape != ():
        raise TypeError(
            f"{name} must be a scalar, got an array of shape {arr.shape}; "
            + _PER_LEAF_FIX
        )
    if np.issubdtype(arr.dtype, np.complexfloating) and arr.imag == 0:
        # optax.inject_hyperparams casts hyperparameters to the params' widest
        # dtype, complex for complex params; the real part is the coefficient.
        arr = arr.real
    # jnp.issubdtype knows bfloat16 (np.issubdtype does not): inject_hyperparams
    # casts coefficients to bf16 for bf16 params.
    elif not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(
            f"{name}={show(value)} has dtype {arr.dtype}; decay coefficients are "
            "real. Pass a non-negative float such as 1e-4."
        )
    if np.isinf(arr) and jnp.finfo(arr.dtype).bits <= 16:
        raise ValueError(overflow_message(name, arr, jnp.dtype(arr.dtype)))
    v = float(arr)
    grows = f" A negative coefficient grows the weights: pass abs({name}), or 0 to disable."
    number(name, v, low=0.0, fix=grows if v < 0 else "")


def overflow_message(name: str, value: Any, dtype: Any) -> str:
    """A hyperparameter that overflowed (or would) the dtype it is cast to."""
    return (
        f"{name}={show(value)} overflowed the hyperparameter dtype {jnp.dtype(dtype).name} "
        f"(largest finite value {float(jnp.finfo(dtype).max):g}) and became inf: "
        "optax.inject_hyperparams casts float hyperparameters to the widest float "
        "dtype of params. Pass hyperparam_dtype=jnp.float32 to "
        "decaytx.inject_hyperparams (or optax.inject_hyperparams), or a value "
        "that fits."
    )


def _range_text(low: float | None, low_open: bool, high: float | None,
                high_open: bool, integer: bool) -> str:
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else repr(x)

    if high is None:
        kind = "an int" if integer else "finite"
        if low is None:
            return kind
        return f"{kind}{'' if integer else ' and'} {'>' if low_open else '>='} {fmt(low)}"
    left = "(-inf" if low is None else f"{'(' if low_open else '['}{fmt(low)}"
    return f"{'an int ' if integer else ''}in {left}, {fmt(high)}{')' if high_open else ']'}"


def number(
    name: str,
    value: Any,
    *,
    low: float | None = 0.0,
    low_open: bool = False,
    high: float | None = None,
    high_open: bool = True,
    integer: bool = False,
    fix: str = "",
) -> float:
    """Checks one concrete real number (a hyperparameter) and returns it as a float.

    The one validator of plain numbers (scaling-rule arguments, ``peak=``,
    ``total_steps``, betas and epsilons, and the value of a concrete
    coefficient). ``value`` must be a real number (a Python or NumPy int or
    float, or a concrete 0-d array; not a bool, a string or a complex; an int
    when ``integer``), finite, and inside ``[low, high)`` (open or closed ends
    as given; ``None`` for no bound). Raises ``TypeError`` for the kind and
    ``ValueError`` for the value, naming the argument, the value and the range;
    ``fix`` (a sentence) is appended.
    """
    bad_kind = isinstance(value, (bool, np.bool_, str, bytes, complex)) or is_traced(value)
    if integer:
        bad_kind = bad_kind or not isinstance(value, (int, np.integer))
    elif not bad_kind:
        try:
            v = float(value)  # pyright: ignore[reportArgumentType]
        except (TypeError, ValueError, OverflowError):
            bad_kind = True
    span = _range_text(low, low_open, high, high_open, integer)
    if bad_kind:
        want = "a Python int" if integer else "a Python float or int"
        raise TypeError(
            f"{name}={show(value)} must be {want} ({span}); got {type(value).__name__}.{fix}"
        )
    v = float(value)  # pyright: ignore[reportArgumentType]
    if not math.isfinite(v):
        raise ValueError(f"{name}={v!r} is not finite; {name} must be {span}.{fix}")
    too_low = low is not None and (v < low or (low_open and v == low))
    too_high = high is not None and (v > high or (high_open and v == high))
    if too_low or too_high:
        shown = show(value) if integer else repr(v)
        if v < 0 and low is not None and low >= 0:
            raise ValueError(f"{name}={shown} is negative; {name} must be {span}.{fix}")
        raise ValueError(f"{name}={shown} must be {span}.{fix}")
    return v


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
