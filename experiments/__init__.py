"""Experiments that test the claims of the weight-decay notes with decaytx.

``python -m experiments <study> [--quick|--smoke] [--out DIR] [--seed N]``;
``python -m experiments all --quick`` runs every claim study and writes
``results.json``, one PNG per claim and ``report.md`` into ``--out``.
"""

# claim id -> module (in experiments/) whose ``run(ctx)`` returns its Claim.
# The landscape runs first: cautious-decay and adamw-rotational-equilibrium start
# from its tuned cells.
STUDIES: dict[str, str] = {
    "decoupled-hyperparameter-landscape": "study_landscape",
    "cautious-decay": "study_cautious",
    "adamw-rotational-equilibrium": "study_rotation",
    "corrected-decay": "study_corrected",
    "prevents-overfitting": "study_overfitting",
    "keeps-weights-small": "study_weights",
    "anchor-toward-pretrained": "study_anchor",
    "l1-sparsity": "study_sparsity",
    "elastic-net-both": "study_elastic_net",
    "group-lasso-filters": "study_group_lasso",
    "sgd-l2-equals-decoupled": "study_sgd_equivalence",
    "schedule-coupling": "study_schedules",
    "weight-decay-transfer": "study_transfer",
    "matches-sklearn-lasso": "study_lasso",
}
# Claims whose design needs full-size runs: ``all --quick`` leaves them out (smoke runs them, tiny).
FULL_ONLY = {"weight-decay-transfer"}

# Wall seconds per study and mode on the 2-core machine: quick from the committed quick run
# (measured while other jobs loaded the machine), smoke and full estimated from it and from
# the earlier full run. The CLI's header and progress lines estimate the time left from
# these, corrected by how fast the run goes so far.
SECONDS: dict[str, dict[str, float]] = {
    "decoupled-hyperparameter-landscape": {"smoke": 8, "quick": 216, "full": 400},
    "cautious-decay": {"smoke": 3, "quick": 13, "full": 60},
    "adamw-rotational-equilibrium": {"smoke": 3, "quick": 11, "full": 30},
    "corrected-decay": {"smoke": 3, "quick": 21, "full": 50},
    "prevents-overfitting": {"smoke": 3, "quick": 18, "full": 120},
    "keeps-weights-small": {"smoke": 3, "quick": 36, "full": 200},
    "anchor-toward-pretrained": {"smoke": 6, "quick": 50, "full": 100},
    "l1-sparsity": {"smoke": 4, "quick": 22, "full": 80},
    "elastic-net-both": {"smoke": 2, "quick": 2, "full": 4},
    "group-lasso-filters": {"smoke": 3, "quick": 15, "full": 90},
    "sgd-l2-equals-decoupled": {"smoke": 5, "quick": 22, "full": 40},
    "schedule-coupling": {"smoke": 3, "quick": 11, "full": 90},
    "weight-decay-transfer": {"smoke": 6, "quick": 0, "full": 300},
    "matches-sklearn-lasso": {"smoke": 1, "quick": 1, "full": 2},
}
