"""Decay with any optimizer: every optax optimizer with a built-in weight decay.

For each optax 0.2.8 optimizer that has a ``weight_decay`` (Adafactor:
``weight_decay_rate``), the decaytx chain of ``docs/optimizers.md`` must
reproduce it: float32, a warm-up cosine learning rate, 20 steps, relative
difference <= 1e-6. The reference is optax's own optimizer with its decay on;
the decaytx side is the same optimizer with its decay off (or its parts) plus
a decaytx transform where the decay belongs:

* last (``add_decoupled_decay(λ, learning_rate=η)``) where optax adds ``λθ``
  just before ``scale_by_learning_rate``: adamw, nadamw, adamaxw, lion, adan,
  muon, ademamix, simplified_ademamix, acprop, galore;
* first (``add_l2_grad(λ)``) where optax adds it to the gradient: lars,
  adadelta, madgrad, cocob, dog, dowg;
* before the trust ratio (``add_l2_grad(λ)`` between Adam and
  ``scale_by_trust_ratio``): lamb;
* inside the base optimizer: schedule_free_adamw, schedule_free_sgd;
* last with ``learning_rate=None``: adafactor (its decay is not multiplied by
  the learning rate).

For the placement exceptions a test shows that the naive placement (decay last,
multiplied by the learning rate) gives a different trajectory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _compare import run_jax, tanh_regression, warmup_cosine

import decaytx

STEPS = 20
LR = 0.02
WD = 0.1
RTOL = 1e-6
SCHED = optax.warmup_cosine_decay_schedule(0.0, LR, 5, STEPS, LR / 10)
WARM = optax.warmup_constant_schedule(0.0, LR, 5)  # schedule-free's warm-up


def _matrices(params: Any) -> Any:
    return jax.tree.map(lambda x: x.ndim == 2, params)


def _vectors(params: Any) -> Any:
    return jax.tree.map(lambda x: x.ndim != 2, params)


# --------------------------------------------------------------------------
# The problem: a two-layer tanh regression in float32.
# --------------------------------------------------------------------------


def _problem() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    return tanh_regression(seed=5, d_in=6, d_out=3)


PARAMS, X, Y = _problem()


def _loss(p: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return 0.5 * jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)


def _run(opt: optax.GradientTransformation, steps: int = STEPS) -> dict[str, np.ndarray]:
    xj, yj = jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32)
    return run_jax(opt, PARAMS, lambda p: _loss(p, xj, yj), steps, jnp.float32)


def _rel(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a) / max(
        float(np.max(np.abs(b[k]))) for k in b
    )


# --------------------------------------------------------------------------
# name: (optax with its decay, optax without it, the decaytx chain)
# --------------------------------------------------------------------------

Factory = Callable[[], optax.GradientTransformation]

_FACTOR_MIN = 4  # so that Adafactor factors the (6, 8) and (8, 3) matrices


def _schedule_free_adamw_base(wd_stage: optax.GradientTransformation | None) -> Any:
    # optax.contrib.schedule_free_adamw's base optimizer, with the decay stage given.
    parts = [optax.scale_by_rms(decay=0.999, eps=1e-8, eps_in_sqrt=False, bias_correction=True),
             optax.scale_by_learning_rate(WARM)]
    return optax.chain(*parts, *([wd_stage] if wd_stage else []))


CASES: dict[str, tuple[Factory, Factory, Factory]] = {
    # -- decay last, multiplied by the learning rate (optax: add_decayed_weights
    #    right before scale_by_learning_rate).
    "adamw": (
        lambda: optax.adamw(SCHED, weight_decay=WD, mask=_matrices),
        lambda: optax.adam(SCHED),
        lambda: decaytx.adamw(SCHED, WD, mask=_matrices),
    ),
    "nadamw": (
        lambda: optax.nadamw(SCHED, weight_decay=WD),
        lambda: optax.nadam(SCHED),
        lambda: decaytx.adamw(SCHED, WD, nesterov=True),
    ),
    "adamaxw": (
        lambda: optax.adamaxw(SCHED, weight_decay=WD),
        lambda: optax.adamax(SCHED),
        lambda: optax.chain(optax.adamax(SCHED), decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    ),
    "lion": (
        lambda: optax.lion(SCHED, weight_decay=WD),
        lambda: optax.lion(SCHED, weight_decay=0.0),
        lambda: optax.chain(optax.lion(SCHED, weight_decay=0.0),
                            decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    ),
    "adan": (
        lambda: optax.adan(SCHED, weight_decay=WD),
        lambda: optax.adan(SCHED),
        lambda: optax.chain(optax.adan(SCHED), decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    ),
    "muon": (
        # Muon on the matrices with weight_decay, AdamW (nesterov) on the rest
        # with adam_weight_decay: two masked decays, one per label.
        lambda: optax.contrib.muon(SCHED, weight_decay=WD, adam_weight_decay=WD / 2),
        lambda: optax.contrib.muon(SCHED),
        lambda: optax.chain(
            optax.contrib.muon(SCHED),
            decaytx.add_decoupled_decay(WD, learning_rate=SCHED, mask=_matrices),
            decaytx.add_decoupled_decay(WD / 2, learning_rate=SCHED, mask=_vectors),
        ),
    ),
    "ademamix": (
        lambda: optax.contrib.ademamix(SCHED, weight_decay=WD),
        lambda: optax.contrib.ademamix(SCHED),
        lambda: optax.chain(optax.contrib.ademamix(SCHED),
                            decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    ),
    "simplified_ademamix": (
        lambda: optax.contrib.simplified_ademamix(SCHED, weight_decay=WD),
        lambda: optax.contrib.simplified_ademamix(SCHED),
        lambda: optax.chain(optax.contrib.simplified_ademamix(SCHED),
                            decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    ),
    "acprop": (
        lambda: optax.contrib.acprop(SCHED, weight_decay=WD),
        lambda: optax.contrib.acprop(SCHED),
        lambda: optax.chain(optax.contrib.acprop(SCHED),
                            decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    ),
    "galore": (
        lambda: optax.contrib.galore(SCHED, rank=2, weight_decay=WD),
        lambda: optax.contrib.galore(SCHED, rank=2),
        lambda: optax.chain(optax.contrib.galore(SCHED, rank=2),
                            decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    ),
    # -- decay first: optax adds the L2 gradient before the optimizer.
    "lars": (
        lambda: optax.lars(SCHED, weight_decay=WD),
        lambda: optax.lars(SCHED),
        lambda: optax.chain(decaytx.add_l2_grad(WD), optax.lars(SCHED)),
    ),
    "adadelta": (
        lambda: optax.adadelta(1.0, weight_decay=WD),
        lambda: optax.adadelta(1.0),
        lambda: optax.chain(decaytx.add_l2_grad(WD), optax.adadelta(1.0)),
    ),
    "madgrad": (
        lambda: optax.contrib.madgrad(SCHED, weight_decay=WD),
        lambda: optax.contrib.madgrad(SCHED),
        lambda: optax.chain(decaytx.add_l2_grad(WD), optax.contrib.madgrad(SCHED)),
    ),
    "cocob": (
        lambda: optax.contrib.cocob(SCHED, weight_decay=WD),
        lambda: optax.contrib.cocob(SCHED),
        lambda: optax.chain(decaytx.add_l2_grad(WD), optax.contrib.cocob(SCHED)),
    ),
    "dog": (
        lambda: optax.contrib.dog(1.0, weight_decay=WD),
        lambda: optax.contrib.dog(1.0),
        lambda: optax.chain(decaytx.add_l2_grad(WD), optax.contrib.dog(1.0)),
    ),
    "dowg": (
        lambda: optax.contrib.dowg(1.0, weight_decay=WD),
        lambda: optax.contrib.dowg(1.0),
        lambda: optax.chain(decaytx.add_l2_grad(WD), optax.contrib.dowg(1.0)),
    ),
    # -- exceptions to "update-side goes last".
    "lamb": (
        # The decay enters the direction before the trust ratio ||θ|| / ||u||.
        lambda: optax.lamb(SCHED, weight_decay=WD),
        lambda: optax.lamb(SCHED),
        lambda: optax.chain(
            optax.scale_by_adam(eps=1e-6),
            decaytx.add_l2_grad(WD),
            optax.scale_by_trust_ratio(),
            optax.scale_by_learning_rate(SCHED),
        ),
    ),
    "adafactor": (
        # Adafactor's decay is not multiplied by the learning rate.
        lambda: optax.adafactor(SCHED, weight_decay_rate=WD / 100, min_dim_size_to_factor=_FACTOR_MIN),
        lambda: optax.adafactor(SCHED, min_dim_size_to_factor=_FACTOR_MIN),
        lambda: optax.chain(optax.adafactor(SCHED, min_dim_size_to_factor=_FACTOR_MIN),
                            decaytx.add_decoupled_decay(WD / 100, learning_rate=None)),
    ),
    "schedule_free_adamw": (
        # The decay acts on the interpolated point y, inside the base optimizer.
        lambda: optax.contrib.schedule_free_adamw(LR, warmup_steps=5, weight_decay=WD),
        lambda: optax.contrib.schedule_free_adamw(LR, warmup_steps=5),
        lambda: optax.contrib.schedule_free(
            _schedule_free_adamw_base(decaytx.add_decoupled_decay(WD, learning_rate=WARM)),
            learning_rate=WARM,
        ),
    ),
    "schedule_free_sgd": (
        lambda: optax.contrib.schedule_free_sgd(LR, warmup_steps=5, weight_decay=WD),
        lambda: optax.contrib.schedule_free_sgd(LR, warmup_steps=5),
        lambda: optax.contrib.schedule_free(
            optax.chain(decaytx.add_l2_grad(WD), optax.sgd(WARM)), learning_rate=WARM
        ),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_decaytx_chain_reproduces_optax_optimizer(name: str) -> None:
    with_decay, without_decay, ours_factory = CASES[name]
    theirs = _run(with_decay())
    ours = _run(ours_factory())
    rel = _rel(ours, theirs)
    effect = _rel(_run(without_decay()), theirs)
    print(f"\noptax {name}: rel diff {rel:.2e} (decay's own effect {effect:.2e})")
    assert effect > 100 * RTOL, f"{name}: the decay is too small to be tested"
    assert rel <= RTOL, f"{name}: relative difference {rel:.3e} > {RTOL:g}"


def _float64_schedules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's schedules in float64 for both sides (CASES reads them when called).

    optax's schedules return float32 at an int32 count even under x64, which
    would round the products of a float64 run: SCHED is written out in float64,
    and WARM (schedule-free's warm-up, which optax's schedule_free_adamw builds
    itself in float32) keeps optax's float32 values, cast to float64.
    """
    module = sys.modules[__name__]
    warm32 = WARM
    monkeypatch.setattr(module, "SCHED", lambda count: warmup_cosine(
        count, lr=LR, warmup=5, steps=STEPS))
    monkeypatch.setattr(module, "WARM", lambda count: jnp.asarray(warm32(count), jnp.float64))


@pytest.mark.parametrize("name", list(CASES))
def test_decaytx_chain_reproduces_optax_optimizer_float64(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row again in float64: agreement to rounding, 1e-14 relative."""
    _float64_schedules(monkeypatch)
    with_decay, without_decay, ours_factory = CASES[name]
    xj, yj = jnp.asarray(X), jnp.asarray(Y)
    with jax.enable_x64(True):
        run = lambda opt: run_jax(opt, PARAMS, lambda p: _loss(p, xj, yj), STEPS,  # noqa: E731
                                  jnp.float64)
        theirs = run(with_decay())
        rel = _rel(run(ours_factory()), theirs)
        effect = _rel(run(without_decay()), theirs)
    print(f"\noptax {name} [float64]: rel diff {rel:.1e} (decay's own effect {effect:.1e})")
    assert effect > 1e-4, f"{name}: the decay is too small to be tested"
    assert rel <= 1e-14, f"{name}: relative difference {rel:.3e}"


# The naive spelling of each exception: the decay last, multiplied by eta.
MISPLACED: dict[str, Factory] = {
    "lamb": lambda: optax.chain(optax.lamb(SCHED), decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    "lars": lambda: optax.chain(optax.lars(SCHED), decaytx.add_decoupled_decay(WD, learning_rate=SCHED)),
    "adafactor": lambda: optax.chain(
        optax.adafactor(SCHED, min_dim_size_to_factor=_FACTOR_MIN),
        decaytx.add_decoupled_decay(WD / 100, learning_rate=SCHED),
    ),
    "schedule_free_adamw": lambda: optax.chain(
        optax.contrib.schedule_free_adamw(LR, warmup_steps=5),
        decaytx.add_decoupled_decay(WD, learning_rate=WARM),
    ),
}


@pytest.mark.parametrize("name", list(MISPLACED))
def test_naive_placement_differs_for_the_exceptions(name: str) -> None:
    theirs = _run(CASES[name][0]())
    naive = _rel(_run(MISPLACED[name]()), theirs)
    print(f"\noptax {name}: naive placement rel diff {naive:.2e}")
    assert naive > 1e3 * RTOL


# --------------------------------------------------------------------------
# What decaytx adds: masks, anchors, cautious, schedules (closed forms).
# --------------------------------------------------------------------------

_ANCHOR = {k: np.full_like(v, 0.25) for k, v in PARAMS.items()}

# Optimizers whose direction is exactly 0 for a zero gradient (constant lr).
_ZERO_DIRECTION: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "adamw": lambda decay: optax.chain(optax.adam(LR), decay),
    "lion": lambda decay: optax.chain(optax.lion(LR, weight_decay=0.0), decay),
    "adan": lambda decay: optax.chain(optax.adan(LR), decay),
    "muon": lambda decay: optax.chain(optax.contrib.muon(LR), decay),
    "adafactor": lambda decay: optax.chain(optax.adafactor(LR), decay),
}


@pytest.mark.parametrize("name", list(_ZERO_DIRECTION))
def test_mask_and_anchor_on_any_optimizer(name: str) -> None:
    """Zero gradient: u = -m λ (θ - a) on the masked leaves, 0 elsewhere."""
    m = None if name == "adafactor" else LR
    decay = decaytx.add_decoupled_decay(
        WD, learning_rate=m, mask=_matrices, anchor={k: jnp.asarray(v) for k, v in _ANCHOR.items()}
    )
    opt = _ZERO_DIRECTION[name](decay)
    p = {k: jnp.asarray(v, jnp.float32) for k, v in PARAMS.items()}
    u, _ = jax.jit(opt.update)(jax.tree.map(jnp.zeros_like, p), opt.init(p), p)
    factor = 1.0 if m is None else LR
    for k, v in PARAMS.items():
        want = -factor * WD * (v - 0.25) if v.ndim == 2 else np.zeros_like(v)
        np.testing.assert_allclose(np.asarray(u[k]), want, rtol=1e-6, atol=1e-9)


def test_cautious_decay_on_lion() -> None:
    """Cautious: decay only where Lion's (sign) step already moves θ toward 0."""
    opt = optax.chain(optax.lion(LR, weight_decay=0.0),
                      decaytx.add_decoupled_decay(WD, learning_rate=LR, cautious=True))
    p = {k: jnp.asarray(v, jnp.float32) for k, v in PARAMS.items()}
    g = jax.grad(_loss)(p, jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32))
    u, _ = jax.jit(opt.update)(g, opt.init(p), p)
    for k, v in PARAMS.items():
        # Lion's first step: -lr * sign((1 - b1) g) = -lr * sign(g).
        step = -LR * np.sign(np.asarray(g[k], np.float64))
        want = step - np.where(step * v <= 0, LR * WD * v, 0.0)
        np.testing.assert_allclose(np.asarray(u[k]), want, rtol=1e-6, atol=1e-9)


def test_lamb_decay_toward_init_keeps_an_unmoved_model() -> None:
    """LAMB with add_l2_grad(anchor="init") before the trust ratio.

    At θ = θ_0 the anchored penalty's gradient is 0, so the first step is
    optax's plain LAMB step (decay toward 0 would change it).
    """
    p = {k: jnp.asarray(v, jnp.float32) for k, v in PARAMS.items()}
    g = jax.grad(_loss)(p, jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32))
    anchored = optax.chain(optax.scale_by_adam(eps=1e-6), decaytx.add_l2_grad(WD, anchor="init"),
                           optax.scale_by_trust_ratio(), optax.scale_by_learning_rate(LR))
    plain = optax.lamb(LR)
    u, _ = anchored.update(g, anchored.init(p), p)
    ref, _ = plain.update(g, plain.init(p), p)
    for k in PARAMS:
        np.testing.assert_allclose(np.asarray(u[k]), np.asarray(ref[k]), rtol=1e-6)
    toward_zero = optax.lamb(LR, weight_decay=WD)
    u0, _ = toward_zero.update(g, toward_zero.init(p), p)
    assert max(float(jnp.max(jnp.abs(u0[k] - ref[k]))) for k in PARAMS) > 1e-5


# --------------------------------------------------------------------------
# Muon: its own split (ndim == 2) and its own Adam learning rate, float64.
# --------------------------------------------------------------------------

# muon's default labels: 'muon' where x.ndim == 2, 'adam' elsewhere. decaytx's
# masks.matrices() is another rule (it decays 3-D kernels, skips (1, n) rows).
MUON_SPLIT = decaytx.masks.ndim_at_least(2) & ~decaytx.masks.ndim_at_least(3)


def _muon_problem() -> tuple[dict[str, np.ndarray], Callable]:
    """Leaves where the two rules disagree: a 3-D kernel and a (1, n) matrix."""
    rng = np.random.default_rng(3)
    shapes = {"w": (6, 8), "kernel3d": (2, 3, 4), "row": (1, 5), "b": (8,)}
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    target = {k: rng.normal(size=s) for k, s in shapes.items()}

    def loss(p: dict) -> jax.Array:
        return sum(jnp.sum(jnp.tanh(p[k]) * target[k] + 0.5 * (p[k] - target[k]) ** 2)
                   for k in p)

    return params, loss


def test_muon_row_uses_muons_split_and_adam_learning_rate_float64() -> None:
    """docs/optimizers.md's Muon row against optax.contrib.muon, 100 steps in float64,
    with adam_learning_rate != learning_rate; the two wrong spellings are measurably off."""
    eta, eta_adam, wd, wd_adam = 0.02, 0.005, 0.1, 0.05
    params, loss = _muon_problem()

    def base() -> optax.GradientTransformation:
        return optax.contrib.muon(eta, adam_learning_rate=eta_adam)

    def spelled(mask: Any, adam_lr: float) -> optax.GradientTransformation:
        return optax.chain(base(), decaytx.add_decoupled_decay(wd, learning_rate=eta, mask=mask),
                           decaytx.add_decoupled_decay(wd_adam, learning_rate=adam_lr, mask=~mask))

    with jax.enable_x64(True):
        run = lambda opt: run_jax(opt, params, loss, 100, jnp.float64)  # noqa: E731
        theirs = run(optax.contrib.muon(eta, weight_decay=wd, adam_weight_decay=wd_adam,
                                        adam_learning_rate=eta_adam))
        effect = _rel(run(base()), theirs)
        ours = _rel(run(spelled(MUON_SPLIT, eta_adam)), theirs)
        matrices_mask = _rel(run(spelled(decaytx.masks.matrices(), eta_adam)), theirs)
        eta_for_adam = _rel(run(spelled(MUON_SPLIT, eta)), theirs)
    print(f"\noptax muon [float64]: rel diff {ours:.1e} (decay's effect {effect:.1e}); "
          f"masks.matrices() {matrices_mask:.1e}, eta for the AdamW part {eta_for_adam:.1e}")
    assert effect > 1e-2
    assert ours <= 1e-12
    assert matrices_mask > 1e-3 and eta_for_adam > 1e-3
