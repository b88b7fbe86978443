r"""A run-time monitor of what the decay does: :func:`monitor` and :func:`monitor_stats`.

:func:`monitor` wraps an optimizer and returns its updates unchanged; its
state keeps, per decayed leaf (or per group of leaves), six float32 numbers
measured at the last ``update``: the norm :math:`\lVert\theta_t\rVert`, the
norm of the decay applied, the effective rate :math:`r_t = m_t\lambda_t`, the
timescale :math:`1/r_t` (in steps, and as a fraction of the horizon), and the
angle between :math:`\theta_t` and :math:`\theta_{t+1} = \theta_t + u_t`.

The decay is not re-run to see what it did (that would double its cost). Which
leaves are decayed, and with which coefficients, comes from the plans every
decaytx transform emits at ``init`` (:mod:`decaytx._hook`, the audit's
route); the applied decay of a decoupled form toward zero is then the closed
form :math:`m_t\lambda_t\lVert\theta_t\rVert`, from the norm the monitor
computes anyway. The per-step work is three sums per decayed leaf
(:math:`\theta\cdot\theta`, :math:`\theta\cdot u`, :math:`u\cdot u`) and a
few small array operations for all the keys together.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _coefficients as coef
from decaytx import _hook, _schedules, _trees

__all__ = ["MonitorState", "MonitorStats", "monitor", "monitor_stats"]

_STATS = ("norm", "decay", "rate", "timescale", "horizon_fraction", "angle")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MonitorStats:
    r"""The stats of the last ``update``, one row per key (read them with :func:`monitor_stats`).

    Attributes:
      values: float32 ``[len(keys), 6]``, the columns ``norm``, ``decay``,
        ``rate``, ``timescale``, ``horizon_fraction``, ``angle``:

        - ``norm``: :math:`\lVert\theta_t\rVert`, before the step;
        - ``decay``: the norm of the decay the decaytx transforms applied this
          step, :math:`m_t\lambda_t\lVert\theta_t\rVert`; NaN where it has no
          closed form here (an anchor other than zero, cautious decay, a
          proximal or gradient-side form on the leaf);
        - ``rate``: the per-step factor :math:`m_t\lambda_t` of the decoupled
          decay (summed over the transforms on a leaf); NaN without one;
        - ``timescale``: :math:`1/(m_t\lambda_t)`, in steps;
        - ``horizon_fraction``: the timescale over the horizon :math:`T` of a
          :func:`decaytx.with_horizon` in the multiplier or the coefficient;
          NaN without one;
        - ``angle``: the angle between :math:`\theta_t` and
          :math:`\theta_t + u_t`, in radians.
      keys: the leaves' paths or the groups' prefixes (static: part of the
        state's structure, so they survive ``jit`` and ``lax.scan``).
    """

    values: jax.Array
    keys: tuple[str, ...] = dataclasses.field(metadata={"static": True})


class MonitorState(NamedTuple):
    """The state of :func:`monitor`: the wrapped optimizer's state and the stats.

    Attributes:
      inner: the wrapped optimizer's state.
      count: int32 count of ``update`` calls (the step the schedules are
        evaluated at).
      stats: the :class:`MonitorStats` of the last ``update`` (NaN before).
    """

    inner: Any
    count: jax.Array  # pyright: ignore[reportIncompatibleMethodOverride]
    stats: MonitorStats


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """One decayed params leaf, as the plans describe it (static)."""

    path: str
    index: int  # in the params' flattened leaves
    terms: tuple[tuple[Any, Any], ...]  # (m, lambda) of each decoupled transform
    decay_known: bool  # every transform on it is a decoupled decay toward 0, not cautious
    horizon: int | None


def _horizon(v: Any, depth: int = 0) -> int | None:
    """The ``total_steps`` of a :func:`decaytx.with_horizon` in ``v`` (or its closure)."""
    if isinstance(v, _schedules.HorizonSchedule):
        return v.total_steps
    if depth >= 3 or not callable(v):
        return None
    inner = [c.cell_contents for c in (getattr(v, "__closure__", None) or ())
             if not isinstance(c.cell_contents, type)] if hasattr(v, "__closure__") else []
    inner += [getattr(v, "func", None), *getattr(v, "args", ())]
    found = [h for x in inner if x is not None for h in [_horizon(x, depth + 1)] if h is not None]
    return min(found) if found else None


def _known(v: Any) -> bool:
    """Whether a coefficient can be evaluated by the monitor (no tracer of another trace)."""
    return not any(coef.is_traced(x) for x in jax.tree_util.tree_leaves(v))


def _leaves(plans: Sequence[_hook.TransformPlan], paths: list[str]) -> list[_Leaf]:
    """The decayed leaves, in params order, with the decoupled terms acting on each."""
    acting: dict[str, list[tuple[_hook.TransformPlan, _hook.LeafPlan]]] = {}
    for plan in plans:
        for lp in plan.leaves:
            if lp.decayed:
                acting.setdefault(lp.path, []).append((plan, lp))
    out = []
    for i, path in enumerate(paths):
        if path not in acting:
            continue
        terms, known, horizons = [], True, []
        for plan, lp in acting[path]:
            decoupled = plan.side == "update" and plan.rates == ("weight_decay",)
            if not decoupled:
                known = False
                continue
            m = plan.multiplier if lp.multiplier is None else lp.multiplier
            lam = lp.coefficients["weight_decay"]
            # A tracer of another trace (init under jit with traced hyperparameters)
            # cannot be kept: the rate is then unknown (NaN), never a leaked tracer.
            terms.append((m, lam) if _known(m) and _known(lam) else (math.nan, math.nan))
            known = known and lp.anchor == "zero" and not plan.cautious
            horizons += [h for h in (_horizon(m), _horizon(lam)) if h is not None]
        out.append(_Leaf(path, i, tuple(terms), known and bool(terms),
                         min(horizons) if horizons else None))
    return out


def _matches(path: str, prefix: str) -> bool:
    return prefix == "" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _assign(leaves: list[_Leaf], groups: Sequence[str] | None) -> dict[str, list[_Leaf]]:
    """Key -> its leaves: the longest matching prefix of ``groups``, else the leaf's own path."""
    if groups is None:
        return {lf.path: [lf] for lf in leaves}
    out: dict[str, list[_Leaf]] = {}
    for lf in leaves:
        hits = [g for g in groups if _matches(lf.path, g)]
        out.setdefault(max(hits, key=len) if hits else lf.path, []).append(lf)
    unused = [g for g in groups if g not in out]
    if unused:
        shown = ", ".join(repr(lf.path) for lf in leaves[:8]) + (" ..." if len(leaves) > 8 else "")
        raise ValueError(
            f"monitor(groups=...): the prefixes {unused!r} match no decayed leaf (or "
            f"only leaves a longer prefix takes). The decayed leaves are: {shown or 'none'}. "
            "A prefix matches a path equal to it or starting with it and '/'; '' matches all.")
    return out


def _check_groups(groups: Any) -> tuple[str, ...] | None:
    if groups is None:
        return None
    if isinstance(groups, str) or not all(isinstance(g, str) for g in groups):
        raise TypeError(
            f"monitor(groups={groups!r}) must be a sequence of path prefixes (strings), "
            "e.g. groups=['encoder', 'decoder/layer_0'].")
    return tuple(groups)


def _ident(v: Any) -> Any:
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return ("number", float(v))
    return ("object", id(v))


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What one step computes, as static index arrays (``L`` monitored leaves,
    ``K`` keys, ``J`` distinct terms, ``P`` (leaf, term) pairs): sizes linear in
    the leaves, never ``K x L`` (a model of 10,000 leaves stays cheap)."""

    keys: tuple[str, ...]
    index: tuple[int, ...]  # [L] the params leaf of each monitored leaf
    segment: np.ndarray  # [L] the key of each leaf (sorted: a key's leaves are contiguous)
    terms: tuple[tuple[Any, Any], ...]  # [J] the distinct (m, lambda)
    pair_leaf: np.ndarray  # [P] the leaf of each (leaf, term) pair
    pair_term: np.ndarray  # [P] the term of each pair
    rated: np.ndarray  # [L] 1 where a decoupled decay acts on the leaf
    known: np.ndarray  # [K] the decay's norm is known for every leaf of the key
    horizon: np.ndarray  # [K] the smallest horizon of the key, NaN for none


def _build(leaves: list[_Leaf], groups: Sequence[str] | None) -> _Layout:
    by_key = _assign(leaves, groups)
    order = [lf for members in by_key.values() for lf in members]
    slot: dict[Any, int] = {}
    terms, pairs = [], []
    for i, lf in enumerate(order):
        for m, lam in lf.terms:
            key = (_ident(m), _ident(lam))
            if key not in slot:
                slot[key] = len(terms)
                terms.append((m, lam))
            pairs.append((i, slot[key]))
    segment = np.repeat(np.arange(len(by_key), dtype=np.int32),
                        [len(members) for members in by_key.values()])
    known = [all(lf.decay_known for lf in members) for members in by_key.values()]
    horizon = [min((lf.horizon for lf in members if lf.horizon is not None), default=math.nan)
               for members in by_key.values()]
    pair = np.array(pairs, np.int32).reshape(-1, 2)
    return _Layout(tuple(by_key), tuple(lf.index for lf in order), segment, tuple(terms),
                   pair[:, 0], pair[:, 1], np.array([float(bool(lf.terms)) for lf in order], np.float32),
                   np.array(known, bool), np.array(horizon, np.float32))


def _nan_stats(keys: tuple[str, ...]) -> MonitorStats:
    return MonitorStats(jnp.full((len(keys), len(_STATS)), jnp.nan, jnp.float32), keys)


def _sums(p: jax.Array, u: Any) -> tuple[jax.Array, ...]:
    """``(theta.theta, theta.u, u.u)`` in float32.

    Three plain reductions, not one variadic ``lax.reduce``: XLA:CPU runs a
    variadic reduction as a scalar loop (2.5x slower than the three
    vectorised ones on a 4M leaf), and XLA:GPU fuses sibling reductions of
    the same inputs into one kernel anyway.
    """
    wide = jnp.promote_types(p.dtype, jnp.float32)
    p = p.astype(wide)
    u = jnp.zeros_like(p) if _trees.is_empty(u) else u.astype(wide)
    f32 = jnp.float32
    if jnp.issubdtype(wide, jnp.complexfloating):
        return (jnp.sum(jnp.real(jnp.conj(p) * p)).astype(f32),
                jnp.sum(jnp.real(jnp.conj(p) * u)).astype(f32),
                jnp.sum(jnp.real(jnp.conj(u) * u)).astype(f32))
    return jnp.sum(p * p).astype(f32), jnp.sum(p * u).astype(f32), jnp.sum(u * u).astype(f32)


def _rates(layout: _Layout, count: jax.Array) -> jax.Array:
    """``[L]``: each leaf's :math:`\\sum_j m_j(t)\\lambda_j(t)` (float32)."""
    if not layout.terms:
        return jnp.zeros(len(layout.index), jnp.float32)
    v = jnp.stack([
        (jnp.real(coef.value_at(m, count)) * jnp.real(coef.value_at(lam, count))).astype(jnp.float32)
        for m, lam in layout.terms])
    return jax.ops.segment_sum(v[layout.pair_term], layout.pair_leaf, len(layout.index),
                               indices_are_sorted=True)


def _stats(layout: _Layout, sums: jax.Array, count: jax.Array) -> jax.Array:
    """``[K, 6]`` from the leaves' ``[L, 3]`` sums: norms combine as sqrt of sums of squares."""
    r = _rates(layout, count)
    pp, rated = sums[:, 0], jnp.asarray(layout.rated)
    cols = jnp.stack([pp, sums[:, 1], sums[:, 2], r * r * pp, pp * rated, r * r * rated], axis=1)
    k = len(layout.keys)
    agg = cols if k == len(layout.index) else jax.ops.segment_sum(
        cols, layout.segment, k, indices_are_sorted=True)  # [K, 6]
    pp, pu, uu, r2pp, w, r2 = (agg[:, i] for i in range(6))
    n_rated = np.bincount(layout.segment, layout.rated, minlength=k)
    norm = jnp.sqrt(pp)
    positive = pp > 0
    perp = jnp.sqrt(jnp.maximum(uu - pu * pu / jnp.where(positive, pp, 1.0), 0.0))
    along = norm + pu / jnp.where(positive, norm, 1.0)
    angle = jnp.where(positive, jnp.arctan2(perp, along), jnp.nan)
    # A key's rate: the rms of its leaves' rates weighted by |theta|^2 (their rate if shared).
    mean_sq = jnp.where(w > 0, r2pp / jnp.where(w > 0, w, 1.0), r2 / np.maximum(n_rated, 1))
    rate = jnp.where(n_rated > 0, jnp.sqrt(mean_sq), jnp.nan)
    decay = jnp.where(jnp.asarray(layout.known), jnp.sqrt(r2pp), jnp.nan)
    timescale = 1.0 / rate
    return jnp.stack([norm, decay, rate, timescale, timescale / layout.horizon, angle],
                     axis=1).astype(jnp.float32)


class _Monitor:
    """The wrapper: the layout per params signature, found once from the decay plans."""

    def __init__(self, inner: optax.GradientTransformationExtraArgs, groups: tuple[str, ...] | None) -> None:
        self.inner = inner
        self.groups = groups
        self._layouts: dict[Any, _Layout] = {}

    def _record(self, params: Any) -> list[_hook.TransformPlan]:
        """The decay plans of the inner optimizer, from an abstract (shape-only) ``init``.

        Abstract so that nothing is allocated; apart from the real ``init`` so
        that the user's once-only warnings still fire there (an ``init`` under
        a recording issues none).
        """
        init = self.inner.init
        with _hook.recording() as plans:
            # A fresh function: eval_shape caches traces by function, and a cached
            # trace would not run the inits that emit the plans.
            jax.eval_shape(lambda p: init(p), params)  # noqa: PLW0108
        return list(plans)

    def layout(self, params: Any) -> _Layout:
        """The layout for these params; found at the first ``init`` or ``update``
        (a state restored from a checkpoint) of each params signature."""
        leaves, treedef = _trees.flatten(params)
        key = (treedef, tuple((getattr(x, "shape", None), getattr(x, "dtype", None)) for x in leaves))
        if key not in self._layouts:
            paths = [_trees.path_of(k) for k, _ in _trees.flatten_with_path(params)]
            self._layouts[key] = _build(_leaves(self._record(params), paths), self.groups)
        return self._layouts[key]

    def init(self, params: Any) -> MonitorState:
        # Under decaytx.audit's recording, this init hands the plans to the audit;
        # the monitor's own recording (nested) keeps its plans to itself.
        inner_state = self.inner.init(params)
        return MonitorState(inner_state, jnp.zeros([], jnp.int32), _nan_stats(self.layout(params).keys))

    def update(self, updates: Any, state: MonitorState, params: Any = None,
               **extra_args: Any) -> tuple[Any, MonitorState]:
        if params is None:
            raise ValueError("monitor.update was called without params. The monitor reads "
                             "the current weights: call update(updates, state, params).")
        new_updates, inner_state = self.inner.update(updates, state.inner, params, **extra_args)
        layout = self.layout(params)
        if layout.keys != state.stats.keys:
            raise ValueError(
                f"monitor.update: the state holds stats for {list(state.stats.keys)[:5]} but "
                f"these params give {list(layout.keys)[:5]}; the state was built for other params.")
        values = state.stats.values
        if layout.keys:
            p_leaves, u_leaves = _trees.flatten(params)[0], _trees.flatten(new_updates)[0]
            # One stack of all the scalars (one kernel), not one per leaf.
            flat = [x for i in layout.index for x in _sums(p_leaves[i], u_leaves[i])]
            sums = jnp.stack(flat).reshape(len(layout.index), 3)
            if jax.default_backend() == "cpu":
                # The sums before apply_updates (values unchanged): on XLA:CPU, run
                # alongside the in-place update of donated params, they made a step
                # of 4M-param leaves 3.9x the bare one; ordered, 2.1x (measured,
                # docs/monitor.md). Elsewhere left to XLA (unmeasured).
                new_updates, sums = jax.lax.optimization_barrier((new_updates, sums))
            values = _stats(layout, sums, state.count)
        count = jnp.asarray(optax.safe_increment(state.count))
        return new_updates, MonitorState(inner_state, count, MonitorStats(values, layout.keys))


def monitor(optimizer: Any, *, groups: Sequence[str] | None = None
            ) -> optax.GradientTransformationExtraArgs:
    r"""Wraps ``optimizer`` so that its state reports what the decay does at each step.

    The updates are those of ``optimizer``, bitwise. The state
    (:class:`MonitorState`) also keeps, per leaf decayed by a decaytx
    transform anywhere inside ``optimizer`` (or per group of leaves), the
    float32 :class:`MonitorStats` of the last step:

    .. math::
      \lVert\theta_t\rVert,\quad m_t\lambda_t\lVert\theta_t\rVert,\quad
      r_t = m_t\lambda_t,\quad 1/r_t,\quad \frac{1/r_t}{T},\quad
      \angle(\theta_t, \theta_t + u_t)

    Read them with :func:`monitor_stats`. A group's norms combine as the
    square root of the sum of squares, its angle is that of the concatenated
    leaves, and its rate the root-mean-square of its leaves' rates weighted
    by :math:`\lVert\theta\rVert^2` (their rate when they share one).

    The schedules are evaluated at the monitor's own count of ``update``
    calls, the step the decay transforms use when every ``update`` reaches
    them: put the monitor inside ``optax.MultiSteps`` or ``apply_if_finite``,
    not around them (around them it counts mini-steps and skipped steps, and
    reports the decay of a full step on them). Under ``inject_hyperparams``
    the coefficients live in the state, where the monitor does not read
    them: ``rate``, ``decay``, ``timescale`` and ``horizon_fraction`` are
    NaN, ``norm`` and ``angle`` are measured.

    Args:
      optimizer: an ``optax.GradientTransformation`` containing decaytx
        transforms.
      groups: path prefixes (``"encoder"`` takes ``"encoder/..."``; ``""``
        takes everything); each decayed leaf goes to its longest matching
        prefix, one not matched keeps its own path. ``None``: one entry per
        decayed leaf.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = decaytx.monitor(optax.chain(
      ...     optax.sgd(0.1), decaytx.add_decoupled_decay(0.5, learning_rate=0.1)))
      >>> params = {"w": jnp.full(4, 2.0)}
      >>> state = opt.init(params)
      >>> _, state = opt.update({"w": jnp.zeros(4)}, state, params)
      >>> s = decaytx.monitor_stats(state)["w"]
      >>> round(s["norm"], 4), round(s["rate"], 4), round(s["decay"], 4), round(s["timescale"], 1)
      (4.0, 0.05, 0.2, 20.0)
    """
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"monitor(optimizer=...) needs an optax GradientTransformation (with init "
            f"and update), got {optimizer!r} of type {type(optimizer).__name__}.")
    wrapped = _Monitor(optax.with_extra_args_support(optimizer), _check_groups(groups))
    return optax.GradientTransformationExtraArgs(wrapped.init, wrapped.update)  # pyright: ignore[reportArgumentType]


def _find(state: Any) -> MonitorState:
    found = [x for x in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, MonitorState))
             if isinstance(x, MonitorState)]
    if not found:
        raise ValueError(
            f"monitor_stats: no decaytx.monitor state in {type(state).__name__}; pass the "
            "state of decaytx.monitor(optimizer) (or a state containing it).")
    if len(found) > 1:
        raise ValueError(
            f"monitor_stats: the state holds {len(found)} monitor states; pass the one "
            "you want (e.g. state[i] of a chain).")
    return found[0]


def monitor_stats(state: Any, *, flat: bool = False) -> dict[str, Any]:
    """The monitor's stats as Python floats, for any logger.

    Works on a state returned by a jitted step (it copies the few scalars to
    the host once). NaN means not measured yet (before the first ``update``)
    or not known (see :class:`MonitorStats`).

    Args:
      state: the state of :func:`monitor` (or a state containing exactly one).
      flat: ``False``: ``{key: {stat: float}}``; ``True``: ``{"key/stat": float}``.

    Returns:
      A dict keyed by the leaves' paths (or the groups' prefixes), with the
      stats ``norm``, ``decay``, ``rate``, ``timescale``, ``horizon_fraction``
      and ``angle`` of each.
    """
    mon = _find(state)
    rows = np.asarray(jax.device_get(mon.stats.values), np.float64).tolist()
    nested = {k: dict(zip(_STATS, row, strict=True)) for k, row in zip(mon.stats.keys, rows, strict=True)}
    if not flat:
        return nested
    return {f"{k}/{name}" if k else name: v for k, d in nested.items() for name, v in d.items()}
