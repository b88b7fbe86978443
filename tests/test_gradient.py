"""Gradient-side forms against NumPy float64 reference loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx

STEPS = 5
ETA = 0.5  # params move by -ETA * u between steps, so theta changes every step


def coef_pair(kind: str, value: float):
    """(coefficient given to decaytx, NumPy function of the step).

    The schedule computes in the default float dtype (float64 under x64; optax's
    own schedules compute in float32 from an int32 count, which would blur an
    f64 comparison).
    """
    if kind == "float":
        return value, lambda t: value
    if kind == "schedule":
        return (
            lambda t: value / (1.0 + 0.5 * jnp.asarray(t, dtype=float)),
            lambda t: value / (1.0 + 0.5 * t),
        )
    raise AssertionError(kind)


def make_params(rng, dtype):
    w = rng.normal(size=(3, 4))
    w[0, 0] = 0.0  # sign(0) = 0
    b = rng.normal(size=(4,))
    return {"w": w.astype(dtype), "b": b.astype(dtype)}


def run(tx, params, grads, maybe_jit):
    """Updates of ``tx`` over a few steps, params moving by -ETA * u."""
    state = tx.init(params)
    update = maybe_jit(tx.update)
    out = []
    for g in grads:
        u, state = update(g, state, params)
        out.append(u)
        params = jax.tree.map(lambda p, v: p - ETA * v, params, u)
    return out


def np_run(term, params, grads):
    """The NumPy float64 reference: ``term(t, g, p) -> u`` per leaf."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    out = []
    for t, g in enumerate(grads):
        u = {k: term(t, np.asarray(g[k], np.float64), params[k], k) for k in params}
        out.append(u)
        params = {k: params[k] - ETA * u[k] for k in params}
    return out


def assert_close(out, ref, dtype):
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for u, r in zip(out, ref):
        for k in r:
            assert u[k].dtype == dtype
            np.testing.assert_allclose(np.asarray(u[k], np.float64), r[k], rtol=tol, atol=tol)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    if request.param == np.float64:
        request.getfixturevalue("x64")
    return request.param


@pytest.mark.parametrize("kind", ["float", "schedule"])
@pytest.mark.parametrize("anchor", [None, "init", "tree"])
def test_l2_matches_numpy(rng, dtype, maybe_jit, kind, anchor):
    params = make_params(rng, dtype)
    grads = [make_params(rng, dtype) for _ in range(STEPS)]
    lam, np_lam = coef_pair(kind, 0.3)
    if anchor == "tree":
        a_tree = make_params(rng, dtype)
        a_np = {k: np.asarray(v, np.float64) for k, v in a_tree.items()}
        tx = decaytx.add_l2_grad(lam, anchor=a_tree)
    elif anchor == "init":
        a_np = {k: np.asarray(v, np.float64) for k, v in params.items()}
        tx = decaytx.add_l2_grad(lam, anchor="init")
    else:
        a_np = {k: 0.0 for k in params}
        tx = decaytx.add_l2_grad(lam)
    ref = np_run(lambda t, g, p, k: g + np_lam(t) * (p - a_np[k]), params, grads)
    assert_close(run(tx, params, grads, maybe_jit), ref, dtype)


@pytest.mark.parametrize("kind", ["float", "schedule"])
def test_l1_matches_numpy(rng, dtype, maybe_jit, kind):
    params = make_params(rng, dtype)
    grads = [make_params(rng, dtype) for _ in range(STEPS)]
    lam, np_lam = coef_pair(kind, 0.2)
    ref = np_run(lambda t, g, p, k: g + np_lam(t) * np.sign(p), params, grads)
    out = run(decaytx.add_l1_subgrad(lam), params, grads, maybe_jit)
    assert_close(out, ref, dtype)
    # sign(0) = 0: the zero weight gets exactly its gradient at step 0.
    assert out[0]["w"][0, 0] == grads[0]["w"][0, 0]


@pytest.mark.parametrize("kind1", ["float", "schedule"])
@pytest.mark.parametrize("kind2", ["float", "schedule"])
def test_elastic_net_matches_numpy(rng, dtype, maybe_jit, kind1, kind2):
    params = make_params(rng, dtype)
    grads = [make_params(rng, dtype) for _ in range(STEPS)]
    l1, np_l1 = coef_pair(kind1, 0.2)
    l2, np_l2 = coef_pair(kind2, 0.4)
    ref = np_run(lambda t, g, p, k: g + np_l1(t) * np.sign(p) + np_l2(t) * p, params, grads)
    assert_close(run(decaytx.add_elastic_net_grad(l1, l2), params, grads, maybe_jit), ref, dtype)


@pytest.mark.parametrize("zero", ["l1", "l2"])
def test_elastic_net_with_one_zero_coefficient_is_the_other_form(rng, maybe_jit, zero):
    params = make_params(rng, np.float32)
    grads = [make_params(rng, np.float32) for _ in range(STEPS)]
    if zero == "l1":
        tx = decaytx.add_elastic_net_grad(0.0, 0.4)
        ref = np_run(lambda t, g, p, k: g + 0.4 * p, params, grads)
    else:
        tx = decaytx.add_elastic_net_grad(0.2, 0.0)
        ref = np_run(lambda t, g, p, k: g + 0.2 * np.sign(p), params, grads)
    assert_close(run(tx, params, grads, maybe_jit), ref, np.float32)


def test_l2_then_sgd_is_pytorch_sgd_weight_decay(rng):
    """chain(add_l2_grad(l), sgd(eta)) is PyTorch SGD(weight_decay=l): p -= eta (g + l p)."""
    p = rng.normal(size=5)
    grads = rng.normal(size=(10, 5))
    opt = optax.chain(decaytx.add_l2_grad(0.1), optax.sgd(0.05))
    params = jnp.asarray(p, jnp.float32)
    state = opt.init(params)
    ref = p.copy()
    for g in grads:
        u, state = opt.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, u)
        ref = ref - 0.05 * (g + 0.1 * ref)
    np.testing.assert_allclose(np.asarray(params), ref, rtol=1e-5)


def test_l1_on_complex_uses_unit_phase():
    z = jnp.array([3 + 4j, 0j, -1j], jnp.complex64)
    tx = decaytx.add_l1_subgrad(0.5)
    u, _ = tx.update(jnp.zeros_like(z), tx.init(z), z)
    zn = np.array([3 + 4j, 0j, -1j])
    ref = 0.5 * np.where(np.abs(zn) > 0, zn / np.where(np.abs(zn) > 0, np.abs(zn), 1), 0)
    assert u.dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(u), ref, rtol=1e-6, atol=1e-7)


def test_l2_on_complex_matches_numpy():
    z = jnp.array([3 + 4j, -2 - 1j], jnp.complex64)
    g = jnp.array([1 - 1j, 0.5j], jnp.complex64)
    tx = decaytx.add_l2_grad(0.25)
    u, _ = tx.update(g, tx.init(z), z)
    np.testing.assert_allclose(np.asarray(u), np.asarray(g) + 0.25 * np.asarray(z), rtol=1e-6)
