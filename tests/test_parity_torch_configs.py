"""PyTorch's own optimizer configurations, run through the matching decaytx recipe.

The configurations are the ``OptimizerInput``\\ s that PyTorch's test suite
uses for ``SGD``, ``Adam`` and ``AdamW`` (``torch.testing._internal.
common_optimizers``, device cpu, with the ``foreach``/``fused``/
``differentiable`` variants that suite adds), and the learning-rate scheduler
lists it tests with them. Each is run for 20 steps in float64 on a small tanh
regression, torch with ``torch.autograd`` and decaytx with ``jax.grad``, each
at its own parameters; the trajectories must agree to 1e-12.

The hyperparameters are read back from the torch optimizer's
``param_groups`` (so PyTorch's defaults, e.g. ``AdamW``'s
``weight_decay=1e-2``, are what decaytx gets); a key this file does not map
fails the test instead of being ignored. ``maximize=True`` is
``optax.chain(optax.scale(-1.0), recipe)``; a tensor ``lr`` is passed as a
scalar array.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: pip install 'decaytx[parity]' to run these."
)

STEPS = 20
TOL = 1e-12


def _common_optimizers() -> Any:
    """PyTorch's optimizer test database (``torch.testing._internal``; it needs ``expecttest``)."""
    pytest.importorskip("expecttest", reason="pip install expecttest (the parity extra has it)")
    from torch.testing._internal import common_optimizers

    return common_optimizers


_CO = _common_optimizers()
_INFOS = {info.optim_cls.__name__: info for info in _CO.optim_db}
_IMPLS = ("foreach", "fused", "differentiable", "capturable")


def _configs() -> list[Any]:
    out = []
    for name in ("SGD", "Adam", "AdamW"):
        # differentiable=True makes the step itself differentiable (autograd
        # through the update, on non-leaf params): an autograd switch with no
        # numerical effect, and no JAX counterpart needed (jax.grad through
        # opt.update works as is).
        inputs = _CO._get_optim_inputs_including_global_cliquey_kwargs(
            "cpu", torch.float64, _INFOS[name], skip=("differentiable",)
        )
        for inp in inputs:
            flags = [k for k in _IMPLS if inp.kwargs.get(k)]
            label = f"{name}-{inp.desc}" + "".join(f"-{f}" for f in flags)
            out.append(pytest.param(name, dict(inp.kwargs), id=label.replace(" ", "_")))
            if not flags:
                # PyTorch's suite adds foreach only on devices with foreach
                # kernels (not cpu), but foreach=True runs on cpu too: add it.
                kwargs = {**inp.kwargs, "foreach": True}
                out.append(pytest.param(name, kwargs, id=f"{label}-foreach".replace(" ", "_")))
    return out


# --------------------------------------------------------------------------
# The problem: tanh regression, params {"w": (3, 4), "b": (4,)}.
# --------------------------------------------------------------------------


def _problem() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    params = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,)) / 2}
    x = rng.normal(size=(16, 3))
    y = np.cos(x @ rng.normal(size=(3, 4)))
    return params, x, y


PARAMS, X, Y = _problem()


def _torch_loss(t: dict[str, Any], xt: Any, yt: Any) -> Any:
    return 0.5 * torch.mean((torch.tanh(xt @ t["w"] + t["b"]) - yt) ** 2)


def _run_torch(name: str, kwargs: dict, schedulers: list[Any] | None = None) -> tuple[dict, Any, list]:
    """Torch's trajectory, the optimizer (for its resolved hyperparameters) and lrs."""
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in PARAMS.items()}
    opt = getattr(torch.optim, name)([t["w"], t["b"]], **kwargs)
    scheds = [make(opt) for make in (schedulers or [])]
    xt, yt = torch.tensor(X), torch.tensor(Y)
    lrs = []
    for _ in range(STEPS):
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.zero_grad()
        loss = _torch_loss(t, xt, yt)
        loss.backward()
        opt.step()
        for s in scheds:
            if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                s.step(float(loss.detach()))
            else:
                s.step()
    return {k: v.detach().numpy().copy() for k, v in t.items()}, opt, lrs


# --------------------------------------------------------------------------
# The decaytx side.
# --------------------------------------------------------------------------

_DEFAULT_IMPL = {"foreach": None, "fused": None, "differentiable": False, "capturable": False}


def _recipe_args(name: str, group: dict) -> tuple[Any, ...]:
    """(recipe name, hashable args) from a torch param group; unknown keys fail."""
    group = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
    for k in _IMPLS:
        v = group.pop(k, _DEFAULT_IMPL[k])
        if k == "capturable":
            assert not v, "capturable is a CUDA-graph switch; not a cpu config"
    lr = group.pop("lr")
    lr = ("tensor", float(lr)) if isinstance(lr, torch.Tensor) else float(lr)
    maximize = group.pop("maximize")
    wd = float(group.pop("weight_decay"))
    if name == "SGD":
        mu, damp, nest = (float(group.pop(k)) for k in ("momentum", "dampening", "nesterov"))
        args: tuple = ("sgd_l2", lr, wd, mu, damp, bool(nest), maximize)
    else:
        b1, b2 = (float(b) for b in group.pop("betas"))
        eps, ams = float(group.pop("eps")), bool(group.pop("amsgrad"))
        decoupled = name == "AdamW" or group.pop("decoupled_weight_decay", False)
        group.pop("decoupled_weight_decay", None)
        args = ("adamw" if decoupled else "adam_l2", lr, wd, b1, b2, eps, ams, maximize)
    assert not group, f"torch {name} param-group keys with no decaytx mapping: {sorted(group)}"
    return args


def _recipe(args: tuple, schedule: Any = None) -> optax.GradientTransformation:
    kind, lr, wd, *rest = args
    if schedule is not None:
        eta: Any = schedule
    elif isinstance(lr, tuple):  # a torch.tensor lr: a scalar array
        eta = jnp.asarray(lr[1], jnp.float64)
    else:
        eta = lr
    if kind == "sgd_l2":
        mu, damp, nest, maximize = rest
        opt = decaytx.sgd_l2(eta, wd, momentum=mu or None, nesterov=nest, dampening=damp)
    else:
        b1, b2, eps, ams, maximize = rest
        recipe = decaytx.adamw if kind == "adamw" else decaytx.adam_l2
        opt = recipe(eta, wd, b1=b1, b2=b2, eps=eps, amsgrad=ams)
    return optax.chain(optax.scale(-1.0), opt) if maximize else opt


def _run_jax(opt: optax.GradientTransformation) -> dict:
    xj, yj = jnp.asarray(X), jnp.asarray(Y)

    def loss(p: dict) -> jax.Array:
        return 0.5 * jnp.mean((jnp.tanh(xj @ p["w"] + p["b"]) - yj) ** 2)

    @jax.jit
    def step(p: dict, s: Any) -> tuple[dict, Any]:
        u, s = opt.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    p = {k: jnp.asarray(v, jnp.float64) for k, v in PARAMS.items()}
    s = opt.init(p)
    for _ in range(STEPS):
        p, s = step(p, s)
    return {k: np.asarray(v) for k, v in p.items()}


@functools.cache
def _jax_trajectory(args: tuple) -> dict:
    """Cached: the foreach/fused/differentiable variants share one decaytx run."""
    with jax.enable_x64(True):
        return _run_jax(_recipe(args))


def _compare(label: str, ours: dict, theirs: dict) -> float:
    diff = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in PARAMS)
    moved = max(float(np.max(np.abs(theirs[k] - PARAMS[k]))) for k in PARAMS)
    print(f"\nparity torch config {label}: max|diff| = {diff:.3e} (moved {moved:.2e})")
    assert moved > 1e-4, "the run did not train"
    assert diff <= TOL, f"{label}: max abs diff {diff:.3e} > {TOL:g}"
    return diff


@pytest.mark.parametrize(("name", "kwargs"), _configs())
def test_torch_config_matches_recipe(name: str, kwargs: dict, request: Any) -> None:
    theirs, opt, _ = _run_torch(name, kwargs)
    args = _recipe_args(name, opt.param_groups[0])
    _compare(request.node.callspec.id, _jax_trajectory(args), theirs)


def test_the_configs_cover_what_the_recipes_add() -> None:
    """The database holds the configs this file claims: dampening, amsgrad, maximize, fused."""
    ids = [p.id for p in _configs()]
    for needle in ("SGD-dampening", "SGD-nesterov", "SGD-maximize", "SGD-tensor_lr",
                   "Adam-amsgrad", "AdamW-amsgrad", "AdamW-maximize", "-fused", "-foreach"):
        assert any(needle in i for i in ids), needle
    assert len(ids) >= 40


# --------------------------------------------------------------------------
# Learning-rate schedulers: PyTorch's scheduler lists, closed forms here.
# --------------------------------------------------------------------------


def _factor(sched: Any, t: np.ndarray) -> np.ndarray:
    """The multiplier a torch scheduler applies at step ``t``, in closed form."""
    lrs = torch.optim.lr_scheduler
    if isinstance(sched, lrs.StepLR):
        return sched.gamma ** (t // sched.step_size)
    if isinstance(sched, lrs.ExponentialLR):
        return sched.gamma**t
    if isinstance(sched, lrs.LinearLR):
        frac = np.minimum(t, sched.total_iters) / sched.total_iters
        return sched.start_factor + (sched.end_factor - sched.start_factor) * frac
    if isinstance(sched, lrs.ConstantLR):
        return np.where(t < sched.total_iters, sched.factor, 1.0)
    if isinstance(sched, lrs.PolynomialLR):
        return (1.0 - np.minimum(t, sched.total_iters) / sched.total_iters) ** sched.power
    if isinstance(sched, lrs.ReduceLROnPlateau):
        # Data-dependent, not a function of the step: here the loss keeps
        # falling, so it never fires within 20 steps (asserted on torch's lrs).
        return np.ones_like(t, dtype=np.float64)
    raise AssertionError(f"no closed form for {type(sched).__name__}")


def _scheduler_cases() -> list[Any]:
    out = []
    base = {"SGD": [{"weight_decay": 0.1}, {"momentum": 0.9, "weight_decay": 0.1}],
            "Adam": [{"weight_decay": 0.1}], "AdamW": [{"weight_decay": 0.1}]}
    for name, configs in base.items():
        for i, makers in enumerate(_INFOS[name].scheduler_inputs):
            for j, kwargs in enumerate(configs):
                out.append(pytest.param(name, kwargs, list(makers), id=f"{name}-{j}-schedulers{i}"))
    return out


@pytest.mark.parametrize(("name", "kwargs", "makers"), _scheduler_cases())
def test_torch_scheduler_matches_recipe_schedule(
    name: str, kwargs: dict, makers: list, request: Any
) -> None:
    theirs, opt, lrs = _run_torch(name, kwargs, makers)
    scheds = [make(getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)], **kwargs))
              for make in makers]
    base_lr = opt.defaults["lr"]
    t = np.arange(STEPS + 1)
    table = base_lr * np.prod([_factor(s, t) for s in scheds], axis=0)
    # The closed form is PyTorch's schedule (an independent check of the table).
    np.testing.assert_allclose(lrs, table[:STEPS], rtol=1e-12, atol=0)
    args = _recipe_args(name, opt.param_groups[0])
    with jax.enable_x64(True):
        jtable = jnp.asarray(table, jnp.float64)
        ours = _run_jax(_recipe(args, schedule=lambda count: jtable[count]))
    _compare(request.node.callspec.id, ours, theirs)
