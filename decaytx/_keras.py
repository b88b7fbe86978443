r"""Keras 3's Adam direction, for exact parity with ``keras.optimizers.Adam/AdamW``.

Keras adds :math:`\epsilon` to :math:`\sqrt{v_t}` *before* the bias
correction, optax (and PyTorch) to :math:`\sqrt{\hat v_t}` after it. The two
agree only for :math:`\epsilon = 0`; :func:`scale_by_keras_adam` is
``optax.scale_by_adam`` with Keras' placement, so that a Keras model's
optimizer moves to optax without changing its trajectory.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax._src import numerics


def _check_rate(name: str, value: object, *, upper: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a Python float; got {type(value).__name__}.")
    v = float(value)
    if not math.isfinite(v) or v < 0.0 or (upper is not None and v >= upper):
        bound = "in [0, 1)" if upper is not None else "finite and >= 0"
        raise ValueError(f"{name}={value!r} must be {bound}; Keras' default is " + {
            "b1": "beta_1=0.9.", "b2": "beta_2=0.999.", "eps": "epsilon=1e-7."}[name])
    return v


def scale_by_keras_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-7,
) -> optax.GradientTransformation:
    r"""Adam's direction with :math:`\epsilon` placed as Keras 3 places it.

    .. math::
      m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
      v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
      u_t = \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\,
            \frac{m_t}{\sqrt{v_t} + \epsilon}

    that is :math:`\hat m_t / (\sqrt{\hat v_t} + \epsilon/\sqrt{1-\beta_2^t})`:
    the :math:`\epsilon` of ``optax.scale_by_adam`` divided by
    :math:`\sqrt{1-\beta_2^t}`, which is large early in training (about
    :math:`\sqrt{1/(1-\beta_2)} \approx 32\,\epsilon` at the first step for
    :math:`\beta_2 = 0.999`). Followed by ``optax.scale_by_learning_rate(η)``
    it is ``keras.optimizers.Adam(η, beta_1, beta_2, epsilon)``; add
    ``decaytx.add_decoupled_decay(λ, learning_rate=η)`` last for Keras'
    ``weight_decay=λ`` (``keras.optimizers.AdamW``). ``amsgrad`` is not
    reproduced. The state is ``optax.ScaleByAdamState``.

    Args:
      b1: :math:`\beta_1`, Keras' ``beta_1``.
      b2: :math:`\beta_2`, Keras' ``beta_2``.
      eps: :math:`\epsilon \ge 0`, Keras' ``epsilon`` (default ``1e-7``, Keras'
        default).

    Returns:
      An ``optax.GradientTransformation``.

    Raises:
      TypeError: for a non-numeric ``b1``, ``b2`` or ``eps``.
      ValueError: for ``b1`` or ``b2`` outside ``[0, 1)`` or a negative or
        non-finite ``eps``.

    Examples:
      >>> import jax.numpy as jnp, optax, decaytx
      >>> opt = optax.chain(decaytx.scale_by_keras_adam(eps=0.5),
      ...                   optax.scale_by_learning_rate(1.0))
      >>> g = jnp.array([1.0, -4.0])
      >>> u, _ = opt.update(g, opt.init(g))
      >>> [round(float(x), 4) for x in u]  # -(0.1 g √0.001/0.1) / (√(0.001 g²) + ε), t = 1
      [-0.0595, 0.2019]

    References:
      Keras 3, `keras.optimizers.Adam
      <https://keras.io/api/optimizers/adam/>`_ (``update_step``).
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, ICLR 2015 (Algorithm 1's
      "efficient" form, which Keras implements).
    """
    b1 = _check_rate("b1", b1, upper=1.0)
    b2 = _check_rate("b2", b2, upper=1.0)
    eps = _check_rate("eps", eps, upper=None)

    def init_fn(params: optax.Params) -> optax.ScaleByAdamState:
        return optax.ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params),
            nu=optax.tree.zeros_like(params),
        )

    def update_fn(
        updates: optax.Updates, state: Any, params: optax.Params | None = None
    ) -> tuple[optax.Updates, optax.ScaleByAdamState]:
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = numerics.safe_increment(state.count)

        def direction(m: jax.Array, v: jax.Array) -> jax.Array:
            # The scalar factor in (at least) float32, as Keras computes it in
            # the variable's dtype; bf16 leaves get it rounded once.
            dt = jnp.promote_types(m.dtype, jnp.float32)
            t = jnp.asarray(count, dt)
            alpha = jnp.sqrt(1 - jnp.asarray(b2, dt) ** t) / (1 - jnp.asarray(b1, dt) ** t)
            return (m * alpha.astype(m.dtype) / (jnp.sqrt(v) + eps)).astype(m.dtype)

        out = jax.tree.map(
            lambda m, v: None if m is None else direction(m, v),
            mu,
            nu,
            is_leaf=lambda x: x is None,
        )
        return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)
