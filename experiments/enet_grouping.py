"""The elastic net's grouping effect (Zou & Hastie 2005) on a synthetic regression
with blocks of strongly correlated features: decaytx's proximal path
(``prox_elastic_net``, full-batch ISTA) against ``sklearn.linear_model.enet_path``,
and how often a true block is selected whole, elastic net vs lasso.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

import decaytx

N, BLOCKS, WIDTH, TRUE_BLOCKS = 200, 6, 5, 2  # samples; feature blocks of WIDTH correlated features
RHO = 0.9  # correlation inside a block
L1_RATIO = 0.5  # elastic net; the lasso is L1_RATIO = 1
SUPPORT_EPS = 1e-6


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 31])
    z = rng.standard_normal((N, BLOCKS))
    x = math.sqrt(RHO) * np.repeat(z, WIDTH, axis=1) + math.sqrt(1 - RHO) * rng.standard_normal((N, BLOCKS * WIDTH))
    w = np.zeros(BLOCKS * WIDTH)
    w[: TRUE_BLOCKS * WIDTH] = 1.0
    y = x @ w + rng.standard_normal(N)
    return x - x.mean(axis=0), y - y.mean(), w


def proximal_path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray, l1_ratio: float, steps: int) -> np.ndarray:
    """ISTA for (1/2n)||y - Xw||² + α·r·||w||₁ + α(1-r)/2·||w||² (scikit-learn's scaling),
    one vmapped float32 run per α: chain(scale_by_learning_rate(1/L), prox_elastic_net(αr, α(1-r)))."""
    lr = float(1.0 / np.linalg.eigvalsh(x.T @ x / len(y)).max())
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

    def solve(alpha: jax.Array, xj: jax.Array, yj: jax.Array) -> jax.Array:
        opt = optax.chain(optax.scale_by_learning_rate(lr),
                          decaytx.prox_elastic_net(alpha * l1_ratio, alpha * (1 - l1_ratio), learning_rate=lr))
        w = jnp.zeros(xj.shape[1], jnp.float32)

        def step(carry: tuple, _: None) -> tuple:
            w, s = carry
            g = jax.grad(lambda w: 0.5 * jnp.mean(jnp.square(yj - xj @ w)))(w)
            u, s = opt.update(g, s, w)
            return (optax.apply_updates(w, u), s), None

        return jax.lax.scan(step, (w, opt.init(w)), None, length=steps)[0][0]

    w = jax.jit(jax.vmap(solve, in_axes=(0, None, None)))(jnp.asarray(alphas, jnp.float32), xj, yj)
    return np.asarray(w, np.float64).T  # (features, alphas), like enet_path


def whole_block_fraction(coefs: np.ndarray) -> float:
    """Among (α, true block) pairs where the block has any non-zero coefficient,
    the fraction where all WIDTH of its coefficients are non-zero."""
    nz = np.abs(coefs[: TRUE_BLOCKS * WIDTH]) > SUPPORT_EPS
    blocks = nz.reshape(TRUE_BLOCKS, WIDTH, -1)
    touched, whole = blocks.any(axis=1), blocks.all(axis=1)
    return float(whole.sum() / touched.sum()) if touched.any() else math.nan


def grouping(seed: int, n_alphas: int, steps: int) -> dict:
    from sklearn.linear_model import enet_path

    x, y, _ = make_data(seed)
    out: dict = {"n": N, "blocks": BLOCKS, "block_width": WIDTH, "true_blocks": TRUE_BLOCKS, "rho": RHO,
                 "iterations": steps}
    for name, r in (("elastic net", L1_RATIO), ("lasso", 1.0)):
        alpha_max = float(np.max(np.abs(x.T @ y)) / (N * r))
        alphas = alpha_max * np.logspace(-0.2, -2, n_alphas)
        _, sk, _ = enet_path(x, y, l1_ratio=r, alphas=alphas, tol=1e-12, max_iter=200_000)
        ours = proximal_path(x, y, alphas, r, steps)
        out[name] = {
            "l1_ratio": r, "alphas": alphas.tolist(),
            "max_abs_diff_vs_enet_path": float(np.max(np.abs(ours - sk))),
            "whole_block_fraction": whole_block_fraction(ours),
            "whole_block_fraction_sklearn": whole_block_fraction(sk),
        }
        out[name]["_paths"] = (alphas, ours, sk)
    return out
