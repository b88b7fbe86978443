"""State, anchors, masks and warnings that once went wrong silently: one
test (or parametrised group) per case, each against a closed form or the
error it must raise. Every test here fails on decaytx 0.1
(commit 4fbbf0b); docs/robustness.md has a row per item.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks

BF16 = jnp.bfloat16


def _params() -> dict[str, jax.Array]:
    return {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5, 2.0])}


def _plus_one(tree):
    return jax.tree.map(lambda x: x + 1.0, tree)


def _zeros(tree):
    return jax.tree.map(jnp.zeros_like, tree)


# --- an anchor missing where the mask decays ---------------------------------

MISSING_B = r"state\.anchor has no entry at \['b'\], which the mask decays"


def test_state_built_with_another_mask_raises() -> None:
    p = _params()
    built = decaytx.add_l2_grad(0.5, mask={"w": True, "b": False}, anchor="init")
    used = decaytx.add_l2_grad(0.5, anchor="init")
    with pytest.raises(ValueError, match=MISSING_B):
        used.update(_zeros(p), built.init(p), _plus_one(p))


def test_orbax_restore_after_mask_change_raises(tmp_path) -> None:
    ocp = pytest.importorskip("orbax.checkpoint")
    p = _params()
    old = decaytx.add_l2_grad(0.5, mask={"w": True, "b": False}, anchor="init")
    new = decaytx.add_l2_grad(0.5, anchor="init")  # the mask changed since the save
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(tmp_path / "ckpt", old.init(p))
    ckptr.wait_until_finished()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, new.init(p))
    restored = ckptr.restore(tmp_path / "ckpt", target)
    with pytest.raises(ValueError, match=MISSING_B):
        new.update(_zeros(p), restored, _plus_one(p))


# Matches the kernel's path in 0.2 ("kernel": NNX's trailing "value" dropped)
# and in 0.1's keystr form ("['kernel']"), but not 0.1's "['kernel'].value":
# the same regex, so this test runs unchanged on both versions.
KERNEL = r"kernel(?:'\])?$"
WD, LR = 0.5, 0.1


def _nnx_linear():
    nnx = pytest.importorskip("flax.nnx")
    return nnx, nnx.Linear(3, 2, rngs=nnx.Rngs(0))


def test_flax_nnx_init_on_state_update_on_arrays() -> None:
    """``init`` sees ``nnx.state`` (paths ending in ``.value``), ``update``
    pure arrays: the kernel decays toward its init value, the bias not at all,
    and no false "selects none" warning."""
    nnx, model = _nnx_linear()
    t = decaytx.add_decoupled_decay(WD, learning_rate=LR, mask=masks.include(KERNEL), anchor="init")
    state = nnx.as_pure(t.init(nnx.state(model, nnx.Param)))
    p0 = nnx.as_pure(nnx.state(model, nnx.Param))
    p1 = _plus_one(p0)
    out, _ = t.update(_zeros(p1), state, p1)
    # u = -m * lambda * (theta - a), theta - a = 1
    np.testing.assert_array_equal(np.asarray(out["kernel"]), np.full((3, 2), -LR * WD, np.float32))
    np.testing.assert_array_equal(np.asarray(out["bias"]), np.zeros(2, np.float32))


def test_flax_nnx_optimizer() -> None:
    nnx, model = _nnx_linear()
    k0 = np.asarray(model.kernel[...], np.float64)
    b0 = np.asarray(model.bias[...], np.float64)
    tx = optax.chain(
        optax.sgd(1.0),
        decaytx.add_decoupled_decay(WD, learning_rate=LR, mask=masks.include(KERNEL), anchor="init"),
    )
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    model.kernel[...] = model.kernel[...] + 1.0
    model.bias[...] = model.bias[...] + 1.0
    opt.update(model, _zeros(nnx.state(model, nnx.Param)))
    # theta+ = theta - m * lambda * (theta - theta_0) on the kernel only
    np.testing.assert_allclose(np.asarray(model.kernel[...]), k0 + 1 - LR * WD, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(model.bias[...]), (b0 + 1).astype(np.float32))


# --- a refused init leaves the transform uninitialised -----------------------


def _refused() -> optax.GradientTransformation:
    return decaytx.add_l2_grad(lambda t: 1e-2 - 1e-3 * t)  # negative from step 11


def test_refused_init_refuses_again() -> None:
    t, p = _refused(), _params()
    for _ in range(2):
        with pytest.raises(ValueError, match="weight_decay"):
            t.init(p)


def test_two_threads_both_refused() -> None:
    t, p = _refused(), _params()
    barrier = threading.Barrier(2)
    outcome: list[str] = []

    def init() -> None:
        barrier.wait()
        try:
            t.init(p)
            outcome.append("accepted")
        except ValueError:
            outcome.append("refused")

    threads = [threading.Thread(target=init) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert outcome == ["refused", "refused"]


# --- the prox with f32 params and bf16 updates --------------------------------


@pytest.mark.parametrize("form", ["prox_l1", "prox_elastic_net"])
def test_prox_f32_params_bf16_updates_exact_zeros(form: str) -> None:
    p = jnp.array([0.3, -0.7, 1.5, 0.01], jnp.float32)
    u = jnp.array([-0.2, 0.4, -0.1, 1e-3], BF16)
    l1, l2 = 0.5, 0.25
    t = (decaytx.prox_l1(l1, learning_rate=None) if form == "prox_l1"
         else decaytx.prox_elastic_net(l1, l2, learning_rate=None))
    new = optax.apply_updates(p, t.update(u, t.init(p), p)[0])
    z = np.asarray(p, np.float64) + np.asarray(u.astype(jnp.float32), np.float64)
    ref = np.sign(z) * np.maximum(np.abs(z) - l1, 0.0) / (1 + (l2 if form != "prox_l1" else 0.0))
    assert (ref == 0).sum() == 3
    assert new.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(new)[ref == 0], 0.0)  # exact zeros
    np.testing.assert_allclose(np.asarray(new, np.float64), ref, rtol=2e-7, atol=0)


# --- schedules given to decaytx.inject_hyperparams ---------------------------


@pytest.mark.parametrize("factory,kwargs", [
    (decaytx.add_l2_grad, {}),
    (decaytx.add_decoupled_decay, {"learning_rate": 0.1}),
    (decaytx.prox_l1, {"learning_rate": None}),
], ids=["add_l2_grad", "add_decoupled_decay", "prox_l1"])
def test_inject_hyperparams_checks_schedules(factory, kwargs) -> None:
    decreasing = lambda t: 1e-2 - 1e-4 * t  # noqa: E731  (< 0 from step 101)
    with pytest.raises(ValueError, match=r"at step 101, its first bad step"):
        decaytx.inject_hyperparams(factory)(decreasing, **kwargs)


# --- the anchor's shape in update ---------------------------------------------


def test_anchor_shape_checked_in_update() -> None:
    t = decaytx.add_l2_grad(0.1, anchor="init")
    p = {"w": jnp.ones(3)}
    restored = decaytx.DecayState(count=None, anchor={"w": jnp.zeros((3, 1))})
    with pytest.raises(ValueError, match=r"state\.anchor at \['w'\] has shape \(3, 1\)"):
        t.update(p, restored, p)
    with pytest.raises(ValueError, match=r"anchor leaf at \['w'\] has shape \(3, 1\)"):
        decaytx.add_l2_grad(0.1, anchor={"w": jnp.zeros((3, 1))}).init(p)


# --- complex parts and non-finite anchors --------------------------------------


def test_complex_anchor_for_real_params_refused() -> None:
    t = decaytx.add_l2_grad(0.1, anchor={"w": jnp.array([1 + 1j, 2.0, 0.0])})
    with pytest.raises(ValueError, match=r"\['w'\] is complex"):
        t.init({"w": jnp.ones(3)})


def test_real_updates_for_complex_params_refused() -> None:
    t = decaytx.add_l2_grad(0.1)
    p = {"w": jnp.array([1 + 2j, 3 - 1j])}
    with pytest.raises(ValueError, match=r"imaginary part"):
        t.update({"w": jnp.ones(2)}, t.init(p), p)


def test_complex_params_and_anchor_decay_exactly() -> None:
    a = np.array([0.5 - 1j, 2j])
    p = np.array([1 + 2j, 3 - 1j])
    t = decaytx.add_l2_grad(0.25, anchor={"w": jnp.asarray(a, jnp.complex64)})
    pj = {"w": jnp.asarray(p, jnp.complex64)}
    out = t.update({"w": jnp.zeros(2, jnp.complex64)}, t.init(pj), pj)[0]["w"]
    np.testing.assert_allclose(np.asarray(out), 0.25 * (p - a), rtol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_anchor_refused(bad: float) -> None:
    t = decaytx.add_decoupled_decay(0.1, learning_rate=0.1, anchor={"w": jnp.array([0.0, bad])})
    with pytest.raises(ValueError, match=r"\['w'\] has non-finite values"):
        t.init({"w": jnp.ones(2)})


# --- a state/params mismatch names the state's anchor --------------------------


def test_mismatch_names_the_anchor() -> None:
    t = decaytx.add_l2_grad(0.1, anchor="init")
    state = t.init({"w": jnp.ones(3)})
    p = _params()  # updates and params agree; the state does not
    with pytest.raises(ValueError, match=r"state\.anchor does not match params.*\['b'\]"):
        t.update(p, state, p)


# --- update without this transform's state -------------------------------------


@pytest.mark.parametrize("state", [None, optax.EmptyState(), optax.ScaleByAdamState(
    count=jnp.zeros([], jnp.int32), mu={}, nu={})], ids=["None", "EmptyState", "adam"])
@pytest.mark.parametrize("make,name", [
    (lambda: decaytx.add_l2_grad(0.1, anchor="init"), "add_l2_grad"),
    (lambda: decaytx.add_decoupled_decay(optax.linear_schedule(0.1, 0.0, 10), learning_rate=0.1),
     "add_decoupled_decay"),
], ids=["anchor", "schedule"])
def test_wrong_state_is_a_type_error(make, name, state) -> None:
    t, p = make(), _params()
    with pytest.raises(TypeError, match=rf"{name}\.update received state .*DecayState"):
        t.update(p, state, p)


# --- anchor errors name the path ---------------------------------------------


def test_anchor_with_a_none_leaf_names_the_path() -> None:
    t = decaytx.add_l2_grad(0.1, anchor={"w": jnp.zeros(3), "b": None})
    with pytest.raises(ValueError, match=r"anchor has None at \['b'\]"):
        t.init(_params())


def test_restored_anchor_of_another_shape_names_the_path() -> None:
    t = decaytx.add_decoupled_decay(0.1, learning_rate=0.1, anchor="init")
    p = _params()
    state = t.init(p)
    restored = state._replace(anchor={"w": state.anchor["w"], "b": jnp.zeros(3)})
    with pytest.raises(ValueError, match=r"state\.anchor at \['b'\] has shape \(3,\)"):
        t.update(p, restored, p)


# --- a differently sharded anchor on an explicit-axis mesh --------------------

SHARDING_SCRIPT = textwrap.dedent(
    r'''
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import NamedSharding, PartitionSpec as P, AxisType
    import decaytx

    mesh = jax.make_mesh((4, 2), ("x", "y"), axis_types=(AxisType.Explicit,) * 2)
    w = np.arange(32.0, dtype=np.float32).reshape(8, 4) / 10
    a = np.full((8, 4), 0.5, np.float32)
    with jax.set_mesh(mesh):
        params = {"w": jax.device_put(w, NamedSharding(mesh, P("x", "y")))}
        report = {}
        for label, anchor in {
            "one device": jax.device_put(a, jax.devices()[0]),
            "other spec": jax.device_put(a, NamedSharding(mesh, P("y", "x"))),
            "replicated": jax.device_put(a, NamedSharding(mesh, P())),
        }.items():
            t = decaytx.add_decoupled_decay(0.1, learning_rate=0.5, anchor={"w": anchor})
            try:
                state = t.init(params)
                out, _ = jax.jit(t.update)(jax.tree.map(jnp.zeros_like, params), state, params)
                report[label] = {
                    "anchor_placed": state.anchor["w"].sharding.is_equivalent_to(
                        params["w"].sharding, 2),
                    "out": np.asarray(out["w"]).tolist(),
                }
            except Exception as e:  # reported, so the test shows what went wrong
                report[label] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    print("REPORT" + json.dumps(report))
    '''
)


def test_anchor_placed_like_params_on_explicit_mesh() -> None:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SHARDING_SCRIPT], env=env, capture_output=True, text=True,
        timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT"))[6:])
    w = np.arange(32.0).reshape(8, 4) / 10
    expected = -0.5 * 0.1 * (w.astype(np.float32).astype(np.float64) - 0.5)
    for label, r in report.items():
        assert "error" not in r, (label, r)
        assert r["anchor_placed"], label
        np.testing.assert_allclose(np.asarray(r["out"]), expected, rtol=1e-6, atol=1e-8)


# --- inject_hyperparams keeps other threads' warnings --------------------------


def _warning_tx():
    # m * lambda = 2 >= 1: the sign-flip warning, once per transform
    return decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(4.0, learning_rate=0.5)


def test_init_leaves_the_warning_filters_alone() -> None:
    seen: list[list] = []

    def mask(params):
        seen.append(list(warnings.filters))  # the filters while init runs
        return jax.tree.map(lambda _: True, params)

    t = decaytx.inject_hyperparams(decaytx.add_l2_grad)(0.1, mask=mask)
    before = list(warnings.filters)
    for _ in range(2):  # optax rebuilds the inner transform at every init
        t.init(_params())
    assert len(seen) == 2 and all(f == before for f in seen)


def test_other_threads_keep_their_warnings() -> None:
    """While one thread is inside ``init``, another thread's DecayWarning
    gets through (0.1 silenced them process-wide from the second init on),
    and the initialising thread's own warning comes once."""
    n = 5

    def mask(params):
        # Another thread warns while this thread is inside init.
        th = threading.Thread(
            target=lambda: warnings.warn("other thread", decaytx.DecayWarning, stacklevel=1))
        th.start()
        th.join()
        return jax.tree.map(lambda _: True, params)

    t = decaytx.inject_hyperparams(decaytx.add_decoupled_decay)(4.0, learning_rate=0.5, mask=mask)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        for _ in range(n):
            t.init(_params())
    messages = [str(w.message) for w in got]
    assert messages.count("other thread") == n
    assert sum("flips the sign" in m for m in messages) == 1  # m * lambda = 2 >= 1


def test_inject_hyperparams_warns_once_per_transform() -> None:
    t, p = _warning_tx(), _params()
    with pytest.warns(decaytx.DecayWarning, match="flips the sign"):
        state = t.init(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t.init(p)  # optax rebuilds the inner transform; no second warning
        t.update(p, state, p)


# --- once-only warnings are per params signature -------------------------------


def test_bf16_model_after_f32_model_warns() -> None:
    # m * lambda = 1e-6: above f32's resolution (eps/4 = 3e-8), below bf16's (2e-3)
    t = decaytx.add_decoupled_decay(1e-4, learning_rate=1e-2)
    f32 = {"w": jnp.ones((2, 2))}
    bf16 = {"w": jnp.ones((2, 2), BF16)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t.init(f32)
    with pytest.warns(decaytx.DecayWarning, match="bfloat16"):
        t.init(bf16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t.init(bf16)  # once per signature


def test_one_transform_two_trees_right_answer_for_both() -> None:
    """The plan is kept per params signature: interleaved updates on two
    trees (other structure, dtypes and mask verdicts) each match the closed
    form u + lambda (theta - theta_0) on the leaves ndim >= 2 selects."""
    wd = 0.25
    t = decaytx.add_l2_grad(wd, mask=masks.ndim_at_least(2), anchor="init")
    trees = {
        "A": {"w": jnp.ones((2, 2)), "b": jnp.ones(2)},
        "B": [jnp.full((3,), 2.0, jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32),
              jnp.full((2, 3), -1.0, BF16)],
    }
    states = {k: t.init(v) for k, v in trees.items()}
    for step in range(2):
        for k, p0 in trees.items():
            p = jax.tree.map(lambda x, s=step: x + (s + 1), p0)
            g = jax.tree.map(lambda x: jnp.full_like(x, 0.5), p0)
            out, states[k] = jax.jit(t.update)(g, states[k], p)
            for o, x, x0 in zip(jax.tree.leaves(out), jax.tree.leaves(p), jax.tree.leaves(p0),
                                strict=True):
                dec = x.ndim >= 2
                ref = 0.5 + (wd * (np.asarray(x, np.float64) - np.asarray(x0, np.float64)) if dec else 0)
                assert o.dtype == x.dtype
                tol = float(ml_dtypes.finfo(o.dtype).eps)
                np.testing.assert_allclose(np.asarray(o, np.float64), ref, rtol=tol, atol=0)
