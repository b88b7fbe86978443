"""Evaluating a schedule on many steps at once (for the survey).

Four ways, fastest first; :func:`decaytx._schedules.survey` picks one.
:class:`Program`: traced once on a scalar step, run with NumPy. Otherwise
:class:`Vectorised` (``vmap``, compiled, in chunks) or :func:`eval_array`
(one eager call with an array of steps), and :func:`eval_python` (one call
per step) for a schedule written with Python control flow.

The first ``init`` surveys a schedule on about 20,000 steps
(:mod:`decaytx._schedules`). Compiling ``vmap(schedule)`` for that costs XLA
seconds for a 1000-knot ``optax.piecewise_constant_schedule`` (9,000
operations), and calling it eagerly costs one dispatch per operation. Traced
once on a scalar step, a schedule whose every intermediate value is a scalar
is an elementwise function of the step; NumPy runs each of its operations on
the whole grid in microseconds.

Values are XLA's, to rounding: operations that IEEE arithmetic rounds
correctly (add, sub, mul, float div, sqrt, min/max, comparisons, selects,
int-to-float conversions) run in NumPy, one correctly rounded operation
each; the other elementwise ones (cos, exp, pow, integer division,
float-to-int conversions...) are bound eagerly on the whole grid, one XLA
dispatch each. XLA itself may differ by an ulp where it rewrites (a
division by a constant becomes a multiplication by its reciprocal, in eager
calls and under jit alike) and it flushes subnormals to zero; the survey's
tolerance is far above both. Anything else (an array-valued
intermediate, a loop, a reduction) raises :class:`Unsupported`, and the
caller evaluates the schedule another way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

from decaytx._coefficients import is_traced


class Unsupported(Exception):
    """The schedule's jaxpr has an operation this evaluator does not run."""


def _same(x: Any) -> Any:
    return x


def _select(pred: Any, *cases: Any) -> Any:
    if len(cases) == 2:
        return np.where(pred, cases[1], cases[0])
    return np.choose(pred, np.broadcast_arrays(*cases))


# Correctly rounded in IEEE arithmetic, so NumPy gives XLA's result bit for
# bit (subnormals aside).
_EXACT: dict[str, Callable[..., Any]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "neg": np.negative,
    "max": np.maximum, "min": np.minimum, "abs": np.abs, "sign": np.sign,
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "eq": np.equal, "ne": np.not_equal, "div": np.true_divide, "and": np.bitwise_and, "or": np.bitwise_or,
    "xor": np.bitwise_xor, "not": np.invert, "floor": np.floor, "ceil": np.ceil,
    "sqrt": np.sqrt, "square": np.square, "is_finite": np.isfinite,
    "select_n": _select, "copy": _same, "copy_p": _same,
}
# Elementwise, but NumPy's result may differ from XLA's (transcendentals,
# integer division and remainder, float-to-int conversion): bound eagerly.
_BOUND = frozenset({
    "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos",
    "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "asinh", "acosh",
    "atanh", "pow", "integer_pow", "rsqrt", "cbrt", "rem", "round", "erf",
    "erfc", "erf_inv", "lgamma", "digamma", "nextafter", "clamp",
    "convert_element_type", "shift_left", "shift_right_logical",
    "shift_right_arithmetic", "population_count", "reduce_precision",
})
_NUMPY_DTYPES = frozenset(np.dtype(d) for d in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.float32, np.float64,
))
_SUB_JAXPRS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
# Calls that run their jaxpr once on their operands (so it can be inlined);
# scan and while also carry a jaxpr but loop over it, and are refused.
_CALLS = frozenset({
    "jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
    "custom_vjp_call_jaxpr", "checkpoint", "remat",
})


def _bind(eqn: Any) -> Callable[..., Any]:
    prim, params = eqn.primitive, dict(eqn.params)

    def run(*args: Any) -> Any:
        shaped = np.broadcast_arrays(*args)
        return np.asarray(prim.bind(*(jnp.asarray(a) for a in shaped), **params))

    return run


def _astype(x: Any, dtype: Any) -> Any:
    return np.asarray(x).astype(dtype)


def _times_reciprocal(x: Any, c: Any) -> Any:
    return np.multiply(x, np.reciprocal(c))


def _numpy_op(eqn: Any, constant_divisor: bool) -> Callable[..., Any]:
    """The function that runs one equation on NumPy arrays.

    XLA rewrites a float division by a constant as a multiplication by the
    constant's (rounded) reciprocal, in eager calls and under ``jit``: so does
    this, to give the values the step will compute.
    """
    name = eqn.primitive.name
    dtypes = {np.dtype(v.aval.dtype) for v in (*eqn.invars, *eqn.outvars)}
    in_numpy = dtypes <= _NUMPY_DTYPES
    if name == "convert_element_type" and in_numpy:
        src, dst = eqn.invars[0].aval.dtype, np.dtype(eqn.params["new_dtype"])
        if not (jnp.issubdtype(src, jnp.floating) and not jnp.issubdtype(dst, jnp.floating)):
            return functools.partial(_astype, dtype=dst)
    int_div = name == "div" and not jnp.issubdtype(eqn.outvars[0].aval.dtype, jnp.floating)
    if name in _EXACT and in_numpy and name != "convert_element_type" and not int_div:
        return _times_reciprocal if name == "div" and constant_divisor else _EXACT[name]
    return _bind(eqn)


class Program:
    """A flat list of ``(function, input slots, output slots)`` over NumPy values."""

    def __init__(self, closed: Any) -> None:
        self.constants: list[tuple[int, Any]] = []
        self.ops: list[tuple[Callable[..., Any], tuple[int, ...], tuple[int, ...]]] = []
        self.size = 0
        self.literals: dict[tuple[Any, bytes], int] = {}
        self.fixed: set[int] = set()  # slots known before any step is seen
        jaxpr = closed.jaxpr
        if len(jaxpr.invars) != 1 or len(jaxpr.outvars) != 1:
            raise Unsupported("not one step in, one value out")
        self.input = self._new()
        env = {jaxpr.invars[0]: self.input}
        (self.output,) = self._inline(jaxpr, closed.consts, env)
        # Each op's inputs that no later op reads are dropped after it: 9,000
        # grid-sized intermediates kept alive would take most of a GiB.
        last = {s: i for i, (_, ins, _) in enumerate(self.ops) for s in ins}
        self.drops = [tuple(s for s in set(ins) if last[s] == i and s != self.output)
                      for i, (_, ins, _) in enumerate(self.ops)]

    def _new(self) -> int:
        self.size += 1
        return self.size - 1

    def _read(self, var: Any, env: dict[Any, int]) -> int:
        if isinstance(var, Literal):
            value = np.asarray(var.val, dtype=var.aval.dtype)  # pyright: ignore[reportAttributeAccessIssue]
            key = (value.dtype, value.tobytes())
            if key not in self.literals:
                self.literals[key] = self._new()
                self.constants.append((self.literals[key], value))
                self.fixed.add(self.literals[key])
            return self.literals[key]
        if tuple(var.aval.shape) != ():
            raise Unsupported(f"an intermediate of shape {var.aval.shape}")
        return env[var]

    def _inline(self, jaxpr: Any, consts: Any, env: dict[Any, int]) -> list[int]:
        for var, value in zip(jaxpr.constvars, consts, strict=True):
            if is_traced(value):
                raise jax.errors.TracerArrayConversionError(value)  # pyright: ignore[reportArgumentType]
            if np.shape(value) != ():
                raise Unsupported("an array constant")
            env[var] = self._new()
            self.constants.append((env[var], np.asarray(value)))
            self.fixed.add(env[var])
        for eqn in jaxpr.eqns:
            ins = [self._read(v, env) for v in eqn.invars]
            outs = self._equation(eqn, ins)
            for var, slot in zip(eqn.outvars, outs, strict=True):
                if tuple(var.aval.shape) != ():
                    raise Unsupported(f"an intermediate of shape {var.aval.shape}")
                env[var] = slot
        return [self._read(v, env) for v in jaxpr.outvars]

    def _equation(self, eqn: Any, ins: list[int]) -> list[int]:
        name = eqn.primitive.name
        if name in _EXACT or name in _BOUND:
            outs = [self._new() for _ in eqn.outvars]
            self.ops.append((_numpy_op(eqn, ins[-1] in self.fixed), tuple(ins), tuple(outs)))
            if all(i in self.fixed for i in ins):  # folded to a constant by XLA
                self.fixed.update(outs)
            return outs
        params = eqn.params
        sub = next((params[k] for k in _SUB_JAXPRS if k in params), None) if name in _CALLS else None
        if isinstance(sub, (ClosedJaxpr, Jaxpr)):  # jit, custom_jvp, remat: inline
            inner = sub.jaxpr if isinstance(sub, ClosedJaxpr) else sub
            consts = sub.consts if isinstance(sub, ClosedJaxpr) else ()
            return self._inline(inner, consts, dict(zip(inner.invars, ins, strict=True)))
        if name == "cond":
            return self._cond(eqn, ins)
        raise Unsupported(name)

    def _cond(self, eqn: Any, ins: list[int]) -> list[int]:
        """``lax.cond`` on a scalar: every branch on every step, then a select."""
        index, operands = ins[0], ins[1:]
        branches = [self._inline(b.jaxpr, b.consts, dict(zip(b.jaxpr.invars, operands, strict=True)))
                    for b in eqn.params["branches"]]
        last = len(branches) - 1
        outs = []
        for k in range(len(eqn.outvars)):
            out = self._new()

            def choose(i: Any, *values: Any) -> Any:
                return np.choose(np.clip(i, 0, last), np.broadcast_arrays(*values))

            self.ops.append((choose, (index, *(b[k] for b in branches)), (out,)))
            outs.append(out)
        return outs

    def __call__(self, steps: np.ndarray) -> np.ndarray:
        slots: list[Any] = [None] * self.size
        for slot, value in self.constants:
            slots[slot] = value
        slots[self.input] = np.asarray(steps, np.int32)
        with np.errstate(all="ignore"), jax.ensure_compile_time_eval():
            for (fn, ins, (out,)), drop in zip(self.ops, self.drops, strict=True):
                slots[out] = fn(*[slots[i] for i in ins])
                for i in drop:
                    slots[i] = None
        return np.broadcast_to(slots[self.output], np.shape(steps))


class NotElementwise(Exception):
    """The schedule cannot be evaluated on an array of steps in one call."""


def eval_array(schedule: Any, steps: np.ndarray) -> np.ndarray:
    """One call with an array of steps: optax's schedules are elementwise.

    Much cheaper than compiling ``vmap(schedule)`` (a 1000-knot piecewise
    schedule takes seconds of XLA compilation); refused where the result is
    not one value per step.
    """
    try:
        out = schedule(jnp.asarray(steps, jnp.int32))
    except Exception as e:  # Python control flow, lax.cond on the step, ...
        raise NotElementwise from e
    if is_traced(out):
        # The schedule closes over a traced value (a learning rate under
        # jax.vmap, jit or grad): no way of evaluating it can see values.
        raise jax.errors.TracerArrayConversionError(out)  # pyright: ignore[reportArgumentType]
    if out is None:
        return np.full(steps.shape, None, dtype=object)
    try:
        values = np.asarray(out)
    except Exception as e:
        raise NotElementwise from e
    if values.shape == ():
        return np.broadcast_to(values, steps.shape)
    if values.shape != steps.shape:
        raise NotElementwise
    return values


_CHUNK = 4_096
# Above this many operations, compiling vmap(schedule) costs more than calling
# the schedule eagerly on an array (XLA takes ~20 s for a 1000-knot
# optax.piecewise_constant_schedule); below it, compiling is cheaper than
# the eager dispatch (and per-shape compilation) of each operation.
COMPILE_LIMIT = 1_000


class Vectorised:
    """``vmap(schedule)``, traced once, compiled on first use, run in chunks.

    Chunks of a fixed size bound the memory (a schedule that broadcasts the
    step against its 1000 knots holds chunk x 1000 values, not grid x 1000)
    and share one compilation.
    """

    def __init__(self, schedule: Any) -> None:
        self.fn = jax.jit(jax.vmap(schedule))
        traced = self.fn.trace(jax.ShapeDtypeStruct((_CHUNK,), jnp.int32))
        self.size = len(traced.jaxpr.jaxpr.eqns)

    def __call__(self, steps: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, steps.size, _CHUNK):
            part = steps[start : start + _CHUNK]
            padded = np.pad(part, (0, _CHUNK - part.size), mode="edge")
            values = self.fn(jnp.asarray(padded, jnp.int32))
            if values is None:
                return np.full(steps.shape, None, dtype=object)
            if is_traced(values):
                raise jax.errors.TracerArrayConversionError(values)  # pyright: ignore[reportArgumentType]
            out.append(np.asarray(values)[: part.size])
        return np.concatenate(out)


def eval_python(schedule: Any, steps: np.ndarray) -> np.ndarray:
    """One call per step with a Python int (schedules with Python control flow)."""
    values = []
    for s in steps:
        values.append(schedule(int(s)))
        if is_traced(values[-1]):
            # Closes over a traced value: stop at once (every further call
            # would only add operations to the outer trace).
            raise jax.errors.TracerArrayConversionError(values[-1])  # pyright: ignore[reportArgumentType]
    if any(v is None for v in values):
        return np.asarray(values, dtype=object)
    return np.asarray([np.asarray(v) for v in values])
