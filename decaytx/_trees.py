"""Trees: the empty leaf, the paths masks see, and tree-mismatch messages.

One place for what every module says about a params tree: which leaves are
empty (``None``, ``optax.MaskedNode``), which can be decayed (inexact
arrays), the "/"-joined path of a leaf, and the words of an error when two
trees (mask, anchor, coefficient tree, state) do not match params.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def is_empty(x: Any) -> bool:
    """Whether a leaf is an empty place in a tree: ``None`` or ``optax.MaskedNode``."""
    return x is None or isinstance(x, optax.MaskedNode)


def is_decayable(x: Any) -> bool:
    """Whether a leaf is an inexact (float or complex) array."""
    if is_empty(x):
        return False
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


def flatten(tree: PyTree) -> tuple[list[Any], Any]:
    """Leaves and treedef, with empty leaves kept as leaves."""
    return jax.tree_util.tree_flatten(tree, is_leaf=is_empty)


def flatten_with_path(tree: PyTree) -> list[tuple[Any, Any]]:
    """``(keypath, leaf)`` pairs, with empty leaves kept as leaves."""
    return jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_empty)[0]


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):  # DictKey/FlattenedIndexKey, GetAttrKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_of(keypath: Sequence[Any]) -> str:
    """The "/"-joined path that masks and ``per_leaf`` see for a key path.

    Dict keys, attribute names and sequence indices are joined with ``/``; a
    trailing ``value`` attribute (a Flax NNX Variable) is dropped.

    Args:
      keypath: a key path, as given by ``jax.tree_util.tree_flatten_with_path``.

    Returns:
      A string such as ``"blocks/0/attn/kernel"`` (``""`` for a bare array).

    Examples:
      >>> import jax, jax.numpy as jnp, decaytx
      >>> params = {"blocks": [{"kernel": jnp.ones((2, 2))}]}
      >>> [decaytx.masks.path_of(k)
      ...  for k, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
      ['blocks/0/kernel']

    References:
      ``jax.tree_util.keystr``, whose ``"['blocks'][0]['kernel']"`` this
      writes as the names people type.
    """
    keys = list(keypath)
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    return "/".join(_key_name(k) for k in keys)


def where(keypath: Sequence[Any]) -> str:
    """A leaf's place for an error message: its key path, or ``<root>``."""
    return jax.tree_util.keystr(tuple(keypath)) or "<root>"


def shown(path: str) -> str:
    """A "/"-joined path for a message: quoted, or ``<root>`` for a bare array."""
    return repr(path) if path else "<root>"


# What reading a traced value raises (float(x), bool(x), np.asarray(x), int(x)).
VALUE_READ_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
)

SHAPE_ONLY_RULE = (
    "may use each leaf's path, shape and dtype only, never its values (the "
    "same rule eagerly and under jax.jit, where values are traced)"
)


def abstractly(fn: Callable[[PyTree], Any], tree: PyTree, what: str) -> Any:
    """``fn(tree)`` with every array leaf's values hidden (shape and dtype kept).

    ``fn`` sees the array leaves as tracers of their shape and dtype, inside
    ``jax.ensure_compile_time_eval`` so that numbers computed from shapes are
    concrete; a ``fn`` that reads values fails the same way eagerly and under
    ``jit``, with a ``TypeError`` naming ``what``. Other leaves are passed
    as they are.
    """
    flat, treedef = flatten(tree)
    arrays = [i for i, x in enumerate(flat)
              if not is_empty(x) and hasattr(x, "shape") and hasattr(x, "dtype")]
    out: list[Any] = []

    def run(traced: list[Any]) -> None:
        leaves = list(flat)
        for i, t in zip(arrays, traced, strict=True):
            leaves[i] = t
        with jax.ensure_compile_time_eval():
            out.append(fn(jax.tree_util.tree_unflatten(treedef, leaves)))

    try:
        jax.eval_shape(run, [jax.ShapeDtypeStruct(flat[i].shape, flat[i].dtype) for i in arrays])
    except VALUE_READ_ERRORS as e:
        raise value_read_error(what, type(e).__name__) from e
    if any(isinstance(x, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]
           for x in jax.tree_util.tree_leaves(out[0])):
        raise value_read_error(what, "it returned a value computed from a leaf's values")
    return out[0]


def value_read_error(what: str, how: str) -> TypeError:
    """The one message for a ``per_leaf`` function or callable mask that reads values."""
    return TypeError(
        f"{what} reads the values of params leaves ({how}); a per_leaf function "
        f"or callable mask {SHAPE_ONLY_RULE}. Decide from x.shape, x.ndim, "
        "x.dtype and the path (e.g. lambda path, x: 0.0 if x.ndim < 2 else 0.1), "
        "or compute a value-based decision once yourself, outside the transform, "
        "and pass it as a pytree (mask=jax.tree.map(lambda x: bool(...), params))."
    )


def describe(x: Any) -> str:
    """A leaf in words: ``None``, ``a float32[2, 4] array``, ``an abstract ...``."""
    if is_empty(x):
        return type(x).__name__ if x is not None else "None"
    if isinstance(x, jax.ShapeDtypeStruct):
        return f"an abstract {jnp.dtype(x.dtype).name}{list(x.shape)} (a jax.ShapeDtypeStruct)"
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return f"a {jnp.dtype(x.dtype).name}{list(x.shape)} array"
    return f"a {type(x).__name__}"


def structure_error(what: str, tree: PyTree, params: PyTree, fix: str) -> ValueError:
    """``what does not match params``, naming the paths that differ."""
    mine_d = {where(k): v for k, v in flatten_with_path(tree)}
    theirs_d = {where(k): v for k, v in flatten_with_path(params)}
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
            f"{what} has {describe(mine_d[k])} at {k} where params has "
            f"{describe(theirs_d[k])}"
            for k in mine_d if is_empty(mine_d[k]) != is_empty(theirs_d[k])
        ][:3]
        detail.extend(differ or [
            f"{what} has the container types {jax.tree_util.tree_structure(tree, is_leaf=is_empty)} "
            f"and params {jax.tree_util.tree_structure(params, is_leaf=is_empty)}"
        ])
    return ValueError(f"{what} does not match params: " + "; ".join(detail) + f". {fix}")


def _children(tree: Any) -> dict[str, Any]:
    """One level of a pytree: key name -> child (an empty dict for a leaf)."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda n: n is not tree)[0]
    return {path_of(k) if k else "": v for k, v in flat if k}


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _missing_extra(missing: list[str], extra: list[str], missing_text: str, extra_text: str) -> list[str]:
    """The words for keys params has that a tree lacks, and keys it has that params lacks."""
    return ([missing_text.format(missing)] if missing else []) + ([extra_text.format(extra)] if extra else [])


def prefix_mismatch(prefix: Any, params: Any, is_prefix_leaf: Callable[[Any], bool]) -> str:
    """Where ``prefix`` stops being a prefix of ``params``, in words.

    Walks both trees level by level and names the first node whose keys or
    type differ, so that a mask or coefficient tree missing one key blames
    that key, not the keys that are present.
    """
    stack: list[tuple[str, Any, Any]] = [("", prefix, params)]
    while stack:
        at_path, a, b = stack.pop(0)
        if is_prefix_leaf(a):
            continue
        at = f" at {at_path!r}" if at_path else ""
        if type(a) is not type(b) and not (isinstance(a, dict) and isinstance(b, dict)):
            return f"it has {_a(type(a).__name__)}{at} where params has {describe(b) if hasattr(b, 'dtype') else _a(type(b).__name__)}"
        ka, kb = _children(a), _children(b)
        missing = [k for k in kb if k not in ka]
        extra = [k for k in ka if k not in kb]
        if missing or extra:
            return " and ".join(_missing_extra(
                missing, extra, "it has no entry for params keys {}" + at, "its keys {}" + at + " are not in params"))
        stack.extend((f"{at_path}/{k}" if at_path else k, ka[k], kb[k]) for k in ka)
    return "its structure differs from params"


def check_leaves(params: PyTree, name: str) -> None:
    """Rejects params leaves that are not arrays (a Python float, a string).

    A Python float leaf would be decayed under ``jit`` (where it becomes an
    f32 tracer) but not outside it; refusing it keeps both the same. Python
    ints and bools are left untouched either way, like integer arrays.
    """
    for path, x in flatten_with_path(params):
        if is_empty(x) or hasattr(x, "dtype") or isinstance(x, (bool, int)):
            continue
        raise TypeError(
            f"{name}: the params leaf at {where(path)} is {x!r} of "
            f"type {type(x).__name__}, not an array. Convert params with "
            "jax.tree.map(jnp.asarray, params), or filter non-array leaves out "
            "(e.g. eqx.filter(model, eqx.is_array))."
        )


def check_params(params: PyTree, name: str) -> None:
    """``update`` without params: decay reads the current weights."""
    if params is None:
        raise ValueError(
            f"{name}.update was called without params. Decay reads the "
            "current weights: call update(updates, state, params)."
        )


def is_params_placeholder(params: Any) -> bool:
    """Whether ``init`` is called by ``optax.tree.map_params`` on its placeholder.

    optax finds the params-like trees of a state by calling ``init`` on a
    placeholder object and looking for it in the result (``optax.masked``
    special-cases it the same way).
    """
    return type(params).__name__ == "_ParamsPlaceholder" and not jax.tree_util.tree_leaves(params)


def _names(keypath: Sequence[Any]) -> tuple[str, ...]:
    """A key path as the tuple of names :func:`path_of` joins (NNX ``value`` dropped)."""
    keys = list(keypath)
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    return tuple(_key_name(k) for k in keys)


def _is_nnx(params: Any) -> bool:
    """Whether params is (or holds) Flax NNX state: a ``State``, or ``Variable`` leaves."""
    if type(params).__module__.startswith("flax.nnx"):
        return True
    return any(
        k and isinstance(k[-1], jax.tree_util.GetAttrKey) and k[-1].name == "value"
        for k, _ in flatten_with_path(params)
    )


def align_by_path(tree: Any, params: Any, is_prefix_leaf: Callable[[Any], bool], *,
                  what: str, fix: str, prefix: bool = True) -> Any:
    """``tree`` laid onto the structure of Flax NNX ``params`` by "/" path, or ``None``.

    A plain dict (or list) whose paths name the leaves of an NNX ``State``
    (the paths :func:`path_of` gives, without NNX's ``value``) does not match
    the ``State`` structurally; matched by path, it is. With ``prefix``, a
    leaf of ``tree`` (``is_prefix_leaf``) at a path covers every params leaf
    below it, as a prefix tree does; without, each must name a params leaf.
    Empty params leaves (``None``) need no entry.

    Returns ``None`` when params is not NNX state (the caller's own
    structural error stands); raises a ``ValueError`` naming the "/" paths
    when some params leaf has no entry or some entry names no params leaf.
    """
    if not _is_nnx(params):
        return None
    mine = [(_names(k), v) for k, v in
            jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_prefix_leaf)[0]]
    flat = flatten_with_path(params)
    out: list[Any] = []
    used: set[tuple[str, ...]] = set()
    missing: list[str] = []
    for keypath, leaf in flat:
        names = _names(keypath)
        hit = [(q, v) for q, v in mine if (names[:len(q)] == q if prefix else names == q)]
        if hit:
            q, v = max(hit, key=lambda qv: len(qv[0]))  # the deepest entry covering it
            used.add(q)
            out.append(v)
        else:
            out.append(None)
            if not is_empty(leaf):
                missing.append("/".join(names) or "<root>")
    extra = ["/".join(q) or "<root>" for q, _ in mine if q not in used]
    if missing or extra:
        detail = _missing_extra(missing[:5], extra[:5], f"params paths with no entry in {what}: {{}}",
                                f"{what} paths not in params: {{}}")
        shown = [p for p in ("/".join(_names(k)) for k, _ in flat) if p][:6]
        raise ValueError(
            f"{what} does not match params (a Flax NNX State, matched by \"/\" path, "
            f"NNX's 'value' left out): " + "; ".join(detail)
            + f". The params paths are {shown}{' ...' if len(flat) > 6 else ''}. {fix}"
        )
    return jax.tree_util.tree_unflatten(flatten(params)[1], out)
