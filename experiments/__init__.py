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
    "sgd-l2-equals-decoupled": "study_sgd_equivalence",
    "schedule-coupling": "study_schedules",
    "matches-sklearn-lasso": "study_lasso",
}

# Wall seconds per study and mode, measured on the 2-core machine (quick: the committed
# quick run; smoke and full: estimates scaled from it). The CLI's header and progress
# lines estimate the time left from these, corrected by how fast the run goes so far.
SECONDS: dict[str, dict[str, float]] = {
    "decoupled-hyperparameter-landscape": {"smoke": 8, "quick": 300, "full": 770},
    "cautious-decay": {"smoke": 3, "quick": 30, "full": 80},
    "adamw-rotational-equilibrium": {"smoke": 3, "quick": 20, "full": 50},
    "corrected-decay": {"smoke": 3, "quick": 30, "full": 80},
    "prevents-overfitting": {"smoke": 3, "quick": 37, "full": 240},
    "keeps-weights-small": {"smoke": 3, "quick": 90, "full": 350},
    "anchor-toward-pretrained": {"smoke": 6, "quick": 80, "full": 150},
    "l1-sparsity": {"smoke": 4, "quick": 40, "full": 180},
    "elastic-net-both": {"smoke": 2, "quick": 4, "full": 6},
    "sgd-l2-equals-decoupled": {"smoke": 5, "quick": 15, "full": 30},
    "schedule-coupling": {"smoke": 3, "quick": 30, "full": 165},
    "matches-sklearn-lasso": {"smoke": 1, "quick": 2, "full": 3},
}
