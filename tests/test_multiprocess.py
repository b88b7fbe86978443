"""Two JAX processes, one program: every form and recipe on params sharded
across both (multi-controller SPMD, as on several hosts).

The test starts the two processes itself (tests/_mp_worker.py, coordinator
on a free 127.0.0.1 port, gloo CPU collectives, 2 host devices each: 4
global devices on a (2, 2) mesh whose first axis spans the processes), with
a time limit, and kills them if anything fails. Checked:

* the compiled step of all transforms has no collectives (a clip-by-global-
  norm control does: the detection works);
* every block each process holds equals the same steps run in this single
  process on one device, bit for bit;
* an Orbax checkpoint saved by both processes mid-run, restored by a fresh
  pair, resumes to the same bits as the uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("orbax.checkpoint")

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_mp_worker.py")
TIMEOUT_S = 240  # per phase, both processes; a healthy run takes well under a minute
# theta+/(1 + m_t*l2) with a scheduled (runtime) m_t: XLA's CPU backend compiles
# the division by a runtime scalar differently in the partitioned and the
# one-device program (as in tests/test_sharding.py): a few float32 ulps. Every
# other transform is bitwise equal.
ULPS_APART = {"prox_elastic_net": 1e-6, "chain(schedules, user anchor, anchor=init, prox)": 1e-6}


def _worker_module() -> Any:
    spec = importlib.util.spec_from_file_location("_mp_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_pair(phase: str, workdir: Path) -> list[dict[str, Any]]:
    """Runs both processes of a phase; returns their reports (with blocks)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    port = _free_port()
    logs = [open(workdir / f"{phase}-{i}.log", "w") for i in range(2)]  # noqa: SIM115
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), phase, str(i), str(port), str(workdir)],
                         env=env, cwd=ROOT, stdout=logs[i], stderr=subprocess.STDOUT)
        for i in range(2)
    ]
    try:
        for p in procs:
            p.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:  # one failed or hung: the other waits on it forever
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    codes = [p.returncode for p in procs]
    if codes != [0, 0]:
        tails = "\n".join(f"--- process {i} (exit {c}):\n" +
                          (workdir / f"{phase}-{i}.log").read_text()[-3000:]
                          for i, c in enumerate(codes))
        pytest.fail(f"{phase}: the two processes exited with {codes}\n{tails}")
    reports = []
    for i in range(2):
        report = json.loads((workdir / f"{phase}-{i}.json").read_text())
        arrays = np.load(workdir / f"{phase}-{i}.npz")
        report["arrays"] = [arrays[str(j)] for j in range(len(report["blocks"]))]
        reports.append(report)
    return reports


def _blocks(reports: list[dict[str, Any]]) -> dict[tuple, np.ndarray]:
    """(transform, leaf, index) -> block, over both processes."""
    out = {}
    for r in reports:
        for (name, leaf, index), a in zip(r["blocks"], r["arrays"]):
            out[(name, leaf, tuple(tuple(ix) for ix in index))] = a
    return out


def test_two_processes_sharded_steps_and_checkpoint(tmp_path: Path) -> None:
    worker = _worker_module()
    run = _launch_pair("run", tmp_path)
    assert [r["process_index"] for r in run] == [0, 1]
    for r in run:
        assert r["collectives"] == [], r["collectives"]  # no communication in the step
        assert "all-reduce" in r["control_collectives"]  # ... which would be seen
        assert r["sharding_kept"]
    got = _blocks(run)

    # Every transform, every leaf, every block: equal to the single-process run.
    reference = worker.run_single_process()
    names = set(reference)
    assert {n for n, _, _ in got} == names and len(names) >= 18
    mismatches = []
    for (name, leaf, index), block in got.items():
        expected = reference[name][leaf][tuple(slice(*ix) for ix in index)]
        assert block.shape == expected.shape
        if name in ULPS_APART:
            ok = np.max(np.abs(block - expected)) <= ULPS_APART[name]
        else:
            ok = np.array_equal(block, expected)
        if not ok:
            mismatches.append(f"{name}/{leaf}{list(index)}: max |diff| "
                              f"{np.max(np.abs(block - expected)):.1e}")
    assert not mismatches, "\n".join(mismatches)
    # The blocks really are partitioned: each process holds half of w1.
    w1 = [b for (n, leaf, _), b in got.items() if leaf == "w1" and n == "adamw"]
    assert len(w1) == 4 and all(b.shape == (8, 4) for b in w1)
    # The steps moved the params (the comparison is not of initial values).
    p0 = worker.params0()
    assert all(np.max(np.abs(reference[n]["w1"] - p0["w1"])) > 1e-4 for n in names)

    # A fresh pair restores the mid-run checkpoint and lands on the same bits.
    resumed = _blocks(_launch_pair("resume", tmp_path))
    assert resumed.keys() == got.keys()
    for key, block in got.items():
        np.testing.assert_array_equal(resumed[key], block, err_msg=str(key))
