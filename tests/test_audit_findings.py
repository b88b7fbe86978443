"""The audit's findings: problems vs notes, the
rule that decided each leaf, frozen-but-decayed leaves, a constant multiplier
under a scheduled optimizer, what it cannot see, and odd inputs.

Each test fails on decaytx 0.2.0 (decayed embeddings were problems, and none
of these settings was flagged).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax
import pytest

import decaytx
from decaytx import masks

GPT = {
    "wte": jnp.ones((16, 4)),
    "h": {"attn": {"kernel": jnp.full((4, 4), 0.5), "bias": jnp.zeros(4)},
          "ln_1": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}},
}
PARAMS = {"dense": {"kernel": jnp.full((3, 3), 0.5), "bias": jnp.zeros(3)},
          "out": {"kernel": jnp.full((3, 2), 0.5), "bias": jnp.zeros(2)}}


def _kinds(report):
    return sorted({p.kind for p in report.problems})


def _row(report, path):
    return next(r for r in report.rows if r.path == path)


# --- problems vs notes, and which rule decided ----------------------------


@pytest.mark.parametrize("preset", ["nanogpt", "transformers"])
def test_faithful_ports_that_decay_embeddings_have_no_problem(preset):
    mask = masks.preset(preset) & ~masks.include("ln_") if preset == "transformers" \
        else masks.preset(preset)
    opt = optax.chain(optax.adam(6e-4), decaytx.add_decoupled_decay(0.1, learning_rate=6e-4,
                                                                   mask=mask))
    report = decaytx.audit(opt, GPT)
    assert not report.problems  # the embedding is decayed on purpose
    notes = [f for f in report.findings if f.severity == "note"]
    assert [f.kind for f in notes] == ["looks_undecayable"] and "wte" in notes[0].paths
    assert "preset(" in _row(report, "wte").rule
    assert "No problems found." in str(report)


def test_each_row_says_which_rule_decided():
    opt = optax.chain(optax.adam(1e-3), decaytx.add_decoupled_decay(
        0.1, learning_rate=1e-3, mask=masks.matrices()))
    report = decaytx.audit(opt, PARAMS)
    assert _row(report, "dense/kernel").rule == "masks.matrices()"
    assert _row(report, "dense/bias").rule == "add_decoupled_decay: excluded by masks.matrices()"
    every = decaytx.audit(optax.chain(optax.adam(1e-3), decaytx.add_decoupled_decay(
        0.1, learning_rate=1e-3)), PARAMS)
    assert _row(every, "dense/kernel").rule == "all leaves"
    zero = decaytx.audit(optax.chain(optax.adam(1e-3), decaytx.add_decoupled_decay(
        {"dense": 0.0, "out": 0.1}, learning_rate=1e-3)), PARAMS)
    assert _row(zero, "dense/kernel").rule.endswith("coefficient zero")
    assert "decided by" in str(report)


def test_a_pattern_that_matches_nothing_is_a_problem():
    opt = optax.chain(optax.adam(1e-3), decaytx.add_decoupled_decay(
        0.1, learning_rate=1e-3, mask=masks.matrices() & ~masks.include("embed")))
    report = decaytx.audit(opt, PARAMS)
    assert _kinds(report) == ["unmatched_pattern"]
    assert "include('embed')" in report.problems[0].message


# --- decay outside a freeze ---------------------------------------------


def test_decay_after_a_freeze_is_flagged():
    labels = {"dense": "train", "out": "frozen"}
    frozen = optax.chain(
        optax.multi_transform({"train": optax.adam(1e-3), "frozen": optax.set_to_zero()}, labels),
        decaytx.add_decoupled_decay(0.1, learning_rate=1e-3, mask=masks.matrices()))
    report = decaytx.audit(frozen, PARAMS)
    assert _kinds(report) == ["frozen_but_decayed"]
    assert report.problems[0].paths == ("out/kernel",)
    assert "mask" in report.problems[0].fix
    # The decay inside the trained branch: the frozen leaves stay put.
    inside = optax.multi_transform({"train": optax.chain(optax.adam(1e-3),
                                    decaytx.add_decoupled_decay(0.1, learning_rate=1e-3,
                                                                mask=masks.matrices())),
                                    "frozen": optax.set_to_zero()}, labels)
    assert decaytx.audit(inside, PARAMS).problems == ()


def test_decay_after_optax_masked_freeze_is_flagged():
    freeze = optax.masked(optax.set_to_zero(), {"dense": False, "out": True})
    opt = optax.chain(optax.adam(1e-3), freeze,
                      decaytx.add_decoupled_decay(0.1, learning_rate=1e-3, mask=masks.matrices()))
    report = decaytx.audit(opt, PARAMS)
    assert _kinds(report) == ["frozen_but_decayed"]
    assert report.problems[0].paths == ("out/kernel",)


# --- a constant multiplier under a scheduled optimizer -----------------------


def test_constant_multiplier_under_a_schedule_is_flagged():
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 200)
    opt = optax.chain(optax.adam(schedule),
                      decaytx.add_decoupled_decay(0.1, learning_rate=1e-3, mask=masks.matrices()))
    report = decaytx.audit(opt, PARAMS)
    assert _kinds(report) == ["constant_multiplier"]
    assert "learning_rate=schedule" in report.problems[0].fix
    assert "lr_multiplier" in report.problems[0].fix
    for fixed in (schedule, decaytx.lr_multiplier(schedule)):
        ok = optax.chain(optax.adam(schedule), decaytx.add_decoupled_decay(
            0.1, learning_rate=fixed, mask=masks.matrices()))
        assert decaytx.audit(ok, PARAMS).problems == ()
    constant = optax.chain(optax.adam(1e-3), decaytx.add_decoupled_decay(
        0.1, learning_rate=1e-3, mask=masks.matrices()))
    assert decaytx.audit(constant, PARAMS).problems == ()


def test_constant_multiplier_under_an_injected_schedule_is_flagged():
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 200)
    opt = optax.chain(optax.inject_hyperparams(optax.adam)(learning_rate=schedule),
                      decaytx.add_decoupled_decay(0.1, learning_rate=1e-3, mask=masks.matrices()))
    assert _kinds(decaytx.audit(opt, PARAMS)) == ["constant_multiplier"]
    # decaytx.inject_hyperparams passes the schedule's value as an array: not flagged.
    recipe = decaytx.inject_hyperparams(decaytx.adamw)(
        learning_rate=schedule, weight_decay=0.1, mask=masks.matrices())
    assert decaytx.audit(recipe, PARAMS).problems == ()


# --- what it cannot see, and odd inputs --------------------------------------


def _decay():
    return decaytx.add_decoupled_decay(0.1, learning_rate=0.01, mask=masks.matrices())


def test_flatten_is_not_no_problems_found():
    report = decaytx.audit(optax.flatten(optax.chain(optax.adam(0.01), _decay())), PARAMS)
    assert "not_visible" in _kinds(report)
    assert "No problems found" not in str(report)


def test_lookahead_is_not_no_problems_found():
    opt = optax.lookahead(optax.chain(optax.adam(0.01), _decay()), 5, 0.5)
    params = optax.LookaheadParams.init_synced(PARAMS)
    report = decaytx.audit(opt, params)
    assert "not_visible" in _kinds(report)
    assert "No problems found" not in str(report)
    # Given the fast params only, its update fails: said, never "No problems found".
    plain = decaytx.audit(opt, PARAMS)
    assert any("raised" in n for n in plain.notes)
    assert "No problems found." not in str(plain)


def test_l2_grad_after_scale_by_adam_is_flagged():
    wrong = optax.chain(optax.scale_by_adam(), decaytx.add_l2_grad(0.1, mask=masks.matrices()),
                        optax.scale_by_learning_rate(0.01))
    report = decaytx.audit(wrong, PARAMS)
    assert _kinds(report) == ["gradient_after_optimizer"]
    assert "FIRST" in report.problems[0].fix
    right = optax.chain(decaytx.add_l2_grad(0.1, mask=masks.matrices()), optax.adam(0.01))
    assert decaytx.audit(right, PARAMS).problems == ()


@pytest.mark.parametrize("name", ["lamb", "lars", "lamb_with_gpt_params"])
def test_documented_trust_ratio_spellings_have_no_problem(name):
    # docs/optimizers.md: LAMB adds lambda*theta to Adam's direction before the
    # trust ratio (after scale_by_adam on purpose); LARS adds it to the gradient.
    lamb = optax.chain(optax.scale_by_adam(eps=1e-6), decaytx.add_l2_grad(0.01),
                       optax.scale_by_trust_ratio(), optax.scale_by_learning_rate(1e-3))
    lars = optax.chain(decaytx.add_l2_grad(0.01), optax.lars(1e-3))
    opt, params = {"lamb": (lamb, PARAMS), "lars": (lars, PARAMS),
                   "lamb_with_gpt_params": (lamb, GPT)}[name]
    report = decaytx.audit(opt, params)
    assert report.problems == (), report


def test_gradient_decay_before_adam_under_a_trust_ratio_is_not_called_frozen():
    # A ones-filled bias probe and a ones gradient point the same way: a trust
    # ratio keeps only the direction, so a probe gradient along the weights
    # would look like a frozen leaf.
    opt = optax.chain(decaytx.add_l2_grad(0.01), optax.scale_by_adam(eps=1e-6),
                      optax.scale_by_trust_ratio(), optax.scale_by_learning_rate(1e-3))
    assert "frozen_but_decayed" not in _kinds(decaytx.audit(opt, PARAMS))


def test_a_leaf_decayed_twice_is_flagged():
    opt = optax.chain(decaytx.adamw(1e-3, weight_decay=0.1, mask=masks.matrices()),
                      decaytx.add_decoupled_decay(0.1, learning_rate=1e-3, mask=masks.matrices()))
    report = decaytx.audit(opt, PARAMS)
    assert _kinds(report) == ["decayed_twice"]
    assert sorted(report.problems[0].paths) == ["dense/kernel", "out/kernel"]


def test_reduce_on_plateau_does_not_crash():
    opt = optax.chain(optax.adam(0.01), _decay(), optax.contrib.reduce_on_plateau())
    report = decaytx.audit(opt, PARAMS)
    assert report.problems == ()
    assert _row(report, "dense/kernel").direction == "toward"


def test_path_collisions_are_told_apart():
    params = {"a/b": jnp.ones((2, 2)), "a": {"b": jnp.ones(3)}}
    opt = optax.chain(optax.adam(0.01), _decay())
    report = decaytx.audit(opt, params)
    paths = sorted(r.path for r in report.rows)
    assert paths == ["a/b [#1]", "a/b [#2]"]
    assert [r.transform is not None for r in sorted(report.rows, key=lambda r: r.shape)] == [
        True, False]  # (2, 2) decayed, (3,) not
    assert any(f.kind == "path_collision" for f in report.findings)


@pytest.mark.parametrize("params", [None, {}, ()])
def test_params_none_is_named(params):
    with pytest.raises(TypeError, match="params"):
        decaytx.audit(optax.chain(optax.adam(0.01), _decay()), params)
