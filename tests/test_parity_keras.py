"""decaytx against Keras 3 itself (KERAS_BACKEND=jax), optimizer by optimizer.

Each row of docs/recipes.md's Keras part runs here: the real
``keras.optimizers.SGD/Adam/AdamW(weight_decay=...)`` and
``keras.regularizers.L1/L2/L1L2``, with constant learning rates and Keras'
own schedules (``CosineDecay`` with warm-up, ``PiecewiseConstantDecay``),
against the decaytx chain the table gives, on the same problem, in float32
and float64. Keras runs through ``optimizer.stateless_apply`` under
``jax.jit``, as its JAX trainer does. Every case prints its largest absolute
difference (``pytest -s``).

Keras' ``weight_decay`` on the other optimizers (Adamax, Nadam, RMSprop,
Adagrad, Adadelta, Lion, Lamb, Adafactor, ScheduleFreeAdamW, Ftrl) is checked
with Keras' own step as the base, so that the decay's spelling alone is under
test; Lamb, Lion and AdamW(amsgrad) also as whole decaytx/optax chains. Keras'
L1 at weights exactly 0 is checked from zero-initialised biases.

The backend is chosen here, before Keras is imported; importing Keras does not
change JAX's configuration (checked in a fresh process below), so the rest of
the suite is unaffected.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="Keras 3 is in the 'parity' extra")
if keras.backend.backend() != "jax":  # Keras was imported earlier with another backend
    pytest.skip(f"Keras runs on {keras.backend.backend()!r}, not jax", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import decaytx  # noqa: E402

STEPS = 40
LR = 0.05
WD = 0.01
KEYS = ("kernel", "bias")  # the order of Keras' variable lists
TOL = {"float32": 5e-6, "float64": 1e-12}


def _problem(dtype: str, steps: int, noise_scale: float = 0.3) -> tuple[dict, Callable]:
    """Initial params and a loss: a diagonal quadratic plus a fresh linear term per step."""
    rng = np.random.default_rng(0)
    params = {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=(3,))}
    target = {k: rng.normal(size=v.shape) for k, v in params.items()}
    curv = {k: rng.uniform(0.5, 2.0, size=v.shape) for k, v in params.items()}
    noise = {k: noise_scale * rng.normal(size=(steps, *v.shape)) for k, v in params.items()}
    cast = lambda tree: {k: jnp.asarray(v, dtype) for k, v in tree.items()}  # noqa: E731
    target, curv, noise = cast(target), cast(curv), cast(noise)

    def loss(p: dict, t: jax.Array) -> jax.Array:
        return sum(
            jnp.sum(0.5 * curv[k] * (p[k] - target[k]) ** 2 + noise[k][t] * p[k]) for k in KEYS
        )

    return cast(params), loss


def _run_keras(opt: Any, params: dict, loss: Callable, steps: int, reg: Any = None) -> dict:
    variables = [keras.Variable(params[k], name=k, dtype=params[k].dtype) for k in KEYS]
    if reg is not None:
        full = lambda p, t: loss(p, t) + sum(reg(p[k]) for k in KEYS)  # noqa: E731
    else:
        full = loss
    opt.build(variables)

    @jax.jit
    def step(opt_vars: list, tvars: list, t: jax.Array) -> tuple[list, list]:
        g = jax.grad(full)(dict(zip(KEYS, tvars)), t)
        tvars, opt_vars = opt.stateless_apply(opt_vars, [g[k] for k in KEYS], tvars)
        return opt_vars, tvars

    opt_vars = [v.value for v in opt.variables]
    tvars = [v.value for v in variables]
    for t in range(steps):
        opt_vars, tvars = step(opt_vars, tvars, jnp.asarray(t))
    return dict(zip(KEYS, tvars))


def _run_decaytx(opt: optax.GradientTransformation, params: dict, loss: Callable,
                 steps: int) -> dict:
    @jax.jit
    def step(p: dict, s: Any, t: jax.Array) -> tuple[dict, Any]:
        u, s = opt.update(jax.grad(loss)(p, t), s, p)
        return optax.apply_updates(p, u), s

    p, s = params, opt.init(params)
    for t in range(steps):
        p, s = step(p, s, jnp.asarray(t))
    return p


@contextlib.contextmanager
def _floatx(dtype: str) -> Iterator[None]:
    """Keras' floatx for one case: Keras keeps the learning rate in a variable of
    this dtype and computes its schedules in it (float32 would round eta)."""
    before = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(before)


@pytest.fixture
def float64() -> Iterator[None]:
    with jax.enable_x64(True), _floatx("float64"):
        yield


def _max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
               for k in KEYS)


def _cosine() -> Any:
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=30, alpha=0.1, warmup_target=LR, warmup_steps=10)


def _piecewise() -> Any:
    return keras.optimizers.schedules.PiecewiseConstantDecay([10, 25], [LR, 0.02, 0.005])


def _sched(keras_schedule: Any) -> Callable:
    """A Keras schedule is a callable of the step: decaytx and optax take it as it is."""
    return lambda count: keras_schedule(count)


def _keras_momentum(lr: Any, wd: float, mu: float, nesterov: bool, mask: Any = None) -> Any:
    # Keras' velocity holds lr * g (v <- mu v - lr g): scale first, then trace.
    return optax.chain(optax.scale_by_learning_rate(lr), optax.trace(mu, nesterov=nesterov),
                       decaytx.add_decoupled_decay(wd, learning_rate=lr, mask=mask))


def _keras_adamw(lr: Any, wd: float, eps: float = 1e-7, mask: Any = None) -> Any:
    return optax.chain(decaytx.scale_by_keras_adam(eps=eps), optax.scale_by_learning_rate(lr),
                       decaytx.add_decoupled_decay(wd, learning_rate=lr, mask=mask))


# id -> (Keras optimizer factory, decaytx optimizer factory, Keras regularizer or None,
#        set Keras' exclude_from_weight_decay(var_names=["bias"]) / decaytx mask)
CASES: dict[str, tuple[Callable, Callable, Callable | None]] = {
    # keras.optimizers.SGD(weight_decay=...)
    "SGD(wd)": (lambda: keras.optimizers.SGD(LR, weight_decay=WD),
                lambda: decaytx.sgdw(LR, WD), None),
    "SGD(momentum, wd)": (lambda: keras.optimizers.SGD(LR, momentum=0.9, weight_decay=WD),
                          lambda: decaytx.sgdw(LR, WD, momentum=0.9), None),
    "SGD(nesterov, wd)": (
        lambda: keras.optimizers.SGD(LR, momentum=0.9, nesterov=True, weight_decay=WD),
        lambda: decaytx.sgdw(LR, WD, momentum=0.9, nesterov=True), None),
    "SGD(wd, CosineDecay warm-up)": (
        lambda: keras.optimizers.SGD(_cosine(), weight_decay=WD),
        lambda: decaytx.sgdw(_sched(_cosine()), WD), None),
    "SGD(momentum, wd, CosineDecay warm-up)": (
        lambda: keras.optimizers.SGD(_cosine(), momentum=0.9, weight_decay=WD),
        lambda: _keras_momentum(_sched(_cosine()), WD, 0.9, False), None),
    "SGD(nesterov, wd, PiecewiseConstantDecay)": (
        lambda: keras.optimizers.SGD(_piecewise(), momentum=0.9, nesterov=True, weight_decay=WD),
        lambda: _keras_momentum(_sched(_piecewise()), WD, 0.9, True), None),
    # keras.optimizers.Adam / AdamW(weight_decay=...)
    "Adam(wd)": (lambda: keras.optimizers.Adam(0.01, weight_decay=WD),
                 lambda: _keras_adamw(0.01, WD), None),
    "AdamW(eps=1e-7, CosineDecay warm-up, bias excluded)": (
        lambda: _exclude_bias(keras.optimizers.AdamW(_cosine(), weight_decay=0.004)),
        lambda: _keras_adamw(_sched(_cosine()), 0.004, mask=decaytx.masks.exclude("bias")),
        None),
    "AdamW(eps=0, PiecewiseConstantDecay) vs decaytx.adamw": (
        lambda: keras.optimizers.AdamW(_piecewise(), weight_decay=0.004, epsilon=0.0),
        lambda: decaytx.adamw(_sched(_piecewise()), 0.004, eps=0.0), None),
    # keras.regularizers: c * sum(theta^2) has gradient 2c theta, hence 2c.
    "SGD + regularizers.L2": (lambda: keras.optimizers.SGD(LR),
                              lambda: decaytx.sgd_l2(LR, 2 * 0.02),
                              lambda: keras.regularizers.L2(0.02)),
    "SGD(momentum) + regularizers.L1": (
        lambda: keras.optimizers.SGD(LR, momentum=0.9),
        lambda: optax.chain(decaytx.add_l1_subgrad(0.02), optax.trace(0.9),
                            optax.scale_by_learning_rate(LR)),
        lambda: keras.regularizers.L1(0.02)),
    "SGD(CosineDecay) + regularizers.L1L2": (
        lambda: keras.optimizers.SGD(_cosine()),
        lambda: optax.chain(decaytx.add_elastic_net_grad(0.01, 2 * 0.02),
                            optax.scale_by_learning_rate(_sched(_cosine()))),
        lambda: keras.regularizers.L1L2(l1=0.01, l2=0.02)),
    "Adam + regularizers.L2": (
        lambda: keras.optimizers.Adam(0.01),
        lambda: optax.chain(decaytx.add_l2_grad(2 * 0.02), decaytx.scale_by_keras_adam(),
                            optax.scale_by_learning_rate(0.01)),
        lambda: keras.regularizers.L2(0.02)),
}


def _exclude_bias(opt: Any) -> Any:
    opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_keras(case: str, dtype: str) -> None:
    make_keras, make_decaytx, make_reg = CASES[case]
    with jax.enable_x64(dtype == "float64"), _floatx(dtype):
        params, loss = _problem(dtype, STEPS)
        theirs = _run_keras(make_keras(), params, loss, STEPS,
                            None if make_reg is None else make_reg())
        ours = _run_decaytx(make_decaytx(), params, loss, STEPS)
        assert all(ours[k].dtype == jnp.dtype(dtype) for k in KEYS)
        moved = _max_diff(params, theirs)
        diff = _max_diff(ours, theirs)
    print(f"parity keras {case} [{dtype}]: max abs diff {diff:.1e} over {STEPS} steps "
          f"(params moved {moved:.2f})")
    assert moved > 0.1  # the run did something
    assert diff <= TOL[dtype], (case, dtype, diff)


@pytest.mark.usefixtures("float64")
def test_pytorch_style_momentum_differs_from_keras_with_a_schedule() -> None:
    # sgdw keeps g in the buffer and scales by eta_t afterwards (PyTorch, optax);
    # Keras keeps eta_t g. Same for a constant rate, not under a schedule.
    params, loss = _problem("float64", STEPS)
    theirs = _run_keras(keras.optimizers.SGD(_cosine(), momentum=0.9, weight_decay=WD),
                        params, loss, STEPS)
    same = _run_decaytx(_keras_momentum(_sched(_cosine()), WD, 0.9, False), params, loss, STEPS)
    torch_style = _run_decaytx(decaytx.sgdw(_sched(_cosine()), WD, momentum=0.9),
                               params, loss, STEPS)
    assert _max_diff(same, theirs) <= 1e-12
    assert _max_diff(torch_style, theirs) > 1e-3


@pytest.mark.usefixtures("float64")
def test_keras_epsilon_drift_over_1000_steps() -> None:
    """Keras' default eps=1e-7 with optax's eps placement (decaytx.adamw) vs
    scale_by_keras_adam, 1000 steps of AdamW(0.01, weight_decay=0.004) in float64."""
    steps, rows = 1000, {}
    for scale in (0.3, 1e-4):  # gradient noise: O(1) and small gradients
        params, loss = _problem("float64", steps, noise_scale=scale)
        theirs = _run_keras(keras.optimizers.AdamW(0.01, weight_decay=0.004), params, loss, steps)
        exact = _max_diff(_run_decaytx(_keras_adamw(0.01, 0.004), params, loss, steps), theirs)
        optax_eps = _max_diff(_run_decaytx(decaytx.adamw(0.01, 0.004, eps=1e-7), params, loss,
                                           steps), theirs)
        rows[scale] = (exact, optax_eps)
        print(f"parity keras AdamW eps=1e-7, 1000 steps, gradient noise {scale:g}: "
              f"scale_by_keras_adam {exact:.1e}, decaytx.adamw(eps=1e-7) drifts {optax_eps:.1e}")
        assert exact <= 1e-12
        assert optax_eps > 100 * max(exact, 1e-15)  # the placement is measurable


def test_scale_by_keras_adam_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"b2=1\.0 must be in \[0, 1\)"):
        decaytx.scale_by_keras_adam(b2=1.0)
    with pytest.raises(ValueError, match=r"eps=-1e-07 must be finite and >= 0"):
        decaytx.scale_by_keras_adam(eps=-1e-7)
    with pytest.raises(TypeError, match=r"b1='0.9' must be a Python float"):
        decaytx.scale_by_keras_adam(b1="0.9")  # type: ignore[arg-type]


def test_importing_keras_leaves_jax_config_alone(tmp_path) -> None:
    # In a fresh process: every jax.config value and the devices, before and after.
    script = textwrap.dedent("""
        import json, os, sys
        import jax
        snap = lambda: {k: repr(v) for k, v in sorted(jax.config.values.items())}
        before = snap()
        os.environ["KERAS_BACKEND"] = "jax"
        import keras
        assert keras.backend.backend() == "jax"
        after = snap()
        print(json.dumps({"changed": {k: (before.get(k), after.get(k)) for k in after
                                      if before.get(k) != after[k]},
                          "x64": bool(jax.config.jax_enable_x64)}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["changed"] == {}, report["changed"]
    assert report["x64"] is False


def test_scale_by_keras_adam_keeps_dtypes() -> None:
    params = {"w": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    opt = decaytx.scale_by_keras_adam()
    state = opt.init(params)
    for _ in range(2):
        u, state = jax.jit(opt.update)(params, state)
    assert u["w"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.float32
    assert state.mu["w"].dtype == jnp.bfloat16 and state.count.dtype == jnp.int32


# --------------------------------------------------------------------------
# Keras' weight_decay on any optimizer: var <- var - var*λ*η_t, then the step.
# The decaytx spelling is exact where Keras' step ignores the variable's value;
# where the step reads it (Lamb's and Adafactor's scale, schedule-free's
# interpolation, Ftrl's linear term) the spelling changes or does not exist.
# Keras' own step (weight_decay=None) is the base here, as an optax transform,
# so these tests check the decay's spelling alone, against Keras itself.
# --------------------------------------------------------------------------


def _keras_step(opt: Any, params: dict) -> optax.GradientTransformation:
    """Keras' update step as an optax transform: u = (θ after Keras' step) - θ."""
    opt.build([keras.Variable(params[k], name=k, dtype=params[k].dtype) for k in KEYS])

    def init(p: dict) -> list:
        del p
        return [v.value for v in opt.variables]

    def update(g: dict, state: list, p: dict | None = None) -> tuple[dict, list]:
        assert p is not None
        new, state = opt.stateless_apply(state, [g[k] for k in KEYS], [p[k] for k in KEYS])
        return {k: n - p[k] for k, n in zip(KEYS, new)}, state

    return optax.GradientTransformation(init, update)


def _shrink_step(lr: Any, wd: float) -> optax.GradientTransformation:
    """The step times (1 - η_t λ): what a step that scales with ‖θ‖ makes of the decay."""
    if callable(lr):
        return optax.scale_by_schedule(lambda count: 1.0 - wd * lr(count))
    return optax.scale(1.0 - wd * lr)


def _after_first_step(lr: Any) -> Callable:
    """η_t (1 - 1/t), t = count + 1: schedule-free's interpolation keeps 1 - 1/t of y."""
    as_fn = lr if callable(lr) else (lambda count: lr)
    return lambda count: as_fn(count) * (1.0 - 1.0 / (count + 1.0))


# name -> (Keras optimizer factory taking weight_decay, how the decay is spelled)
# "last": add_decoupled_decay(λ, learning_rate=η) after the step;
# "shrink": the step times (1 - η_t λ), then the decay (Lamb, Adafactor);
# "schedule_free": the decay last with multiplier η_t (1 - 1/t).
ANY_OPTIMIZER: dict[str, tuple[Callable, str]] = {
    "SGD(momentum)": (lambda wd: keras.optimizers.SGD(LR, momentum=0.9, weight_decay=wd), "last"),
    "Adagrad": (lambda wd: keras.optimizers.Adagrad(LR, weight_decay=wd), "last"),
    "RMSprop": (lambda wd: keras.optimizers.RMSprop(0.01, weight_decay=wd), "last"),
    "Adadelta": (lambda wd: keras.optimizers.Adadelta(1.0, weight_decay=wd), "last"),
    "Adamax": (lambda wd: keras.optimizers.Adamax(0.01, weight_decay=wd), "last"),
    "Nadam": (lambda wd: keras.optimizers.Nadam(0.01, weight_decay=wd), "last"),
    "Lion(CosineDecay)": (lambda wd: keras.optimizers.Lion(_cosine(), weight_decay=wd), "last"),
    "Lamb": (lambda wd: keras.optimizers.Lamb(LR, weight_decay=wd), "shrink"),
    "Lamb(CosineDecay)": (lambda wd: keras.optimizers.Lamb(_cosine(), weight_decay=wd), "shrink"),
    "Adafactor": (lambda wd: keras.optimizers.Adafactor(LR, weight_decay=wd), "shrink"),
    "ScheduleFreeAdamW": (
        lambda wd: keras.optimizers.ScheduleFreeAdamW(0.01, weight_decay=wd), "schedule_free"),
    "ScheduleFreeAdamW(warm-up, PiecewiseConstantDecay)": (
        lambda wd: keras.optimizers.ScheduleFreeAdamW(_piecewise(), warmup_steps=5,
                                                      weight_decay=wd), "schedule_free"),
}
ANY_WD = 0.1  # large enough that a wrong spelling shows
# Keras' Adafactor computes the RMS of the variable about 1e-8 off its float64 value
# (0.70452051489 for a kernel whose float64 RMS is 0.70452051025), in both runs;
# the (1 - ηλ) spelling is exact in real arithmetic and agrees to that rounding.
ANY_TOL = {"Adafactor": 1e-8}


def _lr_of(opt: Any) -> Any:
    lr = opt._learning_rate
    return _sched(lr) if callable(lr) else float(lr)


def _decay_spelling(kind: str, base: optax.GradientTransformation, lr: Any,
                    wd: float) -> optax.GradientTransformation:
    if kind == "shrink":
        return optax.chain(base, _shrink_step(lr, wd),
                           decaytx.add_decoupled_decay(wd, learning_rate=lr))
    if kind == "schedule_free":
        return optax.chain(base, decaytx.add_decoupled_decay(wd, learning_rate=_after_first_step(lr)))
    return optax.chain(base, decaytx.add_decoupled_decay(wd, learning_rate=lr))


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("name", list(ANY_OPTIMIZER))
def test_keras_weight_decay_on_any_optimizer(name: str) -> None:
    make, kind = ANY_OPTIMIZER[name]
    params, loss = _problem("float64", STEPS)
    theirs = _run_keras(make(ANY_WD), params, loss, STEPS)
    without = _run_keras(make(None), params, loss, STEPS)
    lr = _lr_of(make(None))
    ours = _run_decaytx(_decay_spelling(kind, _keras_step(make(None), params), lr, ANY_WD),
                        params, loss, STEPS)
    naive = _run_decaytx(_decay_spelling("last", _keras_step(make(None), params), lr, ANY_WD),
                         params, loss, STEPS)
    diff, effect, naive_diff = (_max_diff(ours, theirs), _max_diff(without, theirs),
                                _max_diff(naive, theirs))
    print(f"parity keras {name}(weight_decay) [float64], decay spelled {kind!r}: max abs diff "
          f"{diff:.1e} (decay's effect {effect:.1e}; decay last {naive_diff:.1e})")
    assert effect > 1e-3
    assert diff <= ANY_TOL.get(name, 1e-12), (name, diff)
    if kind != "last":  # the spelling matters: decay last alone is measurably off
        assert naive_diff > 1e3 * max(diff, 1e-15), (name, naive_diff)


@pytest.mark.usefixtures("float64")
def test_keras_ftrl_weight_decay_is_not_reproduced() -> None:
    """Ftrl replaces the variable from its linear accumulator, which reads the decayed
    variable: neither the decay last nor the shrink spelling reproduces it."""
    make = lambda wd: keras.optimizers.Ftrl(0.1, weight_decay=wd)  # noqa: E731
    params, loss = _problem("float64", STEPS)
    theirs = _run_keras(make(ANY_WD), params, loss, STEPS)
    effect = _max_diff(_run_keras(make(None), params, loss, STEPS), theirs)
    misses = {kind: _max_diff(_run_decaytx(
        _decay_spelling(kind, _keras_step(make(None), params), 0.1, ANY_WD), params, loss, STEPS),
        theirs) for kind in ("last", "shrink", "schedule_free")}
    print(f"parity keras Ftrl(weight_decay) [float64]: not reproduced, decay's effect "
          f"{effect:.1e}; " + ", ".join(f"{k} {v:.1e}" for k, v in misses.items()))
    assert all(v > 1e-3 * effect for v in misses.values()), misses


# Keras optimizers with weight_decay whose whole step decaytx/optax write out.
NATIVE: dict[str, tuple[Callable, Callable]] = {
    "AdamW(amsgrad, eps=0) vs decaytx.adamw(amsgrad=True)": (
        lambda: keras.optimizers.AdamW(0.01, weight_decay=0.004, amsgrad=True, epsilon=0.0),
        lambda: decaytx.adamw(0.01, 0.004, amsgrad=True, eps=0.0)),
    "AdamW(amsgrad, eps=0, CosineDecay)": (
        lambda: keras.optimizers.AdamW(_cosine(), weight_decay=0.004, amsgrad=True, epsilon=0.0),
        lambda: decaytx.adamw(_sched(_cosine()), 0.004, amsgrad=True, eps=0.0)),
    "Lion(wd) vs optax.lion + decay": (
        lambda: keras.optimizers.Lion(0.01, weight_decay=ANY_WD),
        lambda: optax.chain(optax.lion(0.01, weight_decay=0.0),
                            decaytx.add_decoupled_decay(ANY_WD, learning_rate=0.01))),
    "Lion(wd, CosineDecay)": (
        lambda: keras.optimizers.Lion(_cosine(), weight_decay=ANY_WD),
        lambda: optax.chain(optax.lion(_sched(_cosine()), weight_decay=0.0),
                            decaytx.add_decoupled_decay(ANY_WD, learning_rate=_sched(_cosine())))),
    "Lamb(wd) vs optax Lamb chain, step shrunk": (
        lambda: keras.optimizers.Lamb(LR, weight_decay=ANY_WD),
        lambda: optax.chain(optax.scale_by_adam(eps=1e-7), optax.scale_by_trust_ratio(),
                            optax.scale_by_learning_rate(LR), optax.scale(1.0 - LR * ANY_WD),
                            decaytx.add_decoupled_decay(ANY_WD, learning_rate=LR))),
}


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("name", list(NATIVE))
def test_keras_optimizer_matches_decaytx_chain(name: str) -> None:
    make_keras, make_decaytx = NATIVE[name]
    params, loss = _problem("float64", STEPS)
    theirs = _run_keras(make_keras(), params, loss, STEPS)
    diff = _max_diff(_run_decaytx(make_decaytx(), params, loss, STEPS), theirs)
    print(f"parity keras {name} [float64]: max abs diff {diff:.1e} over {STEPS} steps "
          f"(params moved {_max_diff(params, theirs):.2f})")
    assert diff <= 1e-12, (name, diff)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("reg", ["L1", "L1L2"])
def test_keras_l1_at_exact_zeros_differs_from_add_l1_subgrad(reg: str) -> None:
    """Zero-initialised biases: Keras' L1 is c*sum(|θ|) and jax.grad(|x|) at 0 is 1, so
    Keras adds +c there; add_l1_subgrad (and l1_penalty) use sign(0) = 0 and add
    nothing. Writing c*jnp.sum(jnp.abs(θ)) into the loss is Keras' rule."""
    c1, c2 = 0.02, 0.01
    keras_reg = (keras.regularizers.L1(c1) if reg == "L1"
                 else keras.regularizers.L1L2(l1=c1, l2=c2))
    params, loss = _problem("float64", 20)
    params = {**params, "bias": jnp.zeros_like(params["bias"])}
    theirs = _run_keras(keras.optimizers.SGD(LR), params, loss, 20, keras_reg)
    grad_side = (decaytx.add_l1_subgrad(c1) if reg == "L1"
                 else decaytx.add_elastic_net_grad(c1, 2 * c2))
    ours = _run_decaytx(optax.chain(grad_side, optax.scale_by_learning_rate(LR)),
                        params, loss, 20)
    in_loss = lambda p, t: loss(p, t) + sum(  # noqa: E731
        c1 * jnp.sum(jnp.abs(p[k])) + (0.0 if reg == "L1" else c2 * jnp.sum(p[k] ** 2))
        for k in KEYS)
    keras_rule = _run_decaytx(optax.sgd(LR), params, in_loss, 20)
    diff, rule_diff = _max_diff(ours, theirs), _max_diff(keras_rule, theirs)
    print(f"parity keras SGD + regularizers.{reg} from zero biases [float64]: add_l1_subgrad "
          f"{diff:.1e} apart (20 steps); c*|θ| in the loss {rule_diff:.1e}")
    assert diff > 1e-4  # the difference is real: about LR * c at the first step, carried on
    assert rule_diff <= 1e-12
