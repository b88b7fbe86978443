"""``decaytx.audit``: what the decay in an optimizer will do, before training.

How the transforms are found: every decaytx transform decides its plan at
``init`` (which leaves it decays, with which coefficients, toward which anchor)
and hands it to :func:`decaytx._hook.emit` while :func:`decaytx._hook.recording`
is active. The audit calls ``optimizer.init(params)`` inside a recording, so it
sees every decaytx transform however deeply it is wrapped (``optax.chain``,
``masked``, ``multi_transform``, ``MultiSteps``, ``apply_if_finite``,
``inject_hyperparams``, the recipes), without knowing any wrapper. Then it
takes zero-gradient steps with ``optimizer.update`` to see where the decay
actually moves each decayed leaf: toward its anchor, or away (a misplaced
transform).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _coefficients as coef
from decaytx import _hook, _transform, _trees, _warnings
from decaytx._warnings import below_resolution

Value = float | str  # a number, or "traced" where it cannot be seen

ProblemKind = Literal[
    "away_from_anchor",
    "below_resolution",
    "factor_at_least_1",
    "selects_nothing",
    "looks_undecayable",
]


_path_of = _trees.path_of


@dataclasses.dataclass(frozen=True)
class AuditRow:
    """One params leaf, as one decaytx transform acting on it sees it.

    A leaf no decaytx transform decays has one row with ``transform=None``.

    Attributes:
      path: the leaf's "/"-joined path, as masks see it.
      shape: the leaf's shape.
      dtype: the leaf's dtype name.
      transform: the transform's name (``"add_decoupled_decay"``; ``"#2"``
        appended for a second transform of the same name), or ``None``.
      side: ``"gradient"``, ``"update"`` or ``None``.
      lam0: coefficient name -> its value at step 0 (``"traced"`` where it
        cannot be seen).
      lam_peak: coefficient name -> its largest value over the steps.
      m0: the multiplier at step 0 (``None`` on the gradient side).
      m_peak: the multiplier's largest value.
      factor: coefficient name -> ``m_peak * lam_peak`` (update side only),
        an upper bound of the per-step factor :math:`m_t\\lambda_t`.
      anchor: ``"zero"``, ``"init"``, ``"tree"`` or ``None``.
      cautious: whether cautious decay is on.
      direction: where the zero-gradient probe step moved the leaf relative
        to its anchor: ``"toward"``, ``"away"``, ``"still"``, or
        ``"unchecked"`` (``Audit.notes`` says why); ``None`` if not decayed.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    transform: str | None
    side: str | None
    lam0: dict[str, Value]
    lam_peak: dict[str, Value]
    m0: Value | None
    m_peak: Value | None
    factor: dict[str, Value]
    anchor: str | None
    cautious: bool
    direction: str | None


@dataclasses.dataclass(frozen=True)
class AuditProblem:
    """A decay setting that is legal but almost certainly not what was meant.

    Attributes:
      kind: ``"away_from_anchor"``, ``"below_resolution"``,
        ``"factor_at_least_1"``, ``"selects_nothing"`` or
        ``"looks_undecayable"``.
      transform: the transform concerned (its row name).
      paths: the leaves concerned.
      message: what is wrong.
      fix: what to change.
    """

    kind: ProblemKind
    transform: str
    paths: tuple[str, ...]
    message: str
    fix: str


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.3g}"


def _fmt_dict(d: dict[str, Value]) -> str:
    if not d:
        return "-"
    if len(d) == 1:
        return _fmt(next(iter(d.values())))
    return " ".join(f"{k}={_fmt(v)}" for k, v in d.items())


def _fmt_paths(paths: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")


@dataclasses.dataclass(frozen=True)
class Audit:
    """What :func:`decaytx.audit` found; ``str()`` of it is a readable table.

    Attributes:
      rows: one :class:`AuditRow` per params leaf and decaytx transform acting
        on it.
      problems: the :class:`AuditProblem` s found, each with its fix.
      notes: what the audit could not check, and why.
      plans: the raw init-time plans of the decaytx transforms found.
    """

    rows: tuple[AuditRow, ...]
    problems: tuple[AuditProblem, ...]
    notes: tuple[str, ...]
    plans: tuple[_hook.TransformPlan, ...]

    def __str__(self) -> str:
        header = ("path", "shape", "dtype", "transform", "λ0", "λ peak", "m0", "m peak",
                  "m·λ peak", "anchor", "zero-grad step")
        body = [
            (
                r.path or "(root)",
                str(r.shape),
                r.dtype,
                "-" if r.transform is None else r.transform + (" (cautious)" if r.cautious else ""),
                _fmt_dict(r.lam0),
                _fmt_dict(r.lam_peak),
                _fmt(r.m0),
                _fmt(r.m_peak),
                _fmt_dict(r.factor),
                r.anchor or "-",
                r.direction or "-",
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                 for row in [header, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            for p in self.problems:
                lines.append(f"- [{p.kind}] {p.transform}: {p.message} Leaves: {_fmt_paths(p.paths)}.")
                lines.append(f"  Fix: {p.fix}")
        else:
            lines.append("No problems found.")
        for n in self.notes:
            lines.append(f"Note: {n}")
        return "\n".join(lines)


def _step0(v: Any) -> Value:
    if coef.is_traced(v):
        return "traced"
    try:
        if not coef.is_schedule(v):
            return float(np.real(np.asarray(v)))
        # Eager even under an outer jit: a schedule of constants has a value.
        with jax.ensure_compile_time_eval():
            return float(np.real(np.asarray(v(jnp.zeros([], jnp.int32)))))
    except coef.TRACED_VALUE_ERRORS:
        return "traced"


def _peak(v: Any) -> Value:
    if coef.is_traced(v):
        return "traced"
    try:
        return coef.schedule_peak(v)
    except coef.TRACED_VALUE_ERRORS:
        return "traced"


def _times(a: Value, b: Value) -> Value:
    if isinstance(a, str) or isinstance(b, str):
        return "traced"
    return a * b


def _labels(plans: Sequence[_hook.TransformPlan]) -> list[str]:
    counts: dict[str, int] = {}
    for p in plans:
        counts[p.name] = counts.get(p.name, 0) + 1
    seen: dict[str, int] = {}
    labels = []
    for p in plans:
        seen[p.name] = seen.get(p.name, 0) + 1
        labels.append(p.name if counts[p.name] == 1 else f"{p.name}#{seen[p.name]}")
    return labels


def _is_float(dtype: str) -> bool:
    return bool(jnp.issubdtype(jnp.dtype(dtype), jnp.inexact))


def _dims_above_1(shape: tuple[int, ...]) -> int:
    return sum(1 for d in shape if d > 1)


_EMBED = re.compile(r"embed|^wte$|^wpe$|^tok_?emb|^pos_?emb", re.I)
_NORM = re.compile(r"norm|^ln(_\w+|\d+)?$|^bn\d*$", re.I)
_BIAS = re.compile(r"^(bias|b|offset|beta)$|_bias$|^bias_", re.I)


def _looks_undecayable(path: str, shape: tuple[int, ...], has_matrices: bool) -> str | None:
    """Why a decayed leaf looks like one that is usually not decayed, if it does."""
    parts = path.split("/") if path else []
    last = parts[-1] if parts else ""
    vector = _dims_above_1(shape) < 2
    if any(_EMBED.search(q) for q in parts):
        return "an embedding"
    if last.lower() in ("scale", "gamma") or (vector and any(_NORM.search(q) for q in parts)):
        return "a norm scale"
    if _BIAS.search(last):
        return "a bias"
    if vector and has_matrices and last.lower() not in ("kernel", "weight", "weights", "w"):
        # Beside matrices, an unnamed vector is a bias or a scale; alone (a
        # linear model's weights), or named as a weight (a (d, 1) output
        # kernel), it is not flagged.
        return "a vector beside the model's matrices (a bias or scale)"
    return None


_PLACE_UPDATE = (
    "{name} acts on the final step: place it LAST in the chain, after "
    "optax.scale_by_learning_rate (or after the optimizer alias, e.g. "
    "optax.chain(optax.adam(lr), decaytx.{name}(..., learning_rate=lr))). Whatever comes "
    "after it (Adam's rescaling, the learning rate's minus sign) turns its step around."
)
_PLACE_GRADIENT = (
    "{name} adds to the gradient: place it FIRST in the chain, before the "
    "optimizer (optax.chain(decaytx.{name}(...), optax.sgd(lr))). After "
    "scale_by_learning_rate its term is added with the wrong sign and without the learning rate."
)


def _flatten(tree: Any) -> tuple[list[tuple[str, Any]], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_trees.is_empty)
    return [(_path_of(k), x) for k, x in leaves], treedef


def _state_anchors(state: Any) -> dict[str, list[Any]]:
    """Path -> the anchors kept in the state's ``DecayState`` s for that leaf."""
    found: dict[str, list[Any]] = {}
    nodes = jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, _transform.DecayState))
    for node in nodes:
        if not isinstance(node, _transform.DecayState) or node.anchor is None:
            continue
        for path, a in _flatten(node.anchor)[0]:
            if a is not None and not isinstance(a, optax.MaskedNode) and hasattr(a, "shape"):
                found.setdefault(path, []).append(np.asarray(a))
    return found


def _has_injected(state: Any) -> bool:
    nodes = jax.tree_util.tree_leaves(
        state, is_leaf=lambda x: hasattr(x, "hyperparams") and hasattr(x, "inner_state"))
    return any(hasattr(x, "hyperparams") and hasattr(x, "inner_state") for x in nodes)


def _wide(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def _probe(
    optimizer: Any,
    params: Any,
    state: Any,
    acting: dict[str, list[tuple[str, _hook.TransformPlan]]],
    max_steps: int,
) -> tuple[dict[str, str], list[str]]:
    """Zero-gradient steps: where each decayed leaf moves relative to its anchor."""
    flat, treedef = _flatten(params)
    anchors_in_state = _state_anchors(state)
    direction: dict[str, str] = {}
    unchecked: dict[str, list[str]] = {}
    anchor_of: dict[int, np.ndarray] = {}
    probe_leaves = [x for _, x in flat]
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
            a = np.zeros(np.shape(x), _wide(x).dtype)
        else:
            cands = anchors_in_state.get(path, [])
            if not cands or any(not np.array_equal(c, cands[0]) for c in cands[1:]):
                reason = ("its anchor was not found in the optimizer state" if not cands
                          else "several different anchors act on it")
                unchecked.setdefault(reason, []).append(path)
                continue
            a = _wide(cands[0])
        anchor_of[i] = a
        if np.all(_wide(x) == a):
            # At its anchor (anchor="init", a zero-initialised bias) a leaf has
            # nowhere to be pulled: probe it one unit or more away.
            probe_leaves[i] = jnp.asarray(a + 1 + np.abs(a)).astype(x.dtype)
    theta = jax.tree_util.tree_unflatten(treedef, probe_leaves)
    zeros = jax.tree.map(
        lambda x: x if _trees.is_empty(x) or not hasattr(x, "dtype") else jnp.zeros_like(x),
        theta, is_leaf=_trees.is_empty)
    notes = [f"zero-gradient direction not checked where {why}: {_fmt_paths(paths)}."
             for why, paths in unchecked.items()]
    if not anchor_of:
        return direction, notes

    def step(theta: Any, state: Any) -> tuple[Any, Any, Any]:
        updates, state = optimizer.update(zeros, state, theta)
        return updates, state, optax.apply_updates(theta, updates)

    # The first step eagerly (most chains need only it); later ones (e.g.
    # MultiSteps' mini-steps, whose lax.cond would trace its branches again
    # at every eager step) under one compilation.
    jitted = jax.jit(step)
    for i in range(max_steps):
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
        if len(u_leaves) != len(flat):
            notes.append("zero-gradient direction not checked: the updates do not have "
                         "the structure of params.")
            return direction, notes
        th_leaves = jax.tree_util.tree_leaves(theta, is_leaf=_trees.is_empty)
        moved = [i for i in anchor_of if np.any(_wide(u_leaves[i]) != 0)]
        if moved:
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
            return direction, notes
        theta = new_theta
    notes.append(
        f"zero-gradient direction not checked: {max_steps} zero-gradient steps left every "
        "decayed leaf in place (a MultiSteps with more mini-steps, a decay schedule "
        "starting at 0?); pass a larger probe_steps."
    )
    for i in anchor_of:
        direction[flat[i][0]] = "unchecked"
    return direction, notes


def _leaf_plans(path: str, plans: list[tuple[str, _hook.TransformPlan]]) -> list[_hook.LeafPlan]:
    return [leaf for _, p in plans for leaf in p.leaves if leaf.path == path and leaf.decayed]


def audit(optimizer: Any, params: Any, *, probe_steps: int = 8) -> Audit:
    r"""Lists what every decaytx transform in ``optimizer`` will do to ``params``.

    For each params leaf and each decaytx transform acting on it: the path (as
    masks see it), shape, dtype, the coefficients :math:`\lambda` at step 0
    and at their peak, the multiplier :math:`m` at step 0 and at its peak, the
    per-step factor :math:`m\lambda` (peak values, an upper bound), the anchor
    kind, and where a zero-gradient step moves the leaf:

    .. math::
      \lVert\theta + u - a\rVert \; \text{vs} \; \lVert\theta - a\rVert,
      \qquad u = \text{optimizer.update}(0, \text{state}, \theta)

    A decayed leaf must move toward its anchor :math:`a`; one that moves away
    has its transform misplaced (a decoupled decay before Adam, ``add_l2_grad``
    after the learning rate). Also flagged: a per-step factor below the leaf
    dtype's resolution, :math:`m\lambda \ge 1`, a mask that selects nothing,
    and decayed leaves that look like biases, norm scales or embeddings.

    The transforms are found through the plans each decaytx transform emits at
    ``init`` (see ``docs/audit.md``), so any wrapper works. The audit's own
    ``init`` issues no :class:`decaytx.DecayWarning` (it reports the same
    settings as problems) and leaves the once-only warnings to the user's own
    first ``init``.

    Args:
      optimizer: an ``optax.GradientTransformation`` (or anything with
        ``init`` and ``update``, e.g. ``optax.MultiSteps``).
      params: the params the optimizer will be initialised with.
      probe_steps: how many zero-gradient steps to take at most until the
        update of a decayed leaf is nonzero (``optax.MultiSteps`` returns zeros
        on its mini-steps).

    Returns:
      An :class:`Audit`: ``str()`` is the table; ``.rows``, ``.problems`` and
      ``.notes`` are data.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
      >>> wrong = optax.chain(
      ...     decaytx.add_decoupled_decay(0.1, learning_rate=0.01), optax.adam(0.01))
      >>> report = decaytx.audit(wrong, params)
      >>> sorted({p.kind for p in report.problems})
      ['away_from_anchor', 'looks_undecayable']
      >>> right = optax.chain(
      ...     optax.adam(0.01),
      ...     decaytx.add_decoupled_decay(
      ...         0.1, learning_rate=0.01, mask=decaytx.masks.ndim_at_least(2)))
      >>> report = decaytx.audit(right, params)
      >>> report.problems
      ()
      >>> [(r.path, r.factor, r.direction) for r in report.rows]
      [('b', {}, None), ('w', {'weight_decay': 0.001}, 'toward')]
    """
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"audit(optimizer=...) needs an optax GradientTransformation (with init "
            f"and update), got {optimizer!r} of type {type(optimizer).__name__}."
        )
    if isinstance(probe_steps, bool) or not isinstance(probe_steps, int) or probe_steps < 1:
        raise ValueError(f"probe_steps={probe_steps!r} must be a positive int, e.g. 8.")
    with warnings.catch_warnings():
        # The audit reports these settings as problems itself; its own init
        # must not warn (and, under recording, leaves the once-only warnings
        # to the user's first init).
        warnings.simplefilter("ignore", _warnings.DecayWarning)
        with _hook.recording() as recorded:
            state = optimizer.init(params)
        plans = tuple(recorded)
        labels = _labels(plans)
        flat, _ = _flatten(params)
        acting: dict[str, list[tuple[str, _hook.TransformPlan]]] = {}
        for label, plan in zip(labels, plans, strict=True):
            for leaf in plan.leaves:
                if leaf.decayed:
                    acting.setdefault(leaf.path, [])
                    if (label, plan) not in acting[leaf.path]:
                        acting[leaf.path].append((label, plan))
        try:
            direction, notes = _probe(optimizer, params, state, acting, probe_steps)
        except coef.TRACED_VALUE_ERRORS:
            direction, notes = {}, [
                "zero-gradient direction not checked: params or state are traced "
                "(audit was called under jit, vmap or grad); call it outside them."]

    rows: list[AuditRow] = []
    has_matrices = any(hasattr(x, "shape") and _dims_above_1(tuple(x.shape)) >= 2 for _, x in flat)
    by_kind: dict[tuple[ProblemKind, str], list[str]] = {}
    extra: dict[tuple[ProblemKind, str], str] = {}
    for path, x in flat:
        if not hasattr(x, "dtype"):
            continue
        shape, dtype = tuple(np.shape(x)), str(jnp.dtype(x.dtype))
        mine = acting.get(path, [])
        if not mine:
            rows.append(AuditRow(path, shape, dtype, None, None, {}, {}, None, None, {}, None,
                                 False, None))
            continue
        why = _looks_undecayable(path, shape, has_matrices)
        for label, plan in mine:
            for leaf in plan.leaves:
                if leaf.path != path or not leaf.decayed:
                    continue
                lam0 = {k: _step0(v) for k, v in leaf.coefficients.items()}
                lam_peak = {k: _peak(v) for k, v in leaf.coefficients.items()}
                update_side = plan.side == "update"
                m0 = _step0(plan.multiplier) if update_side else None
                m_peak = _peak(plan.multiplier) if update_side else None
                factor = ({k: _times(m_peak, v) for k, v in lam_peak.items()}
                          if update_side and m_peak is not None else {})
                rows.append(AuditRow(path, shape, dtype, label, plan.side, lam0, lam_peak, m0,
                                     m_peak, factor, leaf.anchor, plan.cautious,
                                     direction.get(path, "unchecked")))
                if why is not None:
                    by_kind.setdefault(("looks_undecayable", label), []).append(path)
                    extra.setdefault(("looks_undecayable", label), why)
                for rate in (factor.get(k) for k in plan.rates):
                    if not isinstance(rate, float):
                        continue
                    if rate >= 1.0:
                        by_kind.setdefault(("factor_at_least_1", label), []).append(path)
                        extra[("factor_at_least_1", label)] = f"{rate:.3g}"
                    elif below_resolution(rate, leaf.dtype):
                        by_kind.setdefault(("below_resolution", label), []).append(path)
                        extra[("below_resolution", label)] = f"{rate:.3g}"
        if direction.get(path) == "away":
            names = " + ".join(label for label, _ in mine)
            by_kind.setdefault(("away_from_anchor", names), []).append(path)
            extra[("away_from_anchor", names)] = " ".join(
                (_PLACE_UPDATE if p.side == "update" else _PLACE_GRADIENT).format(name=p.name)
                for _, p in mine)

    for label, plan in zip(labels, plans, strict=True):
        if not any(leaf.decayed and _is_float(leaf.dtype) for leaf in plan.leaves):
            by_kind[("selects_nothing", label)] = [leaf.path for leaf in plan.leaves]

    problems = [_problem(kind, label, paths, extra.get((kind, label), ""))
                for (kind, label), paths in by_kind.items()]
    order = {k: i for i, k in enumerate(("away_from_anchor", "factor_at_least_1",
                                         "below_resolution", "selects_nothing",
                                         "looks_undecayable"))}
    problems.sort(key=lambda p: order[p.kind])
    traced = sorted({r.path for r in rows if "traced" in r.factor.values()})
    if traced:
        notes.append("m*lambda is traced (a schedule closing over traced values), so the "
                     f"m*lambda >= 1 and resolution checks were skipped for: {_fmt_paths(traced)}.")
    if not plans:
        notes.append("no decaytx transform was found in this optimizer (optax's own "
                     "add_decayed_weights / adamw decay is not seen by the audit).")
    if _has_injected(state):
        notes.append("under inject_hyperparams the transforms see each injected "
                     "hyperparameter as a constant (its value at step 0): the peaks "
                     "shown are those values, not the peaks of the schedules the wrapper holds.")
    return Audit(tuple(rows), tuple(problems), tuple(notes), plans)


def _problem(kind: ProblemKind, label: str, paths: list[str], extra: str) -> AuditProblem:
    n = len(paths)
    if kind == "away_from_anchor":
        return AuditProblem(
            kind, label, tuple(paths),
            f"a zero-gradient step moves {n} decayed leaf/leaves AWAY from the anchor: "
            "the decay grows the weights instead of shrinking them.",
            extra)
    if kind == "factor_at_least_1":
        return AuditProblem(
            kind, label, tuple(paths),
            f"the per-step factor m*lambda = {extra} is >= 1: every step flips the "
            "sign of each decayed weight.",
            "lower weight_decay or the learning_rate multiplier so that m*lambda << 1 "
            "(with learning_rate=None, m = 1: pass the optimizer's learning rate).")
    if kind == "below_resolution":
        return AuditProblem(
            kind, label, tuple(paths),
            f"the per-step factor m*lambda = {extra} is below the resolution of these "
            "leaves' dtype: x - m*lambda*x rounds back to x, the decay is lost.",
            "keep float32 master weights for low-precision params, or raise weight_decay.")
    if kind == "selects_nothing":
        return AuditProblem(
            kind, label, tuple(paths),
            "its mask selects none of the float leaves it sees, so it decays nothing.",
            "check the mask's patterns against the paths in this table (e.g. 'kernel' "
            "vs 'weight'); if no decay is intended, leave the transform out.")
    return AuditProblem(
        kind, label, tuple(paths),
        f"decays {n} leaf/leaves that look like biases, norm scales or embeddings "
        f"(first: {extra}), which are usually not decayed.",
        "leave them out with a mask, e.g. mask=decaytx.masks.ndim_at_least(2) "
        "(0.2: masks.matrices()) and masks.exclude('embed'); ignore this if decaying "
        "them is intended.")
