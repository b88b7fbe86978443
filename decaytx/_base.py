"""The machinery every decay form shares.

A form is a leaf function ``leaf_fn(u, p, a, **coefficients) -> u`` plus its
coefficients. :func:`decay_transform` turns it into an
``optax.GradientTransformation`` and takes care, in one place, of

* the step count (kept only when a coefficient is a schedule, advanced once per
  ``update`` and saturating at the int32 limit, like optax's own);
* masks (a pytree, a prefix of params, or a callable of params);
* anchors (``None``, ``"init"`` or a pytree), stored in the state;
* leaves the decay never touches: ``None``, ``optax.MaskedNode``, integer and
  boolean arrays, and leaves masked out;
* dtypes: a coefficient is cast to the real dtype of each leaf, and the result
  is cast back to the update's dtype, so every leaf keeps its dtype;
* the error for ``update`` without params.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _coefficients as coef
from decaytx import _hook  # PROVISIONAL(audit)

PyTree = Any
MaskOrFn = Any  # a pytree of bools, a prefix of params, or a callable of params


class DecayState(NamedTuple):
    """State of a decay transform that needs one.

    Attributes:
      count: int32 step count, present when a coefficient is a schedule.
      anchor: the anchor ``a`` (masked params-like tree, ``optax.MaskedNode``
        where not decayed), present when ``anchor`` is not ``None``.
    """

    count: jax.Array | None  # pyright: ignore[reportIncompatibleMethodOverride]
    anchor: PyTree | None


def _is_leaf(x: Any) -> bool:
    return x is None or isinstance(x, optax.MaskedNode)


def is_decayable(x: Any) -> bool:
    """Whether a leaf is an inexact (float or complex) array."""
    if _is_leaf(x):
        return False
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


def _paths(tree: PyTree) -> list[str]:
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_leaf)[0]
    return [jax.tree_util.keystr(path) for path, _ in leaves]


def _structure_error(what: str, tree: PyTree, params: PyTree, fix: str) -> ValueError:
    mine, theirs = set(_paths(tree)), set(_paths(params))
    extra = sorted(mine - theirs)[:5]
    missing = sorted(theirs - mine)[:5]
    detail = []
    if missing:
        detail.append(f"params paths missing from {what}: {missing}")
    if extra:
        detail.append(f"{what} paths not in params: {extra}")
    if not detail:
        detail.append(
            f"{what} structure {jax.tree_util.tree_structure(tree, is_leaf=_is_leaf)} "
            f"!= params structure {jax.tree_util.tree_structure(params, is_leaf=_is_leaf)}"
        )
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
    if mask is None or is_mask_fn(mask):
        return mask
    if isinstance(mask, (bool, np.bool_, jax.Array, np.ndarray)):
        # A bare bool is what optax.inject_hyperparams makes of a callable
        # mask (mask(step_count) -> False): refuse it rather than guess.
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
                "jax.tree.map(lambda p: p.ndim >= 2, params) or use "
                "decaytx.masks."
            )
    return mask


def resolve_mask(mask: MaskOrFn, params: PyTree) -> PyTree:
    """A full tree of Python bools, one per params leaf."""
    if mask is None:
        return jax.tree.map(lambda _: True, params, is_leaf=_is_leaf)
    def broadcast(m: Any, sub: Any) -> Any:
        return jax.tree.map(lambda _: bool(m), sub, is_leaf=_is_leaf)

    if is_mask_fn(mask):
        mask = mask(params)
        if isinstance(mask, (bool, np.bool_)):
            # A callable's verdict on params that are a single array (e.g.
            # masks.ndim_at_least(2)(w)): a bool prefix, not the trap below.
            return broadcast(mask, params)
    check_mask(mask)

    try:
        return jax.tree.map(broadcast, mask, params, is_leaf=lambda x: isinstance(x, (bool, np.bool_)))
    except (ValueError, TypeError) as e:
        raise _structure_error(
            "mask", mask, params,
            "Pass a tree with the structure of params (or a prefix of it) whose "
            "leaves are bools, or a callable of params.",
        ) from e


def _init_anchor(anchor: Any, params: PyTree, mask: PyTree) -> PyTree:
    if isinstance(anchor, str):
        if anchor != "init":
            raise ValueError(
                f"anchor={anchor!r} is not understood; pass None (decay toward "
                "0), 'init' (toward the params given to init) or a pytree like "
                "params."
            )
        anchor = params
    elif jax.tree_util.tree_structure(anchor, is_leaf=_is_leaf) != jax.tree_util.tree_structure(
        params, is_leaf=_is_leaf
    ):
        raise _structure_error(
            "anchor", anchor, params,
            "Pass a pytree with exactly the structure of params (e.g. a copy "
            "of the pretrained params), or anchor='init'.",
        )

    def take(path: Any, p: Any, a: Any, m: bool) -> Any:
        if not (m and is_decayable(p)):
            return optax.MaskedNode()
        a = jnp.asarray(a)
        if a.shape != p.shape:
            raise ValueError(
                f"anchor leaf at {jax.tree_util.keystr(path)} has shape {a.shape} but "
                f"the params leaf has shape {p.shape}; pass an anchor with the "
                "shapes of params."
            )
        # A copy that lives in the state, in the params' dtype.
        return jnp.array(a, dtype=p.dtype, copy=True)

    return jax.tree_util.tree_map_with_path(take, params, anchor, mask, is_leaf=_is_leaf)


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


def decay_transform(
    name: str,
    leaf_fn: Callable[..., jax.Array],
    coefficients: dict[str, Any],
    *,
    mask: MaskOrFn = None,
    anchor: Any = None,
    combine: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_init: Callable[[PyTree, PyTree], None] | None = None,
    # PROVISIONAL(audit): what the init-time plan needs; coreA's _base replaces this.
    side: str = "gradient",
    multiplier: Any = None,
    cautious: bool = False,
) -> optax.GradientTransformation:
    """Builds a decay transform from the maths of one leaf.

    Args:
      name: the public name of the form, used in error messages.
      leaf_fn: ``leaf_fn(u, p, a, **scalars) -> u``; ``a`` is ``None`` without
        an anchor; a scalar is ``None`` where its coefficient is a concrete
        zero (the form then omits that term).
      coefficients: name -> coefficient (already checked). ``None`` values are
        concrete zeros.
      mask: which leaves to decay.
      anchor: ``None``, ``"init"`` or a pytree like params.
      combine: maps the evaluated coefficients to the scalars ``leaf_fn`` takes
        (e.g. ``m * weight_decay``), once per step rather than once per leaf.
      on_init: called once with ``(params, mask_tree)`` at the first ``init``
        (used for warnings).
    """
    mask = check_mask(mask)
    if anchor is not None and not isinstance(anchor, str):
        anchor_leaves = jax.tree_util.tree_leaves(anchor)
        if not anchor_leaves:
            raise ValueError(f"anchor={anchor!r} has no array leaves; pass a pytree like params.")
    needs_count = any(coef.is_schedule(v) for v in coefficients.values())
    stateless = not needs_count and anchor is None
    initialised = []

    def init_fn(params: PyTree) -> Any:  # DecayState | optax.EmptyState
        check_leaves(params, name)
        mask_tree = resolve_mask(mask, params)
        if _hook.active():  # PROVISIONAL(audit): coreA's init emits the plan it decides.
            _hook.emit(_provisional_plan(
                name, side, multiplier, cautious, coefficients, anchor, params, mask_tree))
        if not initialised:
            if not _hook.active():  # PROVISIONAL(audit): an audit leaves the once-only warnings to the user's init
                initialised.append(True)
            for k, v in coefficients.items():
                if coef.is_schedule(v):
                    coef.check_schedule(k, v)
            if mask is not None:
                warn_empty_mask(name, mask, params, mask_tree)
            if on_init is not None:
                on_init(params, mask_tree)
        if stateless:
            return optax.EmptyState()
        return DecayState(
            count=jnp.zeros([], jnp.int32) if needs_count else None,
            anchor=None if anchor is None else _init_anchor(anchor, params, mask_tree),
        )

    def update_fn(
        updates: optax.Updates, state: Any, params: optax.Params | None = None
    ) -> tuple[optax.Updates, Any]:
        check_params(params, name)
        check_leaves(params, name)
        count = None if stateless else state.count
        values = {
            k: None if v is None else coef.value_at(v, count)
            for k, v in coefficients.items()
        }
        scalars = combine(values) if combine is not None else values
        mask_tree = resolve_mask(mask, params)
        anchors = (
            state.anchor
            if not stateless and state.anchor is not None
            else jax.tree.map(lambda _: None, params, is_leaf=_is_leaf)
        )

        def leaf(path: Any, u: Any, p: Any, m: bool, a: Any) -> Any:
            if u is None or isinstance(u, optax.MaskedNode) or not m or not is_decayable(p):
                return u
            if getattr(u, "shape", None) != p.shape:
                raise ValueError(
                    f"{name}: the update at {jax.tree_util.keystr(path)} has shape "
                    f"{getattr(u, 'shape', type(u).__name__)} but the params leaf has "
                    f"shape {p.shape}; updates and params must have the same shapes "
                    "(broadcasting would silently change the update's shape)."
                )
            if not jnp.issubdtype(jnp.asarray(u).dtype, jnp.inexact):
                return u
            cast = {
                k: None if s is None else coef.cast_for(s, u)
                for k, s in scalars.items()
            }
            if isinstance(a, optax.MaskedNode):
                a = None
            out = leaf_fn(u, p.astype(u.dtype), None if a is None else a.astype(u.dtype), **cast)
            return out.astype(u.dtype)

        try:
            new_updates = jax.tree_util.tree_map_with_path(
                leaf, updates, params, mask_tree, anchors, is_leaf=_is_leaf
            )
        except ValueError as e:
            if "structure" not in str(e) and "Custom node" not in str(e):
                raise
            raise _structure_error(
                "updates", updates, params,
                "updates and params must be trees of the same structure.",
            ) from e
        if stateless:
            return new_updates, state
        new_count = jnp.asarray(optax.safe_increment(state.count)) if needs_count else None
        return new_updates, DecayState(count=new_count, anchor=state.anchor)

    return optax.GradientTransformation(init_fn, update_fn)


# PROVISIONAL(audit): begin. coreA's _base builds the plan from its own per-leaf
# decisions and uses masks.path_of; this mirrors today's scalar coefficients.
def _provisional_path(keypath: Any) -> str:
    names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in keypath]
    if len(names) > 1 and isinstance(keypath[-1], jax.tree_util.GetAttrKey) and names[-1] == "value":
        names = names[:-1]  # a Flax NNX Variable's value
    return "/".join(names)


def _provisional_plan(
    name: str, side: Any, multiplier: Any, cautious: bool,
    coefficients: dict[str, Any], anchor: Any, params: PyTree, mask_tree: PyTree,
) -> _hook.TransformPlan:
    kind = "zero" if anchor is None else ("init" if isinstance(anchor, str) else "tree")
    lams = {k: 0.0 if v is None else v for k, v in coefficients.items() if k != "learning_rate"}
    flat = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_leaf)[0]
    masks_ = jax.tree_util.tree_leaves(mask_tree, is_leaf=_is_leaf)
    leaves = tuple(
        _hook.LeafPlan(
            path=_provisional_path(path), shape=tuple(p.shape), dtype=str(jnp.dtype(p.dtype)),
            decayed=bool(m and is_decayable(p)),
            coefficients=dict(lams) if m and is_decayable(p) else {}, anchor=kind,
        )
        for (path, p), m in zip(flat, masks_, strict=True)
        if not _is_leaf(p) and hasattr(p, "dtype")
    )
    return _hook.TransformPlan(name, side, multiplier, cautious, leaves)  # type: ignore[arg-type]
# PROVISIONAL(audit): end.


class DecayWarning(UserWarning):
    """A decay setting that is legal but almost certainly not what was meant."""


def _with_mask(params: PyTree, mask_tree: PyTree) -> list[tuple[Any, bool]]:
    """(params leaf, mask bool) pairs; ``mask_tree`` comes from :func:`resolve_mask`."""
    return list(zip(
        jax.tree_util.tree_leaves(params, is_leaf=_is_leaf),
        jax.tree_util.tree_leaves(mask_tree, is_leaf=_is_leaf),
        strict=True,
    ))


def warn_empty_mask(name: str, mask: Any, params: PyTree, mask_tree: PyTree) -> None:
    """Warns when a mask selects none of the float leaves: the decay is off.

    The classic silent bug: ``masks.include("weight")`` on params whose
    matrices are called ``kernel``.
    """
    floats = [m for p, m in _with_mask(params, mask_tree) if is_decayable(p)]
    if floats and not any(floats):
        warnings.warn(
            f"{name}: mask={mask!r} selects none of the {len(floats)} float "
            "params leaves, so this transform decays nothing. Check the mask "
            "against the paths (jax.tree_util.tree_flatten_with_path(params)); "
            "if no decay is intended, leave the transform out.",
            DecayWarning,
            stacklevel=3,
        )


def warn_step_decay(name: str, rate: float | None, params: PyTree, mask_tree: PyTree) -> None:
    """The two init-time warnings of an update-side form.

    ``rate`` is the largest per-step factor ``m * lambda`` (``None`` when it is
    not concrete). A factor >= 1 flips the sign of every decayed weight. A
    factor of at most a quarter of the dtype's machine epsilon moves no weight
    of that dtype at all: for any x, ``x - rate * x`` rounds back to ``x``
    (half an ulp of x is at least ``eps/4 * |x|``), so the decay is silently lost.
    """
    if rate is None:
        return
    if rate >= 1.0:
        warnings.warn(
            f"{name}: the per-step decay factor m*lambda = {rate:g} is >= 1, so "
            "each step flips the sign of every decayed weight. Lower "
            "weight_decay or the learning_rate multiplier so that m*lambda << 1.",
            DecayWarning,
            stacklevel=3,
        )
    if rate == 0.0:
        return
    lost = sorted({
        str(jnp.dtype(p.dtype))
        for p, m in _with_mask(params, mask_tree)
        # The factor as the update computes it: f32, then cast to the leaf's
        # real dtype (a bf16 factor just above eps/4 rounds down onto it).
        if m and is_decayable(p)
        and float(np.asarray(np.float32(rate), dtype=jnp.finfo(p.dtype).dtype))
        <= float(jnp.finfo(p.dtype).eps) / 4
    })
    if lost:
        warnings.warn(
            f"{name}: the per-step decay factor m*lambda = {rate:g} is below the "
            f"resolution of {', '.join(lost)} params: x - m*lambda*x rounds back "
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
            stacklevel=3,
        )


def identity() -> optax.GradientTransformation:
    """The transform of a concrete zero coefficient: no state, no ops."""
    return optax.identity()
