"""Fuzzing: hypothesis-generated pytrees through every transform and recipe.

Two tiers, so that CI stays fast (compilation, not running, is the cost):

* ``test_fuzz_jitted``: 200 examples per transform/recipe, jitted. The tree
  *skeleton* (nesting, None leaves, zero-size and scalar leaves, mixed
  f16/bf16/f32/f64/complex64/int32) is drawn from a small pool so that XLA's
  cache is reused; values, masks and the step count are drawn freely.
* ``test_fuzz_arbitrary_trees``: arbitrary nested dict/list/tuple trees
  drawn by hypothesis (any structure), run eagerly and under jit.

Properties: no crash; tree structure, shapes and dtypes of the updates and
of the state preserved; finite in -> finite out (values bounded so that the
exact results are representable); masked (and integer, None) leaves
untouched. float64 leaves need x64: those examples run inside
``jax.enable_x64(True)`` (a per-example context, restored afterwards).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import decaytx

BF16 = np.dtype(ml_dtypes.bfloat16)
F16, F32, F64, C64, I32 = (np.dtype(d) for d in ("float16", "float32", "float64", "complex64", "int32"))

# Bounds that keep every exact result representable: squares (Adam) of f32
# values <= 2**50 stay below f32's max; f16's max is 65504.
BOUND = {F16: 64.0, BF16: 2.0**50, F32: 2.0**50, F64: 2.0**50, C64: 2.0**50}

# --- skeletons: (path-free) templates of leaves, nested as a user would --------

Leaf = tuple  # (dtype, shape)


def _skeletons() -> list[Any]:
    return [
        # a dense layer and a scalar
        {"dense": {"kernel": (F32, (2, 3)), "bias": (F32, (3,))}, "scale": (F32, ())},
        # list with None, a tuple, bf16/f16, zero-size 2D
        [(F16, (3,)), None, ((BF16, (2, 2)), (BF16, ())), (F32, (0, 3))],
        # complex, int, zero-size, nested tuple, None
        {"emb": (F32, (0,)), "c": (C64, (3,)), "i": (I32, (2,)), "n": None,
         "t": ((F32, ()), (C64, (2, 1)))},
        # float64 (x64) next to f32 and bf16
        {"w64": (F64, (2, 2)), "b64": (F64, (3,)), "x": [(F32, (2,)), (BF16, (1,))]},
    ]


SKELETONS = _skeletons()


def _is_spec(x: Any) -> bool:
    return x is None or (isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.dtype))


def _specs(skeleton: Any) -> list[Leaf | None]:
    return jax.tree.leaves(skeleton, is_leaf=_is_spec)


def _needs_x64(skeleton: Any) -> bool:
    return any(s is not None and s[0] == F64 for s in _specs(skeleton))


def _elements(dtype: np.dtype) -> st.SearchStrategy:
    if dtype == I32:
        return st.integers(-1000, 1000)
    if dtype == C64:
        return st.complex_numbers(max_magnitude=BOUND[C64], allow_nan=False, allow_infinity=False, width=64)
    width = 32 if dtype in (BF16, F32) else (16 if dtype == F16 else 64)
    b = BOUND[dtype]
    return st.floats(-b, b, allow_nan=False, allow_infinity=False, width=width)


def _array(spec: Leaf) -> st.SearchStrategy:
    dtype, shape = spec
    gen_dtype = F32 if dtype == BF16 else dtype  # hypothesis has no bf16
    return hnp.arrays(gen_dtype, shape, elements=_elements(dtype)).map(
        lambda a, dtype=dtype: a.astype(dtype)
    )


def _values(skeleton: Any) -> st.SearchStrategy:
    specs = _specs(skeleton)
    treedef = jax.tree.structure(skeleton, is_leaf=_is_spec)
    parts = [st.none() if s is None else _array(s) for s in specs]
    return st.tuples(*parts).map(lambda leaves: jax.tree.unflatten(treedef, list(leaves)))


# --- masks: callables, so the transforms (and their compilations) are shared -----


def _alternate(params: Any, start: bool = True) -> Any:
    flags = iter([(i % 2 == 0) == start for i in range(len(jax.tree.leaves(params, is_leaf=_none)))])
    return jax.tree.map(lambda _: next(flags), params, is_leaf=_none)


MASKS: dict[str, Any] = {
    "all": None,
    "ndim>=2": decaytx.masks.ndim_at_least(2),
    "even": functools.partial(_alternate, start=True),
    "odd": functools.partial(_alternate, start=False),
}

# --- transforms -------------------------------------------------------------------

SCHED = optax.cosine_decay_schedule(0.1, 50)

FORMS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "add_l2_grad": lambda m: decaytx.add_l2_grad(0.1, mask=m),
    "add_l2_grad.anchor": lambda m: decaytx.add_l2_grad(0.1, mask=m, anchor="init"),
    "add_l1_subgrad": lambda m: decaytx.add_l1_subgrad(SCHED, mask=m),
    "add_elastic_net_grad": lambda m: decaytx.add_elastic_net_grad(0.1, SCHED, mask=m),
    "add_decoupled_decay": lambda m: decaytx.add_decoupled_decay(0.5, learning_rate=SCHED, mask=m),
    "add_decoupled_decay.cautious": lambda m: decaytx.add_decoupled_decay(
        0.5, learning_rate=0.1, mask=m, cautious=True, anchor="init"),
    "prox_l1": lambda m: decaytx.prox_l1(1.0, learning_rate=SCHED, mask=m),
    "prox_elastic_net": lambda m: decaytx.prox_elastic_net(1.0, 0.5, mask=m, learning_rate=None),
}
RECIPES: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "sgd_l2": lambda m: decaytx.sgd_l2(SCHED, 0.1, momentum=0.9, mask=m),
    "sgdw": lambda m: decaytx.sgdw(SCHED, 0.1, momentum=0.9, mask=m, decay_scaling="schedule"),
    "adam_l2": lambda m: decaytx.adam_l2(1e-3, 0.1, mask=m),
    "adamw": lambda m: decaytx.adamw(SCHED, 0.1, mask=m, decay_scaling="corrected"),
    "proximal_sgd": lambda m: decaytx.proximal_sgd(0.1, 0.1, 0.1, mask=m),
}
RECIPES = {k: v for k, v in RECIPES.items() if hasattr(decaytx, k)}
# A recipe's undecayed leaves must get what the recipe's optimizer alone gives.
RECIPE_BASE: dict[str, Callable[[], optax.GradientTransformation]] = {
    "sgd_l2": lambda: optax.sgd(SCHED, momentum=0.9),
    "sgdw": lambda: optax.sgd(SCHED, momentum=0.9),
    "adam_l2": lambda: optax.adam(1e-3),
    "adamw": lambda: optax.adam(SCHED),
    "proximal_sgd": lambda: optax.sgd(0.1),
}
# Masks per tier-1 example: "all" (mask=None) and "even" (every other leaf,
# so across examples each leaf position is both decayed and masked). Tier 2
# uses all four.
FORM_MASKS = ("all", "even")
RECIPE_MASKS = ("even",)


@functools.cache
def _built(name: str, mask: str, x64: bool) -> tuple[optax.GradientTransformation, Callable, Callable]:
    """The transform and its jitted init/update, built once per (name, mask,
    x64) so that hypothesis examples share compilations."""
    del x64  # part of the key: x64 on/off compile separately
    make = FORMS.get(name) or RECIPES[name]
    t = make(MASKS[mask])
    return t, jax.jit(t.init), jax.jit(t.update)


@functools.cache
def _base_update(name: str, x64: bool) -> tuple[optax.GradientTransformation, Callable]:
    del x64
    t = RECIPE_BASE[name]()
    return t, jax.jit(t.update)


def _none(x: Any) -> bool:
    return x is None


def _avals(tree: Any) -> Any:
    return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


def _finite(x: Any) -> bool:
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        return True
    return bool(np.isfinite(x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)).all())


def _mask_flags(mask: str, params: Any) -> list[bool]:
    m = MASKS[mask]
    tree = jax.tree.map(lambda _: True, params, is_leaf=_none) if m is None else m(params)
    return jax.tree.leaves(tree, is_leaf=_none)


def _check(name: str, mask: str, skeleton: Any, params: Any, grads: Any, steps: int) -> None:
    x64 = _needs_x64(skeleton)
    if name in RECIPES:
        # optax's stateful stages change integer leaves' dtypes (see
        # test_long_runs): recipes are fuzzed on inexact leaves only.
        params = jax.tree.map(lambda p: None if p is None or p.dtype == I32 else p, params, is_leaf=_none)
        grads = jax.tree.map(lambda p: None if p is None or p.dtype == I32 else p, grads, is_leaf=_none)
    with jax.enable_x64(x64), warnings.catch_warnings():
        # bf16/f16 leaves with small factors warn by design (test_precision)
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        params = jax.tree.map(jnp.asarray, params)
        grads = jax.tree.map(jnp.asarray, grads)
        t, init, update = _built(name, mask, x64)
        state = init(params)
        state0 = _avals(state)
        if name in RECIPES:
            base, base_update = _base_update(name, x64)
            bstate = base.init(params)
        for _ in range(steps):
            out, state = update(grads, state, params)
            # masked, integer and None leaves are untouched (decay forms), or
            # get exactly the optimizer's own update (recipes)
            if name in RECIPES:
                expect, bstate = base_update(grads, bstate, params)
            else:
                expect = grads
            assert jax.tree.structure(out, is_leaf=_none) == jax.tree.structure(grads, is_leaf=_none)
            assert _avals(out) == _avals(grads), name
            assert _avals(state) == state0, name  # no drift of the state
            for u, e in zip(jax.tree.leaves(out), jax.tree.leaves(expect), strict=True):
                # finite in, finite out; a recipe may be non-finite only where
                # its optimizer alone is (optax's Adam is nan at g = 0 in f16:
                # eps = 1e-8 underflows)
                assert _finite(u) or not _finite(e), (name, u, e)
        flags = _mask_flags(mask, params)
        for f, p, u, e in zip(flags, jax.tree.leaves(params, is_leaf=_none),
                              jax.tree.leaves(out, is_leaf=_none),
                              jax.tree.leaves(expect, is_leaf=_none), strict=True):
            if p is None:
                assert u is None
            elif not f or not jnp.issubdtype(p.dtype, jnp.inexact):
                if name in RECIPES:
                    np.testing.assert_allclose(
                        np.asarray(u, np.complex128), np.asarray(e, np.complex128), rtol=1e-6, atol=0
                    )
                else:
                    np.testing.assert_array_equal(np.asarray(u), np.asarray(e))


ALL = list(FORMS) + list(RECIPES)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_jitted(name: str, data: st.DataObject) -> None:
    skeleton = data.draw(st.sampled_from(SKELETONS), label="skeleton")
    mask = data.draw(st.sampled_from(RECIPE_MASKS if name in RECIPES else FORM_MASKS), label="mask")
    params = data.draw(_values(skeleton), label="params")
    grads = data.draw(_values(skeleton), label="grads")
    steps = data.draw(st.integers(1, 2), label="steps")
    _check(name, mask, skeleton, params, grads, steps)


# --- tier 2: arbitrary structures ----------------------------------------------------

LEAF_VOCAB = [(F32, ()), (F32, (3,)), (F16, (2,)), (BF16, (2, 2)), (C64, (2,)), (I32, (2,)), (F32, (0,))]

trees = st.recursive(
    st.one_of(st.none(), st.sampled_from(LEAF_VOCAB)),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["kernel", "bias", "a", "b", "scale"]), children, min_size=1, max_size=3),
    ),
    max_leaves=6,
)


@pytest.mark.parametrize("name", list(FORMS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_arbitrary_trees(name: str, data: st.DataObject) -> None:
    skeleton = data.draw(trees.filter(lambda t: any(s is not None for s in _specs(t))), label="skeleton")
    mask = data.draw(st.sampled_from(tuple(MASKS)), label="mask")
    params = data.draw(_values(skeleton), label="params")
    grads = data.draw(_values(skeleton), label="grads")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        t = FORMS[name](MASKS[mask])
        params = jax.tree.map(jnp.asarray, params)
        grads = jax.tree.map(jnp.asarray, grads)
        state = t.init(params)
        eager, _ = t.update(grads, state, params)
        jitted, _ = jax.jit(t.update)(grads, state, params)
    for out in (eager, jitted):
        assert jax.tree.structure(out, is_leaf=_none) == jax.tree.structure(grads, is_leaf=_none)
        assert _avals(out) == _avals(grads)
        assert all(_finite(u) for u in jax.tree.leaves(out))
    flags = _mask_flags(mask, params)
    for f, p, u, g in zip(flags, jax.tree.leaves(params, is_leaf=_none),
                          jax.tree.leaves(jitted, is_leaf=_none),
                          jax.tree.leaves(grads, is_leaf=_none), strict=True):
        if p is not None and (not f or not jnp.issubdtype(p.dtype, jnp.inexact)):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(g))


def test_fuzz_covers_every_public_transform() -> None:
    forms = {n.split(".")[0] for n in FORMS}
    assert forms == {"add_l2_grad", "add_l1_subgrad", "add_elastic_net_grad",
                     "add_decoupled_decay", "prox_l1", "prox_elastic_net"}
    assert set(RECIPES) == {r for r in RECIPE_BASE if hasattr(decaytx, r)}


# --- tier 3: coefficients as arrays (inject_hyperparams), against NumPy --------------


def _np_soft(x: np.ndarray, tau: float) -> np.ndarray:
    return np.sign(x) * np.maximum(np.abs(x) - tau, 0.0)


# name -> (factory, hyperparameter names, float64 reference of the update)
INJECTED: dict[str, tuple[Callable[..., Any], tuple[str, ...], Callable[..., np.ndarray]]] = {
    "add_l2_grad": (decaytx.add_l2_grad, ("weight_decay",), lambda u, p, h: u + h["weight_decay"] * p),
    "add_l1_subgrad": (decaytx.add_l1_subgrad, ("l1",), lambda u, p, h: u + h["l1"] * np.sign(p)),
    "add_elastic_net_grad": (
        decaytx.add_elastic_net_grad, ("l1", "l2"),
        lambda u, p, h: u + h["l1"] * np.sign(p) + h["l2"] * p,
    ),
    "add_decoupled_decay": (
        decaytx.add_decoupled_decay, ("weight_decay", "learning_rate"),
        lambda u, p, h: u - h["learning_rate"] * h["weight_decay"] * p,
    ),
    "prox_l1": (
        decaytx.prox_l1, ("l1", "learning_rate"),
        lambda u, p, h: _np_soft(p + u, h["learning_rate"] * h["l1"]) - p,
    ),
    "prox_elastic_net": (
        decaytx.prox_elastic_net, ("l1", "l2", "learning_rate"),
        lambda u, p, h: _np_soft(p + u, h["learning_rate"] * h["l1"]) / (1 + h["learning_rate"] * h["l2"]) - p,
    ),
}


@functools.cache
def _injected(name: str) -> tuple[optax.GradientTransformation, Callable]:
    factory, names, _ = INJECTED[name]
    t = decaytx.inject_hyperparams(factory)(**{n: 0.5 for n in names})
    return t, jax.jit(t.update)


coefficient = st.one_of(st.just(0.0), st.floats(0.0, 2.0, width=32), st.floats(0.0, 2.0**-20, width=32))
vector = hnp.arrays(F32, (5,), elements=st.floats(-1e3, 1e3, width=32))


@pytest.mark.parametrize("name", list(INJECTED))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_array_coefficients_against_numpy(name: str, data: st.DataObject) -> None:
    """Coefficients arriving as arrays (optax.inject_hyperparams state, set
    between steps, including an array zero, which has no fast path) give the
    float64 formula of DESIGN section 1, to f32 rounding, under jit."""
    _, names, ref = INJECTED[name]
    t, update = _injected(name)
    h = {n: data.draw(coefficient, label=n) for n in names}
    p = data.draw(vector, label="params")
    u = data.draw(vector, label="updates")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        state = t.init(jnp.asarray(p))
    for n in names:
        state.hyperparams[n] = jnp.asarray(h[n], jnp.float32)
    out, _ = update(jnp.asarray(u), state, jnp.asarray(p))
    h64 = {n: float(np.float32(v)) for n, v in h.items()}
    # XLA on CPU treats subnormal inputs as zero (DAZ) and flushes subnormal
    # results (FTZ): sign(1e-45) is 0 there. The reference does the same.
    tiny = float(np.finfo(np.float32).tiny)
    u64, p64 = (np.where(np.abs(x) < tiny, 0.0, x.astype(np.float64)) for x in (u, p))
    expected = ref(u64, p64, h64)
    # the terms' sizes: |u|, |theta| (times the factors) and, for L1 forms,
    # the threshold or lambda*|sign(theta)|
    l1_term = h64.get("l1", 0.0) * h64.get("learning_rate", 1.0)
    scale = np.abs(u64) + np.abs(p64) * (1 + sum(h64.values())) ** 2 + l1_term
    err = np.abs(np.asarray(out, np.float64) - expected)
    assert (err <= 4 * 2**-23 * scale + tiny).all(), (h, p, u)


# --- tier 4: coefficient trees, anchors, mixed param/update dtypes, against NumPy -----
#
# One fixed skeleton (a dense layer and a scale); drawn per example: the
# params' and updates' dtypes (f32/f32, f32 params with bf16 updates -- master
# weights --, bf16 params with f32 updates), the coefficient as a scalar, a
# prefix tree (of floats, zeros and a schedule) or per_leaf, the anchor
# (none, "init", a user tree) and the mask. Run eagerly: every example builds
# a new transform, and eager ops are cached across examples where a jit is not.

PATHS = ("dense/kernel", "dense/bias", "scale")
SHAPES4 = {"dense/kernel": (2, 3), "dense/bias": (3,), "scale": ()}
DTYPE_PAIRS = ((F32, F32), (F32, BF16), (BF16, F32))  # (params, updates)
LEAF_COEF = st.sampled_from([0.0, 0.25, 1.0, "sched"])


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    return {"dense": {"kernel": flat["dense/kernel"], "bias": flat["dense/bias"]}, "scale": flat["scale"]}


def _coef_value(c: Any) -> Any:
    return SCHED if c == "sched" else c


@st.composite
def coefficient_trees(draw: st.DrawFn) -> tuple[Any, dict[str, float]]:
    """(the coefficient as given, its float value at step 0 for each path)."""
    kind = draw(st.sampled_from(["scalar", "prefix", "full", "per_leaf"]), label="coefficient kind")
    at0 = lambda c: float(np.float32(SCHED(0) if c == "sched" else c))  # noqa: E731
    if kind == "scalar":
        c = draw(LEAF_COEF.filter(lambda c: c != 0.0))
        return _coef_value(c), dict.fromkeys(PATHS, at0(c))
    if kind == "prefix":
        dense, scale = draw(LEAF_COEF), draw(LEAF_COEF)
        return ({"dense": _coef_value(dense), "scale": _coef_value(scale)},
                {"dense/kernel": at0(dense), "dense/bias": at0(dense), "scale": at0(scale)})
    flat = {p: draw(LEAF_COEF, label=p) for p in PATHS}
    values = {p: at0(c) for p, c in flat.items()}
    if kind == "full":
        return _nest({p: _coef_value(c) for p, c in flat.items()}), values
    return decaytx.per_leaf(lambda path, leaf, flat=flat: _coef_value(flat[path])), values


def _soft64(x: np.ndarray, tau: float) -> np.ndarray:
    return np.sign(x) * np.maximum(np.abs(x) - tau, 0.0)


# name -> (build(coef, mask, anchor), float64 reference (u, p, a, c), takes an anchor)
TREE_FORMS: dict[str, tuple[Callable[..., Any], Callable[..., np.ndarray], bool]] = {
    "add_l2_grad": (lambda c, m, a: decaytx.add_l2_grad(c, mask=m, anchor=a),
                    lambda u, p, a, c: u + c * (p - a), True),
    "add_decoupled_decay": (
        lambda c, m, a: decaytx.add_decoupled_decay(c, learning_rate=0.5, mask=m, anchor=a),
        lambda u, p, a, c: u - np.float64(np.float32(0.5 * c)) * (p - a), True),
    "add_elastic_net_grad": (
        lambda c, m, a: decaytx.add_elastic_net_grad(c, 0.5, mask=m),
        lambda u, p, a, c: u + c * np.sign(p) + 0.5 * p, False),
    "prox_l1": (lambda c, m, a: decaytx.prox_l1(c, learning_rate=None, mask=m),
                lambda u, p, a, c: _soft64(p + u, c) - p, False),
}


def _leaf_values(dtype: np.dtype, shape: tuple[int, ...]) -> st.SearchStrategy:
    # No subnormals: XLA on CPU reads them as zero (DAZ, see tier 3).
    values = st.floats(-4, 4, width=32).map(lambda x: 0.0 if abs(x) < 2.0**-20 else x)
    return hnp.arrays(F32, shape, elements=values).map(lambda a: a.astype(dtype))


@pytest.mark.parametrize("name", list(TREE_FORMS))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_coefficient_trees_anchors_mixed_dtypes(name: str, data: st.DataObject) -> None:
    build, ref, anchored = TREE_FORMS[name]
    pd, ud = data.draw(st.sampled_from(DTYPE_PAIRS), label="(params, updates) dtypes")
    given_coef, c_at = data.draw(coefficient_trees(), label="coefficient")
    mask_name = data.draw(st.sampled_from(["all", "ndim>=2"]), label="mask")
    draw = lambda dt, label: {p: data.draw(_leaf_values(dt, s), label=f"{label} {p}")  # noqa: E731
                              for p, s in SHAPES4.items()}
    p0, p1, u = draw(pd, "params0"), draw(pd, "params"), draw(ud, "updates")
    anchor_kind = data.draw(st.sampled_from(["none", "init", "tree"] if anchored else ["none"]),
                            label="anchor")
    user = draw(F32, "anchor") if anchor_kind == "tree" else None
    anchor = {"none": None, "init": "init", "tree": None if user is None else _nest(
        {k: jnp.asarray(v) for k, v in user.items()})}[anchor_kind]
    j = lambda flat: _nest({k: jnp.asarray(v) for k, v in flat.items()})  # noqa: E731
    with warnings.catch_warnings():
        # bf16 leaves with small factors warn by design (test_precision)
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        t = build(given_coef, MASKS[mask_name], anchor)
        state = t.init(j(p0))
        state0 = _avals(state)
        out, state = t.update(j(u), state, j(p1))
    assert jax.tree.structure(out) == jax.tree.structure(j(u))
    assert _avals(state) == state0
    wider_out = name == "prox_l1" and jnp.promote_types(pd, ud) == pd  # theta + u exactly S
    for path in PATHS:
        o = out["scale"] if path == "scale" else out["dense"][path.split("/")[1]]
        uu, pp = u[path].astype(np.float64), p1[path].astype(np.float64)
        # (the elastic net's l2 = 0.5 decays a leaf whose l1 is zero)
        decayed = (c_at[path] != 0.0 or name == "add_elastic_net_grad") and (
            mask_name == "all" or len(SHAPES4[path]) >= 2)
        assert o.shape == SHAPES4[path]
        assert o.dtype == (pd if wider_out and decayed else ud), (path, o.dtype)
        assert _finite(o)
        if not decayed:  # masked leaves and concrete-zero coefficients: untouched
            np.testing.assert_array_equal(np.asarray(o), u[path], err_msg=path)
            continue
        a = {"none": np.zeros_like(pp), "init": p0[path].astype(np.float64),
             "tree": None if user is None else user[path].astype(pd).astype(np.float64)}[anchor_kind]
        expected = ref(uu, pp, a, c_at[path])
        eps = float(ml_dtypes.finfo(o.dtype).eps)
        scale = np.abs(uu) + np.abs(pp) * (1 + c_at[path]) + np.abs(a) * c_at[path] + c_at[path]
        err = np.abs(np.asarray(o, np.float64) - expected)
        assert (err <= 2 * eps * scale + 1e-30).all(), (path, o, expected)


# --- tier 5: mask rules and the audit, on arbitrary trees ----------------------------
#
# Masks built from decaytx's rules (patterns, shape rules with stacked axes,
# presets, & | ~) on hypothesis trees, against the same rules written out on
# each leaf's "/" path and shape; and the audit on a chain decayed by that
# mask: it runs, and its rows decay exactly the float leaves the mask selects.


KEYS = ["kernel", "bias", "a", "b", "scale"]


def _rule(draw: Any) -> tuple[Any, Any]:
    """A decaytx mask and the same rule on (path, shape, dtype), drawn together."""
    kind = draw(st.sampled_from(["include", "exclude", "matrices", "ndim", "preset"]))
    if kind in ("include", "exclude"):
        key = draw(st.sampled_from(KEYS))
        pat = f"(^|/){key}$"
        hit = lambda path, shape: re.search(pat, path) is not None  # noqa: E731
        mask = getattr(decaytx.masks, kind)(pat)
        return mask, (hit if kind == "include" else (lambda path, shape: not hit(path, shape)))
    if kind == "preset":
        return decaytx.masks.preset("nanogpt"), (lambda path, shape: len(shape) >= 2)
    k = draw(st.integers(0, 1))
    if kind == "matrices":
        return (decaytx.masks.matrices(stacked_axes=k),
                lambda path, shape: sum(d > 1 for d in shape[k:]) >= 2)
    n = draw(st.integers(1, 2))
    return decaytx.masks.ndim_at_least(n, stacked_axes=k), (lambda path, shape: len(shape) - k >= n)


@st.composite
def _masks(draw: Any, depth: int = 2) -> tuple[Any, Any]:
    if depth == 0 or draw(st.booleans()):
        return _rule(draw)
    op = draw(st.sampled_from(["&", "|", "~"]))
    a, fa = draw(_masks(depth - 1))
    if op == "~":
        return ~a, (lambda path, shape: not fa(path, shape))
    b, fb = draw(_masks(depth - 1))
    if op == "&":
        return a & b, (lambda path, shape: fa(path, shape) and fb(path, shape))
    return a | b, (lambda path, shape: fa(path, shape) or fb(path, shape))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_mask_rules_and_the_audit_on_arbitrary_trees(data: st.DataObject) -> None:
    skeleton = data.draw(trees.filter(lambda t: any(s is not None for s in _specs(t))), label="skeleton")
    params = jax.tree.map(jnp.asarray, data.draw(_values(skeleton), label="params"))
    mask, rule = data.draw(_masks(), label="mask")
    flat = jax.tree_util.tree_flatten_with_path(params, is_leaf=_none)[0]
    got = jax.tree.leaves(mask(params), is_leaf=_none)
    want = [None if p is None else rule(decaytx.masks.path_of(k), tuple(p.shape)) for k, p in flat]
    assert [g if w is not None else None for g, w in zip(got, want)] == want
    decayed = {decaytx.masks.path_of(k) for (k, p), w in zip(flat, want)
               if w and p is not None and jnp.issubdtype(p.dtype, jnp.inexact)}
    opt = optax.chain(optax.sgd(0.1), decaytx.add_decoupled_decay(0.1, learning_rate=0.1, mask=mask))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        report = decaytx.audit(opt, params)
    def norm(path: str) -> str:
        return "" if path in ("", "<root>") else path

    assert {norm(r.path) for r in report.rows} <= {decaytx.masks.path_of(k) for k, p in flat if p is not None}
    assert {norm(r.path) for r in report.rows if r.transform is not None} == decayed
    str(report)  # renders
