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
from typing import Any, Literal

import jax.numpy as jnp

from decaytx import _hook, _mask_arg
from decaytx import masks as _masks
from decaytx._warnings import below_resolution

Value = float | str  # a number, or "traced" where it cannot be seen

ProblemKind = Literal[
    "away_from_anchor",
    "gradient_after_optimizer",
    "decay_outside_schedule_free",
    "not_visible",
    "frozen_but_decayed",
    "constant_multiplier",
    "decayed_twice",
    "below_resolution",
    "factor_at_least_1",
    "selects_nothing",
    "unmatched_pattern",
    "keystr_pattern",
    "path_collision",
    "looks_undecayable",
    "decay_not_seen",
]

# The order findings are listed in: the most harmful first.
ORDER: tuple[ProblemKind, ...] = (
    "away_from_anchor", "gradient_after_optimizer", "decay_outside_schedule_free",
    "not_visible", "frozen_but_decayed",
    "factor_at_least_1", "constant_multiplier", "decayed_twice", "below_resolution",
    "selects_nothing", "unmatched_pattern", "keystr_pattern", "path_collision", "looks_undecayable",
    "decay_not_seen",
)

# Findings that are notes, not problems: the decay does what the chain says,
# but the setting is often unintended (a decayed embedding, on purpose in
# nanoGPT and Hugging Face's Trainer), or the audit cannot tell.
NOTE_KINDS: frozenset[str] = frozenset({"looks_undecayable", "path_collision", "decay_not_seen"})


def severity(kind: str) -> Literal["problem", "note"]:
    """``"note"`` for the kinds in :data:`NOTE_KINDS`, else ``"problem"``."""
    return "note" if kind in NOTE_KINDS else "problem"


def mask_rule(mask: Any) -> str:
    """The words for a transform's mask: ``"all leaves"``, ``"masks.preset('nanogpt')"``..."""
    if mask is None:
        return "all leaves"
    if isinstance(mask, _masks.Mask):
        return repr(mask).removeprefix("decaytx.")
    if callable(mask) and not isinstance(mask, (dict, list, tuple)):
        return f"mask {getattr(mask, '__name__', type(mask).__name__)}"
    return "mask tree"


def leaf_rule(plan: _hook.TransformPlan, leaf: _hook.LeafPlan) -> str:
    """Which rule decided this leaf's decay under this transform."""
    rule = mask_rule(getattr(plan, "mask", None))
    if not getattr(leaf, "masked_in", True):
        return f"excluded by {rule}"
    if leaf.decayed:
        return rule
    if not is_float(leaf.dtype):
        return f"{rule}; not a float"
    return f"{rule}; coefficient zero"


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


PLACE_UPDATE = (
    "{name} acts on the final step: place it LAST in the chain, after "
    "optax.scale_by_learning_rate (or after the optimizer alias, e.g. "
    "optax.chain(optax.adam(lr), decaytx.{name}(..., learning_rate=lr))). Whatever comes "
    "after it (Adam's rescaling, the learning rate's minus sign) turns its step around."
)
PLACE_GRADIENT = (
    "{name} adds to the gradient: place it FIRST in the chain, before the "
    "optimizer (optax.chain(decaytx.{name}(...), optax.sgd(lr))). After "
    "scale_by_learning_rate its term is added with the wrong sign and without the learning rate."
)

INSIDE_UPDATE = (
    "move decaytx.{name} INSIDE the base optimizer given to optax.contrib.schedule_free, "
    "after its learning rate, and take it out of the chain after the wrapper: "
    "optax.contrib.schedule_free(optax.chain(optax.scale_by_rms(0.999, 1e-8, "
    "eps_in_sqrt=False, bias_correction=True), optax.scale_by_learning_rate(lr), "
    "decaytx.{name}(..., learning_rate=lr)), learning_rate=lr), which is "
    "optax.contrib.schedule_free_adamw(lr, weight_decay=...) with decaytx's masks and "
    "anchors (docs/optimizers.md); or use schedule_free_adamw's own weight_decay."
)
INSIDE_GRADIENT = (
    "move decaytx.{name} INSIDE the base optimizer given to optax.contrib.schedule_free, "
    "first in its chain: optax.contrib.schedule_free(optax.chain(decaytx.{name}(...), "
    "optax.sgd(lr)), learning_rate=lr) (optax.contrib.schedule_free_sgd's weight_decay)."
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


def check_away(found: Findings, path: str,
               acting: Sequence[tuple[str, _hook.TransformPlan, _hook.LeafPlan]]) -> None:
    """A leaf the zero-gradient probe moved away from its anchor: blame every
    transform acting on it, each with its placement rule."""
    names = " + ".join(label for label, _, _ in acting)
    fix = " ".join((PLACE_UPDATE if p.side == "update" else PLACE_GRADIENT).format(name=p.name)
                   for _, p, _ in acting)
    found.add("away_from_anchor", names, [path], fix)


def check_twice(found: Findings, path: str,
                acting: Sequence[tuple[str, _hook.TransformPlan, _hook.LeafPlan]]) -> None:
    """A leaf decayed by two transforms sharing a coefficient (two weight decays)."""
    seen: dict[str, str] = {}
    for label, _, leaf in acting:
        for name in leaf.coefficients:
            if name in seen and seen[name] != label:
                found.add("decayed_twice", f"{seen[name]} + {label}", [path], name)
                return
            seen.setdefault(name, label)


def check_unmatched(found: Findings, label: str, plan: _hook.TransformPlan) -> None:
    """The include/exclude patterns of a transform's mask that match no path."""
    missed = _mask_arg.unmatched_patterns(getattr(plan, "mask", None),
                                          [leaf.path for leaf in plan.leaves])
    if missed:
        found.add("unmatched_pattern", label, [],
                  ", ".join(f"{fn}({pattern!r})" for fn, pattern in missed))


def check_keystr(found: Findings, label: str, plan: _hook.TransformPlan) -> None:
    """The include/exclude patterns of a transform's mask written as 0.1 keystr
    paths that match paths by accident (``exclude("['bias']")``)."""
    accidents = _mask_arg.keystr_accidents(getattr(plan, "mask", None),
                                           [leaf.path for leaf in plan.leaves if leaf.path])
    if accidents:
        found.add("keystr_pattern", label, [p for *_, matched in accidents for p in matched],
                  ", ".join(f"{fn}({pattern!r}) ({why}; write "
                            f"{fn}({_mask_arg.keystr_to_path(pattern)!r}))"
                            for fn, pattern, why, _ in accidents))


def check_selects_something(found: Findings, label: str, plan: _hook.TransformPlan) -> None:
    """A transform whose mask decays none of the float leaves it sees."""
    if not any(leaf.decayed and is_float(leaf.dtype) for leaf in plan.leaves):
        found.add("selects_nothing", label, [leaf.path for leaf in plan.leaves])


_LOOKS_FIX = (
    "leave them out with a mask, e.g. mask=decaytx.masks.ndim_at_least(2) "
    "(0.2: masks.matrices()) and masks.exclude('embed'); ignore this note if decaying "
    "them is intended (nanoGPT and Hugging Face's Trainer decay embeddings on purpose).")
_LR_FIX = (
    "give the decay the optimizer's schedule: learning_rate=schedule (m_t = eta_t, as "
    "PyTorch and optax.adamw) or learning_rate=decaytx.lr_multiplier(schedule) "
    "(m_t = eta_t/eta_max, the paper's AdamW).")
_FIND_FIX = (
    "audit the inner optimizer instead (e.g. the chain inside optax.flatten or "
    "optax.lookahead, with the params it sees), or check this decay by hand.")

# kind -> (message, fix); {n} is the count of leaves, {detail} the finding's detail.
WORDS: dict[str, tuple[str, str]] = {
    "away_from_anchor": (
        "a zero-gradient step moves {n} decayed leaf/leaves AWAY from the anchor: "
        "the decay grows the weights instead of shrinking them.", "{detail}"),
    "gradient_after_optimizer": (
        "{n} leaf/leaves decayed by a gradient-side transform get a step proportional "
        "to the weights, unlike an adaptive optimizer's step: the transform sits after "
        "the optimizer's rescaling (e.g. add_l2_grad after scale_by_adam), so its term "
        "is not an L2 gradient the optimizer sees but a decoupled decay with m = lr.",
        "{detail}"),
    "decay_outside_schedule_free": (
        "decays {n} leaf/leaves AFTER optax.contrib.schedule_free instead of inside its "
        "base optimizer: a zero-gradient step moves them while schedule-free's z sequence "
        "stays put. The decay then acts on the point y the wrapper returns, not on z (the "
        "sequence the base optimizer steps and x averages toward): the next step rebuilds "
        "x = (y - (1 - b1) z) / b1 from the decayed y, so x takes the decay 1/b1 times "
        "as strong, and the averaging keeps pulling the weights back toward the never-decayed "
        "z. Its strength and meaning differ from optax's schedule_free_adamw(weight_decay=...) "
        "and the schedule-free paper's (in float64 with zero gradients, lr = 1e-2, "
        "weight_decay = 0.1, b1 = 0.9, a weight keeps 0.43 of its value after 2000 steps "
        "instead of 0.26, and z none of its decay).", "{detail}"),
    "not_visible": (
        "the audit cannot see this decay: {detail}. The rows above do not show it, "
        "and nothing was checked for these leaves.", _FIND_FIX),
    "frozen_but_decayed": (
        "{n} leaf/leaves are frozen (their update does not depend on the gradient: "
        "set_to_zero under multi_transform, optax.masked) yet the decay moves them: "
        "the frozen weights drift toward the anchor.",
        "decay only what is trained: give the decay a mask that leaves the frozen "
        "leaves out (the same labels as the freeze), or put the decay inside the "
        "trained branch of multi_transform."),
    "constant_multiplier": (
        "the optimizer's step size follows a schedule (it changes over steps) but the "
        "decay's multiplier m = {detail} is constant: the decay runs at that value "
        "every step (at the peak through warmup and after the decay of the learning rate).",
        _LR_FIX),
    "decayed_twice": (
        "{n} leaf/leaves are decayed by more than one transform with the same "
        "coefficient ({detail}): the decays add up.",
        "keep one decay per leaf: remove one transform or give them disjoint masks "
        "(a recipe such as decaytx.adamw already decays)."),
    "factor_at_least_1": (
        "the per-step factor m*lambda = {detail} is >= 1: every step flips the "
        "sign of each decayed weight.",
        "lower weight_decay or the learning_rate multiplier so that m*lambda << 1 "
        "(with learning_rate=None, m = 1: pass the optimizer's learning rate)."),
    "below_resolution": (
        "the per-step factor m*lambda = {detail} is below the resolution of these "
        "leaves' dtype: x - m*lambda*x rounds back to x, the decay is lost.",
        "pass compensated=True (a float32 residual per low-precision leaf), keep float32 "
        "master weights for low-precision params, or raise weight_decay."),
    "selects_nothing": (
        "its mask selects none of the float leaves it sees, so it decays nothing.",
        "check the mask's patterns against the paths in this table (e.g. 'kernel' "
        "vs 'weight'); if no decay is intended, leave the transform out."),
    "unmatched_pattern": (
        "mask pattern(s) {detail} match no params path, so they select or exclude nothing.",
        "fix the pattern against the paths in this table (patterns are regexes searched "
        "in the \"/\"-joined path), or remove it."),
    "keystr_pattern": (
        "mask pattern(s) {detail} are written as 0.1 jax.tree_util.keystr paths; read as "
        "regexes they match {n} leaf/leaves by accident rather than by name, so the mask "
        "selects or excludes other leaves than the pattern names.",
        "write each pattern with \"/\"-joined names, as suggested above (patterns are "
        "regexes searched in the \"/\"-joined path; masks.path_of(keypath) shows a "
        "leaf's path)."),
    "path_collision": (
        "{n} leaves share one \"/\"-joined path ({detail}): masks cannot tell them "
        "apart; the rows list them as path [#1], path [#2].",
        "rename the key that contains \"/\" (e.g. \"a/b\" -> \"a_b\")."),
    "looks_undecayable": (
        "decays {n} leaf/leaves that look like biases, norm scales or embeddings "
        "(first: {detail}), which are often not decayed.", _LOOKS_FIX),
    "decay_not_seen": (
        "a zero-gradient step moves {n} leaf/leaves that no decaytx transform decays: a "
        "decay the audit cannot see (optax's own add_decayed_weights or adamw, or a "
        "transform inside a wrapper it cannot see into).", _FIND_FIX),
}


def wording(kind: ProblemKind, n: int, detail: str) -> tuple[str, str]:
    """The message and the fix of a finding of ``kind`` on ``n`` leaves."""
    message, fix = WORDS[kind]
    return message.format(n=n, detail=detail), fix.format(n=n, detail=detail)
