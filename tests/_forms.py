"""The table of forms and recipes that the sharding tests step (not a test module).

Shared by ``tests/test_sharding.py`` (its subprocess script) and
``tests/_mp_worker.py`` (run as a script): both put this directory on
``sys.path`` and import :func:`transforms` from here.
"""

from __future__ import annotations

import re
from typing import Any

CONTROL = "__control__"
COLLECTIVE = re.compile(
    r"all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter|collective-broadcast")


def transforms(anchor: Any = None) -> dict[str, Any]:
    """Every form and recipe, plus a control (``CONTROL``) that communicates.

    With ``anchor`` (a params-like tree) also the entries that decay toward
    that user anchor.
    """
    import jax.numpy as jnp
    import optax

    import decaytx
    from decaytx import masks

    sched = optax.cosine_decay_schedule(1e-2, 100)
    nd2 = masks.ndim_at_least(2)
    adam = optax.adam(1e-2)
    table = {
        "add_l2_grad": optax.chain(decaytx.add_l2_grad(0.1), adam),
        "add_l2_grad(schedule, anchor=init, mask)": optax.chain(
            decaytx.add_l2_grad(lambda t: 0.1 * (1 + jnp.minimum(t, 10)), anchor="init",
                                mask=nd2), adam),
        "add_l1_subgrad": optax.chain(decaytx.add_l1_subgrad(0.01), adam),
        "add_elastic_net_grad": optax.chain(decaytx.add_elastic_net_grad(0.01, 0.1), adam),
        "add_decoupled_decay": optax.chain(
            adam, decaytx.add_decoupled_decay(0.1, learning_rate=1e-2)),
        "add_decoupled_decay(lr_multiplier, anchor=init, cautious)": optax.chain(
            optax.adam(sched), decaytx.add_decoupled_decay(
                0.1, learning_rate=decaytx.lr_multiplier(sched, peak=1e-2), anchor="init",
                cautious=True, mask=nd2)),
        "prox_l1": optax.chain(optax.sgd(0.1), decaytx.prox_l1(0.05, learning_rate=0.1)),
        "prox_elastic_net": optax.chain(
            optax.sgd(sched), decaytx.prox_elastic_net(0.05, 0.1, learning_rate=sched)),
        "sgd_l2": decaytx.sgd_l2(0.1, 1e-2, momentum=0.9, mask=nd2),
        "sgdw": decaytx.sgdw(0.1, 1e-2, momentum=0.9, nesterov=True),
        "adam_l2": decaytx.adam_l2(1e-2, 1e-2),
        "adamw": decaytx.adamw(sched, 0.1, mask=nd2, decay_scaling="corrected"),
        "adamw(schedule, cautious)": decaytx.adamw(sched, 0.1, decay_scaling="schedule",
                                                   cautious=True),
        "proximal_sgd": decaytx.proximal_sgd(0.1, 0.05, 0.1),
        "inject_hyperparams(adamw)": decaytx.inject_hyperparams(decaytx.adamw)(
            1e-2, 0.1, mask=nd2),
    }
    if anchor is not None:
        table.update({
            "add_l2_grad(user anchor)": optax.chain(decaytx.add_l2_grad(0.1, anchor=anchor), adam),
            "add_decoupled_decay(user anchor)": optax.chain(
                adam, decaytx.add_decoupled_decay(0.1, learning_rate=1e-2, anchor=anchor)),
            "chain(schedules, user anchor, anchor=init, prox)": optax.chain(
                decaytx.add_l2_grad(lambda t: 1e-3 * (1 + jnp.minimum(t, 5)), mask=nd2),
                decaytx.add_l2_grad(1e-3, anchor=anchor),
                optax.scale_by_adam(),
                optax.scale_by_learning_rate(sched),
                decaytx.add_decoupled_decay(0.1, learning_rate=decaytx.lr_multiplier(sched),
                                            anchor="init", mask=nd2),
                decaytx.prox_elastic_net(1e-4, 1e-3, learning_rate=sched, mask=nd2)),
        })
    # Does communicate, so that the detection of collectives is itself tested.
    table[CONTROL] = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1))
    return table
