"""Claims, their context, and the files they are written to."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

import numpy as np

from experiments import mnist1d_data
from experiments.common import MODES, Mode
from experiments.mnist1d_data import Split


@dataclasses.dataclass
class Context:
    """What a study gets: where to write, how big to run, which seed."""

    out_dir: pathlib.Path
    mode: Mode
    seed: int
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)  # results one study hands to another

    def mnist1d(self, n_train: int, n_val: int, n_test: int, **kw: Any) -> Split:
        """MNIST-1D generated from this run's seed, cached under ``out_dir/data``."""
        return mnist1d_data.load(self.out_dir / "data", n_train, n_val, n_test, self.seed, **kw)

    @property
    def mode_name(self) -> str:
        return self.mode.name

    @classmethod
    def make(cls, out_dir: pathlib.Path, mode: str, seed: int) -> Context:
        out_dir.mkdir(parents=True, exist_ok=True)
        return cls(out_dir=out_dir, mode=MODES[mode], seed=seed)


@dataclasses.dataclass
class Claim:
    """One entry of results.json: a claim, its measured verdict and evidence."""

    id: str
    statement: str
    criterion: str  # how ``holds`` is computed from ``metrics``, in words
    holds: bool
    metrics: dict[str, Any]
    figure: str
    key_number: str  # one line for the summary table
    notes: str = ""
    # the parts of the criterion, each in words -> met? (``holds`` is all of them); the report
    # names the parts that failed, so a "does not hold" says what failed
    checks: dict[str, bool] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["holds"] = bool(self.holds)
        d["checks"] = {k: bool(v) for k, v in self.checks.items()}
        d["metrics"] = to_jsonable(self.metrics)
        return d


def to_jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    return x


def write_results(out_dir: pathlib.Path, claims: list[Claim], meta: dict[str, Any]) -> pathlib.Path:
    path = out_dir / "results.json"
    # Merge with claims already there, so `python -m experiments <one study>`
    # updates its own entry and keeps the others.
    existing: list[dict[str, Any]] = []
    old_meta: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
            existing, old_meta = old["claims"], old.get("meta", {})
        except (ValueError, KeyError):
            existing = []
    if existing and not {c["id"] for c in existing} <= {c.id for c in claims} and old_meta.get("mode") == meta.get("mode"):
        # One study (re-)run into a bigger report: keep the report's meta, note the update.
        for k in ("study_seconds", "study_cpu_seconds"):
            old_meta.setdefault(k, {}).update(meta.get(k, {}))
        if old_meta.setdefault("updated_by", [])[-1:] != [meta.get("command")]:  # written twice per study
            old_meta["updated_by"].append(meta.get("command"))
        meta = old_meta
    new = {c.id: c.to_json() for c in claims}
    merged = [new.pop(c["id"]) if c["id"] in new else c for c in existing] + list(new.values())
    from experiments import STUDIES

    order = list(STUDIES)
    merged.sort(key=lambda c: order.index(c["id"]) if c["id"] in order else len(order))
    path.write_text(json.dumps({"claims": merged, "meta": to_jsonable(meta)}, indent=2) + "\n")
    return path


WIDTH = 100  # the terminal summary's columns


def verdict_word(c: dict[str, Any]) -> str:
    return "holds" if c["holds"] else "does not hold"


def summary_table(claims: list[dict[str, Any]], width: int = WIDTH) -> str:
    """claim, verdict and key number, each line cut to ``width`` columns (report.md has them whole)."""
    rows = [("claim", "verdict", "key number")]
    rows += [(c["id"], verdict_word(c).upper() if c["holds"] else verdict_word(c), c["key_number"]) for c in claims]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = []
    for r in rows:
        line = f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}".rstrip()
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    lines.insert(1, "-" * min(width, max(len(line) for line in lines)))
    return "\n".join(lines)


def _fmt_load(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.1f}"


def failed_parts(c: dict[str, Any]) -> list[str]:
    return [k for k, ok in c.get("checks", {}).items() if not ok]


def write_report(out_dir: pathlib.Path) -> pathlib.Path:
    """report.md, for reading: the table, then one section per claim (claim, criterion,
    verdict and what failed, figure, notes). The raw metrics stay in results.json."""
    data = json.loads((out_dir / "results.json").read_text())
    meta = data.get("meta", {})
    lines = [
        "# decaytx experiments: do the weight-decay claims hold?",
        "",
        f"Mode `{meta.get('mode')}`, seed {meta.get('seed')}, command `{meta.get('command')}`: "
        f"{meta.get('wall_seconds', 0):.0f} s wall, {meta.get('cpu_seconds', 0):.0f} s CPU (user + sys) on "
        f"{meta.get('machine')}; 1-min load average at the end {_fmt_load(meta.get('load_average_at_end'))}. "
        "Wall time grows when other jobs share the machine; CPU time does not.",
        "",
        "Verdicts are computed from the measured numbers by criteria fixed in the code before the run; "
        "the raw metrics of every claim are in `results.json` beside this file.",
        "",
        "| claim | verdict | key number |",
        "|---|---|---|",
    ]
    for c in data["claims"]:
        key = c["key_number"].replace("|", "\\|")
        verdict = "holds" if c["holds"] else "**does not hold**"
        lines.append(f"| [{c['id']}](#{c['id']}) | {verdict} | {key} |")
    for c in data["claims"]:
        lines += ["", f"## {c['id']}", "", f"**Claim.** {c['statement']}", "",
                  f"**Criterion.** {c['criterion']}", "",
                  f"**Verdict: {verdict_word(c)}** (key numbers in the table above)."]
        failed = failed_parts(c)
        if failed:
            lines += ["", "What failed: " + "; ".join(failed) + "."]
        lines += ["", f"![{c['id']}]({c['figure']})", ""]
        if c.get("notes"):
            lines += [c["notes"], ""]
        lines += [f"Time: {c.get('seconds', 0):.0f} s wall, {c.get('cpu_seconds', 0):.0f} s CPU."]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
