"""What a decay transform says about itself at ``init``, for :func:`decaytx.audit`.

Each decaytx transform decides at ``init`` which leaves it decays, with which
coefficients and toward which anchor (its *plan*). While :func:`recording` is
active, every ``init`` also hands that plan to :func:`emit`, so an audit can
``init`` any optimizer (an ``optax.chain``, ``masked``, ``multi_transform``,
``MultiSteps``, ``inject_hyperparams``, a recipe) and collect the plans of all
the decaytx transforms inside it, however deeply they are wrapped. Outside
:func:`recording` the cost is one context-variable lookup per ``init``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class LeafPlan:
    """One params leaf as a decay transform sees it at ``init``.

    Attributes:
      path: the leaf's "/"-joined path, as masks see it (``masks.path_of``).
      shape: the leaf's shape.
      dtype: the leaf's dtype name (``"float32"``, ``"bfloat16"``...).
      decayed: whether this transform acts on the leaf.
      coefficients: coefficient name -> this leaf's coefficient (a float, a
        scalar array or a schedule), e.g. ``{"weight_decay": 0.1}`` or
        ``{"l1": 1e-3, "l2": 0.0}``; empty where not decayed.
      anchor: ``"zero"``, ``"init"`` or ``"tree"`` (a user-given pytree).
      masked_in: what the transform's mask says of the leaf (``True`` when
        there is no mask); a leaf masked in but not decayed has a zero
        coefficient or is not a float.
      compensated: whether the leaf keeps a float32 residual
        (``compensated=True`` on a bf16/f16 leaf): its decay is not lost to
        rounding.
      multiplier: this leaf's update-side multiplier ``m`` (its own
        learning rate where ``learning_rate=`` is a tree or ``per_leaf``);
        ``None`` on the gradient side or where not decayed.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    decayed: bool
    coefficients: dict[str, Any]
    anchor: Literal["zero", "init", "tree"]
    masked_in: bool = True
    compensated: bool = False
    multiplier: Any = None


@dataclasses.dataclass(frozen=True)
class TransformPlan:
    """The plan of one decay transform, emitted by its ``init``.

    Attributes:
      name: the public factory name (``"add_decoupled_decay"``).
      side: ``"gradient"`` (goes first) or ``"update"`` (goes last).
      multiplier: the update-side multiplier ``m`` as given (a float, a
        schedule, or ``1.0`` for ``learning_rate=None``); ``None`` for the
        gradient side.
      cautious: whether cautious decay is on.
      rates: the coefficients whose ``m * coefficient`` is the per-step
        factor checked against 1 and the dtype's resolution (the warnings'
        rule); empty for forms without such a factor.
      leaves: one :class:`LeafPlan` per params leaf the transform was
        initialised with (``None``/``MaskedNode`` leaves left out).
      mask: the ``mask=`` the transform was given (``None``: every leaf), so
        the audit can say which rule decided each leaf's decay.
    """

    name: str
    side: Literal["gradient", "update"]
    multiplier: Any
    cautious: bool
    leaves: tuple[LeafPlan, ...]
    rates: tuple[str, ...] = ()
    mask: Any = None


_RECORDER: contextvars.ContextVar[list[TransformPlan] | None] = contextvars.ContextVar(
    "decaytx_plan_recorder", default=None
)


def active() -> bool:
    """Whether a :func:`recording` is under way (plans are worth building)."""
    return _RECORDER.get() is not None


def emit(plan: TransformPlan) -> None:
    """Hands ``plan`` to the active :func:`recording`, if any."""
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.append(plan)


@contextlib.contextmanager
def recording() -> Iterator[list[TransformPlan]]:
    """Collects the plans emitted by every ``init`` inside the block."""
    plans: list[TransformPlan] = []
    token = _RECORDER.set(plans)
    try:
        yield plans
    finally:
        _RECORDER.reset(token)
