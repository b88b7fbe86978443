"""Masks: every accepted kind, on every form, against a NumPy reference."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks


def make_params():
    rng = np.random.default_rng(1)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    return {
        "dense": {"kernel": f(3, 4), "bias": f(4)},
        "norm": {"scale": f(4)},
        "conv": {"kernel": f(2, 2, 3)},
    }


# Which leaves each mask kind decays; paths are jax.tree_util.keystr strings.
DECAYED_MATRICES = {"['dense']['kernel']", "['conv']['kernel']"}


def decayed_paths(tx, params):
    """Paths whose update differs from the incoming zero update."""
    zeros = jax.tree.map(jnp.zeros_like, params)
    u, _ = tx.update(zeros, tx.init(params), params)
    leaves = jax.tree_util.tree_flatten_with_path(u)[0]
    return {jax.tree_util.keystr(p) for p, v in leaves if np.any(np.asarray(v) != 0)}


FORMS = {
    "l2": lambda mask: decaytx.add_l2_grad(0.1, mask=mask),
    "l2_anchor": lambda mask: decaytx.add_l2_grad(
        0.1, mask=mask, anchor=jax.tree.map(jnp.zeros_like, make_params())
    ),
    "l1": lambda mask: decaytx.add_l1_subgrad(0.1, mask=mask),
    "elastic": lambda mask: decaytx.add_elastic_net_grad(0.1, 0.1, mask=mask),
    "decoupled": lambda mask: decaytx.add_decoupled_decay(0.1, mask=mask, learning_rate=None),
    "decoupled_cautious": lambda mask: decaytx.add_decoupled_decay(0.1, mask=mask, cautious=True, learning_rate=None),
    "prox_l1": lambda mask: decaytx.prox_l1(0.05, mask=mask, learning_rate=None),
    "prox_elastic_net": lambda mask: decaytx.prox_elastic_net(0.05, 0.1, mask=mask, learning_rate=None),
}

MASKS = {
    "pytree": {
        "dense": {"kernel": True, "bias": False},
        "norm": {"scale": False},
        "conv": {"kernel": True},
    },
    "prefix": {"dense": {"kernel": True, "bias": False}, "norm": False, "conv": True},
    "callable": lambda p: jax.tree.map(lambda x: x.ndim >= 2, p),
    "ndim_at_least": masks.ndim_at_least(2),
    "exclude": masks.exclude("bias$", "^norm/"),
    "include": masks.include("kernel"),
}


@pytest.mark.parametrize("mask_kind", list(MASKS))
@pytest.mark.parametrize("form", list(FORMS))
def test_every_mask_kind_on_every_form(form, mask_kind):
    params = make_params()
    assert decayed_paths(FORMS[form](MASKS[mask_kind]), params) == DECAYED_MATRICES


@pytest.mark.parametrize("form", list(FORMS))
def test_no_mask_decays_everything_and_masked_leaves_are_the_same_object(form):
    params = make_params()
    all_paths = {
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    assert decayed_paths(FORMS[form](None), params) == all_paths
    tx = FORMS[form](masks.ndim_at_least(2))
    u, _ = tx.update(params, tx.init(params), params)
    assert u["dense"]["bias"] is params["dense"]["bias"]


def test_masked_values_match_numpy():
    params = make_params()
    g = jax.tree.map(jnp.ones_like, params)
    tx = decaytx.add_decoupled_decay(0.2, learning_rate=0.5, mask=masks.exclude("bias", "scale"))
    u, _ = jax.jit(tx.update)(g, tx.init(params), params)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        key = jax.tree_util.keystr(path)
        got = np.asarray(u[path[0].key][path[1].key])
        p = np.asarray(leaf, np.float64)
        ref = 1 - 0.1 * p if re.search("kernel", key) else np.ones_like(p)
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_ndim_at_least():
    params = {"s": jnp.ones(()), "v": jnp.ones(3), "m": jnp.ones((2, 2)), "t": jnp.ones((1, 2, 3))}
    assert masks.ndim_at_least(0)(params) == {"s": True, "v": True, "m": True, "t": True}
    assert masks.ndim_at_least(2)(params) == {"s": False, "v": False, "m": True, "t": True}
    assert masks.ndim_at_least(3)(params) == {"s": False, "v": False, "m": False, "t": True}
    assert "ndim_at_least(2)" in repr(masks.ndim_at_least(2))


def test_exclude_and_include_match_slash_paths_with_re_search():
    params = {
        "layers": [{"w": jnp.ones(2), "b": jnp.ones(2)}, {"w": jnp.ones(2), "b": jnp.ones(2)}]
    }
    # "/"-joined paths: "layers/0/w", ...
    assert masks.include("/1/")(params) == {
        "layers": [{"w": False, "b": False}, {"w": True, "b": True}]
    }
    assert masks.exclude("b$", "/0/")(params) == {
        "layers": [{"w": False, "b": False}, {"w": True, "b": False}]
    }
    # Complements of each other for the same patterns.
    inc, exc = masks.include("w")(params), masks.exclude("w")(params)
    assert jax.tree.map(lambda a, b: a != b, inc, exc) == jax.tree.map(lambda _: True, params)


def test_masks_work_on_attribute_paths():
    from typing import NamedTuple

    class Layer(NamedTuple):
        weight: jax.Array
        bias: jax.Array

    params = Layer(jnp.ones((2, 2)), jnp.ones(2))
    assert masks.exclude("^bias$")(params) == Layer(True, False)
    tx = decaytx.add_l2_grad(1.0, mask=masks.include("weight"))
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(u.weight), np.ones((2, 2)))
    np.testing.assert_array_equal(np.asarray(u.bias), np.zeros(2))


def test_decaytx_masks_work_with_optax_masked():
    params = make_params()
    tx = optax.masked(optax.add_decayed_weights(0.1), masks.ndim_at_least(2))
    assert decayed_paths(tx, params) == DECAYED_MATRICES


@pytest.mark.parametrize(
    "bad, match",
    [
        # The missing key is named, not the keys that are present.
        ({"dense": {"kernel": True}, "norm": False, "conv": True}, r"no entry for params keys \['bias'\] at 'dense'"),
        ({"dense": True, "norm": False, "conv": True, "extra": True}, r"keys \['extra'\] .*not in params"),
    ],
    ids=["missing", "extra"],
)
def test_mask_structure_mismatch_names_the_paths(bad, match):
    params = make_params()
    tx = decaytx.add_decoupled_decay(0.1, mask=bad, learning_rate=None)
    with pytest.raises(ValueError, match="mask") as e:
        tx.init(params)
    assert re.search(match, str(e.value))


def test_mask_with_non_bool_leaves_is_refused():
    with pytest.raises(TypeError, match="mask"):
        decaytx.add_l2_grad(0.1, mask={"w": 1.0})


@pytest.mark.parametrize("bad", [(), ("(",), (3,)])
def test_bad_patterns_are_refused(bad):
    with pytest.raises((ValueError, TypeError), match="masks.(include|exclude)"):
        masks.include(*bad)
    with pytest.raises((ValueError, TypeError), match="masks.(include|exclude)"):
        masks.exclude(*bad)


@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_bad_ndim_is_refused(n):
    with pytest.raises(ValueError, match="ndim_at_least"):
        masks.ndim_at_least(n)


@pytest.mark.parametrize(
    "mask",
    [
        masks.ndim_at_least(2),
        masks.include("w"),
        masks.exclude("b"),
        lambda p: jax.tree.map(lambda x: x.ndim >= 2, p),
        {"w": True, "n": None, "m": optax.MaskedNode(), "i": False, "b": False},
    ],
    ids=["ndim_at_least", "include", "exclude", "callable", "pytree"],
)
@pytest.mark.parametrize(
    "make",
    [
        lambda m: decaytx.add_l2_grad(0.1, mask=m, anchor="init"),
        lambda m: decaytx.add_decoupled_decay(0.1, mask=m, learning_rate=None),
        lambda m: decaytx.prox_l1(0.1, mask=m, learning_rate=None),
    ],
    ids=["l2_anchor", "decoupled", "prox_l1"],
)
def test_masks_with_none_maskednode_and_int_leaves(make, mask):
    params = {
        "w": jnp.ones((2, 2)),
        "n": None,
        "m": optax.MaskedNode(),
        "i": jnp.arange(2),
        "b": jnp.ones(2),
    }
    tx = make(mask)
    state = tx.init(params)
    moved = dict(params, w=2 * params["w"], b=2 * params["b"])
    u, _ = jax.jit(tx.update)(params, state, moved)
    assert u["n"] is None and isinstance(u["m"], optax.MaskedNode)
    np.testing.assert_array_equal(np.asarray(u["b"]), 1.0)
    np.testing.assert_array_equal(np.asarray(u["i"]), [0, 1])
    assert not np.allclose(np.asarray(u["w"]), 1.0)


# --------------------------------------------------------------------------
# 0.2: combinators, pickling, matrices(), framework paths, the uncalled factory.
# --------------------------------------------------------------------------

COMBO_PARAMS = {
    "embed": jnp.ones((5, 3)),
    "dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
    "conv": {"kernel": jnp.ones((2, 2, 3)), "bias": jnp.ones((3, 1, 1))},
    "norm": {"scale": jnp.ones(4)},
}

# mask, its repr, and the bools written by hand for COMBO_PARAMS
COMBOS = {
    "ndim_at_least": (
        masks.ndim_at_least(2), "decaytx.masks.ndim_at_least(2)",
        {"embed": True, "dense": {"kernel": True, "bias": False},
         "conv": {"kernel": True, "bias": True}, "norm": {"scale": False}},
    ),
    "matrices": (
        masks.matrices(), "decaytx.masks.matrices()",
        {"embed": True, "dense": {"kernel": True, "bias": False},
         "conv": {"kernel": True, "bias": False}, "norm": {"scale": False}},
    ),
    "include": (
        masks.include("kernel$", "^embed"), "decaytx.masks.include('kernel$', '^embed')",
        {"embed": True, "dense": {"kernel": True, "bias": False},
         "conv": {"kernel": True, "bias": False}, "norm": {"scale": False}},
    ),
    "exclude": (
        masks.exclude("bias$"), "decaytx.masks.exclude('bias$')",
        {"embed": True, "dense": {"kernel": True, "bias": False},
         "conv": {"kernel": True, "bias": False}, "norm": {"scale": True}},
    ),
    "and_not": (
        masks.ndim_at_least(2) & ~masks.include("embed"),
        "decaytx.masks.(ndim_at_least(2) & ~include('embed'))",
        {"embed": False, "dense": {"kernel": True, "bias": False},
         "conv": {"kernel": True, "bias": True}, "norm": {"scale": False}},
    ),
    "or": (
        masks.matrices() | masks.include("^norm/"),
        "decaytx.masks.(matrices() | include('^norm/'))",
        {"embed": True, "dense": {"kernel": True, "bias": False},
         "conv": {"kernel": True, "bias": False}, "norm": {"scale": True}},
    ),
    "not": (
        ~masks.matrices(), "decaytx.masks.~matrices()",
        {"embed": False, "dense": {"kernel": False, "bias": True},
         "conv": {"kernel": False, "bias": True}, "norm": {"scale": True}},
    ),
    "nested": (
        (masks.ndim_at_least(2) | masks.include("scale")) & ~(masks.include("conv/") & masks.exclude("kernel")),
        "decaytx.masks.((ndim_at_least(2) | include('scale')) & ~(include('conv/') & exclude('kernel')))",
        {"embed": True, "dense": {"kernel": True, "bias": False},
         "conv": {"kernel": True, "bias": False}, "norm": {"scale": True}},
    ),
}


@pytest.mark.parametrize("name", list(COMBOS))
def test_masks_and_combinators_against_hand_written_bools(name):
    mask, text, expected = COMBOS[name]
    assert mask(COMBO_PARAMS) == expected
    assert repr(mask) == text


@pytest.mark.parametrize("name", list(COMBOS))
def test_masks_pickle_round_trip(name):
    import pickle

    mask, text, expected = COMBOS[name]
    back = pickle.loads(pickle.dumps(mask))
    assert back is not mask and back == mask and hash(back) == hash(mask)
    assert repr(back) == text
    assert back(COMBO_PARAMS) == expected
    # and it drives a transform exactly as the original does
    assert decayed_paths(decaytx.add_l2_grad(0.1, mask=back), COMBO_PARAMS) == decayed_paths(
        decaytx.add_l2_grad(0.1, mask=mask), COMBO_PARAMS)


def test_combinators_refuse_non_masks():
    with pytest.raises(TypeError, match=r"masks: & combines decaytx masks"):
        masks.matrices() & (lambda p: p)
    with pytest.raises(TypeError, match=r"masks: \| combines decaytx masks"):
        masks.matrices() | {"w": True}


def test_matrices_on_equinox_conv1d_bias_is_not_decayed():
    eqx = pytest.importorskip("equinox")
    conv = eqx.nn.Conv1d(3, 4, 2, key=jax.random.PRNGKey(0))
    params = eqx.filter(conv, eqx.is_array)
    assert params.bias.shape == (4, 1)  # Equinox stores conv biases with a size-1 axis
    got = masks.matrices()(params)
    assert (got.weight, got.bias) == (True, False)
    # ndim_at_least(2) decays that bias: the reason matrices() is the usual choice
    got = masks.ndim_at_least(2)(params)
    assert (got.weight, got.bias) == (True, True)
    tx = decaytx.add_decoupled_decay(0.1, learning_rate=None, mask=masks.matrices())
    zeros = jax.tree.map(jnp.zeros_like, params)
    u, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(u.bias), 0.0)
    np.testing.assert_allclose(np.asarray(u.weight), -0.1 * np.asarray(params.weight), rtol=1e-6)


def test_matrices_on_flax_linen_and_nnx_params():
    nnx = pytest.importorskip("flax.nnx")
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3,))(x)
            return nn.Dense(2)(nn.LayerNorm()(x))

    linen = Net().init(jax.random.PRNGKey(0), jnp.ones((1, 5, 3)))["params"]
    assert masks.matrices()(linen) == {
        "Conv_0": {"kernel": True, "bias": False},
        "LayerNorm_0": {"scale": False, "bias": False},
        "Dense_0": {"kernel": True, "bias": False},
    }

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(6, 3, rngs=rngs)
            self.linear = nnx.Linear(3, 4, rngs=rngs)
            self.norm = nnx.LayerNorm(4, rngs=rngs)

    state = nnx.state(Model(nnx.Rngs(0)), nnx.Param)
    got = {masks.path_of(k): v for k, v in jax.tree_util.tree_flatten_with_path(masks.matrices()(state))[0]}
    assert got == {"embed/embedding": True, "linear/kernel": True, "linear/bias": False,
                   "norm/scale": False, "norm/bias": False}


def test_nnx_init_on_state_and_update_on_pure_arrays_see_the_same_paths():
    """nnx.Optimizer calls init on nnx.state(model) (Variables: key paths end in
    .value) and update on pure arrays. Masks see the same "/" paths in both, so
    a "$"-anchored pattern selects the same leaves. A fresh transform (as after
    restoring a checkpoint) decides its plan again at update, from the pure
    arrays, and checks it against the state made at init."""
    nnx = pytest.importorskip("flax.nnx")

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(3, 4, rngs=rngs)
            self.norm = nnx.LayerNorm(4, rngs=rngs)

    seen = []
    rule = masks.include("kernel$")

    def recording(params):
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        seen.append({masks.path_of(k): bool(rule.leaf(masks.path_of(k), x)) for k, x in flat})
        return rule(params)

    def make(anchor=None):
        return decaytx.add_decoupled_decay(0.5, learning_rate=None, mask=recording, anchor=anchor)

    model = Model(nnx.Rngs(0))
    variables = nnx.state(model, nnx.Param)
    assert any(isinstance(k[-1], jax.tree_util.GetAttrKey) and k[-1].name == "value"
               for k, _ in jax.tree_util.tree_flatten_with_path(variables)[0])
    pure = nnx.to_pure_dict(variables)
    state = make().init(variables)
    zeros = jax.tree.map(jnp.zeros_like, pure)
    moved = jax.tree.map(lambda x: x + 1.0, pure)
    u, _ = make().update(zeros, state, moved)
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0] == {"linear/kernel": True, "linear/bias": False, "norm/scale": False, "norm/bias": False}
    np.testing.assert_allclose(np.asarray(u["linear"]["kernel"]), -0.5 * np.asarray(moved["linear"]["kernel"]),
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(u["linear"]["bias"]), 0.0)

    # end to end through nnx.Optimizer, decaying toward the init values
    opt = nnx.Optimizer(model, make(anchor="init"), wrt=nnx.Param)
    kernel, bias = np.asarray(model.linear.kernel[...]), np.asarray(model.linear.bias[...])
    model.linear.kernel[...] = kernel + 1.0
    opt.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
    np.testing.assert_allclose(np.asarray(model.linear.kernel[...]), kernel + 0.5, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(model.linear.bias[...]), bias)


@pytest.mark.parametrize(
    ("factory", "meant"),
    [(masks.ndim_at_least, "masks.ndim_at_least(2)"), (masks.matrices, "masks.matrices()"),
     (masks.include, "masks.include('kernel$')"), (masks.exclude, "masks.exclude('bias$')")],
    ids=["ndim_at_least", "matrices", "include", "exclude"],
)
def test_uncalled_mask_factory_gets_a_one_line_did_you_mean(factory, meant):
    params = make_params()
    with pytest.raises(TypeError) as e:
        decaytx.add_decoupled_decay(0.1, learning_rate=None, mask=factory).init(params)
    msg = str(e.value)
    assert f"did you mean mask={meant}?" in msg
    assert "\n" not in msg and "Array" not in msg and len(msg) < 200
