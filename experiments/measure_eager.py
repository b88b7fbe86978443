"""Eager (un-jitted) cost of one decay update against optax's.

On a ~50-leaf tree (an MLP-like stack of kernels, biases and scales), times
one eager ``update`` of each decaytx stage and of
``optax.add_decayed_weights`` (with the same mask where there is one), in one
interleaved run: every repeat times each case once, in turn, so that machine
noise hits all cases alike. Prints the median per case and its ratio to
optax's. Run from the repository root:

    python experiments/measure_eager.py [--repeats 30] [--calls 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

# Measure the decaytx of the directory this runs from (a worktree or main).
sys.path.insert(0, os.getcwd())


def tree(n_blocks: int = 16) -> dict[str, Any]:
    """``3 * n_blocks + 2`` leaves: per block a kernel, a bias and a scale."""
    import jax.numpy as jnp

    blocks = {
        f"block{i}": {
            "kernel": jnp.full((32, 32), 0.1 + i / 100),
            "bias": jnp.full((32,), 0.01),
            "scale": jnp.ones((32,)),
        }
        for i in range(n_blocks)
    }
    return {"blocks": blocks, "head": {"kernel": jnp.full((32, 10), 0.2), "bias": jnp.zeros(10)}}


def cases(params: Any) -> dict[str, tuple[Any, Any]]:
    """label -> (decaytx transform, the optax transform it is compared with)."""
    import jax
    import optax

    import decaytx
    from decaytx import masks

    mask_tree = jax.tree.map(lambda p: p.ndim >= 2, params)
    nd2 = masks.ndim_at_least(2)
    return {
        "add_decoupled_decay": (
            decaytx.add_decoupled_decay(1e-2, learning_rate=None), optax.add_decayed_weights(1e-2)),
        "add_decoupled_decay(mask)": (
            decaytx.add_decoupled_decay(1e-2, learning_rate=None, mask=nd2),
            optax.add_decayed_weights(1e-2, mask=mask_tree)),
        "add_l2_grad": (decaytx.add_l2_grad(1e-2), optax.add_decayed_weights(1e-2)),
        "add_l2_grad(mask)": (
            decaytx.add_l2_grad(1e-2, mask=nd2), optax.add_decayed_weights(1e-2, mask=mask_tree)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30, help="interleaved repeats (median taken)")
    ap.add_argument("--calls", type=int, default=20, help="updates per timing")
    args = ap.parse_args()

    import jax
    import numpy as np

    params = tree()
    grads = jax.tree.map(lambda p: p * 0 + 1e-3, params)
    timed: dict[str, Any] = {}
    for label, (ours, theirs) in cases(params).items():
        for who, t in (("decaytx", ours), ("optax", theirs)):
            state = t.init(params)
            jax.block_until_ready(t.update(grads, state, params))  # warm-up (op caches)
            timed[f"{label} | {who}"] = (t, state)
    times: dict[str, list[float]] = {k: [] for k in timed}
    for _ in range(args.repeats):
        for k, (t, state) in timed.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                out = t.update(grads, state, params)
            jax.block_until_ready(out)
            times[k].append((time.perf_counter() - start) / args.calls)
    n_leaves = len(jax.tree.leaves(params))
    print(f"eager update, {n_leaves} leaves, median of {args.repeats} x {args.calls} calls "
          f"(jax {jax.__version__})")
    print(f"{'case':32s} {'decaytx us':>11s} {'optax us':>9s} {'ratio':>6s}")
    for label in cases(params):
        ours = float(np.median(times[f"{label} | decaytx"])) * 1e6
        theirs = float(np.median(times[f"{label} | optax"])) * 1e6
        print(f"{label:32s} {ours:11.0f} {theirs:9.0f} {ours / theirs:6.2f}")


if __name__ == "__main__":
    main()
