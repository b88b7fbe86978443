"""Schedules (decaytx._schedules, decaytx._schedule_eval): the survey's values
against the schedule's own (XLA's) values and closed forms, on every path it
takes; the one peak function; the one number validator (decaytx._coefficients.number)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import _coefficients as coef
from decaytx import _schedule_eval, _schedules

OPTAX_SCHEDULES = {
    "piecewise_1000": optax.piecewise_constant_schedule(1e-3, {100 * i: 0.999 for i in range(1, 1001)}),
    "join_100": optax.join_schedules(
        [optax.constant_schedule(1e-3 / (i + 1)) for i in range(101)], [100 * i for i in range(1, 101)]
    ),
    "warmup_cosine": optax.warmup_cosine_decay_schedule(0.0, 0.7, 500, 10_000),
    "linear": optax.linear_schedule(1e-2, 0.0, 100),
    "exponential_staircase": optax.exponential_decay(0.5, 1000, 0.5, staircase=True),
    "polynomial": optax.polynomial_schedule(1.0, 0.1, 2, 5_000),
    "cosine": optax.cosine_decay_schedule(0.1, 20_000),
    "cond": lambda t: jax.lax.cond(t < 300, lambda: 0.2, lambda: 0.05),
    "floor_divide": lambda t: 0.1 * 0.5 ** (t // 7_000).astype(jnp.float32),
}
STEPS = np.unique(np.concatenate([np.arange(0, 30_000, 7), [0, 1, 2**20, 2**31 - 1]])).astype(np.int32)


def _program(schedule: Any) -> _schedule_eval.Program:
    return _schedule_eval.Program(jax.make_jaxpr(schedule)(jax.ShapeDtypeStruct((), jnp.int32)))


@pytest.mark.parametrize("name", list(OPTAX_SCHEDULES))
def test_numpy_evaluation_gives_the_schedules_own_values(name):
    """The NumPy pass over the jaxpr against the schedule run by XLA: called
    eagerly on the whole array (0.2's survey: the same operations one by one,
    so equal but for subnormals, which XLA flushes), and jitted on scalar steps
    as the step runs it (XLA may fuse a multiply-add there: within the
    survey's rounding tolerance, 1e-6 of the largest value)."""
    schedule = OPTAX_SCHEDULES[name]
    got = _program(schedule)(STEPS)
    assert got.shape == STEPS.shape and got.dtype == np.float32
    if name != "cond":  # lax.cond needs a scalar predicate
        eager = np.asarray(schedule(jnp.asarray(STEPS)))
        np.testing.assert_allclose(got, eager, rtol=0, atol=float(np.finfo(np.float32).tiny))
    sample = STEPS[:: max(1, STEPS.size // 300)]
    scalar = np.asarray([np.asarray(jax.jit(schedule)(jnp.int32(s))) for s in sample])
    idx = np.searchsorted(STEPS, sample)
    np.testing.assert_allclose(got[idx], scalar, rtol=0, atol=1e-6 * float(np.abs(scalar).max()))


def test_piecewise_values_against_float64_closed_form():
    boundaries = {100 * i: 0.999 for i in range(1, 1001)}
    got = _program(OPTAX_SCHEDULES["piecewise_1000"])(STEPS)
    want = 1e-3 * 0.999 ** np.minimum(STEPS // 100, 1000).astype(np.float64)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-4)
    assert set(boundaries) <= set(_schedules.survey(OPTAX_SCHEDULES["piecewise_1000"]).steps.tolist())


@pytest.mark.parametrize(
    "schedule, peak",
    [
        (lambda t: 0.1 + 0.1 * jnp.sum(t >= jnp.array([10, 20])), 0.3),  # a (2,) intermediate
        (lambda t: jax.lax.fori_loop(0, 3, lambda i, v: v * 0.5, 0.8) + 0.0 * t, 0.1),  # a loop
    ],
    ids=["array_intermediate", "fori_loop"],
)
def test_unsupported_jaxprs_are_refused_and_surveyed_another_way(schedule, peak):
    with pytest.raises(_schedule_eval.Unsupported):
        _program(schedule)
    s = _schedules.survey(schedule)  # falls back to vmap / array calls
    assert s.problem is None and s.bad_step is None
    assert math.isclose(s.peak, peak, rel_tol=1e-6)


@pytest.mark.parametrize(
    "schedule, peak, peak_step",
    [
        (OPTAX_SCHEDULES["warmup_cosine"], 0.7, 500),
        (OPTAX_SCHEDULES["cond"], 0.2, 0),
        (lambda t: 1e-3 / (1.0 + ((t - 123_457) / 3).astype(jnp.float32) ** 2), 1e-3, 123_457),
    ],
    ids=["warmup_cosine", "cond", "hill_past_dense"],
)
def test_peak_found_to_the_step(schedule, peak, peak_step):
    s = _schedules.survey(schedule)
    assert math.isclose(s.peak, peak, rel_tol=1e-6)
    assert abs(s.peak_step - peak_step) <= 1


def test_first_bad_step_of_a_numpy_surveyed_schedule():
    """Closed form: 0.5 * cos(pi t / 60,000) turns negative after step 30,000."""
    sched = lambda t: 0.5 * jnp.cos(jnp.pi * t.astype(jnp.float32) / 60_000.0)  # noqa: E731
    with pytest.raises(ValueError, match=r"at step 3000\d, its first bad step"):
        decaytx.add_l2_grad(sched).init({"w": jnp.ones(3)})


def test_peak_is_the_one_peak_function():
    assert _schedules.peak(0.25) == 0.25
    assert _schedules.peak(np.float32(0.5)) == 0.5
    assert _schedules.peak(None) is None
    assert math.isclose(_schedules.peak(OPTAX_SCHEDULES["warmup_cosine"]), 0.7, rel_tol=1e-6)
    seen = []

    @jax.jit
    def f(lr):
        seen.append(_schedules.peak(lr))  # traced
        seen.append(_schedules.peak(lambda t: lr * 0.5))  # a schedule closing over a tracer
        return lr

    f(jnp.float32(0.1))
    assert seen == [None, None]


@pytest.mark.parametrize(
    "value, kwargs, exc, match",
    [
        (0.0, {"low_open": True}, ValueError, r"x=0.0 must be finite and > 0\."),
        (-1.0, {}, ValueError, r"x=-1.0 is negative; x must be finite and >= 0\."),
        (float("nan"), {}, ValueError, r"x=nan is not finite"),
        (1.0, {"high": 1.0}, ValueError, r"x=1.0 must be in \[0, 1\)"),
        (True, {}, TypeError, r"x=True must be a Python float or int"),
        ("0.9", {}, TypeError, r"got str"),
        (2.5, {"integer": True, "low": 1}, TypeError, r"must be a Python int"),
        (0, {"integer": True, "low": 1, "high": 2**31, "high_open": False}, ValueError,
         r"x=0 must be an int in \[1, 2147483648\]"),
    ],
)
def test_number_validator(value, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        coef.number("x", value, **kwargs)


def test_number_validator_accepts_and_returns_floats():
    assert coef.number("x", np.float32(0.5), high=1.0) == 0.5
    assert coef.number("x", 3, integer=True, low=1) == 3.0
    assert coef.number("x", jnp.asarray(2.0), low=0.0, low_open=True) == 2.0


def test_a_scan_is_not_inlined_as_one_call():
    """lax.scan carries a jaxpr like jit does but runs it `length` times: closed form 0.8 / 2**3."""
    def sched(t: Any) -> Any:
        v, _ = jax.lax.scan(lambda c, _: (c * 0.5, None), jnp.float32(0.8), None, length=3)
        return v + 0.0 * t

    with pytest.raises(_schedule_eval.Unsupported):
        _program(sched)
    assert math.isclose(_schedules.survey(sched).peak, 0.1, rel_tol=1e-6)
