"""Recipes: structure, errors, and parity with the rules other frameworks use.

The references are NumPy float64 loops of each framework's documented rule
(TF-Addons and Composer are not installable here; their update rules were
read from their source and are written out below), plus ``optax.adamw``
itself. PyTorch, scikit-learn and Keras 3 parity (real libraries) live in
``test_parity_torch.py``, ``test_parity_sklearn.py`` and ``test_parity_keras.py``. Every parity test prints its max abs difference
(run with ``-s`` to see them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx

STEPS = 60
LR = 0.05
WARMUP = 10
MASK = {"w": True, "b": False}


# --------------------------------------------------------------------------
# The problem: multi-output least squares, params {"w": (5, 3), "b": (3,)}.
# --------------------------------------------------------------------------


def _problem() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    params = {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=(3,))}
    x = rng.normal(size=(40, 5))
    y = x @ rng.normal(size=(5, 3)) + 0.3 * rng.normal(size=(40, 3)) + 1.0
    return params, x, y


PARAMS, X, Y = _problem()


def _np_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Gradient of ``0.5/n ||X w + b - Y||^2``, by hand."""
    r = (X @ p["w"] + p["b"] - Y) / len(X)
    return {"w": X.T @ r, "b": r.sum(0)}


def _run(opt: optax.GradientTransformation, steps: int = STEPS, dtype: Any = jnp.float64) -> dict:
    """``steps`` jitted steps of ``opt`` on the problem, gradients by ``jax.grad``."""
    xj, yj = jnp.asarray(X, dtype), jnp.asarray(Y, dtype)

    def loss(p: dict) -> jax.Array:
        return 0.5 * jnp.sum((xj @ p["w"] + p["b"] - yj) ** 2) / len(X)

    @jax.jit
    def step(p: dict, s: Any) -> tuple[dict, Any]:
        u, s = opt.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    p = {k: jnp.asarray(v, dtype) for k, v in PARAMS.items()}
    s = opt.init(p)
    for _ in range(steps):
        p, s = step(p, s)
    return {k: np.asarray(v, np.float64) for k, v in p.items()}


def _warmup_cosine(count: Any) -> Any:
    """Warm-up to LR in 10 steps, cosine to LR/10 at step 60; float64 on both sides."""
    xp = np if isinstance(count, (int, np.integer)) else jnp
    c = xp.asarray(count, dtype=xp.float64)
    t = xp.clip((c - WARMUP) / (STEPS - WARMUP), 0.0, 1.0)
    cosine = LR / 10 + (LR - LR / 10) * 0.5 * (1 + xp.cos(np.pi * t))
    return xp.where(c < WARMUP, LR * c / WARMUP, cosine)


class _NpAdam:
    """Adam's direction m_hat / (sqrt(v_hat) + eps), eps after bias correction."""

    def __init__(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.b1, self.b2, self.eps, self.t = b1, b2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in PARAMS.items()}
        self.v = {k: np.zeros_like(v) for k, v in PARAMS.items()}

    def __call__(self, g: dict) -> dict:
        self.t += 1
        out = {}
        for k in g:
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g[k]
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g[k] ** 2
            m_hat = self.m[k] / (1 - self.b1**self.t)
            v_hat = self.v[k] / (1 - self.b2**self.t)
            out[k] = m_hat / (np.sqrt(v_hat) + self.eps)
        return out


def _check(name: str, ours: dict, theirs: dict, tol: float) -> float:
    diff = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours)
    moved = max(float(np.max(np.abs(ours[k] - PARAMS[k]))) for k in ours)
    print(f"\nparity {name}: max|diff| = {diff:.3e}")
    assert moved > 1e-2, "the run did not train"
    assert diff <= tol, f"{name}: max abs diff {diff:.3e} > {tol:g}"
    return diff


# --------------------------------------------------------------------------
# Structure and errors.
# --------------------------------------------------------------------------


RECIPES: dict[str, Callable[[], optax.GradientTransformation]] = {
    "sgd_l2": lambda: decaytx.sgd_l2(0.1, 1e-3),
    "sgd_l2-momentum": lambda: decaytx.sgd_l2(0.1, 1e-3, momentum=0.9, nesterov=True),
    "sgdw": lambda: decaytx.sgdw(0.1, 1e-3, momentum=0.9),
    "adam_l2": lambda: decaytx.adam_l2(0.1, 1e-3),
    "adamw": lambda: decaytx.adamw(0.1, 1e-3),
    "adamw-schedule": lambda: decaytx.adamw(
        optax.cosine_decay_schedule(0.1, 100), 1e-3, decay_scaling="schedule"
    ),
    "proximal_sgd": lambda: decaytx.proximal_sgd(0.1, 1e-3, 1e-3),
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_is_a_plain_chain(name: str) -> None:
    """The state is the tuple of the parts' states: no hidden state of its own."""
    opt = RECIPES[name]()
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    state = opt.init(params)
    assert isinstance(state, tuple) and not hasattr(state, "_fields")
    assert 2 <= len(state) <= 3
    updates, new_state = jax.jit(opt.update)(params, state, params)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    chex.assert_trees_all_equal_dtypes(updates, params)


def test_adamw_parts_are_the_documented_ones() -> None:
    state = decaytx.adamw(0.1, 1e-3).init(jnp.ones(3))
    assert isinstance(state[0], optax.ScaleByAdamState)
    assert isinstance(state[2], optax.EmptyState)  # constant decay: no state


@pytest.mark.parametrize("factory", [decaytx.adamw, decaytx.sgdw])
@pytest.mark.parametrize("bad", ["LR", "cosine", "", None, 1.0])
def test_unknown_decay_scaling_lists_valid_values(factory: Any, bad: Any) -> None:
    with pytest.raises(ValueError) as e:
        factory(0.1, 1e-3, decay_scaling=bad)
    msg = str(e.value)
    assert f"decay_scaling={bad!r}" in msg
    for valid in ("'lr'", "'schedule'", "'none'", "'corrected'"):
        assert valid in msg


def test_nesterov_needs_momentum() -> None:
    with pytest.raises(ValueError, match="nesterov=True needs a momentum"):
        decaytx.sgd_l2(0.1, 1e-3, nesterov=True)
    with pytest.raises(ValueError, match="momentum=1.5"):
        decaytx.sgdw(0.1, 1e-3, momentum=1.5)


def test_bad_coefficients_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="weight_decay=-0.1"):
        decaytx.adamw(0.1, -0.1)
    with pytest.raises(ValueError, match="l1=-1.0"):
        decaytx.proximal_sgd(0.1, -1.0)
    with pytest.raises(TypeError, match="cautious"):
        decaytx.adamw(0.1, 1e-3, cautious="yes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# optax.adamw (float32).
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mask_kind", ["tree", "callable"])
def test_adamw_lr_matches_optax_adamw_float32(mask_kind: str) -> None:
    schedule = optax.warmup_cosine_decay_schedule(0.0, LR, 10, STEPS, LR / 10)
    mask: Any = MASK if mask_kind == "tree" else (lambda p: {"w": True, "b": False})
    ref = optax.adamw(schedule, b1=0.9, b2=0.99, eps=1e-7, weight_decay=0.3, mask=mask)
    ours = decaytx.adamw(schedule, 0.3, b1=0.9, b2=0.99, eps=1e-7, mask=mask)
    theirs = _run(ref, dtype=jnp.float32)
    _check(f"optax.adamw float32 ({mask_kind} mask)", _run(ours, dtype=jnp.float32), theirs, 1e-5)


def test_optax_add_decayed_weights_placement(x64: None) -> None:
    """optax.add_decayed_weights first in a chain is coupled L2 (adam_l2)."""
    schedule = _warmup_cosine
    theirs = _run(optax.chain(optax.add_decayed_weights(0.3, mask=MASK), optax.adam(schedule)))
    _check("optax add_decayed_weights before adam vs adam_l2",
           _run(decaytx.adam_l2(schedule, 0.3, mask=MASK)), theirs, 1e-12)


# --------------------------------------------------------------------------
# decay_scaling against the frameworks' rules (NumPy float64 loops).
# --------------------------------------------------------------------------


def _np_adamw(multiplier: Callable[[int, float], float], wd: Callable[[int], float],
              cautious: bool = False) -> dict:
    """theta <- theta - eta_t adam - m_t lambda_t theta, on the masked leaves."""
    p = {k: v.copy() for k, v in PARAMS.items()}
    adam = _NpAdam()
    for t in range(STEPS):
        eta = float(_warmup_cosine(t))
        d = adam(_np_grad(p))
        for k in p:
            step = -eta * d[k]
            decay = multiplier(t, eta) * wd(t) * p[k] if MASK[k] else 0.0
            if cautious and MASK[k]:
                decay = np.where(step * p[k] <= 0, decay, 0.0)
            p[k] = p[k] + step - decay
    return p


def test_adamw_schedule_matches_paper_and_composer_rule(x64: None) -> None:
    # Composer DecoupledAdamW: param.mul_(1 - (lr / initial_lr) * wd), then
    # the Adam step; initial_lr is the peak of a warm-up schedule.
    theirs = _np_adamw(lambda t, eta: eta / LR, lambda t: 0.01)
    ours = _run(decaytx.adamw(_warmup_cosine, 0.01, mask=MASK, decay_scaling="schedule"))
    _check("adamw schedule vs paper/Composer DecoupledAdamW", ours, theirs, 1e-12)


@pytest.mark.parametrize("wd_kind", ["constant", "scheduled"])
def test_adamw_none_matches_tf_addons_rule(wd_kind: str, x64: None) -> None:
    # TF-Addons DecoupledWeightDecayExtension: var -= wd * var before the
    # base step; its docs ask users to schedule wd themselves (wd = l * s(t)).
    if wd_kind == "constant":
        wd: Any = 0.01
        theirs = _np_adamw(lambda t, eta: 1.0, lambda t: 0.01)
    else:
        def wd(count: Any) -> Any:
            return 0.01 * _warmup_cosine(count) / LR

        theirs = _np_adamw(lambda t, eta: 1.0, lambda t: 0.01 * float(_warmup_cosine(t)) / LR)
    ours = _run(decaytx.adamw(_warmup_cosine, wd, mask=MASK, decay_scaling="none"))
    _check(f"adamw none vs TF-Addons AdamW rule ({wd_kind} wd)", ours, theirs, 1e-12)


def test_adamw_corrected_matches_adamc_rule(x64: None) -> None:
    theirs = _np_adamw(lambda t, eta: eta**2 / LR, lambda t: 0.5)
    ours = _run(decaytx.adamw(_warmup_cosine, 0.5, mask=MASK, decay_scaling="corrected"))
    _check("adamw corrected vs AdamC rule", ours, theirs, 1e-12)


def test_adamw_cautious_matches_rule(x64: None) -> None:
    theirs = _np_adamw(lambda t, eta: eta, lambda t: 2.0, cautious=True)
    ours = _run(decaytx.adamw(_warmup_cosine, 2.0, mask=MASK, cautious=True))
    plain = _run(decaytx.adamw(_warmup_cosine, 2.0, mask=MASK))
    _check("adamw cautious vs Chen et al. rule", ours, theirs, 1e-12)
    assert np.max(np.abs(plain["w"] - ours["w"])) > 1e-4  # cautious changed something


def test_decay_scalings_differ(x64: None) -> None:
    finals = [
        _run(decaytx.adamw(_warmup_cosine, 0.5, decay_scaling=s))["w"]
        for s in ("lr", "schedule", "none", "corrected")
    ]
    for i in range(4):
        for j in range(i):
            assert np.max(np.abs(finals[i] - finals[j])) > 1e-4


# --------------------------------------------------------------------------
# SGDW: TF-Addons SGDW, Composer DecoupledSGDW, and sgdw == sgd_l2 without momentum.
# --------------------------------------------------------------------------


def _np_keras_sgd(lr: Callable[[int], float], decay: Callable[[int, float], float],
                  momentum: float, nesterov: bool = False) -> dict:
    """Keras SGD (v <- mu v - lr g; w <- w + v) after ``w -= decay(t, lr) * w``.

    TF-Addons ``SGDW``: decay = wd (Keras 3 itself is tested for real in test_parity_keras.py).
    The gradient is taken before the decay, as both do.
    """
    p = {k: v.copy() for k, v in PARAMS.items()}
    vel = {k: np.zeros_like(v) for k, v in PARAMS.items()}
    for t in range(STEPS):
        eta = lr(t)
        g = _np_grad(p)
        for k in p:
            if MASK[k]:
                p[k] = p[k] - p[k] * decay(t, eta)
            vel[k] = momentum * vel[k] - eta * g[k]
            p[k] = p[k] + (momentum * vel[k] - eta * g[k] if nesterov else vel[k])
    return p


def test_sgdw_none_matches_tf_addons_sgdw(x64: None) -> None:
    # Constant lr: Keras' velocity (with lr inside) equals PyTorch's buffer times lr.
    theirs = _np_keras_sgd(lambda t: LR, lambda t, eta: 0.01, momentum=0.9)
    ours = _run(decaytx.sgdw(LR, 0.01, momentum=0.9, mask=MASK, decay_scaling="none"))
    _check("sgdw none vs TF-Addons SGDW rule", ours, theirs, 1e-12)


def test_sgdw_schedule_matches_composer_decoupled_sgdw(x64: None) -> None:
    # Composer DecoupledSGDW: PyTorch momentum buffer (b <- mu b + g, first b = g),
    # then param.mul_(1 - (lr / initial_lr) * wd), then param -= lr * b.
    p = {k: val.copy() for k, val in PARAMS.items()}
    buf: dict[str, np.ndarray] = {}
    for t in range(STEPS):
        eta = float(_warmup_cosine(t))
        g = _np_grad(p)
        for k in p:
            buf[k] = g[k] if k not in buf else 0.9 * buf[k] + g[k]
            if MASK[k]:
                p[k] = p[k] * (1 - (eta / LR) * 0.01)
            p[k] = p[k] - eta * buf[k]
    ours = _run(decaytx.sgdw(_warmup_cosine, 0.01, momentum=0.9, mask=MASK,
                             decay_scaling="schedule"))
    _check("sgdw schedule vs Composer DecoupledSGDW rule", ours, p, 1e-12)


def test_sgdw_equals_sgd_l2_without_momentum_only(x64: None) -> None:
    l2 = _run(decaytx.sgd_l2(_warmup_cosine, 0.5, mask=MASK))
    w = _run(decaytx.sgdw(_warmup_cosine, 0.5, mask=MASK))
    _check("sgdw(lr) vs sgd_l2 (no momentum)", w, l2, 1e-12)
    l2m = _run(decaytx.sgd_l2(_warmup_cosine, 0.5, momentum=0.9, mask=MASK))
    wm = _run(decaytx.sgdw(_warmup_cosine, 0.5, momentum=0.9, mask=MASK))
    assert np.max(np.abs(l2m["w"] - wm["w"])) > 1e-4


# --------------------------------------------------------------------------
# Recipes under inject_hyperparams.
# --------------------------------------------------------------------------


def test_recipe_under_decaytx_inject_hyperparams(x64: None) -> None:
    opt = decaytx.inject_hyperparams(decaytx.adamw)(
        learning_rate=LR, weight_decay=0.0, mask=decaytx.masks.ndim_at_least(2),
        decay_scaling="none",
    )
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    state = opt.init(params)
    state.hyperparams["weight_decay"] = jnp.asarray(0.25)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(opt.update)(zeros, state, params)
    np.testing.assert_allclose(np.asarray(updates["w"]), -0.25 * PARAMS["w"], rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(updates["b"]), 0.0)


def test_schedule_scalings_with_a_float_learning_rate() -> None:
    """A constant rate: "schedule" gives m = 1, "corrected" gives m = eta."""
    params = jnp.array([1.0, -2.0])
    for scaling, expected in [("schedule", 0.01), ("corrected", 0.1 * 0.01)]:
        opt = decaytx.adamw(0.1, 0.01, decay_scaling=scaling)
        updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
        np.testing.assert_allclose(np.asarray(updates), -expected * np.asarray(params), rtol=1e-6)


@pytest.mark.parametrize("scaling", ["schedule", "corrected"])
def test_schedule_scalings_refuse_an_injected_learning_rate(scaling: str, x64: None) -> None:
    """inject_hyperparams evaluates the schedule first: m_t would silently be wrong."""
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    trapped = optax.inject_hyperparams(decaytx.adamw)(
        learning_rate=_warmup_cosine, weight_decay=0.01, decay_scaling=scaling
    )
    with pytest.raises(ValueError, match="static_args"):
        trapped.init(params)
    plain = decaytx.adamw(_warmup_cosine, 0.01, decay_scaling=scaling, mask=MASK)
    for kept in (
        # decaytx's wrapper keeps the schedule static by itself for these scalings
        decaytx.inject_hyperparams(decaytx.adamw)(
            learning_rate=_warmup_cosine, weight_decay=0.01, decay_scaling=scaling, mask=MASK
        ),
        decaytx.inject_hyperparams(decaytx.adamw, static_args=("learning_rate",))(
            learning_rate=_warmup_cosine, weight_decay=0.01, decay_scaling=scaling, mask=MASK
        ),
    ):
        _check(f"inject_hyperparams(adamw, {scaling}) vs adamw", _run(kept), _run(plain), 1e-12)


# --------------------------------------------------------------------------
# optax's alias_test.py::test_explicit_dtype, with the recipes substituted.
# --------------------------------------------------------------------------

_DTYPES = ("bfloat16", "float32", "complex64", None)
_EXPLICIT = {
    "sgd_l2": (lambda dt: decaytx.sgd_l2(0.1, 0.1, momentum=0.9, accumulator_dtype=dt), "trace"),
    "sgdw": (lambda dt: decaytx.sgdw(0.1, 0.1, momentum=0.9, accumulator_dtype=dt), "trace"),
    "sgd_l2-dampening": (
        lambda dt: decaytx.sgd_l2(0.1, 0.1, momentum=0.9, dampening=0.5, accumulator_dtype=dt),
        "trace"),
    "adam_l2": (lambda dt: decaytx.adam_l2(0.1, 0.1, mu_dtype=dt), "mu"),
    "adam_l2-amsgrad": (lambda dt: decaytx.adam_l2(0.1, 0.1, mu_dtype=dt, amsgrad=True), "mu"),
    "adamw": (lambda dt: decaytx.adamw(0.1, 0.1, mu_dtype=dt), "mu"),
    "adamw-nesterov": (lambda dt: decaytx.adamw(0.1, 0.1, mu_dtype=dt, nesterov=True), "mu"),
}


@pytest.mark.parametrize("state_dtype", _DTYPES)
@pytest.mark.parametrize("params_dtype", _DTYPES)
@pytest.mark.parametrize("opt_name", list(_EXPLICIT))
# complex params with a real state dtype (and back): optax's own tree_cast casts complex to
# real inside scale_by_adam/trace, which JAX deprecates; that is optax's behaviour, not ours.
@pytest.mark.filterwarnings("ignore:Casting from complex to real:DeprecationWarning")
def test_explicit_dtype(params_dtype: Any, state_dtype: Any, opt_name: str) -> None:
    """optax 0.2.8 ``alias_test.py::test_explicit_dtype``, decaytx recipes in place of optax's."""
    factory, attribute_name = _EXPLICIT[opt_name]
    opt = factory(state_dtype)
    params_dtype = jax.dtypes.canonicalize_dtype(params_dtype)
    params = jnp.array([0.0, 0.0], dtype=params_dtype)
    state = opt.init(params)
    expected = params_dtype if state_dtype is None else jax.dtypes.canonicalize_dtype(state_dtype)
    assert optax.tree.get(state, attribute_name).dtype == expected
    # And a jitted step keeps every state dtype (so lax.scan works; not in optax's test).
    _, new_state = jax.jit(opt.update)(jnp.ones_like(params), state, params)
    chex.assert_trees_all_equal_dtypes(new_state, state)


# --------------------------------------------------------------------------
# The compiled program: same as optax.adamw for a constant rate and with a
# schedule (evaluated once per step).
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"nesterov": True, "eps_root": 1e-8, "mu_dtype": jnp.bfloat16}],
                         ids=["defaults", "nesterov-eps_root-mu_dtype"])
def test_adamw_constant_lr_compiles_like_optax_adamw(kwargs: dict, hlo: Any) -> None:
    params = {"w": jnp.ones((64, 32)), "b": jnp.ones(32)}
    ours = hlo.fusions(hlo.compiled_step(decaytx.adamw(1e-3, 0.1, **kwargs), params))
    theirs = hlo.fusions(hlo.compiled_step(optax.adamw(1e-3, weight_decay=0.1, **kwargs), params))
    assert sorted(ours) == sorted(theirs)


@pytest.mark.parametrize("recipe", [
    lambda s: decaytx.adamw(s, 0.1),
    lambda s: decaytx.adamw(s, 0.1, decay_scaling="schedule"),
    lambda s: decaytx.adamw(s, 0.1, decay_scaling="corrected", mask={"w": True, "b": False}),
    lambda s: decaytx.sgdw(s, 0.1, momentum=0.9),
    lambda s: decaytx.fused.adamw(s, 0.1, formulation="sibling", layout="tree"),
    lambda s: decaytx.fused.sgdw(s, 0.1, momentum=0.9, formulation="sibling"),
], ids=["adamw", "adamw-schedule", "adamw-corrected-masked", "sgdw", "fused.adamw", "fused.sgdw"])
def test_scheduled_recipes_evaluate_the_schedule_once(recipe: Any) -> None:
    """optax.adamw computes eta_t once per step; so does every scheduled recipe (0.2: twice)."""
    sched = optax.cosine_decay_schedule(1e-3, 1000)
    params = {"w": jnp.ones((4, 2)), "b": jnp.ones(2)}

    def cosines(opt: optax.GradientTransformation) -> int:
        state = opt.init(params)
        text = jax.jit(opt.update).lower(params, state, params).as_text()
        return text.count("stablehlo.cosine")

    assert cosines(optax.adamw(sched, weight_decay=0.1)) == 1
    assert cosines(recipe(sched)) == 1


def test_scheduled_adamw_compiles_like_optax_adamw(hlo: Any) -> None:
    sched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 1000)
    params = {"w": jnp.ones((64, 32)), "b": jnp.ones(32)}
    ours = hlo.fusions(hlo.compiled_step(decaytx.adamw(sched, 0.1), params))
    theirs = hlo.fusions(hlo.compiled_step(optax.adamw(sched, weight_decay=0.1), params))
    assert sorted(ours) == sorted(theirs)


def test_scheduled_adamw_takes_the_steps_of_the_chain_it_stands_for() -> None:
    """Sharing eta_t changes no value: the same steps as the written-out chain."""
    sched = optax.cosine_decay_schedule(1e-3, 1000)
    chain = optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(sched),
                        decaytx.add_decoupled_decay(0.1, learning_rate=sched))
    a, b = _run(chain, dtype=jnp.float32), _run(decaytx.adamw(sched, 0.1), dtype=jnp.float32)
    _check("adamw vs its chain", a, b, 0.0)
    once = optax.chain(optax.scale_by_adam(), decaytx.add_l2_grad(0.1), optax.scale_by_learning_rate(sched))
    _check("adamw vs scale_by_adam, add_l2_grad, scale_by_learning_rate", _run(once, dtype=jnp.float32), b,
           1e-5)


def test_dampening_and_amsgrad_errors() -> None:
    with pytest.raises(ValueError, match="nesterov=True needs dampening=0.0"):
        decaytx.sgd_l2(0.1, 0.0, momentum=0.9, nesterov=True, dampening=0.5)
    with pytest.raises(ValueError, match="dampening=0.5 needs a momentum"):
        decaytx.sgdw(0.1, 0.0, dampening=0.5)
    with pytest.raises(ValueError, match="dampening=2.0"):
        decaytx.sgd_l2(0.1, 0.0, momentum=0.9, dampening=2.0)
    with pytest.raises(ValueError, match="amsgrad=True"):
        decaytx.adamw(0.1, 0.0, amsgrad=True, nesterov=True)
    with pytest.raises(TypeError, match="amsgrad"):
        decaytx.adam_l2(0.1, 0.0, amsgrad="yes")  # type: ignore[arg-type]


def test_adamw_anchor_decays_toward_it() -> None:
    params = jnp.array([1.0, -2.0])
    opt = decaytx.adamw(0.1, 0.01, anchor="init")
    state = opt.init(params)
    moved = params + 1.0
    updates, _ = opt.update(jnp.zeros(2), state, moved)
    np.testing.assert_allclose(np.asarray(updates), -0.1 * 0.01 * np.ones(2), rtol=1e-6)


def test_nesterov_with_a_nonzero_array_dampening_is_refused() -> None:
    # PyTorch refuses nesterov with dampening != 0; an array dampening (as inject_hyperparams
    # passes it) was silently ignored before 0.2.
    with pytest.raises(ValueError, match="nesterov=True needs dampening=0.0"):
        decaytx.sgd_l2(0.1, 0.0, momentum=0.9, nesterov=True, dampening=jnp.array(0.5))
