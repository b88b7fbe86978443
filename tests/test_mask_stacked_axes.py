"""Shape rules on scan-over-layers params: ``stacked_axes=`` ignores the layer axis.

A model scanned over L layers keeps each layer's bias and LayerNorm scale as
one (L, d) leaf, which ``matrices()`` and ``ndim_at_least(2)`` take for a
matrix. With ``stacked_axes=1`` a stacked leaf is decided as one of its layers
would be: the reference is the rule applied to ``leaf[0]``.
"""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decaytx
from decaytx import masks

flax_linen = pytest.importorskip("flax.linen")


def scanned_params():
    nn = flax_linen

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            return x + nn.Dense(4)(nn.LayerNorm()(x)), None

    class Model(nn.Module):
        @nn.compact
        def __call__(self, tok):
            x = nn.Embed(10, 4)(tok)
            x, _ = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                           length=3)()(x, None)
            return nn.Dense(2)(nn.LayerNorm()(x))

    return Model().init(jax.random.key(0), jnp.zeros((2,), jnp.int32))["params"]


def flat(tree):
    return {masks.path_of(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def per_layer_reference(rule, params):
    """``rule`` decided on one layer of every leaf (the leaf minus its first axis)."""
    return {path: bool(rule(x[0])) for path, x in flat(params).items()}


STACKED = {"matrices": lambda: masks.matrices(stacked_axes=1),
           "ndim_at_least": lambda: masks.ndim_at_least(2, stacked_axes=1)}
ONE_LAYER = {"matrices": lambda x: sum(d > 1 for d in x.shape) >= 2,
             "ndim_at_least": lambda x: x.ndim >= 2}


@pytest.mark.parametrize("rule", STACKED)
def test_stacked_biases_and_norm_scales_are_not_decayed(rule):
    stack = scanned_params()["ScanBlock_0"]
    got = flat(STACKED[rule]()(stack))
    assert got == per_layer_reference(ONE_LAYER[rule], stack)
    assert got == {"Dense_0/kernel": True, "Dense_0/bias": False,
                   "LayerNorm_0/scale": False, "LayerNorm_0/bias": False}
    # Without stacked_axes the (3, 4) biases and scales pass for matrices.
    unstacked = {"matrices": masks.matrices(), "ndim_at_least": masks.ndim_at_least(2)}[rule]
    assert flat(unstacked(stack))["LayerNorm_0/scale"] is True


def test_a_partly_stacked_model_combines_the_rules_by_path():
    params = scanned_params()
    scanned = masks.include("^ScanBlock_0/")
    mask = (scanned & masks.matrices(stacked_axes=1)) | (~scanned & masks.matrices())
    expected = {"Dense_0/kernel", "Embed_0/embedding", "ScanBlock_0/Dense_0/kernel"}
    assert {p for p, v in flat(mask(params)).items() if v} == expected
    # Through a recipe: only those leaves move under a zero gradient (AdamW's
    # first step with g = 0 is exactly -eta*lambda*theta on decayed leaves).
    opt = decaytx.adamw(0.1, 0.5, mask=mask)
    u, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    for path, x in flat(u).items():
        want = -0.1 * 0.5 * np.asarray(flat(params)[path]) if path in expected else 0.0
        np.testing.assert_allclose(np.asarray(x), want, rtol=1e-6, atol=0, err_msg=path)


def test_leaves_with_fewer_axes_than_stacked_are_vectors():
    params = {"s": jnp.ones(()), "v": jnp.ones(3), "m": jnp.ones((2, 3, 4))}
    assert masks.matrices(stacked_axes=2)(params) == {"s": False, "v": False, "m": False}
    assert masks.ndim_at_least(1, stacked_axes=2)(params) == {"s": False, "v": False, "m": True}
    assert masks.ndim_at_least(0, stacked_axes=1)(params) == {"s": False, "v": True, "m": True}


def test_stacked_rules_print_compare_and_pickle():
    m = masks.matrices(stacked_axes=1)
    assert repr(m) == "decaytx.masks.matrices(stacked_axes=1)"
    assert repr(masks.ndim_at_least(2, stacked_axes=1)) == (
        "decaytx.masks.ndim_at_least(2, stacked_axes=1)")
    assert repr(masks.matrices()) == "decaytx.masks.matrices()"  # unchanged default
    assert m != masks.matrices() and m == masks.matrices(stacked_axes=1)
    assert pickle.loads(pickle.dumps(m)) == m


@pytest.mark.parametrize("bad", [-1, 1.0, True, "1", None])
def test_bad_stacked_axes_are_refused(bad):
    for make in (lambda: masks.matrices(stacked_axes=bad),
                 lambda: masks.ndim_at_least(2, stacked_axes=bad)):
        with pytest.raises(ValueError, match=r"stacked_axes=.*non-negative int.*e\.g\. 1"):
            make()
