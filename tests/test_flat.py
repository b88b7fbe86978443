"""The flat-moments layout (``layout="flat"``) equals the tree recipes.

``decaytx.fused.adamw(..., layout="flat")`` and ``fused_adam_l2`` keep Adam's
moments in one flat buffer per dtype; the decay stages are decaytx's own
per-leaf transforms. The references are ``decaytx.adamw`` / ``decaytx.adam_l2``
(``optax.scale_by_adam`` chained with decaytx's decay stages, per leaf) and
``optax.adamw`` (independent: decay before the lr scaling, equal to rounding).
The flat step does the same elementwise maths on the concatenated buffer;
the bound asserted over 50 steps (f32, bf16, bf16 params with f32 first
moments, mixed-dtype leaves, a mask, a coefficient tree, a schedule,
``anchor="init"``, integer, ``None`` and zero-size leaves) is 8 ulps of each
leaf's largest value, for params and both moments. Measured here: 0 for
bf16 and for most mixed-dtype cases; up to 0.5 ulp on f32 params and up to
4.4 ulps on Adam-L2's second moment (XLA:CPU compiles the same elementwise
expressions differently in one whole-buffer kernel than per leaf; the source
of each ulp was not traced further).

The ``layout="auto"`` rule runs at init; without the multi-output-fusion flag
it is the tree layout (the recipe's state). With the flag (a subprocess: the
flag is process-wide) it picks the flat layout on a tree of small leaves and
the tree layout on large ones.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _flagged import run_worker

import decaytx
from decaytx.fused import FLAT_MEAN_LEAF_SIZE, many_small_leaves
from decaytx.fused._flat import FlatAdamState, scale_by_adam_flat

STEPS = 50
SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 6, STEPS)
MASK = decaytx.masks.ndim_at_least(2)  # decays w and h/k, not b, h/s (nor the odd leaves)
ULPS = 8.0
COEF_TREE = {"w": 0.2, "b": 0.0, "h": 0.05}

# name -> (fused factory taking layout=, recipe)
CASES: dict[str, tuple[Any, Any]] = {
    "adamw-schedule-mask": (lambda lo: decaytx.fused.adamw(SCHEDULE, 0.1, mask=MASK, layout=lo),
                            lambda: decaytx.adamw(SCHEDULE, 0.1, mask=MASK)),
    "adamw-coef-tree": (lambda lo: decaytx.fused.adamw(1e-2, COEF_TREE, layout=lo),
                        lambda: decaytx.adamw(1e-2, COEF_TREE)),
    "adamw-anchor-cautious": (
        lambda lo: decaytx.fused.adamw(SCHEDULE, 0.1, anchor="init", cautious=True, decay_scaling="schedule",
                                       layout=lo),
        lambda: decaytx.adamw(SCHEDULE, 0.1, anchor="init", cautious=True, decay_scaling="schedule")),
    "adam_l2-schedule-mask": (lambda lo: decaytx.fused.adam_l2(SCHEDULE, 0.1, mask=MASK, layout=lo),
                              lambda: decaytx.adam_l2(SCHEDULE, 0.1, mask=MASK)),
    "adam_l2-anchor-coef-tree": (
        lambda lo: decaytx.fused.adam_l2(1e-2, COEF_TREE, anchor="init", layout=lo),
        lambda: optax.chain(decaytx.add_l2_grad(COEF_TREE, anchor="init"), optax.scale_by_adam(),
                            optax.scale_by_learning_rate(1e-2))),
}


def _params(dtype: Any, mixed: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    other = jnp.bfloat16 if mixed else dtype
    return {"w": jnp.asarray(rng.standard_normal((12, 16)), dtype),
            "b": jnp.asarray(rng.standard_normal(16), dtype),
            "h": {"k": jnp.asarray(rng.standard_normal((4, 5, 3)), other),
                  "s": jnp.asarray(rng.standard_normal(7), dtype)}}


def _odd_params() -> dict[str, Any]:
    """Mixed dtypes with an integer, a None and a zero-size leaf."""
    p = _params(jnp.float32, mixed=True)
    p["h"].update(step=jnp.arange(3, dtype=jnp.int32), none=None, empty=jnp.zeros((0, 4), jnp.float32))
    return p


def _grads(i: int, params: Any) -> Any:
    rng = np.random.default_rng(1000 + i)

    def one(x: Any) -> Any:
        if x is None:
            return None
        if not jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.zeros_like(x)
        return jnp.asarray(rng.standard_normal(x.shape), x.dtype)

    return jax.tree.map(one, params, is_leaf=lambda x: x is None)


def _run(opt: optax.GradientTransformation, params: Any, steps: int = STEPS) -> tuple[Any, Any]:
    def step(p: Any, s: Any, g: Any) -> Any:
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(step)
    s = opt.init(params)
    p = params
    for i in range(steps):
        p, s = step(p, s, _grads(i, p))
    return p, s


def _ulps(a: Any, b: Any) -> float:
    """Largest ``|a - b| / (eps * max|a|)`` over the leaves (0 for equal trees).

    Same structure, dtypes and shapes are asserted; integer leaves must be equal.
    """
    la = jax.tree.leaves(a, is_leaf=lambda x: x is None)
    lb = jax.tree.leaves(b, is_leaf=lambda x: x is None)
    assert jax.tree.structure(a, is_leaf=lambda x: x is None) == jax.tree.structure(b, is_leaf=lambda x: x is None)
    worst = 0.0
    for x, y in zip(la, lb, strict=True):
        if x is None:
            assert y is None
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, (x.dtype, y.dtype, x.shape, y.shape)
        if x.size == 0:
            continue
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            np.testing.assert_array_equal(x64, y64)
            continue
        fi = jnp.finfo(x.dtype)
        scale = max(float(np.max(np.abs(x64))), float(fi.tiny))
        worst = max(worst, float(np.max(np.abs(x64 - y64) / (float(fi.eps) * scale))))
    return worst


def _moments_as_tree(state: Any, params: Any) -> tuple[list[Any], list[Any]]:
    """The flat state's moments split back into the params' leaf order (for comparison)."""
    flat = next(s for s in state if isinstance(s, FlatAdamState))
    leaves = jax.tree.leaves(params, is_leaf=lambda x: x is None)
    out = []
    for moment in (flat.mu, flat.nu):
        buffers, rest = moment
        index: dict[Any, int] = {}
        at: dict[Any, int] = {}
        col, it = [], iter(rest)
        for x in leaves:
            if x is not None and jnp.issubdtype(x.dtype, jnp.floating) and x.size > 0:
                key = jnp.dtype(x.dtype)
                index.setdefault(key, len(index))
                start = at.get(key, 0)
                col.append(buffers[index[key]][start:start + x.size].reshape(x.shape))
                at[key] = start + x.size
            else:
                col.append(next(it))
        out.append(col)
    return out[0], out[1]


@pytest.mark.parametrize(("name", "kind"), [(n, "f32") for n in CASES] + [
    ("adamw-schedule-mask", "bf16"), ("adam_l2-schedule-mask", "bf16"),
    ("adamw-schedule-mask", "mixed"), ("adamw-anchor-cautious", "mixed"), ("adam_l2-anchor-coef-tree", "mixed")])
def test_flat_equals_the_recipe_over_50_steps(name: str, kind: str):
    fused, recipe = CASES[name]
    params = _odd_params() if kind == "mixed" else _params(jnp.float32 if kind == "f32" else jnp.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)  # bf16 decay resolution
        p_ref, s_ref = _run(recipe(), params)
        p_flat, s_flat = _run(fused("flat"), params)
    gaps = [_ulps(p_ref, p_flat)]
    adam = next(s for s in jax.tree.leaves(s_ref, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
                if isinstance(s, optax.ScaleByAdamState))
    mu, nu = _moments_as_tree(s_flat, params)
    gaps += [_ulps(jax.tree.leaves(adam.mu, is_leaf=lambda x: x is None), mu),
             _ulps(jax.tree.leaves(adam.nu, is_leaf=lambda x: x is None), nu)]
    assert max(gaps) <= ULPS, gaps


def test_bf16_params_with_f32_first_moment_equal_optax_scale_by_adam():
    params = _params(jnp.bfloat16)
    for opt_ref, opt_flat in [(optax.scale_by_adam(mu_dtype=jnp.float32), scale_by_adam_flat(mu_dtype=jnp.float32)),
                              (optax.scale_by_adam(nesterov=True, eps_root=1e-8),
                               scale_by_adam_flat(nesterov=True, eps_root=1e-8))]:
        s_ref, s_flat = opt_ref.init(params), opt_flat.init(params)
        for i in range(20):
            g = _grads(i, params)
            u_ref, s_ref = jax.jit(opt_ref.update)(g, s_ref)
            u_flat, s_flat = jax.jit(opt_flat.update)(g, s_flat)
            assert _ulps(u_ref, u_flat) <= ULPS
        assert all(b.dtype == s_ref.mu["w"].dtype for b in s_flat.mu[0])


def test_flat_against_optax_adamw():
    # Independent of decaytx's chain: optax.adamw decays before the lr scaling.
    params = _params(jnp.float32)
    p, _ = _run(decaytx.fused.adamw(SCHEDULE, 0.1, layout="flat"), params)
    q, _ = _run(optax.adamw(SCHEDULE, weight_decay=0.1), params)
    for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(q), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_flat_under_lax_scan_keeps_state_dtypes_and_equals_the_recipe():
    params = _params(jnp.float32, mixed=True)
    grads = [_grads(i, params) for i in range(12)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads)

    def run(opt: optax.GradientTransformation) -> tuple[Any, Any]:
        def body(carry: Any, g: Any) -> Any:
            p, s = carry
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", decaytx.DecayWarning)
            return jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), stacked)[0])(params)

    flat = decaytx.fused.adamw(SCHEDULE, 0.1, mask=MASK, layout="flat")
    p_flat, s_flat = run(flat)
    p_ref, _ = run(decaytx.adamw(SCHEDULE, 0.1, mask=MASK))
    assert _ulps(p_ref, p_flat) <= ULPS
    init = flat.init(params)
    assert [x.dtype for x in jax.tree.leaves(init)] == [x.dtype for x in jax.tree.leaves(s_flat)]
    assert [b.shape for b in s_flat[0].mu[0]] == [(12 * 16 + 16 + 7,), (60,)]  # f32 buffer, bf16 buffer


def test_auto_without_the_flag_is_the_tree_layout():
    if "multi_output" in os.environ.get("XLA_FLAGS", ""):
        pytest.skip("this process runs with the multi-output-fusion flag")
    small = _many_small()
    assert many_small_leaves(small)
    for fused, recipe in [(decaytx.fused.adamw(1e-3, 0.1), decaytx.adamw(1e-3, 0.1)),
                          (decaytx.fused.adam_l2(1e-3, 0.1), decaytx.adam_l2(1e-3, 0.1))]:
        s = fused.init(small)
        assert jax.tree.structure(s) == jax.tree.structure(recipe.init(small))
        assert not any(isinstance(x, FlatAdamState) for x in s)


def _many_small() -> dict[str, Any]:
    return {f"l{i}": {"kernel": jnp.zeros((8, 10)), "bias": jnp.zeros(10)} for i in range(30)}


def test_the_auto_rule_is_the_mean_float_leaf_size():
    big = {"w": jax.ShapeDtypeStruct((FLAT_MEAN_LEAF_SIZE,), jnp.float32)}
    assert not many_small_leaves(big)
    assert many_small_leaves({"w": jax.ShapeDtypeStruct((FLAT_MEAN_LEAF_SIZE - 1,), jnp.float32)})
    # integer, None and zero-size leaves do not count
    assert not many_small_leaves({**big, "n": jnp.arange(3), "z": jnp.zeros(0), "x": None})
    assert not many_small_leaves({"n": jnp.arange(3)})


def test_a_state_of_the_other_layout_is_refused_naming_layout():
    params = _params(jnp.float32)
    g = _grads(0, params)
    for factory in (decaytx.fused.adamw, decaytx.fused.adam_l2):
        flat, tree = factory(1e-3, 0.1, layout="flat"), factory(1e-3, 0.1, layout="tree")
        with pytest.raises(ValueError, match=r"layout='flat'.*tree-layout state.*layout='tree'"):
            flat.update(g, tree.init(params), params)
        with pytest.raises(ValueError, match=r"layout='tree'.*flat-moments state.*layout='flat'"):
            tree.update(g, flat.init(params), params)
    # the transform itself, and a state for another tree
    opt = scale_by_adam_flat()
    with pytest.raises(ValueError, match=r"layout='flat'.*ScaleByAdamState"):
        opt.update(g, optax.scale_by_adam().init(params), params)
    with pytest.raises(ValueError, match=r"sizes \[\d+\].*state holds \[\d+\].*different params tree"):
        opt.update({"w": g["w"]}, opt.init(params), {"w": params["w"]})
    with pytest.raises(ValueError, match=r"one dtype.*layout='tree'"):
        opt.update({**g, "b": g["b"].astype(jnp.bfloat16)}, opt.init(params), params)


@pytest.mark.parametrize("factory", [decaytx.fused.adamw, decaytx.fused.adam_l2, decaytx.fused.sgdw,
                                     decaytx.fused.sgd_l2])
def test_fused_factories_take_a_coefficient_tree_as_the_recipes_do(factory: Any):
    # Regression: fused_* raised TypeError (float() of a dict) on a coefficient
    # tree at construction. The sibling form now fuses it, on the recipe's own
    # plan: the recipe's values within the fused steps' bound (8 ulps, XLA's
    # FMA contraction; tests/test_fused.py), and bitwise with "plain".
    params = _params(jnp.float32)
    recipe = {decaytx.fused.adamw: decaytx.adamw, decaytx.fused.adam_l2: decaytx.adam_l2,
              decaytx.fused.sgdw: decaytx.sgdw, decaytx.fused.sgd_l2: decaytx.sgd_l2}[factory]
    b = _run(recipe(1e-2, COEF_TREE), params, 10)
    assert _ulps(_run(factory(1e-2, COEF_TREE, formulation="sibling"), params, 10), b) <= 8.0
    assert _ulps(_run(factory(1e-2, COEF_TREE, formulation="plain"), params, 10), b) == 0.0
    c = _run(factory(1e-2, decaytx.per_leaf(lambda path, x: 0.1 * x.ndim)), params, 10)
    d = _run(recipe(1e-2, decaytx.per_leaf(lambda path, x: 0.1 * x.ndim)), params, 10)
    assert _ulps(c, d) == 0.0


def test_bad_layout_is_refused_before_tracing():
    with pytest.raises(ValueError, match=r"layout='flatter'.*'auto'.*'tree'.*'flat'"):
        decaytx.fused.adamw(1e-3, 0.1, layout="flatter")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match=r"layout=None"):
        decaytx.fused.adam_l2(1e-3, 0.1, layout=None)  # pyright: ignore[reportArgumentType]


def test_with_the_flag_auto_picks_flat_on_small_leaves_only():
    data = run_worker(__file__, "--worker", timeout=300)
    gap = data.pop("gap")
    assert data == {"active": True, "small": True, "large": False, "plain": False}
    assert 0.0 <= gap <= ULPS, gap


def _worker() -> dict[str, Any]:
    small = _many_small()
    large = {"w": jnp.zeros((300, 300)), "b": jnp.zeros(300 * 300)}

    def is_flat(opt: optax.GradientTransformation, params: Any) -> bool:
        return any(isinstance(x, FlatAdamState) for x in opt.init(params))

    auto = decaytx.fused.adamw(SCHEDULE, 0.1, mask=MASK)
    params = _params(jnp.float32)
    p_auto, s_auto = _run(auto, params, 20)
    p_ref, _ = _run(decaytx.adamw(SCHEDULE, 0.1, mask=MASK), params, 20)
    gap = _ulps(p_ref, p_auto) if is_flat(auto, params) else -1.0
    return {"active": decaytx.fused.multi_output_fusion_active(),
            "small": is_flat(decaytx.fused.adam_l2(1e-3, 0.1), small),
            "large": is_flat(decaytx.fused.adamw(1e-3, 0.1), large),
            "plain": is_flat(decaytx.fused.adamw(1e-3, 0.1, formulation="plain"), small),
            "gap": gap}


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    print(json.dumps(_worker()))
