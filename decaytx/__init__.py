"""decaytx: every common form of weight decay as a composable optax transform.

Gradient-side (coupled) forms go FIRST in an ``optax.chain``; update-side
(decoupled and proximal) forms go LAST, after ``optax.scale_by_learning_rate``.
"""

from decaytx import fused, masks
from decaytx._audit import Audit, AuditProblem, AuditRow, audit
from decaytx._decoupled import add_decoupled_decay
from decaytx._deprecated import fused_adam_l2, fused_adamw, fused_sgd_l2, fused_sgdw
from decaytx._gradient import add_elastic_net_grad, add_l1_subgrad, add_l2_grad
from decaytx._group_lasso import group_lasso_penalty, prox_group_lasso
from decaytx._groups import per_leaf
from decaytx._inject import inject_hyperparams
from decaytx._layer_decay import layer_decay
from decaytx._learning_rate import scale_by_learning_rate
from decaytx._monitor import monitor, monitor_stats
from decaytx._parity import scale_by_keras_adam
from decaytx._penalties import elastic_net_penalty, l1_penalty, l2_penalty
from decaytx._proximal import prox_elastic_net, prox_l1, soft_threshold
from decaytx._recipes import adam_l2, adamw, proximal_sgd, sgd_l2, sgdw
from decaytx._scaling import (
    corrected_decay,
    lr_multiplier,
    normalized_weight_decay,
    weight_decay_for_timescale,
    with_horizon,
)
from decaytx._transform import DecayState
from decaytx._warnings import DecayWarning
from decaytx.fused import multi_output_fusion_active

__version__ = "0.3.0.dev0"

__all__ = [
    "Audit",
    "AuditProblem",
    "AuditRow",
    "DecayState",
    "DecayWarning",
    "adam_l2",
    "adamw",
    "audit",
    "add_decoupled_decay",
    "add_elastic_net_grad",
    "add_l1_subgrad",
    "add_l2_grad",
    "corrected_decay",
    "elastic_net_penalty",
    "fused",
    "fused_adam_l2",
    "fused_adamw",
    "fused_sgd_l2",
    "fused_sgdw",
    "group_lasso_penalty",
    "inject_hyperparams",
    "l1_penalty",
    "l2_penalty",
    "layer_decay",
    "lr_multiplier",
    "masks",
    "monitor",
    "monitor_stats",
    "multi_output_fusion_active",
    "normalized_weight_decay",
    "per_leaf",
    "prox_elastic_net",
    "prox_group_lasso",
    "prox_l1",
    "proximal_sgd",
    "scale_by_keras_adam",
    "scale_by_learning_rate",
    "sgd_l2",
    "sgdw",
    "soft_threshold",
    "weight_decay_for_timescale",
    "with_horizon",
]
