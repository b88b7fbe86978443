"""The Python examples in the documentation pages run as written.

Each page's ```python blocks are executed in order in one namespace (a page
reads like one session). Blocks that include a file with ``--8<--`` are the
examples/ scripts, which tests/test_frameworks.py runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
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


class _Resources(HTMLParser):
    """Collects what a page loads (script/img/iframe src, link href) and its maths."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.maths: list[str] = []
        self._in_math = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video") and a.get("src"):
            self.loads.append((tag, a["src"] or ""))
        if tag == "link" and a.get("href") and a.get("rel") != "canonical":
            self.loads.append((f"link rel={a.get('rel')}", a["href"] or ""))
        if tag in ("span", "div") and "arithmatex" in (a.get("class") or "").split():
            self._in_math += 1
            self.maths.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._in_math and tag in ("span", "div"):
            self._in_math -= 1

    def handle_data(self, data: str) -> None:
        if self._in_math:
            self.maths[-1] += data


def test_built_site_is_offline_and_maths_is_arithmatex_markup(tmp_path: Path) -> None:
    """The site built with mkdocs loads nothing from the network (MathJax is
    vendored, no web fonts), and the maths is arithmatex markup that the local
    MathJax, configured to process exactly that class, renders."""
    pytest.importorskip("mkdocs", reason="the docs extra")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 10
    external, with_maths = [], {}
    for page in pages:
        parser = _Resources()
        parser.feed(page.read_text())
        rel = page.relative_to(site).as_posix()
        external += [f"{rel}: <{tag}> {url}" for tag, url in parser.loads
                     if re.match(r"^(https?:)?//", url)]
        scripts = [url for tag, url in parser.loads if tag == "script"]
        if parser.maths:
            with_maths[rel] = (parser.maths, scripts)
    assert not external, "\n".join(external)

    # Maths is delimited TeX inside arithmatex spans/divs, never raw $...$ text.
    assert {"concepts/index.html", "forms/index.html"} <= set(with_maths)
    for rel, (maths, scripts) in with_maths.items():
        assert all(re.fullmatch(r"\\\((.|\n)+\\\)|\\\[(.|\n)+\\\]", m.strip()) for m in maths), rel
        # The config, then the vendored MathJax, on every page with maths.
        local = [s for s in scripts if "mathjax" in s]
        assert [Path(s).name for s in local] == [
            "mathjax.js", "mathjax-tex-svg-3.2.2.js"], (rel, scripts)
        assert all((site / rel).parent.joinpath(s).resolve().is_file() for s in local), rel
    config = (site / "javascripts" / "mathjax.js").read_text()
    assert 'processHtmlClass: "arithmatex"' in config
    vendored = (site / "javascripts" / "vendor" / "mathjax-tex-svg-3.2.2.js").read_text()
    assert "MathJax" in vendored and len(vendored) > 1_000_000  # the real bundle, not a stub
    assert "unpkg.com" not in (ROOT / "mkdocs.yml").read_text()
