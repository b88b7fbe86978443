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
from decaytx._audit_checks import behaviour
from decaytx._audit_probe import Acting, leaves_by_path, probe, unique
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
      rule: which rule decided the leaf's decay under this transform: its
        mask (``"masks.preset('nanogpt')"``, ``"masks.matrices()"``, ``"mask
        tree"``), ``"all leaves"`` (no mask), ``"...; coefficient zero"``; for
        a leaf nothing decays, why, per transform that sees it
        (``"add_decoupled_decay: excluded by masks.matrices()"``).
      compensated: whether the transform keeps a float32 residual for the
        leaf (``compensated=True`` on a bf16/f16 leaf): its decay is
        checked against float32's resolution, not the leaf's.
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
    rule: str = ""
    compensated: bool = False


@dataclasses.dataclass(frozen=True)
class AuditProblem:
    """A finding: a problem (the decay will not do what the chain says) or a
    note (a setting that is often unintended, e.g. a decayed embedding).

    Attributes:
      kind: problems: ``"away_from_anchor"``, ``"gradient_after_optimizer"``,
        ``"not_visible"``, ``"frozen_but_decayed"``, ``"factor_at_least_1"``,
        ``"constant_multiplier"``, ``"decayed_twice"``, ``"below_resolution"``,
        ``"selects_nothing"``, ``"unmatched_pattern"``,
        ``"decay_outside_schedule_free"``, ``"keystr_pattern"``; notes:
        ``"looks_undecayable"``, ``"path_collision"``, ``"decay_not_seen"``.
      transform: the transform concerned (its row name).
      paths: the leaves concerned.
      message: what is wrong.
      fix: what to change.
      severity: ``"problem"`` or ``"note"``.
    """

    kind: ProblemKind
    transform: str
    paths: tuple[str, ...]
    message: str
    fix: str
    severity: str = "problem"


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
      problems: the findings of severity ``"problem"`` (the decay will not do
        what the chain says), each with its fix: ``assert not
        report.problems`` is the check to run.
      notes: what the audit could not check, and why (strings).
      plans: the raw init-time plans of the decaytx transforms found.
      findings: every :class:`AuditProblem`, problems first, then the notes
        (``severity="note"``: looks like a bias, norm scale or embedding...).
    """

    rows: tuple[AuditRow, ...]
    problems: tuple[AuditProblem, ...]
    notes: tuple[str, ...]
    plans: tuple[_hook.TransformPlan, ...]
    findings: tuple[AuditProblem, ...] = ()

    def __str__(self) -> str:
        header = ("path", "shape", "dtype", "transform", "λ0", "λ peak", "m0", "m peak",
                  "m·λ peak", "anchor", "zero-grad step", "decided by")
        body = [
            (
                r.path or "(root)",
                str(r.shape),
                r.dtype,
                "-" if r.transform is None else r.transform + (" (cautious)" if r.cautious else "")
                + (" (compensated)" if r.compensated else ""),
                _fmt_dict(r.lam0),
                _fmt_dict(r.lam_peak),
                _fmt(r.m0),
                _fmt(r.m_peak),
                _fmt_dict(r.factor),
                r.anchor or "-",
                r.direction or "-",
                r.rule or "-",
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                 for row in [header, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        return "\n".join(lines + _summary(self))


def _finding_lines(title: str, found: Sequence[AuditProblem]) -> list[str]:
    lines = [f"{len(found)} {title}:"]
    for p in found:
        leaves = f" Leaves: {fmt_paths(p.paths)}." if p.paths else ""
        lines.append(f"- [{p.kind}] {p.transform}: {p.message}{leaves}")
        lines.append(f"  Fix: {p.fix}")
    return lines


def _summary(report: Audit) -> list[str]:
    """The problems, then the notes; "No problems found" only where all was seen."""
    lines = _finding_lines("problem(s)", report.problems) if report.problems else [
        "No problems found." if not report.notes
        else "No problems found in what the audit could check (see the notes below)."]
    notes = [f for f in report.findings if f.severity == "note"]
    if notes:
        lines += _finding_lines("note(s) (the decay does what the chain says; check it is meant)",
                                notes)
    return lines + [f"Note: {n}" for n in report.notes]


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
    """Path (told apart where two coincide) -> the (label, plan, leaf plan) of
    each transform that decays the leaf."""
    acting: Acting = {}
    for label, plan in zip(labels, plans, strict=True):
        paths = unique([leaf.path for leaf in plan.leaves])
        for path, leaf in zip(paths, plan.leaves, strict=True):
            if leaf.decayed:
                acting.setdefault(path, []).append((label, plan, leaf))
    return acting


def _seen_by(labels: Sequence[str], plans: Sequence[_hook.TransformPlan]) -> dict[str, list[str]]:
    """Path -> why each transform that sees the leaf but does not decay it leaves it."""
    why: dict[str, list[str]] = {}
    for label, plan in zip(labels, plans, strict=True):
        paths = unique([leaf.path for leaf in plan.leaves])
        for path, leaf in zip(paths, plan.leaves, strict=True):
            if not leaf.decayed:
                kept = " (compensated)" if leaf.compensated else ""  # its steps still are
                why.setdefault(path, []).append(f"{label}: {rules.leaf_rule(plan, leaf)}{kept}")
    return why


def _row(path: str, shape: tuple[int, ...], dtype: str, label: str,
         plan: _hook.TransformPlan, leaf: _hook.LeafPlan, direction: str) -> AuditRow:
    """The row of one decayed leaf under one transform."""
    lam0 = {k: _step0(v) for k, v in leaf.coefficients.items()}
    lam_peak = {k: _peak(v) for k, v in leaf.coefficients.items()}
    update_side = plan.side == "update"
    m = plan.multiplier if leaf.multiplier is None else leaf.multiplier  # per-leaf rates: its own
    m0, m_peak = (_step0(m), _peak(m)) if update_side else (None, None)
    factor = ({k: _times(m_peak, v) for k, v in lam_peak.items()}
              if update_side and m_peak is not None else {})
    return AuditRow(path, shape, dtype, label, plan.side, lam0, lam_peak, m0, m_peak, factor,
                    leaf.anchor, plan.cautious, direction, rules.leaf_rule(plan, leaf), leaf.compensated)


def _rows(flat: list[tuple[str, Any]], acting: Acting, direction: dict[str, str],
          found: rules.Findings, seen_by: dict[str, list[str]]) -> list[AuditRow]:
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
            rule = "; ".join(seen_by.get(path, ["no decaytx transform sees it"]))
            rows.append(AuditRow(path, shape, dtype, None, None, {}, {}, None, None, {}, None,
                                 False, None, rule))
            continue
        why = rules.looks_undecayable(path.split(" [#")[0], shape, has_matrices)
        for label, plan, leaf in mine:
            row = _row(path, shape, dtype, label, plan, leaf, direction.get(path, "unchecked"))
            rows.append(row)
            # A compensated leaf's decay is computed and kept in float32.
            rules.check_leaf(found, label, path, why, row.factor, plan.rates,
                             "float32" if leaf.compensated else leaf.dtype)
        if direction.get(path) == "away":
            rules.check_away(found, path, mine)
        rules.check_twice(found, path, mine)
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
    a decay chained after ``optax.contrib.schedule_free`` instead of inside its
    base optimizer, a mask pattern written as a 0.1 keystr path that matches by
    accident, and decayed leaves that look like biases, norm scales or embeddings.

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
      ['away_from_anchor']
      >>> sorted({p.kind for p in report.findings if p.severity == "note"})
      ['looks_undecayable']
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
    _check_arguments(optimizer, params, probe_steps)
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
        notes.extend(behaviour(found, optimizer, params, state, acting, plans, probe_steps))

    flat = leaves_by_path(params)
    rows = _rows(flat, acting, direction, found, _seen_by(labels, plans))
    _plan_checks(found, flat, labels, plans)
    findings = tuple(AuditProblem(*p, severity=rules.severity(p[0])) for p in found.problems())
    notes.extend(_notes(rows, plans, state))
    return Audit(tuple(rows), tuple(f for f in findings if f.severity == "problem"),
                 tuple(notes), plans, findings)


def _check_arguments(optimizer: Any, params: Any, probe_steps: Any) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"audit(optimizer=...) needs an optax GradientTransformation (with init "
            f"and update), got {optimizer!r} of type {type(optimizer).__name__}."
        )
    if isinstance(probe_steps, bool) or not isinstance(probe_steps, int) or probe_steps < 1:
        raise ValueError(f"probe_steps={probe_steps!r} must be a positive int, e.g. 8.")
    if not any(hasattr(x, "dtype") for _, x in leaves_by_path(params)):
        raise TypeError(
            f"audit(optimizer, params={params!r}): params has no array leaf, so there is "
            "nothing to audit. Pass the params the optimizer will be initialised with "
            "(e.g. model.init(key, x)['params'], nnx.state(model, nnx.Param), "
            "eqx.filter(model, eqx.is_array)).")


def _plan_checks(found: rules.Findings, flat: list[tuple[str, Any]], labels: Sequence[str],
                 plans: Sequence[_hook.TransformPlan]) -> None:
    """Per transform: empty mask, patterns matching nothing, params it was
    initialised with that are not these (a wrapper that reshapes them); and
    paths that coincide."""
    here = {path.split(" [#")[0] for path, _ in flat}
    for label, plan in zip(labels, plans, strict=True):
        rules.check_selects_something(found, label, plan)
        rules.check_unmatched(found, label, plan)
        rules.check_keystr(found, label, plan)
        foreign = [leaf.path or "(root)" for leaf in plan.leaves if leaf.path not in here]
        if foreign:
            found.add("not_visible", label, [], (
                f"{label} was initialised with params of another structure (its leaves "
                f"{fmt_paths(foreign)} are not leaves of these params: a wrapper such as "
                "optax.flatten or optax.lookahead hands it other params)"))
    collided = sorted({p.split(" [#")[0] for p, _ in flat if " [#" in p})
    for path in collided:
        found.add("path_collision", "(params)", [p for p, _ in flat if p.startswith(path + " [#")],
                  repr(path))
