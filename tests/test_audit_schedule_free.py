"""The audit flags a decay chained after ``optax.contrib.schedule_free``.

Schedule-free keeps three sequences: ``z`` (stepped by the base optimizer),
``x`` (the average of ``z``, the evaluation point) and ``y = b1 x + (1 - b1) z``
(the params it returns). optax's ``schedule_free_adamw(weight_decay=λ)`` and
the schedule-free paper decay inside the base optimizer: ``z`` takes
``-η λ y``. A decay chained after the wrapper decays ``y`` alone; ``z`` is
never decayed. The float64 test below checks both spellings against optax and
against a NumPy float64 loop of the recursion, and pins the figures the
audit's message quotes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx
from decaytx import masks

PARAMS = {"dense": {"kernel": jnp.full((3, 3), 0.5), "bias": jnp.zeros(3)},
          "out": {"kernel": jnp.full((3, 2), 0.5), "bias": jnp.zeros(2)}}
LR, WD = 1e-3, 0.1
WARM = optax.warmup_constant_schedule(0.0, LR, 5)


def _base(lr, decay=None):
    """optax.contrib.schedule_free_adamw's base optimizer, the decay stage last (as
    docs/optimizers.md spells it)."""
    parts = [optax.scale_by_rms(decay=0.999, eps=1e-8, eps_in_sqrt=False, bias_correction=True),
             optax.scale_by_learning_rate(lr)]
    return optax.chain(*parts, *([decay] if decay is not None else []))


def _decay(lr, **kw):
    return decaytx.add_decoupled_decay(WD, learning_rate=lr, mask=masks.matrices(), **kw)


OUTSIDE = {
    "after schedule_free_adamw": lambda: optax.chain(
        optax.contrib.schedule_free_adamw(LR), _decay(LR)),
    "after schedule_free_adamw with warm-up": lambda: optax.chain(
        optax.contrib.schedule_free_adamw(LR, warmup_steps=5), _decay(WARM)),
    "after schedule_free(adam)": lambda: optax.chain(
        optax.contrib.schedule_free(optax.adam(LR, b1=0.0), LR), _decay(LR)),
    "after schedule_free, anchor init": lambda: optax.chain(
        optax.contrib.schedule_free_adamw(LR), _decay(LR, anchor="init")),
    "after schedule_free under MultiSteps": lambda: optax.MultiSteps(optax.chain(
        optax.contrib.schedule_free_adamw(LR), _decay(LR)), 3),
}

INSIDE = {
    "adamw spelling": lambda: optax.contrib.schedule_free(_base(LR, _decay(LR)), LR),
    "adamw spelling with warm-up": lambda: optax.contrib.schedule_free(
        _base(WARM, _decay(WARM)), WARM),
    "sgd spelling": lambda: optax.contrib.schedule_free(
        optax.chain(decaytx.add_l2_grad(WD, mask=masks.matrices()), optax.sgd(LR)), LR),
    "recipe as the base": lambda: optax.contrib.schedule_free(
        decaytx.adamw(LR, WD, b1=0.0, mask=masks.matrices()), LR),
    "inside, under MultiSteps": lambda: optax.MultiSteps(
        optax.contrib.schedule_free(_base(LR, _decay(LR)), LR), 3),
}


@pytest.mark.parametrize("name", list(OUTSIDE))
def test_decay_chained_after_schedule_free_is_a_problem(name):
    report = decaytx.audit(OUTSIDE[name](), PARAMS)
    assert [p.kind for p in report.problems] == ["decay_outside_schedule_free"]
    (problem,) = report.problems
    assert problem.severity == "problem"
    assert problem.transform == "add_decoupled_decay"
    assert problem.paths == ("dense/kernel", "out/kernel")
    assert "AFTER optax.contrib.schedule_free" in problem.message
    assert "never-decayed" in problem.message
    assert "decaytx.add_decoupled_decay INSIDE the base optimizer" in problem.fix
    assert "optax.contrib.schedule_free(optax.chain(" in problem.fix
    assert "decay_outside_schedule_free" in str(report)


def test_gradient_side_decay_after_schedule_free_gets_the_gradient_side_fix():
    opt = optax.chain(optax.contrib.schedule_free_sgd(LR),
                      decaytx.add_l2_grad(WD, mask=masks.matrices()))
    report = decaytx.audit(opt, PARAMS)
    found = {p.kind: p for p in report.problems}
    assert "decay_outside_schedule_free" in found
    assert "first in its chain" in found["decay_outside_schedule_free"].fix


@pytest.mark.parametrize("name", list(INSIDE))
def test_decay_inside_the_base_optimizer_is_not_flagged(name):
    report = decaytx.audit(INSIDE[name](), PARAMS)
    assert report.problems == ()
    assert report.notes == ()


def test_schedule_free_adamw_with_its_own_weight_decay_is_not_flagged():
    report = decaytx.audit(optax.contrib.schedule_free_adamw(LR, weight_decay=WD), PARAMS)
    assert report.problems == ()
    assert all(f.kind != "decay_outside_schedule_free" for f in report.findings)


def test_a_decay_after_schedule_free_on_other_leaves_is_not_flagged():
    """Schedule-free on one branch, the decay on the other branch's leaves only."""
    labels = {"dense": "sf", "out": "adam"}
    opt = optax.multi_transform({"sf": optax.contrib.schedule_free_adamw(LR),
                                 "adam": optax.chain(optax.adam(LR), _decay(LR))}, labels)
    assert decaytx.audit(opt, PARAMS).problems == ()
    after = optax.chain(optax.multi_transform({"sf": optax.contrib.schedule_free_adamw(LR),
                                               "adam": optax.adam(LR)}, labels), _decay(LR))
    report = decaytx.audit(after, PARAMS)
    assert [(p.kind, p.paths) for p in report.problems] == [
        ("decay_outside_schedule_free", ("dense/kernel",))]


# --- the numbers: inside = optax's schedule_free_adamw(weight_decay), outside is not --


def _numpy_schedule_free(y0, eta, lam, b1, steps, inside):
    """Schedule-free with a constant learning rate and zero gradients in float64:
    c_t = 1/t, and Adam's direction is 0, so the decay is all that moves ``z``."""
    y = np.array(y0, np.float64)
    z = y.copy()
    for t in range(1, steps + 1):
        decay = eta * lam * y
        x = (y - (1 - b1) * z) / b1
        if inside:
            z = z - decay
        x = (1 - 1 / t) * x + z / t
        y = b1 * x + (1 - b1) * z - (0.0 if inside else decay)
    return y, z


def _run(opt, p0, steps):
    def step(carry, _):
        p, s = carry
        u, s = opt.update(jax.tree.map(jnp.zeros_like, p), s, p)
        return (optax.apply_updates(p, u), s), None
    (p, s), _ = jax.lax.scan(step, (p0, opt.init(p0)), None, length=steps)
    sf = [x for x in jax.tree_util.tree_leaves(
        s, is_leaf=lambda x: type(x).__name__ == "ScheduleFreeState")
        if type(x).__name__ == "ScheduleFreeState"][0]
    return np.asarray(p["w"]), np.asarray(sf.z["w"])


@pytest.mark.usefixtures("x64")
def test_inside_spelling_is_schedule_free_adamw_and_the_outside_one_is_not():
    eta, lam, b1, steps = 1e-2, 0.1, 0.9, 2000
    p0 = {"w": jnp.asarray([[1.0, -0.5], [2.0, 0.25]], jnp.float64)}
    decay = decaytx.add_decoupled_decay(lam, learning_rate=eta)
    ref_y, ref_z = _run(optax.contrib.schedule_free_adamw(eta, b1=b1, weight_decay=lam), p0, steps)
    in_y, in_z = _run(optax.contrib.schedule_free(_base(eta, decay), eta, b1=b1), p0, steps)
    out_y, out_z = _run(optax.chain(optax.contrib.schedule_free_adamw(eta, b1=b1), decay),
                        p0, steps)
    np_in_y, np_in_z = _numpy_schedule_free(p0["w"], eta, lam, b1, steps, inside=True)
    np_out_y, np_out_z = _numpy_schedule_free(p0["w"], eta, lam, b1, steps, inside=False)

    np.testing.assert_allclose(in_y, ref_y, rtol=1e-13)
    np.testing.assert_allclose(in_z, ref_z, rtol=1e-13)
    np.testing.assert_allclose(ref_y, np_in_y, rtol=1e-11)
    np.testing.assert_allclose(out_y, np_out_y, rtol=1e-11)
    np.testing.assert_array_equal(out_z, np.asarray(p0["w"]))  # z is never decayed
    np.testing.assert_array_equal(np_out_z, np.asarray(p0["w"]))
    # The figures the audit's message quotes: 0.26 of the start inside, 0.43 outside.
    w0 = np.asarray(p0["w"])
    assert np.allclose(ref_y / w0, 0.2566, atol=5e-4)
    assert np.allclose(out_y / w0, 0.4322, atol=5e-4)
    assert np.max(np.abs(out_y - ref_y) / np.abs(ref_y)) > 0.5
