"""matches-sklearn-lasso: proximal gradient with prox_l1 vs scikit-learn's lasso_path."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import decaytx
from experiments.common import new_figure, save_figure
from experiments.report import Claim, Context

ID = "matches-sklearn-lasso"
N, D, K = 200, 30, 5  # samples, features, true non-zeros
NOISE = 0.5
TOL_DIFF = 1e-3
SUPPORT_EPS = 1e-6  # |w| above this counts as non-zero (float32 iterates)


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 7])
    x = rng.standard_normal((N, D))
    w = np.zeros(D)
    idx = rng.choice(D, K, replace=False)
    w[idx] = rng.choice([-1, 1], K) * rng.uniform(1.0, 3.0, K)
    y = x @ w + NOISE * rng.standard_normal(N)
    x = x - x.mean(axis=0)  # lasso_path fits no intercept: centre instead
    y = y - y.mean()
    return x, y, w


def proximal_path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray, steps: int) -> np.ndarray:
    """One full-batch proximal-gradient (ISTA) run per alpha, vmapped; float32.

    Loss (1/2n)||y - Xw||^2, the same scaling as scikit-learn's Lasso; step
    1/L with L the largest eigenvalue of X'X/n. The optimizer is
    ``chain(scale_by_learning_rate(lr), prox_l1(alpha, learning_rate=lr))``
    (decaytx's proximal SGD, here with the full batch as the batch).
    """
    lr = float(1.0 / np.linalg.eigvalsh(x.T @ x / len(y)).max())
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

    def make_opt(alpha: jax.Array) -> optax.GradientTransformation:
        return optax.chain(optax.scale_by_learning_rate(lr), decaytx.prox_l1(alpha, learning_rate=lr))

    def loss(w: jax.Array, xj: jax.Array, yj: jax.Array) -> jax.Array:
        r = yj - xj @ w
        return 0.5 * jnp.mean(r * r)

    chunk = 500
    n_chunks = math.ceil(steps / chunk)

    def advance(alpha: jax.Array, w: jax.Array, state: optax.OptState, xj: jax.Array, yj: jax.Array):
        opt = make_opt(alpha)

        def step(carry, _):
            w, s = carry
            u, s = opt.update(jax.grad(loss)(w, xj, yj), s, w)
            return (optax.apply_updates(w, u), s), None

        (w, state), _ = jax.lax.scan(step, (w, state), None, length=chunk)
        return w, state

    a = jnp.asarray(alphas, jnp.float32)
    w = jnp.zeros((len(alphas), x.shape[1]), jnp.float32)
    state = jax.vmap(lambda al, ww: make_opt(al).init(ww))(a, w)
    run = jax.jit(jax.vmap(advance, in_axes=(0, 0, 0, None, None)))
    for _ in tqdm(range(n_chunks), desc=f"{ID}: proximal path", unit="chunk", leave=False):
        w, state = run(a, w, state, xj, yj)
    return np.asarray(w, np.float64).T  # (D, n_alphas), like lasso_path


def verdict(m: dict) -> bool:
    """Max |coef difference| over the path <= 1e-3 and supports agree on >= 99% of (alpha, feature)."""
    return m["max_abs_diff"] <= TOL_DIFF and m["support_agreement"] >= 0.99


def run(ctx: Context) -> Claim:
    from sklearn.linear_model import lasso_path

    mode = ctx.mode
    x, y, w_true = make_data(ctx.seed)
    alpha_max = float(np.max(np.abs(x.T @ y)) / N)
    alphas = alpha_max * np.logspace(0, -3, mode.lasso_alphas)
    _, sk, _ = lasso_path(x, y, alphas=alphas, tol=1e-12, max_iter=200_000)
    ours = proximal_path(x, y, alphas, mode.lasso_steps)
    diff = np.abs(ours - sk)
    supp_ours, supp_sk = np.abs(ours) > SUPPORT_EPS, np.abs(sk) > SUPPORT_EPS
    true_supp = w_true != 0
    rec_ours = [bool(np.array_equal(supp_ours[:, i], true_supp)) for i in range(len(alphas))]
    rec_sk = [bool(np.array_equal(supp_sk[:, i], true_supp)) for i in range(len(alphas))]
    metrics = {
        "n": N, "d": D, "true_nonzeros": K, "noise": NOISE,
        "alphas": alphas, "iterations_per_alpha": mode.lasso_steps,
        "optimizer": "chain(scale_by_learning_rate(1/L), prox_l1(alpha, learning_rate=1/L)), full batch, float32",
        "max_abs_diff": float(diff.max()),
        "max_abs_diff_by_alpha": diff.max(axis=0),
        "max_abs_coef": float(np.abs(sk).max()),
        "support_agreement": float(np.mean(supp_ours == supp_sk)),
        "exact_zero_agreement": float(np.mean((ours == 0) == (sk == 0))),
        "true_support_recovered_ours": rec_ours,
        "true_support_recovered_sklearn": rec_sk,
        "alphas_recovering_true_support": int(sum(rec_ours)),
    }

    fig, (ax1, ax2) = new_figure(2, width=5.5)
    for j in range(D):
        color = f"C{list(np.flatnonzero(true_supp)).index(j)}" if true_supp[j] else "0.6"
        ax1.plot(alphas, sk[j], color=color, lw=1.2, label="scikit-learn lasso_path" if j == 0 else None)
        ax1.plot(alphas, ours[j], "o", ms=3, mfc="none", color=color, label="decaytx prox_l1 (float32)" if j == 0 else None)
    ax1.set_xscale("log")
    ax1.set_xlabel("L1 strength α")
    ax1.set_ylabel("coefficient")
    ax1.set_title(f"lasso paths: {K} true non-zeros (colour), {D - K} nulls (grey)")
    ax1.legend(fontsize=8)
    ax2.plot(alphas, np.maximum(diff.max(axis=0), 1e-12), "o-", color="C3", label="max |w_decaytx − w_sklearn|")
    ax2.axhline(TOL_DIFF, color="k", ls=":", label=f"tolerance {TOL_DIFF:g}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("L1 strength α")
    ax2.set_ylabel("max abs coefficient difference")
    ax2.set_title(f"support agreement {metrics['support_agreement']:.1%}")
    ax2.legend(fontsize=8)
    save_figure(fig, ctx.out_dir / f"{ID}.png")

    return Claim(
        id=ID,
        statement="Proximal SGD with an L1 prox (decaytx.prox_l1) solves the lasso: its coefficient path matches "
        "scikit-learn's lasso_path, with the same supports.",
        criterion=f"Synthetic sparse regression (n={N}, d={D}, {K} true non-zeros), {mode.lasso_alphas} values of α "
        f"from α_max down 3 decades, {mode.lasso_steps} full-batch proximal steps each in float32: holds if the "
        f"largest |coefficient difference| over the path is <= {TOL_DIFF:g} and the supports (|w| > "
        f"{SUPPORT_EPS:g}) agree on >= 99% of (α, feature) pairs.",
        holds=verdict(metrics),
        checks={f"max |coef difference| <= {TOL_DIFF:g}": bool(metrics["max_abs_diff"] <= TOL_DIFF),
                "supports agree on >= 99%": bool(metrics["support_agreement"] >= 0.99)},
        metrics=metrics,
        figure=f"{ID}.png",
        key_number=f"max diff {metrics['max_abs_diff']:.1e}, support agreement {metrics['support_agreement']:.1%}, "
        f"true support recovered at {sum(rec_ours)}/{len(alphas)} α (sklearn {sum(rec_sk)})",
    )
