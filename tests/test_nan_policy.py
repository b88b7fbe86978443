"""NaN/inf policy (docs/robustness.md).

1. Finite in, finite out: soft_threshold at the dtype's extremes, sign at
   +-0 and complex 0, every form at extreme but finite params.
2. Non-finite updates or params propagate elementwise exactly as without
   decay: nan stays nan, +-inf stays +-inf, neighbours are untouched.
3. Under optax.apply_if_finite a skipped step decays nothing and leaves the
   decay's schedule count in lockstep with the learning-rate schedule's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)

EXTREMES = np.array(
    [0.0, -0.0, F32_TINY, -F32_TINY, 1e-30, -1.0, 1.0, 1e30, -1e30, F32_MAX, -F32_MAX],
    np.float32,
)


# --- finite in, finite out ------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, F32_TINY, 1.0, 1e30, F32_MAX])
def test_soft_threshold_real_extremes(tau: float) -> None:
    out = np.asarray(jax.jit(decaytx.soft_threshold)(jnp.asarray(EXTREMES), tau))
    assert np.isfinite(out).all()
    ref = np.sign(EXTREMES.astype(np.float64)) * np.maximum(np.abs(EXTREMES.astype(np.float64)) - np.float32(tau), 0)
    # XLA on CPU flushes subnormal results to zero: allow that much.
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=F32_TINY)
    assert not np.signbit(out[np.abs(EXTREMES) <= np.float32(tau)]).any()  # +0, not -0


@pytest.mark.parametrize("tau", [0.0, 1.0, 1e30, F32_MAX])
def test_soft_threshold_complex_extremes(tau: float) -> None:
    re_, im_ = np.meshgrid(EXTREMES, EXTREMES)
    z = (re_ + 1j * im_).astype(np.complex64).ravel()  # |z| overflows for the corners
    out = np.asarray(jax.jit(decaytx.soft_threshold)(jnp.asarray(z), tau))
    assert np.isfinite(out.real).all() and np.isfinite(out.imag).all()
    z128 = z.astype(np.complex128)
    mag = np.abs(z128)
    ref = np.where(mag > np.float32(tau), z128 * (1 - np.float32(tau) / np.where(mag > 0, mag, 1)), 0)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=F32_TINY)
    # the phase is kept wherever anything is left
    left = np.abs(out) > 0
    np.testing.assert_allclose(np.angle(out[left]), np.angle(z128[left]), atol=1e-6)


def test_sign_at_zero_is_zero() -> None:
    """L1 subgradient at theta = +-0 and complex 0 adds nothing (sign(0) = 0)."""
    params = {
        "r": jnp.asarray([0.0, -0.0, 2.0, -2.0], jnp.float32),
        "c": jnp.asarray([0j, complex(-0.0, -0.0), 3 + 4j, -1j], jnp.complex64),
    }
    t = decaytx.add_l1_subgrad(0.5)
    zeros = jax.tree.map(jnp.zeros_like, params)
    for f in (t.update, jax.jit(t.update)):
        out, _ = f(zeros, t.init(params), params)
        np.testing.assert_array_equal(out["r"], [0.0, 0.0, 0.5, -0.5])
        np.testing.assert_allclose(out["c"], [0, 0, 0.5 * (0.6 + 0.8j), -0.5j], rtol=1e-6)
        assert np.isfinite(np.asarray(out["c"]).view(np.float32)).all()


def test_prox_at_zero_complex_and_real() -> None:
    params = {"r": jnp.zeros(3), "c": jnp.zeros(3, jnp.complex64)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    for t in (decaytx.prox_l1(0.1, learning_rate=None), decaytx.prox_elastic_net(0.1, 0.2, learning_rate=None)):
        out, _ = jax.jit(t.update)(zeros, t.init(params), params)
        for leaf in jax.tree.leaves(out):
            np.testing.assert_array_equal(np.asarray(leaf), 0)


FORMS = {
    "add_l2_grad": lambda: decaytx.add_l2_grad(0.5),
    "add_l1_subgrad": lambda: decaytx.add_l1_subgrad(0.5),
    "add_elastic_net_grad": lambda: decaytx.add_elastic_net_grad(0.5, 0.5),
    "add_decoupled_decay": lambda: decaytx.add_decoupled_decay(0.5, learning_rate=None),
    "add_decoupled_decay.cautious": lambda: decaytx.add_decoupled_decay(0.5, cautious=True, learning_rate=None),
    "add_decoupled_decay.anchor": lambda: decaytx.add_decoupled_decay(0.5, anchor="init", learning_rate=None),
    "prox_l1": lambda: decaytx.prox_l1(0.5, learning_rate=None),
    "prox_elastic_net": lambda: decaytx.prox_elastic_net(0.5, 0.5, learning_rate=None),
}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.complex64])
def test_extreme_finite_params_give_finite_updates(form: str, dtype) -> None:
    """With coefficients <= 1/2 and a zero incoming update, every decay term
    is at most |theta|: finite params give finite updates, even at the
    dtype's max (where e.g. theta*(1 + lambda) would overflow)."""
    finfo = jnp.finfo(dtype)
    big = float(finfo.max)
    vals = np.array([0.0, -0.0, float(finfo.tiny), 1.0, -1.0, big, -big, big / 2])
    params = jnp.asarray(vals).astype(dtype)
    if jnp.iscomplexobj(params):
        params = params + 1j * params[::-1].real.astype(dtype)
    t = FORMS[form]()
    out, _ = jax.jit(t.update)(jnp.zeros_like(params), t.init(params), params)
    assert out.dtype == params.dtype
    flat = np.asarray(out.astype(jnp.complex64) if jnp.iscomplexobj(out) else out.astype(jnp.float32))
    assert np.isfinite(flat.view(np.float32) if np.iscomplexobj(flat) else flat).all(), flat


# --- non-finite values propagate as without decay --------------------------------


def _nonfinite_pattern(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.stack([np.isnan(x), np.isposinf(x), np.isneginf(x)])


@pytest.mark.parametrize("form", list(FORMS))
def test_nonfinite_updates_propagate(form: str) -> None:
    params = jnp.asarray([0.5, -1.0, 0.0, 2.0, 3.0, -0.25], jnp.float32)
    g = jnp.asarray([np.nan, np.inf, -np.inf, 0.1, np.nan, -0.2], jnp.float32)
    t = FORMS[form]()
    out, _ = jax.jit(t.update)(g, t.init(params), params)
    out = np.asarray(out)
    # Update-side forms see the final step; a prox sees theta + u, and
    # theta + (+-inf) - theta is +-inf. Either way the pattern is the input's.
    np.testing.assert_array_equal(_nonfinite_pattern(out), _nonfinite_pattern(g))
    finite = np.isfinite(np.asarray(g))
    assert np.isfinite(out[finite]).all()


@pytest.mark.parametrize("form", [f for f in FORMS if not f.endswith("anchor")])
def test_nonfinite_params_stay_local(form: str) -> None:
    """A non-finite weight stays non-finite after the step (inf may become
    nan: inf - lambda*inf), as it would without decay; finite neighbours are
    untouched by it."""
    params = jnp.asarray([np.nan, 1.0, np.inf, -2.0, -np.inf], jnp.float32)
    g = jnp.full(5, 0.1)
    t = FORMS[form]()
    out, _ = jax.jit(t.update)(g, t.init(params), params)
    new = np.asarray(optax.apply_updates(params, out))
    without = np.asarray(optax.apply_updates(params, g))
    np.testing.assert_array_equal(np.isfinite(new), np.isfinite(without))
    assert np.isfinite(np.asarray(out)[[1, 3]]).all()


@pytest.mark.parametrize("form", list(FORMS))
def test_nonfinite_complex_updates_propagate(form: str) -> None:
    params = jnp.asarray([1 + 1j, -2j, 0j], jnp.complex64)
    g = jnp.asarray([complex(np.nan, 0), complex(np.inf, 1), 0.1 + 0.1j], jnp.complex64)
    t = FORMS[form]()
    out, _ = jax.jit(t.update)(g, t.init(params), params)
    out = np.asarray(out)
    assert not np.isfinite(out[:2]).all(axis=None) and not np.isfinite(out[0])
    assert not np.isfinite(out[1])
    assert np.isfinite(out[2])


# --- apply_if_finite ---------------------------------------------------------------

SCHED = optax.linear_schedule(1e-1, 1e-2, 10)
WD_SCHED = optax.linear_schedule(1e-1, 0.0, 10)
GRADS = [1.0, np.nan, 0.5, np.inf, -0.5, np.nan, 0.25]


def _counts(state) -> tuple[int, int]:
    inner = state.inner_state
    lr_count = int(inner[1].count)  # ScaleByScheduleState
    decay_count = int(inner[2].count)  # decaytx.DecayState
    return lr_count, decay_count


def test_skipped_step_decays_nothing_and_counts_stay_in_lockstep() -> None:
    opt = optax.apply_if_finite(
        optax.chain(
            optax.scale_by_adam(),
            optax.scale_by_learning_rate(SCHED),
            decaytx.add_decoupled_decay(WD_SCHED, learning_rate=SCHED),
        ),
        max_consecutive_errors=10,
    )
    # Reference: optax's own adamw, whose decay -eta_t*wd*theta is decaytx's
    # with decay_scaling "lr"; wd follows WD_SCHED via inject_hyperparams.
    ref_opt = optax.apply_if_finite(
        optax.inject_hyperparams(optax.adamw)(learning_rate=SCHED, weight_decay=WD_SCHED),
        max_consecutive_errors=10,
    )
    params = jnp.asarray([1.0, -2.0, 3.0])
    ref_params = params
    state, ref_state = opt.init(params), ref_opt.init(params)
    step, ref_step = jax.jit(opt.update), jax.jit(ref_opt.update)
    finite_steps = 0
    for g in GRADS:
        grads = jnp.full(3, g, jnp.float32)
        before = params
        upd, state = step(grads, state, params)
        params = optax.apply_updates(params, upd)
        rupd, ref_state = ref_step(grads, ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, rupd)
        if np.isfinite(g):
            finite_steps += 1
        else:
            np.testing.assert_array_equal(params, before)  # nothing decayed
        assert _counts(state) == (finite_steps, finite_steps)
        np.testing.assert_allclose(params, ref_params, rtol=1e-5)
    assert int(state.total_notfinite) == 3


def test_decay_count_matches_lr_count_in_a_scan_with_skips() -> None:
    opt = optax.apply_if_finite(
        optax.chain(
            optax.scale_by_learning_rate(SCHED),
            decaytx.add_decoupled_decay(WD_SCHED, learning_rate=decaytx.lr_multiplier(SCHED)),
        ),
        max_consecutive_errors=1000,
    )
    params = jnp.ones(2)
    grads = jnp.where(jnp.arange(200)[:, None] % 3 == 0, jnp.nan, 1.0) * jnp.ones((200, 2))

    def body(carry, g):
        p, s = carry
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, state), _ = jax.lax.scan(body, (params, opt.init(params)), grads)
    lr_count = int(state.inner_state[0].count)
    decay_count = int(state.inner_state[1].count)
    assert lr_count == decay_count == 200 - 67
    assert np.isfinite(np.asarray(params)).all()
