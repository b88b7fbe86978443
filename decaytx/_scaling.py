"""Scaling rules: how to choose and schedule the decay coefficient."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from decaytx import _coefficients as coef
from decaytx import _groups, _schedules
from decaytx._warnings import DecayWarning


def _positive(name: str, value: Any) -> float:
    return coef.number(name, value, low=0.0, low_open=True)


def normalized_weight_decay(
    lambda_norm: float, *, batch_size: int, train_size: int, epochs: float
) -> float:
    r"""The normalized weight decay of Loshchilov & Hutter (2019, appendix).

    .. math::
      \lambda = \lambda_{norm} \sqrt{\frac{b}{B\,T}}

    with batch size :math:`b`, training-set size :math:`B` and :math:`T`
    epochs: the total decay over a run then depends less on its length.

    Args:
      lambda_norm: :math:`\lambda_{norm} \ge 0` (the paper uses 0.025-0.05
        for AdamW on CIFAR-10).
      batch_size: :math:`b`.
      train_size: :math:`B`.
      epochs: :math:`T`.

    Returns:
      The per-step coefficient :math:`\lambda` (a float).

    Examples:
      >>> import decaytx
      >>> round(decaytx.normalized_weight_decay(0.05, batch_size=128, train_size=50_000, epochs=100), 6)
      0.000253

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019, appendix B.1.
    """
    coef.check("lambda_norm", lambda_norm)
    b = _positive("batch_size", batch_size)
    n = _positive("train_size", train_size)
    t = _positive("epochs", epochs)
    return float(lambda_norm) * math.sqrt(b / (n * t))


def weight_decay_for_timescale(
    tau_epochs: float, *, learning_rate: float, steps_per_epoch: int
) -> float:
    r"""The decoupled weight decay whose EMA timescale is ``tau_epochs`` epochs.

    Decoupled decay with multiplier :math:`\eta` makes the weights an
    exponential moving average of the updates with timescale
    :math:`1/(\eta\lambda)` steps (Wang & Aitchison, 2024). For a timescale of
    :math:`\tau` epochs of :math:`M` steps:

    .. math::
      \lambda = \frac{1}{\eta M \tau}

    Args:
      tau_epochs: the timescale :math:`\tau` in epochs (> 0).
      learning_rate: the (peak) learning rate :math:`\eta` (> 0).
      steps_per_epoch: :math:`M` (> 0).

    Returns:
      :math:`\lambda` (a float), for ``add_decoupled_decay(..., learning_rate=eta)``.

    Examples:
      >>> import decaytx
      >>> decaytx.weight_decay_for_timescale(10, learning_rate=1e-3, steps_per_epoch=100)
      1.0

    References:
      Wang & Aitchison, `How to set AdamW's weight decay as you scale model
      and dataset size <https://arxiv.org/abs/2405.13698>`_, 2024.
    """
    tau = _positive("tau_epochs", tau_epochs)
    eta = _positive("learning_rate", learning_rate)
    m = _positive("steps_per_epoch", steps_per_epoch)
    return 1.0 / (eta * m * tau)


# A given peak= below the schedule's largest value by more than this (relative)
# warns: f32 rounding of the schedule's own values stays well inside it.
_PEAK_RTOL = 1e-5


def _peak(fn: str, schedule: Any, peak: Any) -> Any:
    """``eta_max`` for ``fn`` (``"lr_multiplier"`` or ``"corrected_decay"``).

    A traced ``peak=`` (``jit``/``vmap``/``grad`` over the learning rate) is
    used as given, after checking its static shape and dtype. A concrete one
    must be > 0, and warns when the schedule's largest value (on its grid, see
    :func:`decaytx._schedules.survey`) exceeds it. ``peak=None`` searches
    the schedule, which needs its values: a schedule closing over a traced
    value raises, asking for ``peak=``.
    """
    if peak is None:
        found = _schedules.peak(schedule)
        if found is None:
            raise ValueError(
                f"{fn}: the schedule's values depend on a traced value (a "
                "learning rate under jax.jit, jax.vmap or jax.grad), so its "
                f"peak cannot be searched. Pass it: decaytx.{fn}(schedule, "
                "peak=peak_lr), where peak_lr may be traced too. A recipe's "
                "decay_scaling='schedule' or 'corrected' searches the peak: "
                "build that chain yourself with decaytx.add_decoupled_decay("
                f"weight_decay, learning_rate=decaytx.{fn}(schedule, peak=peak_lr))."
            )
        if not found > 0:
            raise ValueError(
                f"the schedule's peak is {found!r} (on the grid of steps searched); "
                "pass peak= explicitly as the largest learning rate."
            )
        return found
    if coef.is_traced(peak):
        # Its value cannot be seen (so neither checked nor compared with the
        # schedule's); its shape and dtype are static.
        return coef.check("peak", peak)
    p = _positive("peak", peak)
    try:
        s = _schedules.survey(schedule)
    except coef.TRACED_VALUE_ERRORS:
        return p
    if s.problem is None and math.isfinite(s.peak) and s.peak > p * (1 + _PEAK_RTOL):
        warnings.warn(
            f"{fn}: peak={p!r} is below the schedule's largest value "
            f"{s.peak!r} (at step {s.peak_step}), so the multiplier exceeds 1 "
            f"there (m = {s.peak / p:.6g} at that step). Pass the largest "
            "learning rate as peak=, or peak=None to have it searched.",
            DecayWarning,
            stacklevel=3,
        )
    return p


def lr_multiplier(schedule: Any, peak: float | jax.Array | None = None) -> Any:
    r"""The decay multiplier :math:`m_t = \eta_t / \eta_{max}`.

    Pass it as ``learning_rate=`` of an update-side form so the decay follows
    the schedule's shape but not its size: the paper's AdamW and Composer's
    ``DecoupledAdamW``.

    Per leaf: ``schedule`` may be a coefficient tree (a prefix of params,
    leaves floats or schedules) or :func:`decaytx.per_leaf`; the result is
    then a tree (a ``per_leaf``) of multipliers, each leaf's
    :math:`m_t = \eta_{i,t}/\eta_{i,max}` from its own schedule and its own
    peak (a leaf whose rate is a concrete 0 gets :math:`m = 0`).

    Args:
      schedule: the learning-rate schedule (a callable of the step count), or
        a float (then :math:`m_t = 1`), or a tree or ``per_leaf`` of them.
      peak: :math:`\eta_{max}`, a positive float or a scalar array, which may
        be traced (``jit``, ``vmap`` or ``grad`` over the peak learning rate:
        used as given). A concrete ``peak`` below the schedule's largest value
        gives :math:`m_t > 1` there and warns (:class:`decaytx.DecayWarning`).
        ``None``: the largest value of the schedule, searched once here on a
        grid of steps: every step below 16,384, 2,048 geometrically spaced
        steps up to :math:`2^{31}-1` (or the horizon of
        :func:`decaytx.with_horizon`) and the integers the schedule closes
        over (optax's boundaries, warm-up and decay steps) with their
        neighbours, then refined to the step around the best grid point. A
        schedule that closes over a traced value cannot be searched: pass
        ``peak=`` (a ``ValueError`` says so). Pass it to be exact. For
        per-leaf rates: ``None``, one value for every leaf, or a tree like
        ``schedule``.

    Returns:
      A schedule ``t -> eta_t / eta_max`` (or ``1.0`` for a float).

    Examples:
      >>> import optax, decaytx
      >>> m = decaytx.lr_multiplier(optax.cosine_decay_schedule(0.1, 100))
      >>> float(m(0)), round(float(m(50)), 4), float(m(100))
      (1.0, 0.5, 0.0)

      A traced peak (here ``vmap`` over the peak learning rate) is used as given:

      >>> import jax, jax.numpy as jnp
      >>> f = lambda p: decaytx.lr_multiplier(optax.cosine_decay_schedule(p, 100), peak=p)(50)
      >>> [round(float(v), 4) for v in jax.vmap(f)(jnp.array([0.1, 0.2]))]
      [0.5, 0.5]

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, ICLR 2019, Algorithm 2.
    """
    if _groups.is_tree(schedule):
        return per_leaf_multiplier(lr_multiplier, schedule, peak)
    if not coef.is_schedule(schedule):
        coef.check("schedule", schedule)
        return 1.0
    eta_max = _peak("lr_multiplier", schedule, peak)

    def multiplier(count: jax.Array) -> jax.Array:
        return jnp.asarray(schedule(count)) / eta_max

    # m from eta_t already evaluated (a recipe evaluates its schedule once per step).
    multiplier.of_rate = lambda eta: eta / eta_max  # pyright: ignore[reportFunctionMemberAccess]
    multiplier.schedule = schedule  # pyright: ignore[reportFunctionMemberAccess]
    return multiplier


def corrected_decay(schedule: Any, peak: float | jax.Array | None = None) -> Any:
    r"""The AdamC decay multiplier :math:`m_t = \eta_t^2 / \eta_{max}`.

    Decay proportional to :math:`\eta_t^2` keeps the steady-state ratio of
    gradient to weight norm constant while the learning rate is annealed
    (Defazio, 2025). Pass it as ``learning_rate=`` of an update-side form.

    Per leaf (a coefficient tree or :func:`decaytx.per_leaf` of rates), each
    leaf's :math:`m_t = \eta_{i,t}^2/\eta_{i,max}` from its own schedule and
    peak, as :func:`lr_multiplier`.

    Args:
      schedule: the learning-rate schedule, or a float :math:`\eta` (then the
        multiplier is the constant :math:`\eta^2/\eta = \eta`), or a tree or
        ``per_leaf`` of them.
      peak: :math:`\eta_{max}`, as for :func:`lr_multiplier` (may be traced;
        ``None`` searches the schedule's grid; a concrete one below the
        schedule's largest value warns). For per-leaf rates: ``None``, one
        value for every leaf, or a tree like ``schedule``.

    Returns:
      A schedule ``t -> eta_t**2 / eta_max`` (or a float).

    Examples:
      >>> import optax, decaytx
      >>> m = decaytx.corrected_decay(optax.linear_schedule(0.1, 0.0, 10))
      >>> round(float(m(0)), 6), round(float(m(5)), 6)
      (0.1, 0.025)

    References:
      Defazio, `Why Gradients Rapidly Increase Near the End of Training
      <https://arxiv.org/abs/2506.02285>`_, 2025.
    """
    if _groups.is_tree(schedule):
        return per_leaf_multiplier(corrected_decay, schedule, peak)
    if not coef.is_schedule(schedule):
        coef.check("schedule", schedule)
        # Traced under optax.inject_hyperparams: eta**2 / eta is eta itself.
        return schedule if coef.is_traced(schedule) else float(schedule)
    eta_max = _peak("corrected_decay", schedule, peak)

    def multiplier(count: jax.Array) -> jax.Array:
        eta = jnp.asarray(schedule(count))
        return eta * eta / eta_max

    # m from eta_t already evaluated (a recipe evaluates its schedule once per step).
    multiplier.of_rate = lambda eta: eta * eta / eta_max  # pyright: ignore[reportFunctionMemberAccess]
    multiplier.schedule = schedule  # pyright: ignore[reportFunctionMemberAccess]
    return multiplier


def per_leaf_multiplier(fn: Callable[[Any, Any], Any], rates: Any, peak: Any) -> Any:
    """``fn`` (:func:`lr_multiplier` or :func:`corrected_decay`) of each leaf's own rate.

    ``rates``: a coefficient tree or ``per_leaf``; ``peak``: ``None`` (each
    schedule's own peak, searched), one value for every leaf, or a tree of
    the structure of ``rates``. A rate that is a concrete 0 (a frozen group)
    gives ``m = 0``: no decay where no step.
    """
    name = getattr(fn, "__name__", "lr_multiplier")
    memo: dict[tuple[int, int], tuple[Any, Any, Any]] = {}

    def one(rate: Any, pk: Any) -> Any:
        if coef.is_zero(rate):
            return 0.0
        key = (id(rate), id(pk))
        if key not in memo:  # keeps rate and pk alive: their ids stay their own
            memo[key] = (rate, pk, fn(rate, pk))
        return memo[key][2]

    if isinstance(rates, _groups.PerLeaf):
        if _groups.is_tree(peak):
            raise TypeError(
                f"{name}(per_leaf(...), peak={coef.show(peak)}): a per_leaf rate takes "
                "peak=None (each leaf's schedule's own peak) or one peak for every leaf.")
        return _groups.PerLeaf(rates.fn, then=lambda r: one(r, peak))
    _groups.check("schedule", rates)
    if not _groups.is_tree(peak):
        return jax.tree.map(lambda r: one(r, peak), rates, is_leaf=coef.is_schedule)
    try:
        return jax.tree.map(one, rates, peak, is_leaf=coef.is_schedule)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{name}: peak= is a tree whose structure is not that of the rates "
            f"({e}); pass a tree with one peak per rate, one peak for all, or None."
        ) from e


def with_horizon(schedule: Any, total_steps: int) -> Any:
    r"""A schedule used for ``total_steps`` steps: checked below that step only.

    decaytx checks a schedule's values (finite, :math:`\ge 0`) up to step
    :math:`2^{31}-1` at the first ``init``; a schedule valid for the whole run
    but not past it (``lambda t: 1e-2 * jnp.sqrt(1 - t / 10_000)``) is refused
    there. Wrapped, it is checked (and searched for its peak) on steps
    :math:`0 \ldots T-1` only; its values are unchanged, and used as given past
    the horizon.

    Args:
      schedule: a callable of the step count.
      total_steps: :math:`T > 0`, the number of updates of the run.

    Returns:
      A schedule with the same values.

    Examples:
      >>> import jax.numpy as jnp, decaytx
      >>> from decaytx._scaling import with_horizon
      >>> s = with_horizon(lambda t: 1e-2 * jnp.sqrt(1 - t / 10_000), 10_001)
      >>> round(float(s(0)), 4)
      0.01
    """
    if not coef.is_schedule(schedule):
        raise TypeError(f"with_horizon: schedule={coef.show(schedule)} is not a schedule (a callable of the step count).")
    # A ValueError for any bad total_steps, a float or a bool included (0.2's contract).
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or not 0 < total_steps <= 2**31:
        raise ValueError(f"with_horizon: total_steps={total_steps!r} must be an int in [1, 2**31].")
    return _schedules.HorizonSchedule(schedule, total_steps)
