"""Masks: which parameters to decay.

Each function returns a mask: a callable of params that gives a pytree of
bools (``True`` = decay), usable as ``mask=`` in every decaytx transform and in
``optax.masked``. Any optax-style mask (a pytree of bools, a prefix of params,
or a callable of params) is accepted as well.

Patterns are regular expressions matched with ``re.search`` on a leaf's
"/"-joined path of key names (:func:`path_of`): dict keys, attribute names and
sequence indices, e.g. ``"blocks/0/attn/kernel"``, so ``exclude("bias$")``
means what it says. Flax NNX Variables add a trailing ``value`` key, which is
dropped, so ``init`` on ``nnx.state(model)`` and ``update`` on its pure arrays
see the same paths.

decaytx masks combine with ``&``, ``|`` and ``~``, print what they select and
are picklable (they store patterns, not lambdas).
"""

from __future__ import annotations

import re
from typing import Any

import jax

from decaytx._trees import path_of

__all__ = ["Mask", "exclude", "include", "matrices", "ndim_at_least", "path_of"]


class Mask:
    """A decaytx mask: a rule on (path, leaf), callable on params.

    Subclasses define :meth:`leaf`; ``__call__`` maps it over params.
    ``a & b``, ``a | b`` and ``~a`` build new masks.
    """

    def leaf(self, path: str, leaf: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(
            lambda k, x: bool(self.leaf(path_of(k), x)), params
        )

    def __and__(self, other: Mask) -> Mask:
        return _Binary("&", self, _as_mask(other, "&"))

    def __or__(self, other: Mask) -> Mask:
        return _Binary("|", self, _as_mask(other, "|"))

    def __invert__(self) -> Mask:
        return _Not(self)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), repr(self)))

    def __repr__(self) -> str:
        return f"decaytx.masks.{self._describe()}"

    def _describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _as_mask(other: Any, op: str) -> Mask:
    if not isinstance(other, Mask):
        raise TypeError(
            f"masks: {op} combines decaytx masks, got {other!r}; wrap other rules "
            "with masks.include/exclude/ndim_at_least/matrices."
        )
    return other


class _Ndim(Mask):
    def __init__(self, n: int) -> None:
        self.n = n

    def leaf(self, path: str, leaf: Any) -> bool:
        return getattr(leaf, "ndim", 0) >= self.n

    def _describe(self) -> str:
        return f"ndim_at_least({self.n})"


class _Matrices(Mask):
    def leaf(self, path: str, leaf: Any) -> bool:
        return sum(1 for d in getattr(leaf, "shape", ()) if d > 1) >= 2

    def _describe(self) -> str:
        return "matrices()"


class _Patterns(Mask):
    keep_matches = True

    def __init__(self, patterns: tuple[str, ...], fn: str) -> None:
        self.patterns = patterns
        self.compiled = _compile(patterns, fn)

    def leaf(self, path: str, leaf: Any) -> bool:
        return any(c.search(path) for c in self.compiled) == self.keep_matches

    def _describe(self) -> str:
        name = "include" if self.keep_matches else "exclude"
        return f"{name}({', '.join(repr(p) for p in self.patterns)})"


class _Include(_Patterns):
    keep_matches = True


class _Exclude(_Patterns):
    keep_matches = False


class _Binary(Mask):
    """``a & b`` or ``a | b``: the operator is stored by name, so it pickles."""

    OPS = {"&": all, "|": any}

    def __init__(self, op: str, a: Mask, b: Mask) -> None:
        self.op, self.a, self.b = op, a, b

    def leaf(self, path: str, leaf: Any) -> bool:
        # Short-circuits like ``and``/``or``: b is not asked when a decides.
        return self.OPS[self.op](m.leaf(path, leaf) for m in (self.a, self.b))

    def _describe(self) -> str:
        return f"({self.a._describe()} {self.op} {self.b._describe()})"


class _Not(Mask):
    def __init__(self, a: Mask) -> None:
        self.a = a

    def leaf(self, path: str, leaf: Any) -> bool:
        return not self.a.leaf(path, leaf)

    def _describe(self) -> str:
        return f"~{self.a._describe()}"


def _compile(patterns: tuple[str, ...], fn: str) -> list[re.Pattern[str]]:
    if not patterns:
        raise ValueError(f"masks.{fn}() needs at least one regex pattern, e.g. {fn}('bias', 'scale').")
    compiled = []
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"masks.{fn} pattern {p!r} is not a string; pass regexes such as 'bias'.")
        try:
            compiled.append(re.compile(p))
        except re.error as e:
            raise ValueError(
                f"masks.{fn} pattern {p!r} is not a valid regex: {e}. Pass a valid "
                "regex; re.escape(text) matches text literally."
            ) from e
    return compiled


def ndim_at_least(n: int) -> Mask:
    """Decay leaves with at least ``n`` dimensions (nanoGPT's rule with n=2).

    Matrices and kernels are decayed; vectors are not. A bias stored with a
    size-1 axis (an Equinox ``Conv2d`` bias has shape ``(C, 1, 1)``) has
    ``ndim >= 2`` and IS decayed: :func:`matrices` is the rule that leaves it
    alone with any framework.

    Args:
      n: the minimum number of dimensions.

    Returns:
      A mask (a callable of params returning a pytree of bools).

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
      >>> decaytx.masks.ndim_at_least(2)(params)
      {'b': False, 'w': True}

    References:
      Karpathy, `nanoGPT <https://github.com/karpathy/nanoGPT>`_,
      ``configure_optimizers`` in ``model.py``: "all weight tensors in
      matmuls + embeddings decay, all biases and layernorms don't".
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"masks.ndim_at_least(n={n!r}): n must be a non-negative int, e.g. 2.")
    return _Ndim(n)


def matrices() -> Mask:
    """Decay leaves with at least two dimensions of size > 1.

    The usual choice: kernels, embeddings and conv filters are decayed;
    biases, norm scales and vectors are not, however the framework shapes
    them (an Equinox conv bias of shape ``(C, 1, 1)`` is a vector here, unlike
    under ``ndim_at_least(2)``).

    Returns:
      A mask (a callable of params returning a pytree of bools).

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"w": jnp.ones((2, 3)), "conv_b": jnp.ones((3, 1, 1))}
      >>> decaytx.masks.matrices()(params)
      {'conv_b': False, 'w': True}

    References:
      Karpathy, `nanoGPT <https://github.com/karpathy/nanoGPT>`_ (the
      ``p.dim() >= 2`` rule this refines for size-1 axes).
    """
    return _Matrices()


def exclude(*patterns: str) -> Mask:
    """Decay every leaf except those whose path matches a pattern.

    Args:
      *patterns: regular expressions, matched with ``re.search`` on the
        "/"-joined path (:func:`path_of`), e.g. ``"bias$"``.

    Returns:
      A mask (a callable of params returning a pytree of bools).

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> decaytx.masks.exclude("bias$")(params)
      {'dense': {'bias': False, 'kernel': True}}

    References:
      `optax.masked <https://optax.readthedocs.io/en/latest/api/optimizer_wrappers.html#optax.masked>`_,
      whose masks (pytrees of bools, prefixes, callables) these return.
    """
    return _Exclude(patterns, "exclude")


def include(*patterns: str) -> Mask:
    """Decay only the leaves whose path matches a pattern.

    Args:
      *patterns: regular expressions, matched with ``re.search`` on the
        "/"-joined path (:func:`path_of`), e.g. ``"kernel$"``.

    Returns:
      A mask (a callable of params returning a pytree of bools).

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> decaytx.masks.include("kernel$")(params)
      {'dense': {'bias': False, 'kernel': True}}
      >>> decaytx.masks.ndim_at_least(2) & ~decaytx.masks.include("embed")
      decaytx.masks.(ndim_at_least(2) & ~include('embed'))

    References:
      `optax.masked <https://optax.readthedocs.io/en/latest/api/optimizer_wrappers.html#optax.masked>`_,
      whose masks (pytrees of bools, prefixes, callables) these return.
    """
    return _Include(patterns, "include")


# Factories someone may pass uncalled (mask=masks.ndim_at_least), with the
# call they most likely meant.
FACTORIES = {
    ndim_at_least: "masks.ndim_at_least(2)",
    matrices: "masks.matrices()",
    include: "masks.include('kernel$')",
    exclude: "masks.exclude('bias$')",
}
