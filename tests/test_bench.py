"""The benchmark package's deterministic parts, and smoke runs at tiny sizes.

No timing is asserted: tree sizes, HLO counting (against hand-written HLO and
hand-counted bytes), the bootstrap's exact cases, the two processes' flags,
report rendering from one tiny run, the CLI, and the GPU script on CPU.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import cli, gpu, hlo, report, timing, trees

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"


def test_trees_have_the_issue_sizes():
    t1, t100, t309, small = trees.config("quick").trees
    assert [t.leaves for t in (t1, t100, t309, small)] == [1, 100, 309, 309]
    for t in (t1, t100, t309):
        assert abs(t.size - 16 * 2**20) / (16 * 2**20) < 0.03, (t.label, t.size)
    assert 0.45 * 2**20 < small.size < 0.55 * 2**20, small.size
    assert t.size == sum(math.prod(s) for _, s in t.shapes)
    assert len({k for k, _ in t309.shapes}) == 309  # unique paths


def test_make_params_matches_shapes():
    t = trees.layered(6, 300)
    p, g = trees.make_params(t, np.random.default_rng(0))
    assert {k: v.shape for k, v in p.items()} == dict(t.shapes) == {k: v.shape for k, v in g.items()}
    assert all(v.dtype == np.float32 for v in p.values())


def test_config_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode='huge'"):
        trees.config("huge")


def test_shape_bytes_and_scalars_by_hand():
    assert hlo.shape_bytes("f32[10,4]{1,0}") == 160
    assert hlo.shape_bytes("(f32[], bf16[8]{0})") == 4 + 16
    assert hlo.is_scalar_shape("(f32[], s32[])") and not hlo.is_scalar_shape("f32[3]{0}")


HLO = """HloModule m

ENTRY %main (a: f32[1000], b: f32[1000]) -> (f32[1000], f32[]) {
  %a = f32[1000]{0} parameter(0)
  %b = f32[1000]{0} parameter(1)
  %s = f32[] constant(2)
  %fusion.1 = f32[1000]{0} fusion(f32[1000]{0} %a, f32[1000]{0} %b, f32[] %s), kind=kLoop, calls=%f1
  %fusion.2 = f32[] fusion(f32[] %s), kind=kLoop, calls=%f2
  ROOT %t = (f32[1000]{0}, f32[]) tuple(%fusion.1, %fusion.2)
}
"""


def test_kernel_table_counts_a_hand_written_module():
    ks = hlo.kernel_table(HLO)
    assert [k["name"] for k in ks] == ["fusion.1", "fusion.2"]
    # fusion.1: reads a and b (4000 B each) and the scalar (4 B), writes 4000 B.
    assert ks[0]["array_inputs"] == 2 and ks[0]["bytes"] == 3 * 4000 + 4
    assert ks[1]["array_inputs"] == 0
    assert len(hlo.fusion_shapes(HLO)) == 2


def test_kernel_table_on_a_compiled_elementwise_step():
    n = 1024
    c = jax.jit(lambda x: x * 2.0 + 1.0).lower(jax.ShapeDtypeStruct((n,), jnp.float32)).compile()
    ks = [k for k in hlo.kernel_table(c.as_text()) if not hlo.is_scalar_shape(k["shape"])]
    assert len(ks) == 1 and ks[0]["array_inputs"] == 1
    assert ks[0]["bytes"] == 8 * n  # read x, write the result


def test_paired_ratio_exact_cases():
    rng = np.random.default_rng(0)
    b = rng.uniform(1, 2, 25)
    r = timing.paired_ratio(2 * b, b, rng)
    assert r["median"] == pytest.approx(2) and r["lo"] == pytest.approx(2) and r["hi"] == pytest.approx(2)
    a = b * rng.uniform(0.9, 1.1, 25)
    r = timing.paired_ratio(a, b, rng)
    assert r["lo"] <= r["median"] <= r["hi"]
    assert r["median"] == pytest.approx(np.median(a) / np.median(b))
    u = timing.paired_ratio(a[:10], b, rng, paired=False)
    assert not u["paired"] and u["lo"] <= u["hi"]
    with pytest.raises(ValueError, match="equal length"):
        timing.paired_ratio(a[:10], b, rng)


def test_worker_env_adds_or_removes_the_flag(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--xla_force_host_platform_device_count=2 {FLAG}")
    assert cli.worker_env("plain")["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    flags = cli.worker_env("flag")["XLA_FLAGS"].split()
    assert flags == ["--xla_force_host_platform_device_count=2", FLAG]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "experiments.bench", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, json.loads((out / "bench.json").read_text())


def test_tiny_run_has_both_processes_and_every_section(tiny_run):
    out, res = tiny_run
    plain, flag = res["workers"]["plain"], res["workers"]["flag"]
    assert not plain["multi_output_fusion_active"] and FLAG not in plain["xla_flags"]
    assert flag["multi_output_fusion_active"] and FLAG in flag["xla_flags"]
    for w in (plain, flag):
        names = set(w["trees"][0]["variants"])
        assert {"optax.adamw", "decaytx.fused.adamw", "decaytx.fused.adam_l2", "copy (jit x+1, donated)"} <= names
        assert set(w["train"]["variants"]) == {"optax.adamw", "decaytx.adamw", "decaytx.fused.adamw"}
        try:
            import torch  # noqa: F401
        except ImportError:
            continue
        assert any(k.startswith("torch.AdamW (fused, 1 thread)") for k in names)
    assert set(plain["init"]["cases"]) == {"warmup-cosine", "piecewise, 10 knots"}
    assert (out / "plain.json").exists() and (out / "flag.json").exists()


def test_tiny_run_kernel_counts(tiny_run):
    _, res = tiny_run
    kp, kf = res["workers"]["plain"]["kernels"]["steps"], res["workers"]["flag"]["kernels"]["steps"]
    # With the option: one params-sized kernel at the one-pass minimum; without it, the plain program.
    for name, minimum in (("decaytx.fused.adamw", 28), ("decaytx.fused.adam_l2", 28), ("decaytx.fused.sgdw", 20)):
        assert len(kf[name]) == 1, (name, kf[name])
        assert sum(k["bytes_per_param"] for k in kf[name]) == pytest.approx(minimum, abs=0.5)
    assert kp["decaytx.fused.adamw"] == kp["decaytx.adamw"]
    assert len(kp["optax.adamw"]) == 3  # XLA:CPU without the option: one kernel per moment, one update


def test_report_renders_from_the_run(tiny_run, tmp_path):
    out, res = tiny_run
    md = (out / "BENCHMARKS.md").read_text()
    assert md == report.render(res)
    for heading in ("## Summary", "## Whole MLP train step", "## Every variant, per tree",
                    "## Init and first-compile time", "## Kernels of one step", "## GPU"):
        assert heading in md
    assert "nice" in md and "Load average" in md
    cli.publish(out, root=tmp_path)
    assert (tmp_path / "BENCHMARKS.md").read_text() == md
    assert (tmp_path / "docs" / "assets" / "bench" / "bench.json").exists()


def test_gpu_script_runs_on_cpu_at_tiny_size(tmp_path):
    res = gpu.main(["--size", "2048", "--leaves", "1", "4", "--rounds", "1", "--steps", "1", "--warmup", "1",
                    "--out", str(tmp_path)])
    assert [t["tree"]["leaves"] for t in res["trees"]] == [1, 4]
    for t in res["trees"]:
        assert set(t["variants"]) == set(gpu.optimizers())
        for d in t["variants"].values():
            assert d["array_fusions"] >= 1 and d["fraction_of_copy"] > 0
    assert (tmp_path / "gpu_bench.md").read_text().startswith("## GPU:")


def test_cli_help_lists_quick():
    proc = subprocess.run([sys.executable, "-m", "experiments.bench", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "--quick" in proc.stdout
