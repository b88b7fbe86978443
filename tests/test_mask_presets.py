"""``masks.preset(name)``: the no-decay rules of nanoGPT, Hugging Face Trainer and timm.

Each preset is checked against its code base's rule written out by hand on a
small model of that family (the decayed paths listed literally, and the rule
as the original code writes it, on the torch-style dotted name).
"""

from __future__ import annotations

import pickle
import re

import jax
import jax.numpy as jnp
import pytest

import decaytx
from decaytx import masks


def ones(*shape):
    return jnp.ones(shape)


def decayed(mask, params) -> set[str]:
    return {masks.path_of(k) for k, v in jax.tree_util.tree_flatten_with_path(mask(params))[0] if v}


def paths(params) -> dict[str, jax.Array]:
    return {masks.path_of(k): x for k, x in jax.tree_util.tree_flatten_with_path(params)[0]}


# nanoGPT's GPT (model.py), its parameter names as a plain dict.
GPT = {
    "transformer": {
        "wte": {"weight": ones(16, 8)}, "wpe": {"weight": ones(4, 8)},
        "h": [{"ln_1": {"weight": ones(8), "bias": ones(8)},
               "attn": {"c_attn": {"weight": ones(24, 8), "bias": ones(24)},
                        "c_proj": {"weight": ones(8, 8), "bias": ones(8)}},
               "ln_2": {"weight": ones(8), "bias": ones(8)},
               "mlp": {"c_fc": {"weight": ones(32, 8), "bias": ones(32)}}}],
        "ln_f": {"weight": ones(8)},
    },
}


def test_nanogpt_decays_what_configure_optimizers_decays():
    # model.py: decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
    by_hand = {p for p, x in paths(GPT).items() if x.ndim >= 2}
    assert decayed(masks.preset("nanogpt"), GPT) == by_hand == {
        "transformer/wte/weight", "transformer/wpe/weight", "transformer/h/0/attn/c_attn/weight",
        "transformer/h/0/attn/c_proj/weight", "transformer/h/0/mlp/c_fc/weight"}
    assert masks.preset("nanogpt")(GPT) == masks.ndim_at_least(2)(GPT)


# A BERT encoder as Flax Linen names it (FlaxBertModel) and a Llama decoder
# layer (LayerNorm and RMSNorm spelt the ways Hugging Face models spell them).
BERT = {
    "embeddings": {"word_embeddings": {"embedding": ones(16, 8)},
                   "LayerNorm": {"scale": ones(8), "bias": ones(8)}},
    "encoder": {"layer": {"0": {
        "attention": {"self": {"query": {"kernel": ones(8, 8), "bias": ones(8)}},
                      "output": {"dense": {"kernel": ones(8, 8), "bias": ones(8)},
                                 "LayerNorm": {"scale": ones(8), "bias": ones(8)}}},
    }}},
    "pooler": {"dense": {"kernel": ones(8, 8), "bias": ones(8)}},
}
LLAMA = {
    "embed_tokens": {"weight": ones(16, 8)},
    "layers": [{"self_attn": {"q_proj": {"weight": ones(8, 8)}, "q_norm": {"weight": ones(8)}},
                "mlp": {"gate_proj": {"weight": ones(16, 8)}},
                "input_layernorm": {"weight": ones(8)},
                "post_attention_layernorm": {"weight": ones(8)},
                "ffn_norm": {"weight": ones(8)}, "norm_out": {"weight": ones(8)}}],
    "norm": {"weight": ones(8)},
    "T5LayerNorm_0": {"scale": ones(8)}, "my_rmsnorm": {"scale": ones(8)},
    "lm_head": {"weight": ones(16, 8)},
}


def hf_rule(dotted: str) -> bool:
    """Trainer.get_decay_parameter_names on a torch name (transformers' own regexes)."""
    forbidden = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    return not any(re.search(p, dotted.lower()) for p in forbidden)


@pytest.mark.parametrize("model, by_hand", [
    (BERT, {"embeddings/word_embeddings/embedding", "encoder/layer/0/attention/self/query/kernel",
            "encoder/layer/0/attention/output/dense/kernel", "pooler/dense/kernel"}),
    (LLAMA, {"embed_tokens/weight", "layers/0/self_attn/q_proj/weight",
             "layers/0/mlp/gate_proj/weight", "layers/0/norm_out/weight", "lm_head/weight"}),
], ids=["bert", "llama"])
def test_transformers_spares_biases_and_norm_weights_by_name(model, by_hand):
    got = decayed(masks.preset("transformers"), model)
    assert got == by_hand
    assert got == {p for p in paths(model) if hf_rule(p.replace("/", "."))}


# A small ViT/ResNet mix as Flax names it, with timm's usual extras.
TIMM = {
    "patch_embed": {"proj": {"kernel": ones(4, 4, 3, 8), "bias": ones(8)}},
    "cls_token": ones(1, 1, 8), "pos_embed": ones(1, 5, 8),
    "blocks": [{"norm1": {"scale": ones(8), "bias": ones(8)},
                "attn": {"qkv": {"kernel": ones(8, 24), "bias": ones(24)}},
                "ls1": {"gamma": ones(8)}}],
    "bn": {"scale": ones(8), "bias": ones(8)},
    "conv_bias_stored_2d": {"bias": ones(8, 1)},  # a 2-D bias: spared by name
    "head": {"kernel": ones(8, 10), "bias": ones(10)},
}


def test_timm_spares_vectors_and_biases():
    # timm/optim/_param_groups.py: no decay if param.ndim <= 1 or name.endswith(".bias")
    by_hand = {p for p, x in paths(TIMM).items()
               if not (x.ndim <= 1 or p.replace("/", ".").endswith(".bias"))}
    assert decayed(masks.preset("timm"), TIMM) == by_hand == {
        "patch_embed/proj/kernel", "cls_token", "pos_embed", "blocks/0/attn/qkv/kernel",
        "head/kernel"}


def test_presets_work_as_masks_of_a_recipe_and_take_stacked_axes():
    opt = decaytx.adamw(0.1, 0.5, mask=masks.preset("timm"))
    u, _ = opt.update(jax.tree.map(jnp.zeros_like, TIMM), opt.init(TIMM), TIMM)
    moved = {p for p, x in paths(u).items() if bool(jnp.any(x != 0))}
    assert moved == decayed(masks.preset("timm"), TIMM)
    stacked = {"w": ones(3, 4, 4), "scale": ones(3, 4)}  # 3 layers
    assert masks.preset("nanogpt", stacked_axes=1)(stacked) == {"w": True, "scale": False}
    assert masks.preset("timm", stacked_axes=1)(stacked) == {"w": True, "scale": False}


def test_presets_combine_print_compare_and_pickle():
    m = masks.preset("transformers") & ~masks.include("ln_")
    assert repr(masks.preset("timm")) == "decaytx.masks.preset('timm')"
    assert pickle.loads(pickle.dumps(m)) == m
    assert masks.preset("timm") != masks.preset("nanogpt")
    gpt2 = {"h": {"ln_1": {"weight": ones(8)}, "attn": {"c_attn": {"weight": ones(8, 24)}}}}
    assert decayed(m, gpt2) == {"h/attn/c_attn/weight"}


@pytest.mark.parametrize("bad", ["nanoGPT", "hf", "", None, 2])
def test_an_unknown_preset_lists_the_three(bad):
    with pytest.raises(ValueError) as err:
        masks.preset(bad)
    msg = str(err.value)
    assert f"preset({bad!r})" in msg
    assert "'nanogpt'" in msg and "'transformers'" in msg and "'timm'" in msg


def test_the_uncalled_factory_gets_a_did_you_mean():
    with pytest.raises(TypeError, match=r"did you mean mask=masks.preset\('nanogpt'\)"):
        decaytx.adamw(1e-3, 0.1, mask=masks.preset)
