"""Coefficient trees (param groups): one coefficient per params leaf.

Every coefficient argument (``weight_decay``, ``l1``, ``l2``) is a scalar
(a float, a scalar array, a schedule), a pytree of scalars that is a prefix of
params, or :func:`per_leaf`. This module checks them at construction and
resolves them, at ``init``, into one scalar coefficient per params leaf; the
machinery in ``_transform`` then treats each distinct set of coefficients as one
group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from decaytx import _coefficients as coef
from decaytx import _shard_map, _trees
from decaytx._trees import path_of


class PerLeaf:
    """A coefficient given as ``fn(path, leaf)``, evaluated at ``init``.

    ``then``: applied to each coefficient ``fn`` gives, after the abstract
    evaluation (``lr_multiplier`` of a per-leaf rate searches each
    schedule's peak on concrete values).
    """

    def __init__(self, fn: Callable[[str, Any], Any], then: Callable[[Any], Any] | None = None,
                 bind: Callable[[list[str]], Callable[[str, Any], Any]] | None = None) -> None:
        self.fn = fn
        self.then = then
        self.bind = bind  # paths of every params leaf -> the rule (a rule that needs them all)

    def __repr__(self) -> str:
        return f"decaytx.per_leaf({getattr(self.fn, '__name__', self.fn)!s})"


def per_leaf(fn: Callable[[str, Any], Any]) -> PerLeaf:
    r"""A coefficient computed for each params leaf from its path, shape and dtype.

    .. math::
      \lambda_i = f(\mathrm{path}_i, \mathrm{shape}_i, \mathrm{dtype}_i)

    ``fn`` is called once per params leaf at ``init`` with the leaf's
    "/"-joined path (as masks see it, :func:`decaytx.masks.path_of`) and the
    leaf; it returns the leaf's coefficient: a non-negative float, a scalar
    array or a schedule. A leaf whose coefficient is a concrete 0 is left
    alone (no ops, no state); schedules share the transform's one step count.

    ``fn`` may use the path and the leaf's shape, ndim and dtype only, never
    its values: it is called with the values hidden (an abstract array of the
    leaf's shape and dtype), eagerly as under ``jax.jit``, so a rule that reads
    them (``float(x.sum())``, ``x.max() > 0``) raises the same ``TypeError``
    in both cases instead of working eagerly and failing under ``jit``.

    Args:
      fn: ``fn(path: str, leaf) -> coefficient``, from the path, shape and
        dtype only.

    Returns:
      A coefficient accepted by every decaytx transform.

    Examples:
      >>> import jax, jax.numpy as jnp, decaytx
      >>> wd = decaytx.per_leaf(
      ...     lambda path, x: 0.0 if x.ndim < 2 else (0.01 if "embed" in path else 0.1))
      >>> t = decaytx.add_l2_grad(wd)
      >>> params = {"embed": jnp.ones((2, 2)), "w": jnp.ones((2, 2)), "b": jnp.ones(2)}
      >>> u, _ = t.update(jax.tree.map(jnp.zeros_like, params), t.init(params), params)
      >>> [round(float(u[k].ravel()[0]), 6) for k in ("embed", "w", "b")]
      [0.01, 0.1, 0.0]

    References:
      PyTorch `per-parameter options
      <https://pytorch.org/docs/stable/optim.html#per-parameter-options>`_
      (param groups), which a coefficient tree or ``per_leaf`` expresses.
    """
    if not callable(fn):
        raise TypeError(f"per_leaf(fn={fn!r}): fn must be a callable fn(path: str, leaf) -> coefficient.")
    return PerLeaf(fn)


def is_tree(value: Any) -> bool:
    """Whether a coefficient is a tree (or ``per_leaf``) rather than a scalar.

    A pytree with children is a tree even when it is callable (an Equinox
    module of floats), so it is never mistaken for a schedule.
    """
    if value is None or isinstance(value, PerLeaf):
        return isinstance(value, PerLeaf)
    if isinstance(value, jax.tree_util.Partial):
        return False  # a function with bound arguments: a schedule, not a tree
    return not jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value))


def _leaf_name(name: str, path: str) -> str:
    return f"{name}[{_trees.shown(path)}]"


def check(name: str, value: Any) -> Any:
    """``coef.check`` for a coefficient that may be a tree or ``per_leaf``."""
    if isinstance(value, PerLeaf):
        return value
    if is_tree(value):
        for keypath, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
            coef.check(_leaf_name(name, path_of(keypath)), leaf)
        return value
    return coef.check(name, value)


def is_zero(value: Any) -> bool:
    """Whether every coefficient ``value`` gives is a concrete zero."""
    if value is None:
        return True
    if isinstance(value, PerLeaf):
        return False
    if is_tree(value):
        leaves = jax.tree_util.tree_leaves(value)
        return bool(leaves) and all(coef.is_zero(v) for v in leaves)
    return coef.is_zero(value)


def _is_leaf(x: Any) -> bool:
    return _trees.is_empty(x)


prefix_mismatch = _trees.prefix_mismatch


def resolve(name: str, value: Any, params: Any, flat: list[tuple[Any, Any]]) -> list[Any]:
    """One scalar coefficient (``None`` for a concrete zero) per params leaf.

    ``flat`` is ``tree_flatten_with_path(params, is_leaf=None-or-MaskedNode)``.
    """
    def scalar(c: Any) -> Any:
        return None if c is None or coef.is_zero(c) else c

    if isinstance(value, PerLeaf):
        # Called with each leaf's values hidden, eagerly as under jit: a rule
        # on shapes and dtypes gives concrete numbers, one on values is refused.
        paths = [path_of(k) for k, _ in flat]
        fn = value.fn if value.bind is None else value.bind(
            [p for p, (_, x) in zip(paths, flat, strict=True) if not _is_leaf(x)])
        got = _trees.abstractly(lambda xs: [
            None if _is_leaf(x) else fn(p, x) for p, x in zip(paths, xs, strict=True)
        ], [x for _, x in flat], f"{name}={value!r}")
        out = []
        for path, leaf, c in zip(paths, [x for _, x in flat], got, strict=True):
            if _is_leaf(leaf):
                out.append(None)
                continue
            _shard_map.refuse_per_shard_coefficient(name, value.fn, path, leaf, c)
            if is_tree(c):
                raise TypeError(
                    f"per_leaf: fn({path!r}, leaf) returned {c!r} for {name}; it must "
                    "return one coefficient (a float, a scalar array or a schedule) "
                    f"computed from the path, shape or dtype, not a tree."
                )
            c = coef.check(_leaf_name(name, path), c)
            out.append(scalar(c if value.then is None or scalar(c) is None else value.then(c)))
        return out
    if not is_tree(value):
        return [scalar(value)] * len(flat)

    def broadcast(c: Any, sub: Any) -> Any:
        return jax.tree.map(lambda _: _Box(c), sub, is_leaf=_is_leaf)

    try:
        full = jax.tree.map(broadcast, value, params)
    except (ValueError, TypeError) as e:
        aligned = _trees.align_by_path(
            value, params, _is_coef_leaf, what=f"{name}: the coefficient tree",
            fix="Give one coefficient per subtree of params (e.g. {'linear1': 0.1, "
            "'linear2': {'kernel': 0.1, 'bias': 0.0}}), or use decaytx.per_leaf.")
        if aligned is not None:
            full = jax.tree.map(broadcast, aligned, params)
        else:
            raise ValueError(
                f"{name}: the coefficient tree is not a prefix of params: "
                f"{prefix_mismatch(value, params, lambda x: jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(x)))}. "
                "Give one coefficient per subtree of params (e.g. {'dense': {'kernel': 0.1, "
                "'bias': 0.0}}), or use decaytx.per_leaf(lambda path, leaf: ...)."
            ) from e
    boxes = jax.tree_util.tree_leaves(full, is_leaf=lambda x: isinstance(x, _Box) or _is_leaf(x))
    if len(boxes) != len(flat):  # pragma: no cover - defensive
        raise ValueError(f"{name}: the coefficient tree does not line up with params.")
    return [scalar(b.value) if isinstance(b, _Box) else None for b in boxes]


def _is_coef_leaf(x: Any) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(x))


class _Box:
    """Wraps a coefficient so that broadcasting it keeps it a single leaf."""

    def __init__(self, value: Any) -> None:
        self.value = value
