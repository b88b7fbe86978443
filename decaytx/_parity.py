r"""Parity pieces: what Keras and PyTorch compute differently from optax.

* Keras 3 adds :math:`\epsilon` to :math:`\sqrt{v_t}` *before* the bias
  correction, optax (and PyTorch) to :math:`\sqrt{\hat v_t}` after it
  (:func:`scale_by_keras_adam`);
* PyTorch's momentum buffer starts at the first gradient and takes
  ``dampening`` (:func:`momentum`);
* PyTorch's AMSGrad takes the max of the raw second moments
  (:func:`adam`'s ``amsgrad``), ``optax.scale_by_amsgrad`` of the
  bias-corrected ones.

Each is tested against its framework in ``tests/test_parity_*.py``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax._src import numerics

from decaytx import _coefficients as coef


def _check_rate(name: str, value: object, *, upper: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be a Python float; got {type(value).__name__}.")
    v = float(value)
    if not math.isfinite(v) or v < 0.0 or (upper is not None and v >= upper):
        bound = "in [0, 1)" if upper is not None else "finite and >= 0"
        raise ValueError(f"{name}={value!r} must be {bound}; Keras' default is " + {
            "b1": "beta_1=0.9.", "b2": "beta_2=0.999.", "eps": "epsilon=1e-7."}[name])
    return v


_DEFAULTS = {"b1": "b1=0.9", "b2": "b2=0.999", "eps": "eps=1e-8", "eps_root": "eps_root=0.0"}


def check_hyperparameter(name: str, value: Any, *, below_one: bool) -> None:
    """A recipe's beta (in [0, 1)) or epsilon (finite, >= 0), checked when concrete.

    A traced value (``optax.inject_hyperparams``' update under ``jit``) cannot
    be seen and is used as given; its ``init``, where the value is concrete,
    was checked. A low-precision array is what ``inject_hyperparams`` makes of
    a float for bf16/f16 params (``b2=0.999`` rounds to 1.0 in bf16): the
    message says so.
    """
    if coef.is_traced(value):
        return
    fix = f" Pass e.g. {_DEFAULTS[name]} (the default)."
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
        # inject_hyperparams casts to complex for complex params; the real part is the value.
        arr: Any = np.asarray(value)
        if arr.shape == () and arr.imag == 0:
            value, dtype = arr.real, arr.real.dtype
    if isinstance(value, jax.Array) and dtype is not None and jnp.issubdtype(dtype, jnp.floating) and (
            jnp.finfo(dtype).bits < 32):
        fix += (f" The value is a {jnp.dtype(dtype).name} array, as "
                "optax.inject_hyperparams casts hyperparameters to the params' "
                "dtype: pass hyperparam_dtype=jnp.float32 to keep them exact.")
    coef.number(name, value, low=0.0, high=1.0 if below_one else None, fix=fix)


def check_dtype(name: str, value: Any) -> Any:
    """``mu_dtype``/``accumulator_dtype``: ``None`` or a float (or complex) dtype JAX knows."""
    if value is None:
        return None
    fix = (f"pass {name}=None (the params' dtype) or a float dtype such as "
           "jnp.float32 or jnp.bfloat16 (8-bit floats are spelt e.g. jnp.float8_e4m3fn).")
    try:
        dt = jnp.dtype(value)
    except TypeError:
        raise TypeError(f"{name}={value!r} is not a dtype JAX knows; {fix}") from None
    if not jnp.issubdtype(dt, jnp.inexact):
        raise TypeError(f"{name}={value!r} is {dt.name}, not a floating dtype; {fix}")
    return value


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


def momentum(
    momentum: float | None,
    nesterov: bool,
    dampening: float = 0.0,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformation:
    """PyTorch's momentum buffer: ``b_1 = g_1``, ``b <- mu b + (1 - dampening) g``."""
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov={nesterov!r} must be a Python bool.")
    check_dtype("accumulator_dtype", accumulator_dtype)
    d = coef.concrete_value(dampening)
    # Under optax.inject_hyperparams dampening arrives as an array (concrete
    # at init, traced in update): both must build the same chain.
    traced = isinstance(dampening, jax.Array)
    if not traced and (d is None or not 0.0 <= d <= 1.0):
        raise ValueError(
            f"dampening={dampening!r} must be a Python float in [0, 1] "
            "(PyTorch's SGD dampening); pass dampening=0.0 for none."
        )
    if momentum is None:
        if nesterov:
            raise ValueError(
                "nesterov=True needs a momentum; pass momentum=0.9 (for "
                "example) or nesterov=False."
            )
        if not traced and d != 0.0:
            raise ValueError(
                f"dampening={dampening!r} needs a momentum; pass momentum=0.9 "
                "(for example) or dampening=0.0."
            )
        return optax.identity()
    v = coef.concrete_value(momentum)
    if v is not None and not 0.0 <= v < 1.0:
        raise ValueError(
            f"momentum={momentum!r} must be in [0, 1); pass e.g. momentum=0.9, "
            "or momentum=None for plain SGD."
        )
    if nesterov:
        # PyTorch defines Nesterov without dampening. A traced dampening
        # (optax.inject_hyperparams' update) cannot be seen; its init, where
        # the value is concrete, is checked here like a float.
        if d is not None and d != 0.0:
            raise ValueError(
                f"nesterov=True needs dampening=0.0 (got dampening={dampening!r}), "
                "as in PyTorch: Nesterov momentum is defined without dampening."
            )
        return optax.trace(decay=momentum, nesterov=True, accumulator_dtype=accumulator_dtype)
    if not traced and d == 0.0:
        # With a zero buffer, mu * 0 + g_1 = g_1: optax.trace is PyTorch's buffer.
        return optax.trace(decay=momentum, nesterov=False, accumulator_dtype=accumulator_dtype)
    # Any other dampening, an array included (whose value is only known at
    # run time), takes the dampened buffer, which equals optax.trace at 0.
    return _dampened_trace(momentum, dampening, accumulator_dtype)


class DampenedTraceState(NamedTuple):
    """State of PyTorch's dampened momentum buffer.

    Attributes:
      count: int32 number of updates so far (the first buffer is undampened).
      trace: the momentum buffer, like params.
    """

    count: jax.typing.ArrayLike  # pyright: ignore[reportIncompatibleMethodOverride]
    trace: Any


def _dampened_trace(
    momentum: float, dampening: float, accumulator_dtype: Any
) -> optax.GradientTransformation:
    """``b_1 = g_1``, ``b_t = mu b_{t-1} + (1 - dampening) g_t`` (``torch.optim.SGD``)."""
    acc_dtype = None if accumulator_dtype is None else jnp.dtype(accumulator_dtype)

    def init_fn(params: Any) -> DampenedTraceState:
        return DampenedTraceState(
            count=jnp.zeros([], jnp.int32),
            trace=optax.tree.zeros_like(params, dtype=acc_dtype),
        )

    def update_fn(
        updates: Any, state: DampenedTraceState, params: Any = None
    ) -> tuple[Any, DampenedTraceState]:
        del params
        first = state.count == 0
        new = jax.tree.map(
            lambda g, b: jnp.where(first, g, momentum * b + (1.0 - dampening) * g),
            updates,
            state.trace,
        )
        out = jax.tree.map(lambda n, g: n.astype(jnp.result_type(g)), new, updates)
        trace = jax.tree.map(lambda n, b: n.astype(b.dtype), new, state.trace)
        return out, DampenedTraceState(count=optax.safe_increment(state.count), trace=trace)

    return optax.GradientTransformation(init_fn, update_fn)  # type: ignore[arg-type]


def _scale_by_amsgrad_torch(
    b1: float, b2: float, eps: float, mu_dtype: Any
) -> optax.GradientTransformation:
    """PyTorch's AMSGrad: the max of the raw second moments, then bias correction.

    ``torch.optim.Adam(amsgrad=True)`` keeps ``v_max = max(v_max, v_t)`` and
    divides by ``sqrt(v_max) / sqrt(1 - b2^t) + eps``; ``optax.scale_by_amsgrad``
    takes the max of the bias-corrected moments instead, a different rule.
    """
    mu_dt = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init_fn(params: Any) -> optax.ScaleByAmsgradState:
        return optax.ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params, dtype=mu_dt),
            nu=optax.tree.zeros_like(params),
            nu_max=optax.tree.zeros_like(params),
        )

    def update_fn(
        updates: Any, state: optax.ScaleByAmsgradState, params: Any = None
    ) -> tuple[Any, optax.ScaleByAmsgradState]:
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        out = jax.tree.map(
            lambda m, v, g: (
                m / (jnp.sqrt(v) / jnp.sqrt(1.0 - jnp.asarray(b2, v.dtype) ** count) + eps)
            ).astype(jnp.result_type(g)),
            mu_hat,
            nu_max,
            updates,
        )
        return out, optax.ScaleByAmsgradState(
            count=count, mu=optax.tree.cast(mu, mu_dt), nu=nu, nu_max=nu_max
        )

    return optax.GradientTransformation(init_fn, update_fn)  # type: ignore[arg-type]


def adam(
    b1: float, b2: float, eps: float, eps_root: float, mu_dtype: Any, nesterov: bool,
    amsgrad: bool,
) -> optax.GradientTransformation:
    for name, value in (("nesterov", nesterov), ("amsgrad", amsgrad)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}={value!r} must be a Python bool.")
    check_hyperparameter("b1", b1, below_one=True)
    check_hyperparameter("b2", b2, below_one=True)
    check_hyperparameter("eps", eps, below_one=False)
    check_hyperparameter("eps_root", eps_root, below_one=False)
    check_dtype("mu_dtype", mu_dtype)
    if not amsgrad:
        return optax.scale_by_adam(
            b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
        )
    if nesterov or eps_root != 0.0:
        raise ValueError(
            f"amsgrad=True is PyTorch's AMSGrad, which has neither nesterov "
            f"(got {nesterov!r}) nor eps_root (got {eps_root!r}); pass "
            "nesterov=False and eps_root=0.0, or amsgrad=False."
        )
    return _scale_by_amsgrad_torch(b1, b2, eps, mu_dtype)
