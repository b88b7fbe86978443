"""Coefficients and schedules that once went wrong silently or with a
misleading message: one group of tests per case.

Each test fails on decaytx 0.1 (commit 4fbbf0b) and passes now, except the
pins of behaviour 0.1 already had: a traced scalar coefficient, the decoupled
f16 case whose factor m*lambda is below f16's range, a peak= at or above the
maximum, and the inject_hyperparams trap message. Tests of
``decaytx.with_horizon`` (0.2) fail on 0.1 for want of the name; 0.1's
spelling, the bare schedule, is refused there without suggesting a horizon
(``test_refusal_suggests_with_horizon``). References are closed forms
or NumPy float64, never decaytx's own output.
"""

from __future__ import annotations

import decimal
import fractions
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import _coefficients as coef

PARAMS = {"w": jnp.ones(()), "b": jnp.ones((3,))}


def _l2_step(weight_decay: Any, params: Any) -> Any:
    tx = decaytx.add_l2_grad(weight_decay)
    return tx.update(params, tx.init(params), params)[0]


# --------------------------------------------------------------------------
# a traced coefficient's shape is static: a non-scalar one is refused.
# --------------------------------------------------------------------------


def test_traced_non_scalar_coefficient_under_jit_is_refused() -> None:
    # 0.1 turned the 0-d param "w" into shape (1,).
    with pytest.raises(TypeError, match=r"weight_decay is a traced array of shape \(1,\)"):
        jax.jit(_l2_step)(jnp.array([0.1]), PARAMS)


def test_traced_non_scalar_learning_rate_is_refused() -> None:
    def step(lr: jax.Array) -> Any:
        tx = decaytx.add_decoupled_decay(0.1, learning_rate=lr)
        return tx.update(PARAMS, tx.init(PARAMS), PARAMS)[0]

    with pytest.raises(TypeError, match=r"learning_rate is a traced array of shape \(2,\)"):
        jax.jit(step)(jnp.array([0.1, 0.2]))


def test_inject_hyperparams_non_scalar_coefficient_is_refused() -> None:
    """Given to the wrapper (refused at init, as 0.1 did), and set in the state under jit (0.1 did not)."""
    wrapped = decaytx.inject_hyperparams(decaytx.add_l2_grad)(jnp.full((3,), 0.1))
    with pytest.raises(TypeError, match=r"weight_decay must be a scalar, got an array of shape \(3,\)"):
        wrapped.init(PARAMS)
    tx = decaytx.inject_hyperparams(decaytx.add_l2_grad)(0.1)
    state = tx.init(PARAMS)
    state.hyperparams["weight_decay"] = jnp.full((3,), 0.1)
    with pytest.raises(TypeError, match=r"weight_decay is a traced array of shape \(3,\)"):
        jax.jit(tx.update)(PARAMS, state, PARAMS)


def test_traced_scalar_coefficient_still_works() -> None:
    got = jax.jit(_l2_step)(jnp.asarray(0.1), PARAMS)
    np.testing.assert_allclose(np.asarray(got["b"]), np.full(3, 1.1), rtol=1e-6)
    assert got["w"].shape == ()


# --------------------------------------------------------------------------
# the rounding tolerance is tied to local values; the first bad step.
# --------------------------------------------------------------------------


def test_schedule_negative_for_its_first_steps_is_refused_at_step_0() -> None:
    tx = decaytx.add_l2_grad(lambda t: 1e-2 * (t - 1000) / 1000)
    with pytest.raises(ValueError, match=r"returns -0\.01\d* at step 0, its first bad step"):
        tx.init(PARAMS)


def test_first_bad_step_past_the_dense_grid_is_exact() -> None:
    """Negative from step 30,001 on (closed form: 30,000.5 - t < 0)."""
    tx = decaytx.add_l2_grad(lambda t: 1e-3 * (30_000.5 - t))
    with pytest.raises(ValueError, match=r"at step 30001, its first bad step"):
        tx.init(PARAMS)


def test_rounding_negative_is_accepted_and_a_real_one_is_not() -> None:
    """The tolerance kept for rounding (0.1 accepted these too; its message lacked "first bad step")."""
    def rounded(t: Any) -> Any:  # 0.9 - 9 * 0.1 in float32: a rounding negative at t >= 9
        return jnp.float32(0.9) - jnp.float32(0.1) * jnp.minimum(t, 9).astype(jnp.float32)

    reference = np.float32(0.9) - np.float32(0.1) * np.float32(9)
    assert -1e-6 * 0.9 < reference < 0  # a negative within rounding of the values before it
    decaytx.add_l2_grad(rounded).init(PARAMS)  # accepted
    decaytx.add_l2_grad(optax.linear_schedule(1e-2, 0.0, 100)).init(PARAMS)  # accepted

    # 1e-4 below it: far beyond rounding; first bad step 9 (0.9 - 0.1 t - 1e-4 < 0).
    tx = decaytx.add_l2_grad(lambda t: rounded(t) - 1e-4)
    with pytest.raises(ValueError, match=r"at step 9, its first bad step"):
        tx.init(PARAMS)


# --------------------------------------------------------------------------
# f16 leaves with a coefficient above 65504 (f16's largest value).
# --------------------------------------------------------------------------

THETA16 = np.array([1e-3, -2e-3, 0.5, 0.0], np.float16)
F16_CASES = {
    # name: (transform factory, float64 reference of the update for zero g)
    "add_l2_grad": (lambda: decaytx.add_l2_grad(1e5), lambda th: 1e5 * th),
    "add_elastic_net_grad": (lambda: decaytx.add_elastic_net_grad(1.0, 1e5),
                             lambda th: np.sign(th) + 1e5 * th),
    "add_decoupled_decay(lr=None)": (lambda: decaytx.add_decoupled_decay(1e5, learning_rate=None),
                                     lambda th: -1e5 * th),
    "add_decoupled_decay(lr=1e-6)": (lambda: decaytx.add_decoupled_decay(1e5, learning_rate=1e-6),
                                     lambda th: -0.1 * th),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", list(F16_CASES))
def test_f16_leaf_with_coefficient_above_f16_max(case: str, jit: bool) -> None:
    make, reference = F16_CASES[case]
    theta = jnp.asarray(THETA16)
    with pytest.warns(decaytx.DecayWarning, match="flips the sign") if case.endswith("None)") else _nothing():
        tx = make()
        state = tx.init(theta)
    update = jax.jit(tx.update) if jit else tx.update
    got, _ = update(jnp.zeros_like(theta), state, theta)
    assert got.dtype == jnp.float16
    want = reference(THETA16.astype(np.float64))
    assert np.all(np.abs(want) < 65504)  # every exact result is representable in f16
    # The f16 rounding of the float64 result, to one f16 ulp (2**-10 relative).
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2.0**-10, atol=0)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# --------------------------------------------------------------------------
# types are not schedules; a peak= below the schedule's maximum warns.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [jnp.float32, jnp.bfloat16, float, int, np.float64], ids=str)
@pytest.mark.parametrize(
    "factory, arg",
    [
        (lambda v: decaytx.add_l2_grad(v), "weight_decay"),
        (lambda v: decaytx.add_decoupled_decay(0.1, learning_rate=v), "learning_rate"),
        (lambda v: decaytx.prox_l1(v, learning_rate=None), "l1"),
    ],
    ids=["add_l2_grad", "add_decoupled_decay", "prox_l1"],
)
def test_a_type_is_not_a_schedule(factory: Any, arg: str, kind: Any) -> None:
    # 0.1 called it with the step count: add_l2_grad(jnp.float32) decayed by t.
    with pytest.raises(TypeError, match=rf"{arg}=.* is a type, not a coefficient or a schedule"):
        factory(kind)


@pytest.mark.parametrize("helper", [decaytx.lr_multiplier, decaytx.corrected_decay],
                         ids=["lr_multiplier", "corrected_decay"])
def test_peak_below_the_schedule_maximum_warns(helper: Any) -> None:
    sched = optax.warmup_cosine_decay_schedule(0.0, 0.3, 100, 1000)  # max 0.3 at step 100
    with pytest.warns(decaytx.DecayWarning, match=r"peak=0\.2 is below the schedule's largest value 0\.3\d* \(at step 100\)"):
        m = helper(sched, peak=0.2)
    # The multiplier is still what was asked for: eta_t / 0.2 (or eta_t**2 / 0.2).
    power = 1 if helper is decaytx.lr_multiplier else 2
    assert math.isclose(float(m(100)), 0.3**power / 0.2, rel_tol=1e-5)


@pytest.mark.parametrize("peak", [0.3, 0.6])
def test_peak_at_or_above_the_maximum_is_silent(peak: float) -> None:
    # pytest turns a DecayWarning into an error (pyproject filterwarnings).
    sched = optax.warmup_cosine_decay_schedule(0.0, 0.3, 100, 1000)
    decaytx.lr_multiplier(sched, peak=peak)
    decaytx.corrected_decay(sched, peak=peak)


# --------------------------------------------------------------------------
# a traced peak= is used as given; a traced schedule needs peak=.
# --------------------------------------------------------------------------


def _np_cosine(t: int, total: int = 10) -> float:
    """optax.cosine_decay_schedule(1, total) at step t, float64."""
    return 0.5 * (1 + math.cos(math.pi * min(t, total) / total))


def _decoupled_update(lr: Any, helper: Any, t: int) -> Any:
    """The decoupled update at step t for zero gradients, lambda = 0.5, theta = 1."""
    sched = optax.cosine_decay_schedule(lr, 10)
    tx = decaytx.add_decoupled_decay(0.5, learning_rate=helper(sched, peak=lr))
    theta = jnp.ones(2)
    state = tx.init(theta)
    for _ in range(t + 1):
        u, state = tx.update(jnp.zeros(2), state, theta)
    return u[0]


@pytest.mark.parametrize("helper, power", [(decaytx.lr_multiplier, 1), (decaytx.corrected_decay, 2)],
                         ids=["lr_multiplier", "corrected_decay"])
def test_traced_peak_under_vmap_and_jit(helper: Any, power: int) -> None:
    lrs = np.array([0.1, 0.3])
    t = 4
    # m_t = eta_t / p (eta_t**2 / p) with eta_t = lr * c_t and p = lr.
    want = [-0.5 * (lr * _np_cosine(t)) ** power / lr for lr in lrs]
    got = jax.vmap(lambda lr: _decoupled_update(lr, helper, t))(jnp.asarray(lrs))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    got = jax.jit(lambda lr: _decoupled_update(lr, helper, t))(jnp.asarray(0.3))
    np.testing.assert_allclose(float(got), want[1], rtol=1e-5)


def test_traced_peak_under_grad() -> None:
    # corrected_decay(lr * c_t, peak=lr) = lr * c_t**2: d/d lr of the update is -0.5 c_t**2.
    t = 3
    got = jax.grad(lambda lr: _decoupled_update(lr, decaytx.corrected_decay, t))(0.2)
    np.testing.assert_allclose(float(got), -0.5 * _np_cosine(t) ** 2, rtol=1e-5)


@pytest.mark.parametrize("helper", ["lr_multiplier", "corrected_decay"])
def test_traced_schedule_without_peak_asks_for_peak(helper: str) -> None:
    fn = getattr(decaytx, helper)
    with pytest.raises(ValueError, match=rf"{helper}: the schedule's values depend on a traced value.*Pass it: decaytx\.{helper}\(schedule, peak=peak_lr\)"):
        jax.jit(lambda lr: fn(optax.cosine_decay_schedule(lr, 10))(3))(0.1)


@pytest.mark.parametrize("scaling", ["schedule", "corrected"])
def test_recipe_decay_scaling_under_vmap_asks_for_peak(scaling: str) -> None:
    def step(lr: jax.Array) -> Any:
        tx = decaytx.adamw(optax.cosine_decay_schedule(lr, 10), 0.1, decay_scaling=scaling)
        return tx.update(PARAMS, tx.init(PARAMS), PARAMS)[0]

    with pytest.raises(ValueError, match=r"peak cannot be searched.*add_decoupled_decay\("):
        jax.vmap(step)(jnp.array([0.1, 0.2]))


def test_traced_peak_must_be_a_scalar() -> None:
    sched = optax.cosine_decay_schedule(0.1, 10)
    with pytest.raises(TypeError, match=r"peak is a traced array of shape \(2,\)"):
        jax.jit(lambda p: decaytx.lr_multiplier(sched, peak=p)(0))(jnp.array([0.1, 0.2]))


# --------------------------------------------------------------------------
# messages that misled.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value, kind", [(decimal.Decimal("0.1"), "decimal.Decimal"),
                                         (fractions.Fraction(1, 10), "fractions.Fraction")],
                         ids=["Decimal", "Fraction"])
def test_decimal_and_fraction_are_named(value: Any, kind: str) -> None:
    # 0.1: "is complex" (Decimal) and "has dtype object" (Fraction).
    with pytest.raises(TypeError, match=rf"weight_decay=.* is a {kind}, which JAX cannot hold; pass a Python float") as e:
        decaytx.add_l2_grad(value)
    assert "complex" not in str(e.value) and "dtype object" not in str(e.value)


def test_schedule_returning_none() -> None:
    tx = decaytx.add_l2_grad(lambda t: None)
    with pytest.raises(TypeError, match=r"the schedule returns None at step 0 \(a missing return\?\)"):
        tx.init(PARAMS)


def test_huge_int_gets_a_short_message() -> None:
    with pytest.raises(ValueError, match=r"weight_decay=an int of 401 digits is too large") as e:
        decaytx.add_l2_grad(10**400)
    assert len(str(e.value)) < 300  # 0.1 printed all 401 digits


def test_cautious_bool_array_is_refused_by_name() -> None:
    # 0.1: "The truth value of an array with more than one element is ambiguous".
    with pytest.raises(TypeError, match=r"cautious=.* must be one bool \(a bool array of shape \(2,\) was given\)"):
        decaytx.add_decoupled_decay(0.1, learning_rate=None, cautious=jnp.array([True, False]))


def test_callable_mask_returning_jnp_bools_works_under_jit() -> None:
    params = {"w": jnp.full((2, 2), 2.0), "b": jnp.full((2,), 3.0)}
    grads = {"w": jnp.full((2, 2), 0.5), "b": jnp.full((2,), 0.25)}

    def mask(p: Any) -> Any:
        return jax.tree.map(lambda x: jnp.asarray(x.ndim >= 2), p)

    def step(g: Any, p: Any) -> Any:
        tx = decaytx.add_l2_grad(0.1, mask=mask)
        return tx.update(g, tx.init(p), p)[0]

    want = {"w": np.full((2, 2), 0.5 + 0.1 * 2.0), "b": np.full((2,), 0.25)}  # only the matrix decays
    for run in (step, jax.jit(step)):
        got = run(grads, params)
        for k in want:
            np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-6)


@pytest.mark.parametrize("mask", [False, True], ids=["False", "True"])
def test_bare_bool_mask_without_inject_hyperparams(mask: bool) -> None:
    with pytest.raises(TypeError, match=rf"mask={mask} is a bare bool; pass mask=None") as e:
        decaytx.add_l2_grad(0.1, mask=mask)
    assert "inject_hyperparams" not in str(e.value)  # 0.1 blamed inject_hyperparams


def test_inject_hyperparams_trap_is_still_explained() -> None:
    """Pins 0.1's message where optax.inject_hyperparams is involved."""
    tx = optax.inject_hyperparams(decaytx.add_l2_grad)(0.1, mask=lambda p: jax.tree.map(lambda x: True, p))
    with pytest.raises(TypeError, match=r"optax\.inject_hyperparams makes of a callable mask"):
        tx.update(PARAMS, tx.init(PARAMS), PARAMS)


# --------------------------------------------------------------------------
# a schedule valid for the run only: decaytx.with_horizon.
# --------------------------------------------------------------------------


def _sqrt_schedule(t: Any) -> Any:
    return 1e-2 * jnp.sqrt(1 - t / 10_000)  # nan from step 10,001


def test_refusal_suggests_with_horizon() -> None:
    tx = decaytx.add_l2_grad(_sqrt_schedule)
    with pytest.raises(ValueError, match=r"nan at step 10001, its first bad step.*decaytx\.with_horizon\(schedule, total_steps=10001\)"):
        tx.init(PARAMS)


@pytest.mark.parametrize("total", [10_000, 10_001])
def test_with_horizon_accepts_and_keeps_the_values(total: int) -> None:
    sched = decaytx.with_horizon(_sqrt_schedule, total)
    tx = decaytx.add_l2_grad(sched)
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    g = jax.tree.map(jnp.zeros_like, PARAMS)
    for t in range(3):
        u, state = step(g, state, PARAMS)
        np.testing.assert_allclose(np.asarray(u["b"]), np.full(3, 1e-2 * math.sqrt(1 - t / 10_000)), rtol=1e-6)
    assert math.isnan(float(sched(10_002)))  # used as given past the horizon


def test_with_horizon_still_checks_inside_it() -> None:
    tx = decaytx.add_l2_grad(decaytx.with_horizon(lambda t: 1e-3 * (t - 5), 100))
    with pytest.raises(ValueError, match=r"at step 0, its first bad step \(checked up to its horizon, step 99\)"):
        tx.init(PARAMS)


@pytest.mark.parametrize("total", [0, -1, 2.5, True, 2**31 + 1])
def test_with_horizon_refuses_bad_total_steps(total: Any) -> None:
    with pytest.raises(ValueError, match=r"total_steps=.* must be an int in \[1, 2\*\*31\]"):
        decaytx.with_horizon(_sqrt_schedule, total)


# --------------------------------------------------------------------------
# a prefix mask missing a key; an Equinox module of coefficients.
# (The fixes live in decaytx/_groups.py and decaytx/masks.py.)
# --------------------------------------------------------------------------


PREFIX_PARAMS = {"enc": {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, "dec": {"w": jnp.ones((2, 2))}}


def test_prefix_mask_missing_a_key_names_that_key() -> None:
    tx = decaytx.add_l2_grad(0.1, mask={"enc": True})
    with pytest.raises(ValueError, match=r"mask does not match params: it has no entry for params keys \['dec'\]"):
        tx.init(PREFIX_PARAMS)


def test_prefix_mask_does_not_blame_the_keys_present() -> None:
    tx = decaytx.add_l2_grad(0.1, mask={"enc": True})
    with pytest.raises(ValueError, match=r"mask does not match params") as e:
        tx.init(PREFIX_PARAMS)
    assert "enc" not in str(e.value).split("Pass")[0]


def test_equinox_module_of_coefficients_is_a_tree() -> None:
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.Linear(3, 2, key=jax.random.PRNGKey(0))  # callable, with array leaves
    params = eqx.filter(model, eqx.is_array)
    coefs = eqx.tree_at(lambda m: (m.weight, m.bias), params, (0.1, 0.0))
    tx = decaytx.add_l2_grad(coefs)
    grads = jax.tree.map(jnp.zeros_like, params)
    got, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(got.weight), 0.1 * np.asarray(params.weight, np.float64), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(got.bias), np.zeros(2))


# --------------------------------------------------------------------------
# the first init surveys a bounded grid.
# --------------------------------------------------------------------------

BOUND = 16_384 + 2_048 + 1  # dense part, geometric part, last step (docs/schedules.md)


def test_1000_knot_piecewise_grid_is_bounded() -> None:
    boundaries = {100 * i: 0.999 for i in range(1, 1001)}
    sched = optax.piecewise_constant_schedule(1e-3, boundaries)
    steps, values = coef._grid_values(sched)
    # 0.1: every step below 100,001 plus 4,000 geometric steps (104,001).
    assert steps.size <= BOUND + 3 * len(boundaries)
    # Each knot and its neighbours are on the grid, so every change is seen.
    assert set(boundaries) <= set(steps.tolist())
    # Against a float64 reference at every grid step.
    want = [1e-3 * 0.999 ** sum(1 for b in boundaries if b <= s) for s in steps]
    np.testing.assert_allclose(np.asarray(values, np.float64), want, rtol=2e-4)


def test_steps_evaluated_by_the_first_init_are_bounded() -> None:
    """Counts the calls the first init makes to a schedule and the concrete steps it passes.

    Since 0.3 a 1000-knot piecewise schedule is traced once on a scalar step
    and its jaxpr run with NumPy: one traced call, no concrete step (0.2 made
    two eager calls on the whole grid, ~2 x 20,000 steps; 0.1 made ~104,000).
    """
    inner = optax.piecewise_constant_schedule(1e-3, {100 * i: 0.999 for i in range(1, 1001)})
    calls: list[int | None] = []  # None for a traced call, else the number of steps

    def counted(t: Any) -> Any:
        calls.append(None if coef.is_traced(t) else int(np.size(t)))
        return inner(t)

    decaytx.add_decoupled_decay(1e-2, learning_rate=counted).init(PARAMS)
    assert 1 <= len(calls) <= 2, calls
    # No eager call: each would cost ~9,000 dispatches (seconds, the 0.2 cost).
    assert all(n is None for n in calls), calls
    first = len(calls)
    decaytx.add_decoupled_decay(1e-2, learning_rate=counted).init(PARAMS)
    assert len(calls) == first  # cached: a second transform re-surveys nothing


# --------------------------------------------------------------------------
# A scheduled recipe's cost is pinned in tests/test_recipes.py:
# test_adamw_constant_lr_compiles_like_optax_adamw (same program for a
# constant rate) and test_scheduled_adamw_evaluates_the_schedule_twice.
# --------------------------------------------------------------------------
