"""The experiments CLI end to end, in --smoke mode (tiny runs, seconds per study),
and the MNIST-1D building blocks against independent references.

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
    "decoupled-hyperparameter-landscape",
    "cautious-decay",
    "adamw-rotational-equilibrium",
    "corrected-decay",
    "prevents-overfitting",
    "keeps-weights-small",
    "anchor-toward-pretrained",
    "l1-sparsity",
    "elastic-net-both",
    "group-lasso-filters",
    "sgd-l2-equals-decoupled",
    "schedule-coupling",
    "weight-decay-transfer",
    "matches-sklearn-lasso",
]
FULL_ONLY = ["weight-decay-transfer"]  # left out of quick runs


def _run_smoke(out: pathlib.Path) -> tuple[int, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # `python -m experiments ... --smoke` sets its own cheaper XLA flags (experiments/__main__.py).
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
        assert c["checks"] and c["holds"] == all(c["checks"].values())
        assert all(part in report for part, ok in c["checks"].items() if not ok)  # says what failed
    assert "does not hold" in report or "holds" in report
    assert len(report.encode()) < 20_000  # for reading; the raw metrics are in results.json
    assert max(len(line) for line in stdout.splitlines()) <= 100  # the terminal output fits 100 columns
    assert "estimated work done" in stdout and "left" in stdout  # progress: overall position, time left


def test_key_numbers_never_word_a_verdict(claims):
    """A verdict and its key number never disagree in wording: the key number states numbers only."""
    for c in claims.values():
        assert "hold" not in c["key_number"], c["key_number"]


def _num(x) -> float:
    return math.nan if x is None else float(x)


def test_sgd_l2_equals_decoupled_in_float64_even_in_smoke_mode(claims):
    m = claims["sgd-l2-equals-decoupled"]["metrics"]
    assert m["float64_max_gap"] <= 1e-10 and m["float64_min_control"] > 1e-8
    assert claims["sgd-l2-equals-decoupled"]["holds"]
    # and the contrast really is a contrast: with momentum they differ
    assert m["momentum_contrast_float64"] > 1e-6


def test_lasso_matches_sklearn_even_in_smoke_mode(claims):
    m = claims["matches-sklearn-lasso"]["metrics"]
    assert m["max_abs_diff"] <= 1e-3 and m["support_agreement"] >= 0.99


def _slope(err: np.ndarray, lrs: list[float], wds: list[float]) -> float:
    """Best log10 wd per lr row (argmin refined by the parabola's vertex, edge rows
    dropped), then the least-squares slope on log10 lr; written out again here."""
    lw, ll = np.log10(wds), np.log10(lrs)
    xs, ys = [], []
    for k, row in enumerate(err):
        i = int(np.argmin(row))
        if 0 < i < len(row) - 1:
            a, b, c = row[i - 1], row[i], row[i + 1]
            h = lw[1] - lw[0]
            v = lw[i] + (min(max(0.5 * h * (a - c) / (a - 2 * b + c), -h), h) if a - 2 * b + c > 0 else 0.0)
            xs.append(ll[k])
            ys.append(v)
    if len(xs) < 3:
        return math.nan
    x, y = np.asarray(xs), np.asarray(ys)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


def _counted_slope(err: np.ndarray, lrs: list[float], wds: list[float]) -> float:
    """The landscape's pre-registered slope, written out again: rows whose best error is <= 2x the
    grid's best count; edge optima censored; nan with fewer than 4 counted uncensored rows."""
    err = np.asarray(err, np.float64)
    keep = [k for k in range(len(err)) if err[k].min() <= 2 * err.min()]
    sub = err[keep]
    if sum(0 < int(np.argmin(r)) < len(r) - 1 for r in sub) < 4:
        return math.nan
    return _slope(sub, [lrs[k] for k in keep], wds)


MNIST1D = [i for i in IDS if i != "matches-sklearn-lasso"]


@pytest.mark.parametrize("cid", MNIST1D)
def test_mnist1d_claims_name_dataset_model_seeds(claims, cid):
    m = claims[cid]["metrics"]
    assert m["dataset"].startswith("mnist1d") and m["model"] and m["seeds"] >= 2
    if cid == "decoupled-hyperparameter-landscape":
        assert len(m["families"]) == 5 and set(m["paired"]) == {"Adam", "SGD"}
        for name, f in m["families"].items():
            assert len(f["slope_ci"]) == 2 and len(f["best_wd_by_lr"]) == len(m["lr_grid"][name])
            assert 0 <= f["best_error"] <= 1


# Each verdict recomputed from the reported metrics, written out again here.
def _t_lo(x: list[float]) -> tuple[float, float]:
    """Mean and lower bound of the 95% t interval, from scipy's t quantile."""
    from scipy.stats import t as student

    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.mean() - student.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def _path_ok(prox: list[float], sub: list[float], m: dict) -> bool:
    rises = all(b >= a - m["rise_slack"] for a, b in zip(prox, prox[1:]))
    return rises and prox[-1] >= m["end_zeros"] and max(sub) < m["sub_zeros"]


def _stratified_p(failed_none: list[list[int]], failed_l2: list[list[int]]) -> float:
    """P(no-decay failures >= observed) given each lr's margins, by enumerating every table
    (hypergeometric probabilities from binomial coefficients)."""
    import itertools

    pmfs = []
    for a, b in zip(failed_none, failed_l2):
        k, n = sum(a) + sum(b), len(a)
        pmfs.append([math.comb(k, x) * math.comb(2 * n - k, n - x) / math.comb(2 * n, n) for x in range(n + 1)])
    observed = sum(map(sum, failed_none))
    return sum(math.prod(pmf[x] for pmf, x in zip(pmfs, xs))
               for xs in itertools.product(*[range(len(pmf)) for pmf in pmfs]) if sum(xs) >= observed)


def _recompute(cid: str, m: dict) -> bool:
    if cid == "prevents-overfitting":
        for st in m["settings"].values():
            assert st["test_gain"] == pytest.approx(st["test_acc_decay"] - st["test_acc_none"], abs=1e-6)
            assert st["test_gain_ci"][0] <= st["test_gain_ci"][1]
        return all(st["test_gain_ci"][0] > 0 for st in m["settings"].values())
    if cid == "keeps-weights-small":
        # λ tuned on validation at the stable lr before the sweep: the best mean accuracy (first on a tie)
        acc = m["l2_val_acc"]
        assert m["l2"] == m["l2_grid"][acc.index(max(acc))] and m["tune_lr"] == m["lr_grid"][0]
        fn, fl = m["failed"]["no decay"], m["failed"]["L2"]
        assert (sum(map(sum, fn)), sum(map(sum, fl))) == (m["failures_no_decay"], m["failures_decay"])
        assert m["stratified_p"] == pytest.approx(_stratified_p(fn, fl), rel=1e-6, abs=1e-12)
        crit = {arm: [next((lr for lr, row in zip(m["lr_grid"], f) if row[s]), None) for s in range(m["seeds"])]
                for arm, f in (("no decay", fn), ("L2", fl))}
        assert crit == m["critical_lr"]
        inf = lambda v: math.inf if v is None else v  # noqa: E731
        ok = all(inf(b) >= inf(a) for a, b in zip(crit["no decay"], crit["L2"]))
        return m["norm_reduction_ci"][0] > 0 and m["stratified_p"] < 0.05 and ok
    if cid == "anchor-toward-pretrained":
        d = m["domain_shift"]
        for task in ("domain_shift", "class_disjoint"):
            for form in ("toward 0", "toward init"):
                assert m[task][f"{form}: λ chosen on val"] in m["wd_grid"]
        assert d["init_vs_0"]["ci"][0] <= d["init_vs_0"]["ci"][1]
        return d["init_vs_0"]["ci"][0] > 0
    if cid == "cautious-decay":
        te, wds = m["test_error"], m["wd_grid"]
        i, j = wds.index(m["wd_plain_chosen_on_val"]), wds.index(m["wd_cautious_chosen_on_val"])
        assert m["at_adamw_wd"]["diff"] == pytest.approx(te["cautious"][i] - te["plain"][i], abs=1e-6)
        assert m["at_own_wd"]["diff"] == pytest.approx(te["cautious"][j] - te["plain"][i], abs=1e-6)
        return m["at_adamw_wd"]["ci"][1] < m["margin"] and m["at_own_wd"]["ci"][1] < m["margin"]
    if cid == "adamw-rotational-equilibrium":
        cv = m["cv_across_neurons"]
        mean, lo = _t_lo([a - b for a, b in zip(cv["Adam+L2"], cv["AdamW"])])
        assert (m["cv_difference"], m["cv_difference_ci"][0]) == pytest.approx((mean, lo), abs=1e-6)
        return lo > 0
    if cid == "corrected-decay":
        r = m["ratio_end_to_early"]
        for k, v in r.items():
            assert m["mean_ratio"][k] == pytest.approx(np.mean(v))
        mean, lo = _t_lo([math.log(a) - math.log(b) for a, b in zip(r["m = η_t"], r["m = η_t²/η_max (corrected)"])])
        assert (m["log_ratio_difference"], m["log_ratio_difference_ci"][0]) == pytest.approx((mean, lo), abs=1e-6)
        band = m["level_band"]
        return lo > 0 and band[0] <= m["mean_ratio"]["m = η_t²/η_max (corrected)"] <= band[1]
    if cid == "l1-sparsity":
        assert len(m["prox_zero_frac"]) == len(m["l1_path"]) == len(m["pruned_test_acc_at_prox_sparsity"])
        return _path_ok(m["prox_zero_frac"], m["subgradient_zero_frac"], m)
    if cid == "elastic-net-both":
        g = m["grouping"]
        grouping = (max(g["elastic net"]["max_abs_diff_vs_enet_path"], g["lasso"]["max_abs_diff_vs_enet_path"]) <= 1e-3
                    and g["elastic net"]["whole_block_fraction"] >= g["lasso"]["whole_block_fraction"] + 0.2)
        assert m["grouping_holds"] == grouping
        return grouping and _path_ok(m["prox_zero_frac"], m["subgradient_zero_frac"], m)
    if cid == "group-lasso-filters":
        return _group_lasso_verdict(m)
    if cid == "sgd-l2-equals-decoupled":
        g64 = m["relative_gap"]["float64"]
        gap = max(max(v[1:]) for k, v in g64.items() if k.endswith("L2 vs decoupled"))
        control = min(min(v[1:]) for k, v in g64.items() if k.endswith("(control)"))
        assert (m["float64_max_gap"], m["float64_min_control"]) == (gap, control)
        return gap <= m["tolerance"] and control > 100 * m["tolerance"]
    if cid == "decoupled-hyperparameter-landscape":
        f, ok = m["families"], []
        for p in m["paired"].values():  # the counted-row slopes, recomputed from the stored grids
            for name in [k for k in p if k in f]:
                want = _counted_slope(np.asarray(f[name]["test_error"]), m["lr_grid"][name], m["wd_grid"][name])
                assert (math.isnan(want) and math.isnan(_num(p[name]["slope"]))) or _num(p[name]["slope"]) == \
                    pytest.approx(want, abs=1e-6)
            ok.append(_num(p["difference_ci"][0]) > 0)
        return all(ok)
    if cid == "schedule-coupling":
        assert set(m["variants"]) == {"lr", "schedule", "none", "corrected"}
        s = m["late_shrink"]
        return s["none"] > 2 * s["lr"] and s["corrected"] <= s["lr"] + 1e-3
    if cid == "weight-decay-transfer":
        for name in ("dataset size", "training length"):  # the slopes, recomputed from the stored grids
            r = m[name]
            want = _slope(np.asarray(r["test_error"]), r["x"], m["wd_grid"])
            assert (r["slope"] is None and math.isnan(want)) or _num(r["slope"]) == pytest.approx(want, abs=1e-6)
        lo, hi = (_num(v) for v in m["dataset size"]["slope_ci"])
        return hi < 0 and lo <= -1 <= hi
    if cid == "matches-sklearn-lasso":
        assert m["max_abs_diff"] == pytest.approx(max(m["max_abs_diff_by_alpha"]))
        return m["max_abs_diff"] <= 1e-3 and m["support_agreement"] >= 0.99
    raise AssertionError(f"no recomputation for {cid}")


def _group_lasso_verdict(m: dict) -> bool:
    """L1 matched to each group-lasso point per seed by linear interpolation along its path at the same
    zero fraction; paired t CI of filters removed (group lasso - L1) above 0 at every point with
    >= min_zeros zeros inside every seed's L1 range; >= min_matched such points; enough filters at the end."""
    ps = m["per_seed"]
    gz, gf = np.asarray(ps["group_zero_frac"]), np.asarray(ps["group_filters_removed"])
    lz, lf = np.asarray(ps["l1_zero_frac"]), np.asarray(ps["l1_filters_removed"])
    assert gz.mean(axis=1) == pytest.approx(m["group_zero_frac"]) and gf.mean(axis=1) == pytest.approx(m["group_filters_removed"])
    points = []
    for i, lam in enumerate(m["group_path"]):
        at = []
        for s in range(gz.shape[1]):
            xs, ys = zip(*sorted(zip(lz[:, s], lf[:, s])))
            at.append(float(np.interp(gz[i, s], xs, ys)) if xs[0] <= gz[i, s] <= xs[-1] else math.nan)
        if gz[i].mean() >= m["min_zeros"] and not any(map(math.isnan, at)):
            points.append((lam, *_t_lo(list(gf[i] - np.asarray(at)))))
    assert [p[0] for p in points] == [p["group_l1"] for p in m["matched_points"]]
    for (_, mean, lo), p in zip(points, m["matched_points"]):
        assert (p["filters_diff"], p["filters_diff_ci"][0]) == pytest.approx((mean, lo), abs=1e-6)
    return gf[-1].mean() >= m["end_filters"] and len(points) >= m["min_matched"] and bool(points) \
        and all(lo > 0 for _, _, lo in points)


def test_group_lasso_structure_counts_zero_weights_and_whole_filters():
    """Zero fraction, whole zero filters (output columns) and the zeros' share in them, on kernels
    written out by hand (one run of two)."""
    from experiments.study_group_lasso import structure

    w0 = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0]])  # column 0 whole zero, one scattered zero
    w1 = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 5.0]])  # column 0 whole zero, two scattered zeros
    params = {"conv0": {"w": np.stack([w0, w0 + 9])}, "conv1": {"w": np.stack([w1, w1 + 9])},
              "head": {"w": np.zeros((2, 4, 2))}}
    got = structure(params, 0)
    assert got["zero_frac"] == pytest.approx(8 / 12)
    assert got["filters_removed"] == pytest.approx(2 / 5)
    assert got["zeros_in_whole_filters"] == pytest.approx(5 / 8)
    assert structure(params, 1)["filters_removed"] == 0.0


@pytest.mark.parametrize("cid", IDS)
def test_verdict_follows_from_metrics(claims, cid):
    assert claims[cid]["holds"] == _recompute(cid, claims[cid]["metrics"])


COMMITTED = {"quick": ROOT / "docs/img/experiments/results-quick.json",
             "full": ROOT / "docs/img/experiments-full/results-full.json"}


def _load(mode: str) -> tuple[pathlib.Path, dict]:
    path = COMMITTED[mode]
    data = json.loads(path.read_text())
    assert data["meta"]["mode"] == mode and not data["meta"].get("partial")
    return path, data


@pytest.mark.parametrize("mode", COMMITTED)
def test_committed_runs_verdicts_follow_from_their_metrics(mode):
    """The runs the docs show (quick and full, seed 0): complete, in their mode, every
    figure present, and every verdict recomputed from its own metrics as above."""
    path, data = _load(mode)
    assert [c["id"] for c in data["claims"]] == [i for i in IDS if mode == "full" or i not in FULL_ONLY]
    for c in data["claims"]:
        assert (path.parent / c["figure"]).exists(), c["figure"]
        assert c["holds"] == _recompute(c["id"], c["metrics"]), c["id"]


@pytest.mark.parametrize("mode", COMMITTED)
def test_committed_landscape_slopes_recompute_from_its_per_example_correctness(mode):
    """The committed landscapes ship each grid run's per-example test correctness:
    the error grids, and from them the counted-row slopes, are recomputed here."""
    path, data = _load(mode)
    m = next(c for c in data["claims"] if c["id"] == IDS[0])["metrics"]
    with np.load(path.parent / m["correctness"]["file"]) as z:
        for name, key in m["correctness"]["keys"].items():
            shape = tuple(z[key + "_shape"])
            correct = np.unpackbits(z[key], axis=-1, count=shape[-1]).reshape(shape).astype(bool)
            err = 1.0 - correct.mean(axis=(2, 3))
            np.testing.assert_allclose(err, m["families"][name]["test_error"], atol=1e-9)
            for p in m["paired"].values():
                if name in p:
                    want = _counted_slope(err, m["lr_grid"][name], m["wd_grid"][name])
                    assert _num(p[name]["slope"]) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_committed_second_seed_landscape_verdict_follows_from_its_metrics(mode):
    """The landscape's confirmation on seed 1 (quick and full): its verdict recomputed as above."""
    folder = "experiments" if mode == "quick" else "experiments-full"
    data = json.loads((ROOT / f"docs/img/{folder}/landscape-seed1-{mode}.json").read_text())
    assert data["meta"]["seed"] == 1 and data["meta"]["mode"] == mode and not data["meta"].get("partial")
    (c,) = data["claims"]
    assert c["id"] == IDS[0] and c["holds"] == _recompute(c["id"], c["metrics"])


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


def test_im2col_conv_matches_lax_conv():
    """The studies' im2col convolution against XLA's convolution (independent reference)."""
    from experiments.nets import conv1d

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 40, 2)), jnp.float32)
    w = rng.standard_normal((5, 2, 4)).astype(np.float32)  # [k, c_in, c_out]
    got = conv1d(x, jnp.asarray(w.reshape(10, 4)), 5, 2)
    ref = jax.lax.conv_general_dilated(x, jnp.asarray(w), (2,), [(2, 2)], dimension_numbers=("NWC", "WIO", "NWC"))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_best_wd_vertex_censoring_and_t_interval():
    from experiments import stats

    lw = np.linspace(-4, 0, 9)
    row = (lw + 1.7) ** 2  # exact parabola: the vertex is recovered between grid points
    assert stats.best_log_wd(row, lw) == pytest.approx(-1.7)
    assert stats.best_log_wd(lw, lw) is None and stats.best_log_wd(-lw, lw) is None  # edge optima censored
    m, lo, hi = stats.t_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    half = 3.182446305284263 * np.std([1, 2, 3, 4], ddof=1) / 2  # t_{0.975, 3}
    assert (m, lo, hi) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
    c = np.random.default_rng(1).random((4, 50)) < 0.8
    same = stats.paired_bootstrap(c, c, 50, 0)
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0]


def test_mnist1d_label_noise_and_classes(tmp_path):
    from experiments import mnist1d_data

    clean = mnist1d_data.load(tmp_path, 300, 50, 50, 0)
    noisy = mnist1d_data.load(tmp_path, 300, 50, 50, 0, label_noise=0.25)
    flipped = np.mean(np.asarray(clean.y_train) != np.asarray(noisy.y_train))
    assert 0.15 < flipped < 0.35
    assert np.array_equal(np.asarray(clean.y_test), np.asarray(noisy.y_test))  # test labels untouched
    sub = mnist1d_data.load(tmp_path, 300, 50, 50, 0, classes=(5, 6, 7, 8, 9))
    assert set(np.unique(np.asarray(sub.y_train))) <= set(range(5))
