"""GPU benchmark: AdamW + every decay form on 1B f32 params, against copy bandwidth.

One command, self-contained (jax, optax, decaytx), under 5 minutes on one
H100/H200::

    python experiments/gpu_bench.py                 # 1B params, default device
    python experiments/gpu_bench.py --size 65536    # any size, e.g. a CPU smoke run

For each variant (Adam alone, ``optax.adamw``, ``decaytx.adamw``, and Adam with
each decay form) it compiles one step (``update`` + ``optax.apply_updates``,
params and state donated), counts the fused kernels, reads the bytes XLA says
the step accesses, and times it: 3 rounds, each of which builds the variant's
buffers, warms up and times 5 steps one by one (15 timed steps in all, median).
Variants run one after another within each round because at 1B params only one
variant's buffers fit at a time (Adam: params, grads, two moments = 16 GB; an
anchor adds 4 GB); the rounds interleave them.

The bandwidth baseline is measured in the same run: ``x + 1`` on a donated f32
array of the same length (8 bytes per element, read and written once). A
variant's effective bandwidth is its nominal one-pass traffic (Adam: 28 bytes
per param, read params, grads, two moments; write params, two moments; an
anchor is read too: 32) over its step time; the target is >= 85% of the copy.

Writes ``gpu_bench.json`` and ``gpu_bench.md`` to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import pathlib
import platform
import re
import sys
import time
from typing import Any

try:
    import decaytx
except ImportError:  # run from a checkout without installing: python experiments/gpu_bench.py
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    import decaytx

import jax
import jax.numpy as jnp
import numpy as np
import optax

LR, WD, L2 = 1e-3, 1e-2, 1e-4
TARGET = 0.85
_FUSION = re.compile(r"^\s*(?:ROOT\s+)?%?(\S+)\s*=\s*(.+?)\s+fusion\(", re.M)


def variants() -> dict[str, tuple[Any, int]]:
    """name -> (factory, nominal bytes per param)."""
    adam = lambda: optax.adam(LR)  # noqa: E731
    after = lambda d: (lambda: optax.chain(adam(), d()))  # noqa: E731
    before = lambda d: (lambda: optax.chain(d(), adam()))  # noqa: E731
    recipe = getattr(decaytx, "adamw", None)
    ours = (lambda: recipe(LR, WD)) if recipe is not None else after(
        lambda: decaytx.add_decoupled_decay(WD, learning_rate=LR))
    return {
        "adam (no decay)": (adam, 28),
        "optax.adamw": (lambda: optax.adamw(LR, weight_decay=WD), 28),
        "decaytx.adamw": (ours, 28),
        "l2>adam": (before(lambda: decaytx.add_l2_grad(L2)), 28),
        "l1>adam": (before(lambda: decaytx.add_l1_subgrad(L2)), 28),
        "elastic_net>adam": (before(lambda: decaytx.add_elastic_net_grad(L2, L2)), 28),
        "adam>decoupled": (after(lambda: decaytx.add_decoupled_decay(WD, learning_rate=LR)), 28),
        "adam>cautious": (after(lambda: decaytx.add_decoupled_decay(WD, learning_rate=LR, cautious=True)), 28),
        "adam>anchor": (after(lambda: decaytx.add_decoupled_decay(WD, learning_rate=LR, anchor="init")), 32),
        "adam>prox_l1": (after(lambda: decaytx.prox_l1(WD, learning_rate=LR)), 28),
        "adam>prox_elastic_net": (after(lambda: decaytx.prox_elastic_net(WD, WD, learning_rate=LR)), 28),
    }


def count_fusions(text: str) -> tuple[int, int]:
    """(all fusions, non-scalar fusions) launched by the ENTRY computation."""
    start = text.find("\nENTRY")
    shapes = [s for _, s in _FUSION.findall(text[start:] if start >= 0 else text)]
    scalar = [all(d == "" for d in re.findall(r"\[([^\]]*)\]", s)) and "[" in s for s in shapes]
    return len(shapes), len(shapes) - sum(scalar)


def bytes_accessed(compiled: Any) -> float:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    return float((ca or {}).get("bytes accessed", float("nan")))


def _sync(x: Any) -> None:
    jax.block_until_ready(x)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000_000, help="f32 params in one leaf (default 1e9)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/gpu_bench"))
    ap.add_argument("--only", nargs="*", default=None, help="run only these variants")
    args = ap.parse_args(argv)
    n = args.size
    dev = jax.devices()[0]
    t_start = time.perf_counter()
    print(f"device: {dev.device_kind} ({jax.default_backend()}), {n:,} f32 params", flush=True)

    spec = jax.ShapeDtypeStruct((n,), jnp.float32)
    make_params = jax.jit(lambda k: 0.02 * jax.random.normal(k, (n,), jnp.float32))
    grads = jax.jit(lambda k: 1e-3 * jax.random.normal(k, (n,), jnp.float32))(jax.random.PRNGKey(1))
    _sync(grads)

    # Copy baseline: x + 1 in place.
    inc = jax.jit(lambda x: x + 1, donate_argnums=0).lower(spec).compile()

    def time_copy() -> list[float]:
        x = jnp.zeros((n,), jnp.float32)
        for _ in range(args.warmup):
            x = inc(x)
        _sync(x)
        out = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            x = inc(x)
            _sync(x)
            out.append(time.perf_counter() - t0)
        del x
        return out

    chosen = {k: v for k, v in variants().items() if not args.only or k in args.only}
    compiled: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, (make, nominal) in chosen.items():
        opt = make()
        state_spec = jax.eval_shape(opt.init, spec)

        def step(p: Any, s: Any, g: Any, opt: Any = opt) -> Any:
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        t0 = time.perf_counter()
        c = jax.jit(step, donate_argnums=(0, 1)).lower(spec, state_spec, spec).compile()
        fus, arr = count_fusions(c.as_text())
        compiled[name] = (opt, c)
        info[name] = {"compile_s": time.perf_counter() - t0, "fusions": fus, "array_fusions": arr,
                      "nominal_bytes_per_param": nominal,
                      "compiled_bytes_per_param": bytes_accessed(c) / n, "times": []}
        print(f"  compiled {name}: {fus} fusions ({arr} params-sized), "
              f"{info[name]['compiled_bytes_per_param']:.1f} B/param as compiled", flush=True)

    copy_times: list[float] = []
    key = jax.random.PRNGKey(0)
    for r in range(args.rounds):
        copy_times += time_copy()
        for name, (opt, c) in compiled.items():
            p = make_params(key)
            s = opt.init(p)
            for _ in range(args.warmup):
                p, s = c(p, s, grads)
            _sync(p)
            for _ in range(args.steps):
                t0 = time.perf_counter()
                p, s = c(p, s, grads)
                _sync(p)
                info[name]["times"].append(time.perf_counter() - t0)
            del p, s
        print(f"  round {r + 1}/{args.rounds} done", flush=True)

    copy_s = float(np.median(copy_times))
    copy_gbs = 8 * n / copy_s / 1e9
    base = float(np.median(info["adam (no decay)"]["times"])) if "adam (no decay)" in info else None
    for d in info.values():
        t = float(np.median(d["times"]))
        d["median_s"] = t
        d["nominal_gbs"] = d["nominal_bytes_per_param"] * n / t / 1e9
        d["fraction_of_copy"] = d["nominal_gbs"] / copy_gbs
        d["meets_target"] = d["fraction_of_copy"] >= TARGET
        d["ratio_to_adam"] = t / base if base else None
    result = {
        "device": dev.device_kind, "backend": jax.default_backend(), "params": n,
        "copy_s": copy_s, "copy_gbs": copy_gbs, "target_fraction": TARGET,
        "versions": {"jax": jax.__version__, "optax": optax.__version__,
                     "decaytx": getattr(decaytx, "__version__", "?"), "python": platform.python_version()},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python experiments/gpu_bench.py" + (f" --size {n}" if n != 1_000_000_000 else ""),
        "variants": info, "wall_s": time.perf_counter() - t_start,
    }
    md = markdown(result)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=1))
    (args.out / "gpu_bench.md").write_text(md)
    print(f"wrote {args.out / 'gpu_bench.json'} and gpu_bench.md in {result['wall_s']:.0f}s")
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"## GPU: {r['device']} ({r['backend']}), {r['params']:,} f32 params",
        "",
        f"`{r['command']}`, {r['date']}; jax {r['versions']['jax']}, optax {r['versions']['optax']}, "
        f"decaytx {r['versions']['decaytx']}. Copy baseline (x+1 in place, 8 B/elem): "
        f"{r['copy_gbs']:.0f} GB/s. Target: >= {r['target_fraction']:.0%} of it.",
        "",
        "| variant | fusions (params-sized) | nominal B/param | compiled B/param | step (ms) | / adam | GB/s | fraction of copy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d in r["variants"].items():
        ratio = f"{d['ratio_to_adam']:.3f}" if d["ratio_to_adam"] else "n/a"
        lines.append(
            f"| `{name}` | {d['fusions']} ({d['array_fusions']}) | {d['nominal_bytes_per_param']} "
            f"| {d['compiled_bytes_per_param']:.1f} | {d['median_s'] * 1e3:.2f} | {ratio} "
            f"| {d['nominal_gbs']:.0f} | {d['fraction_of_copy']:.2f}{'' if d['meets_target'] else ' (below target)'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
