r"""Layer-wise learning-rate decay (BEiT, ELECTRA, MAE, timm fine-tuning) as a per-leaf rate."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from decaytx import _coefficients as coef
from decaytx import _constants
from decaytx._groups import PerLeaf


def _scaled(base: Any, scale: float) -> Any:
    """``t -> base(t) * scale``, the scale read from an operand (``_constants.pick``).

    One schedule per layer: written with the scale as a constant, each layer
    would compile its own fusion body; through ``pick`` every layer's body is
    the same (compile time independent of the count of layers).
    """

    def schedule(count: jax.Array) -> jax.Array:
        b = jnp.asarray(base(count))
        if not jnp.issubdtype(b.dtype, jnp.floating):
            b = b.astype(jnp.result_type(float))
        value = np.asarray(scale, dtype=b.dtype)
        return b * (_constants.pick(value) if _constants.ENABLED else value)

    schedule.base, schedule.scale = base, scale  # pyright: ignore[reportFunctionMemberAccess]
    return schedule


def _layer(layer_of: Callable[[str], Any], path: str) -> int:
    got = layer_of(path)
    if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, np.integer)):
        raise TypeError(
            f"layer_decay: layer_of({path!r}) returned {coef.show(got)} "
            f"({type(got).__name__}); it must return the leaf's layer as an int "
            "(0 for the embeddings, num_layers for the head).")
    return int(got)


def layer_decay(base_lr: Any, decay: float, layer_of: Callable[[str], int], *,
                num_layers: int | None = None) -> PerLeaf:
    r"""Layer-wise learning-rate decay: a per-leaf learning rate.

    .. math::
      \eta_{i,t} = \eta_t \cdot d^{\,L - \ell(\mathrm{path}_i)}

    with :math:`\ell` = ``layer_of(path)`` in :math:`[0, L]`: the head
    (layer :math:`L`) trains at the base rate, each layer below it at
    :math:`d` times the rate of the one above, the embeddings (layer 0) at
    :math:`d^L`. This is BEiT's and timm's ``param_groups_layer_decay``
    (``layer_scales = [d ** (L - i) for i in range(L + 1)]``, ``L`` the
    largest layer id, the head's): pass the result as ``learning_rate=`` of
    a recipe or of :func:`decaytx.scale_by_learning_rate`, and the decoupled
    decay follows each layer's own rate.

    Args:
      base_lr: :math:`\eta`, the head's rate: a float or a schedule (the
        result is then a per-leaf schedule :math:`t \mapsto \eta_t d^{L-\ell}`,
        all layers sharing one count).
      decay: :math:`d > 0` (timm's ``layer_decay``, typically 0.65-0.9).
      layer_of: ``layer_of(path) -> int``, the layer of a params leaf from its
        "/"-joined path (as masks see it).
      num_layers: :math:`L`; ``None``: the largest ``layer_of`` over the
        params' paths (timm's rule). Every layer must lie in :math:`[0, L]`.

    Returns:
      A :func:`decaytx.per_leaf` learning rate, resolved at ``init``.

    Raises:
      ValueError: ``decay <= 0`` or not finite, ``num_layers < 0``, a layer
        outside ``[0, num_layers]`` (at ``init``, naming the path).
      TypeError: ``layer_of`` not callable or returning a non-int.

    Examples:
      >>> import jax, jax.numpy as jnp, decaytx
      >>> layer = lambda path: {"embed": 0, "block0": 1, "block1": 2, "head": 3}[path.split("/")[0]]
      >>> lr = decaytx.layer_decay(1e-3, 0.5, layer)
      >>> params = {k: jnp.ones(2) for k in ("embed", "block0", "block1", "head")}
      >>> t = decaytx.scale_by_learning_rate(lr)
      >>> u, _ = t.update(jax.tree.map(jnp.ones_like, params), t.init(params))
      >>> {k: round(float(-v[0]), 9) for k, v in u.items()}
      {'block0': 0.00025, 'block1': 0.0005, 'embed': 0.000125, 'head': 0.001}

    References:
      Clark et al., `ELECTRA <https://arxiv.org/abs/2003.10555>`_, 2020
      (layer-wise learning-rate decay); Bao et al., `BEiT
      <https://arxiv.org/abs/2106.08254>`_, 2022; timm
      ``timm.optim.param_groups_layer_decay``.
    """
    coef.check("base_lr", base_lr)
    d = coef.number("decay", decay, low=0.0, low_open=True,
                    fix=" A decay of 1 gives every layer the base rate; 0.65-0.9 is usual.")
    if not callable(layer_of):
        raise TypeError(f"layer_decay(layer_of={coef.show(layer_of)}): layer_of must be a "
                        "callable layer_of(path: str) -> int.")
    fixed = None if num_layers is None else int(coef.number("num_layers", num_layers, integer=True))
    scales: dict[int, Any] = {}

    def bind(paths: list[str]) -> Callable[[str, Any], Any]:
        layers = {p: _layer(layer_of, p) for p in paths}
        top = fixed if fixed is not None else max(layers.values(), default=0)
        for p, k in layers.items():
            if not 0 <= k <= top:
                raise ValueError(
                    f"layer_decay: layer_of({p!r}) = {k} is outside [0, {top}] "
                    f"(num_layers={top}{'' if fixed is not None else ', the largest layer found'}); "
                    "give every leaf a layer from 0 (embeddings) to num_layers (the head).")

        def rate(path: str, leaf: Any) -> Any:
            del leaf
            k = top - layers[path]
            if k not in scales:
                s = d ** k
                if not math.isfinite(s):
                    raise ValueError(f"layer_decay: decay**{k} = {s} is not finite; lower decay or num_layers.")
                scales[k] = _scaled(base_lr, s) if coef.is_schedule(base_lr) else float(base_lr) * s
            return scales[k]

        return rate

    def layer_decay_rate(path: str, leaf: Any) -> Any:
        raise AssertionError("layer_decay's rule is bound to the params' paths at init")

    return PerLeaf(layer_decay_rate, bind=bind)
