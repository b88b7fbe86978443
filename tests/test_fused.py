"""The fused steps equal their recipes: values, state, fallback, errors.

``decaytx.fused_*`` promise the recipe's numbers to float32 rounding. The
bound, measured and asserted here over 100 steps with a warmup-cosine schedule
and a mask (one leaf decayed, one not), with and without an anchor: every parameter and moment within
``8 * eps * max|leaf|`` of the recipe's (8 ulps of the leaf's largest value,
at the leaf dtype's eps; measured: under 1 without the flag, up to 5.1 with
it, 0 for bfloat16). The SGD forms are bitwise equal. Where
the values differ at all it is XLA:CPU's choice of instruction contraction
(FMA) inside a kernel, which differs between one kernel and three.

The fused formulation is checked in this process (no flag: it runs as
separate kernels, same maths) and in a subprocess with
``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion`` (the
flag is process-wide), where ``formulation="auto"`` takes it. ``optax.adamw``
is the independent reference.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _flagged import run_worker

import decaytx

STEPS = 100
SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, STEPS)
MASK = {"w": True, "b": False}
LR_TREE = {"w": SCHEDULE, "b": optax.cosine_decay_schedule(3e-3, STEPS)}
WD_TREE = {"w": 0.1, "b": 0.02}

# name -> (fused factory taking formulation=, recipe factory)
CASES: dict[str, tuple[Any, Any]] = {
    "adamw": (lambda fo: decaytx.fused.adamw(SCHEDULE, 0.1, mask=MASK, formulation=fo, layout="tree"),
              lambda: decaytx.adamw(SCHEDULE, 0.1, mask=MASK)),
    "adamw-cautious-schedule": (
        lambda fo: decaytx.fused.adamw(SCHEDULE, 0.1, cautious=True, decay_scaling="schedule", formulation=fo,
                                       layout="tree"),
        lambda: decaytx.adamw(SCHEDULE, 0.1, cautious=True, decay_scaling="schedule")),
    "adam_l2": (lambda fo: decaytx.fused.adam_l2(SCHEDULE, 0.1, mask=MASK, formulation=fo, layout="tree"),
                lambda: decaytx.adam_l2(SCHEDULE, 0.1, mask=MASK)),
    "sgdw": (lambda fo: decaytx.fused.sgdw(SCHEDULE, 0.1, momentum=0.9, mask=MASK, formulation=fo),
             lambda: decaytx.sgdw(SCHEDULE, 0.1, momentum=0.9, mask=MASK)),
    "sgd_l2-nesterov": (
        lambda fo: decaytx.fused.sgd_l2(SCHEDULE, 0.1, momentum=0.9, nesterov=True, mask=MASK, formulation=fo),
        lambda: decaytx.sgd_l2(SCHEDULE, 0.1, momentum=0.9, nesterov=True, mask=MASK)),
    # Anchored (decay toward the init): the recipe where it takes anchor=,
    # else the same chain written out from decaytx's transforms.
    "adamw-anchor": (lambda fo: decaytx.fused.adamw(SCHEDULE, 0.1, mask=MASK, anchor="init", formulation=fo,
                                                          layout="tree"),
                     lambda: decaytx.adamw(SCHEDULE, 0.1, mask=MASK, anchor="init")),
    "sgd_l2-anchor": (
        lambda fo: decaytx.fused.sgd_l2(SCHEDULE, 0.1, momentum=0.9, mask=MASK, anchor="init", formulation=fo),
        lambda: optax.chain(decaytx.add_l2_grad(0.1, mask=MASK, anchor="init"), optax.trace(0.9),
                            optax.scale_by_learning_rate(SCHEDULE))),
    # Per-leaf learning rates (the sibling form scales each leaf by its own
    # rate from the recipe's learning-rate plan; the decay follows it).
    "adamw-per-leaf-lr": (
        lambda fo: decaytx.fused.adamw(LR_TREE, WD_TREE, formulation=fo, layout="tree"),
        lambda: decaytx.adamw(LR_TREE, WD_TREE)),
    "adam_l2-per-leaf-lr": (
        lambda fo: decaytx.fused.adam_l2(LR_TREE, WD_TREE, formulation=fo, layout="tree"),
        lambda: decaytx.adam_l2(LR_TREE, WD_TREE)),
    "sgdw-per-leaf-lr": (
        lambda fo: decaytx.fused.sgdw(LR_TREE, WD_TREE, momentum=0.9, decay_scaling="schedule", formulation=fo),
        lambda: decaytx.sgdw(LR_TREE, WD_TREE, momentum=0.9, decay_scaling="schedule")),
    "sgd_l2-per-leaf-lr": (
        lambda fo: decaytx.fused.sgd_l2(LR_TREE, WD_TREE, momentum=0.9, formulation=fo),
        lambda: decaytx.sgd_l2(LR_TREE, WD_TREE, momentum=0.9)),
}
BITWISE = {"sgdw", "sgd_l2-nesterov", "sgd_l2-anchor", "sgdw-per-leaf-lr", "sgd_l2-per-leaf-lr"}


def _params(dtype: Any) -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.standard_normal((32, 64)), dtype),
            "b": jnp.asarray(rng.standard_normal(64), dtype)}


def _grads(i: int, params: dict[str, jax.Array]) -> dict[str, jax.Array]:
    rng = np.random.default_rng(1000 + i)
    return {k: jnp.asarray(rng.standard_normal(v.shape), v.dtype) for k, v in params.items()}


def _run(opt: optax.GradientTransformation, params: Any, steps: int = STEPS, state: Any = None,
         start: int = 0) -> tuple[Any, Any]:
    def step(p: Any, s: Any, g: Any) -> Any:
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(step)
    s = opt.init(params) if state is None else state
    p = params
    for i in range(start, start + steps):
        p, s = step(p, s, _grads(i, p))
    return p, s


def worst_gap(a: Any, b: Any) -> float:
    """Largest |a - b| / (eps * max|a|) per leaf: the gap in ulps of the leaf's scale."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            assert bool(jnp.all(x == y))
            continue
        fi = jnp.finfo(x.dtype)
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        scale = max(float(np.max(np.abs(x64))), float(fi.tiny))
        worst = max(worst, float(np.max(np.abs(x64 - y64) / (float(fi.eps) * scale))))
    return worst


def compare_all(formulation: str) -> dict[str, float]:
    """Ulp gap after 100 steps, fused vs recipe, for every case and dtype."""
    out = {}
    import warnings

    for dtype in (jnp.float32, jnp.bfloat16):
        params = _params(dtype)
        for name, (fused, recipe) in CASES.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", decaytx.DecayWarning)  # bf16 decay resolution
                a = _run(recipe(), params)
                b = _run(fused(formulation), params)
            assert jax.tree.structure(a[1]) == jax.tree.structure(b[1])
            out[f"{jnp.dtype(dtype).name}/{name}"] = worst_gap(a, b)
    return out


def _check_gaps(gaps: dict[str, float]) -> None:
    for key, gap in gaps.items():
        if key.split("/")[1] in BITWISE:
            assert gap == 0.0, (key, gap)
        else:
            assert gap <= 8.0, (key, gap)


def test_sibling_formulation_matches_recipe_over_100_steps():
    _check_gaps(compare_all("sibling"))


def test_with_the_flag_auto_takes_the_fused_form_and_matches_recipe():
    data = run_worker(__file__, "--worker", timeout=600)
    assert data["active"] is True
    _check_gaps(data["gaps"])


def test_fused_adamw_against_optax_adamw():
    # The independent reference: optax.adamw (decay before the lr scaling, so
    # equal up to rounding), with the same schedule and mask.
    params = _params(jnp.float32)
    p, _ = _run(decaytx.fused.adamw(SCHEDULE, 0.1, mask=MASK, formulation="sibling"), params)
    q, _ = _run(optax.adamw(SCHEDULE, weight_decay=0.1, mask=MASK), params)
    for k in p:
        np.testing.assert_allclose(np.asarray(p[k]), np.asarray(q[k]), rtol=1e-5, atol=1e-6)


def test_state_is_the_recipes_and_a_checkpoint_moves_both_ways():
    params = _params(jnp.float32)
    fused = decaytx.fused.adamw(SCHEDULE, 0.1, mask=MASK, formulation="sibling")
    recipe = decaytx.adamw(SCHEDULE, 0.1, mask=MASK)
    s_f, s_r = fused.init(params), recipe.init(params)
    assert jax.tree.structure(s_f) == jax.tree.structure(s_r)
    assert [x.dtype for x in jax.tree.leaves(s_f)] == [x.dtype for x in jax.tree.leaves(s_r)]
    # 10 recipe steps vs 5 recipe steps, then 5 fused steps from its state, and back.
    full = _run(recipe, params, 10)
    half = _run(recipe, params, 5)
    moved = _run(fused, half[0], 5, state=half[1], start=5)
    assert worst_gap(full, moved) <= 8.0
    p5, s5 = _run(fused, params, 5)
    back = _run(recipe, p5, 5, state=s5, start=5)
    assert worst_gap(full, back) <= 8.0


def test_without_the_flag_auto_compiles_to_the_recipes_program():
    if "multi_output" in os.environ.get("XLA_FLAGS", ""):
        pytest.skip("this process runs with the multi-output-fusion flag")
    assert decaytx.fused.multi_output_fusion_active() is False
    params = {"w": jax.ShapeDtypeStruct((64, 32), jnp.float32), "b": jax.ShapeDtypeStruct((32,), jnp.float32)}

    def hlo(opt: optax.GradientTransformation) -> str:
        def step(p: Any, s: Any, g: Any) -> Any:
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s
        text = jax.jit(step).lower(params, jax.eval_shape(opt.init, params), params).as_text()
        return "\n".join(line.split(" loc(")[0] for line in text.splitlines() if "loc(" not in line[:6])

    pairs = [(decaytx.fused.adamw(1e-3, 0.1), decaytx.adamw(1e-3, 0.1)),
             (decaytx.fused.adam_l2(1e-3, 0.1), decaytx.adam_l2(1e-3, 0.1)),
             (decaytx.fused.sgdw(1e-3, 0.1, momentum=0.9), decaytx.sgdw(1e-3, 0.1, momentum=0.9))]
    for fused, recipe in pairs:
        assert hlo(fused) == hlo(recipe)


def test_leaves_it_cannot_fuse_take_the_recipes_path():
    # Integer leaves and f32 updates for bf16 params: the recipe handles them.
    params = {"w": jnp.ones(4, jnp.bfloat16), "n": jnp.arange(3)}
    grads = {"w": jnp.full(4, 0.5, jnp.float32), "n": jnp.zeros(3, jnp.int32)}
    fused = decaytx.fused.adamw(0.1, 0.1, formulation="sibling")
    recipe = decaytx.adamw(0.1, 0.1)
    a = fused.update(grads, fused.init(params), params)
    b = recipe.update(grads, recipe.init(params), params)
    assert worst_gap(a, b) == 0.0


def test_bad_formulation_is_refused_before_tracing():
    with pytest.raises(ValueError, match=r"formulation='fast'.*'auto'.*'sibling'.*'plain'"):
        decaytx.fused.adamw(1e-3, 0.1, formulation="fast")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="decay_scaling"):
        decaytx.fused.adamw(1e-3, 0.1, decay_scaling="cosine")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="momentum"):
        decaytx.fused.sgdw(1e-3, 0.1, momentum=1.5)


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    print(json.dumps({"active": decaytx.fused.multi_output_fusion_active(), "gaps": compare_all("auto")}))


@pytest.mark.parametrize("fused, recipe", [
    (decaytx.fused.adamw, decaytx.adamw), (decaytx.fused.adam_l2, decaytx.adam_l2),
    (decaytx.fused.sgdw, decaytx.sgdw), (decaytx.fused.sgd_l2, decaytx.sgd_l2)],
    ids=["adamw", "adam_l2", "sgdw", "sgd_l2"])
def test_fused_steps_take_their_recipes_arguments(fused: Any, recipe: Any):
    import inspect

    mine = inspect.signature(fused).parameters
    theirs = inspect.signature(recipe).parameters
    assert set(theirs) <= set(mine), set(theirs) - set(mine)
    for name, p in theirs.items():
        assert mine[name].default == p.default, name
    assert set(mine) - set(theirs) <= {"formulation", "layout"}


@pytest.mark.parametrize("kwargs", [
    {"amsgrad": True}, {"mu_dtype": jnp.bfloat16}, {"nesterov": True}, {"eps_root": 1e-8}],
    ids=["amsgrad", "mu_dtype", "nesterov", "eps_root"])
def test_fused_adamw_runs_the_recipes_program_for_what_it_does_not_fuse(kwargs: dict):
    params = _params(jnp.float32)
    fused = decaytx.fused.adamw(SCHEDULE, 0.1, mask=MASK, formulation="sibling", layout="tree", **kwargs)
    recipe = decaytx.adamw(SCHEDULE, 0.1, mask=MASK, **kwargs)
    gap = worst_gap(_run(fused, params, 10), _run(recipe, params, 10))
    # eps_root is fused (the recipe's values within the fused bound); the others
    # run the recipe's own program: bitwise.
    assert gap <= 8.0 if "eps_root" in kwargs else gap == 0.0, gap


@pytest.mark.parametrize("kwargs", [{"dampening": 0.5}, {"accumulator_dtype": jnp.bfloat16}],
                         ids=["dampening", "accumulator_dtype"])
@pytest.mark.parametrize("fused, recipe", [(decaytx.fused.sgdw, decaytx.sgdw),
                                           (decaytx.fused.sgd_l2, decaytx.sgd_l2)], ids=["sgdw", "sgd_l2"])
def test_fused_sgd_runs_the_recipes_program_for_what_it_does_not_fuse(fused: Any, recipe: Any, kwargs: dict):
    params = _params(jnp.float32)
    a = _run(fused(SCHEDULE, 0.1, momentum=0.9, mask=MASK, formulation="sibling", **kwargs), params, 10)
    b = _run(recipe(SCHEDULE, 0.1, momentum=0.9, mask=MASK, **kwargs), params, 10)
    assert worst_gap(a, b) == 0.0


def test_amsgrad_with_the_flat_layout_is_refused_by_name():
    with pytest.raises(ValueError, match=r"amsgrad=True.*layout='tree'"):
        decaytx.fused.adamw(1e-3, 0.1, amsgrad=True, layout="flat")
    with pytest.raises(ValueError, match=r"amsgrad=True.*layout='tree'"):
        decaytx.fused.adam_l2(1e-3, 0.1, amsgrad=True, layout="flat")


def test_the_0_2_names_are_deprecated_aliases():
    params = _params(jnp.float32)
    for old, new in [("fused_adamw", decaytx.fused.adamw), ("fused_adam_l2", decaytx.fused.adam_l2),
                     ("fused_sgdw", decaytx.fused.sgdw), ("fused_sgd_l2", decaytx.fused.sgd_l2)]:
        with pytest.warns(DeprecationWarning, match=rf"decaytx\.{old} is deprecated.*decaytx\.fused\."):
            opt = getattr(decaytx, old)(1e-2, 0.1)
        assert worst_gap(_run(opt, params, 3), _run(new(1e-2, 0.1), params, 3)) == 0.0
