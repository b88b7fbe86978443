"""Decoupled weight decay against NumPy float64 loops, and its two classic
identities: equal to coupled L2 under SGD, different from it under Adam."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx

STEPS = 5
ETA0 = 0.1


def eta_np(t: int) -> float:
    return ETA0 / (1.0 + 0.5 * t)


def eta_sched(t):
    # Computes in the default float dtype (float64 under x64).
    return ETA0 / (1.0 + 0.5 * jnp.asarray(t, dtype=float))


def multiplier_pair(kind: str):
    """(learning_rate= given to decaytx, NumPy m_t)."""
    if kind == "none":
        return None, lambda t: 1.0
    if kind == "float":
        return 0.2, lambda t: 0.2
    if kind == "schedule":
        return eta_sched, eta_np
    if kind == "lr_multiplier":
        # m_t = eta_t / eta_max, the peak found on decaytx's grid (eta_0 here).
        return decaytx.lr_multiplier(eta_sched), lambda t: eta_np(t) / ETA0
    if kind == "lr_multiplier_peak":
        return decaytx.lr_multiplier(eta_sched, peak=0.2), lambda t: eta_np(t) / 0.2
    if kind == "corrected_decay":
        return decaytx.corrected_decay(eta_sched), lambda t: eta_np(t) ** 2 / ETA0
    raise AssertionError(kind)


def wd_pair(kind: str):
    if kind == "float":
        return 0.3, lambda t: 0.3
    return (lambda t: 0.3 * 0.9 ** jnp.asarray(t, dtype=float)), (lambda t: 0.3 * 0.9**t)


def make_tree(rng, dtype, scale=1.0):
    return {
        "w": (scale * rng.normal(size=(3, 4))).astype(dtype),
        "b": (scale * rng.normal(size=4)).astype(dtype),
    }


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    if request.param == np.float64:
        request.getfixturevalue("x64")
    return request.param


def run_and_reference(tx, params, steps_in, term, maybe_jit):
    """Runs ``tx`` (params += u each step) and the NumPy ``term(t, u, p, k)``."""
    state = tx.init(params)
    update = maybe_jit(tx.update)
    ref_p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    outs, refs = [], []
    for t, u_in in enumerate(steps_in):
        u, state = update(u_in, state, params)
        params = optax.apply_updates(params, u)
        r = {k: term(t, np.asarray(u_in[k], np.float64), ref_p[k], k) for k in ref_p}
        ref_p = {k: ref_p[k] + r[k] for k in ref_p}
        outs.append(u)
        refs.append(r)
    return outs, refs


def assert_close(outs, refs, dtype):
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for u, r in zip(outs, refs):
        for k in r:
            assert u[k].dtype == dtype
            np.testing.assert_allclose(np.asarray(u[k], np.float64), r[k], rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "lr_kind",
    ["none", "float", "schedule", "lr_multiplier", "lr_multiplier_peak", "corrected_decay"],
)
@pytest.mark.parametrize("wd_kind", ["float", "schedule"])
def test_decoupled_matches_numpy(rng, dtype, maybe_jit, lr_kind, wd_kind):
    lr, m = multiplier_pair(lr_kind)
    wd, lam = wd_pair(wd_kind)
    params = make_tree(rng, dtype)
    steps_in = [make_tree(rng, dtype, 0.1) for _ in range(STEPS)]
    tx = decaytx.add_decoupled_decay(wd, learning_rate=lr)
    outs, refs = run_and_reference(
        tx, params, steps_in, lambda t, u, p, k: u - m(t) * lam(t) * p, maybe_jit
    )
    assert_close(outs, refs, dtype)


@pytest.mark.parametrize("anchor", ["init", "tree"])
@pytest.mark.parametrize("cautious", [False, True])
def test_decoupled_anchor_and_cautious_match_numpy(rng, dtype, maybe_jit, anchor, cautious):
    params = make_tree(rng, dtype)
    steps_in = [make_tree(rng, dtype, 0.3) for _ in range(STEPS)]
    if anchor == "init":
        a = {k: np.asarray(v, np.float64) for k, v in params.items()}
        tx = decaytx.add_decoupled_decay(
            0.3, learning_rate=eta_sched, anchor="init", cautious=cautious
        )
    else:
        a_tree = make_tree(rng, dtype)
        a = {k: np.asarray(v, np.float64) for k, v in a_tree.items()}
        tx = decaytx.add_decoupled_decay(
            0.3, learning_rate=eta_sched, anchor=a_tree, cautious=cautious
        )

    def term(t, u, p, k):
        d = p - a[k]
        if cautious:  # Chen et al.: decay only where u_i (theta_i - a_i) <= 0
            d = np.where(u * d <= 0, d, 0.0)
        return u - eta_np(t) * 0.3 * d

    outs, refs = run_and_reference(tx, params, steps_in, term, maybe_jit)
    assert_close(outs, refs, dtype)


def test_cautious_without_anchor_matches_numpy(rng, maybe_jit):
    params = make_tree(rng, np.float32)
    steps_in = [make_tree(rng, np.float32, 0.3) for _ in range(STEPS)]
    tx = decaytx.add_decoupled_decay(0.2, learning_rate=0.5, cautious=True)
    outs, refs = run_and_reference(
        tx, params, steps_in, lambda t, u, p, k: u - 0.1 * np.where(u * p <= 0, p, 0.0), maybe_jit
    )
    assert_close(outs, refs, np.float32)
    # Both branches of the rule were exercised.
    u0 = np.asarray(steps_in[0]["w"], np.float64) * np.asarray(params["w"], np.float64)
    assert (u0 <= 0).any() and (u0 > 0).any()


def test_cautious_on_complex_uses_real_inner_product():
    p = jnp.array([1 + 1j, 1 + 1j], jnp.complex64)
    u = jnp.array([-1 + 0.5j, 1 - 0.5j], jnp.complex64)  # Re(conj(u) p) = -0.5, 0.5
    tx = decaytx.add_decoupled_decay(0.1, cautious=True, learning_rate=None)
    out, _ = tx.update(u, tx.init(p), p)
    ref = np.asarray(u) - 0.1 * np.array([1 + 1j, 0])
    assert out.dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6)


def test_decay_is_additive_in_float32():
    """u - m*l*theta: with lr = wd = 1e-4 (m*l = 1e-8) the decay added to an
    Adam-sized step is lr*wd*theta within 1%; theta*(1 - m*l) - theta would be 0."""
    theta = jnp.linspace(0.5, 2.0, 64, dtype=jnp.float32)
    u_in = jnp.full_like(theta, -1e-4)
    with pytest.warns(decaytx.DecayWarning, match="resolution of float32"):
        tx = decaytx.add_decoupled_decay(1e-4, learning_rate=1e-4)
        state = tx.init(theta)
    u, _ = jax.jit(tx.update)(u_in, state, theta)
    applied = np.asarray(u_in, np.float64) - np.asarray(u, np.float64)
    np.testing.assert_allclose(applied, 1e-8 * np.asarray(theta, np.float64), rtol=1e-2)
    # The multiplicative form loses it entirely: 1 - 1e-8 == 1 in float32.
    assert float(jnp.float32(1) - jnp.float32(1e-8)) == 1.0


def sgd_pair(eta, lam):
    coupled = optax.chain(decaytx.add_l2_grad(lam), optax.scale_by_learning_rate(eta))
    decoupled = optax.chain(
        optax.scale_by_learning_rate(eta), decaytx.add_decoupled_decay(lam, learning_rate=eta)
    )
    return coupled, decoupled


def trajectories(opts, params, grads_fn, steps):
    out = []
    for opt in opts:
        p, s = params, opt.init(params)

        @jax.jit
        def step(p, s, t, opt=opt):
            u, s = opt.update(grads_fn(p, t), s, p)
            return optax.apply_updates(p, u), s

        traj = []
        for t in range(steps):
            p, s = step(p, s, t)
            traj.append(np.asarray(p))
        out.append(np.stack(traj))
    return out


def quadratic_grad(p, t):
    # Gradient of a quadratic with a step-dependent target, so grads vary.
    target = jnp.sin(jnp.arange(p.shape[0], dtype=p.dtype) + 0.1 * t)
    return 2.0 * (p - target)


@pytest.mark.parametrize(
    "eta", [0.05, optax.cosine_decay_schedule(0.05, 100)], ids=["const", "cosine"]
)
def test_sgd_coupled_equals_decoupled_over_100_steps(rng, eta):
    params = jnp.asarray(rng.normal(size=16), jnp.float32)
    a, b = trajectories(sgd_pair(eta, 0.1), params, quadratic_grad, 100)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adam_coupled_differs_from_decoupled(rng):
    params = jnp.asarray(3.0 * rng.normal(size=16), jnp.float32)
    eta, lam = 0.05, 0.5
    coupled = optax.chain(decaytx.add_l2_grad(lam), optax.adam(eta))
    decoupled = optax.chain(optax.adam(eta), decaytx.add_decoupled_decay(lam, learning_rate=eta))
    a, b = trajectories([coupled, decoupled], params, quadratic_grad, 100)
    rel = np.linalg.norm(a[-1] - b[-1]) / np.linalg.norm(a[-1])
    assert rel > 0.05, rel


@pytest.mark.parametrize(
    "schedule, np_schedule",
    [
        (
            optax.warmup_cosine_decay_schedule(0.0, 0.1, 3, 12, 0.01),
            lambda t: (
                0.1 * t / 3
                if t < 3
                else 0.01 + (0.1 - 0.01) * 0.5 * (1 + math.cos(math.pi * min(t - 3, 9) / 9))
            ),
        ),
        (
            optax.piecewise_constant_schedule(0.1, {4: 0.5, 8: 0.1}),
            lambda t: 0.1 * (0.5 if t >= 4 else 1.0) * (0.1 if t >= 8 else 1.0),
        ),
    ],
    ids=["warmup_cosine", "piecewise"],
)
def test_schedules_in_lockstep_with_scale_by_learning_rate(schedule, np_schedule):
    """With g = 1 and theta = 1 the step is -eta_t - eta_t*lam at every t; a
    decay count off by one would give -eta_t - eta_{t+1}*lam."""
    lam = 0.5
    params = jnp.ones(3, jnp.float32)
    decoupled = optax.chain(
        optax.scale_by_learning_rate(schedule),
        decaytx.add_decoupled_decay(lam, learning_rate=schedule),
    )
    coupled = optax.chain(
        decaytx.add_l2_grad(lambda t: lam * schedule(t) / 0.1),
        optax.scale_by_learning_rate(schedule),
    )
    # theta + u = 1 - eta_t stays above the threshold eta_t * lam: S subtracts it.
    proximal = optax.chain(
        optax.scale_by_learning_rate(schedule),
        decaytx.prox_l1(lam, learning_rate=schedule),
    )
    for opt, ref in [
        (decoupled, lambda t: -np_schedule(t) * (1 + lam)),
        (proximal, lambda t: -np_schedule(t) * (1 + lam)),
        (coupled, lambda t: -np_schedule(t) * (1 + lam * np_schedule(t) / 0.1)),
    ]:
        state = opt.init(params)
        update = jax.jit(opt.update)
        for t in range(14):
            u, state = update(jnp.ones(3, jnp.float32), state, params)
            np.testing.assert_allclose(
                np.asarray(u), ref(t), rtol=1e-5, atol=1e-8, err_msg=f"step {t}"
            )


@pytest.mark.parametrize("zero", [0.0, np.float32(0.0), 0])
def test_zero_weight_decay_or_zero_multiplier_is_identity(rng, zero):
    params = make_tree(rng, np.float32)
    for tx in [
        decaytx.add_decoupled_decay(zero, learning_rate=0.1),
        decaytx.add_decoupled_decay(0.1, learning_rate=zero),
    ]:
        u, state = tx.update(params, tx.init(params), params)
        assert isinstance(state, optax.EmptyState)
        assert u is params


@pytest.mark.parametrize(
    "eta", [1e-2, optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 50)], ids=["const", "schedule"]
)
def test_adam_plus_decoupled_decay_is_optax_adamw(rng, eta):
    """optax.adamw(eta, weight_decay=wd) == chain(adam(eta), add_decoupled_decay(wd, learning_rate=eta))."""
    params = jnp.asarray(rng.normal(size=16), jnp.float32)
    ref = optax.adamw(eta, weight_decay=0.1)
    ours = optax.chain(optax.adam(eta), decaytx.add_decoupled_decay(0.1, learning_rate=eta))
    a, b = trajectories([ref, ours], params, quadratic_grad, 50)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: decaytx.add_decoupled_decay(0.1),
        lambda: decaytx.prox_l1(0.1),
        lambda: decaytx.prox_elastic_net(0.1, 0.1),
    ],
    ids=["add_decoupled_decay", "prox_l1", "prox_elastic_net"],
)
def test_missing_learning_rate_lists_the_four_choices(make):
    """0.2: the multiplier must be said out loud; 0.1 silently used m = 1."""
    with pytest.raises(TypeError, match="needs learning_rate=") as e:
        make()
    msg = str(e.value)
    for choice in ("learning_rate=eta", "lr_multiplier(schedule)", "corrected_decay(schedule)",
                   "learning_rate=None"):
        assert choice in msg
