"""Penalties: values vs NumPy; jax.grad equals what the gradient-side forms add."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decaytx


def make_params(rng, dtype=np.float32):
    w = rng.normal(size=(3, 4)).astype(dtype)
    w[1, 2] = 0.0
    return {"w": w, "b": rng.normal(size=4).astype(dtype), "step": np.int32(3)}


def term_of(tx, params):
    """What a gradient-side transform adds to a zero gradient."""
    zeros = jax.tree.map(jnp.zeros_like, params)
    return tx.update(zeros, tx.init(params), params)[0]


def float_leaves(tree):
    return {k: v for k, v in tree.items() if k != "step"}


@pytest.mark.parametrize(
    "penalty, transform",
    [
        (lambda p: decaytx.l2_penalty(p, 0.3), decaytx.add_l2_grad(0.3)),
        (lambda p: decaytx.l1_penalty(p, 0.2), decaytx.add_l1_subgrad(0.2)),
        (
            lambda p: decaytx.elastic_net_penalty(p, 0.2, 0.3),
            decaytx.add_elastic_net_grad(0.2, 0.3),
        ),
        (
            lambda p: decaytx.l2_penalty(p, 0.3, mask=decaytx.masks.ndim_at_least(2)),
            decaytx.add_l2_grad(0.3, mask=decaytx.masks.ndim_at_least(2)),
        ),
        (
            lambda p: decaytx.l1_penalty(p, 0.2, mask={"w": False, "b": True}),
            decaytx.add_l1_subgrad(0.2, mask={"w": False, "b": True}),
        ),
    ],
    ids=["l2", "l1", "elastic_net", "l2_masked", "l1_masked"],
)
def test_grad_of_penalty_equals_gradient_side_term(rng, penalty, transform):
    params = float_leaves(make_params(rng))
    grad = jax.grad(penalty)(params)
    term = term_of(transform, params)
    for k in params:
        np.testing.assert_allclose(np.asarray(grad[k]), np.asarray(term[k]), rtol=1e-6, atol=1e-7)


def test_grad_of_anchored_l2_penalty_equals_anchored_term(rng):
    params = float_leaves(make_params(rng))
    anchor = float_leaves(make_params(rng))
    grad = jax.grad(lambda p: decaytx.l2_penalty(p, 0.3, anchor=anchor))(params)
    term = term_of(decaytx.add_l2_grad(0.3, anchor=anchor), params)
    for k in params:
        ref = 0.3 * (params[k].astype(np.float64) - anchor[k])
        np.testing.assert_allclose(np.asarray(grad[k]), ref, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(term[k]), ref, rtol=1e-6)


def test_penalty_values_match_numpy(rng, x64):
    params = make_params(rng, np.float64)
    w, b = params["w"], params["b"]
    sq = (w**2).sum() + (b**2).sum()
    ab = np.abs(w).sum() + np.abs(b).sum()
    np.testing.assert_allclose(float(decaytx.l2_penalty(params, 0.3)), 0.15 * sq, rtol=1e-14)
    np.testing.assert_allclose(float(decaytx.l1_penalty(params, 0.2)), 0.2 * ab, rtol=1e-14)
    np.testing.assert_allclose(
        float(decaytx.elastic_net_penalty(params, 0.2, 0.3)), 0.2 * ab + 0.15 * sq, rtol=1e-14
    )
    # The integer leaf is not penalised; ndim_at_least(2) keeps only w.
    np.testing.assert_allclose(
        float(decaytx.l2_penalty(params, 0.3, mask=decaytx.masks.ndim_at_least(2))),
        0.15 * (w**2).sum(),
        rtol=1e-14,
    )


def test_complex_penalties_use_modulus():
    z = {"z": jnp.array([3 + 4j, -1j], jnp.complex64)}
    np.testing.assert_allclose(float(decaytx.l2_penalty(z, 0.5)), 0.25 * (25 + 1), rtol=1e-6)
    np.testing.assert_allclose(float(decaytx.l1_penalty(z, 0.5)), 0.5 * (5 + 1), rtol=1e-6)


def test_keras_convention_lambda_norm_squared_is_weight_decay_2_lambda(rng):
    """A loss lam * ||theta||^2 (Keras L2(l2=lam), no 1/2) is add_l2_grad(2 * lam)."""
    params = float_leaves(make_params(rng))
    lam = 0.01

    def keras_loss(p):
        return lam * sum(jnp.sum(v**2) for v in jax.tree.leaves(p))

    grad = jax.grad(keras_loss)(params)
    term = term_of(decaytx.add_l2_grad(2 * lam), params)
    half = term_of(decaytx.add_l2_grad(lam), params)
    for k in params:
        np.testing.assert_allclose(np.asarray(grad[k]), np.asarray(term[k]), rtol=1e-6)
        # ... and weight_decay = lam would be half of it: the factor-of-2 trap.
        np.testing.assert_allclose(np.asarray(half[k]) * 2, np.asarray(grad[k]), rtol=1e-6)
    np.testing.assert_allclose(
        float(keras_loss(params)), float(decaytx.l2_penalty(params, 2 * lam)), rtol=1e-6
    )


def test_training_through_the_loss_equals_training_through_the_chain(rng):
    """sgd on loss + l2_penalty == chain(add_l2_grad, sgd) on loss alone."""
    import optax

    params = float_leaves(make_params(rng))
    target = float_leaves(make_params(rng))

    def loss(p):
        return sum(jnp.sum((p[k] - target[k]) ** 2) for k in p)

    a = b = params
    via_loss = optax.sgd(0.1)
    via_chain = optax.chain(decaytx.add_l2_grad(0.3), optax.sgd(0.1))
    sa, sb = via_loss.init(a), via_chain.init(b)
    for _ in range(20):
        ua, sa = via_loss.update(jax.grad(lambda p: loss(p) + decaytx.l2_penalty(p, 0.3))(a), sa, a)
        a = optax.apply_updates(a, ua)
        ub, sb = via_chain.update(jax.grad(loss)(b), sb, b)
        b = optax.apply_updates(b, ub)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-5, atol=1e-6)


def test_low_precision_penalty_accumulates_in_float32():
    p = {"w": jnp.full((4096,), 1.0, jnp.bfloat16)}
    val = decaytx.l2_penalty(p, 2.0)
    assert val.dtype == jnp.float32
    assert float(val) == 4096.0
