"""Checkpointing with orbax: save the optimizer state mid-run, restore it in a
fresh process, continue, and land on the same bits as an uninterrupted run.

The state holds every kind of decaytx leaf: int32 step counts of schedules,
``DecayState(count=None, ...)`` (anchor, no schedule), ``anchor=None``
(schedule, no anchor), ``optax.MaskedNode`` where the anchor is masked out,
``optax.EmptyState`` (constant coefficients), and ``inject_hyperparams``
hyperparameters changed at runtime.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

ocp = pytest.importorskip("orbax.checkpoint")

# Executed both here and in the fresh process: builds the optimizers, the
# initial params, the gradients and the jitted step, from scratch.
SETUP = textwrap.dedent(
    r'''
    import jax, jax.numpy as jnp, numpy as np, optax
    import decaytx
    from decaytx import masks

    SCHED = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 40)
    ND2 = masks.ndim_at_least(2)

    def make(name):
        if name == "chain":
            return optax.chain(
                # schedule, no anchor: DecayState(count, anchor=None)
                decaytx.add_l2_grad(lambda t: 1e-3 * (1 + jnp.minimum(t, 5)), mask=ND2),
                # constant coefficient: EmptyState
                decaytx.add_l1_subgrad(1e-4),
                optax.scale_by_adam(),
                optax.scale_by_learning_rate(SCHED),
                # schedule and anchor="init" with a MaskedNode for the bias
                decaytx.add_decoupled_decay(
                    0.1, learning_rate=decaytx.lr_multiplier(SCHED), anchor="init", mask=ND2),
                # anchor, no schedule: DecayState(count=None, anchor)
                decaytx.add_l2_grad(1e-3, anchor="init"),
                decaytx.prox_elastic_net(1e-4, 1e-3, learning_rate=SCHED, mask=ND2),
            )
        if name == "inject_multisteps":
            return optax.MultiSteps(
                decaytx.inject_hyperparams(decaytx.adamw, static_args=("learning_rate",))(
                    SCHED, 0.1, mask=ND2, decay_scaling="corrected"),
                every_k_schedule=2,
            )
        raise ValueError(name)

    NAMES = ["chain", "inject_multisteps"]

    def params0():
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
        return {
            "dense": {"kernel": jax.random.normal(k1, (8, 4)), "bias": jax.random.normal(k2, (4,))},
            "out": jax.random.normal(k3, (4, 2)),
        }

    def grads(t):
        p = params0()
        leaves, treedef = jax.tree.flatten(p)
        keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(1), t), len(leaves))
        return jax.tree.unflatten(
            treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])

    def stepper(tx):
        @jax.jit
        def step(params, state, g):
            u, state = tx.update(g, state, params)
            return optax.apply_updates(params, u), state
        return step

    def tweak(name, state, t):
        """A runtime change of a hyperparameter, at step 2 (before the save)."""
        if name == "inject_multisteps" and t == 2:
            state.inner_opt_state.hyperparams["weight_decay"] = jnp.asarray(0.3)
        return state

    def run(name, params, state, start, stop):
        tx = make(name)
        step = stepper(tx)
        for t in range(start, stop):
            state = tweak(name, state, t)
            params, state = step(params, state, grads(t))
        return params, state
    '''
)

RESTORE = textwrap.dedent(
    r'''
    import sys
    import orbax.checkpoint as ocp
    ckpt_dir, out, split, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    results = {}
    ckptr = ocp.StandardCheckpointer()
    for name in NAMES:
        # A fresh setup: the abstract target is built from a new optimizer.
        abstract = jax.eval_shape(
            lambda: {"params": params0(), "opt_state": make(name).init(params0())})
        restored = ckptr.restore(f"{ckpt_dir}/{name}", abstract)
        params, state = run(name, restored["params"], restored["opt_state"], split, total)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            results[name + jax.tree_util.keystr(path)] = np.asarray(leaf)
    np.savez(out, **results)
    '''
)

SPLIT, TOTAL = 5, 10


def _namespace() -> dict:
    ns: dict = {}
    exec(compile(SETUP, "<checkpoint setup>", "exec"), ns)
    return ns


def test_orbax_roundtrip_then_continue_is_bitwise_identical(tmp_path: Path) -> None:
    ns = _namespace()
    ckptr = ocp.StandardCheckpointer()
    expected = {}
    for name in ns["NAMES"]:
        tx = ns["make"](name)
        p0 = ns["params0"]()
        # The uninterrupted run.
        p_full, _ = ns["run"](name, p0, tx.init(p0), 0, TOTAL)
        for path, leaf in jax.tree_util.tree_flatten_with_path(p_full)[0]:
            expected[name + jax.tree_util.keystr(path)] = np.asarray(leaf)
        # The first half, saved mid-run.
        p_half, s_half = ns["run"](name, p0, tx.init(p0), 0, SPLIT)
        ckptr.save(tmp_path / name, {"params": p_half, "opt_state": s_half})
    ckptr.wait_until_finished()

    # Restore and continue in a fresh process.
    out = tmp_path / "continued.npz"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SETUP + RESTORE, str(tmp_path), str(out), str(SPLIT), str(TOTAL)],
        env=env, capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    continued = dict(np.load(out))
    assert sorted(continued) == sorted(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(continued[k], v, err_msg=k)
    # The run did move the params and the decay mattered (a sanity check on
    # the test itself, not on decaytx).
    p0 = ns["params0"]()
    assert not np.allclose(expected["chain['out']"], np.asarray(p0["out"]))


def test_restored_state_has_decaytx_structure(tmp_path: Path) -> None:
    """The abstract target carries the NamedTuples, None fields and
    MaskedNodes; orbax restores arrays into them, values unchanged."""
    ns = _namespace()
    tx = ns["make"]("chain")
    p0 = ns["params0"]()
    _, state = ns["run"]("chain", p0, tx.init(p0), 0, 3)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(tmp_path / "s", state)
    ckptr.wait_until_finished()
    restored = ckptr.restore(tmp_path / "s", jax.eval_shape(tx.init, p0))
    is_leaf = lambda x: x is None  # noqa: E731
    assert jax.tree.structure(restored, is_leaf=is_leaf) == jax.tree.structure(state, is_leaf=is_leaf)
    l2_sched, _, _, _, decoupled, l2_anchor, _ = restored
    assert l2_sched.anchor is None and int(l2_sched.count) == 3
    assert l2_anchor.count is None
    assert type(decoupled.anchor["dense"]["bias"]).__name__ == "MaskedNode"
    assert decoupled.count.dtype == np.int32
    jax.tree.map(np.testing.assert_array_equal, restored, state)
