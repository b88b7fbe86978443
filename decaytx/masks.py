"""Masks: which parameters to decay.

Each function returns a callable of params that gives a pytree of bools
(``True`` = decay), usable as ``mask=`` in every decaytx transform and in
``optax.masked``. Any optax-style mask (a pytree of bools, a prefix of params,
or a callable of params) is accepted as well.

Paths are ``jax.tree_util.keystr`` strings such as ``"['layer1']['bias']"``;
patterns are regular expressions matched with ``re.search``.
"""

from __future__ import annotations

import re
from typing import Any

import jax

__all__ = ["ndim_at_least", "exclude", "include"]


class _PathMask:
    """A mask built from a rule on (key path, leaf); a named callable so that
    its ``repr`` says what it does."""

    def __init__(self, rule: Any, description: str) -> None:
        self._rule = rule
        self._description = description

    def __call__(self, params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(
            lambda path, leaf: bool(self._rule(jax.tree_util.keystr(path), leaf)), params
        )

    def __repr__(self) -> str:
        return f"decaytx.masks.{self._description}"


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


def ndim_at_least(n: int) -> _PathMask:
    """Decay leaves with at least ``n`` dimensions (nanoGPT's rule with n=2).

    Matrices and kernels are decayed; biases, norms' scales and other vectors
    are not.

    Args:
      n: the minimum number of dimensions.

    Returns:
      A callable of params returning a pytree of bools.

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
    return _PathMask(lambda _, leaf: getattr(leaf, "ndim", 0) >= n, f"ndim_at_least({n})")


def exclude(*patterns: str) -> _PathMask:
    """Decay every leaf except those whose key path matches a pattern.

    Args:
      *patterns: regular expressions, matched with ``re.search`` on
        ``jax.tree_util.keystr`` paths.

    Returns:
      A callable of params returning a pytree of bools.

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> decaytx.masks.exclude("bias")(params)
      {'dense': {'bias': False, 'kernel': True}}

    References:
      `optax.masked <https://optax.readthedocs.io/en/latest/api/optimizer_wrappers.html#optax.masked>`_,
      whose masks (pytrees of bools, prefixes, callables) these return.
    """
    compiled = _compile(patterns, "exclude")
    return _PathMask(
        lambda path, _: not any(c.search(path) for c in compiled), f"exclude{patterns!r}"
    )


def include(*patterns: str) -> _PathMask:
    """Decay only the leaves whose key path matches a pattern.

    Args:
      *patterns: regular expressions, matched with ``re.search`` on
        ``jax.tree_util.keystr`` paths.

    Returns:
      A callable of params returning a pytree of bools.

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> decaytx.masks.include("kernel")(params)
      {'dense': {'bias': False, 'kernel': True}}

    References:
      `optax.masked <https://optax.readthedocs.io/en/latest/api/optimizer_wrappers.html#optax.masked>`_,
      whose masks (pytrees of bools, prefixes, callables) these return.
    """
    compiled = _compile(patterns, "include")
    return _PathMask(lambda path, _: any(c.search(path) for c in compiled), f"include{patterns!r}")
