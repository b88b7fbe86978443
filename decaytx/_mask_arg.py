"""How ``mask=`` is read: checked at construction, resolved at ``init``.

A mask is a pytree of bools (or a prefix of params, as ``optax.masked``
takes) or a callable of params returning one (every :mod:`decaytx.masks`
rule). :func:`check` refuses what cannot be right before anything is traced;
:func:`resolve` turns a mask into one Python bool per params leaf.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from decaytx import _trees
from decaytx import masks as _masks

PyTree = Any

_TRAP = (
    "mask= received a bare {value!r} where a pytree of bools or a callable of "
    "params was expected. This is what optax.inject_hyperparams makes of a "
    "callable mask: it treats it as a schedule, calls it with the step count "
    "and would silently turn decay off (optax issues #57, #1373). Use "
    "decaytx.inject_hyperparams, which keeps mask and anchor static, or pass "
    "static_args=('mask',) to optax.inject_hyperparams. To decay every leaf "
    "pass mask=None; to decay none, leave the transform out."
)


def is_fn(mask: Any) -> bool:
    """Whether ``mask`` is a callable of params rather than a tree of bools.

    A pytree that happens to be callable (an Equinox module of bools, the
    filter spec Equinox users build with ``eqx.tree_at``) is a tree.
    """
    return callable(mask) and jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(mask))


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]


def _check_leaf(leaf: Any) -> None:
    if _is_traced(leaf):
        raise TypeError(
            f"mask= has a traced leaf ({leaf!r}); a mask decides which "
            "leaves are decayed and must be concrete. Keep it static (under "
            "optax.inject_hyperparams use decaytx.inject_hyperparams)."
        )
    if isinstance(leaf, (jax.Array, np.ndarray)) and leaf.shape == () and leaf.dtype == np.bool_:
        return  # a concrete 0-d bool array, as optax.masked accepts
    if not isinstance(leaf, (bool, np.bool_)):
        raise TypeError(
            f"mask= leaves must be Python bools (True = decay), got "
            f"{leaf!r} of type {type(leaf).__name__}; build the mask with "
            "decaytx.masks (e.g. masks.matrices()) or "
            "jax.tree.map(lambda p: p.ndim >= 2, params)."
        )


def check(mask: Any, *, injected: bool = False) -> Any:
    """Rejects masks that cannot be right before anything is traced.

    ``injected``: the factory received its numbers as arrays, as
    ``optax.inject_hyperparams`` passes them; a bare bool mask is then what
    optax made of a callable mask, and the message says so.
    """
    for factory, meant in _masks.FACTORIES.items():
        if mask is factory:
            raise TypeError(
                f"mask=masks.{factory.__name__} is the factory, not a mask: did you mean mask={meant}?"
            )
    if mask is None or is_fn(mask):
        return mask
    if isinstance(mask, (bool, np.bool_, jax.Array, np.ndarray)):
        if injected:
            raise TypeError(_TRAP.format(value=mask))
        raise TypeError(
            f"mask={mask!r} is a bare {type(mask).__name__}; pass mask=None to decay "
            "every leaf, leave the transform out to decay none, or give a pytree "
            "of bools or a callable of params (e.g. decaytx.masks.matrices())."
        )
    for leaf in jax.tree_util.tree_leaves(mask):
        _check_leaf(leaf)
    return mask


def _is_bool(x: Any) -> bool:
    return isinstance(x, (bool, np.bool_)) or (
        isinstance(x, (jax.Array, np.ndarray)) and not _is_traced(x)
        and x.shape == () and x.dtype == np.bool_
    )


def resolve(mask: Any, params: PyTree) -> PyTree:
    """A full tree of Python bools, one per params leaf."""
    if mask is None:
        return jax.tree.map(lambda _: True, params, is_leaf=_trees.is_empty)

    def broadcast(m: Any, sub: Any) -> Any:
        return jax.tree.map(lambda _: bool(m), sub, is_leaf=_trees.is_empty)

    if is_fn(mask):
        # Shapes and dtypes are static: a mask computed from them (even as
        # 0-d jnp bools) is concrete while init or update is traced.
        with jax.ensure_compile_time_eval():
            mask = mask(params)
        if _is_bool(mask):
            # A callable's verdict on params that are a single array (e.g.
            # masks.ndim_at_least(2)(w)): a bool prefix, not the trap.
            return broadcast(mask, params)
    check(mask)
    try:
        return jax.tree.map(broadcast, mask, params, is_leaf=_is_bool)
    except (ValueError, TypeError) as e:
        where = _trees.prefix_mismatch(mask, params, _is_bool)
        if where == "its structure differs from params":
            # No first differing node to name: show the whole-tree comparison.
            detail = str(_trees.structure_error("mask", mask, params, ""))
            where += f" ({detail.split(': ', 1)[1].rstrip('. ')})"
        raise ValueError(
            f"mask does not match params: {where}. Pass a "
            "tree with the structure of params (or a prefix of it) whose leaves "
            "are bools, or a callable of params (e.g. decaytx.masks.matrices())."
        ) from e


def leaves(mask: Any, params: PyTree) -> list[bool]:
    """:func:`resolve`, flattened: one bool per params leaf (empty leaves included)."""
    return jax.tree_util.tree_leaves(resolve(mask, params), is_leaf=_trees.is_empty)
