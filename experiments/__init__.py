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

# Wall seconds per study and mode on the 2-core machine: quick and full from the committed
# runs (measured while other jobs loaded the machine, load about 4), smoke estimated. The CLI's header and progress lines estimate the time left from
# these, corrected by how fast the run goes so far.
SECONDS: dict[str, dict[str, float]] = {
    "decoupled-hyperparameter-landscape": {"smoke": 8, "quick": 159, "full": 506},
    "cautious-decay": {"smoke": 3, "quick": 9, "full": 24},
    "adamw-rotational-equilibrium": {"smoke": 3, "quick": 6, "full": 10},
    "corrected-decay": {"smoke": 3, "quick": 10, "full": 19},
    "prevents-overfitting": {"smoke": 3, "quick": 9, "full": 45},
    "keeps-weights-small": {"smoke": 4, "quick": 34, "full": 101},
    "anchor-toward-pretrained": {"smoke": 6, "quick": 27, "full": 34},
    "l1-sparsity": {"smoke": 4, "quick": 7, "full": 55},
    "elastic-net-both": {"smoke": 2, "quick": 1, "full": 1},
    "group-lasso-filters": {"smoke": 3, "quick": 10, "full": 42},
    "sgd-l2-equals-decoupled": {"smoke": 5, "quick": 7, "full": 26},
    "schedule-coupling": {"smoke": 3, "quick": 4, "full": 23},
    "weight-decay-transfer": {"smoke": 6, "quick": 0, "full": 132},
    "matches-sklearn-lasso": {"smoke": 1, "quick": 1, "full": 1},
}
