"""decaytx under optax's wrappers: inject_hyperparams, masked, multi_transform,
named_chain, MultiSteps, apply_if_finite.

Every expected value comes from a NumPy float64 reference written from the
formulas in DESIGN.md section 1, never from decaytx itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks

RTOL = 2e-6
ATOL = 1e-7


def _soft(x: np.ndarray, tau: float) -> np.ndarray:
    return np.sign(x) * np.maximum(np.abs(x) - tau, 0.0)


# name -> (factory, side, coefficient names, reference). The reference maps
# (u, p, coefficients, m) to the new u in float64; m is the update-side
# multiplier (learning_rate=), unused by gradient-side forms.
Ref = Callable[[np.ndarray, np.ndarray, dict[str, float], float], np.ndarray]
FORMS: dict[str, tuple[Callable[..., optax.GradientTransformation], str, tuple[str, ...], Ref]] = {
    "add_l2_grad": (
        decaytx.add_l2_grad, "grad", ("weight_decay",),
        lambda u, p, c, m: u + c["weight_decay"] * p,
    ),
    "add_l1_subgrad": (
        decaytx.add_l1_subgrad, "grad", ("l1",),
        lambda u, p, c, m: u + c["l1"] * np.sign(p),
    ),
    "add_elastic_net_grad": (
        decaytx.add_elastic_net_grad, "grad", ("l1", "l2"),
        lambda u, p, c, m: u + c["l1"] * np.sign(p) + c["l2"] * p,
    ),
    "add_decoupled_decay": (
        decaytx.add_decoupled_decay, "update", ("weight_decay",),
        lambda u, p, c, m: u - m * c["weight_decay"] * p,
    ),
    "prox_l1": (
        decaytx.prox_l1, "update", ("l1",),
        lambda u, p, c, m: _soft(p + u, m * c["l1"]) - p,
    ),
    "prox_elastic_net": (
        decaytx.prox_elastic_net, "update", ("l1", "l2"),
        lambda u, p, c, m: _soft(p + u, m * c["l1"]) / (1 + m * c["l2"]) - p,
    ),
}
BASE = {"weight_decay": 0.1, "l1": 0.05, "l2": 0.2}
# Values different enough from BASE that a stale coefficient cannot pass.
CHANGED = {"weight_decay": 0.35, "l1": 0.15, "l2": 0.6}


def _params() -> dict[str, jax.Array]:
    key = jax.random.PRNGKey(0)
    k1, k2 = jax.random.split(key)
    return {
        "w": jax.random.normal(k1, (3, 4), jnp.float32),
        "b": jax.random.normal(k2, (4,), jnp.float32) * 0.1,
    }


def _grads(step: int) -> dict[str, jax.Array]:
    key = jax.random.fold_in(jax.random.PRNGKey(1), step)
    k1, k2 = jax.random.split(key)
    return {"w": jax.random.normal(k1, (3, 4)), "b": jax.random.normal(k2, (4,))}


def _np(tree: Any) -> Any:
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _close(actual: Any, expected: Any, rtol: float = RTOL, atol: float = ATOL) -> None:
    chex.assert_trees_all_close(_np(actual), expected, rtol=rtol, atol=atol)


def _kwargs(name: str, coefs: dict[str, Any], m: Any = None) -> dict[str, Any]:
    _, side, names, _ = FORMS[name]
    kw = {k: coefs[k] for k in names}
    if side == "update":
        kw["learning_rate"] = m
    return kw


# ---------------------------------------------------------------------------
# inject_hyperparams: a coefficient changed in the state changes the next update


@pytest.mark.parametrize("injector", ["optax", "decaytx"])
@pytest.mark.parametrize("name", list(FORMS))
def test_inject_hyperparams_change_takes_effect_next_update(name: str, injector: str) -> None:
    factory, side, names, ref = FORMS[name]
    inject = optax.inject_hyperparams if injector == "optax" else decaytx.inject_hyperparams
    m0, m1 = 0.5, 0.25
    tx = inject(factory)(**_kwargs(name, BASE, m0))
    params = _params()
    state = tx.init(params)
    expected_keys = set(names) | ({"learning_rate"} if side == "update" else set())
    assert set(state.hyperparams) == expected_keys
    step = jax.jit(tx.update)

    g = _grads(0)
    u, state = step(g, state, params)
    _close(u, jax.tree.map(lambda gg, p: ref(gg, p, BASE, m0), _np(g), _np(params)))

    for k in names:
        state.hyperparams[k] = jnp.asarray(CHANGED[k])
    if side == "update":
        state.hyperparams["learning_rate"] = jnp.asarray(m1)
    g = _grads(1)
    u, state = step(g, state, params)
    _close(u, jax.tree.map(lambda gg, p: ref(gg, p, CHANGED, m1), _np(g), _np(params)))


@pytest.mark.parametrize("name", list(FORMS))
def test_inject_hyperparams_zero_coefficient_can_be_raised_later(name: str) -> None:
    """A coefficient injected as 0 is an array, not a concrete zero: no fast
    path may drop the form, or raising it later would have no effect."""
    factory, side, names, ref = FORMS[name]
    zeros = dict.fromkeys(BASE, 0.0)
    tx = optax.inject_hyperparams(factory)(**_kwargs(name, zeros, 0.5))
    params = _params()
    state = tx.init(params)
    for k in names:
        state.hyperparams[k] = jnp.asarray(CHANGED[k])
    g = _grads(0)
    u, _ = jax.jit(tx.update)(g, state, params)
    _close(u, jax.tree.map(lambda gg, p: ref(gg, p, CHANGED, 0.5), _np(g), _np(params)))


# ---------------------------------------------------------------------------
# The inject_hyperparams mask trap (optax #57, #1373)

CALLABLE_MASKS = {
    "masks.ndim_at_least": masks.ndim_at_least(2),
    "lambda": lambda p: jax.tree.map(lambda x: x.ndim >= 2, p),
    "masks.include": masks.include("w"),
}


@pytest.mark.parametrize("mask_name", list(CALLABLE_MASKS))
@pytest.mark.parametrize("name", list(FORMS))
def test_optax_inject_hyperparams_with_callable_mask_fails_loudly(name: str, mask_name: str) -> None:
    factory = FORMS[name][0]
    tx = optax.inject_hyperparams(factory)(**_kwargs(name, BASE, 0.5), mask=CALLABLE_MASKS[mask_name])
    with pytest.raises(TypeError, match=r"(?s)mask=.*decaytx\.inject_hyperparams.*static_args"):
        tx.init(_params())


@pytest.mark.parametrize("injector", ["decaytx", "optax_static_args"])
@pytest.mark.parametrize("name", list(FORMS))
def test_callable_mask_supported_ways(name: str, injector: str) -> None:
    factory, side, names, ref = FORMS[name]
    if injector == "decaytx":
        inject = decaytx.inject_hyperparams(factory)
    else:
        inject = optax.inject_hyperparams(factory, static_args=("mask",))
    tx = inject(**_kwargs(name, BASE, 0.5), mask=masks.ndim_at_least(2))
    params = _params()
    state = tx.init(params)
    assert "mask" not in state.hyperparams
    g = _grads(0)
    u, state = jax.jit(tx.update)(g, state, params)
    gn, pn = _np(g), _np(params)
    _close(u, {"w": ref(gn["w"], pn["w"], BASE, 0.5), "b": gn["b"]})
    # The coefficients are still hyperparameters.
    for k in names:
        state.hyperparams[k] = jnp.asarray(CHANGED[k])
    u, _ = jax.jit(tx.update)(g, state, params)
    _close(u, {"w": ref(gn["w"], pn["w"], CHANGED, 0.5), "b": gn["b"]})


def test_decaytx_inject_hyperparams_keeps_anchor_and_cautious_static() -> None:
    params = _params()
    anchor = jax.tree.map(lambda p: 0.5 * p, params)
    tx = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(
        0.1, learning_rate=0.5, mask=masks.ndim_at_least(2), anchor=anchor, cautious=True
    )
    state = tx.init(params)
    assert set(state.hyperparams) == {"weight_decay", "learning_rate"}
    g = _grads(0)
    u, state = jax.jit(tx.update)(g, state, params)
    gn, pn, an = _np(g), _np(params), _np(anchor)
    d = pn["w"] - an["w"]
    d = np.where(gn["w"] * d <= 0, d, 0.0)
    _close(u, {"w": gn["w"] - 0.05 * d, "b": gn["b"]})
    # The anchor lives in the inner state, not among the hyperparameters.
    _close(state.inner_state.anchor["w"], an["w"])


def test_decaytx_inject_hyperparams_anchor_init() -> None:
    params = _params()
    tx = decaytx.inject_hyperparams(decaytx.add_l2_grad)(0.1, anchor="init")
    state = tx.init(params)
    moved = jax.tree.map(lambda p: p + 1.0, params)
    g = _grads(0)
    u, _ = tx.update(g, state, moved)
    _close(u, jax.tree.map(lambda gg: gg + 0.1, _np(g)))


# ---------------------------------------------------------------------------
# optax.masked, multi_transform, named_chain


@pytest.mark.parametrize("name", list(FORMS))
def test_optax_masked(name: str) -> None:
    factory, _, _, ref = FORMS[name]
    tx = optax.masked(factory(**_kwargs(name, BASE, 0.5)), {"w": True, "b": False})
    params = _params()
    g = _grads(0)
    u, _ = jax.jit(tx.update)(g, tx.init(params), params)
    gn, pn = _np(g), _np(params)
    _close(u, {"w": ref(gn["w"], pn["w"], BASE, 0.5), "b": gn["b"]})


@pytest.mark.parametrize(
    "factory",
    [decaytx.add_l2_grad, functools.partial(decaytx.add_decoupled_decay, learning_rate=None)],
    ids=["add_l2_grad", "add_decoupled_decay"],
)
def test_optax_masked_with_anchor_init(factory: Callable[..., Any]) -> None:
    """Under optax.masked the inner transform sees MaskedNode leaves; the
    anchor keeps only the unmasked ones."""
    params = _params()
    tx = optax.masked(factory(0.1, anchor="init"), masks.ndim_at_least(2))
    state = tx.init(params)
    assert isinstance(state.inner_state.anchor["b"], optax.MaskedNode)
    moved = jax.tree.map(lambda p: p + 1.0, params)
    g = _grads(0)
    u, _ = jax.jit(tx.update)(g, state, moved)
    gn = _np(g)
    sign = 1.0 if factory is decaytx.add_l2_grad else -1.0
    _close(u, {"w": gn["w"] + sign * 0.1, "b": gn["b"]})


def test_multi_transform_different_decay_per_group() -> None:
    lr = 0.1
    tx = optax.multi_transform(
        {
            "matrices": optax.chain(
                optax.sgd(lr), decaytx.add_decoupled_decay(0.3, learning_rate=lr)
            ),
            "vectors": optax.chain(decaytx.add_l2_grad(0.05), optax.sgd(lr)),
        },
        lambda p: jax.tree.map(lambda x: "matrices" if x.ndim >= 2 else "vectors", p),
    )
    params = _params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    ref = _np(params)
    for t in range(3):
        g = _grads(t)
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
        gn = _np(g)
        ref = {
            "w": ref["w"] - lr * gn["w"] - lr * 0.3 * ref["w"],
            "b": ref["b"] - lr * (gn["b"] + 0.05 * ref["b"]),
        }
    _close(params, ref, rtol=1e-5, atol=1e-6)


def test_named_chain_state_by_name_and_injected_decay() -> None:
    lr = 0.1
    tx = optax.named_chain(
        ("sgd", optax.sgd(lr)),
        ("decay", decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(
            0.2, learning_rate=lr, mask=masks.ndim_at_least(2))),
    )
    params = _params()
    state = tx.init(params)
    assert set(state) == {"sgd", "decay"}
    state["decay"].hyperparams["weight_decay"] = jnp.asarray(0.7)
    g = _grads(0)
    u, _ = jax.jit(tx.update)(g, state, params)
    gn, pn = _np(g), _np(params)
    _close(u, {"w": -lr * gn["w"] - lr * 0.7 * pn["w"], "b": -lr * gn["b"]})


# ---------------------------------------------------------------------------
# MultiSteps and apply_if_finite: schedules count real steps only


def _lr(t: Any) -> Any:
    # An increasing, bounded schedule, so a miscounted step shows; the NumPy
    # reference evaluates the same formula at a Python int.
    return 0.1 * (1.0 + 0.5 * jnp.minimum(t, 8))


def _coef_schedule(base: float) -> Callable[[Any], Any]:
    return lambda t: base * (1.0 + 0.25 * jnp.minimum(t, 8))


def _sgd_chain(name: str) -> optax.GradientTransformation:
    factory, side, names, _ = FORMS[name]
    coefs = {k: _coef_schedule(BASE[k]) for k in names}
    if side == "grad":
        return optax.chain(factory(**coefs), optax.sgd(_lr))
    return optax.chain(optax.sgd(_lr), factory(**coefs, learning_rate=_lr))


def _ref_sgd_step(name: str, g: Any, p: Any, t: int) -> Any:
    """One float64 step of the SGD chain at real step ``t``."""
    _, side, names, ref = FORMS[name]
    c = {k: BASE[k] * (1.0 + 0.25 * min(t, 8)) for k in names}
    lr = 0.1 * (1.0 + 0.5 * min(t, 8))
    if side == "grad":
        return jax.tree.map(lambda gg, pp: pp - lr * ref(gg, pp, c, lr), g, p)
    return jax.tree.map(lambda gg, pp: pp + ref(-lr * gg, pp, c, lr), g, p)


@pytest.mark.parametrize("name", list(FORMS))
def test_multisteps_decays_once_per_real_step(name: str) -> None:
    k, real_steps = 3, 4
    tx = optax.MultiSteps(_sgd_chain(name), every_k_schedule=k)
    params = _params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    ref = _np(params)
    for t in range(real_steps):
        micro = [_grads(k * t + i) for i in range(k)]
        for i, g in enumerate(micro):
            before = params
            u, state = step(g, state, params)
            params = optax.apply_updates(params, u)
            if i < k - 1:  # mid step: nothing applied, no decay either
                chex.assert_trees_all_equal(params, before)
        mean = jax.tree.map(lambda *gs: np.mean(gs, axis=0), *[_np(g) for g in micro])
        ref = _ref_sgd_step(name, mean, ref, t)
    _close(params, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(FORMS))
def test_apply_if_finite_skipped_step_keeps_schedules_in_lockstep(name: str) -> None:
    """A non-finite gradient skips the whole inner chain: params stay, and
    neither the lr schedule's count nor the decay's count advances."""
    tx = optax.apply_if_finite(_sgd_chain(name), max_consecutive_errors=3)
    params = _params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    ref = _np(params)
    real = 0
    for t in range(5):
        g = _grads(t)
        bad = t in (1, 2)
        if bad:
            g = {"w": g["w"].at[0, 0].set(jnp.nan), "b": g["b"]}
        before = params
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
        if bad:
            chex.assert_trees_all_equal(params, before)
        else:
            ref = _ref_sgd_step(name, _np(g), ref, real)
            real += 1
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 2
    _close(params, ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Recipes under inject_hyperparams


def _adam_ref(g: np.ndarray, state: dict[str, Any], t: int, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-8) -> np.ndarray:
    """Adam's direction at step t (1-based), PyTorch/optax form; updates state."""
    state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
    state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
    mhat = state["m"] / (1 - b1**t)
    vhat = state["v"] / (1 - b2**t)
    return mhat / (np.sqrt(vhat) + eps)


def _recipe_ref(name: str, g: np.ndarray, p: np.ndarray, s: dict[str, Any], t: int,
                hp: dict[str, float]) -> np.ndarray:
    lr = hp["learning_rate"]
    if name == "sgd_l2":  # momentum 0.9, buffer starts at 0
        s["b"] = 0.9 * s.get("b", 0.0) + g + hp["weight_decay"] * p
        return -lr * s["b"]
    if name == "sgdw":
        s["b"] = 0.9 * s.get("b", 0.0) + g
        return -lr * s["b"] - lr * hp["weight_decay"] * p
    if name == "adam_l2":
        return -lr * _adam_ref(g + hp["weight_decay"] * p, s, t)
    if name == "adamw":
        return -lr * _adam_ref(g, s, t) - lr * hp["weight_decay"] * p
    assert name == "proximal_sgd"
    return _soft(p - lr * g, lr * hp["l1"]) / (1 + lr * hp["l2"]) - p


RECIPES: dict[str, tuple[Callable[..., optax.GradientTransformation], dict[str, Any]]] = {
    "sgd_l2": (decaytx.sgd_l2, {"momentum": 0.9}),
    "sgdw": (decaytx.sgdw, {"momentum": 0.9}),
    "adam_l2": (decaytx.adam_l2, {}),
    "adamw": (decaytx.adamw, {}),
    "proximal_sgd": (decaytx.proximal_sgd, {}),
}


@pytest.mark.parametrize("injector", ["optax", "decaytx"])
@pytest.mark.parametrize("name", list(RECIPES))
def test_recipes_under_inject_hyperparams(name: str, injector: str) -> None:
    factory, extra = RECIPES[name]
    coefs = ("l1", "l2") if name == "proximal_sgd" else ("weight_decay",)
    hp = {"learning_rate": 0.05, **{k: BASE[k] for k in coefs}}
    if injector == "decaytx":
        tx = decaytx.inject_hyperparams(factory)(**hp, **extra, mask=masks.ndim_at_least(2))
    else:
        # optax needs the mask spelled out as a tree (or static_args=("mask",)).
        tx = optax.inject_hyperparams(factory)(**hp, **extra, mask={"w": True, "b": False})
    params = _params()
    state = tx.init(params)
    assert {"learning_rate", *coefs} <= set(state.hyperparams)
    assert "mask" not in state.hyperparams
    # decaytx keeps momentum static (None and a number build different chains);
    # optax injects it as a number, which works as well.
    assert ("momentum" in state.hyperparams) == (injector == "optax" and "momentum" in extra)
    step = jax.jit(tx.update)
    ref_p = _np(params)
    ref_s: dict[str, dict[str, Any]] = {"w": {}, "b": {}}
    for t in (1, 2, 3):
        if t == 3:  # change the coefficients at runtime
            hp = {"learning_rate": 0.02, **{k: CHANGED[k] for k in coefs}}
            for k, v in hp.items():
                state.hyperparams[k] = jnp.asarray(v)
        g = _grads(t)
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
        gn = _np(g)
        no_decay = {k: 0.0 for k in coefs}
        ref_p = {
            "w": ref_p["w"] + _recipe_ref(name, gn["w"], ref_p["w"], ref_s["w"], t, hp),
            "b": ref_p["b"] + _recipe_ref(name, gn["b"], ref_p["b"], ref_s["b"], t,
                                          {**hp, **no_decay}),
        }
    _close(params, ref_p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decay_scaling", ["lr", "none"])
def test_adamw_decay_scaling_lr_and_none_under_inject_hyperparams(decay_scaling: str) -> None:
    eta, wd = 0.05, 0.1
    tx = decaytx.inject_hyperparams(decaytx.adamw)(eta, wd, decay_scaling=decay_scaling)
    params = _params()
    g = _grads(0)
    u, _ = jax.jit(tx.update)(g, tx.init(params), params)
    m = {"lr": eta, "none": 1.0}[decay_scaling]
    expected = jax.tree.map(
        lambda gg, p: -eta * _adam_ref(gg, {}, 1) - m * wd * p, _np(g), _np(params)
    )
    _close(u, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decay_scaling", ["schedule", "corrected"])
def test_adamw_schedule_scalings_under_inject_hyperparams(decay_scaling: str) -> None:
    """eta_t / eta_max needs the schedule, not its value at this step: optax's
    wrapper (which evaluates it) is refused; decaytx's keeps it static."""
    wd = 0.1
    schedule = optax.linear_schedule(0.05, 0.01, 4)  # eta_max = 0.05
    with pytest.raises(ValueError, match=r"static_args=\('learning_rate',\)"):
        optax.inject_hyperparams(decaytx.adamw)(schedule, wd, decay_scaling=decay_scaling).init(
            _params()
        )
    tx = decaytx.inject_hyperparams(decaytx.adamw)(schedule, wd, decay_scaling=decay_scaling)
    params = _params()
    state = tx.init(params)
    assert "learning_rate" not in state.hyperparams
    state.hyperparams["weight_decay"] = jnp.asarray(0.3)  # still injectable
    step = jax.jit(tx.update)
    ref = _np(params)
    adam: dict[str, dict[str, Any]] = {"w": {}, "b": {}}
    for t in range(3):
        g = _grads(t)
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
        eta = 0.05 + (0.01 - 0.05) * t / 4
        m = eta / 0.05 if decay_scaling == "schedule" else eta * eta / 0.05
        gn = _np(g)
        ref = {k: ref[k] - eta * _adam_ref(gn[k], adam[k], t + 1) - m * 0.3 * ref[k] for k in ref}
    _close(params, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipes_under_apply_if_finite_around_multisteps(name: str) -> None:
    """apply_if_finite(MultiSteps(recipe, k=2)): a non-finite micro-batch is
    dropped whole (not accumulated); the recipe, its decay included, runs
    once per k finite micro-batches, with its counts advancing per real step.

    (The other nesting, MultiSteps(apply_if_finite(...)), is not supported by
    optax itself: MultiSteps resets its accumulator as (1 - emit) * acc, and
    0 * inf is nan: one inf poisons the accumulator and every later real step
    is skipped (checked by hand). optax's own answer is
    MultiSteps(..., should_skip_update_fn=optax.skip_not_finite).)"""
    factory, extra = RECIPES[name]
    hp = {"learning_rate": 0.05, **({"l1": 0.05, "l2": 0.2} if name == "proximal_sgd"
                                    else {"weight_decay": 0.1})}
    k = 2
    tx = optax.apply_if_finite(
        optax.MultiSteps(factory(**hp, **extra), every_k_schedule=k), max_consecutive_errors=3
    )
    params = _params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    stream = [_grads(i) for i in range(7)]
    stream[2] = {"w": stream[2]["w"].at[1, 2].set(jnp.inf), "b": stream[2]["b"]}
    for g in stream:
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
    assert int(state.total_notfinite) == 1

    finite = [_np(g) for i, g in enumerate(stream) if i != 2]
    ref_p = _np(_params())
    ref_s: dict[str, dict[str, Any]] = {"w": {}, "b": {}}
    for t in range(1, len(finite) // k + 1):
        mean = jax.tree.map(lambda *gs: np.mean(gs, axis=0), *finite[k * (t - 1): k * t])
        ref_p = {key: ref_p[key] + _recipe_ref(name, mean[key], ref_p[key], ref_s[key], t, hp)
                 for key in ref_p}
    _close(params, ref_p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipes_under_multisteps_skip_not_finite(name: str) -> None:
    """optax's own way to skip bad micro-batches inside MultiSteps."""
    factory, extra = RECIPES[name]
    hp = {"learning_rate": 0.05, **({"l1": 0.05, "l2": 0.2} if name == "proximal_sgd"
                                    else {"weight_decay": 0.1})}
    k = 2
    tx = optax.MultiSteps(
        factory(**hp, **extra), every_k_schedule=k, should_skip_update_fn=optax.skip_not_finite
    )
    params = _params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    stream = [_grads(i) for i in range(7)]
    stream[2] = {"w": stream[2]["w"].at[1, 2].set(jnp.nan), "b": stream[2]["b"]}
    for g in stream:
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
    finite = [_np(g) for i, g in enumerate(stream) if i != 2]
    ref_p = _np(_params())
    ref_s: dict[str, dict[str, Any]] = {"w": {}, "b": {}}
    for t in range(1, len(finite) // k + 1):
        mean = jax.tree.map(lambda *gs: np.mean(gs, axis=0), *finite[k * (t - 1): k * t])
        ref_p = {key: ref_p[key] + _recipe_ref(name, mean[key], ref_p[key], ref_s[key], t, hp)
                 for key in ref_p}
    _close(params, ref_p, rtol=1e-5, atol=1e-6)


def _const_sgd_chain(name: str, coefs: dict[str, float], lr: float) -> optax.GradientTransformation:
    factory, side, names, _ = FORMS[name]
    kw = {k: coefs[k] for k in names}
    if side == "grad":
        return optax.chain(factory(**kw), optax.sgd(lr))
    return optax.chain(optax.sgd(lr), factory(**kw, learning_rate=lr))


@pytest.mark.parametrize("name", list(FORMS))
def test_multi_transform_every_form_two_groups(name: str) -> None:
    """Matrices and vectors get the same form with different coefficients."""
    _, side, _, ref = FORMS[name]
    lr = 0.1
    tx = optax.multi_transform(
        {"matrices": _const_sgd_chain(name, BASE, lr), "vectors": _const_sgd_chain(name, CHANGED, lr)},
        lambda p: jax.tree.map(lambda x: "matrices" if x.ndim >= 2 else "vectors", p),
    )
    params = _params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    expected = _np(params)
    for t in range(3):
        g = _grads(t)
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
        gn = _np(g)
        new = {}
        for key, c in (("w", BASE), ("b", CHANGED)):
            p = expected[key]
            if side == "grad":
                new[key] = p - lr * ref(gn[key], p, c, lr)
            else:
                new[key] = p + ref(-lr * gn[key], p, c, lr)
        expected = new
    _close(params, expected, rtol=1e-5, atol=1e-6)
