"""The benchmark scripts run end to end and write their outputs.

Smoke runs at tiny sizes: they check that every section is produced and that
the deterministic parts agree with the compiled-cost tests, never a timing.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from experiments import _hlo, bench

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = bench.run(out, bench.config("tiny"), seed=0, log=lambda s: None)
    return out, result


def test_bench_writes_json_report_and_plots(tiny_run):
    out, result = tiny_run
    for name in ("bench.json", "BENCHMARKS.md", "scaling_leaves.png", "scaling_params.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "bench.json").read_text())
    assert data["machine"]["versions"]["jax"]
    assert data["machine"]["date"]
    md = (out / "BENCHMARKS.md").read_text()
    for heading in ("## 1. Compiled cost", "### 2. Step-time ratios", "### 4. Bandwidth", "## 5. Scaling"):
        assert heading in md


def test_bench_covers_every_form_and_contender(tiny_run):
    _, result = tiny_run
    names = {f.name for f in _hlo.forms()}
    assert {r["form"] for r in result["hlo"]["rows"]} == names
    for tree in result["trees"]:
        assert names | {"decaytx.adamw / optax.adamw"} <= set(tree["ratios"])
        for name in names:
            row = tree["variants"][name]
            assert row["reps"] == bench.config("tiny").reps
            assert row["nominal_bytes_per_param"] in (12, 16, 20, 28, 32)
        # PyTorch is an optional extra; when installed all its AdamWs run.
        try:
            import torch  # noqa: F401
        except ImportError:
            continue
        assert "optax.adamw / torch.AdamW (fused)" in tree["ratios"]


def test_bench_hlo_table_shows_decay_is_free(tiny_run):
    _, result = tiny_run
    for row in result["hlo"]["rows"]:
        assert row["equal_fusions"] and row["equal_temp_bytes"], row["form"]
        assert (row["extra_state_bytes"] > 0) == row["anchor"], row["form"]


def test_gpu_bench_runs_on_cpu_at_tiny_size(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu_bench.py"), "--size", "4096",
         "--rounds", "1", "--steps", "2", "--warmup", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert data["params"] == 4096
    assert len(data["variants"]) == 11
    fusions = {v["array_fusions"] for v in data["variants"].values()}
    assert len(fusions) == 1  # decay adds no params-sized kernel
    assert (tmp_path / "gpu_bench.md").read_text().startswith("## GPU:")


def test_cli_entry_point_parses(tmp_path):
    # `python -m experiments.bench --tiny` is the stand-alone entry point.
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.bench", "--help"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout


def test_publish_copies_report_and_plots(tiny_run, tmp_path):
    out, _ = tiny_run
    bench.publish(out, root=tmp_path)
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "docs/assets/bench/scaling_leaves.png" in md
    assert (tmp_path / "docs" / "assets" / "bench" / "scaling_params.png").exists()
