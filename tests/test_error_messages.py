"""Messages that name the culprit.

Each message names the argument, the value and the fix: a static coefficient
tree set through ``state.hyperparams``, an f16 cast that overflows, a
``jax.tree_util.Partial`` schedule, a per-leaf ``learning_rate=``, and the
path of a bare-array params tree.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import optax
import pytest

import decaytx

PARAMS = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}


# (a) a static coefficient tree set through state.hyperparams
@pytest.mark.parametrize("new", [{"w": 0.5, "b": 0.0}, 0.5], ids=["tree", "scalar"])
def test_setting_a_static_coefficient_tree_says_it_stays_static(new: Any) -> None:
    tx = decaytx.inject_hyperparams(decaytx.add_l2_grad)({"w": 0.1, "b": 0.0})
    state = tx.init(PARAMS)
    assert "weight_decay" not in state.hyperparams
    state.hyperparams["weight_decay"] = new
    with pytest.raises(TypeError) as err:
        tx.update(PARAMS, state, PARAMS)
    msg = str(err.value)
    for needle in ("state.hyperparams['weight_decay']", "{'w': 0.1, 'b': 0.0}",
                   "kept static", "coefficient tree", "optax.multi_transform"):
        assert needle in msg, msg
    assert "multiple values" not in msg


def test_a_static_tree_still_works_and_scalars_still_inject() -> None:
    tx = decaytx.inject_hyperparams(decaytx.add_l2_grad)({"w": 0.1, "b": 0.0})
    u, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    assert float(u["w"][0, 0]) == pytest.approx(1.1) and float(u["b"][0]) == 1.0
    tx = decaytx.inject_hyperparams(decaytx.add_l2_grad)(0.1)
    state = tx.init(PARAMS)
    state.hyperparams["weight_decay"] = jnp.asarray(0.5)
    assert float(tx.update(PARAMS, state, PARAMS)[0]["w"][0, 0]) == pytest.approx(1.5)


# (b) an f16 cast that overflows
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_f16_overflow_names_the_value_and_hyperparam_dtype(jit: bool) -> None:
    half = jax.tree.map(lambda x: x.astype(jnp.float16), PARAMS)
    tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(1e5, learning_rate=1e-9)
    init = jax.jit(tx.init) if jit else tx.init
    with pytest.raises(ValueError) as err:
        init(half)
    msg = str(err.value)
    for needle in ("weight_decay=100000.0", "overflowed", "float16",
                   "hyperparam_dtype=jnp.float32"):
        assert needle in msg, msg
    ok = decaytx.inject_hyperparams(decaytx.add_decoupled_decay, hyperparam_dtype=jnp.float32)(
        1e5, learning_rate=1e-9)
    with warnings.catch_warnings():  # m*lambda is below f16's resolution: not the point here
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        u, _ = ok.update(half, ok.init(half), half)
    assert u["w"].dtype == jnp.float16 and bool(jnp.isfinite(u["w"]).all())


def test_an_inf_f16_coefficient_says_it_overflowed() -> None:
    with pytest.raises(ValueError, match="overflowed the hyperparameter dtype float16.*"
                       r"hyperparam_dtype=jnp.float32"):
        decaytx.add_l2_grad(jnp.asarray(jnp.inf, jnp.float16))


# (c) a jax.tree_util.Partial schedule
def _ramp(scale: jax.Array, count: jax.Array) -> jax.Array:
    return scale * (jnp.minimum(count, 1) + 1)


@pytest.mark.parametrize("where", ["weight_decay", "learning_rate", "injected"])
def test_a_partial_is_a_schedule(where: str) -> None:
    sched = jax.tree_util.Partial(_ramp, jnp.asarray(0.1))
    if where == "weight_decay":
        tx = decaytx.add_decoupled_decay(sched, learning_rate=1.0)
    elif where == "learning_rate":
        tx = decaytx.add_decoupled_decay(1.0, learning_rate=sched)
    else:
        tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(sched, learning_rate=1.0)
    state = tx.init(PARAMS)
    zeros = jax.tree.map(jnp.zeros_like, PARAMS)
    u, state = tx.update(zeros, state, PARAMS)
    assert float(u["w"][0, 0]) == pytest.approx(-0.1)
    u, _ = tx.update(zeros, state, PARAMS)
    assert float(u["w"][0, 0]) == pytest.approx(-0.2)


# (d) per-leaf learning rates: accepted; a bad tree is named, with its fix
@pytest.mark.parametrize("rate", [{"w": 0.1, "b": -0.1}, decaytx.per_leaf(lambda p, x: -0.1 if p == "b" else 0.1)],
                         ids=["dict", "per_leaf"])
def test_a_negative_per_leaf_learning_rate_names_the_leaf_and_the_fix(rate: Any) -> None:
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    with pytest.raises(ValueError) as err:
        decaytx.add_decoupled_decay(0.1, learning_rate=rate).init(params)
    msg = str(err.value)
    for needle in ("learning_rate['b']=-0.1", "is negative", "pass abs("):
        assert needle in msg, msg


@pytest.mark.parametrize("recipe", [decaytx.adamw, decaytx.sgdw, decaytx.sgd_l2,
                                    decaytx.adam_l2, decaytx.proximal_sgd])
def test_recipes_name_a_learning_rate_tree_that_does_not_fit_params(recipe: Any) -> None:
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    opt = recipe({"w": 0.1, "x": 0.0}, 0.1)
    with pytest.raises(ValueError, match=r"learning_rate: the coefficient tree is not a prefix of params"):
        opt.init(params)


def test_a_learning_rate_tree_with_a_string_leaf_names_it() -> None:
    with pytest.raises(TypeError, match=r"learning_rate\['w'\]='fast'"):
        decaytx.adamw({"w": "fast", "b": 0.1}, 0.1)


# (e) a bare-array params tree: <root>, never an empty path
def test_anchor_mismatch_on_a_bare_array_names_root() -> None:
    w = jnp.ones((2, 2))
    with pytest.raises(ValueError) as err:
        decaytx.add_decoupled_decay(0.1, learning_rate=1.0, anchor={"a": w}).init(w)
    msg = str(err.value)
    assert "<root>" in msg and "['']" not in msg, msg


def test_per_leaf_coefficient_on_a_bare_array_names_root() -> None:
    with pytest.raises(ValueError) as err:
        decaytx.add_l2_grad(decaytx.per_leaf(lambda p, x: -1.0)).init(jnp.ones(2))
    msg = str(err.value)
    assert "weight_decay[<root>]" in msg and "['']" not in msg, msg


def test_mask_mismatch_on_a_bare_array_names_the_leaf() -> None:
    with pytest.raises(ValueError) as err:
        decaytx.add_l2_grad(0.1, mask={"a": True}).init(jnp.ones((2, 2)))
    assert "float32[2, 2] array" in str(err.value) and "ArrayImpl" not in str(err.value)


def test_the_guard_leaves_a_chain_unchanged() -> None:
    # The guard changes nothing for a plain optax chain around the transform.
    tx = optax.chain(decaytx.inject_hyperparams(decaytx.add_l2_grad)(0.1), optax.sgd(1.0))
    u, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    assert float(u["w"][0, 0]) == pytest.approx(-1.1)
