"""The scheduled first ``init`` and first compile, in fresh processes: ``experiments/measure_schedule_init.py``.

That script (owned elsewhere; called, never copied) prints a Markdown table,
one row per schedule and optimizer, each measured in a fresh process. This
runs it on some of its cases and keeps its table as printed (header and rows
verbatim, so a change of its columns reaches the report unchanged), plus, per
schedule, decaytx's figures over optax's where both rows parse as numbers.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "measure_schedule_init.py"
# Cases per mode (names of the script's CASES); None: every case.
MODES: dict[str, list[str] | None] = {"full": None, "quick": ["warmup_cosine", "piecewise_1000"],
                                      "tiny": ["warmup_cosine"]}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse(text: str) -> dict[str, Any]:
    """``{"header", "rows", "ratios"}`` from the script's output (``rows``: lists of cells)."""
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("|")]
    sep = [i for i, ln in enumerate(lines) if set(ln.strip()) <= set("|-: ")]
    header = _cells(lines[sep[0] - 1]) if sep and sep[0] > 0 else []
    rows = [_cells(ln) for ln in lines if not set(ln.strip()) <= set("|-: ") and _cells(ln) != header]
    ratios: dict[str, dict[str, float]] = {}
    by = {(r[0], r[1]): r for r in rows if len(r) > 2}
    for (case, lib), r in by.items():
        o = by.get((case, "optax"))
        if lib != "decaytx" or o is None:
            continue
        out = {}
        for i in range(2, min(len(r), len(o))):
            try:
                out[header[i] if i < len(header) else f"column {i}"] = float(r[i]) / float(o[i])
            except (ValueError, ZeroDivisionError):
                pass
        ratios[case] = out
    return {"header": header, "rows": rows, "ratios": ratios}


def measure(cases: list[str] | None, env: dict[str, str] | None = None, timeout_s: float = 1800) -> dict[str, Any]:
    """Runs the script (from the repository root, so it measures this checkout's decaytx) and parses its table."""
    if not SCRIPT.exists():
        return {"error": f"{SCRIPT.relative_to(ROOT)} not found"}
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, str(SCRIPT.relative_to(ROOT)), *(cases or [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        return {"command": " ".join(cmd[1:]), "error": proc.stderr[-2000:]}
    return {"command": "python " + " ".join(cmd[1:]), **parse(proc.stdout)}
