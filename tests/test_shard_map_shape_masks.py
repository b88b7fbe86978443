"""Inside ``jax.shard_map`` params have per-shard shapes: a leaf of global
shape (8, 4) split four ways on its last axis is an (8, 1) there, and
``masks.matrices()`` would silently stop decaying it. decaytx refuses a
size-dependent mask resolved there (init or update), names the leaf and
says how to decide on the global shapes; a tree of bools computed outside,
and masks that read paths or ranks only, work inside unchanged.

XLA_FLAGS must be set before jax is imported: the cases run in ONE
subprocess with 4 host devices that prints a JSON report.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from _flagged import run_on_devices

SCRIPT = textwrap.dedent(
    '''
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import decaytx
    from decaytx import masks

    mesh = jax.make_mesh((4,), ("x",))
    specs = {"w": P(None, "x"), "b": P()}
    params = {"w": jnp.arange(32.0).reshape(8, 4) + 1.0, "b": jnp.arange(8.0) + 1.0}
    params = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in params.items()}
    zeros = jax.tree.map(jnp.zeros_like, params)
    report = {}

    def sm(f):
        return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(specs,), out_specs=specs))

    def tx_of(mask):
        return decaytx.add_decoupled_decay(0.1, learning_rate=None, mask=mask)

    def init_and_update_inside(mask):
        tx = tx_of(mask)
        def f(p):
            return tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)[0]
        return sm(f)(params)

    def update_inside(mask):
        tx = tx_of(mask)
        state = tx.init(params)  # outside: global shapes
        def f(p):
            return tx.update(jax.tree.map(jnp.zeros_like, p), state, p)[0]
        return sm(f)(params)

    def penalty_inside(mask):
        def f(p):
            v = decaytx.l2_penalty(p, 0.1, mask=mask)
            return jax.tree.map(lambda x: x * 0 + v, p)
        return sm(f)(params)

    def run(name, fn, mask):
        try:
            u = fn(mask)
            report[name] = {"ok": {k: np.asarray(v).tolist() for k, v in u.items()}}
        except ValueError as e:
            report[name] = {"error": str(e)}

    run("matrices_init_inside", init_and_update_inside, masks.matrices())
    run("matrices_update_inside", update_inside, masks.matrices())
    run("matrices_penalty_inside", penalty_inside, masks.matrices())
    global_tree = masks.matrices()(params)  # decided on the global shapes
    run("tree_init_inside", init_and_update_inside, global_tree)
    run("tree_update_inside", update_inside, global_tree)
    run("exclude_inside", init_and_update_inside, masks.exclude("b"))
    run("ndim_inside", init_and_update_inside, masks.ndim_at_least(2))
    def per_leaf_inside(rule):
        def f(p):
            tx = decaytx.add_decoupled_decay(decaytx.per_leaf(rule), learning_rate=None)
            return tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)[0]
        return sm(f)(params)

    run("per_leaf_sizes_inside", per_leaf_inside, lambda path, x: 0.1 if min(x.shape) > 1 else 0.0)
    run("per_leaf_ranks_inside", per_leaf_inside, lambda path, x: 0.1 if x.ndim >= 2 else 0.0)
    report["w"] = np.asarray(params["w"]).tolist()
    print("REPORT" + json.dumps(report))
    '''
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_on_devices(SCRIPT, 4)


@pytest.mark.parametrize("case", ["matrices_init_inside", "matrices_update_inside",
                                  "matrices_penalty_inside"])
def test_size_dependent_mask_inside_shard_map_is_refused(report: dict[str, Any], case: str) -> None:
    assert "error" in report[case], f"{case} decayed per-shard: {report[case]}"
    msg = report[case]["error"]
    assert "shard_map" in msg and "'w'" in msg and "(8, 1)" in msg, msg
    assert "outside shard_map" in msg and "masks.matrices()(params)" in msg, msg


def test_size_dependent_per_leaf_inside_shard_map_is_refused(report: dict[str, Any]) -> None:
    assert "error" in report["per_leaf_sizes_inside"], report["per_leaf_sizes_inside"]
    msg = report["per_leaf_sizes_inside"]["error"]
    assert "shard_map" in msg and "'w'" in msg and "(8, 1)" in msg, msg


@pytest.mark.parametrize("case", ["tree_init_inside", "tree_update_inside",
                                  "exclude_inside", "ndim_inside", "per_leaf_ranks_inside"])
def test_global_decision_inside_shard_map_decays_the_split_matrix(
        report: dict[str, Any], case: str) -> None:
    import numpy as np
    assert "ok" in report[case], report[case]
    u = report[case]["ok"]
    # Zero gradients, learning_rate=None: u = -λ·θ on the matrix, 0 on the vector.
    np.testing.assert_allclose(u["w"], -0.1 * np.asarray(report["w"]), rtol=1e-6)
    np.testing.assert_array_equal(u["b"], np.zeros(8))
