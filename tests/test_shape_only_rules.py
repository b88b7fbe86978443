"""One rule for ``per_leaf`` functions and callable masks.

They may use each leaf's path, shape and dtype only. One that reads values
is refused with the same ``TypeError`` eagerly and under ``jax.jit(init)``
(0.2 accepted it eagerly and failed under jit with JAX's own error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import pytest

import decaytx

PARAMS = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
RULE = "reads the values of params leaves.*path, shape and dtype only"

VALUE_RULES: dict[str, Callable[[], Any]] = {
    "per_leaf-float": lambda: decaytx.add_l2_grad(
        decaytx.per_leaf(lambda path, x: 0.1 if float(x.sum()) > 0 else 0.0)),
    "per_leaf-array": lambda: decaytx.add_l2_grad(
        decaytx.per_leaf(lambda path, x: 0.1 * jnp.abs(x).mean())),
    "mask-bool": lambda: decaytx.add_l2_grad(
        0.1, mask=lambda p: jax.tree.map(lambda x: bool(x.sum() > 0), p)),
    "mask-array": lambda: decaytx.add_l2_grad(
        0.1, mask=lambda p: jax.tree.map(lambda x: x.sum() > 0, p)),
    "mask-numpy": lambda: decaytx.add_decoupled_decay(
        0.1, learning_rate=1.0, mask=lambda p: jax.tree.map(lambda x: bool(x.__array__().any()), p)),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("make", list(VALUE_RULES.values()), ids=list(VALUE_RULES))
def test_a_rule_that_reads_values_is_refused_the_same_way(make: Any, jit: bool) -> None:
    tx = make()
    init = jax.jit(tx.init) if jit else tx.init
    with pytest.raises(TypeError, match=RULE):
        init(PARAMS)


SHAPE_RULES: dict[str, Callable[[], Any]] = {
    "per_leaf": lambda: decaytx.add_l2_grad(
        decaytx.per_leaf(lambda path, x: jnp.float32(0.1) if x.ndim >= 2 else 0.0)),
    "mask-jnp-bools": lambda: decaytx.add_l2_grad(
        0.1, mask=lambda p: jax.tree.map(lambda x: jnp.asarray(x.ndim >= 2), p)),
    "mask-preset": lambda: decaytx.add_l2_grad(0.1, mask=decaytx.masks.matrices()),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("make", list(SHAPE_RULES.values()), ids=list(SHAPE_RULES))
def test_a_rule_on_path_shape_and_dtype_works_eagerly_and_under_jit(make: Any, jit: bool) -> None:
    tx = make()
    state = (jax.jit(tx.init) if jit else tx.init)(PARAMS)
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, PARAMS), state, PARAMS)
    assert float(u["w"][0, 0]) == pytest.approx(0.1) and float(u["b"][0]) == 0.0


def test_the_rule_is_documented() -> None:
    assert "path, shape and dtype only" in " ".join((decaytx.per_leaf.__doc__ or "").split())
    from pathlib import Path

    masks_md = " ".join((Path(__file__).parents[1] / "docs" / "masks.md").read_text().split())
    assert "path, shape and dtype only" in masks_md
