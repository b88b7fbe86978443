"""How ``mask=`` is read: checked at construction, resolved at ``init``.

A mask is a pytree of bools (or a prefix of params, as ``optax.masked``
takes) or a callable of params returning one (every :mod:`decaytx.masks`
rule). :func:`check` refuses what cannot be right before anything is traced;
:func:`resolve` turns a mask into one Python bool per params leaf;
:func:`unmatched_patterns` finds the ``include``/``exclude`` patterns that
match no path (the init-time warning, :func:`warn_unmatched`, and the audit
read it).
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from decaytx import _shard_map, _trees
from decaytx import masks as _masks
from decaytx._warnings import DecayWarning

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
    """A full tree of Python bools, one per params leaf.

    Inside ``jax.shard_map`` a callable mask whose decision depends on sizes
    is refused (params have per-shard shapes there; see ``_shard_map``).
    """
    out = _resolve(mask, params)
    if is_fn(mask):
        _shard_map.refuse_per_shard_decision(mask, params, out, lambda p: _resolve(mask, p))
    return out


def _resolve(mask: Any, params: PyTree) -> PyTree:
    if mask is None:
        return jax.tree.map(lambda _: True, params, is_leaf=_trees.is_empty)

    def broadcast(m: Any, sub: Any) -> Any:
        return jax.tree.map(lambda _: bool(m), sub, is_leaf=_trees.is_empty)

    if is_fn(mask):
        # Called with the values hidden, eagerly as under jit: a mask computed
        # from shapes and dtypes (even as 0-d jnp bools) is concrete, one
        # that reads values is refused the same way in both.
        mask = _trees.abstractly(mask, params, f"mask={mask!r}")
        if _is_bool(mask):
            # A callable's verdict on params that are a single array (e.g.
            # masks.ndim_at_least(2)(w)): a bool prefix, not the trap.
            return broadcast(mask, params)
    check(mask)
    try:
        return jax.tree.map(broadcast, mask, params, is_leaf=_is_bool)
    except (ValueError, TypeError) as e:
        aligned = _trees.align_by_path(
            mask, params, _is_bool, what="mask",
            fix="Give a bool per subtree of params (e.g. {'linear1': True, 'linear2': "
            "{'kernel': True, 'bias': False}}), or a callable of params (e.g. "
            "decaytx.masks.matrices()).")
        if aligned is not None:
            return jax.tree.map(broadcast, aligned, params, is_leaf=_is_bool)
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


def unmatched_patterns(mask: Any, paths: Sequence[str]) -> list[tuple[str, str]]:
    """The ``(factory, pattern)`` rules of a decaytx mask that match none of ``paths``.

    ``paths``: the "/"-joined paths of the params leaves (empty leaves
    included: a pattern that names a leaf another wrapper masked out is not a
    typo). Each rule is listed once; masks that are not decaytx masks have
    no patterns to check.
    """
    if not isinstance(mask, _masks.Mask):
        return []
    out: list[tuple[str, str]] = []
    for fn, pattern in mask.pattern_rules():
        if (fn, pattern) not in out and not any(re.search(pattern, p) for p in paths):
            out.append((fn, pattern))
    return out


# One key of jax.tree_util.keystr, as 0.1 patterns spelled it (possibly
# regex-escaped): ['name'], ["name"], [0] or .attr.
_KEYSTR = re.compile(
    r"""\\?\[\s*(?:'([^'\\]*)\\?'|"([^"\\]*)\\?"|(\d+))\s*\\?\]"""
    r"|(?:(?<=^)|(?<=[\]'\"]))\\?\.([A-Za-z_]\w*)"
)


def keystr_to_path(pattern: str) -> str | None:
    """A 0.1 keystr-style pattern written with "/"-joined names, or ``None``.

    ``r"\\['dense'\\]\\['bias'\\]"`` -> ``"dense/bias"``, ``r"\\.bias$"`` ->
    ``"bias$"``; ``None`` when ``pattern`` has no keystr key.
    """
    if not _KEYSTR.search(pattern):
        return None

    def name(m: re.Match[str]) -> str:
        return "/" + next(g for g in m.groups() if g is not None)

    path = _KEYSTR.sub(name, pattern)
    anchor = "^" if path.startswith("^") else ""
    return anchor + path[len(anchor):].removeprefix("/")


# 0.1 keystr keys as a regex reads them: ['bias'] (unescaped) is a character
# class, one of the characters ', b, i, a, s; .bias is any character then
# "bias". A pattern built of such keys matches by accident.
_CLASS_KEY = re.compile(r"""(?<!\\)\[\s*(['"])[^'"\]]*\1\s*\]""")
_KEY_CHAIN = re.compile(r"""\^?(?:\.[A-Za-z_]\w*|\[\s*(?:'[^']*'|"[^"]*"|\d+)\s*\])+\$?""")


def _accident(pattern: str, paths: Sequence[str]) -> str | None:
    """Why ``pattern``, a 0.1 keystr path left unescaped, matches by accident; else ``None``."""
    cls = _CLASS_KEY.search(pattern)
    if cls:
        chars = " ".join(dict.fromkeys(cls.group(0)[1:-1].strip()))
        return f"{cls.group(0)} is a character class (any one of the characters {chars})"
    literal = pattern.strip("^$")
    if _KEY_CHAIN.fullmatch(pattern) and literal.startswith(".") \
            and not any(literal in p for p in paths):  # keys with dots: a torch-style name
        return "each '.' is any character (here the \"/\" between names)"
    return None


def keystr_accidents(mask: Any, paths: Sequence[str]) -> list[tuple[str, str, str, list[str]]]:
    """The ``(factory, pattern, why, matched paths)`` of the include/exclude rules of a
    decaytx mask written as a 0.1 keystr path that match some of ``paths`` by
    accident (``exclude("['bias']")`` excludes every path with an a, b, i or s)."""
    if not isinstance(mask, _masks.Mask):
        return []
    out: list[tuple[str, str, str, list[str]]] = []
    for fn, pattern in dict.fromkeys(mask.pattern_rules()):
        why = _accident(pattern, paths)
        matched = [p for p in paths if re.search(pattern, p)] if why else []
        if why and matched:
            out.append((fn, pattern, why, matched))
    return out


def _advice(pattern: str, paths: Sequence[str]) -> str:
    """How the pattern might have been meant, from the paths it missed."""
    meant = keystr_to_path(pattern)
    if meant is not None:
        return (
            " It is written as a jax.tree_util.keystr path (['name'], [0], .attr), the "
            "0.1 syntax; since 0.2 patterns see \"/\"-joined names: write "
            f"{meant!r}."
        )
    slashed = re.sub(r"\\?\.(?=\w)", "/", pattern)  # a torch name: encoder.layer.0
    try:
        if slashed != pattern and any(re.search(slashed, p) for p in paths):
            return f" Paths are joined with \"/\", not \".\": write {slashed!r}."
    except re.error:  # the substitution broke the regex (a "." inside a class)
        pass
    folded = [p for p in paths if re.search(pattern, p, re.IGNORECASE)]
    if folded:
        return (
            f" It matches {folded[0]!r} ignoring case: patterns are case-sensitive; "
            f"write the path's spelling or add (?i): {'(?i)' + pattern!r}."
        )
    if re.fullmatch(r"\w+", pattern):
        names = sorted({n for p in paths for n in p.split("/")})
        close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.6)
        if close:
            return f" Did you mean {' or '.join(repr(c) for c in close)}?"
    return ""


def _shown(paths: Sequence[str]) -> str:
    return ", ".join(repr(p) for p in paths[:4]) + (
        f" and {len(paths) - 4} more" if len(paths) > 4 else "")


def warn_keystr(name: str, mask: Any, paths: Sequence[str]) -> None:
    """Warns once per ``include``/``exclude`` pattern of ``mask`` written as a 0.1
    keystr path (``"['bias']"``, ``".bias"``) that matches paths by accident.

    The unmatched-pattern warning cannot see it: ``exclude("['bias']")`` is a
    character class that matches almost every path, so it silently excludes
    the wrong leaves. The warning names the pattern, what it matched and its
    0.2 spelling.
    """
    real = [p for p in paths if p]
    for fn, pattern, why, matched in keystr_accidents(mask, real):
        does = "excludes" if fn == "exclude" else "selects"
        warnings.warn(
            f"{name}: mask pattern {fn}({pattern!r}) in {mask!r} is written as a "
            "jax.tree_util.keystr path (the 0.1 syntax), but patterns are regexes searched "
            f"in each leaf's \"/\"-joined path: {why}, so it {does} {len(matched)} of "
            f"{len(real)} leaves by accident: {_shown(matched)}. Write "
            f"{fn}({keystr_to_path(pattern)!r}) (names joined by \"/\"; "
            "decaytx.masks.path_of(keypath) shows a leaf's path).",
            DecayWarning,
            stacklevel=5,
        )


def warn_unmatched(name: str, mask: Any, paths: Sequence[str]) -> None:
    """Warns once per ``include``/``exclude`` pattern of ``mask`` that matches no path.

    Such a pattern does nothing: ``exclude("bais")`` excludes nothing and the
    biases are decayed; ``include("kernel", "wieght")`` decays only the
    kernels. The warning names the pattern, a few real paths and, for a 0.1
    keystr pattern (``r"\\['bias'\\]"``), its 0.2 spelling.
    """
    real = [p for p in paths if p]
    shown = _shown(real)
    for fn, pattern in unmatched_patterns(mask, paths):
        does = "excludes nothing" if fn == "exclude" else "selects no leaf"
        warnings.warn(
            f"{name}: mask pattern {fn}({pattern!r}) in {mask!r} matches no params "
            f"path, so it {does}. Patterns are regexes searched in each leaf's "
            f"\"/\"-joined path; the paths here are {shown or 'none'}."
            + _advice(pattern, real)
            + " Fix the pattern (decaytx.masks.path_of(keypath) shows a leaf's path), "
            "or remove it.",
            DecayWarning,
            stacklevel=5,
        )
