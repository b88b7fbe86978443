"""Tests that need a process of their own: XLA flags are process-wide.

``run_worker`` runs a test module again as a worker with XLA:CPU multi-output
fusion on; ``run_on_devices`` runs a script on several forced host devices.

The option is process-wide (``XLA_FLAGS``), so tests that need it start one
subprocess running their own file with a worker argument; the worker prints
its results as JSON on its last line of stdout.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"


def run_worker(test_file: str, arg: str, timeout: float) -> Any:
    """``python test_file arg`` with the option on; its last stdout line, parsed as JSON."""
    env = dict(os.environ, XLA_FLAGS=FLAG, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, test_file, arg], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_on_devices(script: str, devices: int, timeout: float = 600) -> Any:
    """``python -c script`` on ``devices`` forced host CPU devices; the JSON after its ``REPORT`` line."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT"))
    return json.loads(line[len("REPORT"):])
