"""Run the ```python blocks of a Markdown page with only what its text says to install.

A page's blocks run in order in one namespace (a page reads like one session),
in a fresh Python process where the packages of every extra that the text has
not asked for so far are made absent: importing one raises
``ModuleNotFoundError``, as it would in a venv holding only ``pip install .``.
The text asks for an extra with an install line such as
``pip install ".[integrations]"``, anywhere before the block.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
INSTALL = re.compile(r"pip install [^\n`]*?(?:\.|decaytx)\[([a-z0-9_,\- ]+)\]")
# Distribution name -> top-level module, where they differ.
_MODULE = {"scikit-learn": "sklearn", "pytest-xdist": "xdist", "orbax-checkpoint": "orbax",
           "mkdocs-material": "material", "mkdocstrings-python": "mkdocstrings"}

_RUNNER = r"""
import importlib.abc, json, sys, warnings

absent = json.loads(sys.argv[1])

class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in absent:
            raise ModuleNotFoundError(
                f"No module named {top!r} (the text has not asked for the "
                f"{absent[top]!r} extra at this point)", name=top)
        return None

sys.meta_path.insert(0, _Absent())
warnings.simplefilter("error", UserWarning)  # DecayWarning included
namespace = {"__name__": "__main__"}
for label, code, now_absent in json.loads(sys.stdin.read()):
    absent.clear()
    absent.update(now_absent)
    exec(compile(code, label, "exec"), namespace)
"""


def extra_modules() -> dict[str, str]:
    """Top-level module -> the extra of pyproject.toml that installs it."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    modules = {}
    for extra, requirements in extras.items():
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()
            modules[_MODULE.get(name, name.replace("-", "_"))] = extra
    modules.setdefault("mkdocs", "docs")
    return modules


def blocks_with_absent_modules(page: Path, skip: str | None = None) -> list:
    """[(label, code, {module: extra} absent for it)] for each python block of ``page``."""
    text = page.read_text()
    modules = extra_modules()
    out = []
    for i, match in enumerate(BLOCK.finditer(text)):
        code = match.group(1)
        if skip is not None and skip in code:
            continue
        asked = {e.strip() for found in INSTALL.findall(text[:match.end()])
                 for e in found.split(",")}
        absent = {m: e for m, e in modules.items() if e not in asked}
        out.append((f"{page.name}[block {i}]", code, absent))
    return out


def run_page(page: Path, cwd: Path, skip: str | None = None) -> subprocess.CompletedProcess:
    """Run the page's blocks in a fresh process (decaytx from this checkout)."""
    blocks = blocks_with_absent_modules(page, skip)
    assert blocks, f"{page.name} has no python examples"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", _RUNNER, "{}"], input=json.dumps(blocks),
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
