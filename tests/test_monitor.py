"""decaytx.monitor / monitor_stats against closed forms.

Oracles: a zero-gradient leaf's log-norm falls by exactly log(1 - m*lambda)
per step; a synthetic scale-invariant layer under SGD with decoupled decay
settles at the rotational equilibrium (Kosson et al., 2024), norm
(eta c^2 / (lambda (2 - eta lambda)))^(1/4) and angular update
atan(sqrt(2 eta lambda) / sqrt(1 - eta lambda / 2)) ~ sqrt(2 eta lambda); the
monitored updates are bitwise those of the unmonitored optimizer; the
stats' keys, types and group aggregation against NumPy float64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks
from decaytx._monitor import MonitorState, MonitorStats

STATS = {"norm", "decay", "rate", "timescale", "horizon_fraction", "angle"}


def _params():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "enc": {"a": jax.random.normal(k1, (8, 4)), "b": jax.random.normal(k2, (4, 4))},
        "dec": {"w": jax.random.normal(k3, (4, 2)), "bias": jnp.ones(2)},
    }


def _run(opt, params, grads_of, steps, jit=True):
    """Applies ``steps`` updates; returns the updates and monitor states of each step."""
    state = opt.init(params)
    step = jax.jit(opt.update) if jit else opt.update
    ups, states = [], []
    for t in range(steps):
        u, state = step(grads_of(t, params), state, params)
        params = optax.apply_updates(params, u)
        ups.append(u)
        states.append(state)
    return ups, states


# -- oracle 1: zero gradients, log-norm slope log(1 - m lambda) ------------------------


@pytest.mark.parametrize("lam", [1e-3, 0.02, 0.3])
def test_zero_gradient_log_norm_slope_is_log_one_minus_rate(lam):
    opt = decaytx.monitor(decaytx.add_decoupled_decay(lam, learning_rate=None))
    params = {"w": jax.random.normal(jax.random.PRNGKey(1), (64,))}
    ups, states = _run(opt, params, lambda t, p: jax.tree.map(jnp.zeros_like, p), 12)
    stats = [decaytx.monitor_stats(s)["w"] for s in states]
    logs = np.log([s["norm"] for s in stats])
    np.testing.assert_allclose(np.diff(logs), math.log1p(-lam), rtol=2e-5 / lam * 1e-2 + 1e-5,
                               atol=5e-7)
    for s, u in zip(stats, ups, strict=True):
        assert s["rate"] == pytest.approx(lam, rel=1e-7)
        assert s["timescale"] == pytest.approx(1 / lam, rel=1e-6)
        # The decay norm is the norm of what the decay stage applied (here all of u).
        assert s["decay"] == pytest.approx(float(jnp.linalg.norm(u["w"])), rel=1e-5)
        assert s["angle"] == pytest.approx(0.0, abs=1e-3)
        assert math.isnan(s["horizon_fraction"])


def test_sgd_zero_gradient_with_a_schedule_follows_m_t_lambda():
    eta = optax.linear_schedule(0.2, 0.05, 10)
    lam = 0.1
    opt = decaytx.monitor(optax.chain(optax.sgd(eta), decaytx.add_decoupled_decay(lam, learning_rate=eta)))
    params = {"w": jnp.linspace(-1.0, 2.0, 16)}
    _, states = _run(opt, params, lambda t, p: jax.tree.map(jnp.zeros_like, p), 8)
    stats = [decaytx.monitor_stats(s)["w"] for s in states]
    for t, s in enumerate(stats):
        assert s["rate"] == pytest.approx(float(eta(t)) * lam, rel=1e-6)
    slopes = np.diff(np.log([s["norm"] for s in stats]))
    np.testing.assert_allclose(slopes, [math.log1p(-float(eta(t)) * lam) for t in range(7)], rtol=1e-4)


# -- oracle 2: the rotational equilibrium of a scale-invariant layer -------------------


def test_scale_invariant_layer_reaches_rotational_equilibrium():
    eta, lam, c, n = 0.1, 0.05, 1.0, 256
    opt = decaytx.monitor(optax.chain(optax.sgd(eta), decaytx.add_decoupled_decay(lam, learning_rate=eta)))
    theta0 = 3.0 * jax.random.normal(jax.random.PRNGKey(2), (n,)) / math.sqrt(n)

    def grad(theta, key):
        # Orthogonal to theta, of norm c / |theta|: the gradient of a scale-invariant loss.
        z = jax.random.normal(key, theta.shape)
        z = z - jnp.vdot(z, theta) / jnp.vdot(theta, theta) * theta
        return c * z / jnp.linalg.norm(z) / jnp.linalg.norm(theta)

    def body(carry, key):
        theta, state = carry
        u, state = opt.update({"w": grad(theta, key)}, state, {"w": theta})
        return (theta + u["w"], state), state.stats.values[0]

    steps = int(10 / (eta * lam))  # ten timescales
    keys = jax.random.split(jax.random.PRNGKey(3), steps)
    (_, _), trace = jax.jit(lambda s: jax.lax.scan(body, ({"w": theta0}["w"], s), keys))(
        opt.init({"w": theta0}))
    norm, angle = float(trace[-1, 0]), float(trace[-1, 5])
    # |theta|^2 = (1 - eta lam)^2 |theta|^2 + eta^2 c^2 / |theta|^2 at the fixed point.
    exact_norm = (eta * c**2 / (lam * (2 - eta * lam))) ** 0.25
    assert norm == pytest.approx(exact_norm, rel=1e-3)
    assert norm == pytest.approx((eta * c**2 / (2 * lam)) ** 0.25, rel=0.05)
    assert angle == pytest.approx(math.sqrt(2 * eta * lam), rel=0.05)
    # tan(angle) = eta c / ((1 - eta lam) |theta|^2), exactly.
    assert angle == pytest.approx(math.atan(eta * c / ((1 - eta * lam) * exact_norm**2)), rel=1e-3)
    assert float(trace[0, 0]) == pytest.approx(3.0, rel=0.2)  # it did have to move


# -- oracle 3: the updates are bitwise those of the unmonitored optimizer --------------


@pytest.mark.parametrize("make", [
    lambda: decaytx.adamw(optax.cosine_decay_schedule(1e-2, 20), weight_decay=0.1,
                          mask=masks.ndim_at_least(2)),
    lambda: optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(3e-3),
                        decaytx.add_decoupled_decay(0.05, learning_rate=3e-3, cautious=True),
                        decaytx.prox_l1(1e-3, learning_rate=3e-3)),
    lambda: optax.chain(decaytx.add_l2_grad(1e-2), optax.sgd(0.1, momentum=0.9),
                        decaytx.add_decoupled_decay(0.1, learning_rate=0.1, anchor="init")),
], ids=["adamw", "cautious+prox", "l2+anchor"])
@pytest.mark.filterwarnings("ignore::decaytx.DecayWarning")  # m*lambda below bf16 resolution
def test_updates_are_bitwise_those_of_the_unmonitored_optimizer(make):
    params = _params()
    params["dec"]["w"] = params["dec"]["w"].astype(jnp.bfloat16)

    def grads(t, p):
        return jax.tree.map(lambda x: jnp.cos(x * (t + 1)).astype(x.dtype), p)

    plain, _ = _run(make(), params, grads, 6)
    for groups in (None, ["enc", "dec"]):
        seen, states = _run(decaytx.monitor(make(), groups=groups), params, grads, 6)
        for a, b in zip(plain, seen, strict=True):
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
                assert x.dtype == y.dtype
                assert np.array_equal(np.asarray(x).view(np.uint8), np.asarray(y).view(np.uint8))
        assert all(np.isfinite(v["norm"]) for v in decaytx.monitor_stats(states[-1]).values())


def test_state_dtypes_are_fixed_and_scan_runs():
    opt = decaytx.monitor(decaytx.sgdw(optax.linear_schedule(0.1, 0.0, 50), weight_decay=0.1))
    params = _params()
    state = opt.init(params)
    after = jax.jit(opt.update)(params, state, params)[1]
    assert jax.tree.structure(state) == jax.tree.structure(after)
    for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(after), strict=True):
        assert (x.dtype, x.shape) == (y.dtype, y.shape)

    def body(s, _):
        return opt.update(params, s, params)[1], None

    final, _ = jax.lax.scan(body, state, None, length=5)
    assert int(final.count) == 5
    assert decaytx.monitor_stats(final)["enc/a"]["rate"] == pytest.approx(0.1 * 0.1 * (1 - 4 / 50), rel=1e-5)  # step 4


# -- stats: types, keys, groups --------------------------------------------------------


def _angle64(p, u):
    p, q = np.asarray(p, np.float64).ravel(), np.asarray(p, np.float64).ravel() + np.asarray(u, np.float64).ravel()
    return math.acos(min(1.0, float(p @ q / np.linalg.norm(p) / np.linalg.norm(q))))


def test_stats_types_keys_and_values_against_float64():
    opt = decaytx.monitor(decaytx.adamw(1e-1, weight_decay=0.2, mask=masks.ndim_at_least(2)))
    params = _params()
    state = opt.init(params)
    grads = jax.tree.map(lambda x: jnp.sin(3 * x), params)
    u, state = jax.jit(opt.update)(grads, state, params)
    stats = decaytx.monitor_stats(state)
    assert set(stats) == {"enc/a", "enc/b", "dec/w"}  # dec/bias is not decayed
    for path, s in stats.items():
        assert set(s) == STATS and all(type(v) is float for v in s.values())
        p = np.asarray(params[path.split("/")[0]][path.split("/")[1]], np.float64)
        du = u[path.split("/")[0]][path.split("/")[1]]
        assert s["norm"] == pytest.approx(np.linalg.norm(p), rel=1e-6)
        assert s["rate"] == pytest.approx(0.02, rel=1e-6)
        assert s["decay"] == pytest.approx(0.02 * np.linalg.norm(p), rel=1e-6)
        assert s["angle"] == pytest.approx(_angle64(p, du), rel=1e-3)
    flat = decaytx.monitor_stats(state, flat=True)
    assert flat["enc/a/norm"] == stats["enc/a"]["norm"] and len(flat) == 3 * len(STATS)


def test_groups_combine_as_sqrt_of_sum_of_squares():
    inner = lambda: optax.chain(  # noqa: E731
        optax.sgd(0.1),
        decaytx.add_decoupled_decay({"enc": {"a": 0.1, "b": 0.3}, "dec": 0.2}, learning_rate=0.1))
    params = _params()
    grads = jax.tree.map(lambda x: jnp.sin(3 * x), params)
    one = decaytx.monitor(inner())
    grouped = decaytx.monitor(inner(), groups=["enc"])
    u, s1 = one.update(grads, one.init(params), params)
    _, s2 = grouped.update(grads, grouped.init(params), params)
    per, grp = decaytx.monitor_stats(s1), decaytx.monitor_stats(s2)
    assert set(grp) == {"enc", "dec/w", "dec/bias"}
    leaves = ["enc/a", "enc/b"]
    assert grp["enc"]["norm"] == pytest.approx(math.hypot(*(per[k]["norm"] for k in leaves)), rel=1e-6)
    assert grp["enc"]["decay"] == pytest.approx(math.hypot(*(per[k]["decay"] for k in leaves)), rel=1e-6)
    assert grp["enc"]["decay"] == pytest.approx(grp["enc"]["rate"] * grp["enc"]["norm"], rel=1e-6)
    cat_p = np.concatenate([np.ravel(params["enc"][k]) for k in "ab"])
    cat_u = np.concatenate([np.ravel(u["enc"][k]) for k in "ab"])
    assert grp["enc"]["angle"] == pytest.approx(_angle64(cat_p, cat_u), rel=1e-3)
    np.testing.assert_equal(grp["dec/w"], per["dec/w"])  # NaN == NaN here
    everything = decaytx.monitor(inner(), groups=[""])
    assert set(decaytx.monitor_stats(everything.init(params))) == {""}


def test_groups_errors():
    opt = optax.chain(optax.sgd(0.1), decaytx.add_decoupled_decay(0.1, learning_rate=0.1))
    with pytest.raises(ValueError, match="match no decayed leaf"):
        decaytx.monitor(opt, groups=["encoder"]).init(_params())
    with pytest.raises(TypeError, match="sequence of path prefixes"):
        decaytx.monitor(opt, groups="enc")
    with pytest.raises(TypeError, match="GradientTransformation"):
        decaytx.monitor(lambda x: x)  # pyright: ignore[reportArgumentType]


def test_many_leaves_each_with_its_own_rate():
    n = 300
    params = {f"l{g}": {f"{i:03d}": jnp.full((2,), 1.0 + i) for i in range(100 * g, 100 * g + 100)}
              for g in range(3)}
    lam = jax.tree.map(lambda x: 1e-3 * float(x[0]), params)
    inner = optax.chain(optax.sgd(0.1), decaytx.add_decoupled_decay(lam, learning_rate=0.1))
    for groups in (None, ["l0", "l1", "l2"]):  # the same inner twice: its plans found twice
        opt = decaytx.monitor(inner, groups=groups)
        _, state = jax.jit(opt.update)(params, opt.init(params), params)
        assert state.stats.values.shape == (n if groups is None else 3, 6)
        s = decaytx.monitor_stats(state)
        if groups is None:
            assert s["l2/299"]["rate"] == pytest.approx(0.1 * 0.3, rel=1e-6)
            np.testing.assert_allclose([s[f"l{i // 100}/{i:03d}"]["rate"] for i in range(n)],
                                       [1e-4 * (1 + i) for i in range(n)], rtol=1e-6)
        else:  # l0/000..l0/099: the |theta|^2-weighted rms of their rates
            th2 = np.array([2 * (1.0 + i) ** 2 for i in range(100)])
            r = np.array([1e-4 * (1 + i) for i in range(100)])
            assert s["l0"]["rate"] == pytest.approx(math.sqrt((r**2 * th2).sum() / th2.sum()), rel=1e-5)
            assert s["l0"]["decay"] == pytest.approx(math.sqrt((r**2 * th2).sum()), rel=1e-5)


def test_horizon_fraction_from_with_horizon():
    T = 1000
    sched = decaytx.with_horizon(optax.cosine_decay_schedule(0.1, T), T)
    for m in (sched, decaytx.lr_multiplier(sched)):
        opt = decaytx.monitor(optax.chain(optax.sgd(sched), decaytx.add_decoupled_decay(0.01, learning_rate=m)))
        params = {"w": jnp.ones(3)}
        _, state = opt.update({"w": jnp.zeros(3)}, opt.init(params), params)
        s = decaytx.monitor_stats(state)["w"]
        assert s["horizon_fraction"] == pytest.approx(s["timescale"] / T, rel=1e-6)
        assert s["rate"] == pytest.approx(float(m(0)) * 0.01, rel=1e-6)


def test_what_is_not_known_is_nan():
    opt = decaytx.monitor(optax.chain(
        decaytx.add_l2_grad(0.1, mask={"x": True, "y": False, "z": False}),
        optax.sgd(0.1),
        decaytx.add_decoupled_decay(0.1, learning_rate=0.1, anchor="init",
                                    mask={"x": False, "y": True, "z": False}),
        decaytx.add_decoupled_decay(0.1, learning_rate=0.1, cautious=True,
                                    mask={"x": False, "y": False, "z": True})))
    params = {"x": jnp.ones(2), "y": jnp.ones(2), "z": jnp.ones(2)}
    _, state = opt.update(params, opt.init(params), params)
    s = decaytx.monitor_stats(state)
    assert math.isnan(s["x"]["rate"]) and math.isnan(s["x"]["decay"]) and np.isfinite(s["x"]["norm"])
    for k in "yz":
        assert s[k]["rate"] == pytest.approx(0.01) and math.isnan(s[k]["decay"])


def test_injected_hyperparameters_give_nan_rates_but_norms_and_angles():
    for inner in (optax.inject_hyperparams(decaytx.adamw)(learning_rate=0.1, weight_decay=0.01),
                  decaytx.inject_hyperparams(decaytx.sgdw)(learning_rate=0.1, weight_decay=0.01)):
        opt = decaytx.monitor(inner)
        params = {"w": jnp.ones((3, 3))}
        _, state = jax.jit(opt.update)(params, jax.jit(opt.init)(params), params)
        s = decaytx.monitor_stats(state)["w"]
        assert s["norm"] == pytest.approx(3.0) and np.isfinite(s["angle"])
        assert math.isnan(s["rate"]) and math.isnan(s["decay"])


def test_inside_multisteps_it_counts_the_real_steps():
    eta = optax.linear_schedule(0.1, 0.0, 10)
    mon = decaytx.monitor(optax.chain(optax.sgd(eta), decaytx.add_decoupled_decay(0.5, learning_rate=eta)))
    opt = optax.MultiSteps(mon, every_k_schedule=2)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    for _ in range(4):  # two real steps, at counts 0 and 1
        _, state = jax.jit(opt.update)(params, state, params)
    assert int(state.inner_opt_state.count) == 2
    assert decaytx.monitor_stats(state)["w"]["rate"] == pytest.approx(float(eta(1)) * 0.5, rel=1e-6)


def test_init_warns_as_the_unmonitored_init_does():
    params = {"w": jnp.ones(4, jnp.bfloat16)}
    for opt in (decaytx.add_decoupled_decay(1e-5, learning_rate=None),
                decaytx.monitor(decaytx.add_decoupled_decay(1e-5, learning_rate=None))):
        with pytest.warns(decaytx.DecayWarning, match="below the resolution"):
            opt.init(params)


def test_restored_state_audit_and_errors():
    make = lambda: decaytx.monitor(optax.chain(  # noqa: E731
        optax.adam(1e-2), decaytx.add_decoupled_decay(0.1, learning_rate=1e-2)))
    params = _params()
    state = make().init(params)
    fresh = make()  # never initialised: a state restored from a checkpoint
    _, after = jax.jit(fresh.update)(params, state, params)
    assert isinstance(after, MonitorState) and isinstance(after.stats, MonitorStats)
    assert decaytx.monitor_stats((after, optax.EmptyState()))["enc/a"]["rate"] == pytest.approx(1e-3)
    report = decaytx.audit(make(), params)
    assert {r.path for r in report.rows if r.transform} == {"enc/a", "enc/b", "dec/w", "dec/bias"}
    with pytest.raises(ValueError, match="without params"):
        make().update(params, state)
    with pytest.raises(ValueError, match="no decaytx.monitor state"):
        decaytx.monitor_stats(optax.EmptyState())
    with pytest.raises(ValueError, match="2 monitor states"):
        decaytx.monitor_stats((state, state))
