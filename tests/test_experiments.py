"""The experiments CLI end to end, in --smoke mode (tiny runs, seconds per study).

Checks that every output exists with the agreed schema, and recomputes each
verdict from its metrics here, independently of the study code: a verdict
must follow from the numbers it reports. Smoke runs are too small for the
verdicts to mean anything about weight decay; the quick run does that.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decaytx

ROOT = pathlib.Path(__file__).resolve().parents[1]
IDS = [
    "prevents-overfitting",
    "keeps-weights-small",
    "l1-sparsity",
    "elastic-net-both",
    "sgd-l2-equals-decoupled",
    "adam-l2-differs-from-adamw",
    "decoupled-hyperparameter-landscape",
    "schedule-coupling",
    "matches-sklearn-lasso",
]


def _run_smoke(out: pathlib.Path) -> tuple[int, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # The smoke runs are compile-bound; cheaper XLA optimisation halves them.
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments", "all", "--smoke", "--out", str(out), "--seed", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    return proc.returncode, proc.stdout if proc.returncode == 0 else proc.stderr[-4000:]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, str]:
    """Runs the smoke job once per test session, even under pytest-xdist:
    the first worker runs it, the others wait for its result."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of one session
    out, done = root / "experiments-smoke", root / "experiments-smoke.done"
    try:
        os.close(os.open(root / "experiments-smoke.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        deadline = time.monotonic() + 900
        while not done.exists():
            assert time.monotonic() < deadline, "the smoke run of another worker did not finish"
            time.sleep(0.5)
    else:
        rc, text = _run_smoke(out)
        tmp = root / "experiments-smoke.tmp"
        tmp.write_text(f"{rc}\n{text}")
        tmp.replace(done)
    rc_line, text = done.read_text().split("\n", 1)
    assert rc_line == "0", text
    return out, text


@pytest.fixture(scope="module")
def claims(smoke: tuple[pathlib.Path, str]) -> dict[str, dict]:
    data = json.loads((smoke[0] / "results.json").read_text())
    return {c["id"]: c for c in data["claims"]}


def test_results_schema_and_figures(smoke, claims):
    out, _ = smoke
    data = json.loads((out / "results.json").read_text())
    assert [c["id"] for c in data["claims"]] == IDS
    for c in data["claims"]:
        assert {"id", "statement", "holds", "metrics", "figure"} <= set(c)
        assert isinstance(c["holds"], bool)
        assert isinstance(c["statement"], str) and c["statement"]
        assert isinstance(c["metrics"], dict) and c["metrics"]
        png = out / c["figure"]
        assert c["figure"].endswith(".png") and png.exists()
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert data["meta"]["mode"] == "smoke" and data["meta"]["seed"] == 0


def test_report_and_summary(smoke, claims):
    out, stdout = smoke
    report = (out / "report.md").read_text()
    for cid, c in claims.items():
        assert f"## {cid}" in report
        assert f"]({c['figure']})" in report
        assert cid in stdout  # the summary table
    assert "does not hold" in report or "holds" in report


def _num(x) -> float:
    return math.nan if x is None else float(x)


def test_sgd_l2_equals_decoupled_max_diff(claims):
    m = claims["sgd-l2-equals-decoupled"]["metrics"]
    assert m["max_abs_diff"] <= 1e-5
    assert claims["sgd-l2-equals-decoupled"]["holds"]
    # and the contrast really is a contrast: with momentum they differ
    assert m["momentum_max_abs_diff"] > 1e-3


def test_lasso_matches_sklearn_even_in_smoke_mode(claims):
    m = claims["matches-sklearn-lasso"]["metrics"]
    assert m["max_abs_diff"] <= 1e-3 and m["support_agreement"] >= 0.99


# Each verdict recomputed from the reported metrics, written out again here.
def _recompute(cid: str, m: dict) -> bool:
    if cid == "prevents-overfitting":
        return m["gap_reduction"] > 0 and m["gap_reduction"] > 2 * m["gap_reduction_se"]
    if cid == "keeps-weights-small":
        ok = True
        for s in m["setups"].values():
            red = s["final_weight_norm_none"] - s["final_weight_norm_decay"]
            assert red == pytest.approx(s["norm_reduction"], rel=1e-4, abs=1e-6)
            ok &= s["norm_reduction"] > 0 and s["norm_reduction"] > 2 * s["norm_reduction_se"]
        grad = all(s["max_grad_decay"] < s["max_grad_none"] for s in m["setups"].values())
        assert m["gradient_claim_holds"] == grad
        return ok
    if cid == "l1-sparsity":
        r = m["at_reference"]
        i = m["l1_grid"].index(m["l1_reference"])
        assert r["prox"]["zero_frac"] == pytest.approx(m["prox_zero_frac"][i])
        return (r["prox"]["zero_frac"] >= 0.1 and r["prox"]["small_frac"] >= 5 * r["none"]["small_frac"]
                and r["subgradient"]["small_frac"] >= 5 * r["none"]["small_frac"])
    if cid == "elastic-net-both":
        r = m["rows"]
        en = r["elastic net (prox_elastic_net)"]
        return (en["zero_frac"] >= 0.1 and en["zero_frac"] > r["L2 (add_l2_grad)"]["zero_frac"] + 0.05
                and en["weight_norm"] < r["L1 (prox_l1)"]["weight_norm"]
                and en["weight_norm"] < r["none"]["weight_norm"])
    if cid == "sgd-l2-equals-decoupled":
        plain = [v["max_abs_diff"] for k, v in m["pairs"].items() if "contrast" not in k]
        assert m["max_abs_diff"] == max(plain)
        return m["max_abs_diff"] <= 1e-5
    if cid == "adam-l2-differs-from-adamw":
        return min(m["max_abs_diff_by_wd"]) > 1e-3
    if cid == "decoupled-hyperparameter-landscape":
        s = {k: _num(v) for k, v in m["spread_decades"].items()}
        for k, best in m["best_wd_per_lr"].items():  # spread = range of log10 best wd
            logs = [math.log10(b) for b in best if b is not None]
            expect = max(logs) - min(logs) if len(logs) >= 2 else math.nan
            assert (math.isnan(expect) and math.isnan(s[k])) or expect == pytest.approx(s[k], abs=1e-9)
        return s["AdamW, m=1 (paper)"] < s["Adam+L2"] and s["SGDW, m=1 (paper)"] < s["SGD+L2 (momentum 0.9)"]
    if cid == "schedule-coupling":
        s = m["late_shrink"]
        return s["none"] > 2 * s["lr"] and s["corrected"] <= s["lr"] + 1e-3
    if cid == "matches-sklearn-lasso":
        assert m["max_abs_diff"] == pytest.approx(max(m["max_abs_diff_by_alpha"]))
        return m["max_abs_diff"] <= 1e-3 and m["support_agreement"] >= 0.99
    raise AssertionError(f"no recomputation for {cid}")


@pytest.mark.parametrize("cid", IDS)
def test_verdict_follows_from_metrics(claims, cid):
    assert claims[cid]["holds"] == _recompute(cid, claims[cid]["metrics"])


def test_help_lists_every_study():
    from experiments.cli import parser

    text = parser().format_help()
    for cid in [*IDS, "all", "bench", "--quick", "--seed", "--out"]:
        assert cid in text


def test_lasso_path_is_reproducible_and_matches_closed_form():
    from experiments.study_lasso import make_data, proximal_path

    # Orthonormal design: the lasso solution is soft_threshold(X'y/n, alpha)
    # in closed form (X'X/n = I), an independent reference.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((40, 5)))
    x = q * np.sqrt(40)
    y = x @ np.array([2.0, -1.0, 0.0, 0.5, 0.0]) + 0.1 * rng.standard_normal(40)
    alphas = np.array([0.05, 0.3, 1.0])
    z = x.T @ y / 40
    ref = np.sign(z)[:, None] * np.maximum(np.abs(z)[:, None] - alphas[None, :], 0)
    a = proximal_path(x, y, alphas, 500)
    np.testing.assert_allclose(a, ref, atol=1e-5)
    assert np.array_equal(a == 0, ref == 0)
    np.testing.assert_array_equal(a, proximal_path(x, y, alphas, 500))
    x1, y1, w1 = make_data(3)
    x2, y2, w2 = make_data(3)
    assert np.array_equal(x1, x2) and np.array_equal(w1, w2)
    assert not np.array_equal(make_data(4)[2], w1)


def test_schedule_closing_over_vmapped_value_matches_closed_form():
    """Regression (core): a schedule closing over a vmapped hyperparameter
    used to crash init (the schedule grid check tried to read traced values)."""
    base = optax.cosine_decay_schedule(0.1, 10)
    theta, g, wd = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.25]), 0.3

    def two_steps(scale):
        lr = lambda t: scale * base(t)  # noqa: E731
        opt = optax.chain(optax.scale_by_learning_rate(lr), decaytx.add_decoupled_decay(wd, learning_rate=lr))
        state = opt.init(theta)
        p = theta
        for _ in range(2):
            u, state = opt.update(g, state, p)
            p = optax.apply_updates(p, u)
        return p

    scales = np.array([1.0, 2.0])
    got = jax.jit(jax.vmap(two_steps))(jnp.asarray(scales))
    for s, row in zip(scales, np.asarray(got)):
        p = np.array([1.0, -2.0])
        for t in range(2):
            eta = s * 0.1 * 0.5 * (1 + np.cos(np.pi * t / 10))
            p = p - eta * np.array([0.5, 0.25]) - eta * wd * p
        np.testing.assert_allclose(row, p, rtol=1e-6)


@pytest.mark.parametrize(
    "name",
    ["sgd_l2", "sgd_l2_momentum", "sgdw", "sgdw_momentum_m1", "adam_l2", "adamw", "adamw_m1", "proximal_sgd"],
)
def test_study_chains_are_the_recipes(name):
    """The studies' explicit chains take the same steps as decaytx's recipes."""
    from experiments import chains

    k = chains.KERNELS
    pairs = {
        "sgd_l2": (chains.sgd_l2(0.1, 0.01), decaytx.sgd_l2(0.1, 0.01, mask=k)),
        "sgd_l2_momentum": (chains.sgd_l2(0.1, 0.01, momentum=0.9), decaytx.sgd_l2(0.1, 0.01, momentum=0.9, mask=k)),
        "sgdw": (chains.sgdw(0.1, 0.01), decaytx.sgdw(0.1, 0.01, mask=k)),
        "sgdw_momentum_m1": (chains.sgdw(0.1, 0.01, momentum=0.9, multiplier=None),
                             decaytx.sgdw(0.1, 0.01, momentum=0.9, mask=k, decay_scaling="none")),
        "adam_l2": (chains.adam_l2(1e-2, 0.1), decaytx.adam_l2(1e-2, 0.1, mask=k)),
        "adamw": (chains.adamw(1e-2, 0.1), decaytx.adamw(1e-2, 0.1, mask=k)),
        "adamw_m1": (chains.adamw(1e-2, 0.1, multiplier=None), decaytx.adamw(1e-2, 0.1, mask=k, decay_scaling="none")),
        "proximal_sgd": (
            chains.sgd_penalties(0.1, {"l1_sub": 0.0, "en_sub_l1": 0.0, "en_sub_l2": 0.0, "l2": 0.0,
                                       "prox_l1": 0.05, "prox_l2": 0.0}),
            decaytx.proximal_sgd(0.1, 0.05, mask=k),
        ),
    }
    ours, recipe = pairs[name]
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((3, 4)), jnp.float32), "b": jnp.ones(4, jnp.float32)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params) for _ in range(4)]
    outs = []
    for opt in (ours, recipe):
        p, s = params, opt.init(params)
        for g in grads:
            u, s = opt.update(g, s, p)
            p = optax.apply_updates(p, u)
        outs.append(p)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), *outs)
