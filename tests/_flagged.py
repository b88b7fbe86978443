"""Run a test module again as a worker process with XLA:CPU multi-output fusion on.

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
