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
transform). The probe lives in :mod:`decaytx._audit_probe`, the per-leaf rules
and the problems' wording in :mod:`decaytx._audit_rules`; this module builds
the report.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decaytx import _audit_rules as rules
from decaytx import _coefficients as coef
from decaytx import _hook, _schedules, _warnings
from decaytx._audit_probe import Acting, leaves_by_path, probe
from decaytx._audit_rules import ProblemKind, Value, fmt_paths
from decaytx._warnings import below_resolution

# below_resolution: the predicate docs/audit.md names as decaytx._audit's.
__all__ = ["Audit", "AuditProblem", "AuditRow", "audit", "below_resolution"]


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
                lines.append(f"- [{p.kind}] {p.transform}: {p.message} Leaves: {fmt_paths(p.paths)}.")
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
    p = _schedules.peak(v)
    return "traced" if p is None else p


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


def _acting(labels: Sequence[str], plans: Sequence[_hook.TransformPlan]) -> Acting:
    """Path -> the (label, plan) of each transform that decays the leaf."""
    acting: Acting = {}
    for label, plan in zip(labels, plans, strict=True):
        for leaf in plan.leaves:
            if leaf.decayed:
                acting.setdefault(leaf.path, [])
                if (label, plan) not in acting[leaf.path]:
                    acting[leaf.path].append((label, plan))
    return acting


def _row(path: str, shape: tuple[int, ...], dtype: str, label: str,
         plan: _hook.TransformPlan, leaf: _hook.LeafPlan, direction: str) -> AuditRow:
    """The row of one decayed leaf under one transform."""
    lam0 = {k: _step0(v) for k, v in leaf.coefficients.items()}
    lam_peak = {k: _peak(v) for k, v in leaf.coefficients.items()}
    update_side = plan.side == "update"
    m0 = _step0(plan.multiplier) if update_side else None
    m_peak = _peak(plan.multiplier) if update_side else None
    factor = ({k: _times(m_peak, v) for k, v in lam_peak.items()}
              if update_side and m_peak is not None else {})
    return AuditRow(path, shape, dtype, label, plan.side, lam0, lam_peak, m0, m_peak, factor,
                    leaf.anchor, plan.cautious, direction)


def _rows(flat: list[tuple[str, Any]], acting: Acting, direction: dict[str, str],
          found: rules.Findings) -> list[AuditRow]:
    """One row per leaf and transform acting on it; the per-leaf rules' findings go to ``found``."""
    rows: list[AuditRow] = []
    has_matrices = any(hasattr(x, "shape") and rules.dims_above_1(tuple(x.shape)) >= 2
                       for _, x in flat)
    for path, x in flat:
        if not hasattr(x, "dtype"):
            continue
        shape, dtype = tuple(np.shape(x)), str(jnp.dtype(x.dtype))
        mine = acting.get(path, [])
        if not mine:
            rows.append(AuditRow(path, shape, dtype, None, None, {}, {}, None, None, {}, None,
                                 False, None))
            continue
        why = rules.looks_undecayable(path, shape, has_matrices)
        for label, plan in mine:
            for leaf in plan.leaves:
                if leaf.path != path or not leaf.decayed:
                    continue
                row = _row(path, shape, dtype, label, plan, leaf, direction.get(path, "unchecked"))
                rows.append(row)
                rules.check_leaf(found, label, path, why, row.factor, plan.rates, leaf.dtype)
        if direction.get(path) == "away":
            rules.check_away(found, path, mine)
    return rows


def _has_injected(state: Any) -> bool:
    nodes = jax.tree_util.tree_leaves(
        state, is_leaf=lambda x: hasattr(x, "hyperparams") and hasattr(x, "inner_state"))
    return any(hasattr(x, "hyperparams") and hasattr(x, "inner_state") for x in nodes)


def _notes(rows: Sequence[AuditRow], plans: Sequence[_hook.TransformPlan], state: Any) -> list[str]:
    """What the rows cannot show: traced factors, no transform found, injected hyperparameters."""
    notes = []
    traced = sorted({r.path for r in rows if "traced" in r.factor.values()})
    if traced:
        notes.append("m*lambda is traced (a schedule closing over traced values), so the "
                     f"m*lambda >= 1 and resolution checks were skipped for: {fmt_paths(traced)}.")
    if not plans:
        notes.append("no decaytx transform was found in this optimizer (optax's own "
                     "add_decayed_weights / adamw decay is not seen by the audit).")
    if _has_injected(state):
        notes.append("under inject_hyperparams the transforms see each injected "
                     "hyperparameter as a constant (its value at step 0): the peaks "
                     "shown are those values, not the peaks of the schedules the wrapper holds.")
    return notes


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
        acting = _acting(labels, plans)
        direction, notes = probe(optimizer, params, state, acting, probe_steps)

    found = rules.Findings()
    rows = _rows(leaves_by_path(params), acting, direction, found)
    for label, plan in zip(labels, plans, strict=True):
        rules.check_selects_something(found, label, plan)
    problems = tuple(AuditProblem(*p) for p in found.problems())
    notes.extend(_notes(rows, plans, state))
    return Audit(tuple(rows), problems, tuple(notes), plans)
