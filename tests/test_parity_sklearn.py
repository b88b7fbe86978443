"""Recipes against scikit-learn's penalised linear models, float64.

Conventions converted here (and in docs/recipes.md):

* ``Lasso(alpha)`` minimises ``1/(2n)||y - Xw||^2 + alpha ||w||_1``:
  ``proximal_sgd(1/L, l1=alpha)`` on the loss ``1/(2n)||y - Xw||^2``.
* ``ElasticNet(alpha, l1_ratio)`` adds ``0.5 alpha (1 - l1_ratio) ||w||^2``:
  ``l1 = alpha * l1_ratio``, ``l2 = alpha * (1 - l1_ratio)``.
* ``Ridge(alpha)`` minimises ``||y - Xw||^2 + alpha ||w||^2`` (no 1/2, no 1/n):
  on the loss ``1/(2n)||y - Xw||^2`` that is ``weight_decay = alpha / n``.
* ``SGDRegressor(penalty="l2", alpha)`` takes one sample at a time on
  ``0.5 (y - x.w)^2`` with ``w <- (1 - eta alpha) w - eta (x.w - y) x``:
  ``sgd_l2(eta, weight_decay=alpha)`` per sample, ``eta_t = eta0 / (t+1)^power_t``
  for ``learning_rate="invscaling"``.
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

sklearn_linear = pytest.importorskip("sklearn.linear_model")

N, P = 200, 20


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """A sparse regression: 5 of 20 true coefficients non-zero."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, P))
    w = np.zeros(P)
    w[:5] = [2.0, -1.5, 1.0, 0.5, -0.3]
    y = x @ w + 0.1 * rng.normal(size=N)
    return x, y


def _full_batch(opt: optax.GradientTransformation, x: np.ndarray, y: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` full-batch steps on ``1/(2n)||y - Xw||^2`` from w = 0 (lax.scan)."""
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def loss(w: jax.Array) -> jax.Array:
        return 0.5 * jnp.mean((xj @ w - yj) ** 2)

    def step(carry: Any, _: Any) -> tuple[Any, None]:
        w, s = carry
        u, s = opt.update(jax.grad(loss)(w), s, w)
        return (optax.apply_updates(w, u), s), None

    w0 = jnp.zeros(x.shape[1])
    (w, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((w0, opt.init(w0)))
    return np.asarray(w)


def _lipschitz(x: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(x.T @ x / len(x))[-1])


def _report(name: str, ours: np.ndarray, theirs: np.ndarray) -> float:
    diff = float(np.max(np.abs(ours - theirs)))
    print(f"\nparity sklearn {name}: max|diff| = {diff:.3e}")
    return diff


@pytest.mark.parametrize(
    ("alpha", "l1_ratio"), [(0.1, 1.0), (0.2, 0.5)], ids=["Lasso", "ElasticNet"]
)
def test_proximal_sgd_matches_lasso_and_elastic_net(
    data: tuple[np.ndarray, np.ndarray], alpha: float, l1_ratio: float, x64: None
) -> None:
    x, y = data
    if l1_ratio == 1.0:
        ref = sklearn_linear.Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100_000)
        opt = decaytx.proximal_sgd(1.0 / _lipschitz(x), alpha)
    else:
        ref = sklearn_linear.ElasticNet(
            alpha=alpha, l1_ratio=l1_ratio, fit_intercept=False, tol=1e-14, max_iter=100_000
        )
        opt = decaytx.proximal_sgd(
            1.0 / _lipschitz(x), alpha * l1_ratio, alpha * (1 - l1_ratio)
        )
    theirs = ref.fit(x, y).coef_
    ours = _full_batch(opt, x, y, steps=1500)
    diff = _report(type(ref).__name__, ours, theirs)
    zeros = theirs == 0.0
    print(f"exact zeros: sklearn {int(zeros.sum())}/{P}, decaytx {int((ours == 0.0).sum())}/{P}")
    assert 0 < zeros.sum() < P  # a real sparsity pattern to match
    np.testing.assert_array_equal(ours == 0.0, zeros)
    assert diff <= 1e-6


@pytest.mark.parametrize("momentum", [None, 0.5], ids=["gd", "heavy_ball"])
def test_sgd_l2_full_batch_matches_ridge(
    data: tuple[np.ndarray, np.ndarray], momentum: float | None, x64: None
) -> None:
    x, y = data
    alpha = 30.0
    theirs = sklearn_linear.Ridge(alpha=alpha, fit_intercept=False, solver="cholesky").fit(x, y).coef_
    closed = np.linalg.solve(x.T @ x + alpha * np.eye(P), x.T @ y)
    np.testing.assert_allclose(theirs, closed, atol=1e-12)
    # Ridge's alpha has no 1/2 and no 1/n; on the mean loss it is alpha / n.
    wd = alpha / N
    lr = 1.0 / (_lipschitz(x) + wd)
    ours = _full_batch(decaytx.sgd_l2(lr, wd, momentum=momentum), x, y, steps=400)
    assert _report(f"Ridge ({'GD' if momentum is None else 'momentum'})", ours, theirs) <= 1e-9


@pytest.mark.parametrize("learning_rate", ["constant", "invscaling"])
def test_sgd_l2_matches_sgd_regressor_l2(
    data: tuple[np.ndarray, np.ndarray], learning_rate: str, x64: None
) -> None:
    x, y = data
    alpha, eta0, power_t, epochs = 1e-2, 0.01, 0.25, 3
    ref = sklearn_linear.SGDRegressor(
        penalty="l2",
        alpha=alpha,
        learning_rate=learning_rate,
        eta0=eta0,
        power_t=power_t,
        max_iter=epochs,
        tol=None,
        shuffle=False,
        fit_intercept=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning for a fixed epoch count
        theirs = ref.fit(x, y).coef_
    if learning_rate == "constant":
        eta: Any = eta0
    else:
        # sklearn's t starts at 1: eta_t = eta0 / (count + 1) ** power_t.
        def eta(count: jax.Array) -> jax.Array:
            return eta0 / (jnp.asarray(count, jnp.float64) + 1.0) ** power_t

    opt = decaytx.sgd_l2(eta, alpha)
    xs = jnp.asarray(np.tile(x, (epochs, 1)))
    ys = jnp.asarray(np.tile(y, epochs))

    def step(carry: Any, sample: Any) -> tuple[Any, None]:
        w, s = carry
        xi, yi = sample
        u, s = opt.update((xi @ w - yi) * xi, s, w)
        return (optax.apply_updates(w, u), s), None

    w0 = jnp.zeros(P)
    (w, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, (xs, ys)))((w0, opt.init(w0)))
    assert _report(f"SGDRegressor(l2, {learning_rate})", np.asarray(w), theirs) <= 1e-9


def test_ridge_alpha_without_conversion_misses(
    data: tuple[np.ndarray, np.ndarray], x64: None
) -> None:
    """The factor conversions matter: Ridge's alpha used as weight_decay misses."""
    x, y = data
    alpha = 30.0
    theirs = sklearn_linear.Ridge(alpha=alpha, fit_intercept=False).fit(x, y).coef_
    lr = 1.0 / (_lipschitz(x) + alpha)
    ours = _full_batch(decaytx.sgd_l2(lr, alpha), x, y, steps=400)
    assert np.max(np.abs(ours - theirs)) > 1e-2
