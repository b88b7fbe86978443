r"""Adam's moments in one flat buffer per dtype: the layout for many small leaves.

On a tree of many small leaves an optimizer step costs per kernel launched,
not per byte, and the fused tree step (one kernel per leaf) gains nothing
there. :func:`scale_by_adam_flat` keeps :math:`m` and :math:`v` as ONE flat
buffer per dtype group instead: each step concatenates the float leaves'
gradients once, updates the moments in a few whole-buffer kernels, and
splits the update back into the params' tree and shapes. The values are
``optax.scale_by_adam``'s, element for element (the same elementwise maths
on the concatenated buffer, bitwise equal on XLA:CPU: ``tests/test_flat.py``).

Leaves that are not non-empty float arrays (integers, ``None``, zero-size
arrays) stay out of the buffers and take ``optax.scale_by_adam``'s own
update, exactly as in the tree recipe.

The state is NOT the recipe's: a :class:`FlatAdamState` of flat buffers, so a
checkpoint does not move between the tree and flat layouts (an update with
the other layout's state raises a ``ValueError`` naming ``layout=``). Used
by ``decaytx.fused.adamw(..., layout=)`` and ``decaytx.fused.adam_l2``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaytx import _trees

PyTree = Any


# layout="auto" takes the flat moments when the float leaves' mean size is
# below this many elements: the measured break-even (flat / tree step time
# 0.59 at 4K, 0.88-1.02 at 8K, 1.04-1.26 at 16K; docs/performance.md, "Many
# small leaves: flat moments", experiments/measure_flat_moments.py).
FLAT_MEAN_LEAF_SIZE = 8192


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class FlatLayout:
    """Which params leaf owns which elements of the flat buffers.

    ``leaves``: ``(path, shape, dtype)`` of each leaf in the buffers, in
    order. A static part of the state's structure (no array leaves), so an
    update with params of other shapes is refused by path even under ``jit``.
    """

    leaves: tuple[tuple[str, tuple[int, ...], str], ...]


class FlatAdamState(NamedTuple):
    """State of :func:`scale_by_adam_flat`.

    Attributes:
      count: int32 number of updates so far.
      mu: ``(buffers, rest)``: one flat first-moment buffer per dtype group
        of the float leaves, and the other leaves' first moments (a list).
      nu: the same for the second moment.
      layout: the :class:`FlatLayout` the buffers were made for (static).
    """

    count: jax.typing.ArrayLike  # pyright: ignore[reportIncompatibleMethodOverride]
    mu: Any
    nu: Any
    layout: FlatLayout = FlatLayout(())


def _is_none(x: Any) -> bool:
    return _trees.is_empty(x)


def _in_buffer(x: Any) -> bool:
    """Whether a leaf goes into a flat buffer: a non-empty float array."""
    return (not _is_none(x) and hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)
            and int(np.prod(x.shape)) > 0)


def _groups(leaves: list[Any]) -> tuple[list[Any], list[list[int]], list[int]]:
    """``(dtypes, indices per dtype group, indices of the other leaves)``, in leaf order."""
    dtypes: list[Any] = []
    groups: list[list[int]] = []
    rest: list[int] = []
    for i, x in enumerate(leaves):
        if not _in_buffer(x):
            rest.append(i)
            continue
        d = jnp.dtype(x.dtype)
        if d not in dtypes:
            dtypes.append(d)
            groups.append([])
        groups[dtypes.index(d)].append(i)
    return dtypes, groups, rest


def group_sizes(params: PyTree) -> list[int]:
    """The sizes of the float leaves of ``params`` (what the flat layout concatenates)."""
    leaves = jax.tree_util.tree_leaves(params, is_leaf=_is_none)
    return [int(np.prod(x.shape)) for x in leaves if _in_buffer(x)]


def many_small_leaves(params: PyTree) -> bool:
    """The ``layout="auto"`` rule: float leaves averaging under ``FLAT_MEAN_LEAF_SIZE`` elements."""
    sizes = group_sizes(params)
    return bool(sizes) and sum(sizes) < FLAT_MEAN_LEAF_SIZE * len(sizes)


def layout_of(params: PyTree) -> FlatLayout:
    """The :class:`FlatLayout` of ``params``: its buffered leaves' paths, shapes, dtypes."""
    return FlatLayout(tuple(
        (_trees.path_of(k) or "<root>", tuple(x.shape), jnp.dtype(x.dtype).name)
        for k, x in _trees.flatten_with_path(params) if _in_buffer(x)))


def check_layout(state: FlatLayout, params: PyTree) -> None:
    """Refuses a state whose buffers were laid out for other params, naming the leaf."""
    want = layout_of(params).leaves
    have = state.leaves
    if have == want:
        return
    for i, w in enumerate(want):
        h = have[i] if i < len(have) else None
        if h != w:
            got = "nothing" if h is None else f"{h[0]!r} {h[2]}{list(h[1])}"
            raise _layout_error(
                f"params whose buffered leaf #{i} is {w[0]!r} {w[2]}{list(w[1])}, but the "
                f"state's buffers hold {got} there (a state made for other params: Adam's "
                "moments would land on the wrong elements)")
    raise _layout_error(
        f"params with {len(want)} buffered leaves, but the state's buffers hold {len(have)} "
        f"(first extra: {have[len(want)][0]!r}; a state made for other params)")


def _layout_error(what: str) -> ValueError:
    return ValueError(
        f"the flat-moments Adam step (layout='flat') got {what}. Its state is "
        "one flat buffer per dtype (a FlatAdamState), not the tree layout's "
        "optax.ScaleByAdamState, and a checkpoint does not move between "
        "layouts: call init of the same optimizer on these params, or build "
        "the optimizer with layout='tree' to use a tree-layout state."
    )


def scale_by_adam_flat(**adam_kwargs: Any) -> optax.GradientTransformation:
    r"""``optax.scale_by_adam`` with the moments in one flat buffer per dtype.

    .. math::
      m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
      u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The float leaves of each dtype are concatenated into one buffer per step;
    the update is split back into the gradients' tree. Values equal
    ``optax.scale_by_adam``'s element for element; the state is a
    :class:`FlatAdamState`, not ``optax.ScaleByAdamState`` (no checkpoint
    compatibility with the tree layout). The gradients of the leaves in one
    buffer must have the params' dtype (else a ``ValueError``: use the tree
    layout).

    Args:
      **adam_kwargs: ``optax.scale_by_adam``'s arguments (``b1``, ``b2``,
        ``eps``, ``eps_root``, ``mu_dtype``, ``nesterov``), passed to it as given.

    Returns:
      An ``optax.GradientTransformation`` with a :class:`FlatAdamState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from decaytx.fused._flat import scale_by_adam_flat
      >>> opt = scale_by_adam_flat()
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(3)}
      >>> state = opt.init(params)
      >>> [m.shape for m in state.mu[0]]
      [(7,)]
      >>> updates, state = opt.update(params, state)
      >>> updates["w"]  # about g / |g| = 1 on the first step
      Array([[0.9999934, 0.9999934],
             [0.9999934, 0.9999934]], dtype=float32)

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, ICLR 2015.
    """
    inner = optax.scale_by_adam(**adam_kwargs)

    def init_fn(params: PyTree) -> FlatAdamState:
        if _trees.is_params_placeholder(params):
            raise TypeError(
                "the flat-moments Adam step (layout='flat') keeps no params-shaped tree in "
                "its state (its moments are flat buffers), so optax.tree.map_params cannot "
                "map it: use layout='tree' where the state's trees must follow params.")
        leaves = jax.tree_util.tree_leaves(params, is_leaf=_is_none)
        dtypes, groups, rest = _groups(leaves)
        buffers = tuple(
            jnp.zeros((sum(int(np.prod(leaves[i].shape)) for i in g),), d)
            for d, g in zip(dtypes, groups, strict=True))
        s = cast(optax.ScaleByAdamState, inner.init((buffers, [leaves[i] for i in rest])))
        return FlatAdamState(count=s.count, mu=s.mu, nu=s.nu, layout=layout_of(params))

    def update_fn(updates: PyTree, state: Any, params: PyTree | None = None) -> tuple[PyTree, FlatAdamState]:
        if not isinstance(state, FlatAdamState):
            raise _layout_error(f"a state of type {type(state).__name__}")
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_is_none)
        # The buffers were laid out from the params at init: classify by them.
        ref = leaves if params is None else treedef.flatten_up_to(params)
        _, groups, rest = _groups(ref)
        _check_state(state, treedef.unflatten(ref), leaves, ref, groups, rest)
        flats = tuple(
            jnp.concatenate([leaves[i].reshape(-1) for i in g]) if len(g) > 1 else leaves[g[0]].reshape(-1)
            for g in groups)
        inner_state = optax.ScaleByAdamState(count=state.count, mu=state.mu, nu=state.nu)
        new, s = inner.update((flats, [leaves[i] for i in rest]), inner_state)
        u_flats, u_rest = cast(tuple[tuple[jax.Array, ...], list[Any]], new)
        s = cast(optax.ScaleByAdamState, s)
        out: list[Any] = [None] * len(leaves)
        for u, g in zip(u_flats, groups, strict=True):
            sz = [int(np.prod(ref[i].shape)) for i in g]
            parts = jnp.split(u, np.cumsum(sz)[:-1].tolist()) if len(g) > 1 else [u]
            for i, part in zip(g, parts, strict=True):
                out[i] = part.reshape(leaves[i].shape)
        for i, u in zip(rest, u_rest, strict=True):
            out[i] = u
        return jax.tree_util.tree_unflatten(treedef, out), state._replace(count=s.count, mu=s.mu, nu=s.nu)

    return optax.GradientTransformation(init_fn, update_fn)  # type: ignore[arg-type]


def _check_state(state: FlatAdamState, ref_tree: PyTree, leaves: list[Any], ref: list[Any],
                 groups: list[list[int]], rest: list[int]) -> None:
    """The state's buffers fit these params, leaf by leaf; the gradients fit the buffers."""
    nu_buffers, nu_rest = state.nu
    have = [int(b.shape[0]) for b in nu_buffers]
    want = [sum(int(np.prod(ref[i].shape)) for i in g) for g in groups]
    if have != want or len(nu_rest) != len(rest):
        raise _layout_error(
            f"params whose float leaves make buffers of sizes {want} and "
            f"{len(rest)} other leaves, but the state holds {have} and "
            f"{len(nu_rest)} (a state made for a different params tree)")
    if state.layout.leaves:  # a state from before the layout was recorded has none
        check_layout(state.layout, ref_tree)
    for g in groups:
        kinds = {(jnp.dtype(leaves[i].dtype) if hasattr(leaves[i], "dtype") else type(leaves[i]).__name__)
                 for i in g}
        bad = [i for i in g if not hasattr(leaves[i], "shape") or leaves[i].shape != ref[i].shape]
        if len(kinds) > 1 or bad:
            raise ValueError(
                "the flat-moments Adam step (layout='flat') concatenates the "
                "gradients of the float params of one dtype, so they must be "
                f"arrays of one dtype and the params' shapes; got dtypes {sorted(map(str, kinds))}"
                f"{' and mismatched leaves' if bad else ''}. Use layout='tree' for such gradients.")


def is_flat_state(state: Any) -> bool:
    """Whether a chain's state holds a :class:`FlatAdamState` (one level down)."""
    if isinstance(state, FlatAdamState):
        return True
    return isinstance(state, tuple) and not hasattr(state, "_fields") and any(
        isinstance(s, FlatAdamState) for s in state)
