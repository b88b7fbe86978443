"""Recipes against PyTorch's optimizers, float64, on a small MLP.

Each side computes its own gradients (``jax.grad`` / ``torch.autograd``) at
its own parameters for 60 steps; the trajectories must agree to 1e-9.
PyTorch conventions reproduced: ``SGD`` momentum buffer starts at the first
gradient (dampening 0), Nesterov ``g + mu * b``; ``Adam``'s ``weight_decay``
is added to the gradient; ``AdamW`` multiplies the weights by ``1 - lr * wd``
before the Adam step; ``eps`` is added to ``sqrt(v_hat)``. Schedules go through
``torch.optim.lr_scheduler.LambdaLR``; masks through parameter groups with
``weight_decay=0``.

Other torch optimizers with a ``weight_decay`` (RMSprop, Adamax, ASGD, Adagrad
at eps = 0) against the decaytx chain of docs/recipes.md, to 1e-12; RAdam,
Adagrad at eps > 0 and NAdam stated (as close as optax's own optimizer, or not
reproduced), with their measured distances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _compare import one_torch_thread, run_jax, tanh_regression, warmup_cosine

import decaytx

__all__ = ["one_torch_thread"]  # the autouse fixture, imported to apply here

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: pip install 'decaytx[parity]' to run these."
)

STEPS = 60
LR = 0.05
TOL = 1e-9
NAMES = ("w1", "b1", "w2", "b2")
DECAYED = {"w1": True, "b1": False, "w2": True, "b2": False}


def _problem() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    return tanh_regression(seed=3, d_in=4, d_out=1)


WARMUP = 10


def _warmup_cosine(count: Any) -> Any:
    return warmup_cosine(count, lr=LR, warmup=WARMUP, steps=STEPS)


def _schedule(kind: str) -> Any:
    return LR if kind == "constant" else _warmup_cosine


def _run_jax(opt: optax.GradientTransformation, params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def loss(p: dict) -> jax.Array:
        h = jnp.tanh(xj @ p["w1"] + p["b1"])
        return 0.5 * jnp.mean((h @ p["w2"] + p["b2"] - yj) ** 2)

    return run_jax(opt, params, loss, STEPS, jnp.float64)


def _run_torch(
    make: Callable[[list[dict]], Any],
    params: dict,
    x: np.ndarray,
    y: np.ndarray,
    wd: float,
    masked: bool,
    lr_values: np.ndarray | None,
) -> dict:
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    if masked:
        groups = [
            {"params": [t[k] for k in NAMES if DECAYED[k]], "weight_decay": wd},
            {"params": [t[k] for k in NAMES if not DECAYED[k]], "weight_decay": 0.0},
        ]
    else:
        groups = [{"params": [t[k] for k in NAMES], "weight_decay": wd}]
    opt = make(groups)
    sched = None
    if lr_values is not None:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: float(lr_values[k]) / LR)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(STEPS):
        opt.zero_grad()
        h = torch.tanh(xt @ t["w1"] + t["b1"])
        loss = 0.5 * torch.mean((h @ t["w2"] + t["b2"] - yt) ** 2)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    return {k: v.detach().numpy() for k, v in t.items()}


CASES = {
    # name: (decaytx recipe, torch optimizer factory, weight decay)
    "sgd_l2": (
        lambda lr, mask: decaytx.sgd_l2(lr, 0.1, mask=mask),
        lambda g: torch.optim.SGD(g, lr=LR),
        0.1,
    ),
    "sgd_l2-momentum": (
        lambda lr, mask: decaytx.sgd_l2(lr, 0.1, momentum=0.9, mask=mask),
        lambda g: torch.optim.SGD(g, lr=LR, momentum=0.9),
        0.1,
    ),
    "sgd_l2-nesterov": (
        lambda lr, mask: decaytx.sgd_l2(lr, 0.1, momentum=0.9, nesterov=True, mask=mask),
        lambda g: torch.optim.SGD(g, lr=LR, momentum=0.9, nesterov=True),
        0.1,
    ),
    "adam_l2": (
        lambda lr, mask: decaytx.adam_l2(lr, 0.05, b1=0.8, b2=0.99, eps=1e-6, mask=mask),
        lambda g: torch.optim.Adam(g, lr=LR, betas=(0.8, 0.99), eps=1e-6),
        0.05,
    ),
    "adamw": (
        lambda lr, mask: decaytx.adamw(lr, 0.5, b1=0.8, b2=0.99, eps=1e-6, mask=mask),
        lambda g: torch.optim.AdamW(g, lr=LR, betas=(0.8, 0.99), eps=1e-6),
        0.5,
    ),
    # torch.optim.Adam(decoupled_weight_decay=True) is AdamW.
    "adamw-vs-Adam(decoupled_weight_decay=True)": (
        lambda lr, mask: decaytx.adamw(lr, 0.5, mask=mask),
        lambda g: torch.optim.Adam(g, lr=LR, decoupled_weight_decay=True),
        0.5,
    ),
}


@pytest.mark.parametrize(
    ("schedule", "masked"),
    [("constant", False), ("warmup_cosine", True)],
    ids=["constant-all", "warmup_cosine-mask"],
)
@pytest.mark.parametrize("case", list(CASES))
def test_recipe_matches_torch(case: str, schedule: str, masked: bool, x64: None) -> None:
    recipe, make_torch, wd = CASES[case]
    params, x, y = _problem()
    lr = _schedule(schedule)
    lr_values = None if schedule == "constant" else np.array([_warmup_cosine(k) for k in range(STEPS + 1)])
    mask = DECAYED if masked else None
    ours = _run_jax(recipe(lr, mask), params, x, y)
    theirs = _run_torch(make_torch, params, x, y, wd, masked, lr_values)
    diff = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in NAMES)
    moved = max(float(np.max(np.abs(ours[k] - params[k]))) for k in NAMES)
    print(f"\nparity torch {case} {schedule} {'mask' if masked else 'all'}: max|diff| = {diff:.3e}")
    assert moved > 1e-2  # the run trained
    assert diff <= TOL, f"{case}: max abs diff {diff:.3e} > {TOL}"


def test_decay_matters_in_torch_comparison(x64: None) -> None:
    """The comparison can tell the decay forms apart: AdamW != Adam + L2."""
    params, x, y = _problem()
    ours = _run_jax(decaytx.adam_l2(LR, 0.5), params, x, y)
    theirs = _run_torch(lambda g: torch.optim.AdamW(g, lr=LR), params, x, y, 0.5, False, None)
    assert max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in NAMES) > 1e-3


# --------------------------------------------------------------------------
# Other PyTorch optimizers with a weight_decay: the decaytx chain, float64.
# --------------------------------------------------------------------------


def _asgd_eta(lr: float, lambd: float, alpha: float) -> Callable:
    # torch's ASGD step k (from 1) uses eta computed at the end of step k - 1:
    # lr / (1 + lambd * lr * (k - 1)) ** alpha, lr itself at the first step.
    return lambda count: lr / (1.0 + lambd * lr * count) ** alpha


def _adagrad_lr(lr: float, lr_decay: float) -> Callable:
    # torch's Adagrad: clr = lr / (1 + (k - 1) * lr_decay) at step k (from 1).
    return lambda count: lr / (1.0 + count * lr_decay)


MORE_CASES = {
    # name: (decaytx chain given a mask, torch optimizer factory, weight decay)
    "RMSprop": (
        lambda mask: optax.chain(decaytx.add_l2_grad(0.1, mask=mask),
                                 optax.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False)),
        lambda g: torch.optim.RMSprop(g, lr=0.01),
        0.1,
    ),
    "RMSprop(centered, momentum)": (
        lambda mask: optax.chain(decaytx.add_l2_grad(0.1, mask=mask),
                                 optax.rmsprop(0.01, decay=0.9, eps=1e-6, eps_in_sqrt=False,
                                               centered=True, momentum=0.8)),
        lambda g: torch.optim.RMSprop(g, lr=0.01, alpha=0.9, eps=1e-6, centered=True,
                                      momentum=0.8),
        0.1,
    ),
    "Adamax": (
        lambda mask: optax.chain(decaytx.add_l2_grad(0.1, mask=mask),
                                 optax.adamax(0.02, b1=0.9, b2=0.999, eps=1e-8)),
        lambda g: torch.optim.Adamax(g, lr=0.02),
        0.1,
    ),
    # ASGD's iterate: the coupled weight_decay, then theta * (1 - lambd * eta) - eta * g:
    # lambd is a decoupled decay with multiplier eta_t.
    "ASGD": (
        lambda mask: optax.chain(
            decaytx.add_l2_grad(0.1, mask=mask),
            optax.scale_by_learning_rate(_asgd_eta(0.01, 1e-2, 0.75)),
            decaytx.add_decoupled_decay(1e-2, learning_rate=_asgd_eta(0.01, 1e-2, 0.75))),
        lambda g: torch.optim.ASGD(g, lr=0.01, lambd=1e-2, alpha=0.75),
        0.1,
    ),
    # optax puts Adagrad's eps inside the square root, torch outside: equal at eps = 0.
    "Adagrad(eps=0, lr_decay)": (
        lambda mask: optax.chain(decaytx.add_l2_grad(0.1, mask=mask),
                                 optax.scale_by_rss(initial_accumulator_value=0.1, eps=0.0),
                                 optax.scale_by_learning_rate(_adagrad_lr(0.05, 0.01))),
        lambda g: torch.optim.Adagrad(g, lr=0.05, lr_decay=0.01, eps=0.0,
                                      initial_accumulator_value=0.1),
        0.1,
    ),
}


@pytest.fixture
def torch_float64_scalars() -> Any:
    """torch keeps ASGD's eta (and other scalar state) in its default dtype: float64
    here, so that it is not rounded to float32 (2e-10 off otherwise)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("masked", [False, True], ids=["all", "mask"])
@pytest.mark.parametrize("case", list(MORE_CASES))
def test_chain_matches_other_torch_optimizer(case: str, masked: bool, x64: None,
                                             torch_float64_scalars: None) -> None:
    chain, make_torch, wd = MORE_CASES[case]
    params, x, y = _problem()
    ours = _run_jax(chain(DECAYED if masked else None), params, x, y)
    theirs = _run_torch(make_torch, params, x, y, wd, masked, None)
    without = _run_torch(make_torch, params, x, y, 0.0, masked, None)
    diff = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in NAMES)
    effect = max(float(np.max(np.abs(without[k] - theirs[k]))) for k in NAMES)
    print(f"\nparity torch {case} {'mask' if masked else 'all'}: max|diff| = {diff:.3e} "
          f"(weight decay's effect {effect:.1e})")
    assert effect > 1e-3  # the decay is seen
    assert diff <= 1e-12, f"{case}: max abs diff {diff:.3e}"


def test_torch_nadam_radam_adagrad_as_close_as_optax_base_optimizer(x64: None) -> None:
    """Stated, not exact: with the decay the chain is as close to torch as optax's own
    optimizer is without it (RAdam, Adagrad with eps > 0); NAdam is not reproduced
    (torch's momentum schedule mu_t = b1 (1 - 0.5 * 0.96 ** (t * momentum_decay)) has no
    optax counterpart, even at momentum_decay = 0)."""
    params, x, y = _problem()

    def gap(ours: optax.GradientTransformation, make: Callable, wd: float) -> float:
        a = _run_jax(ours, params, x, y)
        b = _run_torch(make, params, x, y, wd, False, None)
        return max(float(np.max(np.abs(a[k] - b[k]))) for k in NAMES)

    rows = {
        "RAdam": (gap(optax.radam(0.01), lambda g: torch.optim.RAdam(g, lr=0.01), 0.0),
                  gap(optax.chain(decaytx.add_l2_grad(0.1), optax.radam(0.01)),
                      lambda g: torch.optim.RAdam(g, lr=0.01), 0.1)),
        "RAdam(decoupled_weight_decay)": (
            gap(optax.radam(0.01), lambda g: torch.optim.RAdam(g, lr=0.01), 0.0),
            gap(optax.chain(optax.radam(0.01), decaytx.add_decoupled_decay(0.1, learning_rate=0.01)),
                lambda g: torch.optim.RAdam(g, lr=0.01, decoupled_weight_decay=True), 0.1)),
        "Adagrad(eps=1e-10)": (
            gap(optax.adagrad(0.05, initial_accumulator_value=0.0, eps=1e-10),
                lambda g: torch.optim.Adagrad(g, lr=0.05), 0.0),
            gap(optax.chain(decaytx.add_l2_grad(0.1),
                            optax.adagrad(0.05, initial_accumulator_value=0.0, eps=1e-10)),
                lambda g: torch.optim.Adagrad(g, lr=0.05), 0.1)),
        "NAdam": (gap(optax.nadam(0.01), lambda g: torch.optim.NAdam(g, lr=0.01), 0.0),
                  gap(optax.chain(decaytx.add_l2_grad(0.1), optax.nadam(0.01)),
                      lambda g: torch.optim.NAdam(g, lr=0.01), 0.1)),
    }
    for name, (base, chained) in rows.items():
        print(f"\nparity torch {name}: optax's optimizer alone {base:.1e}, "
              f"with the decaytx decay {chained:.1e}")
    for name in ("RAdam", "RAdam(decoupled_weight_decay)", "Adagrad(eps=1e-10)"):
        base, chained = rows[name]
        assert 1e-9 < base < 1e-3 and chained <= base, (name, base, chained)
    assert min(rows["NAdam"]) > 1e-2  # not reproduced
