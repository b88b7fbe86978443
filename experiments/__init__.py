"""Experiments that test the claims of the weight-decay notes with decaytx.

``python -m experiments <study> [--quick|--smoke] [--out DIR] [--seed N]``;
``python -m experiments all --quick`` runs the ten claim studies and writes
``results.json``, one PNG per claim and ``report.md`` into ``--out``.
"""

# claim id -> module (in experiments/) whose ``run(ctx)`` returns its Claim.
# The landscape runs before adam-l2-differs-from-adamw, which reuses its runs.
STUDIES: dict[str, str] = {
    "decoupled-hyperparameter-landscape": "study_landscape",
    "prevents-overfitting": "study_overfitting",
    "keeps-weights-small": "study_weights",
    "cautious-and-anchor": "study_cautious_anchor",
    "l1-sparsity": "study_sparsity",
    "elastic-net-both": "study_elastic_net",
    "sgd-l2-equals-decoupled": "study_sgd_equivalence",
    "adam-l2-differs-from-adamw": "study_adam_vs_adamw",
    "schedule-coupling": "study_schedules",
    "matches-sklearn-lasso": "study_lasso",
}
