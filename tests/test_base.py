"""The machinery every form shares (decaytx._base): dtypes, special leaves,
state, the update contract, the fusion guarantee, the warnings and linearity."""

from __future__ import annotations

import functools
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import decaytx

SCHED = optax.linear_schedule(0.1, 0.01, 10)

# name -> factory of one coefficient c (rates stay well inside every dtype's
# resolution and below 1, so no warning is expected).
FORMS = {
    "add_l2_grad": lambda c: decaytx.add_l2_grad(c),
    "add_l2_grad_anchor": lambda c: decaytx.add_l2_grad(c, anchor="init"),
    "add_l1_subgrad": lambda c: decaytx.add_l1_subgrad(c),
    "add_elastic_net_grad": lambda c: decaytx.add_elastic_net_grad(c, c),
    "add_decoupled_decay": lambda c: decaytx.add_decoupled_decay(c, learning_rate=c),
    "add_decoupled_decay_anchor_cautious": lambda c: decaytx.add_decoupled_decay(
        c, anchor="init", cautious=True, learning_rate=None
    ),
    "prox_l1": lambda c: decaytx.prox_l1(c, learning_rate=c),
    "prox_elastic_net": lambda c: decaytx.prox_elastic_net(c, c, learning_rate=c),
}

COEFFICIENTS = {
    "python": 0.1,
    "np_float32": np.float32(0.1),
    "jnp_float32": jnp.float32(0.1),
    "schedule": SCHED,
}

DTYPES = {
    "f16": jnp.float16,
    "bf16": jnp.bfloat16,
    "f32": jnp.float32,
    "f64": jnp.float64,
    "c64": jnp.complex64,
}


def leaf(dtype, shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        x = x + 1j * rng.normal(size=shape)
    return jnp.asarray(x, dtype)


def dtypes(tree):
    return jax.tree.map(lambda x: jnp.asarray(x).dtype, tree)


# --- dtypes -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("form", list(FORMS))
def test_dtype_matrix(form, dtype, request):
    """Every coefficient kind (python float, np.float32, jnp.float32, schedule)
    on every dtype: updates, params and state keep their dtypes over two steps.
    The four coefficient kinds run in one jitted program (one compile)."""
    if dtype == "f64":
        request.getfixturevalue("x64")
    dt = DTYPES[dtype]
    params = {"w": leaf(dt), "b": leaf(dt, (4,), 1)}
    grads = {"w": leaf(dt, seed=2), "b": leaf(dt, (4,), 3)}
    txs = {name: FORMS[form](c) for name, c in COEFFICIENTS.items()}
    states0 = {name: tx.init(params) for name, tx in txs.items()}

    @jax.jit
    def two_steps(params, states):
        out = {}
        for name, tx in txs.items():
            p, state, steps = params, states[name], []
            for _ in range(2):
                u, state = tx.update(grads, state, p)
                p = optax.apply_updates(p, u)
                steps.append((u, state, p))
            out[name] = steps
        return out

    for name, steps in two_steps(params, states0).items():
        for u, state, new_params in steps:
            assert dtypes(u) == dtypes(grads), name
            assert jax.tree.structure(state) == jax.tree.structure(states0[name]), name
            assert dtypes(state) == dtypes(states0[name]), name
            assert dtypes(new_params) == dtypes(grads), name
            finite = [np.all(np.isfinite(np.asarray(x, np.complex128))) for x in jax.tree.leaves(u)]
            assert all(finite), name


def test_bf16_update_is_computed_in_bf16_not_promoted():
    """optax.add_decayed_weights promotes bf16 + f32 coefficient to f32; decaytx keeps bf16."""
    p = leaf(jnp.bfloat16)
    u, _ = decaytx.add_l2_grad(jnp.float32(0.1)).update(p, optax.EmptyState(), p)
    assert u.dtype == jnp.bfloat16
    ref = (np.asarray(p, np.float32) * np.float32(1.1)).astype(jnp.bfloat16)
    np.testing.assert_allclose(np.asarray(u, np.float32), np.asarray(ref, np.float32), rtol=2**-7)


def test_scan_with_trace_on_bf16_params_compiles_and_runs():
    params = {"w": leaf(jnp.bfloat16), "b": leaf(jnp.bfloat16, (4,), 1)}
    opt = optax.chain(decaytx.add_l2_grad(jnp.float32(0.1)), optax.trace(0.9), optax.scale(-0.1))

    def step(carry, _):
        p, s = carry
        g = jax.tree.map(lambda x: 0.5 * x, p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (p, s), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=3))((params, opt.init(params)))
    assert dtypes(p) == dtypes(params)
    # NumPy reference of the same three steps: g' = 1.5 p... in float64.
    ref = {k: np.asarray(v, np.float64) for k, v in params.items()}
    tr = {k: 0.0 for k in ref}
    for _ in range(3):
        for k in ref:
            tr[k] = (0.5 + 0.1) * ref[k] + 0.9 * tr[k]
            ref[k] = ref[k] - 0.1 * tr[k]
    for k in ref:
        np.testing.assert_allclose(np.asarray(p[k], np.float64), ref[k], rtol=3e-2, atol=1e-2)


@pytest.mark.parametrize("enable_x64", [False, True], ids=["x32", "x64"])
@pytest.mark.parametrize(
    "form", ["add_l2_grad_anchor", "add_decoupled_decay_anchor_cautious", "prox_elastic_net"]
)
def test_scan_over_steps_with_schedules_and_anchors(form, enable_x64):
    """State dtypes are stable, so lax.scan over steps traces (also under x64)."""
    with jax.enable_x64(enable_x64):
        params = {"w": leaf(jnp.float32), "h": leaf(jnp.bfloat16, (4,), 1)}
        opt = optax.chain(optax.sgd(SCHED, momentum=0.9), FORMS[form](SCHED))

        def step(carry, _):
            p, s = carry
            u, s = opt.update(jax.tree.map(lambda x: 0.5 * x, p), s, p)
            return (optax.apply_updates(p, u), s), None

        state0 = opt.init(params)
        (p, s), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=3))((params, state0))
        assert dtypes(p) == dtypes(params)
        assert dtypes(s) == dtypes(state0)
        assert int(s[1].count) == 3


# --- leaves the decay never touches -------------------------------------------


@pytest.mark.parametrize("form", list(FORMS))
def test_none_maskednode_int_bool_leaves_pass_through(form):
    params = {
        "w": leaf(jnp.float32),
        "n": None,
        "m": optax.MaskedNode(),
        "i": jnp.arange(4, dtype=jnp.int32),
        "flag": jnp.array([True, False]),
    }
    updates = {
        "w": leaf(jnp.float32, seed=1),
        "n": None,
        "m": optax.MaskedNode(),
        "i": jnp.arange(4, dtype=jnp.int32) * 7,
        "flag": jnp.array([False, False]),
    }
    for c in (0.1, SCHED):
        tx = FORMS[form](c)
        state = tx.init(params)
        moved = jax.tree.map(lambda x: x, params)
        moved["w"] = params["w"] + 1  # so that an anchor at init decays too
        for update in (tx.update, jax.jit(tx.update)):
            u, _ = update(updates, state, moved)
            assert u["n"] is None
            assert isinstance(u["m"], optax.MaskedNode)
            assert u["i"].dtype == jnp.int32 and u["flag"].dtype == jnp.bool_
            np.testing.assert_array_equal(np.asarray(u["i"]), np.asarray(updates["i"]))
            np.testing.assert_array_equal(np.asarray(u["flag"]), np.asarray(updates["flag"]))
            assert not np.array_equal(np.asarray(u["w"]), np.asarray(updates["w"]))


# --- state ------------------------------------------------------------------


@pytest.mark.parametrize("form", [f for f in FORMS if "anchor" not in f])
@pytest.mark.parametrize("coef", ["python", "np_float32", "jnp_float32"])
def test_constant_coefficients_keep_no_state(form, coef):
    params = {"w": leaf(jnp.float32)}
    tx = FORMS[form](COEFFICIENTS[coef])
    state = tx.init(params)
    assert isinstance(state, optax.EmptyState)
    assert jax.tree.leaves(state) == []


@pytest.mark.parametrize("form", [f for f in FORMS if "anchor" not in f])
def test_schedule_keeps_one_int32_count_in_lockstep(form):
    params = {"w": leaf(jnp.float32), "b": leaf(jnp.float32, (4,))}
    tx = FORMS[form](SCHED)
    state = tx.init(params)
    assert isinstance(state, decaytx.DecayState)
    assert state.anchor is None
    leaves = jax.tree.leaves(state)
    assert len(leaves) == 1 and leaves[0].dtype == jnp.int32 and leaves[0].shape == ()
    lr_state = optax.scale_by_learning_rate(SCHED).init(params)
    for t in range(3):
        assert int(state.count) == t == int(lr_state.count)
        _, state = tx.update(params, state, params)
        _, lr_state = optax.scale_by_learning_rate(SCHED).update(params, lr_state, params)


def test_count_saturates_like_optax():
    p = leaf(jnp.float32)
    tx = decaytx.add_l2_grad(SCHED)
    state = decaytx.DecayState(count=jnp.asarray(np.iinfo(np.int32).max, jnp.int32), anchor=None)
    _, state = tx.update(p, state, p)
    assert int(state.count) == np.iinfo(np.int32).max


@pytest.mark.parametrize(
    "make",
    [
        lambda a, m: decaytx.add_l2_grad(0.1, anchor=a, mask=m),
        lambda a, m: decaytx.add_decoupled_decay(0.1, anchor=a, mask=m, learning_rate=None),
        lambda a, m: decaytx.add_decoupled_decay(SCHED, anchor=a, mask=m, learning_rate=None),
    ],
    ids=["l2", "decoupled", "decoupled_schedule"],
)
@pytest.mark.parametrize("anchor_kind", ["init", "tree"])
def test_anchor_keeps_one_copy_of_the_masked_params(make, anchor_kind):
    params = {"w": leaf(jnp.float32), "b": leaf(jnp.bfloat16, (4,)), "i": jnp.arange(3)}
    anchor = (
        params
        if anchor_kind == "init"
        else {"w": leaf(jnp.float32, seed=5), "b": leaf(jnp.float32, (4,), 6), "i": jnp.arange(3)}
    )
    tx = make("init" if anchor_kind == "init" else anchor, decaytx.masks.ndim_at_least(1))
    state = tx.init(params)
    assert isinstance(state, decaytx.DecayState)
    a = state.anchor
    # Masked-out and integer leaves hold nothing; decayed leaves one copy in the params' dtype.
    assert isinstance(a["i"], optax.MaskedNode)
    assert a["w"].dtype == jnp.float32 and a["b"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(a["w"]), np.asarray(anchor["w"]))
    np.testing.assert_array_equal(
        np.asarray(a["b"], np.float32),
        np.asarray(jnp.asarray(anchor["b"], jnp.bfloat16), np.float32),
    )
    # The anchor is state, not a closure constant: it is an argument of the jitted update.
    # Updates, params and anchor each bring one f32[3,4] argument; a closed-over
    # anchor would instead be a dense constant of the program.
    lowered = jax.jit(tx.update).lower(params, state, params).as_text()
    header = lowered[lowered.index("@main(") : lowered.index("{", lowered.index("@main("))]
    assert len(re.findall(r"%arg\d+: tensor<3x4xf32>", header)) == 3
    assert not re.search(r"constant dense<\[\[", lowered)
    u, new_state = tx.update(params, state, params)
    assert new_state.anchor is state.anchor


def test_anchor_does_not_alias_params_buffers():
    p = {"w": jnp.ones(3)}
    state = decaytx.add_l2_grad(0.1, anchor="init").init(p)
    assert state.anchor["w"] is not p["w"]
    assert state.anchor["w"].unsafe_buffer_pointer() != p["w"].unsafe_buffer_pointer()


# --- the update contract ------------------------------------------------------


@pytest.mark.parametrize("form", list(FORMS))
def test_update_without_params_names_the_form(form):
    params = {"w": leaf(jnp.float32)}
    tx = FORMS[form](0.1)
    with pytest.raises(ValueError, match=r"update.*without params"):
        tx.update(params, tx.init(params))


@pytest.mark.parametrize("form", ["add_l2_grad_anchor", "add_decoupled_decay_anchor_cautious"])
def test_anchor_tree_mismatch_names_the_paths(form):
    params = {"w": leaf(jnp.float32), "b": leaf(jnp.float32, (4,))}
    make = (
        decaytx.add_l2_grad
        if "l2" in form
        else functools.partial(decaytx.add_decoupled_decay, learning_rate=None)
    )
    tx = make(0.1, anchor={"w": leaf(jnp.float32), "c": leaf(jnp.float32, (4,))})
    with pytest.raises(ValueError, match="anchor") as e:
        tx.init(params)
    assert "['b']" in str(e.value) and "['c']" in str(e.value)


def test_bad_anchor_string_is_refused():
    with pytest.raises(ValueError, match="anchor='initial'"):
        decaytx.add_l2_grad(0.1, anchor="initial").init({"w": jnp.ones(2)})


# --- fusion guarantee (DESIGN 3.5) -------------------------------------------

PARAMS_HLO = {"w": jnp.ones((64, 32), jnp.float32), "b": jnp.ones(32, jnp.float32)}

GRAD_SIDE = {
    "add_l2_grad": lambda: decaytx.add_l2_grad(0.1),
    "add_l2_grad_anchor": lambda: decaytx.add_l2_grad(0.1, anchor="init"),
    "add_l1_subgrad": lambda: decaytx.add_l1_subgrad(0.1),
    "add_elastic_net_grad": lambda: decaytx.add_elastic_net_grad(0.1, 0.2),
}
UPDATE_SIDE = {
    "add_decoupled_decay": lambda: decaytx.add_decoupled_decay(0.1, learning_rate=0.1),
    "add_decoupled_decay_none": lambda: decaytx.add_decoupled_decay(0.01, learning_rate=None),
    "add_decoupled_decay_anchor": lambda: decaytx.add_decoupled_decay(0.1, anchor="init", learning_rate=None),
    "add_decoupled_decay_cautious": lambda: decaytx.add_decoupled_decay(0.1, cautious=True, learning_rate=None),
    "add_decoupled_decay_masked": lambda: decaytx.add_decoupled_decay(
        0.1, mask=decaytx.masks.ndim_at_least(2), learning_rate=None
    ),
    "prox_l1": lambda: decaytx.prox_l1(0.1, learning_rate=0.1),
    "prox_elastic_net": lambda: decaytx.prox_elastic_net(0.1, 0.2, learning_rate=0.1),
}
OPTIMIZERS = {
    "sgd_momentum": lambda: optax.sgd(0.1, momentum=0.9),
    "adam": lambda: optax.adam(0.1),
}


def _with(opt_name, form_name):
    opt = OPTIMIZERS[opt_name]()
    if form_name in GRAD_SIDE:
        return optax.chain(GRAD_SIDE[form_name](), opt)
    return optax.chain(opt, UPDATE_SIDE[form_name]())


_BASE_FUSIONS: dict[str, list[str]] = {}


@pytest.mark.parametrize("form", list(GRAD_SIDE) + list(UPDATE_SIDE))
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_decay_adds_no_fusion_to_the_compiled_step(hlo, opt, form):
    if opt not in _BASE_FUSIONS:
        _BASE_FUSIONS[opt] = hlo.fusions(hlo.compiled_step(OPTIMIZERS[opt](), PARAMS_HLO))
    base = _BASE_FUSIONS[opt]
    with_decay = hlo.fusions(hlo.compiled_step(_with(opt, form), PARAMS_HLO))
    assert len(with_decay) == len(base), (base, with_decay)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: optax.chain(decaytx.add_l2_grad(s), optax.adam(0.1)),
        lambda s: optax.chain(optax.adam(0.1), decaytx.add_decoupled_decay(0.1, learning_rate=s)),
        lambda s: optax.chain(optax.sgd(0.1, momentum=0.9), decaytx.prox_l1(s, learning_rate=0.1)),
    ],
    ids=["l2_adam", "decoupled_adam", "prox_sgd_momentum"],
)
def test_schedule_adds_only_its_scalar_count_increment(hlo, make):
    """A schedule keeps its own int32 count (DESIGN 3.4); advancing it is one
    scalar s32[] fusion on XLA:CPU. No array-sized kernel is added."""
    base = make(0.1)
    sched = make(optax.cosine_decay_schedule(0.1, 100))
    base_f = hlo.fusions(hlo.compiled_step(base, PARAMS_HLO))
    sched_f = hlo.fusions(hlo.compiled_step(sched, PARAMS_HLO))
    extra = list(sched_f)
    for f in base_f:
        extra.remove(f)
    assert [e.split("{")[0] for e in extra] == ["s32[]"], (base_f, sched_f)


def test_optax_own_schedule_count_costs_the_same_scalar_fusion(hlo):
    """Reference point: optax.scale_by_learning_rate with a schedule adds the
    same single s32[] count fusion over a constant rate, so the schedule's
    count is not a decaytx overhead."""
    const = hlo.fusions(hlo.compiled_step(optax.sgd(0.1, momentum=0.9), PARAMS_HLO))
    sched = hlo.fusions(
        hlo.compiled_step(
            optax.sgd(optax.cosine_decay_schedule(0.1, 100), momentum=0.9), PARAMS_HLO
        )
    )
    extra = list(sched)
    for f in const:
        extra.remove(f)
    assert [e.split("{")[0] for e in extra] == ["s32[]"]


# --- warnings ------------------------------------------------------------------


def test_factor_at_least_one_warns_once_even_if_init_twice():
    params = {"w": jnp.ones(3)}
    tx = decaytx.add_decoupled_decay(2.0, learning_rate=0.5)
    with pytest.warns(decaytx.DecayWarning, match="flips the sign") as rec:
        tx.init(params)
        tx.init(params)
    assert len([w for w in rec if issubclass(w.category, decaytx.DecayWarning)]) == 1


def test_factor_from_schedule_peak_warns():
    sched = optax.warmup_cosine_decay_schedule(0.0, 2.0, 10, 100)  # peak 2 at step 10
    with pytest.warns(decaytx.DecayWarning, match="flips the sign"):
        decaytx.add_decoupled_decay(1.0, learning_rate=sched).init({"w": jnp.ones(3)})


def test_resolution_warning_fires_once_for_bf16_not_for_f32():
    params = {"w": jnp.ones(3, jnp.bfloat16), "v": jnp.ones(3, jnp.float32)}
    tx = decaytx.add_decoupled_decay(1e-4, learning_rate=1e-3)  # m*l = 1e-7
    with pytest.warns(decaytx.DecayWarning, match="resolution of bfloat16") as rec:
        tx.init(params)
        tx.init(params)
    msgs = [str(w.message) for w in rec if issubclass(w.category, decaytx.DecayWarning)]
    assert len(msgs) == 1 and "resolution of bfloat16 params" in msgs[0]
    # Masked out, the bf16 leaf no longer warns.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decaytx.add_decoupled_decay(1e-4, learning_rate=1e-3, mask={"w": False, "v": True}).init(
            params
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda: decaytx.add_decoupled_decay(0.1, learning_rate=1e-3),
        lambda: decaytx.add_decoupled_decay(0.01, learning_rate=None),
        lambda: decaytx.add_decoupled_decay(
            0.05, learning_rate=optax.cosine_decay_schedule(3e-4, 1000)
        ),
        lambda: decaytx.add_decoupled_decay(
            0.1, learning_rate=decaytx.lr_multiplier(optax.cosine_decay_schedule(3e-4, 1000))
        ),
        lambda: decaytx.add_l2_grad(5.0),
        lambda: decaytx.prox_l1(0.5, learning_rate=0.1),
    ],
)
def test_normal_settings_do_not_warn(make):
    params = {"w": jnp.ones(3, jnp.float32), "k": jnp.ones((2, 2), jnp.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tx = make()
        tx.init(params)
        tx.init(params)


def _values_in_1_2(dtype):
    # Every value of the dtype in [1, 2): 2**mantissa_bits of them.
    n = 2 ** jnp.finfo(dtype).nmant
    return jnp.asarray(1.0 + np.arange(n) / n, dtype)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("scale", [0.25, 0.5, 0.999, 1.0, 1.001, 1.01, 1.1, 2.0, 3.0])
def test_resolution_warning_is_exact_on_every_value_in_1_2(dtype, scale):
    """Fires iff x - rate*x rounds back to x for every x in [1, 2) of the dtype,
    as the decay actually computes it (update, then optax.apply_updates)."""
    x = _values_in_1_2(dtype)
    rate = float(jnp.finfo(dtype).eps) / 4 * scale
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        tx = decaytx.add_decoupled_decay(rate, learning_rate=None)
        state = tx.init(x)
    fired = any("resolution" in str(w.message) for w in rec)
    u, _ = tx.update(jnp.zeros_like(x), state, x)
    new = optax.apply_updates(x, u)
    assert new.dtype == dtype
    unchanged = bool(np.all(np.asarray(new) == np.asarray(x)))
    assert fired == unchanged, (rate, fired, unchanged)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
def test_resolution_warning_just_above_threshold_changes_some_value(dtype):
    x = _values_in_1_2(dtype)
    thr = float(jnp.finfo(dtype).eps) / 4
    above = float(np.nextafter(dtype(thr), dtype(1)))  # next representable value above
    assert above > thr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tx = decaytx.add_decoupled_decay(above, learning_rate=None)
        state = tx.init(x)
    new = optax.apply_updates(x, tx.update(jnp.zeros_like(x), state, x)[0])
    assert np.any(np.asarray(new) != np.asarray(x))


# --- linearity in lambda ---------------------------------------------------------


def _decay_part(make, lam, g, p):
    tx = make(lam)
    u, _ = tx.update(g, tx.init(p), p)
    return np.asarray(u, np.float64) - np.asarray(g, np.float64)


LINEAR_FORMS = {
    "add_l2_grad": lambda lam: decaytx.add_l2_grad(lam),
    "add_l2_grad_anchor": lambda lam: decaytx.add_l2_grad(
        lam, anchor=jnp.full(8, 0.5, jnp.float32)
    ),
    "add_l1_subgrad": lambda lam: decaytx.add_l1_subgrad(lam),
    "add_elastic_net_grad": lambda lam: decaytx.add_elastic_net_grad(lam, lam),
    "add_decoupled_decay": lambda lam: decaytx.add_decoupled_decay(lam, learning_rate=0.5),
    "add_decoupled_decay_cautious": lambda lam: decaytx.add_decoupled_decay(lam, cautious=True, learning_rate=None),
}

vals = st.floats(-10, 10, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    form=st.sampled_from(sorted(LINEAR_FORMS)),
    lam=st.floats(1e-3, 0.4),
    p=st.lists(vals, min_size=8, max_size=8),
    g=st.lists(vals, min_size=8, max_size=8),
)
def test_decay_is_linear_in_lambda(form, lam, p, g):
    p = jnp.asarray(p, jnp.float32)
    g = jnp.asarray(g, jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", decaytx.DecayWarning
        )  # tiny lam may be below f32 resolution
        d1 = _decay_part(LINEAR_FORMS[form], lam, g, p)
        d2 = _decay_part(LINEAR_FORMS[form], 2 * lam, g, p)
    # update(2l) - g == 2 (update(l) - g), to float32 rounding of the terms.
    scale = np.abs(np.asarray(g, np.float64)) + 2 * lam * (np.abs(np.asarray(p, np.float64)) + 1)
    np.testing.assert_array_less(np.abs(d2 - 2 * d1), 4 * np.finfo(np.float32).eps * scale + 1e-30)
