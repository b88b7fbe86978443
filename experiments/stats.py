"""Statistics for the verdicts: t intervals, paired bootstraps over seeds AND test
examples, and the best-wd slope of a landscape with censoring of grid-edge optima.

All intervals are 95%. With n seeds, a t interval uses the t quantile with
n - 1 degrees of freedom (never "2 s.e."). A bootstrap resamples seeds
(multinomial counts) and test examples (multinomial weights, the same for
every configuration, so differences stay paired) jointly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

LEVEL = 0.95


def t_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t interval of the mean of ``x`` (1-D, n >= 2)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    m = float(x.mean())
    if n < 2:
        return m, math.nan, math.nan
    h = float(sps.t.ppf(0.5 + LEVEL / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - h, m + h


def resample_weights(n_seeds: int, n_examples: int, b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap weights: seeds [b, n_seeds] and examples [n_examples, b], each summing to 1."""
    ws = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=b) / n_seeds
    we = rng.multinomial(n_examples, np.full(n_examples, 1 / n_examples), size=b).T / n_examples
    return ws.astype(np.float64), we.astype(np.float32)


def boot_error(correct: np.ndarray, ws: np.ndarray, we: np.ndarray) -> np.ndarray:
    """Error rates under resampling: correct [..., seeds, examples] -> [..., b]."""
    lead = correct.shape[:-2]
    s, n = correct.shape[-2:]
    acc = correct.reshape(-1, n).astype(np.float32) @ we  # [cells*seeds, b]
    acc = acc.reshape(*lead, s, -1)
    return 1.0 - np.einsum("...sb,bs->...b", acc.astype(np.float64), ws)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, b: int, seed: int) -> dict[str, float]:
    """Test error of a minus b, paired: [seeds, examples] each. Mean and 95% percentile CI."""
    rng = np.random.default_rng([seed, 23])
    ws, we = resample_weights(correct_a.shape[0], correct_a.shape[1], b, rng)
    d = boot_error(correct_a, ws, we) - boot_error(correct_b, ws, we)
    diff = float((1 - correct_a.mean()) - (1 - correct_b.mean()))
    lo, hi = np.quantile(d, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"diff": diff, "ci": [float(lo), float(hi)]}


def best_log_wd(row: np.ndarray, log_wd: np.ndarray) -> float | None:
    """log10 of the best wd of one lr row, or None if censored.

    The argmin refined by the vertex of the parabola through it and its two
    neighbours (sub-grid resolution, clipped to the neighbours). An argmin on
    the first or last column is CENSORED: the true optimum may lie off the
    grid, so the row is left out of the slope fit.
    """
    if not np.all(np.isfinite(row)):
        row = np.where(np.isfinite(row), row, np.inf)
    i = int(np.argmin(row))
    if i == 0 or i == len(row) - 1:
        return None
    y0, y1, y2 = row[i - 1], row[i], row[i + 1]
    h = log_wd[i + 1] - log_wd[i]
    denom = y0 - 2 * y1 + y2
    shift = 0.0 if denom <= 0 else 0.5 * h * (y0 - y2) / denom
    return float(log_wd[i] + np.clip(shift, -h, h))


def slope(err: np.ndarray, log_lr: np.ndarray, log_wd: np.ndarray) -> tuple[float, list[float | None]]:
    """OLS slope of log10(best wd) on log10(lr) over the uncensored rows (nan if < 3)."""
    best = [best_log_wd(r, log_wd) for r in err]
    keep = [i for i, v in enumerate(best) if v is not None]
    if len(keep) < 3:
        return math.nan, best
    x, y = log_lr[keep], np.asarray([best[i] for i in keep])
    return float(np.polyfit(x, y, 1)[0]), best


def transfer_regret(err: np.ndarray) -> float:
    """Mean over lr rows of err[row, c*] - min(err[row]), where c* is the best wd
    column of the best row: the cost of tuning wd at one lr and keeping it."""
    r, c = np.unravel_index(int(np.nanargmin(err)), err.shape)
    return float(np.mean(err[:, c] - err.min(axis=1)))


def landscape_stats(correct: np.ndarray, log_lr: np.ndarray, log_wd: np.ndarray, b: int, seed: int) -> dict:
    """correct: bool [n_lr, n_wd, seeds, examples]. Slope (point and bootstrap CI),
    |slope| CI, regret CI, censored rows, best wd per lr."""
    err = 1.0 - correct.mean(axis=(2, 3))
    s, best = slope(err, log_lr, log_wd)
    rng = np.random.default_rng([seed, 29])
    ws, we = resample_weights(correct.shape[2], correct.shape[3], b, rng)
    boot = boot_error(correct, ws, we)  # [n_lr, n_wd, b]
    slopes = np.array([slope(boot[..., k], log_lr, log_wd)[0] for k in range(b)])
    regrets = np.array([transfer_regret(boot[..., k]) for k in range(b)])
    ok = np.isfinite(slopes)
    q = [(1 - LEVEL) / 2, (1 + LEVEL) / 2]
    return {
        "slope": s,
        "slope_ci": [float(v) for v in np.quantile(slopes[ok], q)] if ok.any() else [math.nan, math.nan],
        "abs_slope_ci": [float(v) for v in np.quantile(np.abs(slopes[ok]), q)] if ok.any() else [math.nan, math.nan],
        "bootstrap_defined_fraction": float(ok.mean()),
        "censored_rows": [i for i, v in enumerate(best) if v is None],
        "best_wd_by_lr": [None if v is None else float(10**v) for v in best],
        "regret": transfer_regret(err),
        "regret_ci": [float(v) for v in np.quantile(regrets, q)],
        "best_error": float(err.min()),
        "test_error": err,
    }


ROW_FACTOR = 2.0  # a landscape row counts when its best error is <= 2x the grid's best
MIN_ROWS = 4  # a slope needs at least this many counted, uncensored rows


def counted_rows(err: np.ndarray, factor: float = ROW_FACTOR) -> list[int]:
    """Rows (learning rates) whose best error is at most ``factor`` x the grid's best:
    a row where no weight decay trains well says nothing about where the best one is."""
    best = np.nanmin(err, axis=1)
    return [i for i, v in enumerate(best) if v <= factor * float(np.nanmin(err))]


def filtered_slope(err: np.ndarray, log_lr: np.ndarray, log_wd: np.ndarray, rows: list[int]) -> float:
    """OLS slope of log10(best wd) on log10(lr) over ``rows``' uncensored rows (nan if < MIN_ROWS)."""
    best = [best_log_wd(err[i], log_wd) for i in rows]
    keep = [(log_lr[i], v) for i, v in zip(rows, best) if v is not None]
    if len(keep) < MIN_ROWS:
        return math.nan
    x, y = np.asarray(keep).T
    return float(np.polyfit(x, y, 1)[0])


def slope_difference(correct: dict[str, np.ndarray], grids: dict[str, tuple[np.ndarray, np.ndarray]],
                     pair: tuple[str, str], b: int, seed: int) -> dict:
    """|slope(L2)| - |slope(decoupled)| for ``pair = (l2, decoupled)``, each over its counted rows
    (fixed from the point estimate), with a 95% bootstrap CI; both families use the SAME resamples
    of seeds and test examples (they share seeds and test set), so the difference is paired."""
    rng = np.random.default_rng([seed, 31])
    n_seeds, n_examples = correct[pair[0]].shape[2:]
    ws, we = resample_weights(n_seeds, n_examples, b, rng)
    out: dict = {}
    boots = {}
    for name in pair:
        err = 1.0 - correct[name].mean(axis=(2, 3))
        rows = counted_rows(err)
        boot = boot_error(correct[name], ws, we)  # [n_lr, n_wd, b]
        boots[name] = np.array([filtered_slope(boot[..., k], *grids[name], rows) for k in range(b)])
        out[name] = {"counted_rows": rows, "slope": filtered_slope(err, *grids[name], rows)}
    d = np.abs(boots[pair[0]]) - np.abs(boots[pair[1]])
    ok = np.isfinite(d)
    q = [(1 - LEVEL) / 2, (1 + LEVEL) / 2]
    for name in pair:
        fine = np.isfinite(boots[name])
        out[name]["slope_ci"] = [float(v) for v in np.quantile(boots[name][fine], q)] if fine.any() else [math.nan] * 2
    out["difference"] = abs(out[pair[0]]["slope"]) - abs(out[pair[1]]["slope"])
    out["difference_ci"] = [float(v) for v in np.quantile(d[ok], q)] if ok.any() else [math.nan, math.nan]
    out["defined_fraction"] = float(ok.mean())
    return out
