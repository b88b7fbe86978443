"""prox_group_lasso and group_lasso_penalty against independent references.

* the operator: the closed form x_g max(0, 1 - tau/||x_g||) in NumPy float64,
  and a brute-force argmin of 1/2 ||z - x||^2 + tau ||z||_2 (scipy Nelder-Mead);
* the transform: proximal gradient descent reproduces scikit-learn's
  ``MultiTaskLasso``, which minimises
  ``1/(2n) ||Y - XW||_F^2 + alpha sum_j ||W_j||_2`` (rows W_j = features;
  its ``coef_`` is W transposed, one row per task): ``sgd(1/L)`` then
  ``prox_group_lasso(alpha, learning_rate=1/L, axis=<the tasks' axis>)`` on
  the loss ``1/(2n) ||Y - XW||_F^2``;
* the penalty: its ``jax.grad`` is lambda theta_g / ||theta_g|| (NumPy), and
  the prox's optimality condition holds with it (x - prox(x) = tau grad/lambda).

The properties every form shares (pickling, ``lax.scan``, ``optax.tree.map_params``,
``update(None, ...)``, half precision with extreme coefficients, inject_hyperparams)
run over the registry in tests/test_paths.py, where prox_group_lasso has its line.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx._group_lasso import _group_shrink

sklearn_linear = pytest.importorskip("sklearn.linear_model")
scipy_optimize = pytest.importorskip("scipy.optimize")


def np_group_shrink(x: np.ndarray, tau: float, axis: Any) -> np.ndarray:
    """x_g max(0, 1 - tau/||x_g||_2), groups the slices along the axes not in ``axis``."""
    norm = np.sqrt(np.sum(np.abs(x) ** 2, axis=axis, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(norm > 0, np.maximum(0.0, 1.0 - tau / norm), 0.0)
    return x * factor


def _zero_groups(x: np.ndarray, axis: Any) -> np.ndarray:
    return np.all(x == 0, axis=axis)


def _step(t: optax.GradientTransformation, params: Any, grads: Any = None) -> Any:
    """One update from zero (or given) updates; the params it lands on."""
    grads = jax.tree.map(jnp.zeros_like, params) if grads is None else grads
    u, _ = t.update(grads, t.init(params), params)
    return optax.apply_updates(params, u)


# --- the operator ---------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, -1, 0, (0, 2), (), None], ids=str)
def test_operator_matches_closed_form(rng, axis, x64, maybe_jit):
    x = rng.normal(size=(4, 5, 3))
    x[1] = 0.0  # zero groups whatever the axis (rows of the first axis)
    x[2] *= 0.05  # small groups, shrunk to 0
    ax = tuple(range(3)) if axis is None else axis
    ours = np.asarray(maybe_jit(lambda v: _group_shrink(v, 0.4, _axes(ax, v.ndim)))(jnp.asarray(x)))
    ref = np_group_shrink(x, 0.4, ax)
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(_zero_groups(ours, ax), _zero_groups(ref, ax))
    assert np.isfinite(ours).all()


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


@pytest.mark.parametrize("size", [2, 3])
def test_operator_is_the_brute_force_argmin(rng, size, x64):
    """Nelder-Mead on 1/2||z - x||^2 + tau||z||, groups inside, on and outside the ball."""
    tau = 0.7
    xs = [rng.normal(size=size) * s for s in (0.1, 0.5, 1.0, 2.0, 5.0)]
    xs.append(tau * np.ones(size) / np.sqrt(size))  # norm exactly tau: the boundary
    worst = 0.0
    for x in xs:
        def f(z, x=x):
            return 0.5 * np.sum((z - x) ** 2) + tau * np.linalg.norm(z)

        ours = np.asarray(_group_shrink(jnp.asarray(x), tau, (0,)))
        brute = scipy_optimize.minimize(
            f, x, method="Nelder-Mead",
            options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20_000, "maxfev": 40_000}).x
        assert f(ours) <= f(brute) + 1e-13  # ours is the minimiser: nothing found lower
        worst = max(worst, float(np.max(np.abs(ours - brute))))
        if np.linalg.norm(x) <= tau:
            assert (ours == 0).all()
    print(f"\nbrute-force argmin, groups of {size}: max|ours - Nelder-Mead| = {worst:.2e}")
    assert worst <= 1e-6


def test_operator_shrinks_a_complex_groups_modulus(rng, x64):
    z = rng.normal(size=(6, 4)) + 1j * rng.normal(size=(6, 4))
    z[0] = 0
    z[1] *= 0.1
    ours = np.asarray(_group_shrink(jnp.asarray(z), 0.9, (1,)))
    np.testing.assert_allclose(ours, np_group_shrink(z, 0.9, 1), rtol=1e-13, atol=0)
    kept = ~_zero_groups(ours, 1)
    # The phases are kept: each surviving group is a positive multiple of z_g.
    np.testing.assert_allclose(np.angle(ours[kept]), np.angle(z[kept]), atol=1e-12)
    assert (ours[:2] == 0).all()


def test_empty_axis_is_prox_l1(rng):
    p = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    ours = _step(decaytx.prox_group_lasso(0.6, learning_rate=0.5, axis=()), p, g)
    l1 = _step(decaytx.prox_l1(0.6, learning_rate=0.5), p, g)
    np.testing.assert_allclose(ours, l1, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ours == 0, l1 == 0)


# --- proximal gradient descent = scikit-learn's MultiTaskLasso --------------------

N, P, T = 200, 20, 3


@pytest.fixture(scope="module")
def multitask() -> tuple[np.ndarray, np.ndarray]:
    """6 of 20 features carry 3 tasks, the last two weakly (one is dropped at alpha 0.1)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, P))
    w = np.zeros((P, T))
    w[:6] = rng.normal(size=(6, T)) * np.array([2.0, 1.5, 1.0, 0.5, 0.2, 0.1])[:, None]
    y = x @ w + 0.1 * rng.normal(size=(N, T))
    return x, y


def _proximal_gradient(x: np.ndarray, y: np.ndarray, alpha: float, layout: str, steps: int) -> np.ndarray:
    """ISTA on 1/(2n)||Y - XW||_F^2 + alpha sum_j ||W_j||; W as (features, tasks)."""
    eta = 1.0 / float(np.linalg.eigvalsh(x.T @ x / len(x))[-1])
    axis = {"features_x_tasks": 1, "tasks_x_features": 0, "tasks_x_features_neg": -2}[layout]
    opt = optax.chain(optax.sgd(eta), decaytx.prox_group_lasso(alpha, learning_rate=eta, axis=axis))
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    tasks_first = layout != "features_x_tasks"

    def loss(w: jax.Array) -> jax.Array:
        return 0.5 * jnp.sum((xj @ (w.T if tasks_first else w) - yj) ** 2) / len(x)

    def step(carry: Any, _: Any) -> tuple[Any, None]:
        w, s = carry
        u, s = opt.update(jax.grad(loss)(w), s, w)
        return (optax.apply_updates(w, u), s), None

    w0 = jnp.zeros((T, P) if tasks_first else (P, T))
    (w, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((w0, opt.init(w0)))
    return np.asarray(w).T if tasks_first else np.asarray(w)


@pytest.mark.parametrize("layout", ["features_x_tasks", "tasks_x_features", "tasks_x_features_neg"])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_proximal_gradient_matches_multitask_lasso(multitask, alpha, layout, x64):
    x, y = multitask
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning would void the reference
        ref = sklearn_linear.MultiTaskLasso(
            alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100_000).fit(x, y)
    theirs = ref.coef_.T  # (features, tasks)
    ours = _proximal_gradient(x, y, alpha, layout, steps=2000)
    assert ours.dtype == np.float64
    diff = float(np.max(np.abs(ours - theirs)))
    zero_rows = _zero_groups(theirs, 1)
    print(f"\nMultiTaskLasso alpha={alpha} {layout}: max|diff| = {diff:.3e}, zero rows "
          f"sklearn {np.flatnonzero(zero_rows).tolist()}, ours "
          f"{np.flatnonzero(_zero_groups(ours, 1)).tolist()}")
    assert 0 < zero_rows.sum() < P  # a real sparsity pattern to match
    np.testing.assert_array_equal(_zero_groups(ours, 1), zero_rows)
    np.testing.assert_array_equal(ours[zero_rows], 0.0)  # exact zeros, not small numbers
    assert diff <= 1e-6


# --- the transform's guarantees ---------------------------------------------------


def _kernel(rng: np.random.Generator, dtype: Any = np.float32) -> jax.Array:
    """A (5, 4) kernel: row 0 exactly 0, row 1 small (shrunk to 0), the rest kept."""
    w = rng.normal(size=(5, 4))
    w[0] = 0.0
    w[1] *= 0.01
    return jnp.asarray(w, dtype)


def test_zero_groups_stay_exactly_zero_over_steps(rng, maybe_jit):
    w = _kernel(rng)
    opt = optax.chain(optax.sgd(0.1), decaytx.prox_group_lasso(0.5, learning_rate=0.1, axis=1))
    state = opt.init(w)
    update = maybe_jit(opt.update)
    g = jnp.asarray(rng.normal(size=w.shape) * 0.01, jnp.float32)
    for _ in range(5):
        u, state = update(g.at[0].set(0.0), state, w)  # row 0 gets no gradient
        w = optax.apply_updates(w, u)
        assert np.isfinite(np.asarray(w)).all()
        assert (np.asarray(w[:2]) == 0.0).all()  # exact zeros: theta + (0 - theta)
        assert not np.signbit(np.asarray(w[:2])).any()
    assert (np.linalg.norm(np.asarray(w[2:]), axis=1) > 0).all()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32], ids=lambda d: jnp.dtype(d).name)
def test_update_keeps_dtype_and_matches_float64(rng, dtype):
    w = _kernel(rng, dtype)
    w = w.at[4].set(jnp.asarray([300.0, -200.0, 100.0, 250.0], dtype))  # a float16 square overflows
    g = jnp.asarray(rng.normal(size=w.shape), dtype)
    t = decaytx.prox_group_lasso(optax.linear_schedule(0.3, 0.6, 10), learning_rate=0.5, axis=1)
    u, _ = t.update(g, t.init(w), w)
    assert u.dtype == dtype
    new = np.asarray(optax.apply_updates(w, u), np.float64)
    z = np.asarray(w, np.float64) + np.asarray(g, np.float64)
    ref = np_group_shrink(z, 0.5 * 0.3, 1)
    eps = float(jnp.finfo(dtype).eps)
    # Roundings in the leaf's dtype: theta + u, the shrunk group, u = P - theta
    # and apply_updates; each is relative to |z| or |theta| of that element.
    err = np.abs(new - ref) / (eps * (np.abs(z) + np.abs(np.asarray(w, np.float64))))
    print(f"\n{jnp.dtype(dtype).name}: max error {np.nanmax(err):.2f} eps*(|z|+|theta|)")
    assert np.nanmax(err) <= 2.0
    np.testing.assert_array_equal(new == 0, ref == 0)
    assert np.isfinite(new).all()


def test_groups_shrunk_to_zero_are_exact_in_low_precision(rng):
    for dtype in (jnp.bfloat16, jnp.float16):
        w = _kernel(rng, dtype)
        t = decaytx.prox_group_lasso(0.5, learning_rate=1.0, axis=1)
        new = np.asarray(_step(t, w), np.float32)
        assert (new[:2] == 0.0).all() and (new[2:] != 0).any()


def test_jit_and_eager_agree(rng):
    """To a float32 ulp (XLA may fuse the group's sum and x - x r differently), same zeros."""
    params = {"w": _kernel(rng), "conv": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32)}
    params["conv"] = params["conv"].at[..., 1].multiply(0.01)  # one filter shrunk to 0
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 0.01, p.dtype), params)
    # Whole filters of the conv (the norm over h, w, in); rows of the kernel.
    t = decaytx.prox_group_lasso(
        {"w": 0.5, "conv": 0.5}, learning_rate=1.0, axis=-1,
        mask={"w": True, "conv": False})
    c = decaytx.prox_group_lasso(0.5, learning_rate=1.0, axis=(0, 1, 2),
                                 mask={"w": False, "conv": True})
    opt = optax.chain(t, c)
    state = opt.init(params)
    eager, _ = opt.update(grads, state, params)
    jitted, _ = jax.jit(opt.update)(grads, state, params)
    for k in params:
        e, j = (np.asarray(optax.apply_updates(params[k], v[k])) for v in (eager, jitted))
        np.testing.assert_allclose(e, j, rtol=2 * np.finfo(np.float32).eps, atol=0)
        np.testing.assert_array_equal(e == 0, j == 0)
    conv = np.asarray(optax.apply_updates(params["conv"], jitted["conv"]))
    assert (conv[..., 1] == 0).all() and (np.abs(conv[..., [0, 2, 3]]).sum(axis=(0, 1, 2)) > 0).all()


def test_mask_leaves_other_leaves_alone_even_of_another_rank(rng):
    params = {"w": _kernel(rng), "b": jnp.asarray(rng.normal(size=4), jnp.float32),
              "step": jnp.asarray(3, jnp.int32)}
    grads = {"w": jnp.zeros((5, 4)), "b": jnp.ones(4), "step": jnp.asarray(0, jnp.int32)}
    t = decaytx.prox_group_lasso(0.5, learning_rate=1.0, axis=1, mask=decaytx.masks.ndim_at_least(2))
    u, _ = t.update(grads, t.init(params), params)
    np.testing.assert_array_equal(u["b"], grads["b"])  # untouched
    assert u["step"] is grads["step"]  # integer leaves pass through
    np.testing.assert_allclose(optax.apply_updates(params["w"], u["w"]),
                               np_group_shrink(np.asarray(params["w"]), 0.5, 1), rtol=1e-6)
    # Without the mask the 1-D bias has no axis 1: refused at init, naming it.
    with pytest.raises(ValueError, match=r"axis=1 is out of range for the leaf at \['b'\] "
                                         r"\(shape \(4,\), ndim 1\).*mask="):
        decaytx.prox_group_lasso(0.5, learning_rate=1.0, axis=1).init(params)


def test_axis_checked_at_update_on_params_init_has_not_seen(rng):
    t = decaytx.prox_group_lasso(0.5, learning_rate=1.0, axis=(0, 1))
    w = {"layer": {"kernel": _kernel(rng)}}
    t.init(w)
    v = {"layer": {"kernel": jnp.ones(4)}}
    with pytest.raises(ValueError, match=r"\['layer'\]\['kernel'\] \(shape \(4,\), ndim 1\)"):
        t.update(v, optax.EmptyState(), v)


@pytest.mark.parametrize(
    ("axis", "error", "match"),
    [(1.5, TypeError, r"axis=1\.5 must be an int, a tuple of ints or None"),
     (True, TypeError, r"axis=True must be"),
     ("rows", TypeError, r"axis='rows' must be"),
     ((1, 1), ValueError, r"repeats an axis"),
     ((1, -1), ValueError, r"names the same axis twice for the leaf at <root>")],
    ids=["float", "bool", "str", "repeat", "repeat_after_normalising"])
def test_bad_axis_is_refused_clearly(axis, error, match):
    with pytest.raises(error, match=match):
        t = decaytx.prox_group_lasso(0.1, learning_rate=1.0, axis=axis)
        t.init(jnp.ones((2, 3)))


def test_learning_rate_is_required():
    with pytest.raises(TypeError, match=r"prox_group_lasso\(\) needs learning_rate="):
        decaytx.prox_group_lasso(0.1, axis=1)


def test_zero_coefficient_is_identity():
    t = decaytx.prox_group_lasso(0.0, learning_rate=0.1, axis=1)
    assert isinstance(t.init(jnp.ones((2, 2))), optax.EmptyState)
    g = jnp.full((2, 2), 3.0)
    assert t.update(g, t.init(jnp.ones((2, 2))), jnp.ones((2, 2)))[0] is g


def test_schedule_of_l1_follows_the_step_count(rng, maybe_jit):
    sched = optax.linear_schedule(0.1, 1.0, 4)
    t = decaytx.prox_group_lasso(sched, learning_rate=0.5, axis=0)
    w = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    state = t.init(w)
    assert isinstance(state, decaytx.DecayState) and state.count.dtype == jnp.int32
    update = maybe_jit(t.update)
    ref = np.asarray(w, np.float64)
    for step in range(5):
        u, state = update(jnp.zeros_like(w), state, w)
        w = optax.apply_updates(w, u)
        ref = np_group_shrink(ref, 0.5 * float(sched(step)), 0)
        np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(w) == 0, ref == 0)
    assert (np.asarray(w) == 0).any()  # the schedule zeroed some columns


def test_inject_hyperparams_takes_l1_and_learning_rate_as_numbers(rng):
    params = {"w": _kernel(rng), "b": jnp.ones(4)}
    grads = jax.tree.map(jnp.zeros_like, params)
    t = decaytx.inject_hyperparams(decaytx.prox_group_lasso)(
        0.5, learning_rate=0.1, axis=1, mask=decaytx.masks.ndim_at_least(2))
    state = t.init(params)
    assert set(state.hyperparams) == {"l1", "learning_rate"}
    u, state = jax.jit(t.update)(grads, state, params)
    np.testing.assert_allclose(optax.apply_updates(params, u)["w"],
                               np_group_shrink(np.asarray(params["w"]), 0.05, 1), rtol=1e-6)
    np.testing.assert_array_equal(u["b"], 0.0)  # the mask kept its meaning
    state.hyperparams["l1"] = jnp.asarray(20.0, state.hyperparams["l1"].dtype)
    u, _ = jax.jit(t.update)(grads, state, params)
    np.testing.assert_allclose(optax.apply_updates(params, u)["w"],
                               np_group_shrink(np.asarray(params["w"]), 2.0, 1), rtol=1e-6)


def test_audit_reports_the_group_lasso_row(rng):
    params = {"w": _kernel(rng), "b": jnp.ones(4)}
    opt = optax.chain(optax.sgd(0.1), decaytx.prox_group_lasso(
        0.5, learning_rate=0.1, axis=1, mask=decaytx.masks.ndim_at_least(2)))
    report = decaytx.audit(opt, params)
    rows = {(r.path, r.transform): r for r in report.rows}
    row = rows[("w", "prox_group_lasso")]
    assert row.side == "update" and row.lam0 == {"l1": pytest.approx(0.5)}
    assert row.m0 == pytest.approx(0.1) and row.direction == "toward"
    assert ("b", None) in rows


def test_no_nan_in_gradients_through_the_step_at_a_zero_group(rng):
    w = _kernel(rng)
    t = decaytx.prox_group_lasso(0.5, learning_rate=1.0, axis=1)

    def loss(p: jax.Array) -> jax.Array:
        return jnp.sum(_step(t, p) ** 2)

    g = jax.grad(loss)(w)
    assert np.isfinite(np.asarray(g)).all()
    np.testing.assert_array_equal(g[:2], 0.0)  # rows at 0 (and below the threshold)


# --- the penalty ----------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, 0, -1, (0, 1), None], ids=str)
def test_penalty_value(rng, axis, x64):
    params = {"w": np.asarray(_kernel(rng, np.float64)), "b": rng.normal(size=4)}
    params = jax.tree.map(jnp.asarray, params)
    mask = {"w": True, "b": False}
    value = decaytx.group_lasso_penalty(params, 0.3, axis=axis, mask=mask)
    w = np.asarray(params["w"])
    ref = 0.3 * np.sum(np.sqrt(np.sum(w**2, axis=(0, 1) if axis is None else axis)))
    assert value.dtype == jnp.float64
    np.testing.assert_allclose(value, ref, rtol=1e-14)


def test_penalty_in_half_precision_is_float32_and_does_not_overflow():
    w = jnp.asarray([[300.0, 400.0], [0.0, 0.0]], jnp.float16)  # 300**2 overflows float16
    value = decaytx.group_lasso_penalty({"w": w}, 2.0, axis=1)
    assert value.dtype == jnp.float32
    assert float(value) == 1000.0


def test_penalty_gradient_is_lambda_theta_over_norm(rng, x64):
    w = rng.normal(size=(6, 3, 2))
    w[0] = 0.0
    lam = 0.7
    grad = np.asarray(jax.grad(decaytx.group_lasso_penalty)(jnp.asarray(w), lam, axis=(1, 2)))
    norm = np.sqrt(np.sum(w[1:] ** 2, axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(grad[1:], lam * w[1:] / norm, rtol=1e-14)
    np.testing.assert_array_equal(grad[0], 0.0)  # a zero group: 0, not NaN


def test_penalty_and_prox_are_consistent(rng, x64):
    """z = prox(x) solves min 1/2||z - x||^2 + tau P(z)/lambda: x - z = tau grad P(z)/lambda
    on the groups it keeps, ||x_g|| <= tau on those it zeroes."""
    x = rng.normal(size=(8, 5))
    x[:3] *= 0.1
    m, lam = 0.5, 1.2
    t = decaytx.prox_group_lasso(lam, learning_rate=m, axis=1)
    z = np.asarray(_step(t, jnp.asarray(x)))
    kept = ~_zero_groups(z, 1)
    assert 0 < kept.sum() < len(z)
    grad = np.asarray(jax.grad(decaytx.group_lasso_penalty)(jnp.asarray(z), lam, axis=1))
    np.testing.assert_allclose((x - z)[kept], (m * grad)[kept], rtol=1e-12, atol=1e-14)
    assert (np.linalg.norm(x[~kept], axis=1) <= m * lam).all()


def test_penalty_refuses_a_bad_axis_naming_the_leaf():
    with pytest.raises(ValueError, match=r"group_lasso_penalty: axis=2 is out of range for the leaf at \['b'\]"):
        decaytx.group_lasso_penalty({"w": jnp.ones((2, 2, 2)), "b": jnp.ones(2)}, 0.1, axis=2)
    with pytest.raises(ValueError, match=r"l1"):
        decaytx.group_lasso_penalty({"w": jnp.ones((2, 2))}, -0.1, axis=1)


def test_complex_leaves_shrink_the_groups_modulus(rng):
    z = rng.normal(size=(4, 3)) + 1j * rng.normal(size=(4, 3))
    z[0] *= 0.1  # norm below the threshold: exactly 0
    w = jnp.asarray(z, jnp.complex64)
    t = decaytx.prox_group_lasso(0.8, learning_rate=1.0, axis=1)
    u, _ = t.update(jnp.zeros_like(w), t.init(w), w)
    assert u.dtype == jnp.complex64
    new = np.asarray(optax.apply_updates(w, u))
    np.testing.assert_allclose(new, np_group_shrink(np.asarray(w, np.complex128), 0.8, 1),
                               rtol=1e-6, atol=1e-6)
    assert (new[0] == 0).all()


def test_prox_l1_then_group_lasso_is_the_sparse_group_lasso_prox(rng, x64):
    """chain(prox_l1, prox_group_lasso) lands on argmin 1/2||z - x||^2 + t1||z||_1 + t2||z||_2
    (Simon et al. 2013: the sparse-group lasso prox is the composition), by Nelder-Mead."""
    t1, t2 = 0.3, 0.5
    opt = optax.chain(decaytx.prox_l1(t1, learning_rate=None),
                      decaytx.prox_group_lasso(t2, learning_rate=None, axis=0))
    worst = 0.0
    for scale in (0.2, 0.6, 1.5, 4.0):
        x = rng.normal(size=3) * scale
        ours = np.asarray(_step(opt, jnp.asarray(x)))

        def f(z, x=x):
            return 0.5 * np.sum((z - x) ** 2) + t1 * np.sum(np.abs(z)) + t2 * np.linalg.norm(z)

        brute = scipy_optimize.minimize(
            f, x, method="Nelder-Mead",
            options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20_000, "maxfev": 40_000}).x
        assert f(ours) <= f(brute) + 1e-13
        worst = max(worst, float(np.max(np.abs(ours - brute))))
    print(f"\nsparse-group lasso: max|ours - Nelder-Mead| = {worst:.2e}")
    assert worst <= 1e-6


# --- the cross-path properties every form keeps (as tests/test_paths.py states them) ---

PARAMS = {"w": jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)), jnp.float32),
          "b": jnp.asarray(np.random.default_rng(2).normal(size=3), jnp.float32)}


def _run(opt: optax.GradientTransformation, n: int = 3, params: Any = None, state: Any = None) -> Any:
    p = PARAMS if params is None else params
    s = opt.init(p) if state is None else state
    update = jax.jit(opt.update)
    for i in range(n):
        g = jax.tree.map(lambda x, i=i: jnp.cos(x * (i + 1)).astype(x.dtype), p)
        u, s = update(g, s, p)
        p = optax.apply_updates(p, u)
    return p


def _chain(l1: Any = 0.5) -> optax.GradientTransformation:
    return optax.chain(optax.sgd(0.1), decaytx.prox_group_lasso(l1, learning_rate=0.1, axis=-1))


def test_optax_inject_hyperparams_needs_axis_static_and_says_so():
    with pytest.raises(TypeError, match=r"axis arrived as an array.*decaytx.inject_hyperparams"):
        optax.inject_hyperparams(decaytx.prox_group_lasso)(0.5, learning_rate=0.1, axis=-1).init(PARAMS)
    injected = optax.inject_hyperparams(decaytx.prox_group_lasso, static_args=("axis",))(
        0.5, learning_rate=0.1, axis=-1)
    ours = decaytx.inject_hyperparams(decaytx.prox_group_lasso)(0.5, learning_rate=0.1, axis=-1)
    plain = _run(decaytx.prox_group_lasso(0.5, learning_rate=0.1, axis=-1))
    for t in (injected, ours):  # the injected numbers are f32 arrays: float32 rounding apart
        out = _run(t)
        for k in PARAMS:
            np.testing.assert_allclose(out[k], plain[k], rtol=1e-5, atol=1e-6)

