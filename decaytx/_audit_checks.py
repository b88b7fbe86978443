"""The audit's behaviour probes: what the optimizer does around the decay.

From the state ``init`` returned, at the probe point of
:mod:`decaytx._audit_probe`, the optimizer is stepped with zero gradients and
with unit gradients (and, for two checks, at other step counts or with the
decayed leaves moved twice as far from their anchors). What the step of each
leaf does tells:

* a leaf whose update does not depend on the gradient is frozen
  (``set_to_zero`` under ``multi_transform``, ``optax.masked``); one the decay
  still moves is *frozen but decayed*;
* a leaf a zero-gradient step moves though no decaytx transform the audit sees
  decays it: a decay the audit cannot see (a wrapper such as ``optax.flatten``
  or ``optax.lookahead``, or optax's own decay);
* a unit-gradient step whose size changes with the step count of the
  optimizer's schedule, beside a decay whose multiplier is a constant;
* a gradient-side decay (``add_l2_grad``) whose zero-gradient step is
  proportional to the weights under an adaptive optimizer: it sits after the
  optimizer's rescaling;
* a decay that moves a leaf under ``optax.contrib.schedule_free`` while that
  leaf's ``z`` stays put: it sits after the wrapper (it decays the point ``y``
  the wrapper returns), not inside the base optimizer that steps ``z``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _audit_rules as rules
from decaytx import _coefficients as coef
from decaytx import _hook, _trees
from decaytx._audit_probe import Acting, call_update, leaves_by_path, probe_point

# The optax states whose count drives a learning-rate schedule.
_SCHEDULE_STATES = ("ScaleByScheduleState", "WrappedScheduleState", "InjectHyperparamsState",
                    "InjectStatefulHyperparamsState")
_COUNTS = (0, 1, 10, 100, 300, 1000, 3000, 10_000, 100_000, 1_000_000)


def _leaves(tree: Any) -> list[Any]:
    return jax.tree_util.tree_leaves(tree, is_leaf=_trees.is_empty)


def _fill(theta: Any, value: float) -> Any:
    """A gradient of ``value`` on the float leaves, zero on the others."""
    def fill(x: Any) -> Any:
        if _trees.is_empty(x) or not hasattr(x, "dtype"):
            return x
        return jnp.full_like(x, value) if _trees.is_decayable(x) else jnp.zeros_like(x)
    return jax.tree.map(fill, theta, is_leaf=_trees.is_empty)


def _nonzero(x: Any) -> bool:
    return hasattr(x, "dtype") and bool(np.any(np.asarray(x) != 0))


def _pattern(theta: Any) -> Any:
    """A positive gradient of 1.5, 0.5, 1.5, ... on the float leaves (zero on the
    others): not proportional to any probe point (a ones-filled bias), so an
    optimizer whose step keeps only the direction of its input (a trust ratio)
    still moves when it is added."""
    def fill(x: Any) -> Any:
        if _trees.is_empty(x) or not hasattr(x, "dtype"):
            return x
        if not _trees.is_decayable(x):
            return jnp.zeros_like(x)
        k = jnp.arange(x.size, dtype=jnp.int32).reshape(x.shape)
        return (1.0 - 0.5 * (-1) ** k).astype(x.dtype)
    return jax.tree.map(fill, theta, is_leaf=_trees.is_empty)


def _differs(a: Any, b: Any, rtol: float = 0.0) -> bool:
    if not hasattr(a, "dtype"):
        return False
    a, b = np.asarray(a, np.complex128), np.asarray(b, np.complex128)
    return bool(np.any(np.abs(a - b) > rtol * np.maximum(np.abs(a), np.abs(b))))


def _at_count(state: Any, t: int) -> Any:
    """``state`` with the count of every schedule-driving optax state set to ``t``
    (the wrappers' counts and those of the schedule states inside them)."""
    for kinds in (_SCHEDULE_STATES[:2], _SCHEDULE_STATES[2:]):
        def set_count(x: Any, kinds: tuple[str, ...] = kinds) -> Any:
            if type(x).__name__ in kinds and hasattr(x, "count"):
                return x._replace(count=jnp.full_like(x.count, t))
            return x
        state = jax.tree.map(set_count, state,
                             is_leaf=lambda x, kinds=kinds: type(x).__name__ in kinds)
    return state


def _scheduled(state: Any) -> bool:
    """Whether the state holds a schedule-driving optax state (else nothing to vary)."""
    nodes = jax.tree_util.tree_leaves(
        state, is_leaf=lambda x: type(x).__name__ in _SCHEDULE_STATES)
    return any(type(x).__name__ in _SCHEDULE_STATES for x in nodes)


def _adaptive(state: Any) -> bool:
    """Whether the state holds a second-moment estimate (Adam's ``nu``)."""
    nodes = jax.tree_util.tree_leaves(state, is_leaf=lambda x: hasattr(x, "nu"))
    return any(hasattr(x, "nu") for x in nodes)


def _labels_at(acting: Acting, path: str) -> str:
    return " + ".join(dict.fromkeys(label for label, _, _ in acting.get(path, [])))


def _frozen_and_hidden(found: rules.Findings, flat: list[tuple[str, Any]], acting: Acting,
                       plans: tuple[_hook.TransformPlan, ...], u0: list[Any],
                       u1: list[Any]) -> list[int]:
    """Files frozen-but-decayed and unseen decays; returns the leaves that respond to a gradient."""
    responds = [i for i in range(len(flat)) if _differs(u0[i], u1[i])]
    if not responds:  # a MultiSteps mini-step: nothing to tell
        return responds
    for i, (path, x) in enumerate(flat):
        if not _trees.is_decayable(x) or not _nonzero(u0[i]):
            continue
        if path in acting:
            if i not in responds:
                found.add("frozen_but_decayed", _labels_at(acting, path), [path])
        elif plans:
            found.add("not_visible", "(unseen)", [path],
                      "a zero-gradient step moves leaves that no decaytx transform the audit "
                      "sees decays (a transform inside optax.flatten, optax.lookahead or "
                      "another wrapper that hands its inner optimizer other params, or "
                      "optax's own decay)", first_detail=True)
        else:
            found.add("decay_not_seen", "(optimizer)", [path])
    return responds


def _constant_multiplier(found: rules.Findings, optimizer: Any, state: Any, theta: Any,
                         acting: Acting, responds: list[int], flat: list[tuple[str, Any]]) -> None:
    """A constant decay multiplier beside a step that follows a schedule (on the same leaves:
    with per-leaf learning rates a leaf whose own rate is constant is not flagged)."""
    constant: dict[str, tuple[float, list[str]]] = {}
    for path, entries in acting.items():
        for label, plan, leaf in entries:
            m = plan.multiplier if leaf.multiplier is None else leaf.multiplier
            if plan.side == "update" and isinstance(m, (int, float, np.number)) \
                    and not isinstance(m, bool):
                constant.setdefault(label, (float(m), []))[1].append(path)
    if not constant or not _scheduled(state):
        return
    ones = _fill(theta, 1.0)

    def step_at(t: int) -> list[Any]:
        # Two steps: inject_hyperparams evaluates the schedule for the next
        # step, so the second step is the first to use the count set here.
        _, after = call_update(optimizer, ones, _at_count(state, t), theta)
        return _leaves(call_update(optimizer, ones, after, theta)[0])

    index = {path: i for i, (path, _) in enumerate(flat)}
    base = step_at(_COUNTS[0])
    later = [step_at(t) for t in _COUNTS[1:]]
    for label, (m, paths) in constant.items():
        mine = [index[p] for p in paths if p in index and index[p] in responds]
        if any(_differs(ut[i], base[i], 1e-3) for ut in later for i in mine):
            found.add("constant_multiplier", label, paths, f"{m:.3g}")


def _gradient_after_optimizer(found: rules.Findings, optimizer: Any, state: Any,
                              theta: Any, acting: Acting, anchor_of: dict[int, np.ndarray],
                              flat: list[tuple[str, Any]], u0: list[Any]) -> None:
    """Gradient-side decays whose zero-gradient step is linear in the weights under Adam."""
    if not _adaptive(state):
        return
    grad_only = [i for i in anchor_of if _nonzero(u0[i]) and all(
        p.side == "gradient" for _, p, _ in acting[flat[i][0]])]
    if not grad_only:
        return
    leaves, treedef = _trees.flatten(theta)
    far = list(leaves)
    for i in grad_only:
        a = anchor_of[i]
        far[i] = jnp.asarray(a + 2 * (np.asarray(leaves[i], a.dtype) - a)).astype(leaves[i].dtype)
    far = jax.tree_util.tree_unflatten(treedef, far)
    u2 = _leaves(call_update(optimizer, _fill(theta, 0.0), state, far)[0])
    # A trust ratio (LAMB, LARS) scales the whole step by the weights' norm:
    # its step with a gradient doubles with the weights too, and there the
    # decay goes after Adam on purpose (LAMB), so this rule cannot tell.
    g = _pattern(theta)
    g1 = _leaves(call_update(optimizer, g, state, theta)[0])
    g2 = _leaves(call_update(optimizer, g, state, far)[0])
    for i in grad_only:
        if _norm(u2[i]) > 1.5 * _norm(u0[i]) and not _norm(g2[i]) > 1.5 * _norm(g1[i]):
            path = flat[i][0]
            fix = " ".join(rules.PLACE_GRADIENT.format(name=p.name) for _, p, _ in acting[path])
            found.add("gradient_after_optimizer", _labels_at(acting, path), [path], fix)


def _norm(x: Any) -> float:
    return float(np.linalg.norm(np.asarray(x, np.complex128).ravel()))


def _is_schedule_free(x: Any) -> bool:
    return type(x).__name__ == "ScheduleFreeState" and hasattr(x, "z")


def _z_of(state: Any) -> list[dict[str, np.ndarray]]:
    """Path -> ``z`` leaf, per ``optax.contrib.schedule_free`` state in ``state``."""
    nodes = jax.tree_util.tree_leaves(state, is_leaf=_is_schedule_free)
    return [{path: np.asarray(z) for path, z in leaves_by_path(x.z) if hasattr(z, "dtype")}
            for x in nodes if _is_schedule_free(x)]


def _z_at(state: Any, theta: Any) -> Any:
    """``state`` with each schedule-free ``z`` set to ``theta`` (so y = x = z:
    a zero-gradient step moves a leaf only through a decay)."""
    at = dict(leaves_by_path(theta))

    def set_z(x: Any) -> Any:
        if not _is_schedule_free(x):
            return x
        leaves, treedef = _trees.flatten(x.z)
        paths = [path for path, _ in leaves_by_path(x.z)]
        new = [jnp.asarray(at[p]).astype(z.dtype) if hasattr(z, "dtype") and p in at else z
               for p, z in zip(paths, leaves, strict=True)]
        return x._replace(z=jax.tree_util.tree_unflatten(treedef, new))
    return jax.tree.map(set_z, state, is_leaf=_is_schedule_free)


def _outside_schedule_free(found: rules.Findings, optimizer: Any, state: Any, theta: Any,
                           acting: Acting, anchor_of: dict[int, np.ndarray],
                           flat: list[tuple[str, Any]], max_steps: int) -> None:
    """Decayed leaves under schedule-free that a zero-gradient step moves while
    their ``z`` stays put: the decay sits after the wrapper."""
    if not anchor_of or not _z_of(state):
        return
    state, zeros = _z_at(state, theta), _fill(theta, 0.0)
    for _ in range(max_steps):
        before = _z_of(state)
        updates, state = call_update(optimizer, zeros, state, theta)
        u = _leaves(updates)
        if len(u) != len(flat):
            return
        moved = [flat[i][0] for i in anchor_of if _nonzero(u[i])]
        if moved:
            break
        theta = optax.apply_updates(theta, updates)
    else:
        return
    after = _z_of(state)
    for path in moved:
        zs = [(b[path], a[path]) for b, a in zip(before, after, strict=True) if path in b]
        if zs and all(np.array_equal(b, a) for b, a in zs):
            fix = " ".join((rules.INSIDE_UPDATE if p.side == "update" else rules.INSIDE_GRADIENT)
                           .format(name=p.name) for _, p, _ in acting[path])
            found.add("decay_outside_schedule_free", _labels_at(acting, path), [path], fix)


def behaviour(found: rules.Findings, optimizer: Any, params: Any, state: Any,
              acting: Acting, plans: tuple[_hook.TransformPlan, ...],
              probe_steps: int = 8) -> list[str]:
    """Runs the behaviour probes (module docstring); returns notes on what could not run."""
    flat, theta, anchor_of, _ = probe_point(params, acting, state)
    try:
        zeros = _fill(theta, 0.0)
        for t in (None, 0, 1, 10, 100, 1000):
            # The first count at which some leaf responds to the gradient (a
            # warmup from 0 makes no leaf respond at count 0); after one
            # zero-gradient step, as inject_hyperparams evaluates its
            # schedules one step ahead.
            at = state if t is None else call_update(
                optimizer, zeros, _at_count(state, t), theta)[1]
            u0 = _leaves(call_update(optimizer, zeros, at, theta)[0])
            u1 = _leaves(call_update(optimizer, _pattern(theta), at, theta)[0])
            if len(u0) != len(flat) or len(u1) != len(flat):
                return ["frozen leaves, unseen decays and schedules not checked: the updates "
                        "do not have the structure of params."]
            if any(_differs(a, b) for a, b in zip(u0, u1, strict=True)):
                break
        responds = _frozen_and_hidden(found, flat, acting, plans, u0, u1)
        if responds:
            _constant_multiplier(found, optimizer, at, theta, acting, responds, flat)
        _gradient_after_optimizer(found, optimizer, at, theta, acting, anchor_of, flat, u0)
        _outside_schedule_free(found, optimizer, state, theta, acting, anchor_of, flat,
                               probe_steps)
    except coef.TRACED_VALUE_ERRORS:
        return []  # the direction probe's note says so
    except Exception as e:  # noqa: BLE001 - any optimizer: say what failed, never crash
        return [f"frozen leaves, unseen decays and schedules not checked: "
                f"optimizer.update raised {type(e).__name__}: {str(e)[:200]}"]
    return []
