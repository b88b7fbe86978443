"""One process of the two-process JAX run of tests/test_multiprocess.py.

Not a test module (pytest collects ``test_*.py`` only; importing this file has
no side effects). The test imports it for the shared set-up (``params0``,
``grads``, ``transforms``) and starts it twice as a script:

    python tests/_mp_worker.py PHASE PROCESS_ID PORT WORKDIR

with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` and
``JAX_PLATFORMS=cpu`` in the environment: 2 processes x 2 devices = 4 global
devices. Every transform steps its own copy of the params, all in one
compiled program (one compile). PHASE ``run`` takes STEPS steps and saves an
Orbax checkpoint of all params and states after SPLIT of them; PHASE
``resume`` (a fresh pair) restores it and takes the remaining steps. Each
process writes the blocks it holds (its devices' shards) and a JSON report to
WORKDIR.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

# The form table is shared with tests/test_sharding.py; this file runs as a
# script (its directory is then sys.path[0]) and is imported by the test.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _forms import COLLECTIVE, CONTROL, transforms  # noqa: E402

SHAPES = {"w1": (16, 8), "w2": (8, 32), "b": (32,), "scale": (8,)}
# Over a (2, 2) mesh ("x", "y") whose "x" axis runs across the two processes.
SPECS = {"w1": ("x", "y"), "w2": (None, ("x", "y")), "b": (("x", "y"),), "scale": ()}
STEPS, SPLIT = 4, 2  # steps; the checkpoint is saved after SPLIT of them


def params0() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def user_anchor() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def grads(t: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + t)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def step_all(txs: dict[str, Any]) -> Any:
    """One program stepping every transform on its own copy of the params
    (one compile instead of one per transform)."""
    import optax

    def step(ps: dict, ss: dict, g: Any) -> tuple[dict, dict]:
        out_p, out_s = {}, {}
        for name, tx in txs.items():
            u, out_s[name] = tx.update(g, ss[name], ps[name])
            out_p[name] = optax.apply_updates(ps[name], u)
        return out_p, out_s

    return step


def run_single_process() -> dict[str, dict[str, np.ndarray]]:
    """The reference: the same steps in this (one-device) process."""
    import jax
    import jax.numpy as jnp

    as_jnp = lambda tree: {k: jnp.asarray(v) for k, v in tree.items()}  # noqa: E731
    txs = transforms(as_jnp(user_anchor()))
    txs.pop(CONTROL)
    p0 = as_jnp(params0())
    ps = {name: p0 for name in txs}
    ss = {name: tx.init(p0) for name, tx in txs.items()}
    step = jax.jit(step_all(txs))
    for t in range(STEPS):
        ps, ss = step(ps, ss, as_jnp(grads(t)))
    return {name: {k: np.asarray(v) for k, v in p.items()} for name, p in ps.items()}


def main(phase: str, process_id: int, port: int, workdir: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=60)
    import orbax.checkpoint as ocp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    assert jax.local_device_count() == 2
    mesh = jax.make_mesh((2, 2), ("x", "y"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    shard = {k: NamedSharding(mesh, P(*s)) for k, s in SPECS.items()}
    replicated = NamedSharding(mesh, P())

    def global_tree(tree: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        # Each process supplies only the blocks of its own devices.
        return {k: jax.make_array_from_callback(v.shape, shard[k], lambda idx, v=v: v[idx])
                for k, v in tree.items()}

    def replicate_locals(state: Any) -> Any:
        # Eager init leaves scalars (step counts) on this process' first device;
        # a global program takes them as replicated global arrays.
        def to_global(x: Any) -> Any:
            if not isinstance(x, jax.Array) or isinstance(x.sharding, NamedSharding):
                return x
            value = np.asarray(x)
            return jax.make_array_from_callback(x.shape, replicated, lambda idx: value[idx])

        return jax.tree.map(to_global, state)

    p0 = global_tree(params0())
    txs = transforms(global_tree(user_anchor()))
    control = txs.pop(CONTROL)
    g = [global_tree(grads(t)) for t in range(STEPS)]
    ps = {name: p0 for name in txs}
    ss = {name: replicate_locals(tx.init(p0)) for name, tx in txs.items()}
    compiled = jax.jit(step_all(txs)).lower(ps, ss, g[0]).compile()
    ckptr = ocp.StandardCheckpointer()
    ckpt_dir = f"{workdir}/ckpt"
    report: dict[str, Any] = {"process_index": jax.process_index()}

    if phase == "run":
        hlo = compiled.as_text()
        report["collectives"] = sorted(set(COLLECTIVE.findall(hlo)))
        report["n_fusions"] = hlo.count(" fusion(")
        c_state = replicate_locals(control.init(p0))
        c_hlo = jax.jit(step_all({CONTROL: control})).lower(
            {CONTROL: p0}, {CONTROL: c_state}, g[0]).compile().as_text()
        report["control_collectives"] = sorted(set(COLLECTIVE.findall(c_hlo)))
        for t in range(STEPS):
            ps, ss = compiled(ps, ss, g[t])
            if t + 1 == SPLIT:  # both processes save their shards, mid-run
                ckptr.save(ckpt_dir, {"params": ps, "opt_state": ss})
                ckptr.wait_until_finished()
    elif phase == "resume":
        # The restore target: shapes and dtypes of a fresh set-up, shardings of
        # the compiled step's outputs (what the saved run held).
        shapes = jax.eval_shape(step_all(txs), ps, ss, g[0])
        target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                              shapes, compiled.output_shardings)
        restored = ckptr.restore(ckpt_dir, {"params": target[0], "opt_state": target[1]})
        ps, ss = restored["params"], restored["opt_state"]
        for t in range(SPLIT, STEPS):
            ps, ss = compiled(ps, ss, g[t])
    else:
        raise ValueError(f"phase={phase!r}: expected 'run' or 'resume'")

    report["sharding_kept"] = all(p[k].sharding.is_equivalent_to(shard[k], p[k].ndim)
                                  for p in ps.values() for k in p)
    # What this process holds: its devices' blocks, keyed by transform, leaf
    # and the block's index in the global array.
    blocks, keys = {}, []
    for name, p in ps.items():
        for k, a in p.items():
            for s in a.addressable_shards:
                keys.append([name, k, [[sl.start, sl.stop] for sl in s.index]])
                blocks[str(len(blocks))] = np.asarray(s.data)
    report["blocks"] = keys
    np.savez(f"{workdir}/{phase}-{process_id}.npz", **blocks)
    with open(f"{workdir}/{phase}-{process_id}.json", "w") as f:
        json.dump(report, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
