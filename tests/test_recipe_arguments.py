"""Recipes refuse impossible hyperparameters at construction, naming argument, value and fix.

``b1``/``b2`` outside [0, 1), a negative or non-finite ``eps``/``eps_root``
and a ``mu_dtype``/``accumulator_dtype`` that is not a float dtype used to be
taken silently (or fail deep inside optax without naming the argument).
Traced values, as ``optax.inject_hyperparams`` passes them under ``jit``,
cannot be inspected and still work.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx

PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
GRADS = jax.tree.map(lambda x: 0.3 * jnp.ones_like(x), PARAMS)

ADAMS = {
    "adamw": decaytx.adamw,
    "adam_l2": decaytx.adam_l2,
    "fused.adamw": decaytx.fused.adamw,
    "fused.adam_l2": decaytx.fused.adam_l2,
}
SGDS = {
    "sgd_l2": decaytx.sgd_l2,
    "sgdw": decaytx.sgdw,
    "fused.sgdw": decaytx.fused.sgdw,
    "fused.sgd_l2": decaytx.fused.sgd_l2,
}

BAD_NUMBERS = [
    ("b1", 1.5, ValueError, "must be in [0, 1)"),
    ("b1", -0.5, ValueError, "is negative"),
    ("b1", 1.0, ValueError, "must be in [0, 1)"),
    ("b2", math.nan, ValueError, "is not finite"),
    ("b2", 1.001, ValueError, "must be in [0, 1)"),
    ("eps", -1, ValueError, "is negative"),
    ("eps", math.inf, ValueError, "is not finite"),
    ("b1", "0.9", TypeError, "got str"),
    ("b2", True, TypeError, "got bool"),
]


@pytest.mark.parametrize("recipe", ADAMS)
@pytest.mark.parametrize("arg, value, error, words", BAD_NUMBERS,
                         ids=[f"{a}={v!r}" for a, v, _, _ in BAD_NUMBERS])
def test_adam_recipes_refuse_impossible_betas_and_epsilons(recipe, arg, value, error, words):
    with pytest.raises(error) as err:
        ADAMS[recipe](1e-3, 0.1, **{arg: value})
    msg = str(err.value)
    assert msg.startswith(f"{arg}="), msg  # the argument, first
    assert words in msg and "Pass e.g." in msg, msg  # what is wrong, and the fix


@pytest.mark.parametrize("recipe", ["adamw", "fused.adamw"])
def test_eps_root_is_checked_too(recipe):
    with pytest.raises(ValueError, match=r"^eps_root=-1e-08 is negative.*Pass e\.g\. eps_root=0\.0"):
        ADAMS[recipe](1e-3, 0.1, eps_root=-1e-8)


@pytest.mark.parametrize("recipe", ADAMS)
@pytest.mark.parametrize("bad, words", [
    ("float8", "not a dtype JAX knows"), ("int32", "not a floating dtype"),
    (jnp.int8, "not a floating dtype"), ("bf16", "not a dtype JAX knows"),
])
def test_mu_dtype_names_the_argument(recipe, bad, words):
    with pytest.raises(TypeError) as err:
        ADAMS[recipe](1e-3, 0.1, mu_dtype=bad)
    msg = str(err.value)
    assert msg.startswith(f"mu_dtype={bad!r}") and words in msg
    assert "jnp.float8_e4m3fn" in msg and "mu_dtype=None" in msg


@pytest.mark.parametrize("recipe", SGDS)
def test_accumulator_dtype_names_the_argument(recipe):
    with pytest.raises(TypeError, match=r"^accumulator_dtype='float8' is not a dtype JAX knows"):
        SGDS[recipe](1e-3, 0.1, momentum=0.9, accumulator_dtype="float8")


@pytest.mark.parametrize("recipe", ["adamw", "adam_l2"])
def test_boundary_values_and_typed_scalars_are_accepted(recipe):
    make = ADAMS[recipe]
    for kwargs in ({"b1": 0.0}, {"b2": 0}, {"eps": 0.0}, {"b1": np.float32(0.8)},
                   {"b2": jnp.asarray(0.99)}, {"mu_dtype": "bfloat16"},
                   {"mu_dtype": jnp.float8_e4m3fn}):
        make(1e-3, 0.1, **kwargs).init(PARAMS)
    decaytx.adamw(1e-3, 0.1, eps=0.0, amsgrad=True).init(PARAMS)


def _run(tx, steps=3, jit_init=False):
    state = (jax.jit(tx.init) if jit_init else tx.init)(PARAMS)
    out = []
    for _ in range(steps):
        u, state = jax.jit(tx.update)(GRADS, state, PARAMS)
        out.append(u)
    return out


@pytest.mark.parametrize("jit_init", [False, True], ids=["init", "jit-init"])
@pytest.mark.parametrize("wrapper", ["decaytx", "optax"])
def test_injected_betas_work_when_traced(wrapper, jit_init):
    inject = (decaytx.inject_hyperparams if wrapper == "decaytx"
              else lambda f: optax.inject_hyperparams(f, hyperparam_dtype=jnp.float32))
    tx = inject(decaytx.adamw)(1e-3, 0.1, b1=0.8, b2=0.99, eps=1e-6)
    ref = decaytx.adamw(1e-3, 0.1, b1=0.8, b2=0.99, eps=1e-6)
    for u, r in zip(_run(tx, jit_init=jit_init), _run(ref), strict=True):
        for k in PARAMS:
            np.testing.assert_allclose(np.asarray(u[k]), np.asarray(r[k]), rtol=1e-6)


def test_an_injected_beta_set_out_of_range_is_refused_at_the_next_eager_update():
    tx = decaytx.inject_hyperparams(decaytx.adamw)(1e-3, 0.1)
    state = tx.init(PARAMS)
    state.hyperparams["b1"] = jnp.asarray(1.5, jnp.float32)
    with pytest.raises(ValueError, match=r"^b1=1\.5 must be in \[0, 1\)"):
        tx.update(GRADS, state, PARAMS)


def test_bf16_params_under_optax_inject_hyperparams_name_the_rounded_beta():
    # optax casts hyperparameters to the params' dtype: b2=0.999 is 1.0 in bf16,
    # and Adam's bias correction then divides by zero (0.2.0: NaN updates, no error).
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)
    tx = optax.inject_hyperparams(decaytx.adamw)(1e-3, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)  # the bf16 resolution warning
        with pytest.raises(ValueError) as err:
            tx.init(params)
    msg = str(err.value)
    assert msg.startswith("b2=1.0 must be in [0, 1)") and "bfloat16" in msg
    assert "hyperparam_dtype=jnp.float32" in msg
    ok = optax.inject_hyperparams(decaytx.adamw, hyperparam_dtype=jnp.float32)(1e-3, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        state = ok.init(params)
    u, _ = ok.update(jax.tree.map(lambda x: x.astype(jnp.bfloat16), GRADS), state, params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))


@pytest.mark.parametrize("wrapper", ["decaytx", "optax"])
def test_complex_params_under_inject_hyperparams_keep_working(wrapper):
    # inject_hyperparams casts b1, b2, eps to complex64 for complex params: the
    # real part is the value (as for coefficients).
    inject = decaytx.inject_hyperparams if wrapper == "decaytx" else optax.inject_hyperparams
    params = {"w": jnp.ones(2), "c": jnp.ones(2, jnp.complex64)}
    tx = inject(decaytx.adam_l2)(1e-3, 1e-2)
    state = tx.init(params)
    assert state.hyperparams["b1"].dtype == jnp.complex64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # optax's complex-to-real cast
        u, _ = tx.update(params, state, params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))
    with pytest.raises(ValueError, match=r"^b1=2\.0 must be in \[0, 1\)"):
        decaytx.adam_l2(1e-3, 1e-2, b1=jnp.asarray(2.0, jnp.complex64))
