"""Scaling helpers against their closed forms."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx


def np_warmup_cosine(t, peak=0.3, warmup=100, total=1000, end=0.0):
    if t < warmup:
        return peak * t / warmup
    frac = min(t - warmup, total - warmup) / (total - warmup)
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * frac))


WARMUP_COSINE = optax.warmup_cosine_decay_schedule(0.0, 0.3, 100, 1000)
STEPS = [0, 1, 50, 99, 100, 101, 400, 999, 1000, 5000]


def test_normalized_weight_decay_closed_form():
    for lam, b, n, t in [(0.05, 128, 50_000, 100), (0.025, 1, 10, 1), (1.0, 1024, 1_281_167, 90.5)]:
        got = decaytx.normalized_weight_decay(lam, batch_size=b, train_size=n, epochs=t)
        assert math.isclose(got, lam * math.sqrt(b / (n * t)), rel_tol=1e-15)
    # Four times the epochs: half the per-step coefficient.
    a = decaytx.normalized_weight_decay(0.05, batch_size=128, train_size=50_000, epochs=25)
    b = decaytx.normalized_weight_decay(0.05, batch_size=128, train_size=50_000, epochs=100)
    assert math.isclose(a, 2 * b, rel_tol=1e-15)


def test_weight_decay_for_timescale_closed_form_and_ema_meaning():
    eta, m, tau = 1e-2, 50, 4
    lam = decaytx.weight_decay_for_timescale(tau, learning_rate=eta, steps_per_epoch=m)
    assert math.isclose(lam, 1 / (eta * m * tau), rel_tol=1e-15)
    # With zero gradients, tau epochs of decoupled decay shrink the weights by
    # (1 - eta*lam)^(M*tau) ~ 1/e: the EMA timescale the helper promises.
    tx = decaytx.add_decoupled_decay(lam, learning_rate=eta)
    p = jnp.ones(4, jnp.float32)
    state = tx.init(p)
    step = jax.jit(
        lambda p, s: (lambda u, s: (optax.apply_updates(p, u), s))(
            *tx.update(jnp.zeros_like(p), s, p)
        )
    )
    for _ in range(m * tau):
        p, state = step(p, state)
    np.testing.assert_allclose(np.asarray(p), (1 - eta * lam) ** (m * tau), rtol=1e-5)
    assert abs(float(p[0]) - math.exp(-1)) < 0.01


@pytest.mark.parametrize(
    "call",
    [
        lambda v: decaytx.normalized_weight_decay(0.05, batch_size=v, train_size=10, epochs=1),
        lambda v: decaytx.normalized_weight_decay(0.05, batch_size=1, train_size=v, epochs=1),
        lambda v: decaytx.normalized_weight_decay(0.05, batch_size=1, train_size=10, epochs=v),
        lambda v: decaytx.weight_decay_for_timescale(v, learning_rate=0.1, steps_per_epoch=10),
        lambda v: decaytx.weight_decay_for_timescale(1, learning_rate=v, steps_per_epoch=10),
        lambda v: decaytx.weight_decay_for_timescale(1, learning_rate=0.1, steps_per_epoch=v),
    ],
    ids=["batch_size", "train_size", "epochs", "tau_epochs", "learning_rate", "steps_per_epoch"],
)
@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf")])
def test_scaling_helpers_refuse_non_positive_sizes(request, call, bad):
    name = request.node.callspec.id.split("-")[-1]
    with pytest.raises(ValueError, match=name):
        call(bad)


def test_normalized_weight_decay_refuses_negative_lambda():
    with pytest.raises(ValueError, match="lambda_norm"):
        decaytx.normalized_weight_decay(-0.05, batch_size=1, train_size=10, epochs=1)


def test_lr_multiplier_is_eta_over_eta_max():
    m = jax.jit(decaytx.lr_multiplier(WARMUP_COSINE))  # peak found on the grid
    for t in STEPS:
        np.testing.assert_allclose(
            float(m(jnp.int32(t))), np_warmup_cosine(t) / 0.3, rtol=1e-5, atol=1e-7
        )
    assert math.isclose(float(m(jnp.int32(100))), 1.0, rel_tol=1e-6)


def test_lr_multiplier_with_explicit_peak():
    m = jax.jit(decaytx.lr_multiplier(WARMUP_COSINE, peak=0.6))
    for t in STEPS:
        np.testing.assert_allclose(
            float(m(jnp.int32(t))), np_warmup_cosine(t) / 0.6, rtol=1e-5, atol=1e-7
        )


def test_corrected_decay_is_eta_squared_over_eta_max():
    m = jax.jit(decaytx.corrected_decay(WARMUP_COSINE))
    for t in STEPS:
        np.testing.assert_allclose(
            float(m(jnp.int32(t))), np_warmup_cosine(t) ** 2 / 0.3, rtol=1e-5, atol=1e-8
        )


def test_constant_learning_rates():
    assert decaytx.lr_multiplier(0.1) == 1.0
    assert decaytx.corrected_decay(0.1) == pytest.approx(0.1)  # eta^2 / eta


def test_peak_must_be_positive():
    with pytest.raises(ValueError, match="peak"):
        decaytx.lr_multiplier(WARMUP_COSINE, peak=-1.0)
    with pytest.raises(ValueError, match="peak"):
        decaytx.lr_multiplier(optax.constant_schedule(0.0))
    with pytest.raises(ValueError, match="peak"):
        decaytx.corrected_decay(WARMUP_COSINE, peak=0.0)


def test_multipliers_feed_update_side_forms():
    """The decay applied at step t is m_t * lam * theta with m_t from the helper."""
    lam = 0.5
    sched = optax.warmup_cosine_decay_schedule(0.0, 0.3, 3, 10)
    cases = [
        (decaytx.lr_multiplier, lambda t: np_warmup_cosine(t, 0.3, 3, 10) / 0.3),
        (decaytx.corrected_decay, lambda t: np_warmup_cosine(t, 0.3, 3, 10) ** 2 / 0.3),
    ]
    for helper, m in cases:
        tx = decaytx.add_decoupled_decay(lam, learning_rate=helper(sched))
        p = jnp.ones(2, jnp.float32)
        state = tx.init(p)
        update = jax.jit(tx.update)
        for t in range(12):
            u, state = update(jnp.zeros_like(p), state, p)
            np.testing.assert_allclose(
                np.asarray(u), -lam * m(t), rtol=1e-5, atol=1e-8, err_msg=f"t={t}"
            )
