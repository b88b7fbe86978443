"""The fused step on the decay's plan, and the wrappers every fused step shares.

A fused step holds its recipe (the plain program) and the recipe's own decay
:class:`~decaytx._transform.Stage`. Its sibling update asks that stage to
check params and state (:meth:`~decaytx._transform.Stage.prepare`) and to
compute each decayed leaf (:meth:`~decaytx._transform.Stage.apply`), so
masks, coefficient trees, anchors, the dtype rules and every error message
are the recipe's by construction; only the optimizer's moments are written
in the sibling form (:mod:`decaytx.fused._sibling`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, cast

import jax
import jax.numpy as jnp
import optax

from decaytx import _trees
from decaytx._learning_rate import LearningRate, Rates
from decaytx._transform import Stage
from decaytx.fused import _sibling as sib
from decaytx.fused._flat import FLAT_MEAN_LEAF_SIZE, FlatAdamState, is_flat_state, many_small_leaves
from decaytx.fused._probe import multi_output_fusion_active

PyTree = Any
Formulation = Literal["auto", "sibling", "plain"]
Layout = Literal["auto", "tree", "flat"]


def check_formulation(formulation: Any) -> Formulation:
    if formulation not in ("auto", "sibling", "plain"):
        raise ValueError(
            f"formulation={formulation!r} is not understood; pass 'auto' (fused "
            "when XLA:CPU multi-output fusion is on, else the plain recipe), "
            "'sibling' (always the fused formulation) or 'plain' (always the "
            "recipe's program)."
        )
    return formulation


def check_layout(layout: Any) -> Layout:
    if layout not in ("auto", "tree", "flat"):
        raise ValueError(
            f"layout={layout!r} is not understood; pass 'auto' (flat moments "
            "when multi-output fusion is active and the float leaves average "
            f"under {FLAT_MEAN_LEAF_SIZE} elements, else the tree), 'tree' "
            "(the recipe's state, one fused kernel per leaf) or 'flat' (Adam's "
            "moments in one buffer per dtype; its own state)."
        )
    return layout


def leaves_ok(updates: PyTree, params: PyTree) -> bool:
    """Whether every leaf is a real float array whose update has its dtype and shape.

    Anything else (None or masked leaves, integers, complex numbers, f32
    updates for bf16 params) takes the plain program, which handles it.
    """
    try:
        u_leaves, u_def = _trees.flatten(updates)
        p_leaves, p_def = _trees.flatten(params)
    except TypeError:
        return False
    if u_def != p_def:
        return False
    for u, p in zip(u_leaves, p_leaves, strict=True):
        if _trees.is_empty(u) or _trees.is_empty(p) or not hasattr(p, "dtype") or not hasattr(u, "dtype"):
            return False
        if not jnp.issubdtype(p.dtype, jnp.floating) or u.dtype != p.dtype or u.shape != p.shape:
            return False
    return True


def check_moments(opt_state: Any, params: PyTree) -> None:
    """Refuses moments made for other params (same tree, other shapes), naming the leaf."""
    moments = [opt_state.mu, opt_state.nu] if hasattr(opt_state, "mu") else [opt_state.trace]
    flat = _trees.flatten_with_path(params)
    for tree in moments:
        leaves, treedef = _trees.flatten(tree)
        if treedef != _trees.flatten(params)[1]:
            raise _trees.structure_error(
                "the optimizer state's moments", tree, params,
                "The state was built for other params; rebuild it with this optimizer's init.")
        for (k, p), m in zip(flat, leaves, strict=True):
            if getattr(m, "shape", None) != getattr(p, "shape", None):
                raise ValueError(
                    f"the optimizer state's moment at {_trees.where(k)} has shape "
                    f"{getattr(m, 'shape', None)} but the params leaf has shape {p.shape}: "
                    "state built (or restored) for other params? Rebuild it with this "
                    "optimizer's init.")


@dataclasses.dataclass(frozen=True)
class Sibling:
    """What a fused step computes per leaf.

    ``adam``: Adam's two moments (``optax.ScaleByAdamState``), else SGD's
    momentum buffer (``optax.TraceState``). ``coupled``: the decay is L2 on
    the gradient (state ``(decay, moments, lr)``), else decoupled after the
    learning rate (state ``(moments, lr, decay)``).
    """

    adam: bool
    coupled: bool
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    momentum: float | None = None
    nesterov: bool = False

    def split(self, state: Any) -> tuple[Any, Any, Any] | None:
        """``(decay, optimizer, lr)`` states, or ``None`` for a state not of this recipe."""
        if not (isinstance(state, tuple) and len(state) == 3):
            return None
        dec_s, opt_s, lr_s = state if self.coupled else (state[2], state[0], state[1])
        kind = optax.ScaleByAdamState if self.adam else optax.TraceState
        return (dec_s, opt_s, lr_s) if isinstance(opt_s, kind) else None

    def leaf_fn(self, scale: Callable[[int, Any], Any], stage: Stage | None, step: Any,
                bc: tuple[Any, ...]) -> Callable[..., tuple[Any, ...]]:
        """The per-leaf step ``(i, g, p, *moments) -> (u, *new moments)``."""

        def leaf(i: int, g: Any, p: Any, *moments: Any) -> tuple[Any, ...]:
            decayed = stage is not None and step.plan.leaves[i].decayed
            gm = gu = gv = g
            if decayed and self.coupled:
                assert stage is not None
                gm = stage.apply(step, i, g, p)
                gu = stage.apply(step, i, g, p, sib.l2_negated)
                gv = stage.apply(step, i, g, p, sib.l2_subtracted)
            if self.adam:
                m_, v_ = moments
                m1, v1, m2, v2 = sib.adam_pair(gm, gu, m_, v_, self.b1, self.b2, gv)
                u = (m2 / jnp.asarray(bc[0]).astype(m2.dtype)) / (
                    jnp.sqrt(v2 / jnp.asarray(bc[1]).astype(v2.dtype) + self.eps_root) + self.eps)
                new: tuple[Any, ...] = (m1, v1.astype(v_.dtype))
            else:
                t1, u = sib.trace_pair(gm, gu, moments[0], cast(float, self.momentum), self.nesterov)
                new = (t1,)
            u = scale(i, u)
            if not self.coupled and stage is not None and (decayed or step.plan.leaves[i].residual):
                u = stage.apply(step, i, u, p)  # the decay, compensated where the plan says
            return (u, *new)

        return leaf

    def update(self, lr: LearningRate, stage: Stage | None, shared: bool
               ) -> Callable[[PyTree, Any, PyTree], tuple[PyTree, Any] | None]:
        """The sibling update; ``None`` for a state it does not recognise (the plain one runs).

        ``lr``: the recipe's learning-rate scaling (per-leaf rates read its
        plan, one leaf at a time); ``shared``: the decay's multiplier follows
        each leaf's eta_t, evaluated once for both.
        """

        def update_fn(updates: PyTree, state: Any, params: PyTree) -> tuple[PyTree, Any] | None:
            if not self.adam and self.momentum is None:
                return None  # plain SGD is one kernel per leaf as it is
            parts = self.split(state)
            if parts is None:
                return None
            dec_s, opt_s, lr_s = parts
            rates = Rates(getattr(lr_s, "count", None))
            scale = self.scale(lr, lr_s, rates, updates)
            given = {"learning_rate": rates.multiplier} if shared else None
            step = None if stage is None else stage.prepare(dec_s, params, given)
            g_leaves, treedef = jax.tree_util.tree_flatten(updates)
            p_leaves = treedef.flatten_up_to(params)
            check_moments(opt_s, params)
            if self.adam:
                count = optax.safe_increment(opt_s.count)
                bc: tuple[Any, ...] = (1 - self.b1**count, 1 - self.b2**count)
                moments = (opt_s.mu, opt_s.nu)
            else:
                count, bc, moments = None, (), (opt_s.trace,)
            leaf = self.leaf_fn(scale, stage, step, bc)
            cols = [treedef.flatten_up_to(m) for m in moments]
            rows = [leaf(i, *xs) for i, xs in enumerate(zip(g_leaves, p_leaves, *cols, strict=True))]
            outs = [jax.tree_util.tree_unflatten(treedef, [r[k] for r in rows])
                    for k in range(1 + len(moments))]
            if self.adam:
                opt_new: Any = opt_s._replace(count=count, mu=outs[1], nu=outs[2])
            else:
                opt_new = optax.TraceState(trace=outs[1])
            dec_new = dec_s if stage is None or step is None else stage.next_state(dec_s, step)
            lr_new = lr.next_state(lr_s)
            new_state = (dec_new, opt_new, lr_new) if self.coupled else (opt_new, lr_new, dec_new)
            return outs[0], new_state

        return update_fn

    @staticmethod
    def scale(lr: LearningRate, lr_s: Any, rates: Rates, updates: PyTree) -> Callable[[int, Any], Any]:
        """What ``scale_by_learning_rate`` does to leaf ``i``: one rate, or the leaf's own."""
        if lr.stage is None:
            factor = sib.lr_factor(lr.learning_rate, rates)
            return lambda i, u: sib.lr_scale(u, lr.learning_rate, factor)
        lr_step = lr.prepare(lr_s, updates, rates)
        return lambda i, u: lr.apply(lr_step, i, u)


def fused_transform(
    name: str, plain: optax.GradientTransformation,
    sibling: Callable[[PyTree, Any, PyTree], tuple[PyTree, Any] | None], formulation: Formulation,
) -> optax.GradientTransformation:
    """``plain.init`` and an update that picks the formulation at trace time."""

    def update_fn(updates: optax.Updates, state: Any, params: optax.Params | None = None) -> tuple[optax.Updates, Any]:
        use = formulation == "sibling" or (formulation == "auto" and multi_output_fusion_active())
        if use and params is not None and updates is not None and leaves_ok(updates, params):
            _trees.check_leaves(params, name)
            out = sibling(updates, state, params)
            if out is not None:
                return out
        return plain.update(updates, state, params)

    return optax.GradientTransformation(plain.init, update_fn)


def with_layout(
    name: str, tree: optax.GradientTransformation, flat: optax.GradientTransformation | None,
    layout: Layout, formulation: Formulation,
) -> optax.GradientTransformation:
    """Chooses the layout at ``init`` (the states differ); ``update`` follows the state."""
    if flat is None:
        return tree

    def init_fn(params: optax.Params) -> Any:
        use = layout == "flat" or (
            layout == "auto" and formulation != "plain" and multi_output_fusion_active()
            and not _trees.is_params_placeholder(params) and many_small_leaves(params))
        return (flat if use else tree).init(params)

    def update_fn(updates: optax.Updates, state: Any, params: optax.Params | None = None) -> tuple[optax.Updates, Any]:
        if is_flat_state(state):
            if layout == "tree":
                raise ValueError(
                    f"{name}(layout='tree') got a flat-moments state (a {FlatAdamState.__name__}, "
                    "made by layout='flat' or 'auto'); a checkpoint does not move between "
                    "layouts: build the optimizer with layout='flat' (or 'auto') for this state.")
            return flat.update(updates, state, params)
        if layout == "flat":
            kinds = [type(s).__name__ for s in state] if isinstance(state, tuple) else [type(state).__name__]
            raise ValueError(
                f"{name}(layout='flat') got a tree-layout state ({', '.join(kinds)}), not its "
                f"flat-moments state ({FlatAdamState.__name__}); a checkpoint does not move "
                "between layouts: build the optimizer with layout='tree' for this state, or "
                "call init of this optimizer.")
        return tree.update(updates, state, params)

    return optax.GradientTransformation(init_fn, update_fn)
