"""Griffe extension: the rst bits of decaytx's docstrings as Markdown.

The docstrings follow optax's style (Google sections, maths in rst
``:math:`` roles and ``.. math::`` blocks, Sphinx cross-reference roles and
rst links), which read well in ``help()`` and in the source. For the site
they are rewritten, at load time, into what mkdocstrings and
``pymdownx.arithmatex`` understand: ``$...$``, ``$$...$$``, autorefs links and
Markdown links. The source docstrings stay untouched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:func|class|mod|meth|attr|obj|data):`~?([^`]+)`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<([^>]+)>`_+")
_ESCAPED_SPACE = re.compile(r"\\ ")


def _math_blocks(text: str) -> str:
    """``.. math::`` and its indented body -> a ``$$`` block."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(".. math::"):
            indent = line[: len(line) - len(stripped)]
            body: list[str] = []
            rest = stripped[len(".. math::"):].strip()
            if rest:
                body.append(rest)
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
                if lines[i].strip():
                    body.append(lines[i].strip())
                i += 1
            while body and not body[-1]:
                body.pop()
            out.append(f"{indent}$$")
            out.extend(f"{indent}{b}" for b in body)
            out.append(f"{indent}$$")
            out.append("")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _xref(match: re.Match[str], known: set[str]) -> str:
    target = match.group(1)
    full = target if target.startswith("decaytx") else f"decaytx.{target}"
    if full in known:
        return f"[`{target}`][{full}]"
    return f"`{target}`"


def rst_to_markdown(text: str, known: set[str]) -> str:
    text = _math_blocks(text)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    text = _XREF_ROLE.sub(lambda m: _xref(m, known), text)
    text = _RST_LINK.sub(lambda m: f"[{m.group(1)}]({m.group(2)})", text)
    return _ESCAPED_SPACE.sub("", text)


class RstToMarkdown(griffe.Extension):
    """Rewrites every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        known = {"decaytx", "decaytx.masks"}
        for name in pkg.members:
            if not name.startswith("_"):
                known.add(f"decaytx.{name}")
        masks = pkg.members.get("masks")
        if masks is not None:
            known |= {f"decaytx.masks.{n}" for n in masks.members if not n.startswith("_")}
        self._walk(pkg, known, set())

    def _walk(self, obj: Any, known: set[str], seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if getattr(obj, "is_alias", False):
            try:
                obj = obj.final_target
            except Exception:  # an alias to something outside the package
                return
            if id(obj) in seen:
                return
            seen.add(id(obj))
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value, known)
        for member in getattr(obj, "members", {}).values():
            self._walk(member, known, seen)
