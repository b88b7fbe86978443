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

decaytx masks combine with ``&``, ``|`` and ``~`` (never ``and``/``or``,
which keep one of the two masks: ``bool(mask)`` raises), print what they
select and are picklable (they store patterns, not lambdas). The shape rules
take ``stacked_axes=`` to ignore the leading layer axis of scan-over-layers
params, and :func:`preset` names the rules of nanoGPT, Hugging Face's
Trainer and timm.
"""

from __future__ import annotations

import re
from typing import Any

import jax

from decaytx._trees import path_of

__all__ = ["Mask", "exclude", "include", "matrices", "ndim_at_least", "path_of", "preset"]


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

    def __bool__(self) -> bool:
        # ``a and b`` is ``b`` whenever ``a`` is truthy, and ``a or b`` is
        # ``a``: one mask is silently dropped. Refusing a truth value turns
        # that into an error at the line that wrote it.
        raise TypeError(
            f"{self!r} has no truth value: Python's `and`/`or` on masks would "
            "silently keep only one of them. Combine masks with `&` (both), "
            "`|` (either) and `~` (not), e.g. masks.matrices() & "
            "~masks.include('embed'); to test for a mask, compare it with None."
        )

    def pattern_rules(self) -> tuple[tuple[str, str], ...]:
        """The ``(factory, pattern)`` pairs of the include/exclude rules inside this mask.

        What the init-time warning checks against the params' paths (a
        pattern that matches no path is almost always a typo).
        """
        return ()

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


def _stacked_text(stacked_axes: int) -> str:
    return f"stacked_axes={stacked_axes}" if stacked_axes else ""


class _Ndim(Mask):
    def __init__(self, n: int, stacked_axes: int = 0) -> None:
        self.n, self.stacked_axes = n, stacked_axes

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"stacked_axes": 0, **state})  # pickled by 0.2

    def leaf(self, path: str, leaf: Any) -> bool:
        return getattr(leaf, "ndim", 0) - self.stacked_axes >= self.n

    def _describe(self) -> str:
        return f"ndim_at_least({', '.join(filter(None, [str(self.n), _stacked_text(self.stacked_axes)]))})"


class _Matrices(Mask):
    def __init__(self, stacked_axes: int = 0) -> None:
        self.stacked_axes = stacked_axes

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"stacked_axes": 0, **state})  # pickled by 0.2

    def leaf(self, path: str, leaf: Any) -> bool:
        shape = tuple(getattr(leaf, "shape", ()))[self.stacked_axes:]
        return sum(1 for d in shape if d > 1) >= 2

    def _describe(self) -> str:
        return f"matrices({_stacked_text(self.stacked_axes)})"


class _Patterns(Mask):
    keep_matches = True

    def __init__(self, patterns: tuple[str, ...], fn: str) -> None:
        self.patterns = patterns
        self.compiled = _compile(patterns, fn)

    def leaf(self, path: str, leaf: Any) -> bool:
        return any(c.search(path) for c in self.compiled) == self.keep_matches

    def pattern_rules(self) -> tuple[tuple[str, str], ...]:
        name = "include" if self.keep_matches else "exclude"
        return tuple((name, p) for p in self.patterns)

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

    def pattern_rules(self) -> tuple[tuple[str, str], ...]:
        return self.a.pattern_rules() + self.b.pattern_rules()

    def _describe(self) -> str:
        return f"({self.a._describe()} {self.op} {self.b._describe()})"


class _Not(Mask):
    def __init__(self, a: Mask) -> None:
        self.a = a

    def leaf(self, path: str, leaf: Any) -> bool:
        return not self.a.leaf(path, leaf)

    def pattern_rules(self) -> tuple[tuple[str, str], ...]:
        return self.a.pattern_rules()

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


def _check_stacked(fn: str, stacked_axes: Any) -> int:
    if not isinstance(stacked_axes, int) or isinstance(stacked_axes, bool) or stacked_axes < 0:
        raise ValueError(
            f"masks.{fn}(stacked_axes={stacked_axes!r}): stacked_axes must be a "
            "non-negative int, the number of leading axes that stack layers "
            "(e.g. 1 for params stacked by nn.scan or jax.lax.scan over layers)."
        )
    return stacked_axes


def ndim_at_least(n: int, *, stacked_axes: int = 0) -> Mask:
    """Decay leaves with at least ``n`` dimensions (nanoGPT's rule with n=2).

    Matrices and kernels are decayed; vectors are not. A bias stored with a
    size-1 axis (an Equinox ``Conv2d`` bias has shape ``(C, 1, 1)``) has
    ``ndim >= 2`` and IS decayed: :func:`matrices` is the rule that leaves it
    alone with any framework.

    Args:
      n: the minimum number of dimensions.
      stacked_axes: leading axes not counted: params stacked over layers (a
        scan-over-layers model keeps a bias of shape ``(L, d)``) take
        ``stacked_axes=1``, so the bias counts as the vector it is per layer.

    Returns:
      A mask (a callable of params returning a pytree of bools).

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
      >>> decaytx.masks.ndim_at_least(2)(params)
      {'b': False, 'w': True}
      >>> stacked = {"w": jnp.ones((4, 2, 3)), "b": jnp.ones((4, 3))}  # 4 layers
      >>> decaytx.masks.ndim_at_least(2, stacked_axes=1)(stacked)
      {'b': False, 'w': True}

    References:
      Karpathy, `nanoGPT <https://github.com/karpathy/nanoGPT>`_,
      ``configure_optimizers`` in ``model.py``: "all weight tensors in
      matmuls + embeddings decay, all biases and layernorms don't".
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"masks.ndim_at_least(n={n!r}): n must be a non-negative int, e.g. 2.")
    return _Ndim(n, _check_stacked("ndim_at_least", stacked_axes))


def matrices(*, stacked_axes: int = 0) -> Mask:
    """Decay leaves with at least two dimensions of size > 1.

    The usual choice: kernels, embeddings and conv filters are decayed;
    biases, norm scales and vectors are not, however the framework shapes
    them (an Equinox conv bias of shape ``(C, 1, 1)`` is a vector here, unlike
    under ``ndim_at_least(2)``).

    Args:
      stacked_axes: leading axes not counted: params stacked over layers (a
        scan-over-layers model keeps a LayerNorm scale of shape ``(L, d)``)
        take ``stacked_axes=1``, so the scale counts as the vector it is per
        layer. Combine with :func:`include` when only part of the tree is
        stacked (see ``docs/masks.md``).

    Returns:
      A mask (a callable of params returning a pytree of bools).

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"w": jnp.ones((2, 3)), "conv_b": jnp.ones((3, 1, 1))}
      >>> decaytx.masks.matrices()(params)
      {'conv_b': False, 'w': True}
      >>> stacked = {"w": jnp.ones((4, 2, 3)), "scale": jnp.ones((4, 3))}  # 4 layers
      >>> decaytx.masks.matrices(stacked_axes=1)(stacked)
      {'scale': False, 'w': True}

    References:
      Karpathy, `nanoGPT <https://github.com/karpathy/nanoGPT>`_ (the
      ``p.dim() >= 2`` rule this refines for size-1 axes).
    """
    return _Matrices(_check_stacked("matrices", stacked_axes))


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
    """Decay only the leaves whose path matches a pattern (the complement of :func:`exclude`).

    Args:
      *patterns: regular expressions, as :func:`exclude` takes them
        (``re.search`` on the "/"-joined path), e.g. ``"kernel$"``.

    Returns:
      A mask, as :func:`exclude` returns.

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


# Hugging Face Trainer.get_decay_parameter_names (transformers >= 4.47):
# these regexes, searched in the lowercased dotted parameter name, mean no
# decay; written here for "/" paths (the dots of a torch name are our "/").
_HF_NO_DECAY = tuple(re.compile(p) for p in (
    r"bias", r"layernorm", r"rmsnorm", r"(?:^|/)norm(?:$|/)", r"_norm(?:$|/)"))


def _nanogpt(path: str, ndim: int) -> bool:
    return ndim >= 2  # model.py configure_optimizers: p.dim() >= 2


def _transformers(path: str, ndim: int) -> bool:
    low = path.lower()
    return not any(p.search(low) for p in _HF_NO_DECAY)


def _timm(path: str, ndim: int) -> bool:
    # timm.optim param_groups_weight_decay: param.ndim <= 1 or name.endswith(".bias")
    return not (ndim <= 1 or path.endswith("/bias"))


_PRESETS = {
    "nanogpt": (_nanogpt, "decay leaves with >= 2 dimensions (nanoGPT's p.dim() >= 2)"),
    "transformers": (_transformers, "decay all but biases and LayerNorm/RMSNorm weights, "
                     "by name (Hugging Face Trainer)"),
    "timm": (_timm, "decay all but 1-D leaves and biases (timm's param_groups_weight_decay)"),
}


class _Preset(Mask):
    def __init__(self, name: str, stacked_axes: int = 0) -> None:
        self.name, self.stacked_axes = name, stacked_axes

    def leaf(self, path: str, leaf: Any) -> bool:
        rule = _PRESETS[self.name][0]
        return rule(path, getattr(leaf, "ndim", 0) - self.stacked_axes)

    def _describe(self) -> str:
        return f"preset({', '.join(filter(None, [repr(self.name), _stacked_text(self.stacked_axes)]))})"


def preset(name: str, *, stacked_axes: int = 0) -> Mask:
    r"""The no-decay rule of a known code base, by name.

    * ``"nanogpt"``: decay leaves with at least 2 dimensions, as nanoGPT's
      ``configure_optimizers`` (``p.dim() >= 2``): matrices and embeddings
      decay, biases and norm scales do not. The same as ``ndim_at_least(2)``.
    * ``"transformers"``: Hugging Face ``Trainer``'s rule
      (``get_decay_parameter_names``): no decay for a leaf whose lowercased
      path contains ``bias``, ``layernorm`` or ``rmsnorm``, or has a ``norm``
      or ``…_norm`` component (``"encoder/norm/scale"``,
      ``"block/attn_norm/scale"``); every other leaf decays, embeddings
      included. The rule is on names only: the Trainer also spares any
      ``torch.nn.LayerNorm`` by type, which a path cannot show, so a norm
      named otherwise (GPT-2's ``ln_1``) is decayed here: exclude it by name,
      ``preset("transformers") & ~include("ln_")``.
    * ``"timm"``: timm's ``param_groups_weight_decay``: no decay for leaves
      with at most one dimension or whose path ends in ``/bias``. timm also
      spares what a model lists in ``no_weight_decay()`` (e.g. ``pos_embed``,
      ``cls_token``): add those with ``& ~include(...)``.

    The shape rules count dimensions, so a bias stored as ``(C, 1, 1)`` is
    decayed by ``"nanogpt"`` (use :func:`matrices` to spare it).

    Args:
      name: ``"nanogpt"``, ``"transformers"`` or ``"timm"``.
      stacked_axes: leading axes not counted by the shape rules, for params
        stacked over layers (see :func:`matrices`).

    Returns:
      A mask (a callable of params returning a pytree of bools).

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> params = {"attn": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)},
      ...           "LayerNorm_0": {"scale": jnp.ones(4)}, "wte": jnp.ones((8, 4))}
      >>> decaytx.masks.preset("transformers")(params)
      {'LayerNorm_0': {'scale': False}, 'attn': {'bias': False, 'kernel': True}, 'wte': True}

    References:
      Karpathy, `nanoGPT <https://github.com/karpathy/nanoGPT>`_, ``model.py``.
      Hugging Face ``transformers``, ``Trainer.get_decay_parameter_names`` in
      ``trainer.py``.
      Wightman, `timm <https://github.com/huggingface/pytorch-image-models>`_,
      ``param_groups_weight_decay`` in ``timm/optim/_param_groups.py``.
    """
    if not isinstance(name, str) or name not in _PRESETS:
        known = "; ".join(f"{k!r}: {v[1]}" for k, v in _PRESETS.items())
        raise ValueError(
            f"masks.preset({name!r}) is not a known preset. Pass one of {known}. "
            "For another rule, combine masks.matrices(), ndim_at_least, include and "
            "exclude with &, | and ~."
        )
    return _Preset(name, _check_stacked("preset", stacked_axes))


# Factories someone may pass uncalled (mask=masks.ndim_at_least), with the
# call they most likely meant.
FACTORIES = {
    ndim_at_least: "masks.ndim_at_least(2)",
    matrices: "masks.matrices()",
    include: "masks.include('kernel$')",
    exclude: "masks.exclude('bias$')",
    preset: "masks.preset('nanogpt')",
}
