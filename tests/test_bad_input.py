"""Bad input: every public function, every kind of wrong value.

Each case checks the exception type and that the message names the
argument, shows the value received and says what to do instead. Coefficient
errors must come from the factory call itself (construction, before anything
is traced); tree errors (mask, anchor, leaves) need params and come from
``init``/``update``, also before any computation runs. The table in
docs/robustness.md mirrors these cases.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx

PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "head": jnp.ones(4)}
X = jnp.array([-2.0, 0.0, 3.0])

# Words a message uses to say what to do instead.
FIX_WORDS = ("pass ", "use ", "must ", "convert", "clip", "build ", "return ", "call ", "lower ", "e.g.")


def assert_message(err: BaseException, *needles: str) -> None:
    msg = str(err)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in message: {msg}"
    assert any(w in msg.lower() for w in FIX_WORDS), f"message says no fix: {msg}"


# --- coefficients ----------------------------------------------------------------

RECIPE_NAMES = ("sgd_l2", "sgdw", "adam_l2", "adamw", "proximal_sgd")
RECIPES = tuple(n for n in RECIPE_NAMES if hasattr(decaytx, n))

# name -> (argument name, factory of the bad value); the factory is the call
# a user makes, so an error must come from it directly.
COEFFICIENT_SITES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "add_l2_grad": ("weight_decay", lambda v: decaytx.add_l2_grad(v)),
    "add_l1_subgrad": ("l1", lambda v: decaytx.add_l1_subgrad(v)),
    "add_elastic_net_grad.l1": ("l1", lambda v: decaytx.add_elastic_net_grad(v, 0.1)),
    "add_elastic_net_grad.l2": ("l2", lambda v: decaytx.add_elastic_net_grad(0.1, v)),
    "add_decoupled_decay": ("weight_decay", lambda v: decaytx.add_decoupled_decay(v, learning_rate=None)),
    "add_decoupled_decay.lr": (
        "learning_rate",
        lambda v: decaytx.add_decoupled_decay(0.1, learning_rate=v),
    ),
    "prox_l1": ("l1", lambda v: decaytx.prox_l1(v, learning_rate=None)),
    "prox_l1.lr": ("learning_rate", lambda v: decaytx.prox_l1(0.1, learning_rate=v)),
    "prox_elastic_net.l1": ("l1", lambda v: decaytx.prox_elastic_net(v, 0.1, learning_rate=None)),
    "prox_elastic_net.l2": ("l2", lambda v: decaytx.prox_elastic_net(0.1, v, learning_rate=None)),
    "prox_elastic_net.lr": (
        "learning_rate",
        lambda v: decaytx.prox_elastic_net(0.1, 0.1, learning_rate=v),
    ),
    "l2_penalty": ("weight_decay", lambda v: decaytx.l2_penalty(PARAMS, v)),
    "l1_penalty": ("l1", lambda v: decaytx.l1_penalty(PARAMS, v)),
    "elastic_net_penalty.l1": ("l1", lambda v: decaytx.elastic_net_penalty(PARAMS, v, 0.1)),
    "elastic_net_penalty.l2": ("l2", lambda v: decaytx.elastic_net_penalty(PARAMS, 0.1, v)),
    "soft_threshold": ("tau", lambda v: decaytx.soft_threshold(X, v)),
    "normalized_weight_decay": (
        "lambda_norm",
        lambda v: decaytx.normalized_weight_decay(v, batch_size=128, train_size=50_000, epochs=10),
    ),
    "lr_multiplier": ("schedule", lambda v: decaytx.lr_multiplier(v)),
    "corrected_decay": ("schedule", lambda v: decaytx.corrected_decay(v)),
    "inject_hyperparams": (
        "weight_decay",
        # optax builds the inner transform at init, with the value as an array.
        lambda v: decaytx.inject_hyperparams(decaytx.add_l2_grad)(v).init(PARAMS),
    ),
}
if "sgd_l2" in RECIPES:
    COEFFICIENT_SITES["sgd_l2"] = ("weight_decay", lambda v: decaytx.sgd_l2(0.1, v))
if "sgdw" in RECIPES:
    COEFFICIENT_SITES["sgdw"] = ("weight_decay", lambda v: decaytx.sgdw(0.1, v))
if "adam_l2" in RECIPES:
    COEFFICIENT_SITES["adam_l2"] = ("weight_decay", lambda v: decaytx.adam_l2(1e-3, v))
if "adamw" in RECIPES:
    COEFFICIENT_SITES["adamw"] = ("weight_decay", lambda v: decaytx.adamw(1e-3, v))
if "proximal_sgd" in RECIPES:
    COEFFICIENT_SITES["proximal_sgd.l1"] = ("l1", lambda v: decaytx.proximal_sgd(0.1, v))
    COEFFICIENT_SITES["proximal_sgd.l2"] = ("l2", lambda v: decaytx.proximal_sgd(0.1, 0.1, v))

# bad value -> (exception type, text the message must show for the value)
BAD_VALUES: dict[str, tuple[Any, type[Exception], str]] = {
    "negative": (-1.0, ValueError, "-1.0"),
    "negative-np32": (np.float32(-0.5), ValueError, "-0.5"),
    "negative-jax": (jnp.asarray(-0.25), ValueError, "-0.25"),
    "nan": (float("nan"), ValueError, "nan"),
    "nan-jax": (jnp.asarray(jnp.nan), ValueError, "nan"),
    "inf": (math.inf, ValueError, "inf"),
    "-inf": (-math.inf, ValueError, "inf"),
    "string": ("0.1", TypeError, "'0.1'"),
    "list": ([0.1], TypeError, "[0.1]"),
    "tuple": ((0.1,), TypeError, "(0.1,)"),
    "complex": (1e-3j, TypeError, "0.001j"),
    "complex-real": (complex(0.1, 0.0), TypeError, "0.1+0j"),
    "bool": (True, TypeError, "True"),
    "vector": (jnp.full(2, 0.1), TypeError, "(2,)"),
    "object": (object(), TypeError, "object"),
}


@pytest.mark.parametrize("bad", list(BAD_VALUES), ids=list(BAD_VALUES))
@pytest.mark.parametrize("site", list(COEFFICIENT_SITES), ids=list(COEFFICIENT_SITES))
def test_bad_coefficient(site: str, bad: str) -> None:
    arg, call = COEFFICIENT_SITES[site]
    value, exc, shown = BAD_VALUES[bad]
    if bad in ("list", "tuple") and site != "inject_hyperparams":
        pytest.skip("a list/tuple is a coefficient tree (learning_rate= too, from 0.3), "
                    "checked against params at init")
    if site == "inject_hyperparams" and bad in ("string", "list", "tuple", "object", "vector"):
        # optax itself turns these into arrays or refuses them first; what
        # reaches decaytx is covered by the other values.
        with pytest.raises((TypeError, ValueError)):
            call(value)
        return
    if site == "inject_hyperparams":
        if bad.startswith("complex"):
            pytest.skip("optax casts numeric hyperparameters to the params dtype (float32)")
        shown = {"-0.5": "-0.5", "-1.0": "-1.0", "-0.25": "-0.25"}.get(shown, shown)
    with pytest.raises(exc) as info:
        call(value)
    assert_message(info.value, arg, shown)


@pytest.mark.parametrize("site", [s for s in COEFFICIENT_SITES if not s.endswith(".lr")])
def test_none_is_not_a_coefficient(site: str) -> None:
    arg, call = COEFFICIENT_SITES[site]
    if site in ("lr_multiplier", "corrected_decay", "inject_hyperparams"):
        pytest.skip("None has another meaning (or is optax's) here")
    with pytest.raises(TypeError) as info:
        call(None)
    assert_message(info.value, arg, "None")


@pytest.mark.parametrize("site", [s for s in COEFFICIENT_SITES if s.endswith(".lr")])
def test_learning_rate_none_means_m_equals_1(site: str) -> None:
    arg, call = COEFFICIENT_SITES[site]
    t = call(None)
    upd, _ = t.update(jax.tree.map(jnp.zeros_like, PARAMS), t.init(PARAMS), PARAMS)
    assert all(bool(jnp.all(u != 0)) for u in jax.tree.leaves(upd))


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda v: decaytx.normalized_weight_decay(0.05, batch_size=v, train_size=10, epochs=1), "batch_size"),
        (lambda v: decaytx.normalized_weight_decay(0.05, batch_size=1, train_size=v, epochs=1), "train_size"),
        (lambda v: decaytx.normalized_weight_decay(0.05, batch_size=1, train_size=10, epochs=v), "epochs"),
        (lambda v: decaytx.weight_decay_for_timescale(v, learning_rate=1e-3, steps_per_epoch=10), "tau_epochs"),
        (lambda v: decaytx.weight_decay_for_timescale(1.0, learning_rate=v, steps_per_epoch=10), "learning_rate"),
        (lambda v: decaytx.weight_decay_for_timescale(1.0, learning_rate=1e-3, steps_per_epoch=v), "steps_per_epoch"),
        (lambda v: decaytx.lr_multiplier(optax.cosine_decay_schedule(0.1, 10), peak=v), "peak"),
        (lambda v: decaytx.corrected_decay(optax.cosine_decay_schedule(0.1, 10), peak=v), "peak"),
    ],
)
@pytest.mark.parametrize(
    "value, exc, shown",
    [
        (0, ValueError, "0"),
        (-3, ValueError, "-3"),
        (math.nan, ValueError, "nan"),
        (math.inf, ValueError, "inf"),
        ("10", TypeError, "'10'"),
        ([10], TypeError, "[10]"),
        (2j, TypeError, "2j"),
        (True, TypeError, "True"),
        (np.ones(2), TypeError, "array"),
    ],
)
def test_bad_scaling_argument(call: Callable[[Any], Any], arg: str, value: Any, exc: type, shown: str) -> None:
    with pytest.raises(exc) as info:
        call(value)
    assert_message(info.value, arg, shown)


def test_schedule_with_zero_peak_asks_for_peak() -> None:
    with pytest.raises(ValueError) as info:
        decaytx.lr_multiplier(optax.constant_schedule(0.0))
    assert_message(info.value, "peak", "0.0")


# --- schedules: values are checked at the first init ---------------------------

SCHEDULE_FACTORIES: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "add_l2_grad": lambda s: decaytx.add_l2_grad(s),
    "add_l1_subgrad": lambda s: decaytx.add_l1_subgrad(s),
    "add_elastic_net_grad": lambda s: decaytx.add_elastic_net_grad(0.1, s),
    "add_decoupled_decay": lambda s: decaytx.add_decoupled_decay(s, learning_rate=None),
    "add_decoupled_decay.lr": lambda s: decaytx.add_decoupled_decay(0.1, learning_rate=s),
    "prox_l1": lambda s: decaytx.prox_l1(s, learning_rate=None),
    "prox_elastic_net": lambda s: decaytx.prox_elastic_net(0.1, s, learning_rate=None),
}


@pytest.mark.parametrize(
    "schedule, exc, shown",
    [
        # goes negative at step 51: a linear schedule past its end value
        (optax.linear_schedule(0.1, -0.1, 100), ValueError, "step 51"),
        (lambda t: 1.0 / t, ValueError, "inf"),  # inf at step 0
        (lambda t: jnp.sqrt(1.0 - t), ValueError, "nan at step 2"),
        (lambda t: jnp.full(3, 0.1), TypeError, "(3,)"),
        (lambda t: "0.1", TypeError, "dtype"),
    ],
    ids=["negative-later", "inf", "nan", "vector", "string"],
)
@pytest.mark.parametrize("factory", list(SCHEDULE_FACTORIES))
def test_bad_schedule_is_refused_at_init(factory: str, schedule: Any, exc: type, shown: str) -> None:
    t = SCHEDULE_FACTORIES[factory](schedule)  # a callable: nothing to see yet
    with pytest.raises(exc) as info:
        t.init(PARAMS)
    assert_message(info.value, "schedule", shown)


def test_schedule_check_runs_under_jit_of_init() -> None:
    # jax.jit(opt.init) is common (sharded init); the grid is a constant, so
    # the check (and the update-side peak search) still sees values.
    good = decaytx.add_decoupled_decay(0.1, learning_rate=optax.cosine_decay_schedule(1e-2, 100))
    state = jax.jit(good.init)(PARAMS)
    assert state.count.dtype == jnp.int32
    bad = decaytx.add_l2_grad(optax.linear_schedule(0.1, -0.1, 100))
    with pytest.raises(ValueError, match="step 51"):
        jax.jit(bad.init)(PARAMS)


# --- decay_scaling (recipes) -------------------------------------------------------


@pytest.mark.skipif(
    not {"sgdw", "adamw"} & set(RECIPES), reason="recipes with decay_scaling not present"
)
@pytest.mark.parametrize("recipe", [r for r in ("sgdw", "adamw") if r in RECIPES])
@pytest.mark.parametrize("value", ["LR", "linear", "", None, 1, "lr "])
def test_bad_decay_scaling(recipe: str, value: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        getattr(decaytx, recipe)(1e-3, 1e-2, decay_scaling=value)
    msg = str(info.value)
    assert "decay_scaling" in msg and repr(value) in msg
    for choice in ("'lr'", "'schedule'", "'none'", "'corrected'"):
        assert choice in msg


# --- masks -----------------------------------------------------------------------

DECAY_FORMS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "add_l2_grad": lambda **k: decaytx.add_l2_grad(0.1, **k),
    "add_l1_subgrad": lambda **k: decaytx.add_l1_subgrad(0.1, **k),
    "add_elastic_net_grad": lambda **k: decaytx.add_elastic_net_grad(0.1, 0.1, **k),
    "add_decoupled_decay": lambda **k: decaytx.add_decoupled_decay(0.1, **{"learning_rate": None} | k),
    "prox_l1": lambda **k: decaytx.prox_l1(0.1, **{"learning_rate": None} | k),
    "prox_elastic_net": lambda **k: decaytx.prox_elastic_net(0.1, 0.1, **{"learning_rate": None} | k),
}
for _r, _mk in {
    "sgd_l2": lambda **k: decaytx.sgd_l2(0.1, 0.1, **k),
    "sgdw": lambda **k: decaytx.sgdw(0.1, 0.1, **k),
    "adam_l2": lambda **k: decaytx.adam_l2(1e-3, 0.1, **k),
    "adamw": lambda **k: decaytx.adamw(1e-3, 0.1, **k),
    "proximal_sgd": lambda **k: decaytx.proximal_sgd(0.1, 0.1, **k),
}.items():
    if _r in RECIPES:
        DECAY_FORMS[_r] = _mk


@pytest.mark.parametrize(
    "mask, missing, extra",
    [
        # The first node where mask and params differ, by key (0.2: not every leaf below it).
        ({"dense": {"kernel": True}, "head": False}, ["no entry for params keys ['bias'] at 'dense'"], []),
        ({"dense": True, "head": False, "embed": True}, [], ["its keys ['embed'] are not in params"]),
        ([True, False], ["a list where params has a dict"], []),
        (lambda p: {"w": True}, ["no entry for params keys ['dense', 'head']"], ["its keys ['w']"]),
    ],
    ids=["missing-leaf", "extra-key", "list-for-dict", "callable-wrong-tree"],
)
@pytest.mark.parametrize("form", list(DECAY_FORMS))
def test_mask_of_wrong_structure_names_the_paths(
    form: str, mask: Any, missing: list[str], extra: list[str]
) -> None:
    t = DECAY_FORMS[form](mask=mask)
    with pytest.raises(ValueError) as info:
        t.init(PARAMS)
    assert_message(info.value, "mask", *missing, *extra)


@pytest.mark.parametrize(
    "mask, shown",
    [
        ({"dense": 1, "head": 0}, "1"),
        ({"dense": "yes", "head": True}, "'yes'"),
        ("bias", "'bias'"),
        (True, "True"),  # what optax.inject_hyperparams makes of a callable mask
        (jnp.asarray(False), "False"),
        ({"dense": jnp.asarray([True]), "head": False}, "True"),
    ],
    ids=["int-leaves", "str-leaf", "string", "bare-bool", "bare-array", "non-scalar-array-leaf"],
)
@pytest.mark.parametrize("form", list(DECAY_FORMS))
def test_mask_of_wrong_type_is_refused_at_construction(form: str, mask: Any, shown: str) -> None:
    with pytest.raises(TypeError) as info:
        DECAY_FORMS[form](mask=mask)
    assert_message(info.value, "mask", shown)


@pytest.mark.parametrize("form", list(DECAY_FORMS))
def test_concrete_bool_array_mask_leaves_act_as_bools(form: str) -> None:
    # optax.masked accepts concrete 0-d bool arrays as mask leaves; so does decaytx.
    mask_tree = jax.tree.map(lambda _: False, PARAMS)
    first = jax.tree_util.tree_leaves(mask_tree)
    paths = jax.tree_util.tree_flatten(mask_tree)[1]
    as_bools = jax.tree_util.tree_unflatten(paths, [True] + first[1:])
    as_arrays = jax.tree_util.tree_unflatten(paths, [jnp.asarray(True)] + [jnp.asarray(b) for b in first[1:]])
    grads = jax.tree.map(jnp.zeros_like, PARAMS)  # Adam's first step: 0 stays 0, only decay moves
    none = jax.tree.map(lambda _: False, PARAMS)
    outs = []
    for mask in (as_bools, as_arrays, none):
        t = DECAY_FORMS[form](mask=mask)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", decaytx.DecayWarning)  # "selects none"
            outs.append(t.update(grads, t.init(PARAMS), PARAMS)[0])
    jax.tree.map(np.testing.assert_array_equal, outs[0], outs[1])
    assert not np.array_equal(outs[1]["dense"]["bias"], outs[2]["dense"]["bias"])  # decayed
    np.testing.assert_array_equal(outs[1]["head"], outs[2]["head"])  # masked out


def test_callable_mask_under_optax_inject_hyperparams_fails_loudly() -> None:
    # optax calls the mask with the step count and passes on a bool: the
    # decay would silently be off (optax #57, #1373). decaytx refuses it.
    t = optax.inject_hyperparams(decaytx.add_l2_grad)(0.1, mask=decaytx.masks.ndim_at_least(2))
    with pytest.raises(TypeError) as info:
        t.update(PARAMS, t.init(PARAMS), PARAMS)
    assert_message(info.value, "mask", "decaytx.inject_hyperparams")


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda: decaytx.masks.ndim_at_least(-1), "-1"),
        (lambda: decaytx.masks.ndim_at_least(2.0), "2.0"),
        (lambda: decaytx.masks.ndim_at_least(True), "True"),
        (lambda: decaytx.masks.exclude(), "exclude()"),
        (lambda: decaytx.masks.include(3), "3"),
        (lambda: decaytx.masks.exclude("("), "'('"),
    ],
)
def test_bad_mask_builder_arguments(call: Callable[[], Any], shown: str) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert_message(info.value, shown)


# --- anchors ---------------------------------------------------------------------

ANCHORED: dict[str, Callable[..., optax.GradientTransformation]] = {
    "add_l2_grad": lambda **k: decaytx.add_l2_grad(0.1, **k),
    "add_decoupled_decay": lambda **k: decaytx.add_decoupled_decay(0.1, **{"learning_rate": None} | k),
}


@pytest.mark.parametrize("form", list(ANCHORED))
def test_anchor_of_wrong_structure_names_the_paths(form: str) -> None:
    anchor = {"dense": PARAMS["dense"]}
    with pytest.raises(ValueError) as info:
        ANCHORED[form](anchor=anchor).init(PARAMS)
    assert_message(info.value, "anchor", "['head']")


@pytest.mark.parametrize("form", list(ANCHORED))
def test_anchor_of_wrong_shape_names_path_and_shapes(form: str) -> None:
    anchor = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(3)}, "head": jnp.ones(4)}
    with pytest.raises(ValueError) as info:
        ANCHORED[form](anchor=anchor).init(PARAMS)
    assert_message(info.value, "anchor", "['dense']['kernel']", "(3, 2)", "(2, 3)")


@pytest.mark.parametrize("form", list(ANCHORED))
@pytest.mark.parametrize("anchor, exc, shown", [("initial", ValueError, "'initial'"), ({}, ValueError, "{}")])
def test_bad_anchor_value(form: str, anchor: Any, exc: type, shown: str) -> None:
    with pytest.raises(exc) as info:
        ANCHORED[form](anchor=anchor).init(PARAMS)
    assert_message(info.value, "anchor", shown)


def test_penalty_anchor_of_wrong_structure() -> None:
    with pytest.raises(ValueError) as info:
        decaytx.l2_penalty(PARAMS, 0.1, anchor={"head": jnp.ones(4)})
    assert_message(info.value, "anchor", "['dense']['kernel']")


@pytest.mark.parametrize("value", ["yes", 1, 0.5, None])
def test_cautious_must_be_a_bool(value: Any) -> None:
    with pytest.raises(TypeError) as info:
        decaytx.add_decoupled_decay(0.1, cautious=value, learning_rate=None)
    assert_message(info.value, "cautious", repr(value))


# --- update without params, wrong trees, non-array leaves --------------------------


@pytest.mark.parametrize("form", list(DECAY_FORMS))
def test_update_without_params(form: str) -> None:
    t = DECAY_FORMS[form]()
    with pytest.raises(ValueError) as info:
        t.update(PARAMS, t.init(PARAMS))
    assert_message(info.value, "without params", "update(updates, state, params)")


@pytest.mark.parametrize("form", list(DECAY_FORMS))
def test_update_without_params_under_jit(form: str) -> None:
    t = DECAY_FORMS[form]()
    with pytest.raises(ValueError, match="without params"):
        jax.jit(t.update)(PARAMS, t.init(PARAMS))


@pytest.mark.parametrize("form", list(DECAY_FORMS))
def test_updates_of_another_structure_name_the_paths(form: str) -> None:
    t = DECAY_FORMS[form]()
    with pytest.raises(ValueError) as info:
        t.update({"dense": PARAMS["dense"]}, t.init(PARAMS), PARAMS)
    # A recipe's optax stages see the trees first and raise optax's (jax's)
    # structure error, which names the key ('head') but not as a path.
    assert ("['head']" if form not in RECIPES else "head") in str(info.value)


@pytest.mark.parametrize("form", [f for f in DECAY_FORMS if f not in RECIPES])
@pytest.mark.parametrize("u_shape, p_shape", [((3,), (1,)), ((2, 1), (2,)), ((3,), (2,))])
def test_updates_of_another_shape_are_refused(form: str, u_shape: tuple, p_shape: tuple) -> None:
    # (3,) + (1,) and (2, 1) + (2,) broadcast: without the check the update
    # would silently change shape.
    params = {"w": jnp.ones(p_shape)}
    t = DECAY_FORMS[form]()
    with pytest.raises(ValueError) as info:
        t.update({"w": jnp.ones(u_shape)}, t.init(params), params)
    assert_message(info.value, "['w']", str(u_shape), str(p_shape))


NON_ARRAYS = [(1.5, "1.5"), ("kernel", "'kernel'"), (object(), "object"), (2j, "2j")]


@pytest.mark.parametrize("leaf, shown", NON_ARRAYS, ids=["float", "str", "object", "complex"])
@pytest.mark.parametrize("form", list(DECAY_FORMS))
def test_non_array_params_leaf_is_refused(form: str, leaf: Any, shown: str) -> None:
    params = {"w": jnp.ones(2), "extra": leaf}
    if form in RECIPES:
        # The optax stages of a recipe run first: they raise their own error
        # (or, for a Python number, build a state), and the decay stage then
        # refuses the leaf with decaytx's message at the latest at update.
        with pytest.raises(TypeError) as info:
            t = DECAY_FORMS[form]()
            t.update(params, t.init(params), params)
        return
    with pytest.raises(TypeError) as info:
        DECAY_FORMS[form]().init(params)
    assert_message(info.value, "['extra']", shown, "jnp.asarray")


@pytest.mark.parametrize("leaf, shown", NON_ARRAYS, ids=["float", "str", "object", "complex"])
@pytest.mark.parametrize(
    "penalty",
    [
        lambda p: decaytx.l2_penalty(p, 0.1),
        lambda p: decaytx.l1_penalty(p, 0.1),
        lambda p: decaytx.elastic_net_penalty(p, 0.1, 0.1),
    ],
    ids=["l2", "l1", "elastic_net"],
)
def test_non_array_params_leaf_in_penalty(penalty: Callable[[Any], Any], leaf: Any, shown: str) -> None:
    with pytest.raises(TypeError) as info:
        penalty({"w": jnp.ones(2), "extra": leaf})
    assert_message(info.value, "['extra']", shown)


@pytest.mark.parametrize("form", [f for f in DECAY_FORMS if f not in RECIPES])
def test_python_int_and_bool_leaves_are_left_alone(form: str) -> None:
    # Integer leaves are never decayed (DESIGN 3.3); a Python int is one too,
    # the same with and without jit.
    params = {"w": jnp.ones(2), "step": 7, "flag": True}
    t = DECAY_FORMS[form]()
    upd, _ = t.update({"w": jnp.zeros(2), "step": 0, "flag": False}, t.init(params), params)
    assert upd["step"] == 0 and upd["flag"] is False


# --- what cannot be checked: traced values --------------------------------------


def test_traced_negative_coefficient_is_not_checked_under_jit() -> None:
    """Documented limitation (docs/robustness.md): a value set in
    ``inject_hyperparams`` state is a tracer under jit and cannot be checked;
    outside jit the same value raises."""
    t = decaytx.inject_hyperparams(decaytx.add_l2_grad)(0.1)
    state = t.init(PARAMS)
    state.hyperparams["weight_decay"] = jnp.asarray(-0.5)
    zeros = jax.tree.map(jnp.zeros_like, PARAMS)
    with pytest.raises(ValueError, match="negative"):
        t.update(zeros, state, PARAMS)
    upd, _ = jax.jit(t.update)(zeros, state, PARAMS)
    np.testing.assert_allclose(upd["head"], -0.5 * np.ones(4))  # g + lambda*theta, unchecked


def test_messages_are_not_truncated_reprs() -> None:
    # A sanity check on the helper: the fix words really are words.
    assert all(re.fullmatch(r"[a-z .]+", w) for w in FIX_WORDS)


# --- recipes' learning_rate --------------------------------------------------------

# Every recipe checks its learning_rate as a coefficient (None included: a
# recipe's learning rate is never optional).


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize(
    "value, exc, shown",
    [(-1e-3, ValueError, "-0.001"), (math.nan, ValueError, "nan"), ("0.1", TypeError, "'0.1'"),
     (True, TypeError, "True"), (None, TypeError, "None")],
    ids=["negative", "nan", "string", "bool", "none"],
)
def test_recipe_learning_rate(recipe: str, value: Any, exc: type, shown: str) -> None:
    args = (value, 0.1)
    with pytest.raises(exc) as info:
        getattr(decaytx, recipe)(*args)
    assert_message(info.value, "learning_rate", shown)


# --- a mask that selects nothing -----------------------------------------------------

FLAX_LIKE = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "step": jnp.zeros((), jnp.int32)}


@pytest.mark.parametrize("form", list(DECAY_FORMS))
@pytest.mark.parametrize(
    "mask",
    [
        decaytx.masks.include("weight"),  # PyTorch's name; flax calls it kernel
        {"Dense_0": False, "step": True},  # only the integer leaf
        lambda p: jax.tree.map(lambda _: False, p),
    ],
    ids=["include-typo", "int-only", "all-false"],
)
def test_mask_selecting_no_float_leaf_warns(form: str, mask: Any) -> None:
    t = DECAY_FORMS[form](mask=mask)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.init(FLAX_LIKE)
        t.init(FLAX_LIKE)  # once
    msgs = [str(w.message) for w in caught if "selects none" in str(w.message)]
    assert len(msgs) == 1, msgs
    assert "mask=" in msgs[0] and "decays nothing" in msgs[0] and "leave the transform out" in msgs[0]


@pytest.mark.parametrize("form", [f for f in DECAY_FORMS if f not in RECIPES])
def test_mask_selecting_some_float_leaf_is_quiet(form: str) -> None:
    DECAY_FORMS[form](mask=decaytx.masks.include("kernel")).init(FLAX_LIKE)  # warnings are errors
    DECAY_FORMS[form]().init({"step": jnp.zeros((), jnp.int32)})  # no mask given: nothing to warn
