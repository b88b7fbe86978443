"""soft_threshold and the proximal forms against NumPy, plus properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import decaytx

STEPS = 5


def np_soft(x, tau):
    """sign(x) max(|x| - tau, 0); for complex x, x/|x| max(|x| - tau, 0)."""
    x = np.asarray(x)
    mag = np.abs(x)
    shrunk = np.maximum(mag - tau, 0.0)
    if np.iscomplexobj(x):
        return np.where(mag > 0, x / np.where(mag > 0, mag, 1.0), 0) * shrunk
    return np.sign(x) * shrunk


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    if request.param == np.float64:
        request.getfixturevalue("x64")
    return request.param


# --- the operator ------------------------------------------------------------


def test_soft_threshold_matches_numpy(rng, dtype, maybe_jit):
    x = rng.normal(size=200).astype(dtype)
    x[:3] = [0.7, -0.7, 0.0]  # exactly at the threshold, and 0
    out = maybe_jit(decaytx.soft_threshold)(x, 0.7 if dtype == np.float64 else np.float32(0.7))
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out), np_soft(x, x.dtype.type(0.7)).astype(dtype))
    assert (np.asarray(out)[:3] == 0).all()


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_soft_threshold_keeps_low_precision_dtype(dtype):
    x = jnp.linspace(-2, 2, 9, dtype=dtype)
    out = decaytx.soft_threshold(x, jnp.float32(0.5))
    assert out.dtype == dtype
    np.testing.assert_array_equal(
        np.asarray(out, np.float32), np_soft(np.asarray(x, np.float32), 0.5)
    )


def test_soft_threshold_complex_shrinks_modulus(rng):
    z = (rng.normal(size=50) + 1j * rng.normal(size=50)).astype(np.complex64)
    z[0] = 0
    out = decaytx.soft_threshold(jnp.asarray(z), 0.8)
    assert out.dtype == jnp.complex64
    np.testing.assert_allclose(
        np.asarray(out), np_soft(z.astype(np.complex128), 0.8), rtol=1e-5, atol=1e-6
    )
    # The phase is kept wherever the result is non-zero.
    nz = np.abs(np.asarray(out)) > 0
    np.testing.assert_allclose(np.angle(np.asarray(out))[nz], np.angle(z)[nz], atol=1e-5)


finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
taus = st.floats(0, 1e3, allow_nan=False, width=32)
# A fixed shape: one compiled soft_threshold serves every example.
vectors = hnp.arrays(np.float32, 16, elements=finite)


def _slack(*arrays):
    # One float32 rounding of the largest magnitude involved, plus the smallest
    # normal: XLA on CPU flushes subnormal results (e.g. S(1e-45, 0)) to zero.
    f32 = np.finfo(np.float32)
    return 2 * f32.eps * max(float(np.max(np.abs(a))) for a in arrays) + float(f32.tiny)


@settings(max_examples=200, deadline=None)
@given(x=vectors, tau=taus, data=st.data())
def test_soft_threshold_is_nonexpansive(x, tau, data):
    y = data.draw(hnp.arrays(np.float32, x.shape, elements=finite))
    sx = np.asarray(decaytx.soft_threshold(x, tau), np.float64)
    sy = np.asarray(decaytx.soft_threshold(y, tau), np.float64)
    d = np.abs(x.astype(np.float64) - y.astype(np.float64))
    assert (np.abs(sx - sy) <= d + _slack(x, y, np.float32(tau))).all()


@settings(max_examples=200, deadline=None)
@given(x=vectors, tau=taus)
def test_soft_threshold_never_flips_sign_and_is_zero_inside(x, tau):
    s = np.asarray(decaytx.soft_threshold(x, tau))
    assert (s * x >= 0).all()  # never flips a sign
    assert (np.abs(s) <= np.abs(x)).all()  # only shrinks
    inside = np.abs(x) <= np.float32(tau)
    assert (s[inside] == 0).all()
    np.testing.assert_allclose(
        s[~inside], np_soft(x, np.float32(tau))[~inside], rtol=1e-6, atol=_slack(x, np.float32(tau))
    )


# --- the transforms ----------------------------------------------------------


def eta_np(t):
    return 0.1 / (1.0 + 0.5 * t)


def eta_sched(t):
    return 0.1 / (1.0 + 0.5 * jnp.asarray(t, dtype=float))


def pair(kind, value):
    if kind == "none":
        return None, lambda t: 1.0
    if kind == "float":
        return value, lambda t: value
    if kind == "schedule":
        return (lambda t: value * eta_sched(t) / 0.1), (lambda t: value * eta_np(t) / 0.1)
    raise AssertionError(kind)


def make_tree(rng, dtype, scale=1.0):
    return {
        "w": (scale * rng.normal(size=(4, 5))).astype(dtype),
        "b": (scale * rng.normal(size=5)).astype(dtype),
    }


def run_prox(tx, params, steps_in, m, l1, l2, maybe_jit, dtype):
    state = tx.init(params)
    update = maybe_jit(tx.update)
    ref = {k: np.asarray(v, np.float64) for k, v in params.items()}
    tol = 1e-12 if dtype == np.float64 else 3e-6
    for t, u_in in enumerate(steps_in):
        u, state = update(u_in, state, params)
        new = optax.apply_updates(params, u)
        for k in ref:
            z = ref[k] + np.asarray(u_in[k], np.float64)
            z = np_soft(z, m(t) * l1(t)) / (1 + m(t) * l2(t))
            assert u[k].dtype == dtype and new[k].dtype == dtype
            np.testing.assert_allclose(np.asarray(new[k], np.float64), z, rtol=tol, atol=tol)
            # Exact zeros where the reference is zero (|theta + u| <= threshold).
            assert (np.asarray(new[k])[z == 0] == 0).all()
            ref[k] = z
        params = new
    return params


@pytest.mark.parametrize("lr_kind", ["none", "float", "schedule"])
@pytest.mark.parametrize("l1_kind", ["float", "schedule"])
def test_prox_l1_matches_numpy(rng, dtype, maybe_jit, lr_kind, l1_kind):
    lr, m = pair(lr_kind, 0.5)
    l1, l1_np = pair(l1_kind, 0.4)
    params = make_tree(rng, dtype)
    steps_in = [make_tree(rng, dtype, 0.2) for _ in range(STEPS)]
    final = run_prox(
        decaytx.prox_l1(l1, learning_rate=lr),
        params,
        steps_in,
        m,
        l1_np,
        lambda t: 0.0,
        maybe_jit,
        dtype,
    )
    # The test is only meaningful if some weights were zeroed and some not.
    flat = np.concatenate([np.ravel(v) for v in final.values()])
    assert (flat == 0).any() and (flat != 0).any()


@pytest.mark.parametrize("lr_kind", ["none", "float", "schedule"])
@pytest.mark.parametrize(
    "kinds", [("float", "float"), ("schedule", "float"), ("float", "schedule")]
)
def test_prox_elastic_net_matches_numpy(rng, dtype, maybe_jit, lr_kind, kinds):
    lr, m = pair(lr_kind, 0.5)
    l1, l1_np = pair(kinds[0], 0.3)
    l2, l2_np = pair(kinds[1], 0.6)
    params = make_tree(rng, dtype)
    steps_in = [make_tree(rng, dtype, 0.2) for _ in range(STEPS)]
    run_prox(
        decaytx.prox_elastic_net(l1, l2, learning_rate=lr),
        params,
        steps_in,
        m,
        l1_np,
        l2_np,
        maybe_jit,
        dtype,
    )


def test_prox_elastic_net_with_zero_l1_is_implicit_l2_step(rng):
    params = make_tree(rng, np.float32)
    steps_in = [make_tree(rng, np.float32, 0.2) for _ in range(STEPS)]
    run_prox(
        decaytx.prox_elastic_net(0.0, 0.6, learning_rate=0.5),
        params,
        steps_in,
        lambda t: 0.5,
        lambda t: 0.0,
        lambda t: 0.6,
        lambda f: f,
        np.float32,
    )


def test_prox_after_sgd_zeroes_exactly_what_soft_thresholding_predicts():
    """ISTA step: theta+ = S(theta - eta g, eta l1); exact zeros, not 1e-9."""
    params = jnp.array([0.05, -0.05, 0.11, -0.5, 1.0, 0.0], jnp.float32)
    grads = jnp.array([0.1, -0.1, 0.0, 0.0, 2.0, 0.0], jnp.float32)
    eta, l1 = 0.1, 1.0
    opt = optax.chain(optax.sgd(eta), decaytx.prox_l1(l1, learning_rate=eta))
    u, _ = opt.update(grads, opt.init(params), params)
    new = np.asarray(optax.apply_updates(params, u))
    z = np.asarray(params, np.float64) - eta * np.asarray(grads, np.float64)
    ref = np_soft(z, eta * l1)
    assert (new[np.abs(z) <= eta * l1] == 0).all()
    np.testing.assert_allclose(new, ref, rtol=1e-6, atol=1e-7)
    assert list(new == 0) == [True, True, False, False, False, True]


def test_prox_on_complex_params_shrinks_modulus(rng):
    p = (rng.normal(size=8) + 1j * rng.normal(size=8)).astype(np.complex64)
    u_in = (0.1 * (rng.normal(size=8) + 1j * rng.normal(size=8))).astype(np.complex64)
    tx = decaytx.prox_elastic_net(0.7, 0.2, learning_rate=0.5)
    u, _ = jax.jit(tx.update)(jnp.asarray(u_in), tx.init(jnp.asarray(p)), jnp.asarray(p))
    new = optax.apply_updates(jnp.asarray(p), u)
    assert u.dtype == jnp.complex64
    z = p.astype(np.complex128) + u_in
    ref = np_soft(z, 0.35) / (1 + 0.1)
    np.testing.assert_allclose(np.asarray(new), ref, rtol=1e-5, atol=1e-6)
    assert (np.asarray(new)[np.abs(z) <= 0.35] == 0).all()
