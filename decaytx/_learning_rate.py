r"""The learning-rate scaling, per leaf: ``u <- -eta_t u`` with each leaf's own eta.

A float or a schedule is ``optax.scale_by_learning_rate`` itself. A
coefficient tree (a prefix of params) or :func:`decaytx.per_leaf` is a
:class:`~decaytx._transform.Form` on the one machinery: the per-leaf plan
groups leaves sharing a rate, many distinct constant rates enter through
``_constants.pick`` (compile time independent of their count), schedules
share one count, and each leaf keeps its dtype. The state is optax's:
``EmptyState`` for constant rates, ``ScaleByScheduleState(count)`` where a
rate is a schedule, so a recipe's state has one structure whatever its rate.

:class:`Rates` is what a recipe's step shares between its learning-rate
scaling and its decay's multiplier: each schedule evaluated once per step.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from decaytx import _coefficients as coef
from decaytx import _groups, _plan, _trees
from decaytx._transform import DecayState, Form, Stage, Step


class Rates:
    """Schedules' values at one step, each evaluated once (by identity).

    :meth:`eta` is a schedule's value, :meth:`multiplier` a decay
    multiplier's: ``lr_multiplier``/``corrected_decay`` of a schedule derive
    theirs from that schedule's eta_t (``of_rate``), so a recipe evaluates
    each leaf's schedule once per step for its step and its decay.
    """

    def __init__(self, count: Any) -> None:
        self.count = count
        self.values: dict[int, tuple[Any, Any]] = {}

    def raw(self, schedule: Any) -> Any:
        """``schedule(count)`` as the schedule returns it (optax's own step reads this)."""
        key = id(schedule)
        if key not in self.values:
            self.values[key] = (schedule, schedule(self.count))
        return self.values[key][1]

    def eta(self, value: Any) -> jax.Array:
        """A rate's value at this step (a constant as it is)."""
        return coef.value_at(self.raw(value) if coef.is_schedule(value) else value, None)

    def multiplier(self, m: Any) -> jax.Array:
        """A decay multiplier's value at this step, from its schedule's eta_t where it has one."""
        source = getattr(m, "schedule", None)
        if source is not None and getattr(m, "of_rate", None) is not None:
            return m.of_rate(self.eta(source))
        return self.eta(m)


def _scaled(u: jax.Array, p: jax.Array, a: Any, factor: jax.Array) -> jax.Array:
    del p, a
    return factor * u


def _factor(sign: int, v: dict[str, Any]) -> dict[str, Any]:
    return {"factor": sign * v["learning_rate"]}


def _times_zero(zero: float, u: jax.Array) -> jax.Array:
    """A frozen leaf's step, ``-0 * u`` (what optax gives for a rate of 0)."""
    return jnp.asarray(zero, u.dtype) * u


class LearningRate:
    """``scale_by_learning_rate``: optax's for one rate, a :class:`Stage` for a tree.

    ``init``/``update`` are the transform's; ``prepare``/``apply``/``next_state``
    let a fused step scale one leaf at a time from the same plan.
    """

    def __init__(self, learning_rate: Any, flip_sign: bool = True) -> None:
        self.learning_rate = _groups.check("learning_rate", learning_rate)
        self.flip_sign = bool(flip_sign)
        self.per_leaf = _groups.is_tree(learning_rate)
        self.stage: Stage | None = None
        if self.per_leaf:
            # Module-level functions (not closures): the transform pickles.
            self.stage = Stage(Form(
                "scale_by_learning_rate", _scaled, {"learning_rate": learning_rate},
                side="update", combine=functools.partial(_factor, -1 if self.flip_sign else 1),
                at_zero=functools.partial(_times_zero, -0.0 if self.flip_sign else 0.0),
            ))

    def transform(self) -> optax.GradientTransformation:
        """``optax.scale_by_learning_rate`` itself for one rate; for a tree, this object's."""
        if self.stage is None:
            return optax.scale_by_learning_rate(self.learning_rate, flip_sign=self.flip_sign)
        return optax.GradientTransformation(self.init, self.update)

    def init(self, params: Any) -> Any:
        if self.stage is None:
            return optax.scale_by_learning_rate(self.learning_rate, flip_sign=self.flip_sign).init(params)
        if _trees.is_params_placeholder(params):
            needs = _plan.any_schedule({"learning_rate": self.learning_rate})
        else:
            needs = self.stage.plan(params, at_init=True).needs_count
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32)) if needs else optax.EmptyState()

    def prepare(self, state: Any, updates: Any, rates: Rates | None = None) -> Step:
        """The per-leaf step of a tree rate (the updates stand for params: same tree and shapes)."""
        assert self.stage is not None
        count = getattr(state, "count", None)
        dec = DecayState(count=count, anchor=None) if count is not None else optax.EmptyState()
        given = None if rates is None else {"learning_rate": rates.eta}
        return self.stage.prepare(dec, updates, given)

    def apply(self, step: Step, i: int, u: Any) -> Any:
        assert self.stage is not None
        return self.stage.apply(step, i, u, u)

    def next_state(self, state: Any) -> Any:
        if isinstance(state, optax.ScaleByScheduleState):
            return optax.ScaleByScheduleState(count=optax.safe_increment(state.count))
        return state

    def update(self, updates: Any, state: Any, params: Any = None, rates: Rates | None = None
               ) -> tuple[Any, Any]:
        """One step: ``-eta_t u`` per leaf (``rates``: the step's schedules, shared)."""
        del params  # like optax's: the rate needs the updates only
        if self.stage is None:
            if rates is None or not coef.is_schedule(self.learning_rate):
                return optax.scale_by_learning_rate(
                    self.learning_rate, flip_sign=self.flip_sign).update(updates, state)
            step = (-1 if self.flip_sign else 1) * rates.raw(self.learning_rate)
            updates = jax.tree.map(lambda g: jnp.array(step, dtype=g.dtype) * g, updates)
            return updates, self.next_state(state)
        if updates is None:
            return updates, state
        step = self.prepare(state, updates, rates)
        leaves, treedef = _trees.flatten(updates)
        out = [self.apply(step, i, u) for i, u in enumerate(leaves)]
        return treedef.unflatten(out), self.next_state(state)


def scale_by_learning_rate(learning_rate: Any, *, flip_sign: bool = True) -> optax.GradientTransformation:
    r"""Scales the updates by the learning rate, one rate per leaf if wished.

    .. math::
      u_i \leftarrow -\eta_{i,t}\, u_i

    For a float or a schedule this is ``optax.scale_by_learning_rate`` (the
    same transform: same state, same bits). For a coefficient tree (a prefix
    of params; leaves floats, scalar arrays or schedules) or
    :func:`decaytx.per_leaf` each leaf takes its own rate :math:`\eta_{i,t}`:
    PyTorch's param groups with their own ``lr``, layer-wise learning-rate
    decay (:func:`decaytx.layer_decay`), μP's per-layer rates. A rate of 0
    freezes its leaves (``-0 * u``). Schedules are evaluated at this
    transform's own count (one for all of them), which starts at 0 and
    advances once per ``update``; the state is optax's (``EmptyState`` for
    constant rates, ``ScaleByScheduleState``). Each leaf keeps its dtype
    (the rate is cast to it, as optax does); integer leaves are left as they
    are. ``update`` needs no params; a ``per_leaf`` rule is evaluated on
    params at ``init`` and on the updates' leaves (same paths and shapes) at
    ``update``. Many distinct constant rates compile to one fusion body
    (compile time does not grow with their count).

    Args:
      learning_rate: :math:`\eta \ge 0`: a float, a scalar array, a schedule
        of the step count, a coefficient tree or :func:`decaytx.per_leaf`.
      flip_sign: multiply by :math:`-\eta` (a descent step, the default) or
        by :math:`\eta`.

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> t = decaytx.scale_by_learning_rate({"head": 0.1, "body": 0.01})
      >>> g = {"head": jnp.ones(2), "body": jnp.ones(2)}
      >>> u, _ = t.update(g, t.init(g))
      >>> u["head"], u["body"]
      (Array([-0.1, -0.1], dtype=float32), Array([-0.01, -0.01], dtype=float32))
    """
    if not isinstance(flip_sign, bool):
        raise TypeError(f"scale_by_learning_rate(flip_sign={flip_sign!r}): flip_sign must be a bool.")
    return LearningRate(learning_rate, flip_sign).transform()
