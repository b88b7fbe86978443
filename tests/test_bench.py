"""The benchmark package's deterministic parts, and smoke runs at tiny sizes.

No timing is asserted: tree sizes, HLO counting (against hand-written HLO and
hand-counted bytes), the bootstrap's exact cases, the three processes' flags,
that every ratio is paired and every section is there in one tiny run, report
rendering from it, the CLI, and the GPU script on CPU.
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

from experiments.bench import (
    cli,
    coeff_compile,
    gpu,
    gpu_parts,
    hlo,
    options,
    report,
    sched_init,
    timing,
    trees,
)

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


def test_schedule_table_parse_by_hand():
    text = ("decaytx from /x\n| schedule | optimizer | first init (s) | first jitted step (s) |\n|---|---|---|---|\n"
            "| cosine | decaytx | 0.200 | 1.000 |\n| cosine | optax | 0.100 | 0.500 |\n")
    r = sched_init.parse(text)
    assert r["header"] == ["schedule", "optimizer", "first init (s)", "first jitted step (s)"]
    assert r["rows"] == [["cosine", "decaytx", "0.200", "1.000"], ["cosine", "optax", "0.100", "0.500"]]
    assert r["ratios"] == {"cosine": {"first init (s)": 2.0, "first jitted step (s)": 2.0}}


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
    assert cli.worker_env("control")["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
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
    for label in ("plain", "flag", "control"):
        assert (out / f"{label}.json").exists()


def test_tiny_run_cross_process_ratios_are_paired(tiny_run):
    _, res = tiny_run
    control = res["workers"]["control"]
    assert not control["multi_output_fusion_active"] and FLAG not in control["xla_flags"]
    assert set(control["trees"][0]["variants"]) - {"copy (jit x+1, donated)", "copy (numpy copyto)"} == {"optax.adamw"}
    reps = res["reps"]
    for label in ("plain", "flag", "control"):  # every process ran the same repetitions of every section
        w = res["workers"][label]
        for section in (*w["trees"], w["train"]):
            assert all(len(v["samples_s"]) == reps for v in section["variants"].values() if "samples_s" in v)
    for cross in (*res["cross"]["trees"], res["cross"]["train"]):
        assert {"decaytx.fused.adamw", "optax.adamw"} <= set(cross["vs_plain_optax"])
        assert "decaytx.fused.adamw" in cross["vs_plain_same"]
        ratios = [cross["control"], *cross["vs_plain_optax"].values(), *cross["vs_plain_same"].values()]
        for r in ratios:
            assert r["paired"] and r["lo"] <= r["median"] <= r["hi"]
    # Same-process ratios are paired too.
    for w in res["workers"].values():
        for section in (*w["trees"], w["train"]):
            assert all(r["paired"] for r in section["ratios"].values())


def test_tiny_run_fresh_process_sections(tiny_run):
    _, res = tiny_run
    cc = res["coeff_compile"]
    assert cc["leaves"] == 8 and set(cc["cases"]) == {"scalar", "1", "2", "8"}
    assert cc["cases"]["1"]["ratio_to_shared"] == 1.0
    assert all(r["total_s"] > 0 and r["ratio_to_shared"] > 0 for r in cc["cases"].values())
    si = res["schedule_init"]
    assert "error" not in si, si
    assert {(r[0], r[1]) for r in si["rows"]} == {("warmup_cosine", "decaytx"), ("warmup_cosine", "optax")}
    assert "warmup_cosine" in si["ratios"]


def test_tiny_run_measures_the_cost_of_each_option(tiny_run):
    _, res = tiny_run
    costs = res["options"]
    assert set(costs) == set(options.OPTIONS) and "decaytx.monitor" in costs
    mon = costs["decaytx.monitor"]
    assert "error" not in mon, mon
    assert (mon["baseline"], mon["control"]) == ("adamw", "adamw (A/A)")
    rows = mon["rows"]
    assert set(rows) == {"adamw", "adamw (A/A)", "monitor(adamw)", 'monitor(adamw, groups=[""])'}
    # Deterministic: the A/A row is the same program; the monitor reads the params again.
    for key in ("kernels", "array_kernels", "bytes_per_param", "state_bytes_per_param"):
        assert rows["adamw (A/A)"][key] == rows["adamw"][key]
    assert rows["monitor(adamw)"]["kernels"] > rows["adamw"]["kernels"]
    assert rows["monitor(adamw)"]["bytes_per_param"] > rows["adamw"]["bytes_per_param"]
    assert rows["adamw"]["ratio"]["median"] == 1.0
    for r in rows.values():
        assert r["ratio"]["lo"] <= r["ratio"]["median"] <= r["ratio"]["hi"]


def test_an_option_that_fails_is_reported_not_raised(monkeypatch):
    # The fresh process does not know this option: it fails, and the run goes on.
    monkeypatch.setitem(options.OPTIONS, "no.such.option", "experiments.no_such_module")
    res = options.fresh("no.such.option", "tiny")
    assert "error" in res and "no.such.option" in res["error"]
    lines = report.options_table({"options": {"no.such.option": res}})
    assert lines[0] == "## Cost of options" and any(x.startswith("Not measured:") for x in lines)


def test_coeff_compile_baseline_keeps_constants_out_of_the_program():
    """Above _constants.MAX_CONSTANTS distinct values, decaytx's program holds fewer
    f32 constants than decaytx 0.2's (each value a constant); deterministic."""
    res = coeff_compile.measure(12, (1, 12), form="decoupled", baseline=True, log=lambda s: None)
    assert set(res["cases"]) == {"scalar", "1", "12"} and set(res["baseline"]) == {"1", "12"}
    assert res["cases"]["1"]["ratio_to_shared"] == 1.0
    assert res["cases"]["12"]["constants"] < res["baseline"]["12"]["constants"]
    assert res["baseline"]["1"]["constants"] == res["cases"]["1"]["constants"]
    assert any("12 distinct (tree), 0.2 constants" in line for line in coeff_compile.table(res))


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
                    "## Init and first-compile time", "## Scheduled first init and first compile",
                    "## Compile time against distinct coefficient values", "## Cost of options",
                    "## Kernels of one step", "## GPU"):
        assert heading in md
    assert "Every ratio is paired" in md and "UNPAIRED" not in md and "unpaired" not in md
    assert "nice" in md and "Load average" in md
    cli.publish(out, root=tmp_path)
    assert (tmp_path / "BENCHMARKS.md").read_text() == md
    assert (tmp_path / "docs" / "assets" / "bench" / "bench.json").exists()


@pytest.fixture(scope="module")
def gpu_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    res = gpu.main(["--size", "2048", "--leaves", "1", "4", "--rounds", "2", "--steps", "1", "--warmup", "1",
                    "--mlp", "16", "32", "4", "--batch", "4", "--out", str(out)])
    return out, res


def test_gpu_script_runs_on_cpu_at_tiny_size(gpu_smoke):
    out, res = gpu_smoke
    assert [t["tree"]["leaves"] for t in res["trees"]] == [1, 4]
    names = {s.name for s in gpu_parts.variants()}
    assert {gpu_parts.REF, gpu_parts.CONTROL, "decaytx.fused.adamw [bf16]",
            "decaytx.fused.adamw [schedule+mask]"} <= names
    for t in res["trees"]:
        assert names <= set(t["variants"])
        for name in names:
            d = t["variants"][name]
            assert d["launches"]["array_kernels"] >= 1 and d["fraction_of_copy"] > 0
            assert len(d["samples_s"]) == 2
            assert "fraction_of_nominal" in d  # None on a CPU: bandwidth unknown
        assert set(t["ratios"]) == names - {gpu_parts.REF}
        for r in t["ratios"].values():
            assert r["paired"] and r["lo"] <= r["median"] <= r["hi"]
        # Every fused step (and decaytx's recipes vs optax) reproduces its recipe's maths.
        assert {"decaytx.fused.adamw", "decaytx.fused.adam_l2", "decaytx.fused.sgdw",
                "decaytx.fused.adamw [bf16]", "decaytx.fused.adamw [schedule+mask]"} <= set(t["maths"])
        assert all(m["ok"] for m in t["maths"].values()), t["maths"]
        torch_row = t["variants"].get("torch.AdamW (fused, CUDA)")
        assert torch_row is None or "unavailable" in torch_row  # no CUDA here
    tr = res["train"]
    assert {gpu_parts.REF, gpu_parts.CONTROL, "decaytx.fused.adamw"} <= set(tr["variants"])
    assert all(r["paired"] for r in tr["ratios"].values())
    for key in ("nominal_entry", "nominal_gbs", "estimate", "compile_s", "wall_s"):
        assert key in res
    assert res["nominal_entry"] == "unknown" and res["estimate"]["total_s"] > 0
    assert (out / "gpu_bench.md").read_text().startswith("## GPU:")
    assert json.loads((out / "gpu_bench.json").read_text())["trees"][0]["maths"]


def test_nominal_bandwidth_table():
    nb = gpu_parts.nominal_gbs
    assert nb("NVIDIA H100 80GB HBM3") == ("H100 SXM", 3350.0)
    assert nb("NVIDIA H100 PCIe") == ("H100 PCIe", 2000.0)
    assert nb("NVIDIA H200") == ("H200", 4800.0)
    assert nb("NVIDIA A100-SXM4-80GB") == ("A100 80GB", 2039.0)
    assert nb("NVIDIA A100-PCIE-40GB") == ("A100 40GB", 1555.0)
    assert nb("cpu") == ("unknown", None) and nb("NVIDIA H100 NVL") == ("unknown", None)


def test_gpu_default_run_is_estimated_under_five_minutes():
    args = gpu.parse([])
    specs = {k: gpu.specs_for(k, args) for k in args.leaves}
    assert [s.name for s in specs[1000]] == list(gpu_parts.CORE)
    est = gpu_parts.estimate_s(args.leaves, args.size, {k: sum(s.same_as is None for s in v) for k, v in specs.items()},
                               {k: len(v) + 3 for k, v in specs.items()}, args.rounds, args.steps, args.warmup, 6,
                               gpu_parts.NOMINAL_GBS["H100 SXM"])
    assert est["total_s"] < 300, est


def test_launches_count_every_computation():
    # A command buffer moves the ENTRY's kernels into a called computation.
    text = HLO.replace("ENTRY %main", "%command_buffer").replace("HloModule m\n", "HloModule m\n") + (
        "\nENTRY %e (a: f32[1000], b: f32[1000]) -> (f32[1000], f32[]) {\n"
        "  ROOT %c = (f32[1000]{0}, f32[]) call(%a, %b), to_apply=%command_buffer\n}\n")
    assert hlo.fusion_shapes(text) == []
    assert hlo.launches(text) == {"fusions": 2, "custom_calls": 0, "kernels": 2, "array_kernels": 1}


def test_max_ulps_by_hand():
    a = {"x": jnp.array([1.0, 2.0], jnp.float32)}
    b = {"x": jnp.array([1.0, 2.0 + 2 * 2.0 ** -22], jnp.float32)}  # 2 ulps at 2.0 (spacing 2**-22)
    assert gpu_parts.max_ulps(a, b) == pytest.approx(2.0)
    assert gpu_parts.max_ulps(a, a) == 0.0


def test_cli_help_lists_quick():
    proc = subprocess.run([sys.executable, "-m", "experiments.bench", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "--quick" in proc.stdout
