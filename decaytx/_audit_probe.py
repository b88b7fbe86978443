"""The audit's zero-gradient probe: where the decay really moves each leaf.

With zero gradients, a step of the optimizer is the decay alone, after
whatever the chain does to it. A decayed leaf must move toward its anchor
(zero, its ``init`` value, or a given tree, read from the optimizer state);
one that moves away has its transform misplaced (a decoupled decay before
Adam, ``add_l2_grad`` after the learning rate).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _coefficients as coef
from decaytx import _hook, _transform, _trees
from decaytx._audit_rules import fmt_paths

# Path -> (row label, plan, leaf plan) of each decaytx transform that decays the leaf.
Acting = dict[str, list[tuple[str, _hook.TransformPlan, _hook.LeafPlan]]]


def unique(paths: list[str]) -> list[str]:
    """``paths`` with those that occur more than once told apart: ``a/b [#1]``, ``a/b [#2]``.

    A key ``"a/b"`` beside ``a -> b`` gives two leaves one "/"-joined path.
    """
    total: dict[str, int] = {}
    for p in paths:
        total[p] = total.get(p, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        seen[p] = seen.get(p, 0) + 1
        out.append(p if total[p] == 1 else f"{p} [#{seen[p]}]")
    return out


def leaves_by_path(tree: Any) -> list[tuple[str, Any]]:
    """``(path, leaf)`` pairs, paths as masks see them (told apart where two
    coincide, :func:`unique`), empty leaves kept."""
    flat = _trees.flatten_with_path(tree)
    return list(zip(unique([_trees.path_of(k) for k, _ in flat]), [x for _, x in flat],
                    strict=True))


def call_update(optimizer: Any, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
    """``optimizer.update(grads, state, params)``; for an optimizer that needs
    a loss (``optax.contrib.reduce_on_plateau``), with ``value=0``."""
    try:
        return optimizer.update(grads, state, params)
    except TypeError as e:
        if "value" not in str(e):
            raise
        return optimizer.update(grads, state, params, value=jnp.zeros([], jnp.float32))


def _in_decay_states(state: Any, field: str) -> list[tuple[str, Any]]:
    """``(path, array)`` for each leaf of the ``field`` tree (``anchor``,
    ``residual``) of every ``DecayState`` in ``state``."""
    nodes = jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, _transform.DecayState))
    return [(path, x) for node in nodes
            if isinstance(node, _transform.DecayState) and getattr(node, field) is not None
            for path, x in leaves_by_path(getattr(node, field))
            if not _trees.is_empty(x) and hasattr(x, "shape")]


def _state_anchors(state: Any) -> dict[str, list[Any]]:
    """Path -> the anchors kept in the state's ``DecayState`` s for that leaf."""
    found: dict[str, list[Any]] = {}
    for path, a in _in_decay_states(state, "anchor"):
        found.setdefault(path, []).append(np.asarray(a))
    return found


def _state_residuals(state: Any) -> dict[str, np.ndarray]:
    """Path -> the compensation residuals kept for that leaf (``compensated=True``), summed."""
    found: dict[str, np.ndarray] = {}
    for path, r in _in_decay_states(state, "residual"):
        found[path] = found.get(path, 0.0) + _wide(r)
    return found


def _with_residuals(paths: list[str], th: list[Any], u: list[Any], before: dict[str, np.ndarray],
                    after: dict[str, np.ndarray]) -> tuple[list[Any], list[Any]]:
    """Params and update as the float32 values a compensated leaf stands for:
    ``theta + r`` and ``u + r' - r`` (its rounding kept in the residual)."""
    th, u = list(th), list(u)
    for i, path in enumerate(paths):
        if path in before or path in after:
            r0, r1 = before.get(path, 0.0), after.get(path, 0.0)
            th[i], u[i] = _wide(th[i]) + r0, _wide(u[i]) + (r1 - r0)
    return th, u


def _wide(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def _leaf_plans(path: str, plans: list[tuple[str, _hook.TransformPlan, _hook.LeafPlan]]
                ) -> list[_hook.LeafPlan]:
    return [leaf for _, _, leaf in plans]


def _anchors(
    flat: list[tuple[str, Any]], acting: Acting, state: Any
) -> tuple[dict[int, np.ndarray], dict[str, list[str]]]:
    """Leaf index -> the anchor its decay pulls toward (widened), and
    reason -> the decayed leaves whose anchor cannot be told."""
    in_state = _state_anchors(state)
    anchor_of: dict[int, np.ndarray] = {}
    unchecked: dict[str, list[str]] = {}
    for i, (path, x) in enumerate(flat):
        plans = acting.get(path)
        if not plans or not hasattr(x, "dtype"):
            continue
        kinds = {leaf.anchor for leaf in _leaf_plans(path, plans)}
        if len(kinds) > 1:
            unchecked.setdefault("transforms with different anchors act on it", []).append(path)
            continue
        (kind,) = kinds
        if kind == "zero":
            anchor_of[i] = np.zeros(np.shape(x), _wide(x).dtype)
            continue
        cands = in_state.get(path, [])
        if not cands or any(not np.array_equal(c, cands[0]) for c in cands[1:]):
            reason = ("its anchor was not found in the optimizer state" if not cands
                      else "several different anchors act on it")
            unchecked.setdefault(reason, []).append(path)
            continue
        anchor_of[i] = _wide(cands[0])
    return anchor_of, unchecked


def _first_move(
    optimizer: Any, theta: Any, state: Any, anchor_of: dict[int, np.ndarray], max_steps: int,
    paths: list[str],
) -> tuple[list[Any], list[Any]] | None:
    """The leaves of params and update at the first zero-gradient step whose
    update moves a decayed leaf or is not shaped like params; ``None`` if
    ``max_steps`` steps leave every decayed leaf in place. A compensated
    leaf counts with its residual (:func:`_with_residuals`)."""
    zeros = jax.tree.map(
        lambda x: x if _trees.is_empty(x) or not hasattr(x, "dtype") else jnp.zeros_like(x),
        theta, is_leaf=_trees.is_empty)

    def step(theta: Any, state: Any) -> tuple[Any, Any, Any]:
        updates, state = call_update(optimizer, zeros, state, theta)
        return updates, state, optax.apply_updates(theta, updates)

    # The first step eagerly (most chains need only it); later ones (e.g.
    # MultiSteps' mini-steps, whose lax.cond would trace its branches again
    # at every eager step) under one compilation.
    jitted = jax.jit(step)
    for i in range(max_steps):
        before = _state_residuals(state)
        if i == 0:
            updates, state, new_theta = step(theta, state)
        else:
            try:
                updates, state, new_theta = jitted(theta, state)
            except coef.TRACED_VALUE_ERRORS:
                raise
            except Exception:  # an update that cannot be jitted: step eagerly
                updates, state, new_theta = step(theta, state)
        u_leaves = jax.tree_util.tree_leaves(updates, is_leaf=_trees.is_empty)
        th_leaves = jax.tree_util.tree_leaves(theta, is_leaf=_trees.is_empty)
        if len(u_leaves) != len(th_leaves):
            return th_leaves, u_leaves
        th_leaves, u_leaves = _with_residuals(paths, th_leaves, u_leaves, before, _state_residuals(state))
        moved = [i for i in anchor_of if np.any(_wide(u_leaves[i]) != 0)]
        if moved:
            return th_leaves, u_leaves
        theta = new_theta
    return None


def _directions(
    flat: list[tuple[str, Any]], anchor_of: dict[int, np.ndarray],
    th_leaves: list[Any], u_leaves: list[Any],
) -> dict[str, str]:
    """Path -> whether ``theta + u`` is nearer its anchor than ``theta``."""
    direction: dict[str, str] = {}
    for i, a in anchor_of.items():
        t, u = _wide(th_leaves[i]), _wide(u_leaves[i])
        if not (np.all(np.isfinite(u))):
            direction[flat[i][0]] = "unchecked"
            continue
        before = float(np.linalg.norm((t - a).ravel()))
        after = float(np.linalg.norm((t + u - a).ravel()))
        tol = 1e-13 * max(before, 1e-300)
        direction[flat[i][0]] = (
            "away" if after > before + tol else "toward" if after < before - tol else "still"
        )
    return direction


def probe_point(
    params: Any, acting: Acting, state: Any
) -> tuple[list[tuple[str, Any]], Any, dict[int, np.ndarray], dict[str, list[str]]]:
    """The params to probe at: each decayed leaf that sits at its anchor
    (``anchor="init"``, a zero-initialised bias) has nowhere to be pulled, so
    it is moved one unit or more away. Returns the ``(path, leaf)`` pairs,
    the probe params, leaf index -> anchor, and reason -> the leaves whose
    anchor cannot be told."""
    flat = leaves_by_path(params)
    leaves, treedef = _trees.flatten(params)
    anchor_of, unchecked = _anchors(flat, acting, state)
    probe_leaves = list(leaves)
    for i, a in anchor_of.items():
        if np.all(_wide(leaves[i]) == a):
            probe_leaves[i] = jnp.asarray(a + 1 + np.abs(a)).astype(leaves[i].dtype)
    return flat, jax.tree_util.tree_unflatten(treedef, probe_leaves), anchor_of, unchecked


def _probe(
    optimizer: Any, params: Any, state: Any, acting: Acting, max_steps: int
) -> tuple[dict[str, str], list[str]]:
    flat, theta, anchor_of, unchecked = probe_point(params, acting, state)
    notes = [f"zero-gradient direction not checked where {why}: {fmt_paths(paths)}."
             for why, paths in unchecked.items()]
    if not anchor_of:
        return {}, notes
    moved = _first_move(optimizer, theta, state, anchor_of, max_steps, [p for p, _ in flat])
    if moved is None:
        notes.append(
            f"zero-gradient direction not checked: {max_steps} zero-gradient steps left every "
            "decayed leaf in place (a MultiSteps with more mini-steps, a decay schedule "
            "starting at 0?); pass a larger probe_steps."
        )
        return {flat[i][0]: "unchecked" for i in anchor_of}, notes
    th_leaves, u_leaves = moved
    if len(u_leaves) != len(flat):
        notes.append("zero-gradient direction not checked: the updates do not have "
                     "the structure of params.")
        return {}, notes
    return _directions(flat, anchor_of, th_leaves, u_leaves), notes


def probe(
    optimizer: Any, params: Any, state: Any, acting: Acting, max_steps: int
) -> tuple[dict[str, str], list[str]]:
    """Zero-gradient steps: where each decayed leaf moves relative to its anchor.

    Steps from ``state`` with zero gradients, at most ``max_steps`` times,
    until the update of a decayed leaf is nonzero (``optax.MultiSteps``
    returns zeros on its mini-steps). A leaf sitting at its anchor is first
    moved one unit or more away from it.

    Returns:
      Path -> ``"toward"``, ``"away"``, ``"still"`` or ``"unchecked"`` for
      each decayed leaf checked, and notes saying what was not checked, and why.
    """
    try:
        return _probe(optimizer, params, state, acting, max_steps)
    except coef.TRACED_VALUE_ERRORS:
        return {}, [
            "zero-gradient direction not checked: params or state are traced "
            "(audit was called under jit, vmap or grad); call it outside them."]
    except Exception as e:  # noqa: BLE001 - any optimizer: say what failed, never crash
        return {}, [f"zero-gradient direction not checked: optimizer.update raised "
                    f"{type(e).__name__}: {str(e)[:200]}"]
