"""Coefficient trees and ``per_leaf`` (param groups), against independent references.

- PyTorch param groups (float64, 50 steps, <= 1e-12): ``torch.optim.AdamW`` and
  ``torch.optim.SGD`` (momentum) with three groups, one with a warm-up/cosine
  schedule shared through ``LambdaLR``;
- the other spellings of the same groups (chained masked transforms,
  ``optax.multi_transform``), jitted, bitwise in float32;
- the compiled step: a concrete-zero group costs what a mask costs;
- schedules in a tree against a NumPy float64 loop; ``per_leaf`` call counts;
  Equinox modules of floats; per-leaf warnings; bad trees;
- tree coefficients under ``decaytx.inject_hyperparams`` and
  ``optax.inject_hyperparams``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _compare import one_torch_thread, run_jax, warmup_cosine

import decaytx

__all__ = ["one_torch_thread"]  # the autouse fixture, imported to apply here

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: pip install 'decaytx[parity]' to run these."
)

STEPS = 50
LR = 0.05
WARMUP = 10
TOL = 1e-12
# The three groups: the conv layer, the dense kernel, the dense bias (no decay).
WD = {"conv": 0.05, "dense": {"kernel": 0.2, "bias": 0.0}}
GROUPS = ((("conv", "kernel"), ("conv", "bias")), (("dense", "kernel"),), (("dense", "bias"),))
GROUP_WD = (0.05, 0.2, 0.0)
ALL = tuple(k for g in GROUPS for k in g)


def _per_leaf_rule(path: str, leaf: Any) -> float:
    return 0.05 if path.startswith("conv/") else (0.2 if path.endswith("kernel") else 0.0)


def _problem() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    params = {
        # a 1x1 convolution over 4 channels is a (4, 6) matmul
        "conv": {"kernel": rng.normal(size=(4, 6)) / 2, "bias": rng.normal(size=(6,)) / 4},
        "dense": {"kernel": rng.normal(size=(6, 1)) / 3, "bias": rng.normal(size=(1,))},
    }
    x = rng.normal(size=(32, 4))
    y = np.sin(x @ rng.normal(size=(4, 1)))
    return params, x, y


def _forward(p: Any, x: Any, tanh: Callable[[Any], Any] = jnp.tanh) -> Any:
    h = tanh(x @ p["conv"]["kernel"] + p["conv"]["bias"])
    return h @ p["dense"]["kernel"] + p["dense"]["bias"]


def _warmup_cosine(count: Any) -> Any:
    return warmup_cosine(count, lr=LR, warmup=WARMUP, steps=STEPS)


def _run_torch(
    make: Callable[[list[dict]], Any], params: dict, x: np.ndarray, y: np.ndarray,
    schedule: bool, decoupled: bool,
) -> dict:
    """Three torch param groups; ``decoupled`` multiplies each group's weights by
    ``1 - lr * wd`` before the step (torch has no SGDW; this is what AdamW does)."""
    t = {a: {b: torch.tensor(params[a][b], dtype=torch.float64, requires_grad=True)
             for b in params[a]} for a in params}
    groups = [
        {"params": [t[a][b] for a, b in names], "weight_decay": 0.0 if decoupled else wd, "wd": wd}
        for names, wd in zip(GROUPS, GROUP_WD, strict=True)
    ]
    opt = make(groups)
    sched = None
    if schedule:
        values = [float(_warmup_cosine(k)) for k in range(STEPS + 1)]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: values[k] / LR)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(STEPS):
        opt.zero_grad()
        loss = 0.5 * torch.mean((_forward(t, xt, torch.tanh) - yt) ** 2)
        loss.backward()
        if decoupled:
            with torch.no_grad():
                for g in opt.param_groups:
                    for p in g["params"]:
                        p.mul_(1 - g["lr"] * g["wd"])
        opt.step()
        if sched is not None:
            sched.step()
    return {a: {b: v.detach().numpy() for b, v in t[a].items()} for a in t}


def _loss(x: np.ndarray, y: np.ndarray) -> Callable[[Any], jax.Array]:
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    return lambda p: 0.5 * jnp.mean((_forward(p, xj) - yj) ** 2)


TORCH_CASES = {
    # name: (decaytx recipe of (lr, wd), torch optimizer of groups, lr schedule, decoupled)
    "adamw-warmup_cosine": (
        lambda lr, wd: decaytx.adamw(lr, wd, b1=0.8, b2=0.99, eps=1e-6),
        lambda g: torch.optim.AdamW(g, lr=LR, betas=(0.8, 0.99), eps=1e-6),
        True, False,
    ),
    "adamw-per_leaf": (
        lambda lr, wd: decaytx.adamw(lr, decaytx.per_leaf(_per_leaf_rule), b1=0.8, b2=0.99, eps=1e-6),
        lambda g: torch.optim.AdamW(g, lr=LR, betas=(0.8, 0.99), eps=1e-6),
        False, False,
    ),
    "sgd_l2-momentum": (
        lambda lr, wd: decaytx.sgd_l2(lr, wd, momentum=0.9),
        lambda g: torch.optim.SGD(g, lr=LR, momentum=0.9),
        False, False,
    ),
    "sgd_l2-momentum-warmup_cosine": (
        lambda lr, wd: decaytx.sgd_l2(lr, wd, momentum=0.9),
        lambda g: torch.optim.SGD(g, lr=LR, momentum=0.9),
        True, False,
    ),
    "sgdw-momentum-warmup_cosine": (
        lambda lr, wd: decaytx.sgdw(lr, wd, momentum=0.9),
        lambda g: torch.optim.SGD(g, lr=LR, momentum=0.9),
        True, True,
    ),
}


def _max_diff(a: Any, b: Any) -> float:
    return max(float(np.max(np.abs(a[k][j] - b[k][j]))) for k, j in ALL)


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_three_groups_match_torch_param_groups(case: str, x64: None) -> None:
    recipe, make_torch, schedule, decoupled = TORCH_CASES[case]
    params, x, y = _problem()
    ours = run_jax(recipe(_warmup_cosine if schedule else LR, WD), params, _loss(x, y), STEPS, jnp.float64)
    theirs = _run_torch(make_torch, params, x, y, schedule, decoupled)
    diff = _max_diff(ours, theirs)
    print(f"\ngroups vs torch {case}: max|diff| = {diff:.3e}")
    assert _max_diff(ours, params) > 1e-2  # it trained
    assert diff <= TOL, f"{case}: max abs diff {diff:.3e} > {TOL}"


def test_torch_comparison_tells_the_groups_apart(x64: None) -> None:
    """Swapping two groups' coefficients is visible at this tolerance."""
    params, x, y = _problem()
    swapped = {"conv": 0.2, "dense": {"kernel": 0.05, "bias": 0.0}}
    ours = run_jax(decaytx.adamw(LR, swapped), params, _loss(x, y), STEPS, jnp.float64)
    theirs = _run_torch(lambda g: torch.optim.AdamW(g, lr=LR), params, x, y, False, False)
    assert _max_diff(ours, theirs) > 1e-4


# --------------------------------------------------------------------------
# The other spellings of the same three groups, float32, jitted.
# --------------------------------------------------------------------------

CONV = {"conv": True, "dense": False}
DENSE_KERNEL = {"conv": False, "dense": {"kernel": True, "bias": False}}
SCHED32 = optax.warmup_cosine_decay_schedule(0.0, LR, WARMUP, STEPS, LR / 10)


def _labels(p: Any) -> Any:
    return {"conv": jax.tree.map(lambda _: "conv", p["conv"]),
            "dense": {"kernel": "dense_kernel", "bias": "dense_bias"}}


SPELLINGS = {
    "adamw": {
        "tree": lambda: decaytx.adamw(SCHED32, WD),
        "chained_masks": lambda: optax.chain(
            optax.scale_by_adam(), optax.scale_by_learning_rate(SCHED32),
            decaytx.add_decoupled_decay(0.05, learning_rate=SCHED32, mask=CONV),
            decaytx.add_decoupled_decay(0.2, learning_rate=SCHED32, mask=DENSE_KERNEL)),
        "multi_transform": lambda: optax.multi_transform(
            {"conv": decaytx.adamw(SCHED32, 0.05), "dense_kernel": decaytx.adamw(SCHED32, 0.2),
             "dense_bias": decaytx.adamw(SCHED32, 0.0)}, _labels),
    },
    "sgd_l2": {
        "tree": lambda: decaytx.sgd_l2(SCHED32, WD, momentum=0.9),
        "chained_masks": lambda: optax.chain(
            decaytx.add_l2_grad(0.05, mask=CONV), decaytx.add_l2_grad(0.2, mask=DENSE_KERNEL),
            optax.trace(0.9), optax.scale_by_learning_rate(SCHED32)),
        "multi_transform": lambda: optax.multi_transform(
            {"conv": decaytx.sgd_l2(SCHED32, 0.05, momentum=0.9),
             "dense_kernel": decaytx.sgd_l2(SCHED32, 0.2, momentum=0.9),
             "dense_bias": decaytx.sgd_l2(SCHED32, 0.0, momentum=0.9)}, _labels),
    },
}


SINGLE = {
    "adamw": lambda: decaytx.adamw(SCHED32, 0.05),
    "sgd_l2": lambda: decaytx.sgd_l2(SCHED32, 0.05, momentum=0.9),
}


@pytest.mark.parametrize("recipe", list(SPELLINGS))
def test_group_tree_equals_chained_masks_and_multi_transform(recipe: str) -> None:
    """Chained masks: bitwise equal in float32 (each leaf meets the same
    elementwise ops in the same order; a masked-out transform passes it
    through). ``multi_transform`` runs one optimizer per group, which XLA
    compiles and fuses separately (the scalar bias corrections and schedule
    are computed per group): there the bound is float32 rounding accumulated
    over the run, rtol 50 steps x 8 ulp = 50 * 8 * 2**-23 ~ 4.8e-5 (measured
    ~7e-7)."""
    params, x, y = _problem()
    runs = {name: run_jax(make(), params, _loss(x, y), STEPS, jnp.float32)
            for name, make in SPELLINGS[recipe].items()}
    rtol = STEPS * 8 * 2.0**-23
    for k, j in ALL:
        np.testing.assert_array_equal(runs["tree"][k][j], runs["chained_masks"][k][j], err_msg=f"{k}/{j}")
        np.testing.assert_allclose(runs["tree"][k][j], runs["multi_transform"][k][j], rtol=rtol,
                                   atol=rtol * float(np.max(np.abs(runs["tree"][k][j]))), err_msg=f"{k}/{j}")
    # the groups differ from one shared coefficient (the comparison can fail)
    one = run_jax(SINGLE[recipe](), params, _loss(x, y), STEPS, jnp.float32)
    assert _max_diff(one, runs["tree"]) > 1e-4


# --------------------------------------------------------------------------
# The compiled step: a concrete-zero group costs nothing.
# --------------------------------------------------------------------------

HLO_PARAMS = {
    "conv": {"kernel": jax.ShapeDtypeStruct((3, 3, 8, 16), jnp.float32),
             "bias": jax.ShapeDtypeStruct((16,), jnp.float32)},
    "dense": {"kernel": jax.ShapeDtypeStruct((256, 128), jnp.float32),
              "bias": jax.ShapeDtypeStruct((128,), jnp.float32)},
}


def _cost(opt: optax.GradientTransformation) -> tuple[Any, ...]:
    from experiments.bench import hlo as _hlo

    c = _hlo.step_cost(opt, HLO_PARAMS)
    return (c.fusions, c.array_fusions, c.temp_bytes, c.state_bytes, c.bytes_accessed)


def test_zero_group_compiles_to_the_masked_program_and_keeps_no_state() -> None:
    tree = {"conv": {"kernel": 0.1, "bias": 0.0}, "dense": {"kernel": 0.1, "bias": 0.0}}
    mask = {"conv": {"kernel": True, "bias": False}, "dense": {"kernel": True, "bias": False}}
    as_tree = decaytx.adamw(1e-3, tree, anchor="init")
    as_mask = decaytx.adamw(1e-3, 0.1, mask=mask, anchor="init")
    assert _cost(as_tree) == _cost(as_mask)
    # the zero-coefficient leaves have no anchor in the state
    anchor = as_tree.init(jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), HLO_PARAMS))[-1].anchor
    assert isinstance(anchor["conv"]["bias"], optax.MaskedNode)
    assert isinstance(anchor["dense"]["bias"], optax.MaskedNode)
    assert anchor["dense"]["kernel"].shape == (256, 128)


def test_three_groups_compile_like_chained_masks() -> None:
    """Two non-zero groups and a zero one in one transform cost what two masked
    transforms cost: the zero group adds no op, and grouping adds none."""
    tree = {"conv": 0.05, "dense": {"kernel": 0.2, "bias": 0.0}}
    chained = optax.chain(
        optax.scale_by_adam(), optax.scale_by_learning_rate(1e-3),
        decaytx.add_decoupled_decay(0.05, learning_rate=1e-3, mask=CONV),
        decaytx.add_decoupled_decay(0.2, learning_rate=1e-3, mask=DENSE_KERNEL))
    assert _cost(decaytx.adamw(1e-3, tree)) == _cost(chained)


# --------------------------------------------------------------------------
# Schedules, per_leaf, Equinox, warnings, bad trees.
# --------------------------------------------------------------------------


def test_schedules_in_a_tree_share_one_count_against_numpy() -> None:
    lin = optax.linear_schedule(0.1, 0.0, 10)
    cos = optax.cosine_decay_schedule(0.2, 10)
    tx = decaytx.add_decoupled_decay(
        {"conv": lin, "dense": {"kernel": cos, "bias": 0.0}}, learning_rate=None)
    params, _, _ = _problem()
    p = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    state = tx.init(p)
    counts = [v for v in jax.tree.leaves(state) if jnp.issubdtype(v.dtype, jnp.integer)]
    assert len(counts) == 1 and counts[0].shape == ()  # one count for both schedules

    @jax.jit
    def step(p: Any, s: Any) -> tuple[Any, Any]:
        u, s = tx.update(jax.tree.map(jnp.zeros_like, p), s, p)
        return optax.apply_updates(p, u), s

    ref = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
    for t in range(15):
        p, state = step(p, state)
        tt = min(t, 10) / 10
        lam_lin, lam_cos = 0.1 * (1 - tt), 0.2 * 0.5 * (1 + np.cos(np.pi * tt))
        ref = {"conv": {k: v * (1 - lam_lin) for k, v in ref["conv"].items()},
               "dense": {"kernel": ref["dense"]["kernel"] * (1 - lam_cos), "bias": ref["dense"]["bias"]}}
    for k, j in ALL:
        np.testing.assert_allclose(np.asarray(p[k][j]), ref[k][j], rtol=2e-6, atol=1e-7, err_msg=f"{k}/{j}")
    np.testing.assert_array_equal(np.asarray(p["dense"]["bias"]), np.float32(params["dense"]["bias"]))


def test_per_leaf_fn_is_called_once_per_leaf_at_init() -> None:
    calls: list[str] = []

    def rule(path: str, leaf: Any) -> float:
        calls.append(path)
        return _per_leaf_rule(path, leaf)

    tx = decaytx.adamw(LR, decaytx.per_leaf(rule))
    params, x, y = _problem()
    run_jax(tx, params, _loss(x, y), 3, jnp.float32)
    assert sorted(calls) == sorted(f"{k}/{j}" for k, j in ALL)


def test_per_leaf_sees_paths_shapes_and_dtypes() -> None:
    seen: dict[str, tuple[tuple[int, ...], Any]] = {}

    def rule(path: str, leaf: Any) -> float:
        seen[path] = (leaf.shape, leaf.dtype)
        return 0.1

    params = {"blocks": [{"w": jnp.ones((2, 3))}], "b": jnp.ones(3, jnp.bfloat16)}
    decaytx.add_l2_grad(decaytx.per_leaf(rule)).init(params)
    assert seen == {"blocks/0/w": ((2, 3), jnp.float32), "b": ((3,), jnp.bfloat16)}


def _eqx_net() -> tuple[Any, Any]:
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        kernel: Any
        bias: Any

        def __call__(self, x: Any) -> Any:  # callable, like every real Equinox layer
            return x @ self.kernel + self.bias

    return Net(jnp.full((2, 2), 2.0), jnp.full((2,), 2.0)), Net(0.1, 0.0)


def test_equinox_module_of_floats_is_a_tree_not_a_schedule() -> None:
    params, wd = _eqx_net()
    assert callable(wd)
    tx = decaytx.add_l2_grad(wd)
    u, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(np.asarray(u.kernel), 0.2, rtol=1e-6)  # 0.1 * 2
    np.testing.assert_array_equal(np.asarray(u.bias), 0.0)


def test_warnings_apply_per_leaf_and_name_the_path() -> None:
    params = {"f32": jnp.ones((2, 2)), "bf16": jnp.ones((2, 2), jnp.bfloat16)}
    # m*lambda = 1e-6: fine for float32 (eps/4 ~ 3e-8), lost in bfloat16 (eps/4 ~ 2e-3)
    with pytest.warns(decaytx.DecayWarning, match="bfloat16"):
        decaytx.add_decoupled_decay({"f32": 1e-4, "bf16": 1e-4}, learning_rate=1e-2).init(params)
    # the same small factor on the float32 leaf only, a large one on bf16: no warning
    decaytx.add_decoupled_decay({"f32": 1e-4, "bf16": 1.0}, learning_rate=1e-2).init(params)


def test_lost_decay_warning_names_the_leaf_path() -> None:
    params = {"body": jnp.ones((2, 2)), "head": {"w": jnp.ones((2, 2), jnp.bfloat16)}}
    with pytest.warns(decaytx.DecayWarning) as record:
        decaytx.add_decoupled_decay({"body": 1e-4, "head": 1e-4}, learning_rate=1e-2).init(params)
    msg = str(record[0].message)
    assert "head/w" in msg and "body" not in msg


@pytest.mark.parametrize(
    ("coefficient", "match"),
    [
        ({"conv": 0.05, "dense": {"kernel": -0.2, "bias": 0.0}}, r"weight_decay\['dense/kernel'\]=-0.2 is negative"),
        ({"conv": 0.05, "dense": {"kernel": 0.2}}, r"not a prefix of params: it has no entry for params keys \['bias'\] at 'dense'"),
        ({"conv": 0.05, "dense": 0.2, "head": 0.1}, r"not a prefix of params: its keys \['head'\] are not in params"),
        (decaytx.per_leaf(lambda path, x: -0.1 if path == "dense/bias" else 0.1), r"weight_decay\['dense/bias'\]=-0.1 is negative"),
        (decaytx.per_leaf(lambda path, x: {"a": 0.1}), r"per_leaf: fn\('conv/bias', leaf\) returned"),
    ],
    ids=["negative-leaf", "missing-key", "extra-key", "per_leaf-negative", "per_leaf-tree"],
)
def test_bad_trees_raise_naming_the_path(coefficient: Any, match: str) -> None:
    params, _, _ = _problem()
    with pytest.raises((ValueError, TypeError), match=match):
        decaytx.add_decoupled_decay(coefficient, learning_rate=0.1).init(params)


def test_per_leaf_fn_reading_values_is_refused() -> None:
    params, _, _ = _problem()
    tx = decaytx.add_l2_grad(decaytx.per_leaf(lambda path, x: jnp.abs(x).mean()))
    with pytest.raises(TypeError, match="reads the values of params leaves"):
        jax.jit(tx.init)(jax.tree.map(jnp.asarray, params))


# --------------------------------------------------------------------------
# Under inject_hyperparams: a tree is static (not a hyperparameter).
# --------------------------------------------------------------------------

INJECTORS = {"decaytx": decaytx.inject_hyperparams, "optax": optax.inject_hyperparams}


@functools.cache
def _uninjected_runs() -> tuple[Any, Any]:
    """5 float32 steps of adamw with the three groups, and with two groups swapped."""
    params, x, y = _problem()
    swapped = {"conv": 0.2, "dense": {"kernel": 0.05, "bias": 0.0}}
    return tuple(run_jax(decaytx.adamw(LR, wd), params, _loss(x, y), 5, jnp.float32) for wd in (WD, swapped))


@pytest.mark.parametrize("injector", list(INJECTORS))
@pytest.mark.parametrize("kind", ["tree", "per_leaf"])
def test_tree_coefficients_are_static_under_inject_hyperparams(injector: str, kind: str) -> None:
    """A dict tree or per_leaf is not a number or a callable, so both wrappers pass
    it through unchanged: the groups decay as without the wrapper, and
    ``weight_decay`` is not in ``state.hyperparams`` (the learning rate is).
    The injected run computes Adam's scalars from float32 arrays, the plain one
    from Python floats: they agree to 1e-5 here, while swapping two groups'
    coefficients moves the result by > 1e-3."""
    wd = WD if kind == "tree" else decaytx.per_leaf(_per_leaf_rule)
    opt = INJECTORS[injector](decaytx.adamw)(LR, wd)
    params, x, y = _problem()
    p = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    state = opt.init(p)
    assert "weight_decay" not in state.hyperparams and "learning_rate" in state.hyperparams
    ours = run_jax(opt, params, _loss(x, y), 5, jnp.float32)
    plain, swapped = _uninjected_runs()
    assert _max_diff(ours, plain) < 1e-5
    assert _max_diff(ours, swapped) > 1e-3


def test_callable_tree_under_optax_inject_hyperparams_needs_static_args() -> None:
    """optax takes every callable for a schedule, an Equinox module too; listed
    in ``static_args`` it stays a tree."""
    params, wd = _eqx_net()
    opt = optax.inject_hyperparams(decaytx.add_l2_grad, static_args=("weight_decay",))(wd)
    zeros = jax.tree.map(jnp.zeros_like, params)
    u, _ = opt.update(zeros, opt.init(params), params)
    np.testing.assert_allclose(np.asarray(u.kernel), 0.2, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(u.bias), 0.0)


def test_callable_tree_under_decaytx_inject_hyperparams_stays_a_tree() -> None:
    params, wd = _eqx_net()
    opt = decaytx.inject_hyperparams(decaytx.add_l2_grad)(wd)
    zeros = jax.tree.map(jnp.zeros_like, params)
    u, _ = opt.update(zeros, opt.init(params), params)
    np.testing.assert_allclose(np.asarray(u.kernel), 0.2, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(u.bias), 0.0)


@pytest.mark.parametrize("injector", list(INJECTORS))
def test_changing_an_injected_coefficient_dtype_matched_does_not_retrace(injector: str) -> None:
    """The docs' runtime change, ``jnp.asarray(0.05, dtype=<the hyperparam's dtype>)``,
    keeps the jitted step's input types, so it compiles once. A bare
    ``jnp.asarray(0.05)`` is weakly typed: the same step traces again."""
    opt = INJECTORS[injector](decaytx.adamw)(1e-3, 0.1, mask={"w": True, "b": False})
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    traces = []

    @jax.jit
    def step(p: Any, s: Any) -> tuple[Any, Any]:
        traces.append(1)  # runs only while tracing
        u, s = opt.update(jax.tree.map(jnp.zeros_like, p), s, p)
        return optax.apply_updates(p, u), s

    state = opt.init(params)
    params, state = step(params, state)
    state.hyperparams["weight_decay"] = jnp.asarray(0.05, dtype=state.hyperparams["weight_decay"].dtype)
    params, state = step(params, state)
    assert len(traces) == 1
    # the value was used: w decays by lr * 0.05 at the second step
    w1 = (1 - 1e-3 * 0.1) * 1.0
    np.testing.assert_allclose(np.asarray(params["w"]), (1 - 1e-3 * 0.05) * w1, rtol=1e-6)
    # the weakly typed spelling retraces (what the docs no longer teach)
    state.hyperparams["weight_decay"] = jnp.asarray(0.05)
    step(params, state)
    assert len(traces) == 2
