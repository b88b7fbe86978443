"""decaytx.inject_hyperparams, and optax.inject_hyperparams' callable-mask trap."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks
from decaytx._coefficients import Coefficient

P = {"w": jnp.full((2, 3), 2.0, jnp.float32), "b": jnp.full(3, 2.0, jnp.float32)}
G = jax.tree.map(jnp.zeros_like, P)

CALLABLE_MASKS = {
    "ndim_at_least": masks.ndim_at_least(2),
    "include": masks.include("w"),
    "exclude": masks.exclude("b"),
    "lambda": lambda p: jax.tree.map(lambda x: x.ndim >= 2, p),
}

# factory, the coefficient arguments, and the decay it applies to w = 2 with g = 0
FACTORIES = {
    "add_l2_grad": (decaytx.add_l2_grad, (0.1,), {}, 0.2),
    "add_l1_subgrad": (decaytx.add_l1_subgrad, (0.1,), {}, 0.1),
    "add_elastic_net_grad": (decaytx.add_elastic_net_grad, (0.1, 0.1), {}, 0.3),
    "add_decoupled_decay": (decaytx.add_decoupled_decay, (0.1,), {"learning_rate": 0.5}, -0.1),
    "prox_l1": (decaytx.prox_l1, (0.1,), {"learning_rate": 0.5}, -0.05),
    "prox_elastic_net": (decaytx.prox_elastic_net, (0.1, 1.0), {"learning_rate": 0.5}, None),
}


@pytest.mark.parametrize("mask", list(CALLABLE_MASKS))
@pytest.mark.parametrize("factory", list(FACTORIES))
def test_optax_inject_hyperparams_with_callable_mask_fails_loudly(factory, mask):
    make, args, kwargs, _ = FACTORIES[factory]
    tx = optax.inject_hyperparams(make)(*args, mask=CALLABLE_MASKS[mask], **kwargs)
    with pytest.raises(TypeError, match="decaytx.inject_hyperparams"):
        state = tx.init(P)
        jax.jit(tx.update)(G, state, P)


@pytest.mark.parametrize("mask", list(CALLABLE_MASKS))
@pytest.mark.parametrize("factory", list(FACTORIES))
def test_decaytx_inject_hyperparams_keeps_callable_masks(factory, mask):
    make, args, kwargs, want = FACTORIES[factory]
    tx = decaytx.inject_hyperparams(make)(*args, mask=CALLABLE_MASKS[mask], **kwargs)
    plain = make(*args, mask=CALLABLE_MASKS[mask], **kwargs)
    state = tx.init(P)
    assert "mask" not in state.hyperparams
    u, _ = jax.jit(tx.update)(G, state, P)
    ref, _ = plain.update(G, plain.init(P), P)
    # Masked: b untouched; w decayed exactly as without injection.
    np.testing.assert_array_equal(np.asarray(u["b"]), 0.0)
    np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(ref["w"]), rtol=1e-6)
    if want is not None:
        np.testing.assert_allclose(np.asarray(u["w"]), want, rtol=1e-6)
    else:  # prox_elastic_net: S(2, 0.05) / 1.5 - 2
        np.testing.assert_allclose(np.asarray(u["w"]), (2 - 0.05) / 1.5 - 2, rtol=1e-6)


def test_changed_hyperparameter_changes_the_next_update():
    tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(
        0.1, learning_rate=0.5, mask=masks.ndim_at_least(2), anchor="init", cautious=False
    )
    state = tx.init(P)
    update = jax.jit(tx.update)
    moved = jax.tree.map(lambda x: x + 1.0, P)  # theta - a = 1
    u, state = update(G, state, moved)
    np.testing.assert_allclose(np.asarray(u["w"]), -0.05, rtol=1e-6)
    state.hyperparams["weight_decay"] = jnp.asarray(0.4)
    state.hyperparams["learning_rate"] = jnp.asarray(0.25)
    u, state = update(G, state, moved)
    np.testing.assert_allclose(np.asarray(u["w"]), -0.1, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(u["b"]), 0.0)


def test_hyperparameter_schedule_is_evaluated_each_step():
    sched = optax.piecewise_constant_schedule(0.2, {2: 0.5})
    tx = decaytx.inject_hyperparams(decaytx.add_l2_grad)(sched, mask=masks.include("w"))
    state = tx.init(P)
    update = jax.jit(tx.update)
    for t in range(4):
        u, state = update(G, state, P)
        want = 2.0 * (0.2 if t < 2 else 0.1)
        np.testing.assert_allclose(np.asarray(u["w"]), want, rtol=1e-6, err_msg=f"t={t}")


def test_zero_then_nonzero_hyperparameter():
    """An injected coefficient that starts at 0 must still decay once raised."""
    tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(
        0.0, learning_rate=None, mask=masks.include("w")
    )
    state = tx.init(P)
    u, state = tx.update(G, state, P)
    np.testing.assert_array_equal(np.asarray(u["w"]), 0.0)
    state.hyperparams["weight_decay"] = jnp.asarray(0.1)
    u, state = tx.update(G, state, P)
    np.testing.assert_allclose(np.asarray(u["w"]), -0.2, rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.complex64])
def test_inject_on_low_precision_and_complex_params(dtype, jit):
    """optax casts injected hyperparameters to the params' dtype (bf16, complex...)."""
    p = {"w": jnp.full((2, 2), 2.0, dtype)}
    for make in (decaytx.add_l2_grad, decaytx.add_decoupled_decay, decaytx.prox_l1):
        lr = {} if make is decaytx.add_l2_grad else {"learning_rate": None}
        tx = decaytx.inject_hyperparams(make)(0.125, **lr)
        state = tx.init(p)
        update = jax.jit(tx.update) if jit else tx.update
        u, _ = update(jax.tree.map(jnp.zeros_like, p), state, p)
        assert u["w"].dtype == dtype
        want = {
            decaytx.add_l2_grad: 0.25,
            decaytx.add_decoupled_decay: -0.25,
            decaytx.prox_l1: -0.125,
        }[make]
        np.testing.assert_allclose(np.asarray(u["w"]).astype(np.complex64), want, rtol=1e-3)


def test_cautious_under_optax_inject_is_static_or_refused():
    """A bool hyperparameter must never silently change meaning."""
    moved = jax.tree.map(lambda x: x + 1.0, P)
    tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(
        0.1, learning_rate=None, cautious=True
    )
    state = tx.init(P)
    # u = +1 moves theta = 3 away from 0: cautious skips the decay.
    u, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, P), state, moved)
    np.testing.assert_array_equal(np.asarray(u["w"]), 1.0)
    u, _ = jax.jit(tx.update)(jax.tree.map(lambda x: -jnp.ones_like(x), P), state, moved)
    np.testing.assert_allclose(np.asarray(u["w"]), -1.3, rtol=1e-6)


def test_extra_static_args_are_honoured():
    tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay, static_args="learning_rate")(
        0.1, learning_rate=0.5
    )
    state = tx.init(P)
    assert set(state.hyperparams) == {"weight_decay"}
    u, _ = tx.update(G, state, P)
    np.testing.assert_allclose(np.asarray(u["w"]), -0.1, rtol=1e-6)


def test_warnings_fire_once_per_injected_transform():
    """optax rebuilds the inner transform at each init; the warning still fires once."""
    import warnings

    tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(
        2.0, learning_rate=None, mask=masks.include("w")
    )
    with pytest.warns(decaytx.DecayWarning, match="flips the sign") as rec:
        state = tx.init(P)
        tx.init(P)
        tx.update(G, state, P)
        jax.jit(tx.update)(G, state, P)
    assert len([w for w in rec if issubclass(w.category, decaytx.DecayWarning)]) == 1
    # A second transform warns again, once.
    with pytest.warns(decaytx.DecayWarning) as rec:
        decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(2.0, learning_rate=None).init(P)
    assert len(rec) == 1
    # Normal settings never warn.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(0.01, learning_rate=0.1).init(P)


# --- optax StatefulSchedule -------------------------------------------------------


class _Total(NamedTuple):
    total: jax.Array


class _Accumulated(optax.schedules.StatefulSchedule):
    """optax's own test schedule (optax/schedules/_inject_test.py): its value is
    the running sum of the ``addendum`` extra argument; it never sees a step."""

    def init(self) -> _Total:
        return _Total(jnp.zeros([], jnp.float32))

    def update(self, state: _Total, **extra_args: Any) -> _Total:
        return _Total(state.total + extra_args["addendum"])

    def __call__(self, state: _Total, **extra_args: Any) -> jax.Array:
        return state.total


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_stateful_schedule_works_as_with_optax_inject_hyperparams(jit):
    """decaytx.inject_hyperparams(add_l2_grad) against optax.inject_hyperparams(
    optax.add_decayed_weights) with the same StatefulSchedule: same updates, same
    hyperparams and schedule states, and the closed form g + lambda_t theta."""
    ours = decaytx.inject_hyperparams(decaytx.add_l2_grad)(_Accumulated(), mask=masks.include("w"))
    ref = optax.inject_hyperparams(optax.add_decayed_weights)(
        _Accumulated(), mask={"w": True, "b": False}
    )
    wrap = jax.jit if jit else (lambda f: f)
    s, rs = wrap(ours.init)(P), wrap(ref.init)(P)
    update, ref_update = wrap(ours.update), wrap(ref.update)
    g = jax.tree.map(jnp.ones_like, P)
    total = 0.0
    for t in range(4):
        extra = {"addendum": jnp.float32(0.25 * (t + 1))}
        u, s = update(g, s, P, **extra)
        r, rs = ref_update(g, rs, P, **extra)
        # optax evaluates the schedule on the state before its update.
        np.testing.assert_allclose(np.asarray(u["w"]), 1.0 + total * 2.0, rtol=1e-6, err_msg=f"t={t}")
        np.testing.assert_array_equal(np.asarray(u["w"]), np.asarray(r["w"]))
        np.testing.assert_array_equal(np.asarray(u["b"]), np.asarray(r["b"]))
        np.testing.assert_array_equal(np.asarray(s.hyperparams["weight_decay"]),
                                      np.asarray(rs.hyperparams["weight_decay"]))
        np.testing.assert_array_equal(np.asarray(s.hyperparams_states["weight_decay"].total),
                                      np.asarray(rs.hyperparams_states["weight_decay"].total))
        total += 0.25 * (t + 1)


def test_stateful_learning_rate_of_an_update_side_form():
    """A StatefulSchedule as learning_rate= (m_t): u = -m_t * lambda * theta."""
    tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(0.5, learning_rate=_Accumulated())
    state = tx.init(P)
    total = 0.0
    for _ in range(3):
        u, state = tx.update(G, state, P, addendum=jnp.float32(0.1))
        np.testing.assert_allclose(np.asarray(u["w"]), -total * 0.5 * 2.0, rtol=1e-6, atol=1e-7)
        total += 0.1


def test_stateful_schedule_outside_inject_hyperparams_is_refused():
    with pytest.raises(TypeError, match="StatefulSchedule.*decaytx.inject_hyperparams"):
        decaytx.add_l2_grad(_Accumulated())


# --- which arguments are injected: read from the factory's signature ----------------


def test_argument_roles_are_read_from_signatures():
    from decaytx._inject import argument_roles

    roles = {f.__name__: argument_roles(f) for f in (
        decaytx.add_l2_grad, decaytx.add_decoupled_decay, decaytx.prox_elastic_net,
        decaytx.adamw, decaytx.sgdw, decaytx.proximal_sgd, decaytx.fused_adamw,
    )}
    static = {k for r in roles.values() for k, v in r.items() if v == "static"}
    assert static == {"mask", "anchor", "cautious", "decay_scaling", "nesterov", "momentum",
                      "mu_dtype", "amsgrad", "accumulator_dtype", "formulation", "layout",
                      "compensated"}
    assert {k for r in roles.values() for k, v in r.items() if v == "coefficient"} == {
        "weight_decay", "l1", "l2", "learning_rate"}  # learning_rate of the update-side forms
    assert roles["adamw"]["learning_rate"] == roles["adamw"]["b1"] == "number"
    # optax's factories: numbers stay numbers (as optax.inject_hyperparams has them);
    # masks and dtypes are structure.
    optax_roles = argument_roles(optax.adamw)
    assert optax_roles["weight_decay"] == optax_roles["b1"] == "number"
    assert optax_roles["mask"] == optax_roles["mu_dtype"] == "static"


def test_a_new_factory_needs_no_name_list():
    """A factory typed like the forms is injected right without any edit in decaytx."""

    def my_decay(strength: Coefficient, *, learning_rate: Coefficient | None = None,
                 where: Any = None, flavour: Literal["plain", "fancy"] = "plain"
                 ) -> optax.GradientTransformation:
        assert flavour == "plain"
        return decaytx.add_decoupled_decay(strength, learning_rate=learning_rate, mask=where)

    # `where` is a callable mask under a name no list in decaytx knows.
    tx = decaytx.inject_hyperparams(my_decay)(0.1, learning_rate=0.5, where=masks.include("w"))
    state = tx.init(P)
    assert set(state.hyperparams) == {"strength", "learning_rate"}
    u, _ = jax.jit(tx.update)(G, state, P)
    np.testing.assert_allclose(np.asarray(u["w"]), -0.1 * 0.5 * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(u["b"]), 0.0)


def test_a_dtype_argument_stays_static():
    """mu_dtype=jnp.bfloat16 is a callable: optax.inject_hyperparams would call it with
    the step count as a schedule. decaytx keeps it static: against optax's
    adamw injected with mu_dtype spelled out as static."""
    lr, wd = 1e-2, 0.1
    tx = decaytx.inject_hyperparams(decaytx.adamw)(lr, wd, mu_dtype=jnp.bfloat16)
    ref = optax.inject_hyperparams(optax.adamw, static_args="mu_dtype")(
        lr, weight_decay=wd, mu_dtype=jnp.bfloat16)
    s, rs = tx.init(P), ref.init(P)
    g = jax.tree.map(lambda x: 0.3 * jnp.ones_like(x), P)
    for _ in range(3):
        u, s = jax.jit(tx.update)(g, s, P)
        r, rs = ref.update(g, rs, P)
        for k in P:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-6)
    assert "mu_dtype" not in s.hyperparams
    assert s.inner_state[0].mu["w"].dtype == jnp.bfloat16
