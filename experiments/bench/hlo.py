"""Compiled cost of one optimizer step: kernels, bytes, state.

Everything here is deterministic for a given jax/jaxlib and backend: it reads
the compiled executable of one jitted step (``update`` + ``optax.apply_updates``
with params and state donated) and never times anything. The benchmark
(:mod:`experiments.bench`), its GPU script and ``tests/test_hlo_cost.py``
share it, so the figures in BENCHMARKS.md and the equalities the tests assert
are read the same way.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any

# "%name = f32[1024,1024]{1,0} fusion(...)" or "ROOT %name = (...) fusion(...)".
_FUSION = re.compile(r"^\s*(?:ROOT\s+)?%?(\S+)\s*=\s*(.+?)\s+fusion\(", re.M)


def step_fn(opt: optax.GradientTransformation) -> Callable[..., Any]:
    """One training step, ``update`` then ``apply_updates``, unjitted."""

    def step(params: PyTree, state: PyTree, grads: PyTree) -> tuple[PyTree, PyTree]:
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def jit_step(opt: optax.GradientTransformation) -> Callable[..., Any]:
    """The jitted step with params and state donated (updated in place)."""
    return jax.jit(step_fn(opt), donate_argnums=(0, 1))


def compile_step(
    opt: optax.GradientTransformation, params: PyTree, state: PyTree | None = None
) -> tuple[Any, float]:
    """``(compiled, seconds)``: the step AOT-compiled for ``params``' shapes.

    ``params`` may be arrays or ``jax.ShapeDtypeStruct``s; nothing is donated
    or run here.
    """
    if state is None:
        state = jax.eval_shape(opt.init, params)
    t0 = time.perf_counter()
    compiled = jit_step(opt).lower(params, state, params).compile()
    return compiled, time.perf_counter() - t0


def entry_computation(text: str) -> str:
    """The ENTRY computation of an HLO module (the one that launches kernels)."""
    start = text.find("\nENTRY")
    return text[start:] if start >= 0 else text


def fusion_shapes(text: str) -> list[str]:
    """Result shapes of the fusions the ENTRY computation launches, in order."""
    return [shape for _, shape in _FUSION.findall(entry_computation(text))]


# Any instruction that XLA runs as a kernel of its own: fusions and library calls
# (cuBLAS, cuDNN, Triton), in any computation: XLA:GPU's command buffers move
# the ENTRY's fusions into a called computation, where an ENTRY-only count
# would miss them.
_LAUNCH = re.compile(r"^\s*(?:ROOT\s+)?%?(\S+)\s*=\s*(.+?)\s+(fusion|custom-call)\(", re.M)


def launches(text: str) -> dict[str, int]:
    """Kernels an HLO module launches, counted in all its computations (not only ENTRY).

    ``{"fusions", "custom_calls", "kernels", "array_kernels"}``: ``kernels`` =
    fusions + custom calls; ``array_kernels`` = those whose result is not a
    scalar (the ones that stream params-sized data). A fused computation's
    body holds plain ops, so nothing is counted twice; a loop body would be
    counted once (optimizer steps have none).
    """
    found = _LAUNCH.findall(text)
    fusions = sum(op == "fusion" for _, _, op in found)
    return {"fusions": fusions, "custom_calls": len(found) - fusions, "kernels": len(found),
            "array_kernels": sum(not is_scalar_shape(shape) for _, shape, _ in found)}


def is_scalar_shape(shape: str) -> bool:
    """Whether an HLO result shape is rank 0 (``f32[]``, ``s32[]``, ``(f32[], s32[])``)."""
    dims = re.findall(r"\[([^\]]*)\]", shape)
    return bool(dims) and all(d == "" for d in dims)


def tree_bytes(tree: PyTree) -> int:
    """Bytes held by the array leaves of a pytree (arrays or ShapeDtypeStructs)."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            total += int(np.prod(leaf.shape, dtype=np.int64)) * jnp.dtype(leaf.dtype).itemsize
    return total


def tree_size(tree: PyTree) -> int:
    """Number of scalar elements in the array leaves of a pytree."""
    return sum(
        int(np.prod(leaf.shape, dtype=np.int64))
        for leaf in jax.tree_util.tree_leaves(tree)
        if hasattr(leaf, "shape")
    )


@dataclasses.dataclass(frozen=True)
class StepCost:
    """What one compiled step costs, read from the executable.

    Attributes:
      fusions: fused kernels launched by the step (ENTRY ``fusion`` ops).
      array_fusions: those whose result is not a scalar: the kernels that
        stream params-sized data (scalar ones update a step count or a
        bias-correction factor).
      temp_bytes: ``memory_analysis().temp_size_in_bytes``: scratch the step
        allocates besides its arguments and outputs.
      state_bytes: bytes of the optimizer state (``opt.init(params)``).
      bytes_accessed: ``cost_analysis()['bytes accessed']``: bytes read and
        written by all ops, as XLA counts them for this executable.
      params: number of parameters.
      compile_s: seconds to lower and compile (not deterministic).
    """

    fusions: int
    array_fusions: int
    temp_bytes: int
    state_bytes: int
    bytes_accessed: float
    params: int
    compile_s: float

    @property
    def bytes_per_param(self) -> float:
        return self.bytes_accessed / max(self.params, 1)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bytes_per_param"] = self.bytes_per_param
        return d


def cost_analysis(compiled: Any) -> dict[str, float]:
    """``compiled.cost_analysis()`` as one dict (older jax returned a list)."""
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    return dict(ca or {})


def cost_of_compiled(compiled: Any, state: PyTree, params: PyTree, compile_s: float = 0.0) -> StepCost:
    shapes = fusion_shapes(compiled.as_text())
    ma = compiled.memory_analysis()
    return StepCost(
        fusions=len(shapes),
        array_fusions=sum(not is_scalar_shape(s) for s in shapes),
        temp_bytes=int(ma.temp_size_in_bytes),
        state_bytes=tree_bytes(state),
        bytes_accessed=float(cost_analysis(compiled).get("bytes accessed", float("nan"))),
        params=tree_size(params),
        compile_s=compile_s,
    )


def step_cost(opt: optax.GradientTransformation, params: PyTree) -> StepCost:
    """Compiles one step of ``opt`` for ``params`` and reads its cost."""
    state = jax.eval_shape(opt.init, params)
    compiled, seconds = compile_step(opt, params, state)
    return cost_of_compiled(compiled, state, params, seconds)


# ---------------------------------------------------------------------------
# The forms compared, each as (baseline optimizer, optimizer + decay).

LR = 1e-3
WD = 1e-2  # decoupled lambda (m * lambda = 1e-5 per step with m = lr)
L2 = 1e-4  # coupled lambda


@dataclasses.dataclass(frozen=True)
class Form:
    """One decay form placed with one optimizer.

    Attributes:
      name: short id, e.g. ``"l2>adam"`` (gradient side, before Adam) or
        ``"adam>prox_l1"`` (update side, after Adam).
      base: the optimizer alone (factory).
      decayed: the optimizer with the decay (factory).
      anchor: whether the form keeps an anchor (one params-sized copy in state).
      side: ``"gradient"`` or ``"update"``.
    """

    name: str
    base: Callable[[], optax.GradientTransformation]
    decayed: Callable[[], optax.GradientTransformation]
    anchor: bool = False
    side: str = "update"


def _sgdm() -> optax.GradientTransformation:
    return optax.sgd(LR, momentum=0.9)


def _adam() -> optax.GradientTransformation:
    return optax.adam(LR)


def _sgd() -> optax.GradientTransformation:
    return optax.sgd(LR)


def forms() -> list[Form]:
    """Every placement measured: coupled before SGD-momentum and Adam; update-side after Adam and SGD."""
    import decaytx

    opts = {"sgdm": _sgdm, "adam": _adam, "sgd": _sgd}
    grad_side: dict[str, Callable[[], optax.GradientTransformation]] = {
        "l2": lambda: decaytx.add_l2_grad(L2),
        "l1": lambda: decaytx.add_l1_subgrad(L2),
        "elastic_net": lambda: decaytx.add_elastic_net_grad(L2, L2),
    }
    update_side: dict[str, tuple[Callable[[], optax.GradientTransformation], bool]] = {
        "decoupled": (lambda: decaytx.add_decoupled_decay(WD, learning_rate=LR), False),
        "cautious": (lambda: decaytx.add_decoupled_decay(WD, learning_rate=LR, cautious=True), False),
        "anchor": (lambda: decaytx.add_decoupled_decay(WD, learning_rate=LR, anchor="init"), True),
        "prox_l1": (lambda: decaytx.prox_l1(WD, learning_rate=LR), False),
        "prox_elastic_net": (lambda: decaytx.prox_elastic_net(WD, WD, learning_rate=LR), False),
    }
    out: list[Form] = []
    for o in ("sgdm", "adam"):
        for d, make in grad_side.items():
            out.append(Form(
                f"{d}>{o}", opts[o],
                (lambda make=make, o=o: optax.chain(make(), opts[o]())),
                side="gradient",
            ))
    for o in ("adam", "sgd"):
        for d, (make, anchor) in update_side.items():
            out.append(Form(
                f"{o}>{d}", opts[o],
                (lambda make=make, o=o: optax.chain(opts[o](), make())),
                anchor=anchor,
            ))
    return out


def adamw_pair() -> tuple[Callable[[], optax.GradientTransformation], Callable[[], optax.GradientTransformation], str]:
    """``(optax.adamw, decaytx's AdamW, label)``: the recipe if it exists, else its chain."""
    import decaytx

    ref = lambda: optax.adamw(LR, weight_decay=WD)  # noqa: E731
    recipe = getattr(decaytx, "adamw", None)
    if recipe is not None:
        return ref, (lambda: recipe(LR, WD)), "decaytx.adamw"
    return ref, (lambda: optax.chain(
        optax.scale_by_adam(), optax.scale_by_learning_rate(LR),
        decaytx.add_decoupled_decay(WD, learning_rate=LR),
    )), "chain(scale_by_adam, scale_by_learning_rate, add_decoupled_decay)"


def nominal_bytes_per_param(opt: str, *, anchor: bool = False, itemsize: int = 4) -> int:
    """The least memory traffic of one step, per parameter, in one pass.

    Read params, grads and every state buffer; write params and every state
    buffer. SGD: r p,g w p = 3 words; SGD-momentum: 5; Adam: 7; an anchor
    is read once more. Decay itself adds nothing: it reads params, which the
    step reads anyway.
    """
    words = {"sgd": 3, "sgdm": 5, "adam": 7, "adamw": 7}[opt]
    return (words + int(anchor)) * itemsize


# ---------------------------------------------------------------------------
# Per-kernel traffic


_SHAPE_DEF = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(\S+?\[[^\]]*\](?:\{[^}]*\})?)", re.M)
_FUSION_CALL = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.+?)\s+fusion\((.*?)\),\s*kind=")
_ITEMSIZE = {"f64": 8, "f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s64": 8, "pred": 1, "s8": 1, "u8": 1}


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape string (a tuple shape sums its elements)."""
    total = 0
    for dtype, dims in re.findall(r"(\w+)\[([^\]]*)\]", shape):
        n = 1
        for d in dims.split(","):
            if d.strip():
                n *= int(d)
        total += n * _ITEMSIZE.get(dtype, 4)
    return total


def kernel_table(text: str) -> list[dict[str, Any]]:
    """Per fused kernel of the ENTRY computation: result shape, array inputs, bytes read + written."""
    entry = entry_computation(text)
    shapes = dict(_SHAPE_DEF.findall(entry))
    out = []
    for line in entry.splitlines():
        m = _FUSION_CALL.match(line)
        if not m:
            continue
        name, shape, operands = m.groups()
        ins = [o for o in re.findall(r"%([\w.\-]+)", operands) if o in shapes]
        in_bytes = [shape_bytes(shapes[o]) for o in ins]
        out.append({
            "name": name,
            "shape": shape,
            "array_inputs": sum(b > 8 for b in in_bytes),
            "bytes": sum(in_bytes) + shape_bytes(shape),
        })
    return out


def _opt_of(name: str) -> str:
    head, tail = name.split(">")
    return tail if head in ("l2", "l1", "elastic_net") else head


def forms_table() -> dict[str, Any]:
    """Compiled cost of every decay form against its optimizer alone, on a small mixed tree."""
    params = {
        "dense": {"kernel": jax.ShapeDtypeStruct((512, 256), jnp.float32),
                  "bias": jax.ShapeDtypeStruct((256,), jnp.float32)},
        "embed": jax.ShapeDtypeStruct((1000, 64), jnp.float32),
        "conv": jax.ShapeDtypeStruct((3, 3, 32, 64), jnp.float32),
    }
    n = tree_size(params)
    bases = {"sgd": _sgd, "sgdm": _sgdm, "adam": _adam}
    base_cost = {k: step_cost(f(), params) for k, f in bases.items()}
    rows = []
    for form in forms():
        b = base_cost[_opt_of(form.name)]
        c = step_cost(form.decayed(), params)
        rows.append({
            "form": form.name, "side": form.side, "anchor": form.anchor,
            "base": b.as_dict(), "decayed": c.as_dict(),
            "equal_fusions": c.fusions == b.fusions,
            "equal_temp_bytes": c.temp_bytes == b.temp_bytes,
            "extra_state_bytes": c.state_bytes - b.state_bytes,
        })
    return {"tree": "dense 512x256 + bias 256, embed 1000x64, conv 3x3x32x64 (4 leaves)",
            "params": n, "rows": rows}


def leaf_kernels(opt: optax.GradientTransformation, n: int) -> list[dict[str, Any]]:
    """The params-sized kernels of one step of ``opt`` on one ``n``-element f32 leaf, bytes per param."""
    compiled, _ = compile_step(opt, {"w": jax.ShapeDtypeStruct((n,), jnp.float32)})
    return [
        {"name": k["name"], "array_inputs": k["array_inputs"], "bytes_per_param": k["bytes"] / n}
        for k in kernel_table(compiled.as_text()) if not is_scalar_shape(k["shape"])
    ]
