r"""Fused optimizer steps: AdamW, Adam-L2 and SGD(W) as one kernel per leaf.

``decaytx.fused.adamw``, ``.adam_l2``, ``.sgdw`` and ``.sgd_l2`` take their
recipe's arguments and compute its values (bitwise on XLA:CPU), with its
state; each is the recipe plus an update written in the *sibling* form
(:mod:`decaytx.fused._sibling`) that XLA:CPU's multi-output fusion compiles
to one kernel per leaf: 28 bytes per f32 parameter for AdamW and Adam-L2
(``optax.adamw``: 40), 20 for SGD with momentum. The option is process-wide
and opt-in:

.. code-block:: shell

  XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion

Without it (or off CPU) ``formulation="auto"`` runs exactly the recipe's
program: the sibling form would cost more there (60 B/param). The decay is
the recipe's own stage (:class:`decaytx._transform.Stage`): masks,
coefficient trees, schedules, anchors, dtype rules, state checks and error
messages are the recipe's on every path.

Many small leaves: ``adamw`` and ``adam_l2`` take ``layout=``. ``"flat"``
keeps Adam's moments in one flat buffer per dtype (:mod:`decaytx.fused._flat`),
with its own state; ``"auto"`` picks it at ``init`` only when multi-output
fusion is active and the float leaves average under ``FLAT_MEAN_LEAF_SIZE``
elements.
"""

from decaytx.fused._flat import FLAT_MEAN_LEAF_SIZE, FlatAdamState, many_small_leaves
from decaytx.fused._probe import FLAG, multi_output_fusion_active
from decaytx.fused._steps import adam_l2, adamw, sgd_l2, sgdw

__all__ = [
    "FLAG",
    "FLAT_MEAN_LEAF_SIZE",
    "FlatAdamState",
    "adam_l2",
    "adamw",
    "many_small_leaves",
    "multi_output_fusion_active",
    "sgd_l2",
    "sgdw",
]
