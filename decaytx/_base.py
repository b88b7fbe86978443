"""The machinery every decay form shares.

A form is a leaf function ``leaf_fn(u, p, a, **scalars) -> u`` plus its
coefficients. :func:`decay_transform` turns it into an
``optax.GradientTransformation`` and takes care, in one place, of

* the plan, decided at ``init`` (``_plan``): which leaves are decayed (mask,
  dtype, concrete-zero coefficients), each leaf's coefficients (a scalar, a
  tree prefix of params or ``per_leaf``), the dtype to compute in;
* the step count (kept only when a coefficient is a schedule, advanced once per
  ``update`` and saturating at the int32 limit, like optax's own);
* anchors (``None``, ``"init"`` or a pytree), stored in the state, placed like
  their params, and checked against the plan at every ``update``;
* dtypes: a leaf is computed in the wider of its update's and params' dtypes,
  the coefficient cast to that real dtype, the result cast back to the
  update's dtype;
* the errors for ``update`` without params or with another transform's state.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _coefficients as coef
from decaytx import _hook, _plan
from decaytx import masks as _masks
from decaytx._plan import is_decayable
from decaytx._plan import is_leaf as _is_leaf

PyTree = Any
MaskOrFn = Any  # a pytree of bools, a prefix of params, or a callable of params

__all__ = ["DecayState", "DecayWarning", "decay_transform", "is_decayable"]


class DecayState(NamedTuple):
    """State of a decay transform that needs one.

    Attributes:
      count: int32 step count, present when a coefficient is a schedule.
      anchor: the anchor ``a`` (masked params-like tree, ``optax.MaskedNode``
        where not decayed), present when ``anchor`` is not ``None``.
    """

    count: jax.Array | None  # pyright: ignore[reportIncompatibleMethodOverride]
    anchor: PyTree | None


class DecayWarning(UserWarning):
    """A decay setting that is legal but almost certainly not what was meant."""


def _describe(x: Any) -> str:
    if _is_leaf(x):
        return type(x).__name__ if x is not None else "None"
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return f"a {jnp.dtype(x.dtype).name}{list(x.shape)} array"
    return f"a {type(x).__name__}"


def _structure_error(what: str, tree: PyTree, params: PyTree, fix: str) -> ValueError:
    mine = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_leaf)[0]
    theirs = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_leaf)[0]
    ks = jax.tree_util.keystr
    mine_d, theirs_d = {ks(k): v for k, v in mine}, {ks(k): v for k, v in theirs}
    extra = sorted(set(mine_d) - set(theirs_d))[:5]
    missing = sorted(set(theirs_d) - set(mine_d))[:5]
    detail = []
    if missing:
        detail.append(f"params paths missing from {what}: {missing}")
    if extra:
        detail.append(f"{what} paths not in params: {extra}")
    if not detail:
        # Same paths: name the leaves whose kind differs (None vs array).
        differ = [
            f"{what} has {_describe(mine_d[k])} at {k} where params has {_describe(theirs_d[k])}"
            for k in mine_d if _is_leaf(mine_d[k]) != _is_leaf(theirs_d[k])
        ][:3]
        detail.extend(differ or [
            f"{what} has the container types {jax.tree_util.tree_structure(tree, is_leaf=_is_leaf)} "
            f"and params {jax.tree_util.tree_structure(params, is_leaf=_is_leaf)}"
        ])
    return ValueError(f"{what} does not match params: " + "; ".join(detail) + f". {fix}")


_MASK_TRAP = (
    "mask= received a bare {value!r} where a pytree of bools or a callable of "
    "params was expected. This is what optax.inject_hyperparams makes of a "
    "callable mask: it treats it as a schedule, calls it with the step count "
    "and would silently turn decay off (optax issues #57, #1373). Use "
    "decaytx.inject_hyperparams, which keeps mask and anchor static, or pass "
    "static_args=('mask',) to optax.inject_hyperparams."
)


def is_mask_fn(mask: Any) -> bool:
    """Whether ``mask`` is a callable of params rather than a tree of bools.

    A pytree that happens to be callable (an Equinox module of bools, the
    filter spec Equinox users build with ``eqx.tree_at``) is a tree.
    """
    return callable(mask) and jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(mask))


def check_mask(mask: Any) -> Any:
    """Rejects masks that cannot be right before anything is traced."""
    for factory, meant in _masks.FACTORIES.items():
        if mask is factory:
            raise TypeError(
                f"mask=masks.{factory.__name__} is the factory, not a mask: did you mean mask={meant}?"
            )
    if mask is None or is_mask_fn(mask):
        return mask
    if isinstance(mask, (bool, np.bool_, jax.Array, np.ndarray)) and not _in_optax_inject():
        raise TypeError(
            f"mask={mask!r} is a bare {type(mask).__name__}; pass mask=None to decay "
            "every leaf, leave the transform out to decay none, or give a pytree "
            "of bools or a callable of params (e.g. decaytx.masks.matrices())."
        )
    if isinstance(mask, (bool, np.bool_, jax.Array, np.ndarray)):
        # What optax.inject_hyperparams makes of a callable mask: it calls it
        # with the step count (mask(count) -> False): refuse it, don't guess.
        raise TypeError(_MASK_TRAP.format(value=mask) + (
            " To decay every leaf pass mask=None; to decay none, leave the "
            "transform out."
        ))
    for leaf in jax.tree_util.tree_leaves(mask):
        if coef.is_traced(leaf):
            raise TypeError(
                f"mask= has a traced leaf ({leaf!r}); a mask decides which "
                "leaves are decayed and must be concrete. Keep it static (under "
                "optax.inject_hyperparams use decaytx.inject_hyperparams)."
            )
        if (
            isinstance(leaf, (jax.Array, np.ndarray))
            and leaf.shape == ()
            and leaf.dtype == np.bool_
        ):
            continue  # a concrete 0-d bool array, as optax.masked accepts
        if not isinstance(leaf, (bool, np.bool_)):
            raise TypeError(
                f"mask= leaves must be Python bools (True = decay), got "
                f"{leaf!r} of type {type(leaf).__name__}; build the mask with "
                "decaytx.masks (e.g. masks.matrices()) or "
                "jax.tree.map(lambda p: p.ndim >= 2, params)."
            )
    return mask


def _in_optax_inject() -> bool:
    """Whether optax.inject_hyperparams is building this transform (the only
    place a bare bool mask comes from without the user writing one)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.replace("\\", "/").endswith("optax/schedules/_inject.py"):
            return True
        frame = frame.f_back
    return False


def _is_bool(x: Any) -> bool:
    return isinstance(x, (bool, np.bool_)) or (
        isinstance(x, (jax.Array, np.ndarray)) and not coef.is_traced(x)
        and x.shape == () and x.dtype == np.bool_
    )


def resolve_mask(mask: MaskOrFn, params: PyTree) -> PyTree:
    """A full tree of Python bools, one per params leaf."""
    if mask is None:
        return jax.tree.map(lambda _: True, params, is_leaf=_is_leaf)

    def broadcast(m: Any, sub: Any) -> Any:
        return jax.tree.map(lambda _: bool(m), sub, is_leaf=_is_leaf)

    if is_mask_fn(mask):
        # Shapes and dtypes are static: a mask computed from them (even as
        # 0-d jnp bools) is concrete while init or update is traced.
        with jax.ensure_compile_time_eval():
            mask = mask(params)
        if _is_bool(mask):
            # A callable's verdict on params that are a single array (e.g.
            # masks.ndim_at_least(2)(w)): a bool prefix, not the trap below.
            return broadcast(mask, params)
    check_mask(mask)

    try:
        return jax.tree.map(broadcast, mask, params, is_leaf=_is_bool)
    except (ValueError, TypeError) as e:
        from decaytx._groups import prefix_mismatch

        where = prefix_mismatch(mask, params, _is_bool)
        if where == "its structure differs from params":
            # No first differing node to name: show the whole-tree comparison.
            detail = str(_structure_error("mask", mask, params, ""))
            where += f" ({detail.split(': ', 1)[1].rstrip('. ')})"
        raise ValueError(
            f"mask does not match params: {where}. Pass a "
            "tree with the structure of params (or a prefix of it) whose leaves "
            "are bools, or a callable of params (e.g. decaytx.masks.matrices())."
        ) from e


def _anchor_kind(anchor: Any) -> str:
    return "zero" if anchor is None else ("init" if isinstance(anchor, str) else "tree")


def _init_anchor(name: str, anchor: Any, params: PyTree, plan: _plan.Plan) -> PyTree:
    if isinstance(anchor, str):
        anchor = params
    elif jax.tree_util.tree_structure(anchor, is_leaf=_is_leaf) != jax.tree_util.tree_structure(
        params, is_leaf=_is_leaf
    ):
        raise _structure_error(
            "anchor", anchor, params,
            "Pass a pytree with exactly the structure of params (e.g. a copy "
            "of the pretrained params), or anchor='init'.",
        )
    given = jax.tree_util.tree_leaves(anchor, is_leaf=_is_leaf)
    p_leaves = jax.tree_util.tree_leaves(params, is_leaf=_is_leaf)
    out = []
    for leaf, p, a in zip(plan.leaves, p_leaves, given, strict=True):
        if not leaf.decayed:
            out.append(optax.MaskedNode())
            continue
        where = jax.tree_util.keystr(leaf.keypath)
        try:
            a = None if _is_leaf(a) else jnp.asarray(a)
        except TypeError:
            a = None
        if a is None:
            raise ValueError(
                f"{name}: anchor has {_describe(given[len(out)])} at {where}, where params "
                f"has {_describe(p)} that this transform decays; give an array for every "
                "decayed leaf (jax.tree.map(jnp.zeros_like, params) decays toward 0)."
            )
        if a.shape != p.shape:
            raise ValueError(
                f"{name}: anchor leaf at {where} has shape {a.shape} but "
                f"the params leaf has shape {p.shape}; pass an anchor with the "
                "shapes of params."
            )
        if jnp.iscomplexobj(a) and not jnp.iscomplexobj(p):
            raise ValueError(
                f"{name}: anchor leaf at {where} is complex ({a.dtype}) but the params "
                f"leaf is real ({p.dtype}): its imaginary part would be dropped. Pass a "
                "real anchor (jnp.real(a) if that is what you mean)."
            )
        if not coef.is_traced(a) and not _all_finite(a):
            raise ValueError(
                f"{name}: anchor leaf at {where} has non-finite values (NaN or inf); "
                "every decayed weight would be pulled toward them. Pass a finite anchor."
            )
        # A copy that lives in the state, in the params' dtype and placement.
        out.append(_place_like(a, p))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params, is_leaf=_is_leaf), out)


def _place_like(a: jax.Array, p: Any) -> jax.Array:
    """A copy of ``a`` in the dtype and sharding of ``p`` (no transfer per
    step, no mismatch on an explicit-axis mesh).

    Concrete params: moved with ``device_put`` before any computation, so an
    anchor on another device (or mesh) never meets the params' mesh inside a
    jitted op (inside ``jax.set_mesh`` such an op is refused).
    """
    if isinstance(p, jax.Array) and not coef.is_traced(p):
        if not coef.is_traced(a) and not (
            isinstance(a, jax.Array) and a.sharding.is_equivalent_to(p.sharding, p.ndim)
        ):
            a = jax.device_put(a, p.sharding, may_alias=False)
            return a if a.dtype == p.dtype else a.astype(p.dtype)
        a = jnp.array(a, dtype=p.dtype, copy=True)
        if not a.sharding.is_equivalent_to(p.sharding, p.ndim):
            a = jax.device_put(a, p.sharding)
        return a
    a = jnp.array(a, dtype=p.dtype, copy=True)
    sharding = getattr(jax.typeof(p), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is not None and any(
        t == jax.sharding.AxisType.Explicit for t in getattr(mesh, "axis_types", ())
    ):
        a = jax.sharding.reshard(a, sharding.spec)  # pyright: ignore[reportOptionalMemberAccess]
    return a


def _all_finite(a: Any) -> bool:
    """Whether a concrete anchor leaf is finite; a multi-process array is
    checked on the shards this process holds (each process checks its own)."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        return all(bool(np.all(np.isfinite(np.asarray(s.data)))) for s in a.addressable_shards)
    return bool(np.all(np.isfinite(np.asarray(a))))


def check_leaves(params: PyTree, name: str) -> None:
    """Rejects params leaves that are not arrays (a Python float, a string).

    A Python float leaf would be decayed under ``jit`` (where it becomes an
    f32 tracer) but not outside it; refusing it keeps both the same. Python
    ints and bools are left untouched either way, like integer arrays.
    """
    for path, x in jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_leaf)[0]:
        if _is_leaf(x) or hasattr(x, "dtype") or isinstance(x, (bool, int)):
            continue
        raise TypeError(
            f"{name}: the params leaf at {jax.tree_util.keystr(path)} is {x!r} of "
            f"type {type(x).__name__}, not an array. Convert params with "
            "jax.tree.map(jnp.asarray, params), or filter non-array leaves out "
            "(e.g. eqx.filter(model, eqx.is_array))."
        )


def check_params(params: PyTree, name: str) -> None:
    if params is None:
        raise ValueError(
            f"{name}.update was called without params. Decay reads the "
            "current weights: call update(updates, state, params)."
        )


# Set by decaytx.inject_hyperparams around each init: the (transform, plan
# signature) pairs that have warned already, for transforms rebuilt per init.
WARNED: contextvars.ContextVar[set[Any] | None] = contextvars.ContextVar(
    "decaytx_warned", default=None
)


def decay_transform(
    name: str,
    leaf_fn: Callable[..., jax.Array],
    coefficients: dict[str, Any],
    *,
    mask: MaskOrFn = None,
    anchor: Any = None,
    combine: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_init: Callable[[_plan.Plan, list[Any]], None] | None = None,
    public: tuple[str, ...] | None = None,
    side: str = "gradient",
    multiplier: Any = None,
    cautious: bool = False,
    params_dtype_out: bool = False,
) -> optax.GradientTransformation:
    """Builds a decay transform from the maths of one leaf.

    Args:
      name: the public name of the form, used in error messages.
      leaf_fn: ``leaf_fn(u, p, a, **scalars) -> u``; ``a`` is ``None`` without
        an anchor; a scalar is ``None`` where its coefficient is a concrete
        zero (the form then omits that term).
      coefficients: name -> coefficient (already checked): a scalar, a tree
        prefix of params or ``per_leaf``; ``None`` is a concrete zero.
      mask: which leaves to decay.
      anchor: ``None``, ``"init"`` or a pytree like params.
      combine: maps the evaluated coefficients to the scalars ``leaf_fn`` takes
        (e.g. ``m * weight_decay``), once per step and group.
      on_init: called with ``(plan, params leaves)`` at the first ``init`` on
        each params signature (used for warnings).
      public: the coefficients a leaf needs one of to be decayed (and that
        the audit reports); default all.
      side: ``"gradient"`` or ``"update"`` (for the audit).
      multiplier: the update-side multiplier as given (for the audit).
      cautious: whether cautious decay is on (for the audit).
      params_dtype_out: return the update in the params' dtype where it is
        wider than the update's (the prox: ``theta + u`` is then exactly 0).
    """
    mask = check_mask(mask)
    if anchor is not None:
        if isinstance(anchor, str):
            if anchor != "init":
                raise ValueError(
                    f"anchor={anchor!r} is not understood; pass None (decay toward "
                    "0), 'init' (toward the params given to init) or a pytree like "
                    "params."
                )
        elif not jax.tree_util.tree_leaves(anchor):
            raise ValueError(f"anchor={anchor!r} has no array leaves; pass a pytree like params.")
    public = tuple(coefficients) if public is None else public
    x64 = lambda: bool(jax.config.read("jax_enable_x64"))  # noqa: E731
    plans: dict[Any, _plan.Plan] = {}
    by_paths: dict[Any, _plan.Plan] = {}
    lock = threading.RLock()
    checked: set[int] = set()
    warned: set[Any] = set()

    def plan_for(params: PyTree, leaves: list[Any], treedef: Any, at_init: bool) -> _plan.Plan:
        sig = _plan.signature(leaves)
        key = (treedef, sig, x64())
        plan = plans.get(key)
        if plan is not None and not at_init:
            return plan
        with lock:
            if plan is None:
                check_leaves(params, name)
                flat = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_leaf)[0]
                path_key = (tuple(_masks.path_of(k) for k, _ in flat), sig, x64())
                plan = by_paths.get(path_key)
                if plan is None:
                    mask_flat = jax.tree_util.tree_leaves(resolve_mask(mask, params), is_leaf=_is_leaf)
                    plan = _plan.build(params, mask_flat, coefficients, public, combine)
            if at_init:
                # Checked before anything is recorded, so a refused init never
                # leaves the transform looking initialised (a retry re-checks).
                for k, sched, path in _plan.schedules(plan):
                    if id(sched) not in checked:
                        coef.check_schedule(k if len(plan.groups) == 1 else f"{k}[{path!r}]", sched)
                        checked.add(id(sched))
                once = WARNED.get()
                wkey = (name, key)
                # An audit's init (a recording) must not use up the user's
                # once-only warnings: it records nothing as warned.
                if _hook.active():
                    pass
                elif key not in warned and (once is None or wkey not in once):
                    warned.add(key)
                    if once is not None:
                        once.add(wkey)
                    if mask is not None:
                        warn_empty_mask(name, mask, plan, leaves)
                    if on_init is not None:
                        on_init(plan, leaves)
            if plan.cacheable:
                plans[key] = plan
                by_paths[(tuple(lf.path for lf in plan.leaves), sig, x64())] = plan
        return plan

    def init_fn(params: PyTree) -> Any:  # DecayState | optax.EmptyState
        leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=_is_leaf)
        plan = plan_for(params, leaves, treedef, at_init=True)
        if _hook.active():
            _emit(plan, leaves)
        if not plan.needs_count and anchor is None:
            return optax.EmptyState()
        return DecayState(
            count=jnp.zeros([], jnp.int32) if plan.needs_count else None,
            anchor=None if anchor is None else _init_anchor(name, anchor, params, plan),
        )

    def _emit(plan: _plan.Plan, leaves: list[Any]) -> None:
        kind = _anchor_kind(anchor)
        _hook.emit(_hook.TransformPlan(
            name=name, side=side,  # pyright: ignore[reportArgumentType]
            multiplier=multiplier, cautious=cautious,
            leaves=tuple(
                _hook.LeafPlan(
                    path=lf.path, shape=tuple(p.shape), dtype=jnp.dtype(p.dtype).name,
                    decayed=lf.decayed,
                    coefficients={
                        k: 0.0 if plan.groups[lf.group][k] is None else plan.groups[lf.group][k]
                        for k in public
                    } if lf.decayed else {},
                    anchor=kind,  # pyright: ignore[reportArgumentType]
                )
                for lf, p in zip(plan.leaves, leaves, strict=True)
                if not _is_leaf(p) and hasattr(p, "shape")
            ),
        ))

    def update_fn(
        updates: optax.Updates, state: Any, params: optax.Params | None = None
    ) -> tuple[optax.Updates, Any]:
        check_params(params, name)
        p_leaves, p_def = jax.tree_util.tree_flatten(params, is_leaf=_is_leaf)
        plan = plan_for(params, p_leaves, p_def, at_init=False)
        stateless = not plan.needs_count and anchor is None
        if not stateless:
            _check_state(name, state, plan, anchor)
        u_leaves, u_def = jax.tree_util.tree_flatten(updates, is_leaf=_is_leaf)
        if u_def != p_def:
            raise _structure_error(
                "updates", updates, params, "updates and params must be trees of the same structure."
            )
        a_leaves = (
            _anchor_leaves(name, state.anchor, params, p_leaves, p_def, plan)
            if anchor is not None else None
        )
        count = None if stateless else state.count
        step: dict[Any, Any] = {}
        out = []
        for i, (u, p, lf) in enumerate(zip(u_leaves, p_leaves, plan.leaves, strict=True)):
            if not lf.decayed or _is_leaf(u):
                out.append(u)
                continue
            if getattr(u, "shape", None) != p.shape:
                raise ValueError(
                    f"{name}: the update at {jax.tree_util.keystr(lf.keypath)} has shape "
                    f"{getattr(u, 'shape', type(u).__name__)} but the params leaf has "
                    f"shape {p.shape}; updates and params must have the same shapes "
                    "(broadcasting would silently change the update's shape)."
                )
            ud = jnp.dtype(u.dtype)
            if not jnp.issubdtype(ud, jnp.inexact):
                out.append(u)
                continue
            wide = lf.compute or (ud if p.dtype == ud else jnp.promote_types(ud, p.dtype))
            if jnp.issubdtype(wide, jnp.complexfloating) and not jnp.issubdtype(ud, jnp.complexfloating):
                raise ValueError(
                    f"{name}: the update at {jax.tree_util.keystr(lf.keypath)} is real "
                    f"({ud.name}) but the params leaf is complex ({jnp.dtype(p.dtype).name}); "
                    "the decay's imaginary part would be dropped. Give complex updates "
                    "for complex params."
                )
            a = None if a_leaves is None else a_leaves[i]
            res = leaf_fn(
                u if ud == wide else u.astype(wide),
                p if p.dtype == wide else p.astype(wide),
                None if a is None else (a if a.dtype == wide else a.astype(wide)),
                **plan.scalars(lf.group, wide, combine, count, step),
            )
            keep = params_dtype_out and wide == p.dtype
            out.append(res if keep or res.dtype == ud else res.astype(ud))
        new_updates = u_def.unflatten(out)
        if stateless:
            return new_updates, state
        new_count = jnp.asarray(optax.safe_increment(state.count)) if plan.needs_count else state.count
        return new_updates, DecayState(count=new_count, anchor=state.anchor)

    return optax.GradientTransformation(init_fn, update_fn)


def _check_state(name: str, state: Any, plan: _plan.Plan, anchor: Any) -> None:
    expected = (
        f"DecayState(count={'int32 array' if plan.needs_count else 'None'}, "
        f"anchor={'params-like tree' if anchor is not None else 'None'})"
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


def _anchor_leaves(
    name: str, tree: Any, params: Any, p_leaves: list[Any], p_def: Any, plan: _plan.Plan
) -> list[Any]:
    """The state's anchor leaves, checked against the plan: an anchor where
    the plan decays, of the params' shape; none where it does not."""
    leaves, a_def = jax.tree_util.tree_flatten(tree, is_leaf=_is_leaf)
    if a_def != p_def:
        raise _structure_error(
            "state.anchor", tree, params,
            "The state was built for other params (or another mask); rebuild it "
            "with this transform's init.",
        )
    for lf, a, p in zip(plan.leaves, leaves, p_leaves, strict=True):
        where = jax.tree_util.keystr(lf.keypath)
        if lf.decayed and _is_leaf(a):
            raise ValueError(
                f"{name}: state.anchor has no entry at {where}, which the mask decays: "
                "state built with another mask? Decaying it toward 0 instead would "
                "be silently wrong; rebuild the state with this transform's init."
            )
        if not lf.decayed and not _is_leaf(a):
            raise ValueError(
                f"{name}: state.anchor has an entry at {where}, which this transform "
                "does not decay: state built with another mask? Rebuild the state "
                "with this transform's init."
            )
        if lf.decayed and getattr(a, "shape", None) != p.shape:
            raise ValueError(
                f"{name}: state.anchor at {where} has shape {getattr(a, 'shape', None)} "
                f"but the params leaf has shape {p.shape}: state restored for other "
                "params? Rebuild the state with this transform's init."
            )
    return leaves


def warn_empty_mask(name: str, mask: Any, plan: _plan.Plan, leaves: list[Any]) -> None:
    """Warns when a mask selects none of the float leaves: the decay is off.

    The classic silent bug: ``masks.include("weight")`` on params whose
    matrices are called ``kernel``.
    """
    floats = [lf.masked_in for lf, p in zip(plan.leaves, leaves, strict=True) if is_decayable(p)]
    if floats and not any(floats):
        warnings.warn(
            f"{name}: mask={mask!r} selects none of the {len(floats)} float "
            "params leaves, so this transform decays nothing. Check the mask "
            "against the paths ([decaytx.masks.path_of(k) for k, _ in "
            "jax.tree_util.tree_flatten_with_path(params)[0]]); "
            "if no decay is intended, leave the transform out.",
            DecayWarning,
            stacklevel=4,
        )


def warn_step_decay(name: str, rates: list[tuple[Any, float | None, str]]) -> None:
    """The two init-time warnings of an update-side form.

    ``rates`` holds ``(dtype, m * lambda, path)`` for each decayed leaf, the
    largest per-step factor (``None`` when it is not concrete) and the leaf's
    "/" path, so the warning can name the leaves it is about. A factor >= 1 flips
    the sign of every decayed weight. A factor of at most a quarter of the
    dtype's machine epsilon moves no weight of that dtype at all: for any x,
    ``x - rate * x`` rounds back to ``x`` (half an ulp of x is at least
    ``eps/4 * |x|``), so the decay is silently lost.
    """
    known = [(d, r, path) for d, r, path in rates if r is not None]
    if not known:
        return
    top = max(r for _, r, _ in known)
    if top >= 1.0:
        warnings.warn(
            f"{name}: the per-step decay factor m*lambda = {top:g} is >= 1, so "
            "each step flips the sign of every decayed weight. Lower "
            "weight_decay or the learning_rate multiplier so that m*lambda << 1.",
            DecayWarning,
            stacklevel=4,
        )
    # The factor as the update computes it: f32, then cast to the leaf's real
    # dtype (a bf16 factor just above eps/4 rounds down onto it).
    with np.errstate(over="ignore"):  # a factor beyond f16's range casts to inf: not lost
        lost_leaves = [
            (d, r, path) for d, r, path in known
            if r != 0.0
            and float(np.asarray(np.float32(r), dtype=jnp.finfo(d).dtype)) <= float(jnp.finfo(d).eps) / 4
        ]
    lost = sorted({str(jnp.dtype(d)) for d, _, _ in lost_leaves})
    if lost:
        low = [r for _, r, _ in lost_leaves]
        paths = [path or "<root>" for _, _, path in lost_leaves]
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        warnings.warn(
            f"{name}: the per-step decay factor m*lambda = {max(low):g} is below the "
            f"resolution of {', '.join(lost)} params ({shown}): x - m*lambda*x rounds back "
            "to x, so the decay is silently lost. "
            + (
                "Keep float32 master weights (apply updates to an f32 copy), or "
                "raise weight_decay."
                if any(jnp.finfo(d).bits < 32 for d in lost)
                # f32/f64 params: there is no wider copy to suggest; with noisy
                # updates the decay still survives on average through rounding.
                else "Raise weight_decay, or keep float64 master weights; with "
                "noisy updates the decay survives only on average, through rounding."
            ),
            DecayWarning,
            stacklevel=4,
        )


def identity() -> optax.GradientTransformation:
    """The transform of a concrete zero coefficient: no state, no ops."""
    return optax.identity()
