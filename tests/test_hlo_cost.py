"""Decay is free in the compiled step: no extra kernel, scratch or state.

DESIGN.md section 3, guarantee 5, checked on the executable XLA builds for one
jitted step (``update`` + ``optax.apply_updates``, params and state donated):
``chain(optimizer, decay)`` launches as many fused kernels as the optimizer
alone, allocates the same scratch, and keeps the same state (an anchor: one
params-sized copy more). These are deterministic properties of the compiled
program, not timings.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

import decaytx
from experiments.bench import hlo as _hlo

# A small tree of the usual shapes: a dense kernel, its bias, an embedding and
# a conv kernel (4 leaves, 4 layouts).
PARAMS = {
    "dense": {"kernel": jax.ShapeDtypeStruct((256, 128), jnp.float32),
              "bias": jax.ShapeDtypeStruct((128,), jnp.float32)},
    "embed": jax.ShapeDtypeStruct((64, 32), jnp.float32),
    "conv": jax.ShapeDtypeStruct((3, 3, 8, 16), jnp.float32),
}
PARAM_BYTES = _hlo.tree_bytes(PARAMS)
FORMS = _hlo.forms()
BY_NAME = {f.name: f for f in FORMS}
BASES = {"sgd": _hlo._sgd, "sgdm": _hlo._sgdm, "adam": _hlo._adam}


@functools.cache
def cost(name: str) -> _hlo.StepCost:
    """Cost of a baseline ("adam") or of a form ("l2>adam"), compiled once per session."""
    make = BASES[name] if name in BASES else BY_NAME[name].decayed
    return _hlo.step_cost(make(), PARAMS)


def base_of(form: _hlo.Form) -> _hlo.StepCost:
    a, b = form.name.split(">")
    return cost(b if form.side == "gradient" else a)


def test_forms_cover_issue_6():
    names = {f.name for f in FORMS}
    for o in ("sgdm", "adam"):
        for d in ("l2", "l1", "elastic_net"):
            assert f"{d}>{o}" in names
    for o in ("adam", "sgd"):
        for d in ("decoupled", "cautious", "anchor", "prox_l1", "prox_elastic_net"):
            assert f"{o}>{d}" in names


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_decay_adds_no_kernel_no_scratch_no_state(form):
    base, c = base_of(form), cost(form.name)
    assert c.fusions == base.fusions, (c, base)
    assert c.array_fusions == base.array_fusions, (c, base)
    assert c.temp_bytes == base.temp_bytes, (c, base)
    extra_state = PARAM_BYTES if form.anchor else 0
    assert c.state_bytes == base.state_bytes + extra_state, (c, base)


@pytest.mark.parametrize("form", [f for f in FORMS if f.side == "update"],
                         ids=[f.name for f in FORMS if f.side == "update"])
def test_update_side_moves_no_extra_bytes(form):
    # The decay folds into the kernel that writes params, which reads them
    # anyway; an anchor is read once (4 bytes per f32 param).
    base, c = base_of(form), cost(form.name)
    # XLA also counts the ROOT tuple, 8 bytes per output buffer, and the
    # anchor passes through the step as one more output per leaf.
    leaves = len(jax.tree_util.tree_leaves(PARAMS))
    extra = PARAM_BYTES + 8 * leaves if form.anchor else 0
    assert c.bytes_accessed == base.bytes_accessed + extra


@pytest.mark.parametrize("form", [f for f in FORMS if f.side == "gradient"],
                         ids=[f.name for f in FORMS if f.side == "gradient"])
def test_gradient_side_rereads_params_at_most_once_per_moment(form):
    # g + lambda*theta feeds each moment's kernel. XLA fuses it into every
    # consumer (no kernel of its own), and XLA:CPU keeps the moment kernels
    # and the params kernel apart, so theta is read once more per moment:
    # +4 B/param with SGD-momentum (1 moment), +8 with Adam (2). A backend
    # with multi-output fusion (GPU) reads it once in total.
    base, c = base_of(form), cost(form.name)
    moments = {"sgdm": 1, "adam": 2}[form.name.split(">")[1]]
    assert base.bytes_accessed <= c.bytes_accessed <= base.bytes_accessed + moments * PARAM_BYTES


def test_decaytx_adamw_costs_what_optax_adamw_costs():
    ref, ours, _ = _hlo.adamw_pair()
    a = _hlo.step_cost(ref(), PARAMS)
    b = _hlo.step_cost(ours(), PARAMS)
    assert (b.fusions, b.temp_bytes, b.state_bytes, b.bytes_accessed) == (
        a.fusions, a.temp_bytes, a.state_bytes, a.bytes_accessed)


def test_schedule_adds_one_scalar_count_and_no_array_kernel():
    sched = optax.cosine_decay_schedule(_hlo.LR, 1000)
    base = _hlo.step_cost(optax.adam(sched), PARAMS)
    c = _hlo.step_cost(
        optax.chain(optax.adam(sched), decaytx.add_decoupled_decay(_hlo.WD, learning_rate=sched)),
        PARAMS)
    assert c.array_fusions == base.array_fusions
    assert c.state_bytes == base.state_bytes + 4  # one int32 count
    assert c.bytes_accessed - base.bytes_accessed < 64  # scalars only


def test_zero_coefficient_compiles_to_the_optimizer_alone():
    base = _hlo.step_cost(optax.adam(_hlo.LR), PARAMS)
    c = _hlo.step_cost(
        optax.chain(optax.adam(_hlo.LR), decaytx.add_decoupled_decay(0.0, learning_rate=_hlo.LR)),
        PARAMS)
    assert (c.fusions, c.temp_bytes, c.state_bytes, c.bytes_accessed) == (
        base.fusions, base.temp_bytes, base.state_bytes, base.bytes_accessed)


def test_fusion_parser_on_a_known_program():
    # Independent check of the parser: x*2+1 on one array is one loop fusion.
    text = jax.jit(lambda x: x * 2 + 1).lower(jnp.ones(1000)).compile().as_text()
    assert len(_hlo.fusion_shapes(text)) == 1
    assert _hlo.is_scalar_shape("f32[]") and not _hlo.is_scalar_shape("f32[1000]{0}")
    assert _hlo.is_scalar_shape("(f32[], s32[])")
