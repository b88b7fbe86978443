"""The optimizers the studies compare, written as explicit ``optax.chain``s.

Each chain is what the decaytx recipes (``sgd_l2``, ``sgdw``, ``adam_l2``,
``adamw``, ``proximal_sgd``) spell out: gradient-side forms FIRST, update-side
forms LAST, after ``optax.scale_by_learning_rate``. Writing them out shows the
placement that makes L2 regularization and decoupled decay different;
``tests/test_experiments.py`` checks that they take the same steps as the
recipes.

The studies pass coefficients as traced arrays (one run per row under
``jax.vmap``). A JAX-array coefficient is never skipped as "zero", and a zero
one changes nothing bit for bit (``g + 0*theta == g``, ``u - 0*theta == u``,
``theta - clip(theta, 0, 0) == theta``), so one chain with some coefficients at
0 is exactly the smaller chain: that lets a study run "no decay", "L2" and
"decoupled" side by side in one compiled program, paired seed by seed.
"""

from __future__ import annotations

from typing import Any

import optax

import decaytx

KERNELS = decaytx.masks.ndim_at_least(2)  # decay weight matrices, not biases


def sgd_l2(lr: Any, wd: Any, momentum: float | None = None) -> optax.GradientTransformation:
    """SGD with L2 regularization: the penalty's gradient enters the momentum."""
    return optax.chain(
        decaytx.add_l2_grad(wd, mask=KERNELS),
        optax.trace(momentum) if momentum else optax.identity(),
        optax.scale_by_learning_rate(lr),
    )


def sgdw(lr: Any, wd: Any, momentum: float | None = None, multiplier: Any = "lr") -> optax.GradientTransformation:
    """SGD with decoupled decay; ``multiplier="lr"`` gives m_t = lr (PyTorch convention)."""
    return optax.chain(
        optax.trace(momentum) if momentum else optax.identity(),
        optax.scale_by_learning_rate(lr),
        decaytx.add_decoupled_decay(wd, learning_rate=lr if multiplier == "lr" else multiplier, mask=KERNELS),
    )


def adam_l2(lr: Any, wd: Any) -> optax.GradientTransformation:
    """Adam with L2 regularization: the penalty's gradient is preconditioned."""
    return optax.chain(
        decaytx.add_l2_grad(wd, mask=KERNELS),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(lr),
    )


def adamw(lr: Any, wd: Any, multiplier: Any = "lr") -> optax.GradientTransformation:
    """Adam with decoupled decay (AdamW); ``multiplier`` as in :func:`sgdw`."""
    return optax.chain(
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(lr),
        decaytx.add_decoupled_decay(wd, learning_rate=lr if multiplier == "lr" else multiplier, mask=KERNELS),
    )


def adam_both(lr: Any, wd_l2: Any, wd_decoupled: Any, multiplier: Any = "lr") -> optax.GradientTransformation:
    """Adam+L2 (``wd_decoupled=0``), AdamW (``wd_l2=0``) or Adam (both 0) in one chain."""
    return optax.chain(
        decaytx.add_l2_grad(wd_l2, mask=KERNELS),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(lr),
        decaytx.add_decoupled_decay(wd_decoupled, learning_rate=lr if multiplier == "lr" else multiplier, mask=KERNELS),
    )


def sgd_both(lr: Any, wd_l2: Any, wd_decoupled: Any, momentum: float | None, multiplier: Any = "lr") -> optax.GradientTransformation:
    """SGD+L2 (``wd_decoupled=0``), SGDW (``wd_l2=0``) or SGD (both 0) in one chain."""
    return optax.chain(
        decaytx.add_l2_grad(wd_l2, mask=KERNELS),
        optax.trace(momentum) if momentum else optax.identity(),
        optax.scale_by_learning_rate(lr),
        decaytx.add_decoupled_decay(wd_decoupled, learning_rate=lr if multiplier == "lr" else multiplier, mask=KERNELS),
    )


def sgd_penalties(lr: Any, h: dict[str, Any]) -> optax.GradientTransformation:
    """Plain SGD with every L1/L2/elastic-net form; unused coefficients are 0.

    ``h`` keys: ``l1_sub`` (add_l1_subgrad), ``en_sub_l1``/``en_sub_l2``
    (add_elastic_net_grad), ``l2`` (add_l2_grad), ``prox_l1``/``prox_l2``
    (prox_elastic_net; with ``prox_l2 = 0`` it is exactly prox_l1).
    """
    return optax.chain(
        decaytx.add_l1_subgrad(h["l1_sub"], mask=KERNELS),
        decaytx.add_elastic_net_grad(h["en_sub_l1"], h["en_sub_l2"], mask=KERNELS),
        decaytx.add_l2_grad(h["l2"], mask=KERNELS),
        optax.scale_by_learning_rate(lr),
        decaytx.prox_elastic_net(h["prox_l1"], h["prox_l2"], learning_rate=lr, mask=KERNELS),
    )
