"""One registry of every decaytx factory, for the cross-path properties.

Each entry builds one optimizer path: the six forms, the recipes, and each
fused step (the sibling formulation, run without the multi-output-fusion
flag here and with it in tests/test_paths.py's worker), in both layouts
where it has two. A new form or recipe joins every property of
``tests/test_paths.py`` by one line here.

``make(**kw)`` builds the path with extra keyword arguments (``mask``,
``anchor``); ``factory``/``args``/``kwargs`` say the same call for
``inject_hyperparams``. ``anchor``: the path takes ``anchor=``; ``chain``: a
recipe (its update needs real updates, not ``None``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

import decaytx


@dataclasses.dataclass(frozen=True)
class Entry:
    factory: Callable[..., optax.GradientTransformation]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    anchor: bool = True
    chain: bool = False
    fused: bool = False
    flat: bool = False
    # optax.inject_hyperparams turns every number into an array: a structural
    # number (``axis``) or a schedule-derived scaling is refused, pointing to
    # decaytx.inject_hyperparams.
    optax_inject: bool = True

    def make(self, **kw: Any) -> optax.GradientTransformation:
        return self.factory(*self.args, **{**self.kwargs, **kw})


def _sched(peak: float = 1e-2) -> Any:
    return optax.warmup_cosine_decay_schedule(peak * 0.1, peak, 3, 50)


D = decaytx
F = decaytx.fused
SIB = {"formulation": "sibling"}
# A learning rate per leaf (matrices and vectors each their own schedule).
_LR_MATRIX, _LR_VECTOR = _sched(), _sched(2e-2)
LR_PER_LEAF = D.per_leaf(lambda path, x: _LR_MATRIX if x.ndim >= 2 else _LR_VECTOR)

REGISTRY: dict[str, Entry] = {
    # the forms
    "add_l2_grad": Entry(D.add_l2_grad, (0.1,), {}),
    "add_l1_subgrad": Entry(D.add_l1_subgrad, (0.01,), {}, anchor=False),
    "add_elastic_net_grad": Entry(D.add_elastic_net_grad, (0.01, 0.1), {}, anchor=False),
    "add_decoupled_decay": Entry(D.add_decoupled_decay, (0.1,), {"learning_rate": _sched()}),
    "prox_l1": Entry(D.prox_l1, (0.01,), {"learning_rate": 0.1}, anchor=False),
    "prox_elastic_net": Entry(D.prox_elastic_net, (0.01, 0.1), {"learning_rate": _sched()}, anchor=False),
    "prox_group_lasso": Entry(D.prox_group_lasso, (0.01,), {"learning_rate": 0.1, "axis": -1}, anchor=False,
                              optax_inject=False),
    # the recipes
    "sgd_l2": Entry(D.sgd_l2, (0.1, 0.1), {"momentum": 0.9}, chain=True),
    "sgdw": Entry(D.sgdw, (_sched(), 0.1), {"momentum": 0.9}, chain=True),
    "adam_l2": Entry(D.adam_l2, (1e-2, 0.1), {}, chain=True),
    "adamw": Entry(D.adamw, (_sched(), 0.1), {}, chain=True),
    "adamw-schedule": Entry(D.adamw, (_sched(), 0.1), {"decay_scaling": "schedule"}, chain=True,
                            optax_inject=False),
    "proximal_sgd": Entry(D.proximal_sgd, (0.1, 0.01, 0.1), {}, anchor=False, chain=True),
    # per-leaf learning rates
    "scale_by_learning_rate[per-leaf lr]": Entry(D.scale_by_learning_rate, (LR_PER_LEAF,), {}, anchor=False),
    "add_decoupled_decay[per-leaf lr]": Entry(D.add_decoupled_decay, (0.1,), {"learning_rate": LR_PER_LEAF}),
    "sgd_l2[per-leaf lr]": Entry(D.sgd_l2, (LR_PER_LEAF, 0.1), {"momentum": 0.9}, chain=True),
    "sgdw[per-leaf lr]": Entry(D.sgdw, (LR_PER_LEAF, 0.1), {"momentum": 0.9}, chain=True),
    "adamw[per-leaf lr]": Entry(D.adamw, (LR_PER_LEAF, 0.1), {}, chain=True),
    "adamw-schedule[per-leaf lr]": Entry(D.adamw, (LR_PER_LEAF, 0.1), {"decay_scaling": "schedule"},
                                         chain=True),
    # the fused steps (sibling formulation), both layouts
    "fused.adamw": Entry(F.adamw, (_sched(), 0.1), {**SIB, "layout": "tree"}, chain=True, fused=True),
    "fused.adamw[flat]": Entry(F.adamw, (_sched(), 0.1), {**SIB, "layout": "flat"}, chain=True,
                               fused=True, flat=True),
    "fused.adam_l2": Entry(F.adam_l2, (1e-2, 0.1), {**SIB, "layout": "tree"}, chain=True, fused=True),
    "fused.adam_l2[flat]": Entry(F.adam_l2, (1e-2, 0.1), {**SIB, "layout": "flat"}, chain=True,
                                 fused=True, flat=True),
    "fused.sgdw": Entry(F.sgdw, (_sched(), 0.1), {**SIB, "momentum": 0.9}, chain=True, fused=True),
    "fused.sgd_l2": Entry(F.sgd_l2, (0.1, 0.1), {**SIB, "momentum": 0.9}, chain=True, fused=True),
    "fused.adamw[per-leaf lr]": Entry(F.adamw, (LR_PER_LEAF, 0.1), {**SIB, "layout": "tree"}, chain=True,
                                      fused=True),
    "fused.adamw[flat, per-leaf lr]": Entry(F.adamw, (LR_PER_LEAF, 0.1), {**SIB, "layout": "flat"},
                                            chain=True, fused=True, flat=True),
    "fused.sgdw[per-leaf lr]": Entry(F.sgdw, (LR_PER_LEAF, 0.1), {**SIB, "momentum": 0.9}, chain=True,
                                     fused=True),
    "fused.sgd_l2[per-leaf lr]": Entry(F.sgd_l2, (LR_PER_LEAF, 0.1), {**SIB, "momentum": 0.9}, chain=True,
                                       fused=True),
    # compensated=True (a float32 residual per bf16/f16 leaf; none for float32)
    "add_decoupled_decay[compensated]": Entry(D.add_decoupled_decay, (0.1,),
                                              {"learning_rate": _sched(), "compensated": True}),
    "prox_l1[compensated]": Entry(D.prox_l1, (0.01,), {"learning_rate": 0.1, "compensated": True}, anchor=False),
    "prox_elastic_net[compensated]": Entry(D.prox_elastic_net, (0.01, 0.1),
                                           {"learning_rate": _sched(), "compensated": True}, anchor=False),
    "sgdw[compensated]": Entry(D.sgdw, (_sched(), 0.1), {"momentum": 0.9, "compensated": True}, chain=True),
    "adamw[compensated]": Entry(D.adamw, (_sched(), 0.1), {"compensated": True}, chain=True),
    "fused.adamw[compensated]": Entry(F.adamw, (_sched(), 0.1), {**SIB, "layout": "tree", "compensated": True},
                                      chain=True, fused=True),
    "fused.sgdw[compensated]": Entry(F.sgdw, (_sched(), 0.1), {**SIB, "momentum": 0.9, "compensated": True},
                                     chain=True, fused=True),
}

# Each fused step and the recipe whose values it promises.
RECIPE_OF = {
    "fused.adamw": "adamw", "fused.adamw[flat]": "adamw", "fused.adam_l2": "adam_l2",
    "fused.adam_l2[flat]": "adam_l2", "fused.sgdw": "sgdw", "fused.sgd_l2": "sgd_l2",
    "fused.adamw[per-leaf lr]": "adamw[per-leaf lr]", "fused.adamw[flat, per-leaf lr]": "adamw[per-leaf lr]",
    "fused.sgdw[per-leaf lr]": "sgdw[per-leaf lr]", "fused.sgd_l2[per-leaf lr]": "sgd_l2[per-leaf lr]",
    "fused.adamw[compensated]": "adamw[compensated]", "fused.sgdw[compensated]": "sgdw[compensated]",
}

ANCHORED = [k for k, e in REGISTRY.items() if e.anchor]
