"""decaytx.inject_hyperparams, and optax.inject_hyperparams' callable-mask trap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks

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
