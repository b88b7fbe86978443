"""Mask traps that used to pass silently: a pattern matching nothing, ``and``/``or`` on masks.

A pattern of ``masks.include``/``masks.exclude`` that matches no path does
nothing (``exclude("bais")`` decays the biases); each one warns at ``init``,
once, naming the pattern and real paths, and spells a 0.1 keystr pattern in
the "/" form. Python's ``and``/``or`` keep one of two masks, so a mask has no
truth value.
"""

from __future__ import annotations

import pickle
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks

# A BERT-like block as Flax Linen names it.
PARAMS = {
    "embed": {"embedding": jnp.ones((8, 4))},
    "layer_0": {
        "attn": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)},
        "LayerNorm": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
    },
    "head": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)},
}

FACTORIES = {
    "add_decoupled_decay": lambda m: decaytx.add_decoupled_decay(0.1, learning_rate=None, mask=m),
    "add_l2_grad": lambda m: decaytx.add_l2_grad(0.1, mask=m),
    "prox_l1": lambda m: decaytx.prox_l1(0.01, learning_rate=None, mask=m),
    "adamw": lambda m: decaytx.adamw(1e-3, 0.1, mask=m),
    "sgd_l2": lambda m: decaytx.sgd_l2(1e-3, 0.1, mask=m),
}


def init_warnings(tx: optax.GradientTransformation, params=PARAMS) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tx.init(params)
    return [str(w.message) for w in caught if issubclass(w.category, decaytx.DecayWarning)]


def decayed(tx: optax.GradientTransformation, params=PARAMS) -> set[str]:
    """The "/" paths whose update moves under a zero gradient (warnings ignored)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", decaytx.DecayWarning)
        state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    u, _ = tx.update(zeros, state, params)
    return {masks.path_of(k) for k, v in jax.tree_util.tree_flatten_with_path(u)[0]
            if np.any(np.asarray(v) != 0)}


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_misspelt_exclude_pattern_warns_naming_it_and_real_paths(factory):
    msgs = init_warnings(FACTORIES[factory](masks.exclude("bais")))
    assert len(msgs) == 1, msgs
    assert "exclude('bais')" in msgs[0] and "matches no params path" in msgs[0]
    assert "excludes nothing" in msgs[0]
    assert "'embed/embedding'" in msgs[0]  # real paths, as masks see them
    assert "Did you mean 'bias'?" in msgs[0]
    assert msgs[0].startswith(("add_", "prox_"))  # the transform that holds the mask


def test_the_pattern_that_matches_nothing_really_changes_nothing():
    # What the warning is about: the biases are decayed as if no mask were given.
    assert decayed(FACTORIES["add_decoupled_decay"](masks.exclude("bais"))) == decayed(
        FACTORIES["add_decoupled_decay"](None))


def test_a_pattern_in_the_wrong_case_warns_with_the_case_insensitive_spelling():
    (msg,) = init_warnings(decaytx.adamw(1e-3, 0.1, mask=masks.exclude("layernorm")))
    assert "exclude('layernorm')" in msg and "ignoring case" in msg
    assert "'(?i)layernorm'" in msg and "'layer_0/LayerNorm/" in msg
    # The spelling it suggests does what was meant.
    assert "layer_0/LayerNorm/scale" not in decayed(
        decaytx.adamw(1e-3, 0.1, mask=masks.exclude("(?i)layernorm")))


@pytest.mark.parametrize("pattern, meant", [
    (r"\['bias'\]", "bias"),
    (r"\['head'\]\['kernel'\]", "head/kernel"),
    (r"\['layer_0'\]\['attn'\]\['bias'\]$", "layer_0/attn/bias$"),
    (r"\.bias$", "bias$"),
    ('\\["embed"\\]', "embed"),
])
def test_a_keystr_pattern_of_0_1_warns_with_its_slash_spelling(pattern, meant):
    (msg,) = init_warnings(decaytx.adamw(1e-3, 0.1, mask=masks.exclude(pattern)))
    assert "keystr" in msg and "0.1" in msg, msg
    assert f"write {meant!r}" in msg, msg
    # The 0.2 spelling matches: no warning.
    assert init_warnings(decaytx.adamw(1e-3, 0.1, mask=masks.exclude(meant))) == []


def test_a_torch_dotted_name_warns_with_the_slash_spelling():
    (msg,) = init_warnings(decaytx.adamw(1e-3, 0.1, mask=masks.exclude(r"layer_0\.attn")))
    assert "write 'layer_0/attn'" in msg


def test_include_warns_for_the_one_pattern_that_matches_nothing():
    # include() with one good and one misspelt pattern decays only the good one's
    # leaves; no mask-is-empty warning can catch that.
    msgs = init_warnings(decaytx.adamw(1e-3, 0.1, mask=masks.include("kernel$", "embeding")))
    assert len(msgs) == 1 and "include('embeding')" in msgs[0] and "selects no leaf" in msgs[0]
    assert "Did you mean 'embedding'" in msgs[0]


def test_each_unmatched_pattern_warns_once_and_matched_ones_never():
    mask = (masks.matrices() & ~masks.include("embed", "wte")) | masks.exclude("bias$", "bais")
    msgs = init_warnings(decaytx.adamw(1e-3, 0.1, mask=mask))
    assert sorted(re.findall(r"mask pattern (\w+\('\w+'\))", " ".join(msgs))) == [
        "exclude('bais')", "include('wte')"]


def test_the_warning_comes_once_per_transform_and_params_signature():
    tx = decaytx.adamw(1e-3, 0.1, mask=masks.exclude("bais"))
    assert len(init_warnings(tx)) == 1
    assert init_warnings(tx) == []  # the same params again
    other = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    assert len(init_warnings(tx, other)) == 1  # other params: their own paths


def test_matching_patterns_masks_without_patterns_and_presets_do_not_warn():
    for mask in (masks.exclude("bias$", "LayerNorm"), masks.matrices(),
                 masks.ndim_at_least(2), masks.preset("transformers"), masks.preset("timm"),
                 {"embed": False, "layer_0": True, "head": True},
                 lambda p: jax.tree.map(lambda x: x.ndim > 1, p)):
        assert init_warnings(decaytx.adamw(1e-3, 0.1, mask=mask)) == [], mask


def test_a_pattern_naming_a_leaf_another_wrapper_masked_out_is_not_a_typo():
    # optax.masked hands the inner transform MaskedNode leaves; their paths still count.
    inner = decaytx.add_decoupled_decay(0.1, learning_rate=None, mask=masks.exclude("bias$"))
    tx = optax.masked(inner, lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    assert init_warnings(tx) == []


def test_the_warning_is_raised_under_jit_init_and_by_the_fused_step():
    tx = decaytx.adamw(1e-3, 0.1, mask=masks.exclude("bais"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax.jit(tx.init)(PARAMS)
    assert any("exclude('bais')" in str(w.message) for w in caught)
    fused = decaytx.fused.adamw(1e-3, 0.1, mask=masks.exclude("bais"))
    assert any("exclude('bais')" in m for m in init_warnings(fused))


def test_unmatched_patterns_lists_the_rules_for_the_audit():
    from decaytx import _mask_arg

    paths = [masks.path_of(k) for k, _ in jax.tree_util.tree_flatten_with_path(PARAMS)[0]]
    mask = ~masks.include("embed", "wte") & masks.exclude("bais")
    assert _mask_arg.unmatched_patterns(mask, paths) == [("include", "wte"), ("exclude", "bais")]
    assert _mask_arg.unmatched_patterns({"embed": True}, paths) == []


# -- and / or ------------------------------------------------------------------


@pytest.mark.parametrize("spell", [
    lambda a, b: a and b,
    lambda a, b: a or b,
    lambda a, b: not a,
    lambda a, b: b if a else a,
])
def test_python_and_or_on_masks_raise_pointing_to_the_operators(spell):
    a, b = masks.matrices(), ~masks.include("embed")
    with pytest.raises(TypeError, match="no truth value") as err:
        spell(a, b)
    msg = str(err.value)
    assert "`&`" in msg and "`|`" in msg and "`~`" in msg and "and`/`or" in msg


def test_the_operators_still_combine_compare_hash_and_pickle():
    a, b = masks.matrices(), ~masks.include("embed")
    both = a & b
    assert both(PARAMS)["embed"]["embedding"] is False
    assert both(PARAMS)["layer_0"]["attn"]["kernel"] is True
    assert both == (masks.matrices() & ~masks.include("embed")) and both != a
    assert len({both, masks.matrices() & ~masks.include("embed")}) == 1
    assert pickle.loads(pickle.dumps(both)) == both
    assert both is not None  # the test for "a mask was given" that still works
    assert decaytx.adamw(1e-3, 0.1, mask=both) is not None


# --- a 0.1 keystr pattern that matches by accident ------------------------------------

# Paths: dense/kernel, dense/bias, out/bias, out/w. As a regex, "['bias']" is a
# character class (one of ' b i a s): it matches dense/kernel (its "s"), not out/w.
SMALL = {"dense": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)},
         "out": {"w": jnp.ones((3, 2)), "bias": jnp.ones(2)}}


@pytest.mark.parametrize("pattern", ["['bias']", '["bias"]', "['dense']['bias']"])
def test_an_unescaped_keystr_pattern_warns_though_it_matches_something(pattern):
    tx = decaytx.add_decoupled_decay(0.1, learning_rate=None, mask=masks.exclude(pattern))
    msgs = init_warnings(tx, SMALL)
    assert len(msgs) == 1, msgs  # no "matches nothing" warning could catch it
    assert f"exclude({pattern!r})" in msgs[0] and "keystr" in msgs[0] and "0.1" in msgs[0]
    assert "character class" in msgs[0] and "by accident" in msgs[0]
    assert "'dense/kernel'" in msgs[0]  # what it matched, the wrong leaf among them
    meant = "dense/bias" if "dense" in pattern else "bias"
    assert f"Write exclude({meant!r})" in msgs[0]
    assert init_warnings(tx, SMALL) == []  # once
    # What it does: a leaf the pattern was not about escapes decay (or is decayed).
    wrong, right = decayed(tx, SMALL), decayed(
        decaytx.add_decoupled_decay(0.1, learning_rate=None, mask=masks.exclude(meant)), SMALL)
    assert right == ({"dense/kernel", "out/w"} if meant == "bias"
                     else {"dense/kernel", "out/w", "out/bias"})
    assert wrong != right
    assert init_warnings(decaytx.add_decoupled_decay(
        0.1, learning_rate=None, mask=masks.exclude(meant)), SMALL) == []


def test_a_keystr_attribute_pattern_warns_with_what_it_matched():
    msgs = init_warnings(decaytx.adamw(1e-3, 0.1, mask=masks.exclude(".bias")))
    assert len(msgs) == 1, msgs
    assert "exclude('.bias')" in msgs[0] and "any character" in msgs[0]
    assert "'layer_0/attn/bias'" in msgs[0] and "Write exclude('bias')" in msgs[0]


@pytest.mark.parametrize("pattern, params", [
    ("[bk]ias", SMALL),  # a character class on purpose: no quote inside
    ("(?i)BIAS$", SMALL),
    (r"\.bias$", {"encoder.layer.0.bias": jnp.ones(3), "encoder.layer.0.w": jnp.ones((3, 3))}),
    (".bias", {"encoder.layer.0.bias": jnp.ones(3), "encoder.layer.0.w": jnp.ones((3, 3))}),
])
def test_regexes_that_only_resemble_keystr_do_not_warn(pattern, params):
    assert init_warnings(decaytx.adamw(1e-3, 0.1, mask=masks.exclude(pattern)), params) == []


def test_the_audit_reports_an_accidental_keystr_pattern_as_a_problem():
    tx = optax.chain(optax.adam(1e-3), decaytx.add_decoupled_decay(
        0.1, learning_rate=1e-3, mask=masks.exclude("['bias']")))
    report = decaytx.audit(tx, SMALL)
    (problem,) = [p for p in report.problems if p.kind == "keystr_pattern"]
    assert problem.severity == "problem"
    assert "dense/kernel" in problem.paths and "out/w" not in problem.paths
    assert "write exclude('bias')" in problem.message
