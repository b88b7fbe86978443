"""The one decay machinery: a :class:`Form` and the :class:`Stage` that applies it.

A :class:`Form` says everything about a decay form once: its name, its
per-leaf maths ``leaf(u, p, a, **scalars) -> u``, its coefficients, its side,
its multiplier, which rates the warnings check, whether it is cautious. A
:class:`Stage` is a form with a mask and an anchor; at ``init`` it decides
the per-leaf plan (:mod:`decaytx._plan`) and every path reads that plan: the
transform :func:`decay_transform` returns, the init-time warnings, the audit
(through :mod:`decaytx._hook`), ``inject_hyperparams`` and the fused steps
(:mod:`decaytx.fused`), which call :meth:`Stage.prepare` and
:meth:`Stage.apply` themselves. So the checks (state built for other params
or another mask, anchors of the wrong shape), the dtype rules (a leaf
computed in the wider of its update's and params' dtypes, float32 for a
half-precision leaf whose coefficient exceeds its range) and the error
messages are the same on every path by construction. A compensated form
(``compensated=True``) keeps a float32 residual per bf16/f16 leaf in
:class:`DecayState` and :meth:`Stage.apply` lands that leaf's whole update
on the rounded float32 target (:mod:`decaytx._compensated`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decaytx import _anchors, _compensated, _hook, _mask_arg, _plan, _trees, _warnings
from decaytx import _coefficients as coef
from decaytx._update_side import leaf_multiplier, peak_rate

PyTree = Any

__all__ = ["DecayState", "Form", "Stage", "decay_transform"]


class DecayState(NamedTuple):
    """State of a decay transform that needs one.

    Attributes:
      count: int32 step count, present when a coefficient is a schedule.
      anchor: the anchor ``a`` (masked params-like tree, ``optax.MaskedNode``
        where not decayed), present when ``anchor`` is not ``None``.
      residual: with ``compensated=True``, a params-like tree holding a
        float32 residual per bf16/f16 leaf (``optax.MaskedNode`` elsewhere);
        ``None`` otherwise.
    """

    count: jax.Array | None  # pyright: ignore[reportIncompatibleMethodOverride]
    anchor: PyTree | None
    residual: PyTree | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Form:
    """A decay form, said once.

    Attributes:
      name: the public factory name (in errors, warnings and the audit).
      leaf: the maths, ``leaf(u, p, a, **scalars) -> u`` on one leaf, in one
        dtype (``a`` is ``None`` without an anchor).
      coefficients: name -> coefficient (float, scalar array, schedule, tree
        prefix of params or ``per_leaf``; ``None`` is a concrete zero).
      side: ``"gradient"`` (goes first) or ``"update"`` (goes last).
      combine: maps the evaluated coefficients to the scalars ``leaf`` takes
        (e.g. ``m * weight_decay``), once per step and group; ``None``: as is.
      decides: the coefficients a leaf needs one of to be decayed (and that
        the audit reports); ``None``: all.
      multiplier: the update-side multiplier ``m`` as given (audit, warnings).
      rates: the coefficients whose ``peak(m) * peak(coefficient)`` is the
        per-step factor the warnings (m*lambda >= 1, below resolution) check.
      cautious: whether cautious decay is on.
      params_dtype_out: return the update in the params' dtype where it is
        wider than the update's (the prox: ``theta + u`` is then exactly 0).
      requires: coefficients a leaf needs all of (none a concrete zero) to
        be decayed: an update-side form's ``learning_rate`` (a leaf whose own
        rate is 0 takes no decay).
      at_zero: what a selected float leaf becomes where a coefficient is a
        concrete zero (``None``: unchanged): the learning-rate scaling makes
        it ``0 * u``.
      compensated: keep a float32 residual per bf16/f16 leaf and compensate
        its whole update (:mod:`decaytx._compensated`).
    """

    name: str
    leaf: Callable[..., jax.Array]
    coefficients: Mapping[str, Any]
    side: Literal["gradient", "update"] = "gradient"
    combine: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    decides: tuple[str, ...] | None = None
    multiplier: Any = None
    rates: tuple[str, ...] = ()
    cautious: bool = False
    params_dtype_out: bool = False
    requires: tuple[str, ...] = ()
    at_zero: Callable[[jax.Array], jax.Array] | None = None
    compensated: bool = False

    @property
    def public(self) -> tuple[str, ...]:
        return tuple(self.coefficients) if self.decides is None else self.decides

    @property
    def injected(self) -> bool:
        """Whether the numbers came as arrays, as ``optax.inject_hyperparams`` passes them."""
        return any(isinstance(v, jax.Array) for v in self.coefficients.values())


@dataclasses.dataclass
class Step:
    """What :meth:`Stage.prepare` checked and found for one ``update``."""

    plan: _plan.Plan
    anchors: list[Any] | None
    count: Any
    cache: dict[Any, Any]
    given: dict[str, Any] | None = None
    residuals: list[Any] | None = None  # the state's residual leaves (compensated=True)
    new_residuals: dict[int, Any] = dataclasses.field(default_factory=dict)


def _x64() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


class Stage:
    """A :class:`Form` with its mask and anchor: the plan and the per-leaf step."""

    def __init__(self, form: Form, *, mask: Any = None, anchor: Any = None) -> None:
        self.form = form
        self.mask = _mask_arg.check(mask, injected=form.injected)
        self.anchor = _anchors.check(anchor)
        self._reset()

    def _reset(self) -> None:
        # Plans by (treedef, shapes/dtypes, x64) and by paths; the schedules
        # checked and the signatures warned about (once each).
        self._plans: dict[Any, _plan.Plan] = {}
        self._by_paths: dict[Any, _plan.Plan] = {}
        self._checked: set[int] = set()
        self._warned: set[Any] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"form": self.form, "mask": self.mask, "anchor": self.anchor}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def name(self) -> str:
        return self.form.name

    def stateless(self, plan: _plan.Plan) -> bool:
        """Whether the state is ``EmptyState``: constant coefficients, no anchor, not compensated."""
        return not plan.needs_count and self.anchor is None and not self.form.compensated

    # -- the plan ----------------------------------------------------------

    def plan(self, params: PyTree, at_init: bool = False) -> _plan.Plan:
        """The plan for these params: cached per signature, built when new."""
        leaves, treedef = _trees.flatten(params)
        sig = _plan.signature(leaves)
        key = (treedef, sig, _x64())
        plan = self._plans.get(key)
        if plan is None:
            _trees.check_leaves(params, self.name)
            flat = _trees.flatten_with_path(params)
            path_key = (tuple(_trees.path_of(k) for k, _ in flat), sig, _x64())
            plan = self._by_paths.get(path_key)
            if plan is None:
                form = self.form
                plan = _plan.build(params, _mask_arg.leaves(self.mask, params),
                                   dict(form.coefficients), form.public, form.combine,
                                   form.compensated, requires=form.requires)
        if at_init:
            # Checked before anything is recorded, so a refused init never
            # leaves the transform looking initialised (a retry re-checks).
            self._check_schedules(plan)
            self._warn_once(plan, key, leaves)
        if plan.cacheable:
            self._plans[key] = plan
            self._by_paths[(tuple(lf.path for lf in plan.leaves), sig, _x64())] = plan
        return plan

    def _check_schedules(self, plan: _plan.Plan) -> None:
        for k, sched, path in _plan.schedules(plan):
            if id(sched) not in self._checked:
                coef.check_schedule(k if len(plan.groups) == 1 else f"{k}[{_trees.shown(path)}]", sched)
                self._checked.add(id(sched))

    def _warn_once(self, plan: _plan.Plan, key: Any, leaves: list[Any]) -> None:
        # An audit's init (a recording) must not use up the user's once-only
        # warnings: it records nothing as warned.
        if _hook.active():
            return
        once = _warnings.WARNED.get()
        wkey = (self.name, key)
        if key in self._warned or (once is not None and wkey in once):
            return
        self._warned.add(key)
        if once is not None:
            once.add(wkey)
        if self.mask is not None:
            _warnings.warn_empty_mask(self.name, self.mask, [
                lf.masked_in for lf, p in zip(plan.leaves, leaves, strict=True)
                if _trees.is_decayable(p)])
            _mask_arg.warn_unmatched(self.name, self.mask, [lf.path for lf in plan.leaves])
            _mask_arg.warn_keystr(self.name, self.mask, [lf.path for lf in plan.leaves])
        if self.form.rates:
            _warnings.warn_step_decay(self.name, rates(self.form, plan, leaves))

    # -- init ----------------------------------------------------------------

    def init(self, params: PyTree) -> Any:
        """The state: ``EmptyState``, or a count and/or an anchor."""
        if _trees.is_params_placeholder(params):
            return self._placeholder_state(params)
        plan = self.plan(params, at_init=True)
        if _hook.active():
            _hook.emit(self._report(plan, _trees.flatten(params)[0]))
        if self.stateless(plan):
            return optax.EmptyState()
        return DecayState(
            count=jnp.zeros([], jnp.int32) if plan.needs_count else None,
            anchor=None if self.anchor is None else _anchors.init(
                self.name, self.anchor, params, [lf.decayed for lf in plan.leaves]),
            residual=_compensated.init(params, [lf.residual for lf in plan.leaves])
            if self.form.compensated else None,
        )

    def _placeholder_state(self, params: Any) -> Any:
        """The state's structure for ``optax.tree.map_params``: the anchor is a params tree."""
        needs_count = _plan.any_schedule(self.form.coefficients)
        if not needs_count and self.anchor is None and not self.form.compensated:
            return optax.EmptyState()
        return DecayState(count=jnp.zeros([], jnp.int32) if needs_count else None,
                          anchor=None if self.anchor is None else params,
                          residual=params if self.form.compensated else None)

    def _report(self, plan: _plan.Plan, leaves: list[Any]) -> _hook.TransformPlan:
        form, anchor = self.form, _anchors.kind(self.anchor)
        return _hook.TransformPlan(
            name=form.name, side=form.side, multiplier=form.multiplier, cautious=form.cautious,
            rates=form.rates, mask=self.mask,
            leaves=tuple(
                _hook.LeafPlan(
                    path=lf.path, shape=tuple(p.shape), dtype=jnp.dtype(p.dtype).name,
                    decayed=lf.decayed,
                    coefficients={
                        k: 0.0 if plan.groups[lf.group][k] is None else plan.groups[lf.group][k]
                        for k in form.public
                    } if lf.decayed else {},
                    anchor=anchor,  # pyright: ignore[reportArgumentType]
                    masked_in=lf.masked_in,
                    multiplier=leaf_multiplier(plan.groups[lf.group], form.multiplier)
                    if lf.decayed and form.side == "update" else None,
                    compensated=lf.residual,
                )
                for lf, p in zip(plan.leaves, leaves, strict=True)
                if not _trees.is_empty(p) and hasattr(p, "shape")
            ),
        )

    # -- update --------------------------------------------------------------

    def prepare(self, state: Any, params: PyTree, given: dict[str, Any] | None = None) -> Step:
        """Checks params and state against the plan; the step's anchors and count.

        ``given``: name -> a function of a group's coefficient giving its
        value already evaluated for this step (a recipe shares each leaf's
        eta_t with the decay's multiplier).
        """
        _trees.check_params(params, self.name)
        plan = self.plan(params)
        if self.stateless(plan):
            return Step(plan, None, None, {}, given)
        _check_state(self.name, state, plan, self.anchor, self.form.compensated)
        anchors = residuals = None
        keypaths = [lf.keypath for lf in plan.leaves]
        if self.anchor is not None:
            anchors = _anchors.state_leaves(
                self.name, state.anchor, params, keypaths,
                [lf.decayed for lf in plan.leaves], _trees.flatten(params)[0])
        if self.form.compensated:
            residuals = _compensated.state_leaves(
                self.name, state.residual, params, keypaths, [lf.residual for lf in plan.leaves])
        return Step(plan, anchors, state.count, {}, given, residuals)

    def apply(self, step: Step, i: int, u: Any, p: Any,
              leaf: Callable[..., jax.Array] | None = None) -> Any:
        """Leaf ``i`` of the update, decayed by the form's maths (or ``leaf``,
        an expression of the same value) in the dtype the plan decided."""
        lf = step.plan.leaves[i]
        if _trees.is_empty(u):
            return u
        if not (lf.decayed or lf.residual):
            zero = self.form.at_zero
            if zero is None or not lf.masked_in or not _trees.is_decayable(u):
                return u
            return zero(u)
        _check_update_leaf(self.name, lf, u, p)
        ud = jnp.dtype(u.dtype)
        if not jnp.issubdtype(ud, jnp.inexact):
            return u
        if lf.residual:
            return self._compensated(step, i, u, p, leaf)
        wide = lf.compute or (ud if p.dtype == ud else jnp.promote_types(ud, p.dtype))
        res = self._maths(step, i, u, p, wide, leaf)
        keep = self.form.params_dtype_out and wide == p.dtype
        return res if keep or res.dtype == ud else res.astype(ud)

    def _compensated(self, step: Step, i: int, u: Any, p: Any,
                     leaf: Callable[..., jax.Array] | None) -> Any:
        """Leaf ``i``'s update compensated (:mod:`decaytx._compensated`): the
        form's maths at theta + r in float32, landed on a representable theta'."""
        assert step.residuals is not None
        r = step.residuals[i]
        wide = jnp.promote_types(jnp.promote_types(u.dtype, p.dtype), jnp.float32)
        pm = p.astype(wide) + r.astype(wide)
        uw = u.astype(wide)
        res = self._maths(step, i, uw, pm, wide, leaf) if step.plan.leaves[i].decayed else uw
        u_out, step.new_residuals[i] = _compensated.land(pm + res, p, u.dtype)
        return u_out

    def _maths(self, step: Step, i: int, u: Any, p: Any, wide: Any,
               leaf: Callable[..., jax.Array] | None) -> Any:
        """The form's maths (or ``leaf``) on leaf ``i`` in ``wide``."""
        lf, ud = step.plan.leaves[i], jnp.dtype(u.dtype)
        if jnp.issubdtype(wide, jnp.complexfloating) and not jnp.issubdtype(ud, jnp.complexfloating):
            raise ValueError(
                f"{self.name}: the update at {_trees.where(lf.keypath)} is real "
                f"({ud.name}) but the params leaf is complex ({jnp.dtype(p.dtype).name}); "
                "the decay's imaginary part would be dropped. Give complex updates "
                "for complex params."
            )
        a = None if step.anchors is None else step.anchors[i]
        form = self.form
        return (leaf or form.leaf)(
            u if ud == wide else u.astype(wide),
            p if p.dtype == wide else p.astype(wide),
            None if a is None else (a if a.dtype == wide else a.astype(wide)),
            **step.plan.scalars(lf.group, wide, form.combine, step.count, step.cache, step.given),
        )

    def next_state(self, state: Any, step: Step) -> Any:
        """The state after one ``update``: the count advanced (saturating), the residuals."""
        if self.stateless(step.plan):
            return state
        if step.plan.needs_count:
            state = state._replace(count=jnp.asarray(optax.safe_increment(state.count)))
        if self.form.compensated:
            state = state._replace(residual=_compensated.next_tree(state.residual, step.new_residuals))
        return state

    def update(self, updates: optax.Updates, state: Any, params: optax.Params | None = None,
               given: dict[str, Any] | None = None) -> tuple[optax.Updates, Any]:
        """The transform's ``update``: :meth:`prepare`, :meth:`apply` per leaf."""
        if updates is None:  # as optax's own transforms: nothing to decay
            return updates, state
        step = self.prepare(state, params, given)
        u_leaves, u_def = _trees.flatten(updates)
        p_leaves, p_def = _trees.flatten(params)
        if u_def != p_def:
            raise _trees.structure_error(
                "updates", updates, params, "updates and params must be trees of the same structure."
            )
        out = [self.apply(step, i, u, p) for i, (u, p) in enumerate(zip(u_leaves, p_leaves, strict=True))]
        return u_def.unflatten(out), self.next_state(state, step)


def rates(form: Form, plan: _plan.Plan, leaves: list[Any]) -> list[tuple[Any, float | None, str]]:
    """``(dtype, peak m*lambda, path)`` for each decayed leaf (the warnings' input).

    A compensated leaf computes its decay in float32 and keeps what rounding
    takes away, so its rate is checked against float32's resolution.
    """
    per_group = [peak_rate(leaf_multiplier(g, form.multiplier), *(g[k] for k in form.rates))
                 for g in plan.groups]
    return [(jnp.float32 if lf.residual else p.dtype, per_group[lf.group], lf.path)
            for lf, p in zip(plan.leaves, leaves, strict=True) if lf.decayed]


def _check_update_leaf(name: str, lf: _plan.Leaf, u: Any, p: Any) -> None:
    if getattr(u, "shape", None) != p.shape:
        raise ValueError(
            f"{name}: the update at {_trees.where(lf.keypath)} has shape "
            f"{getattr(u, 'shape', type(u).__name__)} but the params leaf has "
            f"shape {p.shape}; updates and params must have the same shapes "
            "(broadcasting would silently change the update's shape)."
        )


def _check_state(name: str, state: Any, plan: _plan.Plan, anchor: Any, compensated: bool) -> None:
    expected = (
        f"DecayState(count={'int32 array' if plan.needs_count else 'None'}, "
        f"anchor={'params-like tree' if anchor is not None else 'None'}"
        f"{', residual=params-like tree' if compensated else ''})"
    )
    if not isinstance(state, DecayState):
        raise TypeError(
            f"{name}.update received state {type(state).__name__} ({str(state)[:60]}), not "
            f"the {expected} its init returns. Pass the state this transform's "
            "init built (inside a chain, the chain's own state)."
        )
    if plan.needs_count and state.count is None:
        raise TypeError(
            f"{name}.update: state.count is None but a coefficient is a schedule; "
            f"expected {expected}: state built by another transform or configuration?"
        )
    if anchor is not None and state.anchor is None:
        raise ValueError(
            f"{name}.update: state.anchor is None but this transform decays toward "
            f"an anchor; expected {expected}: state built without anchor=?"
        )
    if compensated and state.residual is None:
        raise ValueError(
            f"{name}.update: state.residual is None but this transform is "
            f"compensated; expected {expected}: state built without compensated=True?"
        )


def decay_transform(form: Form, *, mask: Any = None, anchor: Any = None) -> optax.GradientTransformation:
    """``form`` as an ``optax.GradientTransformation`` (a :class:`Stage`'s init and update).

    A form whose every deciding coefficient is a concrete zero is
    ``optax.identity()`` (no state, no ops).
    """
    stage = Stage(form, mask=mask, anchor=anchor)
    return optax.GradientTransformation(stage.init, stage.update)
