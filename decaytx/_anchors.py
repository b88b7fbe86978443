"""Anchors: decay toward ``a`` instead of 0.

``anchor=None`` decays toward 0, ``"init"`` toward the params given to
``init``, a pytree toward that tree. The anchor lives in the transform's
state (never in a closure, where it would become a compile-time constant),
one copy per decayed leaf, in the params' dtype and placement.

Under tracing (``jax.eval_shape(opt.init)``, ``init`` inside ``jit``,
``jax.grad`` with respect to the anchor) nothing concrete is read from a
traced value: the checks that need values (finiteness) are skipped, the
others are done by shape and dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _trees

PyTree = Any


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]


def kind(anchor: Any) -> str:
    """``"zero"``, ``"init"`` or ``"tree"`` (for the audit)."""
    return "zero" if anchor is None else ("init" if isinstance(anchor, str) else "tree")


def check(anchor: Any) -> Any:
    """Refuses an ``anchor=`` that cannot be right, at construction."""
    if anchor is None:
        return None
    if isinstance(anchor, str):
        if anchor != "init":
            raise ValueError(
                f"anchor={anchor!r} is not understood; pass None (decay toward "
                "0), 'init' (toward the params given to init) or a pytree like "
                "params."
            )
    elif not jax.tree_util.tree_leaves(anchor):
        raise ValueError(f"anchor={anchor!r} has no array leaves; pass a pytree like params.")
    return anchor


def _leaf(name: str, given: Any, p: Any, where: str) -> jax.Array:
    """One decayed leaf's anchor, checked against its params leaf and placed."""
    if isinstance(given, jax.ShapeDtypeStruct) or _trees.is_empty(given):
        a = None
    else:
        try:
            a = jnp.asarray(given)
        except TypeError:
            a = None
    if a is None:
        raise ValueError(
            f"{name}: anchor has {_trees.describe(given)} at {where}, where params "
            f"has {_trees.describe(p)} that this transform decays; give a concrete array "
            "for every decayed leaf (jax.tree.map(jnp.zeros_like, params) decays toward 0)."
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
    if not _is_traced(a) and not _all_finite(a):
        raise ValueError(
            f"{name}: anchor leaf at {where} has non-finite values (NaN or inf); "
            "every decayed weight would be pulled toward them. Pass a finite anchor."
        )
    # A copy that lives in the state, in the params' dtype and placement.
    return place_like(a, p)


def init(name: str, anchor: Any, params: PyTree, decayed: list[bool]) -> PyTree:
    """The state's anchor: a copy per decayed leaf, ``MaskedNode`` elsewhere."""
    if isinstance(anchor, str):
        anchor = params
    elif jax.tree_util.tree_structure(anchor, is_leaf=_trees.is_empty) != jax.tree_util.tree_structure(
        params, is_leaf=_trees.is_empty
    ):
        anchor = _align(anchor, params)
    flat = _trees.flatten_with_path(params)
    given = _trees.flatten(anchor)[0]
    out = [
        _leaf(name, a, p, _trees.where(k)) if d else optax.MaskedNode()
        for (k, p), a, d in zip(flat, given, decayed, strict=True)
    ]
    return jax.tree_util.tree_unflatten(_trees.flatten(params)[1], out)


def _align(anchor: Any, params: PyTree) -> PyTree:
    """An anchor whose structure differs from params: matched by "/" path
    when params is Flax NNX state (a plain dict of arrays), refused otherwise."""
    fix = ("Pass a pytree with exactly the structure of params (e.g. a copy "
           "of the pretrained params), or anchor='init'.")
    aligned = _trees.align_by_path(anchor, params, _trees.is_empty, what="anchor",
                                   fix=fix, prefix=False)
    if aligned is None:
        raise _trees.structure_error("anchor", anchor, params, fix)
    return aligned


def place_like(a: jax.Array, p: Any) -> jax.Array:
    """A copy of ``a`` in the dtype and sharding of ``p``.

    Concrete params and anchor: moved with ``device_put`` before any
    computation, so an anchor on another device (or mesh) never meets the
    params' mesh inside a jitted op. A traced params leaf or anchor: a copy
    in ``p``'s dtype, resharded only on an explicit-axis mesh (read from the
    abstract type, never from the tracer).
    """
    if isinstance(p, jax.Array) and not _is_traced(p) and not _is_traced(a):
        if not (isinstance(a, jax.Array) and a.sharding.is_equivalent_to(p.sharding, p.ndim)):
            a = jax.device_put(a, p.sharding, may_alias=False)
            return a if a.dtype == p.dtype else a.astype(p.dtype)
        a = jnp.array(a, dtype=p.dtype, copy=True)
        if not _is_traced(a) and not a.sharding.is_equivalent_to(p.sharding, p.ndim):
            a = jax.device_put(a, p.sharding)  # (a copy made while tracing stays where the trace puts it)
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


def state_leaves(name: str, tree: Any, params: Any, keypaths: list[Any], decayed: list[bool],
                 p_leaves: list[Any]) -> list[Any]:
    """The state's anchor leaves, checked against the plan: an anchor where
    the plan decays, of the params' shape; none where it does not."""
    leaves, a_def = _trees.flatten(tree)
    if a_def != _trees.flatten(params)[1]:
        raise _trees.structure_error(
            "state.anchor", tree, params,
            "The state was built for other params (or another mask); rebuild it "
            "with this transform's init.",
        )
    for k, d, a, p in zip(keypaths, decayed, leaves, p_leaves, strict=True):
        at = _trees.where(k)
        if d and _trees.is_empty(a):
            raise ValueError(
                f"{name}: state.anchor has no entry at {at}, which the mask decays: "
                "state built with another mask? Decaying it toward 0 instead would "
                "be silently wrong; rebuild the state with this transform's init."
            )
        if not d and not _trees.is_empty(a):
            raise ValueError(
                f"{name}: state.anchor has an entry at {at}, which this transform "
                "does not decay: state built with another mask? Rebuild the state "
                "with this transform's init."
            )
        if d and getattr(a, "shape", None) != p.shape:
            raise ValueError(
                f"{name}: state.anchor at {at} has shape {getattr(a, 'shape', None)} "
                f"but the params leaf has shape {p.shape}: state restored for other "
                "params? Rebuild the state with this transform's init."
            )
    return leaves
