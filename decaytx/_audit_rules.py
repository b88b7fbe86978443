"""The audit's per-leaf rules and the words of the problems they find.

Each rule looks at one decayed leaf (or one transform) and files what it finds
in a :class:`Findings`, keyed by problem kind and transform; the report
(:mod:`decaytx._audit`) turns each entry into one ``AuditProblem`` worded here.
The rate rules are the warnings' own (:func:`decaytx._warnings.below_resolution`),
so a warning and an audit row never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import jax.numpy as jnp

from decaytx import _hook
from decaytx._warnings import below_resolution

Value = float | str  # a number, or "traced" where it cannot be seen

ProblemKind = Literal[
    "away_from_anchor",
    "below_resolution",
    "factor_at_least_1",
    "selects_nothing",
    "looks_undecayable",
]

# The order problems are listed in: the most harmful first.
ORDER: tuple[ProblemKind, ...] = (
    "away_from_anchor", "factor_at_least_1", "below_resolution", "selects_nothing",
    "looks_undecayable",
)


def fmt_paths(paths: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` paths, comma-separated, and how many more there are."""
    shown = ", ".join(paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")


def is_float(dtype: str) -> bool:
    """Whether a dtype name is inexact (a leaf decay can act on)."""
    return bool(jnp.issubdtype(jnp.dtype(dtype), jnp.inexact))


def dims_above_1(shape: tuple[int, ...]) -> int:
    """How many dimensions of ``shape`` have size > 1 (a matrix has 2 or more)."""
    return sum(1 for d in shape if d > 1)


_EMBED = re.compile(r"embed|^wte$|^wpe$|^tok_?emb|^pos_?emb", re.I)
_NORM = re.compile(r"norm|^ln(_\w+|\d+)?$|^bn\d*$", re.I)
_BIAS = re.compile(r"^(bias|b|offset|beta)$|_bias$|^bias_", re.I)


def looks_undecayable(path: str, shape: tuple[int, ...], has_matrices: bool) -> str | None:
    """Why a decayed leaf looks like one that is usually not decayed, if it does."""
    parts = path.split("/") if path else []
    last = parts[-1] if parts else ""
    vector = dims_above_1(shape) < 2
    if any(_EMBED.search(q) for q in parts):
        return "an embedding"
    if last.lower() in ("scale", "gamma") or (vector and any(_NORM.search(q) for q in parts)):
        return "a norm scale"
    if _BIAS.search(last):
        return "a bias"
    if vector and has_matrices and last.lower() not in ("kernel", "weight", "weights", "w"):
        # Beside matrices, an unnamed vector is a bias or a scale; alone (a
        # linear model's weights), or named as a weight (a (d, 1) output
        # kernel), it is not flagged.
        return "a vector beside the model's matrices (a bias or scale)"
    return None


_PLACE_UPDATE = (
    "{name} acts on the final step: place it LAST in the chain, after "
    "optax.scale_by_learning_rate (or after the optimizer alias, e.g. "
    "optax.chain(optax.adam(lr), decaytx.{name}(..., learning_rate=lr))). Whatever comes "
    "after it (Adam's rescaling, the learning rate's minus sign) turns its step around."
)
_PLACE_GRADIENT = (
    "{name} adds to the gradient: place it FIRST in the chain, before the "
    "optimizer (optax.chain(decaytx.{name}(...), optax.sgd(lr))). After "
    "scale_by_learning_rate its term is added with the wrong sign and without the learning rate."
)


class Findings:
    """The problems found so far: (kind, transform label) -> leaves, and the
    detail its message quotes (a rate, what the leaf looks like, the fix)."""

    def __init__(self) -> None:
        self._paths: dict[tuple[ProblemKind, str], list[str]] = {}
        self._detail: dict[tuple[ProblemKind, str], str] = {}

    def add(self, kind: ProblemKind, label: str, paths: Sequence[str], detail: str = "",
            *, first_detail: bool = False) -> None:
        """Files ``paths`` under ``(kind, label)``; ``detail`` replaces the
        previous one unless ``first_detail`` keeps the first."""
        key = (kind, label)
        self._paths.setdefault(key, []).extend(paths)
        if first_detail:
            self._detail.setdefault(key, detail)
        else:
            self._detail[key] = detail

    def problems(self) -> list[tuple[ProblemKind, str, tuple[str, ...], str, str]]:
        """``(kind, label, paths, message, fix)`` per entry, in :data:`ORDER`."""
        found: list[tuple[ProblemKind, str, tuple[str, ...], str, str]] = [
            (kind, label, tuple(paths), *wording(kind, len(paths), self._detail[kind, label]))
            for (kind, label), paths in self._paths.items()]
        found.sort(key=lambda p: ORDER.index(p[0]))
        return found


def check_leaf(found: Findings, label: str, path: str, why: str | None,
               factor: dict[str, Value], rates: Sequence[str], dtype: str) -> None:
    """The rules of one decayed leaf under one transform.

    ``why`` is what the leaf looks like (:func:`looks_undecayable`);
    ``factor`` holds the peak :math:`m\\lambda` per coefficient, of which
    those named in ``rates`` must stay below 1 and above the resolution of
    ``dtype``.
    """
    if why is not None:
        found.add("looks_undecayable", label, [path], why, first_detail=True)
    for rate in (factor.get(k) for k in rates):
        if not isinstance(rate, float):
            continue
        if rate >= 1.0:
            found.add("factor_at_least_1", label, [path], f"{rate:.3g}")
        elif below_resolution(rate, dtype):
            found.add("below_resolution", label, [path], f"{rate:.3g}")


def check_away(found: Findings, path: str, acting: Sequence[tuple[str, _hook.TransformPlan]]) -> None:
    """A leaf the zero-gradient probe moved away from its anchor: blame every
    transform acting on it, each with its placement rule."""
    names = " + ".join(label for label, _ in acting)
    fix = " ".join((_PLACE_UPDATE if p.side == "update" else _PLACE_GRADIENT).format(name=p.name)
                   for _, p in acting)
    found.add("away_from_anchor", names, [path], fix)


def check_selects_something(found: Findings, label: str, plan: _hook.TransformPlan) -> None:
    """A transform whose mask decays none of the float leaves it sees."""
    if not any(leaf.decayed and is_float(leaf.dtype) for leaf in plan.leaves):
        found.add("selects_nothing", label, [leaf.path for leaf in plan.leaves])


def wording(kind: ProblemKind, n: int, detail: str) -> tuple[str, str]:
    """The message and the fix of a problem of ``kind`` on ``n`` leaves."""
    if kind == "away_from_anchor":
        return (f"a zero-gradient step moves {n} decayed leaf/leaves AWAY from the anchor: "
                "the decay grows the weights instead of shrinking them.",
                detail)
    if kind == "factor_at_least_1":
        return (f"the per-step factor m*lambda = {detail} is >= 1: every step flips the "
                "sign of each decayed weight.",
                "lower weight_decay or the learning_rate multiplier so that m*lambda << 1 "
                "(with learning_rate=None, m = 1: pass the optimizer's learning rate).")
    if kind == "below_resolution":
        return (f"the per-step factor m*lambda = {detail} is below the resolution of these "
                "leaves' dtype: x - m*lambda*x rounds back to x, the decay is lost.",
                "keep float32 master weights for low-precision params, or raise weight_decay.")
    if kind == "selects_nothing":
        return ("its mask selects none of the float leaves it sees, so it decays nothing.",
                "check the mask's patterns against the paths in this table (e.g. 'kernel' "
                "vs 'weight'); if no decay is intended, leave the transform out.")
    return (f"decays {n} leaf/leaves that look like biases, norm scales or embeddings "
            f"(first: {detail}), which are usually not decayed.",
            "leave them out with a mask, e.g. mask=decaytx.masks.ndim_at_least(2) "
            "(0.2: masks.matrices()) and masks.exclude('embed'); ignore this if decaying "
            "them is intended.")
