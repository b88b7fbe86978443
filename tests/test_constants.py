"""Coefficient values in the compiled program (decaytx._constants).

XLA compiles each distinct fusion body once; a tree of many distinct concrete
coefficients must not give one body per value. These tests pin the program,
never a timing: the count of distinct fusion bodies does not grow with the
count of distinct values, the updates are bit for bit those of scalar
constants, and concrete zeros still cost nothing.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import _constants
from experiments.bench.coeff_compile import build


def _bodies(text: str) -> tuple[int, int]:
    """(fusion computations, distinct bodies once instruction names are dropped)."""
    bodies = []
    for block in re.split(r"\n\n", text):
        head = block.lstrip()
        if not head.startswith("%fused_computation") and not head.startswith("fused_computation"):
            continue
        body = block.split("{", 1)[1]
        body = re.sub(r"%[\w.\-]+", "%x", body)
        body = re.sub(r", metadata=\{[^}]*\}", "", body)
        bodies.append(body)
    return len(bodies), len(set(bodies))


def _program(leaves: int, distinct: int, form: str = "decoupled") -> str:
    """The compiled step of the benchmark's chain (one λ per leaf, ``distinct`` values)."""
    step, params, state = build(leaves, distinct, form)
    return jax.jit(step).lower(params, state, params).compile().as_text()


@pytest.mark.parametrize("form", ["decoupled", "l2"])
def test_distinct_values_add_no_fusion_body(form: str) -> None:
    """120 leaves with 120 distinct values compile to as many distinct fusion
    bodies as with one shared value (0.2: one more body per value)."""
    shared, spread = _program(120, 1, form), _program(120, 120, form)
    assert _bodies(spread)[0] == _bodies(shared)[0]  # same kernels
    assert _bodies(spread)[1] == _bodies(shared)[1]  # and as many distinct bodies


def test_without_constants_each_value_is_its_own_body() -> None:
    """The cause, pinned: as scalar constants, each distinct value is one more body."""
    _constants.ENABLED = False
    try:
        n_shared = _bodies(_program(40, 1))[1]
        n_spread = _bodies(_program(40, 40))[1]
    finally:
        _constants.ENABLED = True
    assert n_spread >= n_shared + 39


def test_few_values_stay_constants() -> None:
    """Up to MAX_CONSTANTS distinct values keep the program of chained masked transforms."""
    text = _program(40, _constants.MAX_CONSTANTS)
    assert "dynamic-slice(" not in text
    assert "dynamic-slice(" in _program(40, _constants.MAX_CONSTANTS + 1)


_RNG = np.random.default_rng(0)
PARAMS = {
    "a": jnp.asarray(_RNG.normal(size=(8, 5)), jnp.float32),
    "b": jnp.asarray(_RNG.normal(size=(7,)), jnp.bfloat16),
    "c": jnp.asarray(_RNG.normal(size=(3, 4)) + 1j * _RNG.normal(size=(3, 4)), jnp.complex64),
    "d": jnp.asarray(_RNG.normal(size=(6,)) * 100, jnp.float16),
    "e": jnp.asarray(_RNG.normal(size=(4, 4)), jnp.float32),
    "s": jnp.asarray(0.5, jnp.float32),
    "t": jnp.asarray(_RNG.normal(size=(1, 9)), jnp.float32),
    "z": jnp.zeros((0, 3), jnp.float32),
    "i": jnp.arange(3),
    **{f"w{i}": jnp.asarray(_RNG.normal(size=(5, 3)), jnp.float32) for i in range(10)},
}
_KEYS = sorted(PARAMS)
WD = {k: 0.0 if k == "e" else 0.01 * (1 + i) for i, k in enumerate(_KEYS)}
WD["d"] = 1e5  # float16 computed in float32
L1 = {k: 0.002 * (1 + i) for i, k in enumerate(_KEYS)}

CASES = {
    "decoupled": lambda: optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(1e-2),
                                     decaytx.add_decoupled_decay(WD, learning_rate=1e-2)),
    "cautious-anchor": lambda: optax.chain(
        optax.scale_by_adam(), optax.scale_by_learning_rate(1e-2),
        decaytx.add_decoupled_decay(L1, learning_rate=1e-2, cautious=True, anchor="init")),
    "l2": lambda: optax.chain(decaytx.add_l2_grad(WD), optax.scale_by_adam(),
                              optax.scale_by_learning_rate(1e-2)),
    "l1": lambda: optax.chain(decaytx.add_l1_subgrad(L1), optax.sgd(1e-2)),
    "elastic": lambda: optax.chain(decaytx.add_elastic_net_grad(L1, WD), optax.sgd(1e-2)),
    "prox_l1": lambda: optax.chain(optax.sgd(1e-2), decaytx.prox_l1(L1, learning_rate=1e-2)),
    "prox_elastic": lambda: optax.chain(optax.sgd(1e-2), decaytx.prox_elastic_net(L1, WD, learning_rate=1e-2)),
    "adamw": lambda: decaytx.adamw(1e-2, L1),
    "per_leaf": lambda: optax.chain(optax.sgd(1e-2), decaytx.add_decoupled_decay(
        decaytx.per_leaf(lambda path, x: 0.01 * (1 + len(path) + x.size % 7)), learning_rate=None)),
}


def _run(make: Any, enabled: bool) -> list[np.ndarray]:
    _constants.ENABLED = enabled
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = make()
            state, params, outs = opt.init(PARAMS), PARAMS, []
            update = jax.jit(opt.update)
            for t in range(3):
                grads = jax.tree.map(lambda x, t=t: (x * 0.5 + 0.1 * t).astype(x.dtype), params)
                updates, state = update(grads, state, params)
                params = optax.apply_updates(params, updates)
                outs.append(updates)
    finally:
        _constants.ENABLED = True
    return [np.asarray(x) for x in jax.tree.leaves((outs, params))]


@pytest.mark.parametrize("name", list(CASES))
def test_updates_are_bitwise_those_of_constants(name: str) -> None:
    ours, constants = _run(CASES[name], True), _run(CASES[name], False)
    for x, y in zip(ours, constants, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x.reshape(-1).view(np.uint8), y.reshape(-1).view(np.uint8))


def test_spread_tree_reads_its_values_and_zero_leaves_cost_nothing() -> None:
    opt = decaytx.add_decoupled_decay({**L1, "e": 0.0}, learning_rate=None)
    text = jax.jit(opt.update).lower(PARAMS, opt.init(PARAMS), PARAMS).as_text()
    assert "dynamic_slice" in text  # the spread values are read as operands
    updates = jax.tree.map(jnp.zeros_like, PARAMS)
    out, _ = opt.update(updates, opt.init(PARAMS), PARAMS)
    assert out["e"] is updates["e"]  # lambda = 0: no op at all
    assert out["i"] is updates["i"]  # integer leaf: untouched
    zero = decaytx.add_decoupled_decay(dict.fromkeys(PARAMS, 0.0), learning_rate=1e-2)
    assert isinstance(zero.init(PARAMS), optax.EmptyState)
    assert zero.update(updates, optax.EmptyState(), PARAMS)[0] is updates


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("shape", [(), (1,), (1, 1), (5,), (1, 7), (0, 3), (4, 2, 3)])
def test_pick_is_the_value_everywhere(dtype: Any, shape: tuple[int, ...]) -> None:
    value = np.asarray(1.2345e-3, dtype=jnp.dtype(dtype))
    got = jax.jit(lambda x: _constants.pick(value) * jnp.ones_like(x))(jnp.zeros(shape, dtype))
    assert got.shape == shape and got.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(got), np.full(shape, value))


def test_spread_counts_distinct_values_per_name() -> None:
    f = np.float32
    groups = [{"a": np.asarray(f(i)), "b": np.asarray(f(1)), "c": None} for i in range(1, 12)]
    assert _constants.spread(groups) == frozenset({"a"})
    assert _constants.spread(groups[: _constants.MAX_CONSTANTS]) == frozenset()
