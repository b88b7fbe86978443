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
