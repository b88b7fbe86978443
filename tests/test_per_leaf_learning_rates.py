"""Per-leaf learning rates: ``learning_rate=`` as a coefficient tree or ``per_leaf``.

References: PyTorch's optimizers with three param groups, each its own
``lr``, ``weight_decay`` and ``LambdaLR`` lambda (float64, 50 steps, random
minibatches); ``optax.multi_transform`` of one recipe per group; closed forms
for ``lr_multiplier``/``corrected_decay`` per leaf; the layer-wise rule of
BEiT/timm written out; ``optax.scale_by_learning_rate``. Compile flatness is
asserted on the compiled program (fusion bodies), never timed.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _compare import one_torch_thread

import decaytx
from decaytx import _constants

__all__ = ["one_torch_thread"]  # the autouse fixture, imported to apply here

STEPS = 50
TOL = 1e-12
GROUPS = {"w1": "warm", "b1": "cos", "w2": "cos", "b2": "const"}
BASE = {"warm": 0.05, "cos": 0.02, "const": 0.01}
WD = {"warm": 0.3, "cos": 0.1, "const": 0.02}


def _warm(k: Any) -> Any:
    """Linear warm-up over 10 steps, then 1 (LambdaLR's factor)."""
    xp = np if isinstance(k, (int, np.integer)) else jnp
    return xp.minimum(xp.asarray(k, dtype=xp.float64) + 1.0, 10.0) / 10.0


def _cos(k: Any) -> Any:
    """Cosine from 1 to 0.1 over STEPS."""
    xp = np if isinstance(k, (int, np.integer)) else jnp
    c = xp.asarray(k, dtype=xp.float64)
    return 0.1 + 0.9 * 0.5 * (1 + xp.cos(np.pi * xp.minimum(c / STEPS, 1.0)))


LAMBDAS = {"warm": _warm, "cos": _cos, "const": None}


def _rate(group: str) -> Any:
    base, lam = BASE[group], LAMBDAS[group]
    return base if lam is None else (lambda t: base * lam(t))


RATES = {g: _rate(g) for g in BASE}  # one object per group: leaves of a group share it


def _problem() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    params = {"w1": rng.normal(size=(4, 8)) / 2, "b1": rng.normal(size=(8,)) / 4,
              "w2": rng.normal(size=(8, 1)) / 3, "b2": rng.normal(size=(1,))}
    x = rng.normal(size=(256, 4))
    y = np.sin(x @ rng.normal(size=(4, 1)))
    return params, x, y


def _batches(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.choice(n, size=16, replace=False) for _ in range(STEPS)]


def _run_jax(opt: optax.GradientTransformation, params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    def loss(p: dict, xb: jax.Array, yb: jax.Array) -> jax.Array:
        h = jnp.tanh(xb @ p["w1"] + p["b1"])
        return 0.5 * jnp.mean((h @ p["w2"] + p["b2"] - yb) ** 2)

    @jax.jit
    def step(p: Any, s: Any, xb: jax.Array, yb: jax.Array) -> Any:
        u, s = opt.update(jax.grad(loss)(p, xb, yb), s, p)
        return optax.apply_updates(p, u), s

    p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    s = opt.init(p)
    for idx in _batches(len(x)):
        p, s = step(p, s, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    return {k: np.asarray(v) for k, v in p.items()}


def _run_torch(make: Any, params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    import torch

    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    order = list(BASE)
    groups = [{"params": [t[k] for k in GROUPS if GROUPS[k] == g], "lr": BASE[g], "weight_decay": WD[g]}
              for g in order]
    opt = make(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, [(lambda k, f=LAMBDAS[g]: 1.0 if f is None else float(f(k))) for g in order])
    for idx in _batches(len(x)):
        xb, yb = torch.tensor(x[idx]), torch.tensor(y[idx])
        opt.zero_grad()
        h = torch.tanh(xb @ t["w1"] + t["b1"])
        (0.5 * torch.mean((h @ t["w2"] + t["b2"] - yb) ** 2)).backward()
        opt.step()
        sched.step()
    return {k: v.detach().numpy() for k, v in t.items()}


def _trees() -> tuple[dict, dict]:
    return {k: RATES[g] for k, g in GROUPS.items()}, {k: WD[g] for k, g in GROUPS.items()}


def _gap(ours: dict, theirs: dict, params: dict) -> float:
    moved = max(float(np.max(np.abs(ours[k] - params[k]))) for k in params)
    assert moved > 1e-2  # the run trained
    return max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in params)


# -- PyTorch, three param groups ------------------------------------------------


def test_adamw_with_three_groups_matches_torch_adamw(x64: None) -> None:
    torch = pytest.importorskip("torch")
    params, x, y = _problem()
    lr, wd = _trees()
    ours = _run_jax(decaytx.adamw(lr, wd, b1=0.8, b2=0.99, eps=1e-6), params, x, y)
    theirs = _run_torch(lambda g: torch.optim.AdamW(g, betas=(0.8, 0.99), eps=1e-6), params, x, y)
    assert _gap(ours, theirs, params) <= TOL


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_sgd_l2_with_three_groups_matches_torch_sgd(nesterov: bool, x64: None) -> None:
    """torch.optim.SGD's weight_decay is coupled L2: ``sgd_l2``."""
    torch = pytest.importorskip("torch")
    params, x, y = _problem()
    lr, wd = _trees()
    ours = _run_jax(decaytx.sgd_l2(lr, wd, momentum=0.9, nesterov=nesterov), params, x, y)
    theirs = _run_torch(lambda g: torch.optim.SGD(g, momentum=0.9, nesterov=nesterov), params, x, y)
    assert _gap(ours, theirs, params) <= TOL


def test_sgdw_with_three_groups_matches_torch_sgd_with_decay_applied_first(x64: None) -> None:
    """SGDW (m_t = eta_t) against torch SGD with the weights scaled by ``1 - lr*wd`` before each step."""
    torch = pytest.importorskip("torch")
    params, x, y = _problem()
    lr, wd = _trees()

    class DecoupledSGD(torch.optim.SGD):
        @torch.no_grad()
        def step(self, closure: Any = None) -> Any:
            for g in self.param_groups:
                for p in g["params"]:
                    p.mul_(1 - g["lr"] * g["decoupled"])
            return super().step(closure)

    def make(groups: list[dict]) -> Any:
        for g in groups:
            g["decoupled"], g["weight_decay"] = g["weight_decay"], 0.0
        return DecoupledSGD(groups, momentum=0.9)

    ours = _run_jax(decaytx.sgdw(lr, wd, momentum=0.9), params, x, y)
    assert _gap(ours, _run_torch(make, params, x, y), params) <= TOL


# -- optax.multi_transform of one recipe per group --------------------------------

F32_RATES = {"warm": optax.linear_schedule(0.0, 0.05, 10), "cos": optax.cosine_decay_schedule(0.02, STEPS),
             "const": 0.01}


def _per_group(recipe: Any, **kw: Any) -> tuple[Any, Any]:
    tree = recipe({k: F32_RATES[g] for k, g in GROUPS.items()}, {k: WD[g] for k, g in GROUPS.items()}, **kw)
    multi = optax.multi_transform({g: recipe(F32_RATES[g], WD[g], **kw) for g in BASE}, GROUPS)
    return tree, multi


@pytest.mark.parametrize(("recipe", "kw", "bitwise"), [
    (decaytx.sgdw, {"momentum": 0.9}, True), (decaytx.sgd_l2, {"momentum": 0.9}, True),
    (decaytx.sgdw, {"momentum": 0.9, "decay_scaling": "schedule"}, True),
    (decaytx.adamw, {}, False), (decaytx.adam_l2, {}, False),
    (decaytx.adamw, {"decay_scaling": "schedule"}, False), (decaytx.adamw, {"decay_scaling": "corrected"}, False),
], ids=["sgdw", "sgd_l2", "sgdw-schedule", "adamw", "adam_l2", "adamw-schedule", "adamw-corrected"])
def test_tree_of_rates_equals_multi_transform_of_one_recipe_per_group(recipe: Any, kw: dict, bitwise: bool) -> None:
    """Bit for bit for SGD; for Adam to float32 rounding: ``optax.multi_transform``
    of ``optax.adam`` itself differs from ``optax.adam`` on the whole tree by an
    ulp (asserted below), the per-leaf arithmetic of both spellings being the same."""
    params, x, _ = _problem()
    p0 = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    tree, multi = _per_group(recipe, **kw)
    rng = np.random.default_rng(3)
    grads = [{k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
             for _ in range(20)]
    out = []
    for opt in (tree, multi):
        p, s = p0, opt.init(p0)
        step = jax.jit(opt.update)
        for g in grads:
            u, s = step(g, s, p)
            p = optax.apply_updates(p, u)
        out.append(p)
    for k in params:
        if bitwise:
            np.testing.assert_array_equal(np.asarray(out[0][k]), np.asarray(out[1][k]), err_msg=k)
        else:
            np.testing.assert_allclose(np.asarray(out[0][k]), np.asarray(out[1][k]), rtol=2e-6, atol=1e-7)


def test_multi_transform_itself_moves_adam_by_float_rounding() -> None:
    """Why the Adam comparisons above are to rounding: optax against optax."""
    params, _, _ = _problem()
    p = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    g = jax.tree.map(lambda x: jnp.cos(3 * x), p)
    multi = optax.multi_transform({grp: optax.adam(0.02) for grp in BASE}, GROUPS)
    whole = optax.adam(0.02)
    a, b = multi.update(g, multi.init(p), p)[0], whole.update(g, whole.init(p), p)[0]
    gaps = [float(jnp.max(jnp.abs(a[k] - b[k]))) for k in p]
    assert max(gaps) > 0 and max(gaps) < 1e-7


# -- a rate of 0 freezes its group ------------------------------------------------


@pytest.mark.parametrize("recipe", [decaytx.adamw, decaytx.sgdw, decaytx.sgd_l2, decaytx.adam_l2])
def test_a_group_with_rate_zero_takes_no_step_and_no_decay(recipe: Any) -> None:
    params, _, _ = _problem()
    p0 = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    opt = recipe({"w1": 0.0, "b1": optax.cosine_decay_schedule(0.05, 10), "w2": 0.05, "b2": 0.0}, 0.5)
    p, s = p0, opt.init(p0)
    for i in range(5):
        g = jax.tree.map(lambda v, i=i: jnp.cos(v * (i + 2)), p)
        u, s = jax.jit(opt.update)(g, s, p)
        p = optax.apply_updates(p, u)
    for k in ("w1", "b2"):
        np.testing.assert_array_equal(np.asarray(p[k]), np.asarray(p0[k]), err_msg=k)
    for k in ("b1", "w2"):
        assert float(jnp.max(jnp.abs(p[k] - p0[k]))) > 1e-3, k


def test_a_zero_rate_in_decay_scaling_schedule_gives_no_decay() -> None:
    m = decaytx.lr_multiplier({"a": 0.0, "b": optax.linear_schedule(0.1, 0.0, 10)})
    assert m["a"] == 0.0
    assert float(m["b"](5)) == pytest.approx(0.5)


# -- lr_multiplier / corrected_decay per leaf ----------------------------------------


SCHEDS = {"a": optax.linear_schedule(0.1, 0.0, 10),                       # peak 0.1 at step 0
          "b": optax.linear_schedule(0.0, 0.5, 10),                       # peak 0.5 from step 10
          "c": optax.piecewise_constant_schedule(0.2, {4: 3.0, 8: 0.5})}  # 0.2, 0.6, 0.3: peak 0.6
PEAKS = {"a": 0.1, "b": 0.5, "c": 0.6}


def _eta(k: str, t: int) -> float:
    if k == "a":
        return 0.1 * max(0.0, 1 - t / 10)
    if k == "b":
        return 0.5 * min(1.0, t / 10)
    return 0.2 if t < 4 else (0.6 if t < 8 else 0.3)


@pytest.mark.parametrize("kind", ["lr_multiplier", "corrected_decay"])
def test_multiplier_per_leaf_is_each_leafs_own_closed_form(kind: str) -> None:
    fn = getattr(decaytx, kind)
    m = fn(SCHEDS)
    for k in SCHEDS:
        for t in (0, 3, 5, 9, 12):
            eta = _eta(k, t)
            want = eta / PEAKS[k] if kind == "lr_multiplier" else eta * eta / PEAKS[k]
            assert float(m[k](t)) == pytest.approx(want, rel=1e-6, abs=1e-9), (k, t)


@pytest.mark.parametrize("kind", ["lr_multiplier", "corrected_decay"])
def test_decoupled_decay_follows_each_leafs_own_multiplier(kind: str) -> None:
    params = {k: jnp.full(3, 2.0) for k in SCHEDS}
    wd = 0.1
    t = decaytx.add_decoupled_decay(wd, learning_rate=getattr(decaytx, kind)(decaytx.per_leaf(
        lambda path, x: SCHEDS[path])))
    s = t.init(params)
    for step in range(12):
        u, s = t.update(jax.tree.map(jnp.zeros_like, params), s, params)
        for k in SCHEDS:
            eta = _eta(k, step)
            m = eta / PEAKS[k] if kind == "lr_multiplier" else eta * eta / PEAKS[k]
            np.testing.assert_allclose(np.asarray(u[k]), -m * wd * 2.0, rtol=1e-5, atol=1e-9)


def test_recipe_decay_scaling_schedule_uses_each_leafs_own_peak() -> None:
    params = {k: jnp.full(3, 2.0) for k in SCHEDS}
    opt = decaytx.sgdw(SCHEDS, 0.1, decay_scaling="schedule")
    s = opt.init(params)
    for step in range(12):
        u, s = opt.update(jax.tree.map(jnp.zeros_like, params), s, params)
        for k in SCHEDS:
            np.testing.assert_allclose(np.asarray(u[k]), -_eta(k, step) / PEAKS[k] * 0.1 * 2.0,
                                       rtol=1e-5, atol=1e-9)


# -- layer_decay ------------------------------------------------------------------------


def _vit(depth: int) -> dict:
    p = {"cls_token": jnp.ones((1, 4)), "pos_embed": jnp.ones((3, 4)),
         "patch_embed": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)},
         "blocks": {str(i): {"attn": jnp.ones((4, 4)), "mlp": jnp.ones((4, 4))} for i in range(depth)},
         "norm": {"scale": jnp.ones(4)}, "head": {"kernel": jnp.ones((4, 2))}}
    return p


def _our_layer(path: str, depth: int) -> int:
    head = path.split("/")[0]
    if head in ("cls_token", "pos_embed", "patch_embed"):
        return 0
    if head == "blocks":
        return int(path.split("/")[1]) + 1
    return depth + 1


def _timm_scale(name: str, depth: int, decay: float) -> float:
    """timm/BEiT: ``layer_scales = [decay ** (L - i) for i in range(L + 1)]`` on dotted names."""
    num_layers = depth + 1
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        layer_id = 0
    elif name.startswith("blocks."):
        layer_id = int(name.split(".")[1]) + 1
    else:
        layer_id = num_layers
    return [decay ** (num_layers - i) for i in range(num_layers + 1)][layer_id]


def _applied_rates(lr: Any, params: dict) -> dict[str, float]:
    t = decaytx.scale_by_learning_rate(lr)
    u, _ = t.update(jax.tree.map(jnp.ones_like, params), t.init(params))
    return {decaytx.masks.path_of(k): -float(np.asarray(v).ravel()[0])
            for k, v in jax.tree_util.tree_flatten_with_path(u)[0]}


def test_layer_decay_gives_the_rates_written_out() -> None:
    params = {"embed": jnp.ones(2), "block0": jnp.ones(2), "block1": jnp.ones(2), "head": jnp.ones(2)}
    layer = {"embed": 0, "block0": 1, "block1": 2, "head": 3}
    got = _applied_rates(decaytx.layer_decay(0.1, 0.5, lambda p: layer[p]), params)
    assert got == pytest.approx({"embed": 0.0125, "block0": 0.025, "block1": 0.05, "head": 0.1}, rel=1e-6)
    got = _applied_rates(decaytx.layer_decay(0.1, 0.5, lambda p: layer[p], num_layers=5), params)
    assert got == pytest.approx({"embed": 0.003125, "block0": 0.00625, "block1": 0.0125, "head": 0.025},
                                rel=1e-6)


def test_layer_decay_matches_timms_rule_on_a_vit_like_tree() -> None:
    depth, decay, base = 4, 0.75, 1e-3
    params = _vit(depth)
    got = _applied_rates(decaytx.layer_decay(base, decay, lambda p: _our_layer(p, depth)), params)
    for path, rate in got.items():
        assert rate == pytest.approx(base * _timm_scale(path.replace("/", "."), depth, decay), rel=1e-6), path


def test_layer_decay_of_a_schedule_is_each_layers_scaled_schedule() -> None:
    base = optax.cosine_decay_schedule(0.1, 10)
    params = {"embed": jnp.ones(2), "head": jnp.ones(2)}
    t = decaytx.scale_by_learning_rate(decaytx.layer_decay(base, 0.5, lambda p: 0 if p == "embed" else 2))
    s = t.init(params)
    for step in range(4):
        u, s = t.update(jax.tree.map(jnp.ones_like, params), s)
        np.testing.assert_allclose(-np.asarray(u["head"]), float(base(step)), rtol=1e-6)
        np.testing.assert_allclose(-np.asarray(u["embed"]), float(base(step)) * 0.25, rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "err", "match"), [
    ({"decay": 0.0}, ValueError, r"decay=0\.0"),
    ({"decay": -0.5}, ValueError, r"decay=-0\.5 is negative"),
    ({"num_layers": 1}, ValueError, r"layer_of\('head'\) = 3 is outside \[0, 1\]"),
    ({"layer_of": lambda p: -1}, ValueError, r"= -1 is outside"),
    ({"layer_of": lambda p: 1.0}, TypeError, r"must return the leaf's layer as an int"),
    ({"layer_of": 3}, TypeError, r"layer_of must be a callable"),
    ({"base_lr": -1.0}, ValueError, r"base_lr=-1\.0 is negative"),
])
def test_layer_decay_refuses_bad_input_by_name(kwargs: dict, err: type, match: str) -> None:
    layer = {"embed": 0, "head": 3}
    args = {"base_lr": 0.1, "decay": 0.5, "layer_of": lambda p: layer[p], **kwargs}
    params = {"embed": jnp.ones(2), "head": jnp.ones(2)}
    with pytest.raises(err, match=match):
        num = args.pop("num_layers", None)
        t = decaytx.scale_by_learning_rate(decaytx.layer_decay(**args, num_layers=num))
        t.init(params)


# -- many distinct rates: the compiled program does not grow -------------------------------


def _bodies(text: str) -> tuple[int, int]:
    """(fusion computations, distinct bodies once instruction names are dropped)."""
    bodies = []
    for block in re.split(r"\n\n", text):
        head = block.lstrip()
        if not (head.startswith("%fused_computation") or head.startswith("fused_computation")):
            continue
        body = re.sub(r"%[\w.\-]+", "%x", block.split("{", 1)[1])
        bodies.append(re.sub(r", metadata=\{[^}]*\}", "", body))
    return len(bodies), len(set(bodies))


def _program(distinct: int, schedule: bool) -> str:
    params = {f"l{i:03d}": jnp.full((8, 4), 1.0 + i / 100) for i in range(100)}
    base = optax.cosine_decay_schedule(1e-2, 100) if schedule else 1e-2
    lr = decaytx.layer_decay(base, 0.97, lambda p: int(p[1:]) % distinct, num_layers=distinct - 1)
    opt = decaytx.adamw(lr, 0.1)

    def step(p: Any, s: Any, g: Any) -> Any:
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    return jax.jit(step).lower(params, opt.init(params), params).compile().as_text()


@pytest.mark.parametrize("schedule", [False, True], ids=["constant", "schedule"])
def test_a_hundred_distinct_rates_compile_to_the_fusions_of_ten(schedule: bool) -> None:
    """A rate per layer for 100 layers: as many fusions as 10 rates, and no
    more distinct fusion bodies (XLA orders some operands differently, so 10
    rates may give a couple of bodies more, never fewer)."""
    ten, hundred = _bodies(_program(10, schedule)), _bodies(_program(100, schedule))
    assert hundred[0] == ten[0]
    assert hundred[1] <= ten[1]


@pytest.mark.parametrize("schedule", [False, True], ids=["constant", "schedule"])
def test_without_pick_each_distinct_rate_is_its_own_fusion_body(schedule: bool) -> None:
    """The cause, pinned: as scalar constants, a hundred rates give some ninety bodies more."""
    _constants.ENABLED = False
    try:
        ten, hundred = _bodies(_program(10, schedule)), _bodies(_program(100, schedule))
    finally:
        _constants.ENABLED = True
    assert hundred[1] >= ten[1] + 80


# -- scale_by_learning_rate ------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, optax.cosine_decay_schedule(0.1, 20)], ids=["float", "schedule"])
@pytest.mark.parametrize("flip_sign", [True, False])
def test_scale_by_learning_rate_equals_optax_bit_for_bit(rate: Any, flip_sign: bool) -> None:
    rng = np.random.default_rng(0)
    params = {"a": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=7), jnp.bfloat16)}
    ours, theirs = (decaytx.scale_by_learning_rate(rate, flip_sign=flip_sign),
                    optax.scale_by_learning_rate(rate, flip_sign=flip_sign))
    so, st = ours.init(params), theirs.init(params)
    assert jax.tree.structure(so) == jax.tree.structure(st)
    for i in range(5):
        g = jax.tree.map(lambda x, i=i: jnp.cos(x * (i + 1)).astype(x.dtype), params)
        uo, so = jax.jit(ours.update)(g, so)
        ut, st = jax.jit(theirs.update)(g, st)
        for k in params:
            assert uo[k].dtype == ut[k].dtype == params[k].dtype
            np.testing.assert_array_equal(np.asarray(uo[k], np.float32), np.asarray(ut[k], np.float32))


def test_scale_by_learning_rate_tree_scales_each_leaf_and_keeps_bf16() -> None:
    rng = np.random.default_rng(1)
    params = {"a": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=7), jnp.bfloat16)}
    sched = optax.linear_schedule(0.2, 0.0, 10)
    t = decaytx.scale_by_learning_rate({"a": 0.1, "b": sched})
    s = t.init(params)
    assert isinstance(s, optax.ScaleByScheduleState)
    for i in range(4):
        g = jax.tree.map(lambda x, i=i: jnp.sin(x * (i + 1)).astype(x.dtype), params)
        u, s = jax.jit(t.update)(g, s)
        assert u["b"].dtype == jnp.bfloat16 and u["a"].dtype == jnp.float32
        # optax's rule per leaf: the rate cast to the leaf's dtype, times the update
        np.testing.assert_array_equal(np.asarray(u["a"]), np.asarray(jnp.float32(-0.1) * g["a"]))
        want_b = jnp.asarray(-1 * sched(i), jnp.bfloat16) * g["b"]
        np.testing.assert_array_equal(np.asarray(u["b"], np.float32), np.asarray(want_b, np.float32))


def test_scale_by_learning_rate_tree_refuses_a_negative_rate_by_path() -> None:
    with pytest.raises(ValueError, match=r"learning_rate\['b'\]=-0\.1 is negative"):
        decaytx.scale_by_learning_rate({"a": 0.1, "b": -0.1})


def test_a_rate_tree_that_is_not_a_prefix_of_params_is_refused_naming_it() -> None:
    opt = decaytx.adamw({"a": 0.1, "c": 0.2}, 0.1)
    with pytest.raises(ValueError, match=r"learning_rate: the coefficient tree is not a prefix of params"):
        opt.init({"a": jnp.ones(2), "b": jnp.ones(2)})


def test_recipe_evaluates_each_schedule_once_per_step() -> None:
    calls = {"a": 0, "b": 0}

    def counted(k: str, peak: float) -> Any:
        def s(t: Any) -> Any:
            calls[k] += 1
            return peak * jnp.ones([]) / (1 + t)
        return s

    sa, sb = counted("a", 0.1), counted("b", 0.2)
    params = {"a": jnp.ones(3), "b": jnp.ones((2, 2)), "c": jnp.ones(2)}
    opt = decaytx.adamw({"a": sa, "b": sb, "c": sa}, 0.1)
    state = opt.init(params)
    calls.update(a=0, b=0)
    jax.make_jaxpr(opt.update)(params, state, params)
    assert calls == {"a": 1, "b": 1}


# -- audit and monitor read each leaf's own multiplier -----------------------------------------


def test_audit_reports_each_leafs_own_multiplier_and_no_constant_multiplier_problem() -> None:
    """A group at a constant rate beside a scheduled group is not a constant
    multiplier under a scheduled optimizer: its own step is constant too."""
    params = {"a": jnp.ones((3, 3)), "b": jnp.ones((3, 3))}
    sched = optax.cosine_decay_schedule(2e-3, 100)
    report = decaytx.audit(decaytx.adamw({"a": 1e-3, "b": sched}, 0.1), params)
    assert not report.problems, report
    rows = {r.path: r for r in report.rows if r.transform is not None}
    assert rows["a"].m_peak == pytest.approx(1e-3) and rows["b"].m_peak == pytest.approx(2e-3)
    # one multiplier for everything beside a scheduled step is still found
    shared = optax.chain(optax.adam(sched), decaytx.add_decoupled_decay(0.1, learning_rate=1e-3))
    assert [p.kind for p in decaytx.audit(shared, params).problems] == ["constant_multiplier"]


def test_monitor_reports_each_leafs_own_rate_times_lambda() -> None:
    params = {"a": jnp.ones((3, 3)), "b": jnp.ones((3, 3))}
    opt = decaytx.monitor(decaytx.adamw({"a": 1e-3, "b": 2e-3}, 0.1))
    state = opt.update(jax.tree.map(jnp.ones_like, params), opt.init(params), params)[1]
    stats = decaytx.monitor_stats(state)
    assert stats["a"]["rate"] == pytest.approx(1e-4) and stats["b"]["rate"] == pytest.approx(2e-4)
    assert stats["a"]["decay"] == pytest.approx(1e-4 * 3.0) and stats["b"]["decay"] == pytest.approx(2e-4 * 3.0)


# -- the proximal forms take each leaf's own rate --------------------------------------------


def test_prox_l1_thresholds_each_leaf_at_its_own_rate() -> None:
    params = {"a": jnp.array([0.05, 0.5, -2.0]), "b": jnp.array([0.05, 0.5, -2.0])}
    t = decaytx.prox_l1(1.0, learning_rate={"a": 0.1, "b": 0.4})
    u, _ = t.update(jax.tree.map(jnp.zeros_like, params), t.init(params), params)
    out = optax.apply_updates(params, u)
    soft = lambda x, tau: np.sign(x) * np.maximum(np.abs(x) - tau, 0.0)  # noqa: E731
    np.testing.assert_allclose(np.asarray(out["a"]), soft(np.asarray(params["a"]), 0.1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["b"]), soft(np.asarray(params["b"]), 0.4), rtol=1e-6)


def test_proximal_sgd_with_a_tree_of_rates_is_one_ista_step_per_leaf() -> None:
    params = {"a": jnp.array([0.35, -1.0, 0.12]), "b": jnp.array([0.35, -1.0, 0.12])}
    grads = {"a": jnp.array([1.0, 1.0, 0.0]), "b": jnp.array([1.0, 1.0, 0.0])}
    rates = {"a": 0.1, "b": 0.2}
    opt = decaytx.proximal_sgd(rates, 0.5, 1.0)
    out = optax.apply_updates(params, opt.update(grads, opt.init(params), params)[0])
    for k, eta in rates.items():
        z = np.asarray(params[k]) - eta * np.asarray(grads[k])
        want = np.sign(z) * np.maximum(np.abs(z) - eta * 0.5, 0.0) / (1 + eta * 1.0)
        np.testing.assert_allclose(np.asarray(out[k]), want, rtol=1e-6, atol=1e-7, err_msg=k)


def test_a_rate_past_float16s_range_gives_zero_steps_for_zero_updates_not_nan() -> None:
    """-1e5 does not fit float16 (-inf there, and -inf * 0 is NaN): the leaf is
    computed in float32 and cast back, as the decay forms do for a large coefficient."""
    t = decaytx.scale_by_learning_rate({"a": 1e5, "b": 0.1})
    g = {"a": jnp.array([0.0, 1e-3], jnp.float16), "b": jnp.array([0.0, 1.0], jnp.float16)}
    u, _ = t.update(g, t.init(g))
    assert u["a"].dtype == jnp.float16
    want = (np.float32(-1e5) * np.asarray(g["a"], np.float32)).astype(np.float16)
    np.testing.assert_array_equal(np.asarray(u["a"], np.float32), want.astype(np.float32))


def test_scale_by_learning_rate_of_a_constant_tree_pickles_and_takes_the_same_steps() -> None:
    import pickle

    t = decaytx.scale_by_learning_rate({"a": 0.1, "b": 0.0})
    again = pickle.loads(pickle.dumps(t))
    g = {"a": jnp.arange(3.0), "b": jnp.arange(2.0)}
    for x, y in zip(jax.tree.leaves(t.update(g, t.init(g))[0]), jax.tree.leaves(again.update(g, again.init(g))[0])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
