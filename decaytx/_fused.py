r"""Fused optimizer steps: AdamW, Adam-L2 and SGD(W) as one kernel per leaf.

XLA:CPU compiles ``decaytx.adamw`` (and ``optax.adamw``) to three kernels per
leaf: one per moment and one for the parameter update, which reads the
moments the first two wrote, 40 bytes per f32 parameter in all. The one-pass
minimum is 28 (read :math:`\theta, g, m, v`; write :math:`\theta, m, v`).
XLA:CPU can merge kernels that read the same inputs ("sibling" multi-output
fusion), but only when the option is on, and only when the update does not
consume the moment kernels' outputs. The steps here are written that way: the
update recomputes :math:`m_t, v_t` from the step's inputs with an expression
that is bitwise equal to the usual one but shares no subexpression with it
(``-(g·(-c) + m·(-b))`` for ``c·g + b·m``: IEEE negation is exact), so that
common-subexpression elimination cannot fold them back together. With

.. code-block:: shell

  XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion

each leaf is ONE kernel: 28 B/param for AdamW and Adam-L2, 20 B/param for
SGD with momentum (``tests/test_hlo_cost.py``).

Without the option that formulation is worse (60 B/param), so the step chooses
at trace time: the fused ("sibling") form only when multi-output fusion is
active on the CPU backend (the option is in ``XLA_FLAGS`` and a probe
compilation shows it at work), and otherwise exactly the plain recipe's
program. The option is process-wide and also changes how the rest of a
program fuses (see docs/performance.md): it is opt-in, never set here.

State: ``init`` is the plain recipe's ``init``, so the state is the same tree
(same types, dtypes and structure) and a checkpoint moves between a fused and
an unfused optimizer in both directions.

Many small leaves: ``fused_adamw`` and ``fused_adam_l2`` take ``layout=``.
On a tree of many small leaves a step costs per kernel, and ``layout="flat"``
(:mod:`decaytx._flat`) keeps Adam's moments in one flat buffer per dtype
instead, with its own state (no checkpoint compatibility with the tree
layout). ``layout="auto"`` picks it at ``init`` only when multi-output fusion
is active and the float leaves average under ``FLAT_MEAN_LEAF_SIZE`` elements.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any, Literal, cast

import jax
import jax.numpy as jnp
import optax

from decaytx import _base, _groups, _update_side
from decaytx import _coefficients as coef
from decaytx._coefficients import Coefficient
from decaytx._decoupled import _decoupled_term
from decaytx._flat import FlatAdamState, group_sizes, is_flat_state, scale_by_adam_flat
from decaytx._recipes import (
    DecayScaling,
    _adam,
    _decoupled_chain,
    _l2_chain,
    _momentum,
    adamw,
    decay_multiplier,
)

PyTree = Any
Formulation = Literal["auto", "sibling", "plain"]
Layout = Literal["auto", "tree", "flat"]

# layout="auto" takes the flat moments when the float leaves' mean size is
# below this many elements: the measured break-even (flat / tree step time
# 0.59 at 4K, 0.88-1.02 at 8K, 1.04-1.26 at 16K; docs/performance.md, "Many
# small leaves: flat moments", experiments/measure_flat_moments.py).
FLAT_MEAN_LEAF_SIZE = 8192

FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"
_FLAG_NAME = "xla_cpu_use_multi_output_fusion"


# ---------------------------------------------------------------------------
# Is multi-output fusion on?


@functools.cache
def _probe(backend: str) -> bool:
    # Two outputs that read the same input: one kernel with multi-output
    # fusion, two without.
    compiled = jax.jit(lambda x: (x * 2.0, x * 3.0 + 1.0), backend=backend).lower(
        jax.ShapeDtypeStruct((64,), jnp.float32)
    ).compile()
    text = compiled.as_text() or ""
    entry = text[text.find("\nENTRY"):]
    return entry.count(" fusion(") == 1


def multi_output_fusion_active() -> bool:
    """Whether XLA:CPU's multi-output fusion is active in this process.

    True when the default backend is CPU, ``XLA_FLAGS`` carries
    ``xla_cpu_use_multi_output_fusion`` and a probe compilation (two outputs
    of one input, cached per process) compiles to one kernel: the flags are
    read when the backend starts, so setting them later has no effect and the
    probe says so.

    Returns:
      ``True`` if the fused formulation compiles to one kernel per leaf here.

    Examples:
      >>> import decaytx
      >>> isinstance(decaytx.multi_output_fusion_active(), bool)
      True
    """
    if jax.default_backend() != "cpu":
        return False
    if _FLAG_NAME not in os.environ.get("XLA_FLAGS", ""):
        return False
    return _probe("cpu")


# ---------------------------------------------------------------------------
# Per-leaf maths, each as a pair: the value the state stores (as the plain
# recipe computes it) and the same value recomputed for the update with no
# subexpression in common (bitwise equal: IEEE negation is exact, and
# -(-a + -b) == a + b, a * -c == -(a * c) in every rounding mode that is
# symmetric, which round-to-nearest is).


def _l2_triple(
    g: jax.Array, p: jax.Array, a: jax.Array | None, wd: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``g + wd (p - a)`` (as ``add_l2_grad``) three times, with nothing shared.

    One copy feeds each of the two moments and one the update, so that no
    penalised gradient is ever materialised between kernels.
    """
    d = p if a is None else p - a
    first = (g + wd * d).astype(g.dtype)
    neg = p * (-wd) if a is None else (a - p) * wd  # == -(wd * d), exactly
    second = (-((-g) + neg)).astype(g.dtype)
    neg3 = (-p) * wd if a is None else (a + (-p)) * wd  # == -(wd * d), exactly
    third = (g - neg3).astype(g.dtype)
    return first, second, third


def _adam_pair(
    gm: jax.Array, gu: jax.Array, m: jax.Array, v: jax.Array, b1: float, b2: float,
    gv: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Adam's moments as ``optax.scale_by_adam`` writes them, and siblings.

    ``gm``/``gv`` feed the stored first/second moments (``gv`` defaults to
    ``gm``), ``gu`` the recomputed ones.
    """
    gv = gm if gv is None else gv
    m1 = (1 - b1) * gm + b1 * m
    v1 = (1 - b2) * (gv**2) + b2 * v
    m2 = -(gu * (-(1 - b1)) + m * (-b1))
    v2 = -((gu * (-gu)) * (1 - b2) + v * (-b2))
    return m1, v1, m2, v2


def _trace_pair(
    gm: jax.Array, gu: jax.Array, t: jax.Array, mu: float, nesterov: bool
) -> tuple[jax.Array, jax.Array]:
    """``optax.trace``'s buffer ``g + mu t`` and the update it gives, as a sibling."""
    t1 = gm + mu * t
    t2 = -((-gu) + t * (-mu))
    return t1, (gu + mu * t2 if nesterov else t2)


def _lr_value(learning_rate: Any, lr_state: Any) -> Any:
    """The factor ``optax.scale_by_learning_rate`` multiplies by, before its cast."""
    if callable(learning_rate):
        return -1 * jnp.asarray(learning_rate(lr_state.count))
    return -1 * learning_rate


def _lr_scale(u: jax.Array, learning_rate: Any, step: Any) -> jax.Array:
    """What ``optax.scale_by_learning_rate`` does to one leaf (``step`` from :func:`_lr_value`)."""
    if callable(learning_rate):
        return jnp.array(step, dtype=u.dtype) * u
    return step * u


def _lr_next(learning_rate: Any, lr_state: Any) -> Any:
    if callable(learning_rate):
        return optax.ScaleByScheduleState(count=optax.safe_increment(lr_state.count))
    return lr_state


# ---------------------------------------------------------------------------
# The decay stages, as decaytx's transforms compute them (same scalars, same
# casts), with the state they advance.


class _Decay:
    """One decay stage of a chain: its coefficients, mask and anchor."""

    def __init__(self, coefficients: dict[str, Any], mask: Any, combine: Callable[[dict[str, Any]], Any]) -> None:
        self.coefficients = coefficients
        self.mask = mask
        self.combine = combine
        self.needs_count = any(coef.is_schedule(v) for v in coefficients.values())

    def scalar(self, state: Any) -> jax.Array:
        count = state.count if isinstance(state, _base.DecayState) else None
        values = {k: coef.value_at(v, count) for k, v in self.coefficients.items()}
        return self.combine(values)

    def next_state(self, state: Any) -> Any:
        if isinstance(state, _base.DecayState) and state.count is not None:
            return state._replace(count=jnp.asarray(optax.safe_increment(state.count)))
        return state

    def anchors(self, state: Any, params: PyTree) -> list[Any]:
        leaves = jax.tree_util.tree_leaves(params)
        if isinstance(state, _base.DecayState) and state.anchor is not None:
            flat = jax.tree_util.tree_leaves(state.anchor, is_leaf=lambda x: isinstance(x, optax.MaskedNode))
            return [None if isinstance(a, optax.MaskedNode) else a for a in flat]
        return [None] * len(leaves)

    def mask_leaves(self, params: PyTree) -> list[bool]:
        return jax.tree_util.tree_leaves(_base.resolve_mask(self.mask, params))


def _decay_state_ok(state: Any) -> bool:
    return isinstance(state, (optax.EmptyState, _base.DecayState))


def _leaves_ok(updates: PyTree, params: PyTree) -> bool:
    """Whether every leaf is a real float array whose update has its dtype and shape.

    Anything else (None or masked leaves, integers, complex numbers, f32
    updates for bf16 params) takes the plain program, which handles it.
    """
    try:
        u_leaves, u_def = jax.tree_util.tree_flatten(updates, is_leaf=_base._is_leaf)
        p_leaves, p_def = jax.tree_util.tree_flatten(params, is_leaf=_base._is_leaf)
    except TypeError:
        return False
    if u_def != p_def:
        return False
    for u, p in zip(u_leaves, p_leaves, strict=True):
        if _base._is_leaf(u) or _base._is_leaf(p) or not hasattr(p, "dtype") or not hasattr(u, "dtype"):
            return False
        if not jnp.issubdtype(p.dtype, jnp.floating) or u.dtype != p.dtype or u.shape != p.shape:
            return False
    return True


# ---------------------------------------------------------------------------
# The wrapper every fused step shares.


def _check_formulation(formulation: Any) -> Formulation:
    if formulation not in ("auto", "sibling", "plain"):
        raise ValueError(
            f"formulation={formulation!r} is not understood; pass 'auto' (fused "
            "when XLA:CPU multi-output fusion is on, else the plain recipe), "
            "'sibling' (always the fused formulation) or 'plain' (always the "
            "recipe's program)."
        )
    return formulation


def _fused_transform(
    name: str,
    plain: optax.GradientTransformation,
    sibling: Callable[[PyTree, Any, PyTree], tuple[PyTree, Any] | None],
    formulation: Formulation,
) -> optax.GradientTransformation:
    """``plain.init`` and an update that picks the formulation at trace time.

    ``sibling(updates, state, params)`` returns ``None`` when it does not
    recognise the state (then the plain update runs).
    """

    def update_fn(updates: optax.Updates, state: Any, params: optax.Params | None = None) -> tuple[optax.Updates, Any]:
        use = formulation == "sibling" or (formulation == "auto" and multi_output_fusion_active())
        if use and params is not None and _leaves_ok(updates, params):
            _base.check_leaves(params, name)
            out = sibling(updates, state, params)
            if out is not None:
                return out
        return plain.update(updates, state, params)

    return optax.GradientTransformation(plain.init, update_fn)


def _check_layout(layout: Any) -> Layout:
    if layout not in ("auto", "tree", "flat"):
        raise ValueError(
            f"layout={layout!r} is not understood; pass 'auto' (flat moments "
            "when multi-output fusion is active and the float leaves average "
            f"under {FLAT_MEAN_LEAF_SIZE} elements, else the tree), 'tree' "
            "(the recipe's state, one fused kernel per leaf) or 'flat' (Adam's "
            "moments in one buffer per dtype; its own state)."
        )
    return layout


def many_small_leaves(params: PyTree) -> bool:
    """The ``layout="auto"`` rule: float leaves averaging under ``FLAT_MEAN_LEAF_SIZE`` elements."""
    sizes = group_sizes(params)
    return bool(sizes) and sum(sizes) < FLAT_MEAN_LEAF_SIZE * len(sizes)


def _with_layout(
    name: str, tree: optax.GradientTransformation, flat: optax.GradientTransformation,
    layout: Layout, formulation: Formulation,
) -> optax.GradientTransformation:
    """Chooses the layout at ``init`` (the states differ); ``update`` follows the state."""
    flat_ok = layout != "tree"

    def init_fn(params: optax.Params) -> Any:
        use = layout == "flat" or (
            layout == "auto" and formulation != "plain" and multi_output_fusion_active()
            and many_small_leaves(params))
        return (flat if use else tree).init(params)

    def update_fn(updates: optax.Updates, state: Any, params: optax.Params | None = None) -> tuple[optax.Updates, Any]:
        if is_flat_state(state):
            if not flat_ok:
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


def _map_leaves(fn: Callable[..., tuple[Any, ...]], n_out: int, treedef: Any, *columns: list[Any]) -> list[PyTree]:
    """Applies ``fn`` leaf by leaf over flat columns; unflattens each output."""
    rows = [fn(*xs) for xs in zip(*columns, strict=True)]
    return [jax.tree_util.tree_unflatten(treedef, [r[i] for r in rows]) for i in range(n_out)]


# ---------------------------------------------------------------------------
# The one sibling step both families share.


@dataclasses.dataclass(frozen=True)
class _Step:
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
    momentum: float | None = None
    nesterov: bool = False
    cautious: bool = False

    def sibling(
        self, learning_rate: Any, decay: _Decay | None
    ) -> Callable[[PyTree, Any, PyTree], tuple[PyTree, Any] | None]:
        b1, b2, eps = self.b1, self.b2, self.eps

        def sibling(updates: PyTree, state: Any, params: PyTree) -> tuple[PyTree, Any] | None:
            if not self.adam and self.momentum is None:
                return None  # plain SGD is one kernel per leaf as it is
            if not (isinstance(state, tuple) and len(state) == 3):
                return None
            dec_s, opt_s, lr_s = state if self.coupled else (state[2], state[0], state[1])
            kind = optax.ScaleByAdamState if self.adam else optax.TraceState
            if not isinstance(opt_s, kind) or not _decay_state_ok(dec_s):
                return None
            opt_s = cast(Any, opt_s)
            g_leaves, treedef = jax.tree_util.tree_flatten(updates)
            p_leaves = treedef.flatten_up_to(params)
            n = len(p_leaves)
            count = None
            if self.adam:
                count = optax.safe_increment(opt_s.count)
                bc: tuple[Any, ...] = (1 - b1**count, 1 - b2**count)
                moments = (opt_s.mu, opt_s.nu)
            else:
                bc, moments = (), (opt_s.trace,)
            rate = decay.scalar(dec_s) if decay else jnp.zeros([])  # unread without a decay
            step = _lr_value(learning_rate, lr_s)
            masks = decay.mask_leaves(params) if decay else [False] * n
            anchors = decay.anchors(dec_s, params) if decay else [None] * n

            def leaf(g: Any, p: Any, keep: bool, a: Any, *moments: Any) -> tuple[Any, ...]:
                decayed = keep and decay is not None
                if decayed and self.coupled:
                    a_ = None if a is None else a.astype(g.dtype)
                    gm, gu, gv = _l2_triple(g, p.astype(g.dtype), a_, coef.cast_for(rate, g))
                else:
                    gm = gu = gv = g
                if self.adam:
                    m_, v_ = moments
                    m1, v1, m2, v2 = _adam_pair(gm, gu, m_, v_, b1, b2, gv)
                    u = (m2 / jnp.asarray(bc[0]).astype(m2.dtype)) / (
                        jnp.sqrt(v2 / jnp.asarray(bc[1]).astype(v2.dtype) + 0.0) + eps)
                    new: tuple[Any, ...] = (m1, v1.astype(v_.dtype))
                else:
                    t1, u = _trace_pair(gm, gu, moments[0], cast(float, self.momentum), self.nesterov)
                    new = (t1,)
                u = _lr_scale(u, learning_rate, step)
                if decayed and not self.coupled:
                    a_ = None if a is None else a.astype(u.dtype)
                    u = _decoupled_term(u, p.astype(u.dtype), a_, coef.cast_for(rate, u), self.cautious).astype(u.dtype)
                return (u, *new)

            outs = _map_leaves(
                leaf, 1 + len(moments), treedef,
                g_leaves, p_leaves, masks, anchors, *[treedef.flatten_up_to(m) for m in moments])
            if self.adam:
                opt_new: Any = opt_s._replace(count=count, mu=outs[1], nu=outs[2])
            else:
                opt_new = optax.TraceState(trace=outs[1])
            dec_new = decay.next_state(dec_s) if decay else dec_s
            lr_new = _lr_next(learning_rate, lr_s)
            return outs[0], ((dec_new, opt_new, lr_new) if self.coupled else (opt_new, lr_new, dec_new))

        return sibling


def _per_leaf(weight_decay: Any, formulation: Formulation) -> Formulation:
    """``"plain"`` for a coefficient tree or ``per_leaf`` (the sibling step takes one scalar)."""
    return "plain" if _groups.is_tree(weight_decay) else formulation


def _decoupled(learning_rate: Any, weight_decay: Coefficient, decay_scaling: str, mask: Any,
               name: str) -> _Decay | None:
    """The decoupled stage ``u - m_t lambda_t (theta - a)``, or None when it is zero."""
    if _groups.is_tree(weight_decay):
        return None  # unread: _per_leaf makes such a step plain
    mult = _update_side.multiplier(decay_multiplier(learning_rate, decay_scaling), name)
    if coef.is_zero(weight_decay) or coef.is_zero(mult):
        return None
    return _Decay({"weight_decay": weight_decay, "learning_rate": mult}, mask,
                  lambda v: v["learning_rate"] * v["weight_decay"])


def _coupled(weight_decay: Coefficient, mask: Any) -> _Decay | None:
    """The L2 stage ``g + lambda_t (theta - a)``, or None when it is zero."""
    if _groups.is_tree(weight_decay) or coef.is_zero(weight_decay):
        return None
    return _Decay({"weight_decay": weight_decay}, mask, lambda v: v["weight_decay"])


# ---------------------------------------------------------------------------
# Public steps


def fused_adamw(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Coefficient,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    mask: Any = None,
    decay_scaling: DecayScaling = "lr",
    cautious: bool = False,
    anchor: Any = None,
    formulation: Formulation = "auto",
    layout: Layout = "auto",
) -> optax.GradientTransformation:
    r""":func:`decaytx.adamw` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        - m_t \lambda (\theta_t - a)

    The same maths, arguments, state and values as :func:`decaytx.adamw`
    (bitwise on XLA:CPU, see ``tests/test_fused.py``), written so that the
    moments and the update are sibling computations over
    :math:`(\theta, g, m, v)`. With
    ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
    each leaf compiles to one kernel moving 28 bytes per f32 parameter (40 for
    ``optax.adamw``); without it (or off CPU) the update is exactly
    :func:`decaytx.adamw`'s program. See :func:`multi_output_fusion_active`.
    Known limit: a learning-rate schedule with ``decay_scaling`` tied to it
    and a ``mask`` that decays only some leaves splits each decayed leaf into
    3 kernels again (docs/performance.md, "Fused steps").

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`.
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      decay_scaling: ``"lr"``, ``"schedule"``, ``"none"`` or ``"corrected"``
        (see :func:`decaytx.adamw`).
      cautious: decay only the coordinates the step moves toward the anchor.
      anchor: ``None`` (toward 0), ``"init"`` or a pytree like params, as in
        :func:`decaytx.add_decoupled_decay` (read once more per step: +4 B/param).
      formulation: ``"auto"`` (fused exactly when multi-output fusion is
        active), ``"sibling"`` (always the fused formulation: for
        measurements) or ``"plain"`` (always the recipe's program). A
        coefficient tree or ``per_leaf`` ``weight_decay`` always takes the
        recipe's program in the tree layout.
      layout: where Adam's moments live, chosen at ``init`` from the params
        (the states differ). ``"tree"``: like params, the recipe's state.
        ``"flat"``: one flat buffer per dtype (:mod:`decaytx._flat`; the
        decay stage is still the recipe's per-leaf transform, so masks,
        coefficient trees, schedules, anchors and ``decay_scaling`` work
        unchanged); the state is NOT the recipe's, and a checkpoint does not
        move between layouts (an update with the other layout's state raises
        a ``ValueError`` naming ``layout=``). ``"auto"`` (default): ``"flat"``
        exactly when multi-output fusion is active, ``formulation`` is not
        ``"plain"`` and the params' float leaves average under
        ``FLAT_MEAN_LEAF_SIZE`` = 8192 elements (measured with the flag,
        ``experiments/measure_flat_moments.py``: flat / tree step time 0.37
        on 309 leaves averaging 1.8K elements, 0.59 on 4K leaves, 0.91 on 8K,
        1.04 on 16K, 1.9 on 64K, 3.0 on 100 leaves of 160K, 1.10 on one 16M
        leaf; docs/performance.md, "Many small leaves: flat moments");
        otherwise ``"tree"``, so without the flag ``"auto"`` is exactly the
        tree layout.

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.adamw`'s
      (in the tree layout).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.fused_adamw(0.1, 0.01)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates  # eta * lambda * theta, as decaytx.adamw
      Array([-0.001,  0.002], dtype=float32)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
      `XLA flags <https://openxla.org/xla/flags_guidance>`_.
    """
    formulation = _per_leaf(weight_decay, _check_formulation(formulation))
    layout = _check_layout(layout)
    plain = adamw(learning_rate, weight_decay, b1=b1, b2=b2, eps=eps, mask=mask, anchor=anchor,
                  decay_scaling=decay_scaling, cautious=cautious)
    decay = _decoupled(learning_rate, weight_decay, decay_scaling, mask, "fused_adamw")
    step = _Step(adam=True, coupled=False, b1=b1, b2=b2, eps=eps, cautious=cautious)
    tree = _fused_transform("fused_adamw", plain, step.sibling(learning_rate, decay), formulation)
    flat = _decoupled_chain(learning_rate, weight_decay, decay_scaling, mask, anchor, cautious,
                            lambda: scale_by_adam_flat(b1, b2, eps))
    return _with_layout("fused_adamw", tree, flat, layout, formulation)


def fused_adam_l2(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Coefficient,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    mask: Any = None,
    anchor: Any = None,
    formulation: Formulation = "auto",
    layout: Layout = "auto",
) -> optax.GradientTransformation:
    r""":func:`decaytx.adam_l2` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      g_t \leftarrow g_t + \lambda(\theta_t - a), \qquad
      \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    The same maths, arguments, state and values as :func:`decaytx.adam_l2`
    (bitwise on XLA:CPU), written as sibling computations: with
    ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
    one kernel per leaf at 28 B/param (the plain chain: 48); otherwise exactly
    :func:`decaytx.adam_l2`'s program. See :func:`fused_adamw`.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      b1: decay of the first moment.
      b2: decay of the second moment.
      eps: :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`.
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      anchor: ``None``, ``"init"`` or a pytree like params (as
        :func:`decaytx.add_l2_grad`).
      formulation: ``"auto"``, ``"sibling"`` or ``"plain"`` (see :func:`fused_adamw`).
      layout: ``"auto"``, ``"tree"`` or ``"flat"``: Adam's moments like
        params or in one flat buffer per dtype, chosen at ``init`` (see
        :func:`fused_adamw`; the flat state is not the recipe's).

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.adam_l2`'s
      (in the tree layout).

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.fused_adam_l2(0.1, 0.01)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> [round(float(u), 4) for u in updates]
      [-0.1, 0.1]

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, ICLR 2015.
    """
    formulation = _per_leaf(weight_decay, _check_formulation(formulation))
    layout = _check_layout(layout)
    plain = _l2_chain(learning_rate, weight_decay, mask, anchor,
                      lambda: _adam(b1, b2, eps, 0.0, None, False, False))
    step = _Step(adam=True, coupled=True, b1=b1, b2=b2, eps=eps)
    tree = _fused_transform("fused_adam_l2", plain, step.sibling(learning_rate, _coupled(weight_decay, mask)),
                            formulation)
    flat = _l2_chain(learning_rate, weight_decay, mask, anchor, lambda: scale_by_adam_flat(b1, b2, eps))
    return _with_layout("fused_adam_l2", tree, flat, layout, formulation)


def fused_sgdw(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Coefficient,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    mask: Any = None,
    decay_scaling: DecayScaling = "lr",
    anchor: Any = None,
    formulation: Formulation = "auto",
) -> optax.GradientTransformation:
    r""":func:`decaytx.sgdw` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      b_t = \mu b_{t-1} + g_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \,(b_t \text{ or } g_t + \mu b_t)
        - m_t \lambda (\theta_t - a)

    The same maths, arguments, state and values as :func:`decaytx.sgdw`
    (bitwise on XLA:CPU). With momentum and
    ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion``
    each leaf is one kernel at 20 B/param (read :math:`\theta, g, b`; write
    :math:`\theta, b`); otherwise exactly :func:`decaytx.sgdw`'s program
    (without momentum that is one kernel per leaf already).

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      momentum: :math:`\mu \in [0, 1)` (PyTorch convention), or ``None``.
      nesterov: Nesterov momentum (needs ``momentum``).
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      decay_scaling: ``"lr"``, ``"schedule"``, ``"none"`` or ``"corrected"``.
      anchor: ``None``, ``"init"`` or a pytree like params.
      formulation: ``"auto"``, ``"sibling"`` or ``"plain"`` (see :func:`fused_adamw`).

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.sgdw`'s.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.fused_sgdw(0.1, 0.01, momentum=0.9, decay_scaling="none")
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates
      Array([-0.01,  0.02], dtype=float32)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
    """
    formulation = _per_leaf(weight_decay, _check_formulation(formulation))
    plain = _decoupled_chain(learning_rate, weight_decay, decay_scaling, mask, anchor, False,
                             lambda: _momentum(momentum, nesterov))
    decay = _decoupled(learning_rate, weight_decay, decay_scaling, mask, "fused_sgdw")
    step = _Step(adam=False, coupled=False, momentum=momentum, nesterov=nesterov)
    return _fused_transform("fused_sgdw", plain, step.sibling(learning_rate, decay), formulation)


def fused_sgd_l2(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: Coefficient,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    mask: Any = None,
    anchor: Any = None,
    formulation: Formulation = "auto",
) -> optax.GradientTransformation:
    r""":func:`decaytx.sgd_l2` as one kernel per leaf (with XLA:CPU multi-output fusion).

    .. math::
      g_t \leftarrow g_t + \lambda(\theta_t - a), \qquad
      b_t = \mu b_{t-1} + g_t, \qquad
      \theta_{t+1} = \theta_t - \eta_t \,(b_t \text{ or } g_t + \mu b_t)

    The same maths, arguments, state and values as :func:`decaytx.sgd_l2`
    (bitwise on XLA:CPU): with momentum and the multi-output-fusion flag one
    kernel per leaf at 20 B/param; otherwise exactly :func:`decaytx.sgd_l2`'s
    program.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule of the step count.
      weight_decay: :math:`\lambda \ge 0`, a float, a scalar array or a schedule.
      momentum: :math:`\mu \in [0, 1)`, or ``None``.
      nesterov: Nesterov momentum (needs ``momentum``).
      mask: which leaves to decay (see :func:`decaytx.add_l2_grad`).
      anchor: ``None``, ``"init"`` or a pytree like params.
      formulation: ``"auto"``, ``"sibling"`` or ``"plain"`` (see :func:`fused_adamw`).

    Returns:
      An ``optax.GradientTransformation`` whose state is :func:`decaytx.sgd_l2`'s.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.fused_sgd_l2(0.1, 0.5, momentum=0.9)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
      >>> updates
      Array([-0.05,  0.1 ], dtype=float32)

    References:
      `torch.optim.SGD
      <https://pytorch.org/docs/stable/generated/torch.optim.SGD.html>`_.
    """
    formulation = _per_leaf(weight_decay, _check_formulation(formulation))
    plain = _l2_chain(learning_rate, weight_decay, mask, anchor, lambda: _momentum(momentum, nesterov))
    step = _Step(adam=False, coupled=True, momentum=momentum, nesterov=nesterov)
    return _fused_transform("fused_sgd_l2", plain, step.sibling(learning_rate, _coupled(weight_decay, mask)),
                            formulation)
