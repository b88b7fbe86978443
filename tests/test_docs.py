"""The documentation pages: their Python examples run as written, and the built
site works offline and opened from disk.

Each page's ```python blocks are executed in order in one namespace (a page
reads like one session), in a fresh process where only the extras the page's
text has asked for so far are importable (tests/_doc_blocks.py). Blocks that
include a file with ``--8<--`` are the examples/ scripts, which
tests/test_frameworks.py runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _doc_blocks import BLOCK, run_page

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.name for p in DOCS.glob("*.md")
               if any("--8<--" not in b for b in BLOCK.findall(p.read_text())))


def test_the_pages_with_examples_are_found() -> None:
    assert {"index.md", "concepts.md", "forms.md", "masks.md", "schedules.md",
            "integrations.md", "audit.md", "optimizers.md"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str, tmp_path: Path) -> None:
    proc = run_page(DOCS / page, tmp_path, skip="--8<--")
    assert proc.returncode == 0, proc.stderr[-3000:]


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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module as `make docs` builds it."""
    pytest.importorskip("mkdocs", reason="the docs extra")
    site = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return site


def test_built_site_is_offline_and_maths_is_arithmatex_markup(site: Path) -> None:
    """The site built with mkdocs loads nothing from the network (MathJax is
    vendored, no web fonts), and the maths is arithmatex markup that the local
    MathJax, configured to process exactly that class, renders."""
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
    assert {"concepts.html", "forms.html"} <= set(with_maths)
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


class _Links(HTMLParser):
    """Collects a page's <a href> targets and the text of its table-of-contents links."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.toc: list[str] = []
        self._in_toc = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
            if "md-nav__link" in (a.get("class") or "").split():
                self._in_toc += 1
                self.toc.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._in_toc and tag == "a":
            self._in_toc -= 1

    def handle_data(self, data: str) -> None:
        if self._in_toc:
            self.toc[-1] += data


def test_site_opened_from_disk_links_land_on_pages_and_search_is_offline(site: Path) -> None:
    """Opened as files (no server), every relative link of every page is a file,
    never a folder (which a browser shows as a listing); the search index ships
    as a script (the offline plugin), and no table-of-contents entry shows raw TeX."""
    broken, raw_tex = [], []
    for page in sorted(site.rglob("*.html")):
        if page.name == "404.html":  # served by a web server only; its links are absolute
            continue
        parser = _Links()
        parser.feed(page.read_text())
        rel = page.relative_to(site).as_posix()
        for href in parser.hrefs:
            target = href.split("#")[0].split("?")[0]
            if not target or re.match(r"^([a-z]+:|//)", target):
                continue
            if not (page.parent / target).resolve().is_file():
                broken.append(f"{rel}: {href}")
        raw_tex += [f"{rel}: {text.strip()}" for text in parser.toc if re.search(r"\\[(\[]|\$", text)]
    assert not broken, "\n".join(broken[:20])
    assert not raw_tex, "\n".join(raw_tex)
    # From file:// Material's bundle reads search/search_index.js (written by the
    # offline plugin) and runs its search worker through the iframe-worker shim,
    # vendored (the external-loads test above checks that nothing comes from a CDN).
    assert (site / "search" / "search_index.js").read_text().startswith("var __index = ")
    assert 'src="javascripts/vendor/iframe-worker-shim-1.0.4.js"' in (
        site / "concepts.html").read_text()
