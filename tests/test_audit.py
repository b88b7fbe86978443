"""decaytx.audit: the table's values against closed forms, every problem kind
caught (and none on a correct chain), under every optax wrapper.

Expected coefficients, peaks and factors are worked out by hand from the
schedules' formulas; the zero-gradient directions are checked against the
closed-form first step of each chain in NumPy float64.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import _audit, _audit_probe, _audit_rules, masks

PARAMS = {
    "dense": {"kernel": jnp.array([[2.0, -1.0, 0.5], [1.0, 3.0, -2.0]]), "bias": jnp.zeros(3)},
    "out": {"kernel": jnp.array([[1.5], [-0.5], [2.5]]), "bias": jnp.array([0.25])},
}
KERNELS = ["dense/kernel", "out/kernel"]
MATRICES = masks.ndim_at_least(2)


def _decoupled(wd=0.1, lr=0.01, **kw):
    return decaytx.add_decoupled_decay(wd, learning_rate=lr, mask=kw.pop("mask", MATRICES), **kw)


def _rows(report, transform=None):
    return {r.path: r for r in report.rows if r.transform == transform or transform is None}


def _kinds(report):
    return sorted({p.kind for p in report.problems})


def _note_kinds(report):
    """The kinds of the findings that are notes (not problems)."""
    return sorted({p.kind for p in report.findings if p.severity == "note"})


def _directions(report):
    return {r.path: r.direction for r in report.rows if r.transform is not None}


# --- the table ---------------------------------------------------------------


def test_rows_one_per_leaf_and_transform_with_closed_form_values():
    wd = optax.linear_schedule(0.0, 0.2, 50)  # 0 at step 0, peak 0.2
    lr = optax.cosine_decay_schedule(0.1, 100)  # 0.1 at step 0 (its peak)
    opt = optax.chain(
        decaytx.add_l2_grad(0.03, mask=MATRICES),
        optax.sgd(lr),
        decaytx.add_decoupled_decay(wd, learning_rate=lr, mask=MATRICES),
    )
    report = decaytx.audit(opt, PARAMS)
    rows = report.rows
    # 2 undecayed biases (one row each) + 2 kernels x 2 transforms.
    assert len(rows) == 6
    by = {(r.path, r.transform): r for r in rows}
    assert by[("dense/bias", None)].direction is None
    assert by[("out/bias", None)].lam0 == {}
    for k in KERNELS:
        g = by[(k, "add_l2_grad")]
        assert g.side == "gradient" and g.m0 is None and g.m_peak is None and g.factor == {}
        assert g.lam0 == {"weight_decay": pytest.approx(0.03)}
        assert g.lam_peak == {"weight_decay": pytest.approx(0.03)}
        d = by[(k, "add_decoupled_decay")]
        assert d.side == "update" and d.anchor == "zero" and not d.cautious
        assert d.lam0["weight_decay"] == pytest.approx(0.0, abs=1e-12)
        assert d.lam_peak["weight_decay"] == pytest.approx(0.2, rel=1e-6)
        assert d.m0 == pytest.approx(0.1, rel=1e-6)
        assert d.m_peak == pytest.approx(0.1, rel=1e-6)
        assert d.factor["weight_decay"] == pytest.approx(0.02, rel=1e-6)
        assert d.shape == tuple(PARAMS[k.split("/")[0]]["kernel"].shape)
        assert d.dtype == "float32"
    # Two weight decays on each kernel (coupled L2 and decoupled) add up.
    assert _kinds(report) == ["decayed_twice"]
    assert sorted(report.problems[0].paths) == KERNELS
    text = str(report)
    assert "m·λ peak" in text and "dense/kernel" in text and "decayed_twice" in text


def test_lr_multiplier_and_prox_factors():
    sched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100)
    opt = optax.chain(
        optax.adam(sched),
        decaytx.add_decoupled_decay(0.1, learning_rate=decaytx.lr_multiplier(sched), mask=MATRICES),
    )
    d = _rows(decaytx.audit(opt, PARAMS), "add_decoupled_decay")["out/kernel"]
    # m_t = eta_t / eta_max: 0 at step 0, 1 at the end of the warm-up.
    assert d.m0 == pytest.approx(0.0, abs=1e-12)
    assert d.m_peak == pytest.approx(1.0, rel=1e-6)
    assert d.factor["weight_decay"] == pytest.approx(0.1, rel=1e-6)

    opt = optax.chain(optax.sgd(0.1), decaytx.prox_elastic_net(0.01, 0.5, learning_rate=0.1, mask=MATRICES))
    report = decaytx.audit(opt, PARAMS)
    p = _rows(report, "prox_elastic_net")["dense/kernel"]
    assert p.factor == {"l1": pytest.approx(1e-3), "l2": pytest.approx(0.05)}
    assert p.direction == "toward"
    assert report.problems == ()


def test_two_transforms_of_one_name_are_told_apart():
    opt = optax.chain(optax.sgd(0.1), _decoupled(0.1), _decoupled(0.2, mask=masks.include("dense")))
    report = decaytx.audit(opt, PARAMS)
    names = {r.transform for r in report.rows if r.path == "dense/kernel"}
    assert names == {"add_decoupled_decay#1", "add_decoupled_decay#2"}


def test_traced_coefficients_say_traced():
    seen = []

    def f(wd):
        opt = optax.chain(optax.sgd(0.1), decaytx.add_decoupled_decay(
            lambda t: wd * jnp.ones([]), learning_rate=0.1, mask=MATRICES))
        seen.append(decaytx.audit(opt, PARAMS))
        return wd

    jax.jit(f)(0.1)
    d = _rows(seen[0], "add_decoupled_decay")["dense/kernel"]
    assert d.lam0 == {"weight_decay": "traced"} and d.lam_peak == {"weight_decay": "traced"}
    assert d.m0 == pytest.approx(0.1) and d.factor == {"weight_decay": "traced"}
    assert d.direction == "unchecked"
    assert any("traced" in n for n in seen[0].notes)


# --- problems: a zero-gradient step that moves a leaf away ---------------------


def _first_adam_step(u_decay: np.ndarray, lr: float, eps: float = 1e-8) -> np.ndarray:
    # optax.adam's first step on gradient g: mu_hat = g, nu_hat = g^2.
    return -lr * u_decay / (np.abs(u_decay) + eps)


def test_correct_adamw_chain_moves_toward_zero():
    opt = optax.chain(optax.adam(0.01), _decoupled(0.1, 0.01))
    report = decaytx.audit(opt, PARAMS)
    assert report.problems == ()
    assert _directions(report) == {k: "toward" for k in KERNELS}
    # Closed form: u = -m*lambda*theta, so |theta + u| = (1 - 1e-3)|theta|.
    th = np.asarray(PARAMS["dense"]["kernel"], np.float64)
    assert np.linalg.norm(th - 1e-3 * th) < np.linalg.norm(th)


def test_decoupled_before_adam_is_caught():
    opt = optax.chain(_decoupled(0.1, 0.01), optax.adam(0.01))
    report = decaytx.audit(opt, PARAMS)
    assert _kinds(report) == ["away_from_anchor"]
    (p,) = report.problems
    assert sorted(p.paths) == KERNELS and p.transform == "add_decoupled_decay"
    assert "LAST" in p.fix and "scale_by_learning_rate" in p.fix
    # Closed form of that chain's first step: Adam turns -m*lambda*theta into
    # +lr*sign(theta), away from 0.
    th = np.asarray(PARAMS["dense"]["kernel"], np.float64)
    u = _first_adam_step(-1e-3 * th, 0.01)
    assert np.linalg.norm(th + u) > np.linalg.norm(th)
    assert _directions(report) == {k: "away" for k in KERNELS}


def test_l2_grad_after_learning_rate_is_caught_and_first_is_fine():
    good = optax.chain(decaytx.add_l2_grad(0.1, mask=MATRICES), optax.sgd(0.1))
    assert decaytx.audit(good, PARAMS).problems == ()
    bad = optax.chain(optax.sgd(0.1), decaytx.add_l2_grad(0.1, mask=MATRICES))
    report = decaytx.audit(bad, PARAMS)
    assert _kinds(report) == ["away_from_anchor"]
    assert "FIRST" in report.problems[0].fix
    # Closed form: u = 0 * (-0.1) + 0.1 * theta, so |theta + u| = 1.1 |theta|.
    assert _directions(report) == {k: "away" for k in KERNELS}


def test_prox_before_adam_is_caught():
    bad = optax.chain(decaytx.prox_l1(0.01, learning_rate=0.1, mask=MATRICES), optax.adam(0.1))
    assert _kinds(decaytx.audit(bad, PARAMS)) == ["away_from_anchor"]
    good = optax.chain(optax.adam(0.1), decaytx.prox_l1(0.01, learning_rate=0.1, mask=MATRICES))
    assert decaytx.audit(good, PARAMS).problems == ()


@pytest.mark.parametrize("anchor", ["init", "tree"])
def test_anchored_decay_direction(anchor):
    # anchor="init": theta equals its anchor at init, so the probe moves it
    # away by 1 + |a| first; a tree anchor differs from params already.
    a = jax.tree.map(lambda x: x + 1.0, PARAMS) if anchor == "tree" else "init"
    good = optax.chain(optax.adam(0.1), _decoupled(0.1, 0.1, anchor=a))
    report = decaytx.audit(good, PARAMS)
    assert report.problems == ()
    assert _directions(report) == {k: "toward" for k in KERNELS}
    assert {r.anchor for r in report.rows if r.transform} == {anchor}
    bad = optax.chain(_decoupled(0.1, 0.1, anchor=a), optax.adam(0.1))
    assert _directions(decaytx.audit(bad, PARAMS)) == {k: "away" for k in KERNELS}


def test_zero_initialised_decayed_leaf_is_probed():
    # Zero biases sit at the zero anchor; the probe moves them to 1 first.
    opt = optax.chain(_decoupled(0.1, 0.01, mask=None), optax.adam(0.01))
    report = decaytx.audit(opt, PARAMS)
    assert _directions(report)["dense/bias"] == "away"


def test_audit_leaves_params_and_optimizer_usable():
    before = jax.tree.map(np.asarray, PARAMS)
    opt = optax.chain(optax.adam(0.01), _decoupled())
    decaytx.audit(opt, PARAMS)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, PARAMS))
    u, _ = opt.update(jax.tree.map(jnp.zeros_like, PARAMS), opt.init(PARAMS), PARAMS)
    np.testing.assert_allclose(u["dense"]["kernel"], -1e-3 * before["dense"]["kernel"], rtol=1e-6)


# --- problems: resolution, m*lambda >= 1, empty masks, biases -----------------


def test_below_resolution_predicate_closed_forms():
    f32_eps = 2.0**-23
    assert _audit.below_resolution(f32_eps / 4, jnp.float32)
    assert not _audit.below_resolution(f32_eps / 2, jnp.float32)
    assert not _audit.below_resolution(0.0, jnp.float32)
    # bfloat16: eps = 2**-7, so the bound is 2**-9 = 0.001953125. 0.00196 is
    # above it but rounds onto it in bf16 (next bf16 value: 2**-9 * (1 + 2**-7)).
    assert _audit.below_resolution(2.0**-9, jnp.bfloat16)
    assert _audit.below_resolution(0.00196, jnp.bfloat16)
    assert not _audit.below_resolution(0.002, jnp.bfloat16)
    assert _audit.below_resolution(1e-5, jnp.float16)  # eps/4 = 2**-12
    assert not _audit.below_resolution(1e-5, jnp.float32)


def test_below_resolution_is_a_problem_for_bf16_only():
    params = {"w16": jnp.ones((3, 3), jnp.bfloat16), "w32": jnp.ones((3, 3), jnp.float32)}
    opt = optax.chain(optax.adam(1e-3), decaytx.add_decoupled_decay(1e-2, learning_rate=1e-3))
    report = decaytx.audit(opt, params)
    assert _kinds(report) == ["below_resolution"]
    assert report.problems[0].paths == ("w16",)
    # The predicate's claim, checked by arithmetic in bf16: x - 1e-5 x == x.
    x = jnp.linspace(-8, 8, 257).astype(jnp.bfloat16)
    assert bool(jnp.all(x - jnp.asarray(1e-5, jnp.bfloat16) * x == x))


def test_factor_at_least_one():
    opt = optax.chain(optax.sgd(0.1), decaytx.add_decoupled_decay(1.0, learning_rate=None, mask=MATRICES))
    report = decaytx.audit(opt, PARAMS)
    assert _kinds(report) == ["factor_at_least_1"]
    assert sorted(report.problems[0].paths) == KERNELS
    ok = optax.chain(optax.sgd(0.1), decaytx.add_decoupled_decay(0.99, learning_rate=None, mask=MATRICES))
    assert decaytx.audit(ok, PARAMS).problems == ()


def test_mask_that_selects_nothing():
    opt = optax.chain(optax.adam(0.1), _decoupled(mask=masks.include("weight")))
    report = decaytx.audit(opt, PARAMS)
    assert _kinds(report) == ["selects_nothing", "unmatched_pattern"]
    assert all(r.transform is None for r in report.rows)


def test_looks_like_bias_norm_embedding():
    params = {
        "embed": {"embedding": jnp.ones((10, 4))},
        "ln": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
        "dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.zeros(4)},
    }
    opt = optax.chain(optax.adam(1e-3), decaytx.add_decoupled_decay(0.1, learning_rate=1e-3))
    report = decaytx.audit(opt, params)
    assert report.problems == ()  # a note: the decay does what the chain says
    assert _note_kinds(report) == ["looks_undecayable"]
    assert sorted(report.findings[0].paths) == ["dense/bias", "embed/embedding", "ln/bias", "ln/scale"]
    assert _audit_rules.looks_undecayable("embed/embedding", (10, 4), True) == "an embedding"
    assert _audit_rules.looks_undecayable("ln/scale", (4,), True) == "a norm scale"
    assert _audit_rules.looks_undecayable("dense/bias", (4,), True) == "a bias"
    # A linear model's weight vector alone is not flagged.
    lone = decaytx.audit(decaytx.sgd_l2(learning_rate=0.1, weight_decay=0.1), {"w": jnp.ones(5)})
    assert lone.problems == ()


def test_equinox_conv_bias_is_flagged():
    model = eqx.nn.Sequential([
        eqx.nn.Conv2d(1, 3, 3, key=jax.random.key(0)), eqx.nn.Linear(3, 2, key=jax.random.key(1))])
    params = eqx.filter(model, eqx.is_array)
    report = decaytx.audit(decaytx.adamw(learning_rate=1e-3, weight_decay=0.1, mask=MATRICES), params)
    assert _note_kinds(report) == ["looks_undecayable"] and report.problems == ()
    assert report.findings[0].paths == ("layers/0/bias",)  # shape (3, 1, 1)


# --- warnings: none from the audit, still there for the user --------------------


def test_audit_issues_no_decay_warning_and_keeps_the_users():
    opt = optax.chain(optax.sgd(0.1), decaytx.add_decoupled_decay(2.0, learning_rate=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decaytx.audit(opt, PARAMS)
    with pytest.warns(decaytx.DecayWarning, match=">= 1"):
        opt.init(PARAMS)


# --- every wrapper ---------------------------------------------------------------


def _correct():
    return optax.chain(optax.adam(0.01), _decoupled())


def _wrong():
    return optax.chain(_decoupled(), optax.adam(0.01))


WRAPPERS = {
    "masked": lambda t: optax.masked(t, {"dense": True, "out": False}),
    "multi_transform": lambda t: optax.multi_transform(
        {"a": t, "b": optax.sgd(0.1)}, {"dense": "a", "out": "b"}),
    "multisteps": lambda t: optax.MultiSteps(t, every_k_schedule=3),
    "apply_if_finite": lambda t: optax.apply_if_finite(t, 3),
    "chain_of_chain": lambda t: optax.chain(optax.identity(), t),
}


@pytest.mark.parametrize("wrap", sorted(WRAPPERS))
def test_wrappers(wrap):
    selected = ["dense/kernel"] if wrap in ("masked", "multi_transform") else KERNELS
    good = decaytx.audit(WRAPPERS[wrap](_correct()), PARAMS)
    assert good.problems == ()
    assert _directions(good) == {k: "toward" for k in selected}
    bad = decaytx.audit(WRAPPERS[wrap](_wrong()), PARAMS)
    assert _kinds(bad) == ["away_from_anchor"]
    assert sorted(bad.problems[0].paths) == selected


def test_multisteps_beyond_probe_steps_is_explained():
    opt = optax.MultiSteps(_wrong(), every_k_schedule=5)
    report = decaytx.audit(opt, PARAMS, probe_steps=3)
    assert set(_directions(report).values()) == {"unchecked"}
    assert any("probe_steps" in n for n in report.notes)
    assert _kinds(decaytx.audit(opt, PARAMS, probe_steps=5)) == ["away_from_anchor"]


def test_optax_inject_hyperparams():
    lr = optax.linear_schedule(0.0, 0.01, 10)
    injected = optax.inject_hyperparams(decaytx.add_decoupled_decay)(0.1, learning_rate=lr)
    report = decaytx.audit(optax.chain(optax.adam(0.01), injected), {"w": jnp.ones((2, 2))})
    (row,) = report.rows
    # The transform sees the injected value at step 0 as a constant.
    assert row.m0 == pytest.approx(0.0, abs=1e-12) and row.lam0 == {"weight_decay": pytest.approx(0.1)}
    # m = 0 at step 0: the probe takes a second step (m = 1e-3) to find the direction.
    assert row.direction == "toward"
    assert report.problems == ()
    assert any("inject_hyperparams" in n for n in report.notes)
    wrong = optax.chain(injected, optax.adam(0.01))
    assert _kinds(decaytx.audit(wrong, {"w": jnp.ones((2, 2))})) == ["away_from_anchor"]


def test_decaytx_inject_hyperparams_recipe():
    opt = decaytx.inject_hyperparams(decaytx.adamw)(learning_rate=0.01, weight_decay=0.1, mask=MATRICES)
    report = decaytx.audit(opt, PARAMS)
    assert report.problems == ()
    d = _rows(report, "add_decoupled_decay")["dense/kernel"]
    assert d.factor["weight_decay"] == pytest.approx(1e-3, rel=1e-6)
    assert d.direction == "toward"


@pytest.mark.parametrize("recipe", ["adamw", "sgdw", "adam_l2", "sgd_l2", "proximal_sgd"])
def test_recipes_have_no_problem_with_matrices_mask(recipe):
    kw = {"l1": 1e-3} if recipe == "proximal_sgd" else {"weight_decay": 1e-2}
    opt = getattr(decaytx, recipe)(learning_rate=0.1, mask=MATRICES, **kw)
    report = decaytx.audit(opt, PARAMS)
    assert report.problems == ()
    assert _directions(report) == {k: "toward" for k in KERNELS}
    # Without a mask every recipe decays the biases too, and says so.
    opt = getattr(decaytx, recipe)(learning_rate=0.1, **kw)
    assert _note_kinds(decaytx.audit(opt, PARAMS)) == ["looks_undecayable"]


def test_flax_nnx_paths():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    report = decaytx.audit(decaytx.adamw(learning_rate=1e-3, weight_decay=0.1, mask=MATRICES), params)
    assert [(r.path, r.transform) for r in report.rows] == [
        ("bias", None), ("kernel", "add_decoupled_decay")]
    assert report.problems == ()


def test_no_decaytx_transform_and_bad_arguments():
    report = decaytx.audit(optax.adamw(1e-3), PARAMS)
    assert report.plans == () and report.problems == ()
    assert any("no decaytx transform" in n for n in report.notes)
    with pytest.raises(TypeError, match="optimizer"):
        decaytx.audit(0.1, PARAMS)
    with pytest.raises(ValueError, match="probe_steps=0"):
        decaytx.audit(_correct(), PARAMS, probe_steps=0)


def test_path_of_matches_the_documented_rule():
    nested = {"blocks": [{"attn": {"kernel": jnp.ones((2, 2))}}]}
    (path, _), = jax.tree_util.tree_flatten_with_path(nested)[0]
    assert masks.path_of(path) == "blocks/0/attn/kernel"
    assert [p for p, _ in _audit_probe.leaves_by_path(nested)] == ["blocks/0/attn/kernel"]


def test_docs_page_examples_run(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[1] / "docs" / "audit.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_audit"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"audit.md[block {i}]", "exec"), namespace)


def test_int_none_and_complex_leaves():
    params = {"w": jnp.ones((2, 2)), "step": jnp.array(3), "none": None,
              "c": jnp.full((2, 2), 1 + 2j, jnp.complex64)}
    opt = optax.chain(optax.sgd(0.1), decaytx.add_decoupled_decay(0.1, learning_rate=0.1))
    report = decaytx.audit(opt, params)
    # None is not a leaf; the int leaf is never decayed; the complex leaf is,
    # and u = -0.01 theta shrinks its modulus.
    assert [(r.path, r.transform) for r in report.rows] == [
        ("c", "add_decoupled_decay"), ("step", None), ("w", "add_decoupled_decay")]
    assert _directions(report) == {"c": "toward", "w": "toward"}
    assert report.problems == ()
