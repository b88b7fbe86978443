"""Masks resolved inside ``jax.shard_map``, where params have per-shard shapes.

Inside ``shard_map`` (manual mesh axes) every array has its per-shard shape,
and which dimension of it is split cannot be seen from inside: a leaf of
global shape ``(d, 4)`` split four ways is a ``(d, 1)`` there, and
``masks.matrices()`` would stop decaying it. A mask whose decision depends on
sizes is therefore refused there, with how to decide it on the global shapes
instead; masks that read paths, ranks or dtypes only are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax

from decaytx import _trees


def manual_axes() -> tuple[tuple[str, ...], int]:
    """The manual mesh axes in effect (inside ``shard_map``) and their total size."""
    getter = getattr(jax.sharding, "get_abstract_mesh", None)
    mesh: Any = getter() if getter is not None else None
    axes: tuple[str, ...] = tuple(getattr(mesh, "manual_axes", None) or ())
    if not axes:
        return (), 1
    shape: dict[str, int] = dict(getattr(mesh, "shape", None) or {})
    return axes, math.prod(int(shape.get(a, 1)) for a in axes)


def _grown(params: Any, n: int) -> Any:
    """params with every dimension multiplied by ``n`` (abstract leaves)."""
    def grow(x: Any) -> Any:
        if _trees.is_empty(x) or not hasattr(x, "shape") or not hasattr(x, "dtype"):
            return x
        return jax.ShapeDtypeStruct(tuple(int(d) * n for d in x.shape), x.dtype)
    return jax.tree.map(grow, params, is_leaf=_trees.is_empty)


def refuse_per_shard_decision(mask: Any, params: Any, decided: Any,
                              resolve: Callable[[Any], Any]) -> None:
    """Raises when a callable mask is resolved inside ``shard_map`` and its
    decision depends on sizes.

    ``decided`` is the mask resolved on ``params`` (per-shard shapes);
    ``resolve(p)`` resolves it on other params. The mask is resolved again on
    params whose every dimension is ``n`` times larger (``n``: the manual
    axes' total size, the largest the global shape can be); a decision that
    changes could change between the per-shard and the global shapes.
    """
    axes, n = manual_axes()
    if n <= 1:
        return
    try:
        with jax.ensure_compile_time_eval():
            other = resolve(_grown(params, n))
    except Exception:  # noqa: BLE001 - a mask that cannot read abstract leaves reads values
        return  # (refused elsewhere as traced); nothing to compare
    a = _trees.flatten_with_path(decided)
    b = _trees.flatten(other)[0]
    differ = [(k, x) for (k, x), y in zip(a, b, strict=True) if bool(x) != bool(y)]
    if not differ:
        return
    p_leaves = _trees.flatten(params)[0]
    shapes = {_trees.path_of(k): getattr(p, "shape", None)
              for (k, _), p in zip(a, p_leaves, strict=True)}
    k, x = differ[0]
    path = _trees.path_of(k)
    raise ValueError(
        f"mask={mask!r} is resolved inside jax.shard_map (manual mesh axes {list(axes)}), "
        f"where params have per-shard shapes, and its decision depends on sizes: the leaf "
        f"{path!r} of per-shard shape {tuple(shapes[path] or ())} is "
        f"{'decayed' if x else 'not decayed'}, but would {'not ' if x else ''}be if its global "
        "shape were larger; the global shape cannot be seen from inside shard_map. Decide on the "
        "global shapes: call init outside shard_map and pass a mask computed there as a "
        "tree of bools (mask=decaytx.masks.matrices()(params), with the global params), "
        "or use a mask that reads only paths or ranks (masks.include/exclude, "
        "masks.ndim_at_least)."
    )


def refuse_per_shard_coefficient(name: str, fn: Callable[[str, Any], Any], path: str,
                                 leaf: Any, value: Any) -> None:
    """Raises when ``per_leaf(fn)`` is evaluated inside ``shard_map`` and its
    coefficient for ``leaf`` depends on sizes (as for masks, above)."""
    axes, n = manual_axes()
    if n <= 1 or not hasattr(leaf, "shape"):
        return
    try:
        with jax.ensure_compile_time_eval():
            other = fn(path, _grown(leaf, n))
        same = float(other) == float(value)  # schedules are not compared
    except Exception:  # noqa: BLE001 - not numbers: nothing to say
        return
    if same:
        return
    raise ValueError(
        f"{name}=per_leaf(...) is evaluated inside jax.shard_map (manual mesh axes "
        f"{list(axes)}), where params have per-shard shapes, and its coefficient depends "
        f"on sizes: for {path!r} of per-shard shape {tuple(leaf.shape)} it gives {value!r}, "
        f"but {other!r} for a larger global shape, which cannot be seen from inside "
        "shard_map. Call init outside shard_map, or give a coefficient tree computed "
        "there on the global params (or a rule that reads only paths or ranks)."
    )
