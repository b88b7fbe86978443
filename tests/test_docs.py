"""The Python examples in the documentation pages run as written.

Each page's ```python blocks are executed in order in one namespace (a page
reads like one session). Blocks that include a file with ``--8<--`` are the
examples/ scripts, which tests/test_frameworks.py runs.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["index.md", "concepts.md", "forms.md", "masks.md", "schedules.md", "integrations.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text()
    return [b for b in BLOCK.findall(text) if "--8<--" not in b]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _blocks(page)
    assert blocks, f"{page} has no python examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page[:-3]}"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=UserWarning)  # DecayWarning included
        for i, block in enumerate(blocks):
            exec(compile(block, f"{page}[block {i}]", "exec"), namespace)
