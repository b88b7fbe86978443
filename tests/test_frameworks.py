"""decaytx inside Flax NNX, Equinox and Flax Linen: the examples run, and a
decaytx optimizer trains exactly like the independent reference
(``optax.adamw`` with the same mask, or a NumPy formula)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks

nnx = pytest.importorskip("flax.nnx")
eqx = pytest.importorskip("equinox")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LR, WD = 1e-2, 0.1


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (Linen modules) look it up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["flax_nnx", "equinox_example", "flax_linen"])
def test_example_runs_and_learns(name: str) -> None:
    result = _load(name).main(steps=40)
    assert np.isfinite(result["last_loss"])
    assert result["last_loss"] < 0.8 * result["first_loss"]


def _ndim2(p: Any) -> Any:
    return jax.tree.map(lambda x: x.ndim >= 2, p)


def _adamw_reference(learning_rate: Any = LR) -> optax.GradientTransformation:
    # optax's own AdamW, with the nanoGPT mask written out by hand.
    return optax.adamw(learning_rate, weight_decay=WD, mask=_ndim2)


# ---------------------------------------------------------------------------
# Flax NNX


def test_nnx_optimizer_matches_optax_adamw() -> None:
    mod = _load("flax_nnx")
    x, y = mod.data(n=64)
    schedule = optax.linear_schedule(LR, 0.0, 10)
    models = [mod.MLP(8, 16, 1, rngs=nnx.Rngs(0)) for _ in range(2)]
    opts = [
        mod.make_optimizer(models[0], schedule, WD),  # decaytx.adamw + ndim_at_least(2)
        nnx.Optimizer(models[1], _adamw_reference(schedule), wrt=nnx.Param),
    ]
    for _ in range(5):
        for model, opt in zip(models, opts, strict=True):
            mod.train_step(model, opt, x, y)
    mine, ref = (nnx.state(m, nnx.Param) for m in models)
    chex.assert_trees_all_close(mine, ref, rtol=1e-5, atol=1e-7)


def test_nnx_mask_sees_param_state() -> None:
    mod = _load("flax_nnx")
    model = mod.MLP(8, 16, 1, rngs=nnx.Rngs(0))
    # nnx.Optimizer gives the transform the pure arrays of the Param state.
    mask = masks.ndim_at_least(2)(nnx.as_pure(nnx.state(model, nnx.Param)))
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(mask)[0]}
    decayed = sorted(k for k, v in flat.items() if v)
    assert decayed == ["['linear1']['kernel']", "['linear2']['kernel']"]
    assert len(flat) == 6  # 2 kernels, 2 biases, LayerNorm scale and bias


def test_nnx_biases_and_norm_scales_not_decayed() -> None:
    """One step from a zero gradient: only kernels move, by -eta*lambda*theta."""
    mod = _load("flax_nnx")
    model = mod.MLP(8, 16, 1, rngs=nnx.Rngs(0))
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    opt = mod.make_optimizer(model, LR, WD)
    grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    opt.update(model, grads)
    after = nnx.state(model, nnx.Param)
    expected = jax.tree.map(lambda p: p - LR * WD * p if p.ndim >= 2 else p, before)
    chex.assert_trees_all_close(after, expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# Equinox


def test_equinox_matches_optax_adamw() -> None:
    mod = _load("equinox_example")
    x, y = mod.data(n=64)
    model0 = eqx.nn.MLP(8, 1, width_size=16, depth=2, key=jax.random.PRNGKey(0))
    results = []
    for optimizer in (mod.make_optimizer(LR, WD), _adamw_reference()):
        model = model0
        state = optimizer.init(eqx.filter(model, eqx.is_array))
        step = mod.make_step(optimizer)
        for _ in range(5):
            model, state, _ = step(model, state, x, y)
        results.append(eqx.filter(model, eqx.is_array))
    chex.assert_trees_all_close(results[0], results[1], rtol=1e-5, atol=1e-7)


def test_equinox_filtered_params_with_none_leaves_and_anchor() -> None:
    """``eqx.filter`` leaves ``None`` for non-arrays (the activation): a mask
    built on the filtered tree, and an ``anchor="init"`` kept in the state,
    both line up with it; the update is g + lambda (theta - theta_0)."""
    model = eqx.nn.MLP(4, 2, width_size=8, depth=1, key=jax.random.PRNGKey(0))
    params0 = eqx.filter(model, eqx.is_array)
    # A tree with None holes, and an eqx.Module: callable, yet a tree of bools
    # (as the filter specs Equinox users build), never called as a mask.
    mask = jax.tree.map(lambda p: p.ndim >= 2, params0)
    assert isinstance(mask, eqx.Module) and callable(mask)
    tx = decaytx.add_l2_grad(WD, mask=mask, anchor="init")
    state = eqx.filter_jit(tx.init)(params0)
    moved = jax.tree.map(lambda p: p + 1.0, params0)
    grads = jax.tree.map(jnp.ones_like, params0)
    updates, _ = eqx.filter_jit(tx.update)(grads, state, moved)
    expected = jax.tree.map(lambda g, p: g + WD * 1.0 if p.ndim >= 2 else g, grads, params0)
    chex.assert_trees_all_close(updates, expected, rtol=1e-6)
    # apply_updates leaves the static fields alone.
    new = eqx.apply_updates(model, updates)
    assert new.activation is model.activation


# ---------------------------------------------------------------------------
# Flax Linen TrainState


def test_linen_train_state_matches_optax_adamw() -> None:
    linen = pytest.importorskip("flax.linen")
    del linen
    mod = _load("flax_linen")
    kx, kw = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (64, 8))
    y = jnp.sin(x @ jax.random.normal(kw, (8, 1)))
    mine = mod.create_state(LR, WD)  # decaytx.adamw + masks.exclude("bias", "scale")
    ref = mine.replace(
        tx=optax.adamw(LR, weight_decay=WD, mask=masks.exclude("bias", "scale")),
        opt_state=optax.adamw(LR, weight_decay=WD, mask=masks.exclude("bias", "scale")).init(
            mine.params
        ),
    )
    for _ in range(5):
        mine, _ = mod.train_step(mine, x, y)
        ref, _ = mod.train_step(ref, x, y)
    chex.assert_trees_all_close(mine.params, ref.params, rtol=1e-5, atol=1e-7)
    decayed = masks.exclude("bias", "scale")(mine.params)
    assert decayed["Dense_0"] == {"kernel": True, "bias": False}
    assert decayed["LayerNorm_0"] == {"scale": False, "bias": False}
