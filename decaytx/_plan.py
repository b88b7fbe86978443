"""The per-leaf plan a decay transform decides at ``init``.

For each params leaf: whether it is decayed, its coefficients (as a group:
leaves with the same coefficients share one), the dtype to compute in, and
its path. ``update`` then only applies the maths. A plan depends on the
params' structure, paths, shapes and dtypes, all static, so it is cached per
transform under that signature; where ``update`` meets a signature it has not
seen (a fresh optimizer restored from a checkpoint, the transform
``optax.inject_hyperparams`` rebuilds at every step) it builds the plan again
from params and checks it against the state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decaytx import _coefficients as coef
from decaytx import _compensated, _constants, _groups, _schedules
from decaytx._trees import is_decayable, is_empty, path_of


def signature(leaves: list[Any]) -> tuple[Any, ...]:
    """The static facts a plan depends on, one entry per params leaf."""
    return tuple(
        (getattr(x, "shape", None), getattr(x, "dtype", None) or type(x)) for x in leaves
    )


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One params leaf in a plan."""

    keypath: Any
    path: str
    masked_in: bool  # what the mask says (for the empty-mask warning)
    decayed: bool  # masked in, an inexact array, and a non-zero coefficient
    group: int  # index into Plan.groups; -1 where not decayed
    compute: Any  # a dtype to compute in (f16 with a coefficient past its range), or None
    residual: bool = False  # keeps a float32 residual (compensated=True, a bf16/f16 leaf)


@dataclasses.dataclass
class Plan:
    leaves: tuple[Leaf, ...]
    groups: tuple[dict[str, Any], ...]  # name -> coefficient (None = concrete zero)
    static: tuple[bool, ...]  # group coefficients are all Python/NumPy numbers
    needs_count: bool
    cacheable: bool  # no traced coefficient (a plan must never keep a tracer)
    consts: dict[Any, Any] = dataclasses.field(default_factory=dict)

    @property
    def any_residual(self) -> bool:
        """Whether some leaf keeps a compensation residual (``compensated=True``)."""
        return any(lf.residual for lf in self.leaves)

    def scalars(
        self, g: int, dtype: Any, combine: Callable[[dict[str, Any]], dict[str, Any]] | None,
        count: Any, step: dict[Any, Any], given: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The scalars of group ``g`` cast to the real dtype of ``dtype``.

        Python/NumPy coefficients become NumPy constants once per plan (no
        work per update); where a name takes more than
        ``_constants.MAX_CONSTANTS`` distinct values over the static groups,
        its values enter through ``_constants.pick``, once per step, so that
        every leaf compiles to the same fusion (compile time independent of
        the count of distinct values). Others (schedules, arrays) are
        computed once per step and dtype. ``given``: name -> a function of the
        group's coefficient giving its value at this step, already evaluated
        (a recipe's eta_t of that leaf), used instead of evaluating it again.
        """
        key = (g, dtype)
        if self.static[g]:
            values = self._constants(g, dtype, combine)
            spread = self._spread(dtype, combine)
            if not spread:
                return values
            if key not in step:
                step[key] = {
                    k: _constants.pick(v) if k in spread and v is not None else v
                    for k, v in values.items()
                }
            return step[key]
        if key not in step:
            real = jnp.finfo(dtype).dtype
            if ("values", g, real) not in step:
                step[("values", g, real)] = _combined(self.groups[g], combine, count, given, real)
            step[key] = {
                k: None if v is None else jnp.asarray(v).astype(real)
                for k, v in step[("values", g, real)].items()
            }
        return step[key]

    def _constants(self, g: int, dtype: Any, combine: Any) -> dict[str, Any]:
        """The NumPy scalars of static group ``g`` in the real dtype of ``dtype``."""
        key = (g, dtype)
        if key not in self.consts:
            real = jnp.finfo(dtype).dtype
            with jax.ensure_compile_time_eval():
                s = _combined(self.groups[g], combine, None)
                self.consts[key] = {
                    k: None if v is None else np.asarray(jnp.asarray(v).astype(real))
                    for k, v in s.items()
                }
        return self.consts[key]

    def _spread(self, dtype: Any, combine: Any) -> frozenset[str]:
        """The names with more than MAX_CONSTANTS distinct static values at ``dtype``."""
        key = ("spread", dtype, _constants.ENABLED)
        if key not in self.consts:
            self.consts[key] = _constants.spread([
                self._constants(h, dtype, combine) for h, s in enumerate(self.static) if s
            ])
        return self.consts[key]


def _combined(group: dict[str, Any], combine: Any, count: Any,
              given: dict[str, Any] | None = None, real: Any = None) -> dict[str, Any]:
    """The group's coefficients at ``count`` (or ``given[name](coefficient)``), combined.

    ``real``: the leaf's real dtype; a value narrower than it (an f32
    schedule for f64 params) is widened first, so that ``m * lambda`` is
    computed in the params' precision, not rounded to the schedule's.
    """
    given = given or {}
    values = {k: None if v is None else _widen(given[k](v) if k in given else coef.value_at(v, count), real)
              for k, v in group.items()}
    return combine(values) if combine is not None else values


def _widen(v: Any, real: Any) -> Any:
    if real is None:
        return v
    a = jnp.asarray(v)
    if jnp.issubdtype(a.dtype, jnp.inexact) and jnp.finfo(a.dtype).bits < jnp.finfo(real).bits:
        return a.astype(jnp.promote_types(a.dtype, real))
    return v


def _ident(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return ("number", type(v), float(v))
    return ("object", id(v))


def _is_static(v: Any) -> bool:
    return v is None or (
        isinstance(v, (int, float, np.number, np.ndarray)) and not isinstance(v, bool)
    )


def _peak(v: Any) -> float | None:
    if v is None:
        return 0.0
    p = _schedules.peak(v)
    return None if p is None else abs(p)


def _compute_dtype(dtype: Any, group: dict[str, Any], combine: Any) -> Any:
    """float32 for a half-precision leaf whose scalars exceed its range.

    A float16 leaf with ``weight_decay=1e5`` would meet an ``inf`` coefficient
    (65504 is float16's largest value): ``inf * 0`` is NaN where the exact
    result is representable. Computing that leaf in float32 and casting the
    result back gives the representable result.
    """
    fmax = float(jnp.finfo(dtype).max)
    if fmax >= float(jnp.finfo(jnp.float32).max):
        return None
    peaks = {k: _peak(v) for k, v in group.items()}
    if any(p is None for p in peaks.values()):
        return None  # not concrete: cannot be known here (documented)
    scalars = combine(peaks) if combine is not None else peaks
    if any(s is not None and abs(s) > fmax for s in scalars.values()):  # a factor may be -eta
        return jnp.dtype(jnp.float32)
    return None


def build(
    params: Any,
    mask_flat: list[bool],
    coefficients: dict[str, Any],
    public: tuple[str, ...],
    combine: Callable[[dict[str, Any]], dict[str, Any]] | None,
    compensated: bool = False,
    *,
    requires: tuple[str, ...] = (),
) -> Plan:
    """Decides, for every params leaf, what the transform does to it.

    A leaf is decayed where the mask selects it, it is an inexact array, one
    of ``public`` is not a concrete zero and none of ``requires`` is (a leaf
    whose own learning rate is 0 is not decayed). ``compensated``: every
    bf16/f16 leaf keeps a float32 residual, decayed or not
    (:mod:`decaytx._compensated`).
    """
    flat = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_empty)[0]
    per_name = {k: _groups.resolve(k, v, params, flat) for k, v in coefficients.items()}
    groups: list[dict[str, Any]] = []
    index: dict[Any, int] = {}
    leaves = []
    for i, ((keypath, p), m) in enumerate(zip(flat, mask_flat, strict=True)):
        group = {k: per_name[k][i] for k in coefficients}
        decayed = (bool(m) and is_decayable(p) and any(group[k] is not None for k in public)
                   and all(group[k] is not None for k in requires))
        g, compute = -1, None
        if decayed:
            ident = tuple((k, _ident(v)) for k, v in group.items())
            if ident not in index:
                index[ident] = len(groups)
                groups.append(group)
            g = index[ident]
            compute = _compute_dtype(p.dtype, group, combine)
        residual = compensated and _compensated.needs_residual(p)
        leaves.append(Leaf(keypath, path_of(keypath), bool(m), decayed, g, compute, residual))
    values = [v for grp in groups for v in grp.values()]
    return Plan(
        leaves=tuple(leaves),
        groups=tuple(groups),
        static=tuple(all(_is_static(v) for v in grp.values()) for grp in groups),
        needs_count=any(coef.is_schedule(v) for v in values if v is not None),
        cacheable=not any(coef.is_traced(v) for v in values),
    )


def schedules(plan: Plan) -> list[tuple[str, Any, str]]:
    """(coefficient name, schedule, leaf path) for each distinct schedule."""
    seen: set[int] = set()
    out = []
    for leaf in plan.leaves:
        if not leaf.decayed:
            continue
        for k, v in plan.groups[leaf.group].items():
            if v is not None and coef.is_schedule(v) and id(v) not in seen:
                seen.add(id(v))
                out.append((k, v, leaf.path))
    return out


def any_schedule(coefficients: Any) -> bool:
    """Whether any coefficient (a scalar or a tree's leaf) is a schedule.

    What ``init`` can say without params (``optax.tree.map_params``'
    placeholder); a ``per_leaf`` rule cannot be read without params and
    counts as constant.
    """
    leaves = jax.tree_util.tree_leaves(
        [v for v in coefficients.values() if not isinstance(v, _groups.PerLeaf)])
    return any(coef.is_schedule(v) for v in leaves)
