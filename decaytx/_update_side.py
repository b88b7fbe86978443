"""What the update-side forms share: the multiplier m_t and their warnings.

An update-side form acts on the step that will be applied, so it goes LAST
in a chain, after ``optax.scale_by_learning_rate``. Its coefficient is
multiplied by ``m_t``, which comes from ``learning_rate=``:

* ``None``: ``m_t = 1`` (fully independent decay, TF-Addons ``AdamW``);
* a float or schedule ``eta``: ``m_t = eta_t`` (PyTorch ``AdamW``, optax);
* :func:`decaytx.lr_multiplier` of a schedule: ``m_t = eta_t / eta_max``;
* :func:`decaytx.corrected_decay` of a schedule: ``m_t = eta_t^2 / eta_max``;
* per leaf, any of these as a coefficient tree (a prefix of params) or
  :func:`decaytx.per_leaf`: each leaf's decay follows its own rate.
"""

from __future__ import annotations

from typing import Any

from decaytx import _groups, _schedules


class _Required:
    """The default of ``learning_rate=``: a sentinel that must be replaced."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()

_CHOICES = (
    "learning_rate=eta (a float or the optimizer's schedule: m_t = eta_t, as "
    "PyTorch AdamW and optax.adamw); learning_rate=decaytx.lr_multiplier(schedule) "
    "(m_t = eta_t/eta_max, the paper's AdamW); "
    "learning_rate=decaytx.corrected_decay(schedule) (m_t = eta_t**2/eta_max, "
    "AdamC); learning_rate=None (m_t = 1, fully independent decay as TF-Addons "
    "AdamW)"
)


def multiplier(learning_rate: Any, name: str) -> Any:
    """The multiplier coefficient ``m``: ``learning_rate``, or 1 for ``None``.

    ``learning_rate`` has no default (decaytx 0.2): a forgotten multiplier
    silently decays with m = 1, so it must be said out loud. It may be a
    coefficient tree (a prefix of params) or :func:`decaytx.per_leaf`: each
    leaf's decay then follows its own rate.
    """
    if learning_rate is REQUIRED:
        raise TypeError(
            f"{name}() needs learning_rate=, the multiplier m_t of the decay "
            f"(u <- u - m_t * lambda * theta). Choose one: {_CHOICES}."
        )
    if learning_rate is None:
        return 1.0
    return _groups.check("learning_rate", learning_rate)


def leaf_multiplier(group: dict[str, Any], m: Any) -> Any:
    """The multiplier of one plan group: its ``learning_rate`` (0 where a concrete zero).

    ``m`` (the form's multiplier as given) where the form has no
    ``learning_rate`` coefficient.
    """
    if "learning_rate" not in group:
        return m
    v = group["learning_rate"]
    return 0.0 if v is None else v


def peak_rate(m: Any, *lambdas: Any) -> float | None:
    """Largest per-step factor ``m * lambda`` if every factor is concrete."""
    rate = 1.0
    for f in (m, *lambdas):
        p = _schedules.peak(f)  # None: traced, or a schedule closing over traced values
        if p is None:
            return None
        rate *= p
    return rate
