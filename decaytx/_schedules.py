"""Schedules: what a schedule does over its steps (survey, peak, horizon).

A schedule is a Python callable, so its values can only be seen by calling
it. :func:`survey` evaluates it once per schedule object on a bounded grid of
steps and caches what it found: the peak (for ``lr_multiplier``, the
warnings and the audit, through :func:`peak`) and the first bad step (for
:func:`check_schedule`, at the first ``init``). :func:`decaytx.with_horizon`
bounds the steps looked at.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from decaytx import _schedule_eval as _eval
from decaytx._coefficients import _INT32_MAX, TRACED_VALUE_ERRORS, is_schedule, is_traced, show

# The steps at which a schedule is surveyed (checked, and searched for its
# peak) when the caller does not say otherwise: every step below _DENSE
# (warm-ups and short runs, exactly), then _GEOMETRIC steps spaced by a
# constant ratio (0.6%) up to the int32 limit; plus the schedule's own knots
# where its closure shows them (optax's boundaries, warm-up and decay steps).
# Between grid points the peak and the first bad step are refined (see
# _refine), so a warm-up peak or a sign change past _DENSE is found to the step.
_DENSE = 16_384
_GEOMETRIC = 2_048
# A schedule that cannot take an array of steps, nor be vectorised, is called
# once per step with a Python int on this smaller grid.
_PY_DENSE = 1_024
_PY_GEOMETRIC = 400
_REFINE_POINTS = 513
# Grid steps at which an array call's values are confirmed by a second,
# short array call (see _agrees).
_SPOT_CHECKS = 9
_MAX_KNOTS = 4_096


class HorizonSchedule:
    """A schedule used for ``total_steps`` steps: checked on steps below it only.

    Built by :func:`decaytx.with_horizon`. Calling it calls the schedule; the
    checks and the peak search look at steps ``0 .. total_steps - 1`` only.
    """

    def __init__(self, schedule: Any, total_steps: int) -> None:
        self.schedule = schedule
        self.total_steps = total_steps
        functools.update_wrapper(self, schedule, updated=())

    def __call__(self, count: Any) -> Any:
        return self.schedule(count)

    def __repr__(self) -> str:
        return f"with_horizon({show(self.schedule)}, total_steps={self.total_steps})"


def _last_step(schedule: Any) -> int:
    if isinstance(schedule, HorizonSchedule):
        return schedule.total_steps - 1
    return _INT32_MAX


def _closure_ints(obj: Any, depth: int = 0) -> set[int]:
    """Non-negative ints a schedule closes over (knots such as boundaries).

    optax's schedules are closures over their boundaries, warm-up and decay
    steps (``join_schedules`` over its inner schedules too); nothing in them is
    public, so this only adds grid points and never decides anything.
    """
    found: set[int] = set()
    if depth > 4:
        return found
    if isinstance(obj, (bool, np.bool_)):
        return found
    if isinstance(obj, (int, np.integer)):
        return {int(obj)} if 0 <= obj <= _INT32_MAX else found
    if isinstance(obj, dict):
        for k, v in list(obj.items())[:_MAX_KNOTS]:
            found |= _closure_ints(k, depth + 1) | _closure_ints(v, depth + 1)
        return found
    if isinstance(obj, (list, tuple)):
        for v in obj[:_MAX_KNOTS]:
            found |= _closure_ints(v, depth + 1)
        return found
    if isinstance(obj, HorizonSchedule):
        return _closure_ints(obj.schedule, depth + 1)
    if isinstance(obj, functools.partial):
        return _closure_ints([obj.func, *obj.args, *obj.keywords.values()], depth + 1)
    for cell in getattr(obj, "__closure__", None) or ():
        try:
            found |= _closure_ints(cell.cell_contents, depth + 1)
        except ValueError:  # an empty cell
            continue
    return found


def _grid(schedule: Any, dense: int, geometric: int) -> np.ndarray:
    last = _last_step(schedule)
    parts = [np.arange(0, min(dense, last + 1))]
    if last >= dense:
        parts.append(np.geomspace(dense, last, geometric).round().astype(np.int64))
        parts.append(np.asarray([last]))
    knots = np.asarray(sorted(_closure_ints(schedule))[:_MAX_KNOTS], dtype=np.int64)
    parts.append((knots[:, None] + np.arange(-1, 2)[None, :]).ravel())
    steps = np.unique(np.concatenate(parts))
    return steps[(steps >= 0) & (steps <= last)].astype(np.int32)


class Survey(NamedTuple):
    """What a schedule does on its grid of steps (see :func:`survey`).

    Attributes:
      steps: the grid (int32), and ``values`` the schedule's values there.
      peak_step, peak: the largest finite value and its step, refined between
        grid points (``peak`` is ``nan`` when no value is finite).
      bad_step, bad_value: the first step whose value is non-finite or
        negative beyond rounding (refined between grid points), or ``None``.
      bad_tail: whether every grid step from ``bad_step`` on is bad (the
        schedule is valid only up to a horizon).
      problem: a message fragment for values that are not real scalars
        (shape, dtype, ``None``), else ``None``.
    """

    steps: np.ndarray
    values: np.ndarray
    peak_step: int
    peak: float
    bad_step: int | None
    bad_value: float | None
    bad_tail: bool
    problem: str | None


def _tolerance(values: np.ndarray, rel: float, floor: float = 0.0) -> np.ndarray:
    """Rounding tolerance for negatives at each step: tied to the values so far.

    ``optax.linear_schedule(eta, 0.0, n)`` returns about ``-1.5e-8 * eta`` at
    step ``n`` (f32 rounding, with FMA under ``jit``) and at every later step:
    the scale is the largest value before the step, not after it (the old
    scale, the largest value up to ``2**31``, let a schedule that is negative
    for its first 1000 steps through).
    """
    mags = np.where(np.isfinite(values), np.abs(values), 0.0)
    return rel * np.maximum(np.maximum.accumulate(mags), floor)


def _bad_mask(values: np.ndarray, rel: float, floor: float = 0.0) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(values) | (values < -_tolerance(values, rel, floor))


def _refine(evaluate: Callable[[np.ndarray], np.ndarray], lo: int, hi: int,
            pick: Callable[[np.ndarray, np.ndarray], int], points: int) -> tuple[int, float]:
    """Narrows ``[lo, hi]`` down to one step, ``pick`` choosing the index."""
    while True:
        pts = np.unique(np.linspace(lo, hi, points).round().astype(np.int64))
        vals = np.asarray(evaluate(pts.astype(np.int32)), dtype=np.float64)
        j = pick(pts, vals)
        if pts.size == hi - lo + 1:
            return int(pts[j]), float(vals[j])
        lo, hi = int(pts[max(j - 1, 0)]), int(pts[min(j + 1, pts.size - 1)])


def _problem(steps: np.ndarray, values: np.ndarray) -> str | None:
    if values.dtype == object and any(v is None for v in values.ravel()):
        i = next(k for k, v in enumerate(values.ravel()) if v is None)
        return f"returns None at step {int(steps[min(i, steps.size - 1)])} (a missing return?)"
    if values.shape != steps.shape:
        return (
            f"returns values of shape {values.shape[1:]} (at step {int(steps[0])}: "
            f"{show(values[0])}), not scalars"
        )
    if np.iscomplexobj(values) or not (
        jnp.issubdtype(values.dtype, jnp.floating) or jnp.issubdtype(values.dtype, jnp.integer)
    ):
        return (
            f"returns values of dtype {values.dtype} (at step {int(steps[0])}: "
            f"{show(values[0])}); decay coefficients are real numbers"
        )
    return None


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Python's cyclic GC paused while a schedule is traced (resumed on exit):
    its passes over a 9,000-equation jaxpr took a third of the survey."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _survey(schedule: Any) -> Survey:
    # Runs eagerly even when called while an outer function is being traced
    # (jax.jit(opt.init)): the grid is a constant, so its values are too.
    with jax.ensure_compile_time_eval():
        steps = _grid(schedule, _DENSE, _GEOMETRIC)
        with _no_gc():
            try:
                closed = jax.make_jaxpr(schedule)(jax.ShapeDtypeStruct((), jnp.int32))
            except Exception:  # a schedule written with Python control flow
                closed = None
            try:
                # Scalar all the way through: elementwise by construction, so
                # the whole grid is one NumPy pass over its equations.
                fast = None if closed is None else _eval.Program(closed)
            except _eval.Unsupported:
                fast = None
        if fast is not None:
            return _summarise(fast, steps)
        if closed is None:
            steps = _grid(schedule, _PY_DENSE, _PY_GEOMETRIC)
            return _summarise(functools.partial(_eval.eval_python, schedule), steps, refine_points=33)
        return _survey_arrays(schedule, steps)


def _survey_arrays(schedule: Any, steps: np.ndarray) -> Survey:
    """A schedule with array-valued intermediates: ``vmap``, or one array call."""
    try:
        vectorised = _eval.Vectorised(schedule)
    except Exception:  # traceable on a scalar, not under vmap
        steps = _grid(schedule, _PY_DENSE, _PY_GEOMETRIC)
        return _summarise(functools.partial(_eval.eval_python, schedule), steps, refine_points=33)
    if vectorised.size > _eval.COMPILE_LIMIT:
        # A large schedule: one eager call on the whole grid, where compiling
        # vmap(schedule) takes XLA seconds. Small ones are compiled once:
        # eager calls would compile each operation for each new shape instead.
        try:
            result = _summarise(functools.partial(_eval.eval_array, schedule), steps)
            if result.problem is not None or _agrees(schedule, result):
                return result
            # Not elementwise after all (another call disagrees with the
            # array call): survey it the slow, exact way.
        except _eval.NotElementwise:
            pass
    return _summarise(vectorised, steps)


def _agrees(schedule: Any, result: Survey) -> bool:
    """Whether a second array call confirms the values one array call gave.

    The second call gets a short array: a few grid steps, the peak and the
    first bad step, in another order. A schedule whose value at a step
    depends on the other steps of its input (not elementwise) disagrees.
    """
    idx = np.linspace(0, result.steps.size - 1, _SPOT_CHECKS).round().astype(np.int64)
    steps = [int(s) for s in result.steps[idx]] + [result.peak_step]
    values = [float(v) for v in np.asarray(result.values[idx], np.float64)] + [result.peak]
    if result.bad_step is not None:
        steps.append(result.bad_step)
        values.append(float(result.bad_value))  # pyright: ignore[reportArgumentType]
    order = np.argsort(steps)[::-1]  # descending: not the grid's order
    few = np.asarray(schedule(jnp.asarray(np.asarray(steps)[order], jnp.int32)))
    if few.shape != order.shape:
        return False
    return bool(np.allclose(np.real(few).astype(np.float64), np.asarray(values)[order],
                            rtol=1e-5, atol=0.0, equal_nan=True))


def _summarise(evaluate: Callable[[np.ndarray], np.ndarray], steps: np.ndarray,
               refine_points: int = _REFINE_POINTS) -> Survey:
    values = evaluate(steps)
    problem = _problem(steps, values)
    if problem is not None:
        return Survey(steps, values, 0, math.nan, None, None, False, problem)
    values = np.real(values)
    floating = jnp.issubdtype(values.dtype, jnp.floating)
    rel = max(1e-6, 8 * float(jnp.finfo(values.dtype).eps)) if floating else 0.0
    values64 = np.asarray(values, dtype=np.float64)

    finite = np.isfinite(values64)
    if finite.any():
        i = int(np.argmax(np.where(finite, values64, -np.inf)))
        peak_step, peak = int(steps[i]), float(values64[i])
        lo, hi = int(steps[max(i - 1, 0)]), int(steps[min(i + 1, steps.size - 1)])
        if hi - lo > 2:

            def best(pts: np.ndarray, vals: np.ndarray) -> int:
                return int(np.argmax(np.where(np.isfinite(vals), vals, -np.inf)))

            s, v = _refine(evaluate, lo, hi, best, refine_points)
            if v > peak:
                peak_step, peak = s, v
    else:
        peak_step, peak = int(steps[0]), math.nan

    bad = _bad_mask(values64, rel)
    if not bad.any():
        return Survey(steps, values, peak_step, peak, None, None, False, None)
    k = int(np.flatnonzero(bad)[0])
    bad_step, bad_value = int(steps[k]), float(values64[k])
    if k > 0 and bad_step - int(steps[k - 1]) > 1:
        scale = float(_tolerance(values64[:k], 1.0)[-1])

        def first_bad(pts: np.ndarray, vals: np.ndarray) -> int:
            return int(np.flatnonzero(_bad_mask(vals, rel, scale))[0])

        bad_step, bad_value = _refine(
            evaluate, int(steps[k - 1]), bad_step, first_bad, refine_points
        )
    return Survey(steps, values, peak_step, peak, bad_step, bad_value, bool(bad[k:].all()), None)


# Surveys per schedule object and x64 setting (which changes the values'
# precision): init, the warnings and lr_multiplier all read one survey.
_CACHE: weakref.WeakKeyDictionary[Any, dict[bool, Survey]] = weakref.WeakKeyDictionary()


def survey(schedule: Any) -> Survey:
    """The schedule's values on its grid of steps, its peak and first bad step.

    The grid: every step below 16,384, 2,048 geometrically spaced steps up to
    ``2**31 - 1`` (or the horizon of :func:`decaytx.with_horizon`) and the
    knots found in the schedule's closure, each with its neighbours. The
    schedule is traced once on a scalar step; if every value in its jaxpr is
    a scalar (optax's schedules), the jaxpr runs with NumPy on the whole grid
    (:class:`decaytx._schedule_eval.Program`: no XLA compilation, no per-step
    calls). Otherwise it is traced under ``jax.vmap``: a small one (up to
    1,000 operations) is compiled and run in chunks, a larger one is called
    eagerly on the whole grid and confirmed by a second, short array call.
    One that cannot be traced is called step by step on a smaller grid. The
    peak and the first bad step are then refined between grid points, to the
    step.

    Computed once per schedule object and x64 setting (cached while the
    schedule lives; one that cannot be weakly referenced or hashed is
    surveyed every time). Raises one of :data:`TRACED_VALUE_ERRORS` when the
    schedule's values depend on traced inputs.
    """
    x64 = bool(jax.config.read("jax_enable_x64"))
    try:
        return _CACHE[schedule][x64]
    except (KeyError, TypeError):
        pass
    result = _survey(schedule)
    remember(schedule, result)
    return result


def remember(schedule: Any, result: Survey) -> None:
    """Caches ``result`` as the survey of ``schedule`` (at this x64 setting)."""
    try:
        _CACHE.setdefault(schedule, {})[bool(jax.config.read("jax_enable_x64"))] = result
    except TypeError:
        pass


def _grid_values(schedule: Any) -> tuple[np.ndarray, np.ndarray]:
    """The steps of the grid and the schedule's values there (NumPy)."""
    return survey(schedule)[:2]


def peak(value: Any) -> float | None:
    """The largest value a coefficient takes, or ``None`` where it cannot be known.

    A number (float, int, concrete array) is its own peak (real part). A
    schedule's peak is searched on its grid (:func:`survey`, once per
    schedule object). ``None`` for a traced value, and for a schedule whose
    values depend on traced inputs (a learning rate under ``jax.jit``,
    ``jax.vmap`` or ``jax.grad``). ``nan`` for a schedule with no finite value.
    The one peak function: the plan's warnings, ``peak_rate``, the audit and
    ``lr_multiplier``/``corrected_decay`` all read it.
    """
    if value is None or is_traced(value):
        return None
    if not is_schedule(value):
        return float(np.real(np.asarray(value)))
    try:
        return survey(value).peak
    except TRACED_VALUE_ERRORS:
        return None


def schedule_peak(schedule: Any) -> float:
    """The largest value of ``schedule``, found on its grid (see :func:`survey`).

    Used where the caller does not pass ``peak=``. Exact for a schedule whose
    largest value lies below step 16,384, at one of its knots, or on a hill
    (values rising then falling) around the best grid point; a narrow spike
    between two far grid points can be missed. Raises one of
    ``TRACED_VALUE_ERRORS`` where :func:`peak` returns ``None`` (the 0.2
    behaviour, kept until its callers read :func:`peak`).
    """
    if not is_schedule(schedule):
        return float(np.real(np.asarray(schedule)))
    return survey(schedule).peak


def check_schedule(name: str, schedule: Any) -> None:
    """Rejects a schedule that returns a non-scalar, non-real, ``None``,
    non-finite or negative coefficient at any step of its grid (see
    :func:`survey`), naming the argument, the value, the first bad step and the fix.

    Called once, at the first ``init``: a schedule is a callable, so this is
    the earliest point where its values can be seen. The tolerance for
    rounding is local: a value ``v`` at step ``t`` is bad when it is not finite
    or when ``v < -rel * max(|v_s|, s <= t)``, with ``rel = max(1e-6, 8 eps)``
    of the values' dtype (``optax.linear_schedule(eta, 0.0, n)`` ends at about
    ``-1.5e-8 * eta``), so a schedule that starts negative is bad at step 0
    whatever it reaches later. The error names the first bad step, refined
    between grid points, and suggests :func:`decaytx.with_horizon` when every
    later grid step is bad too (a schedule valid only up to its run's end).
    A schedule that closes over traced values cannot be checked and passes.
    """
    try:
        s = survey(schedule)
    except TRACED_VALUE_ERRORS:
        # The schedule closes over traced values (e.g. hyperparameters under
        # jax.vmap): its values are not known here, so there is nothing to check.
        return
    if s.problem is not None:
        raise TypeError(
            f"{name}: the schedule {s.problem}; a schedule must map the step "
            "count to a real scalar. Return a non-negative float, e.g. "
            "lambda t: 0.1 * jnp.cos(t / 1000.0) ** 2."
        )
    if s.bad_step is None:
        return
    if s.bad_tail and s.bad_step > 0:
        fix = (
            "If the run ends before that step, say so: "
            f"decaytx.with_horizon(schedule, total_steps={s.bad_step}) checks "
            "and searches steps below total_steps only. Otherwise clip it, e.g. "
            "lambda t: jnp.maximum(jnp.nan_to_num(schedule(t)), 0.0)."
        )
    else:
        fix = "Clip it, e.g. lambda t: jnp.maximum(schedule(t), 0.0)."
    horizon = (
        f" (checked up to its horizon, step {schedule.total_steps - 1})"
        if isinstance(schedule, HorizonSchedule) else ""
    )
    raise ValueError(
        f"{name}: the schedule returns {s.bad_value!r} at step {s.bad_step}, its "
        f"first bad step{horizon}; a schedule's values must be finite and >= 0 at "
        f"every step. {fix}"
    )
