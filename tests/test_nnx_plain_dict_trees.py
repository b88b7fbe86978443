"""Flax NNX: plain dicts as anchors, masks and coefficient trees.

``nnx.Optimizer`` hands the transform an ``nnx.State``; a plain dict (what
``nnx.to_pure_dict`` gives, or what a user writes) does not match it
structurally. decaytx matches such a dict to the State by "/" path (the
paths masks see, without NNX's ``value``), in one place for all three
readers; each test writes the expected decay out by hand and checks it
against the same decay with an NNX-structured tree.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decaytx

nnx = pytest.importorskip("flax.nnx")

WD = 0.1


class MLP(nnx.Module):
    def __init__(self, *, rngs: Any) -> None:
        self.linear1 = nnx.Linear(3, 4, rngs=rngs)
        self.linear2 = nnx.Linear(4, 2, rngs=rngs)


def _params(model: Any) -> dict[str, np.ndarray]:
    return _flat(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _flat(d: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in d.items():
        path = f"{prefix}/{k}" if prefix else str(k)
        out.update(_flat(v, path) if isinstance(v, dict) else {path: np.asarray(v)})
    return out


def _step(tx: Any, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One jitted nnx.Optimizer step with zero gradients: (before, after)."""
    model = MLP(rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model: Any, optimizer: Any) -> None:
        grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
        optimizer.update(model, grads)

    before = _params(model)
    step(model, optimizer)
    return before, _params(model)


def _decoupled(**kw: Any) -> Any:
    return decaytx.add_decoupled_decay(kw.pop("wd", WD), learning_rate=None, **kw)


def test_plain_dict_anchor_decays_toward_it() -> None:
    pretrained = nnx.to_pure_dict(nnx.state(MLP(rngs=nnx.Rngs(7)), nnx.Param))
    before, after = _step(_decoupled(anchor=pretrained))
    a = _flat(pretrained)
    assert set(after) == set(a) == {"linear1/kernel", "linear1/bias", "linear2/kernel", "linear2/bias"}
    for k in before:  # θ ← θ − λ(θ − a), written out
        np.testing.assert_allclose(after[k], before[k] - WD * (before[k] - a[k]), rtol=1e-6, atol=1e-7)
    # The same decay as with an anchor that is an NNX State.
    _, with_state = _step(_decoupled(anchor=nnx.state(MLP(rngs=nnx.Rngs(7)), nnx.Param)))
    for k in after:
        np.testing.assert_array_equal(after[k], with_state[k])


def test_plain_dict_mask_prefix_selects_by_path() -> None:
    mask = {"linear1": True, "linear2": {"kernel": True, "bias": False}}
    before, after = _step(_decoupled(mask=mask))
    for k in before:
        factor = 1.0 if k == "linear2/bias" else 1.0 - WD
        np.testing.assert_allclose(after[k], factor * before[k], rtol=1e-6)
    # The same decay as the mask built on the State itself.
    state_mask = lambda p: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda k, _: decaytx.masks.path_of(k) != "linear2/bias", p)
    _, ref = _step(_decoupled(mask=state_mask))
    for k in after:
        np.testing.assert_array_equal(after[k], ref[k])


def test_plain_dict_coefficient_tree_by_path() -> None:
    wd = {"linear1": 0.1, "linear2": {"kernel": 0.2, "bias": 0.0}}
    before, after = _step(_decoupled(wd=wd))
    lam = {"linear1/kernel": 0.1, "linear1/bias": 0.1, "linear2/kernel": 0.2, "linear2/bias": 0.0}
    for k in before:
        np.testing.assert_allclose(after[k], (1 - lam[k]) * before[k], rtol=1e-6)
    _, ref = _step(_decoupled(wd=decaytx.per_leaf(lambda path, _: lam[path])))
    for k in after:
        np.testing.assert_array_equal(after[k], ref[k])


def test_recipe_with_plain_dict_mask_trains_under_jit() -> None:
    tx = decaytx.adamw(1e-2, WD, mask={"linear1": {"kernel": True, "bias": False},
                                       "linear2": {"kernel": True, "bias": False}})
    before, after = _step(tx)
    for k in before:  # zero gradients: Adam's step is 0, only decay moves a leaf
        factor = 1.0 if k.endswith("bias") else 1.0 - 1e-2 * WD
        np.testing.assert_allclose(after[k], factor * before[k], rtol=1e-6)


@pytest.mark.parametrize("kw", [
    {"mask": {"lnear1": True, "linear2": True}},
    {"wd": {"lnear1": 0.1, "linear2": 0.1}},
    {"anchor": {"lnear1": {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros(4)},
                "linear2": {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)}}},
])
def test_path_mismatch_names_slash_paths(kw: dict[str, Any]) -> None:
    model = MLP(rngs=nnx.Rngs(0))
    with pytest.raises(ValueError) as info:
        nnx.Optimizer(model, _decoupled(**kw), wrt=nnx.Param)
    msg = str(info.value)
    assert "'lnear1" in msg and "linear1/" in msg, msg
    assert ".value" not in msg and "']['" not in msg, msg  # no keystr paths


def test_anchor_missing_a_leaf_is_refused_by_path() -> None:
    model = MLP(rngs=nnx.Rngs(0))
    anchor = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    del anchor["linear2"]["bias"]
    with pytest.raises(ValueError, match=r"linear2/bias"):
        nnx.Optimizer(model, _decoupled(anchor=anchor), wrt=nnx.Param)


def test_example_finetune_decays_kernels_toward_plain_dict_pretrained() -> None:
    """examples/flax_nnx.py's L2-SP optimizer (plain-dict mask and anchor),
    one zero-gradient step: kernels θ ← θ − η·λ(θ − a), the rest unchanged."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "flax_nnx.py"
    spec = importlib.util.spec_from_file_location("examples_flax_nnx_plain", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pretrained = nnx.to_pure_dict(nnx.state(mod.MLP(8, 16, 1, rngs=nnx.Rngs(1)), nnx.Param))
    model = mod.MLP(8, 16, 1, rngs=nnx.Rngs(0))
    optimizer = mod.make_finetune_optimizer(model, pretrained, 1e-2, weight_decay=0.5)
    before = _params(model)
    optimizer.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
    after, a = _params(model), _flat(pretrained)
    for k in before:
        want = before[k] - 1e-2 * 0.5 * (before[k] - a[k]) if k.endswith("kernel") else before[k]
        np.testing.assert_allclose(after[k], want, rtol=1e-6, atol=1e-7)
