"""The README's Python blocks run as written, with only what its text says to install."""

from pathlib import Path

from _doc_blocks import ROOT, blocks_with_absent_modules, run_page

README = ROOT / "README.md"


def test_readme_python_blocks_run_with_only_what_the_text_installs(tmp_path: Path) -> None:
    proc = run_page(README, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # The first example: the decayed weight and the kept bias, then the audit table.
    assert lines[0] == "0.95 1.0", lines[:3]
    assert any(line.startswith("w ") and "add_decoupled_decay" in line and "0.05" in line
               for line in lines), proc.stdout
    assert "No problems found." in lines


def test_first_readme_example_needs_only_the_library() -> None:
    """The first block runs after `pip install .` alone: every extra is absent for it,
    and it is the one the README puts before any other Python."""
    first = blocks_with_absent_modules(README)[0]
    assert {"flax", "torch", "keras", "sklearn", "pytest"} <= set(first[2])
    assert "decaytx.audit" in first[1] and "print(" in first[1]
    assert len(first[1].strip().splitlines()) <= 15
