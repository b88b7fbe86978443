"""Cross-path properties: every factory of tests/_registry.py keeps each guarantee.

The forms, the recipes and the fused steps (both layouts) are one machinery;
these properties run over all of them, so a path that loses a guarantee
fails here by name. The fused steps run the sibling formulation in this
process (no flag: separate kernels, same maths) and again in a worker with
XLA:CPU multi-output fusion on (``--worker``).

References are independent of the code under test: closed forms, central
finite differences in float64, the recipe a fused step promises, optax's own
``tree.map_params`` and ``inject_hyperparams``.
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
from typing import Any

import cloudpickle
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _flagged import run_worker
from _registry import ANCHORED, RECIPE_OF, REGISTRY

import decaytx

R = np.random.default_rng(0)
P = {"w": jnp.asarray(R.normal(size=(4, 3)), jnp.float32), "b": jnp.asarray(R.normal(size=3), jnp.float32)}
G = {"w": jnp.asarray(R.normal(size=(4, 3)), jnp.float32), "b": jnp.asarray(R.normal(size=3), jnp.float32)}
FUSED = [k for k, e in REGISTRY.items() if e.fused]


def _make(name: str, **kw: Any) -> optax.GradientTransformation:
    e = REGISTRY[name]
    return e.make(anchor="init", **kw) if e.anchor and "anchor" not in kw else e.make(**kw)


def _steps(opt: optax.GradientTransformation, params: Any, n: int = 3, state: Any = None) -> Any:
    state = opt.init(params) if state is None else state
    step = jax.jit(opt.update)
    for i in range(n):
        g = jax.tree.map(lambda x, k=i + 1: jnp.cos(x * k).astype(x.dtype), params)
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
    return params, state


def _close(a: Any, b: Any, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol)


def _with_anchor_leaf(state: Any, fn: Any) -> Any:
    """``state`` with ``fn`` applied to the anchor's ``b`` leaf (a restored, altered state)."""
    def visit(path: Any, x: Any) -> Any:
        names = [getattr(k, "name", getattr(k, "key", None)) for k in path]
        return fn(x) if "anchor" in names and names[-1] == "b" else x
    return jax.tree_util.tree_map_with_path(visit, state)


# -- messages shared with the flagged worker ---------------------------------


def other_mask_message(name: str) -> str:
    state = _make(name, mask={"w": True, "b": False}).init(P)
    try:
        jax.jit(_make(name, mask={"w": True, "b": True}).update)(G, state, P)
    except ValueError as e:
        return str(e)
    return ""


def anchor_shape_messages(name: str) -> list[str]:
    out = []
    try:
        _make(name, anchor={"w": P["w"], "b": P["b"].reshape(3, 1)}).init(P)
        out.append("")
    except ValueError as e:
        out.append(str(e))
    state = _with_anchor_leaf(_make(name).init(P), lambda x: x.reshape(3, 1))
    try:
        jax.jit(_make(name).update)(G, state, P)
        out.append("")
    except ValueError as e:
        out.append(str(e))
    return out


P1 = {"a": jnp.ones(4), "z": jnp.ones((2, 3))}
P2 = {"a": jnp.ones((2, 3)), "z": jnp.ones(4)}


def other_shapes_message(name: str) -> str:
    opt = REGISTRY[name].make()
    state = opt.init(P1)
    try:
        jax.jit(opt.update)(P2, state, P2)
    except (ValueError, TypeError) as e:
        return str(e)
    return ""


def half_precision_gap(name: str, wd: float) -> tuple[bool, float]:
    """(all finite, gap to the recipe in f16 ulps) after one step on f16 params with ``wd``.

    One step: with ``wd = 1e5`` the SGD recipes themselves diverge after two
    (eta * lambda = 1e4), which is the maths, not the dtype."""
    e, r = REGISTRY[name], REGISTRY[RECIPE_OF[name]]
    params = jax.tree.map(lambda x: (x * 1e-3).astype(jnp.float16), P)
    args = list(e.args)
    args[1] = wd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        a = _steps(e.factory(*args, **e.kwargs), params, n=1)
        b = _steps(r.factory(*args, **r.kwargs), params, n=1)
    finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(a[0]) + jax.tree.leaves(b[0]))
    gap = max(float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32))) /
                    (float(jnp.finfo(jnp.float16).eps) * max(float(jnp.max(jnp.abs(y))), 1e-3)))
              for x, y in zip(jax.tree.leaves(a[0]), jax.tree.leaves(b[0])))
    return finite, gap


# -- the properties ------------------------------------------------------------


@pytest.mark.parametrize("name", ANCHORED)
def test_a_state_from_another_mask_is_refused_naming_the_leaf(name: str) -> None:
    msg = other_mask_message(name)
    assert "['b']" in msg and "another mask" in msg, msg


@pytest.mark.parametrize("name", ANCHORED)
def test_an_anchor_of_another_shape_is_refused_naming_the_leaf(name: str) -> None:
    given, restored = anchor_shape_messages(name)
    assert "['b']" in given and "(3, 1)" in given, given
    assert "['b']" in restored and "(3, 1)" in restored, restored


@pytest.mark.parametrize("name", FUSED)
def test_a_state_made_for_other_shapes_is_refused_naming_the_leaf(name: str) -> None:
    msg = other_shapes_message(name)
    assert "'a'" in msg or "['a']" in msg, msg


@pytest.mark.parametrize("wd", [1e5, 1e-30], ids=["huge", "tiny"])
@pytest.mark.parametrize("name", FUSED)
def test_half_precision_with_extreme_coefficients_matches_the_recipe(name: str, wd: float) -> None:
    finite, gap = half_precision_gap(name, wd)
    assert finite
    assert gap <= 8.0, gap


@pytest.mark.parametrize("wd", [1e5, 1e-30], ids=["huge", "tiny"])
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("name", [k for k in REGISTRY if not REGISTRY[k].fused])
def test_half_precision_with_extreme_coefficients_matches_float32(name: str, dtype: Any, wd: float) -> None:
    """One step on half-precision params equals the float32 step, rounded (dtype kept, no NaN)."""
    e = REGISTRY[name]
    args = list(e.args)
    args[1 if e.chain else 0] = wd
    params = jax.tree.map(lambda x: (x * 1e-3).astype(dtype), P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        out, _ = _steps(e.factory(*args, **e.kwargs), params, n=1)
        ref, _ = _steps(e.factory(*args, **e.kwargs), jax.tree.map(lambda x: x.astype(jnp.float32), params),
                        n=1)
    eps = float(jnp.finfo(dtype).eps)
    for x, y in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
        assert x.dtype == dtype
        y16 = np.asarray(y.astype(dtype), np.float64)
        assert np.all(np.isfinite(np.asarray(x, np.float64)) == np.isfinite(y16))
        ok = np.isfinite(y16)
        scale = max(float(np.max(np.abs(y16[ok]), initial=0.0)), 1e-3)
        assert np.max(np.abs(np.asarray(x, np.float64)[ok] - y16[ok]), initial=0.0) <= 4 * eps * scale


@pytest.mark.parametrize("name", ANCHORED)
def test_init_with_an_init_anchor_traces(name: str) -> None:
    opt = _make(name)
    concrete = opt.init(P)
    abstract = jax.eval_shape(lambda: opt.init(P))
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(abstract)] == [
        (x.shape, x.dtype) for x in jax.tree.leaves(concrete)]
    _close(jax.jit(lambda: opt.init(P))(), concrete, rtol=0, atol=0)


@pytest.mark.parametrize("name", ANCHORED)
def test_an_abstract_anchor_is_named_as_abstract(name: str) -> None:
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), P)
    with pytest.raises(ValueError, match=r"anchor has an abstract float32\[3\].*ShapeDtypeStruct.*\['b'\]"):
        REGISTRY[name].make(anchor=abstract).init(P)


@pytest.mark.parametrize("name", ANCHORED)
def test_the_gradient_through_the_anchor_matches_finite_differences(name: str) -> None:
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda x: x.astype(jnp.float64), P)
        g64 = jax.tree.map(lambda x: x.astype(jnp.float64), G)

        def f(a_w: jax.Array) -> jax.Array:
            opt = REGISTRY[name].make(anchor={"w": a_w, "b": jnp.zeros(3)})
            u, _ = opt.update(g64, opt.init(p64), p64)
            return jnp.sum(u["w"] * jnp.arange(1.0, 13.0).reshape(4, 3))

        a0 = p64["w"] * 0.5
        grad = jax.grad(f)(a0)
        h = 1e-6
        fd = np.zeros((4, 3))
        for i in range(4):
            for j in range(3):
                e = jnp.zeros((4, 3)).at[i, j].set(h)
                fd[i, j] = (float(f(a0 + e)) - float(f(a0 - e))) / (2 * h)
        np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", REGISTRY)
def test_cloudpickle_round_trip_takes_the_same_steps(name: str) -> None:
    opt = _make(name)
    state = opt.init(P)
    again = cloudpickle.loads(cloudpickle.dumps(opt))
    restored = pickle.loads(pickle.dumps(state))
    _close(_steps(again, P, state=restored), _steps(opt, P, state=state), rtol=0, atol=0)


@pytest.mark.parametrize("name", [k for k, e in REGISTRY.items() if not e.chain  # schedules: cloudpickle
                                  and k.split("[")[0] not in ("add_decoupled_decay", "prox_elastic_net")
                                  and "per-leaf lr" not in k])
def test_a_form_with_constant_coefficients_pickles_with_plain_pickle(name: str) -> None:
    opt = _make(name)
    again = pickle.loads(pickle.dumps(opt))
    _close(_steps(again, P), _steps(opt, P), rtol=0, atol=0)


# A per_leaf rule's schedules are known at init only, from params; optax's
# placeholder has none (a documented limit of per_leaf schedules).
@pytest.mark.parametrize("name", [k for k, e in REGISTRY.items() if not e.flat and "per-leaf lr" not in k])
def test_optax_map_params_finds_the_params_trees(name: str) -> None:
    opt = _make(name)
    state = opt.init(P)
    mapped = optax.tree.map_params(opt, lambda x: x + 1, state)
    assert jax.tree.structure(mapped) == jax.tree.structure(state)


def test_optax_map_params_on_the_flat_layout_says_why_it_cannot() -> None:
    opt = REGISTRY["fused.adamw[flat]"].make()
    with pytest.raises(TypeError, match=r"layout='flat'.*map_params.*layout='tree'"):
        optax.tree.map_params(opt, lambda x: x, opt.init(P))


@pytest.mark.parametrize("name", [k for k, e in REGISTRY.items() if not e.chain])
def test_update_with_none_updates_returns_none(name: str) -> None:
    opt = _make(name)
    u, _ = opt.update(None, opt.init(P), P)
    assert u is None


@pytest.mark.parametrize("wrap", ["optax", "decaytx"])
@pytest.mark.parametrize("name", REGISTRY)
def test_inject_hyperparams_takes_the_same_steps(name: str, wrap: str) -> None:
    e = REGISTRY[name]
    if wrap == "optax" and not e.optax_inject:
        with pytest.raises((ValueError, TypeError), match="decaytx.inject_hyperparams"):
            optax.inject_hyperparams(e.factory)(*e.args, **e.kwargs).init(P)
        return
    inject = optax.inject_hyperparams if wrap == "optax" else decaytx.inject_hyperparams
    injected = inject(e.factory)(*e.args, **e.kwargs)
    # The injected numbers are f32 arrays, not constants: float32 rounding apart.
    _close(_steps(injected, P)[0], _steps(e.make(), P)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", REGISTRY)
def test_lax_scan_over_steps_equals_a_loop(name: str) -> None:
    opt = _make(name)
    grads = [jax.tree.map(lambda x: jnp.cos(x * (i + 1)), P) for i in range(4)]  # noqa: B023

    def step(carry: Any, g: Any) -> Any:
        p, s = carry
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads)
    scanned = jax.lax.scan(step, (P, opt.init(P)), stacked)[0]
    carry = (P, opt.init(P))
    jstep = jax.jit(step)
    for g in grads:
        carry = jstep(carry, g)[0]
    _close(scanned, carry, rtol=1e-6, atol=1e-7)


def test_with_the_flag_the_fused_steps_keep_every_check() -> None:
    data = run_worker(__file__, "--worker", timeout=900)
    assert data["active"] is True
    for name in FUSED:
        d = data[name]
        if REGISTRY[name].anchor:
            assert "['b']" in d["other_mask"] and "another mask" in d["other_mask"], (name, d)
            assert all("['b']" in m and "(3, 1)" in m for m in d["anchor_shape"]), (name, d)
        assert "'a'" in d["other_shapes"] or "['a']" in d["other_shapes"], (name, d)
        for wd in ("huge", "tiny"):
            finite, gap = d[wd]
            assert finite and gap <= 8.0, (name, wd, d)


def _worker() -> dict[str, Any]:
    out: dict[str, Any] = {"active": decaytx.fused.multi_output_fusion_active()}
    for name in FUSED:
        out[name] = {
            "other_mask": other_mask_message(name) if REGISTRY[name].anchor else "",
            "anchor_shape": anchor_shape_messages(name) if REGISTRY[name].anchor else [],
            "other_shapes": other_shapes_message(name),
            "huge": half_precision_gap(name, 1e5),
            "tiny": half_precision_gap(name, 1e-30),
        }
    return out


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    print(json.dumps(_worker()))
