"""The params trees the benchmark times, and the sizes of each mode.

Three trees of about 16M f32 params (``M = 2**20``) that differ only in how
the params are split: one flat leaf, 100 leaves (50 square kernels and their
biases), and 309 transformer-like leaves (25 blocks of 12 leaves, embeddings,
layer norms and a head). A fourth, small-leaf tree has the same 309 leaves
with about 0.5M params, where per-kernel overhead dominates.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

M = 1 << 20


@dataclasses.dataclass(frozen=True)
class Tree:
    """A named flat dict of leaf shapes (paths like ``"block07/attn/qkv/kernel"``)."""

    label: str
    shapes: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def leaves(self) -> int:
        return len(self.shapes)

    @property
    def size(self) -> int:
        return sum(math.prod(s) for _, s in self.shapes)

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "leaves": self.leaves, "params": self.size}


def fmt_n(n: int) -> str:
    """``16M``, ``0.5M``, ``64K``, ``100``."""
    if n >= M // 4:
        x = n / M
        return f"{x:.0f}M" if abs(x - round(x)) < 0.05 else f"{x:.1f}M"
    if n >= 1024:
        return f"{n / 1024:.0f}K"
    return str(n)


def flat(n: int) -> Tree:
    """One f32 leaf of ``n`` params."""
    return Tree(f"1 leaf, {fmt_n(n)}", (("w", (n,)),))


def layered(leaves: int, total: int) -> Tree:
    """``leaves // 2`` square kernels and their biases, about ``total`` params."""
    k = max(leaves // 2, 1)
    side = max(int(round(math.sqrt(total / k))), 1)
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for i in range(k):
        shapes += [(f"layer{i:03d}/kernel", (side, side)), (f"layer{i:03d}/bias", (side,))]
    t = Tree("", tuple(shapes))
    return dataclasses.replace(t, label=f"{t.leaves} leaves, {fmt_n(t.size)}")


def transformer(total: int, blocks: int = 25) -> Tree:
    """309 transformer-like leaves (for ``blocks=25``) with about ``total`` params.

    Per block: two layer norms (scale, bias), attention qkv and output
    projections, an MLP of width 4d (kernels and biases): 12 leaves, about
    12 d^2 params. Besides: token and position embeddings, an embedding layer
    norm, a final layer norm, a pooler (kernel, bias) and a head kernel
    (9 leaves). ``d`` is chosen so that the blocks hold about 90% of ``total``
    and the vocabulary fills the rest.
    """
    d = max(int(math.sqrt(0.9 * total / (12 * blocks))), 2)
    seq = max(min(512, d), 2)
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for b in range(blocks):
        p = f"block{b:02d}"
        shapes += [
            (f"{p}/ln1/scale", (d,)), (f"{p}/ln1/bias", (d,)),
            (f"{p}/attn/qkv/kernel", (d, 3 * d)), (f"{p}/attn/qkv/bias", (3 * d,)),
            (f"{p}/attn/out/kernel", (d, d)), (f"{p}/attn/out/bias", (d,)),
            (f"{p}/ln2/scale", (d,)), (f"{p}/ln2/bias", (d,)),
            (f"{p}/mlp/fc/kernel", (d, 4 * d)), (f"{p}/mlp/fc/bias", (4 * d,)),
            (f"{p}/mlp/proj/kernel", (4 * d, d)), (f"{p}/mlp/proj/bias", (d,)),
        ]
    other = [("pos_embed", (seq, d)), ("ln_embed/scale", (d,)), ("ln_embed/bias", (d,)),
             ("ln_final/scale", (d,)), ("ln_final/bias", (d,)),
             ("pooler/kernel", (d, d)), ("pooler/bias", (d,))]
    used = sum(math.prod(s) for _, s in shapes + other)
    vocab = max((total - used) // (2 * d), 1)  # token embedding + head kernel
    shapes = [("tok_embed", (vocab, d)), *shapes, *other, ("head/kernel", (d, vocab))]
    t = Tree("", tuple(shapes))
    return dataclasses.replace(t, label=f"{t.leaves} leaves, {fmt_n(t.size)}")


def make_params(tree: Tree, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Random f32 params (scale 0.02) and grads (scale 1e-3) of ``tree``'s shapes."""
    params = {k: (0.02 * rng.standard_normal(s)).astype(np.float32) for k, s in tree.shapes}
    grads = {k: (1e-3 * rng.standard_normal(s)).astype(np.float32) for k, s in tree.shapes}
    return params, grads


@dataclasses.dataclass(frozen=True)
class Config:
    """The sizes of one mode."""

    name: str
    trees: tuple[Tree, ...]
    reps: int  # timed repetitions per variant (median over them)
    warmup: int
    target_s: float  # each timed repetition runs enough steps to last about this long
    copy_elems: int  # f32 elements of the copy baseline
    mlp_dims: tuple[int, ...]  # the MLP of the train-step section
    mlp_batch: int
    init_tree: Tree  # tree of the init / first-compile section
    init_repeats: int
    init_knots: int = 1000  # knots of the piecewise schedule of the init section
    forms: bool = True  # the compiled-cost table of every decay form
    subset: bool = False  # time variants.QUICK_PLAIN / QUICK_FLAG only
    torch: bool = True
    note: str = ""


def config(mode: str) -> Config:
    """``"full"``, ``"quick"`` (same trees, fewer repetitions) or ``"tiny"`` (tests)."""
    big = (flat(16 * M), layered(100, 16 * M), transformer(16 * M))
    small = transformer(M // 2)
    if mode in ("full", "quick"):
        quick = mode == "quick"
        return Config(
            mode, trees=(*big, small), reps=11 if quick else 41,
            target_s=0.05 if quick else 0.1, copy_elems=16 * M,
            mlp_dims=(784, 1024, 1024, 1024, 1024, 10), mlp_batch=128,
            init_tree=flat(M // 4), init_repeats=1 if quick else 5, warmup=1 if quick else 2,
            forms=not quick, subset=quick,
            note=("--quick: the full run's trees, 11 repetitions, AdamW and Adam-L2 only (decaytx.adamw and the L2 "
                  "chains only without the option; the SGD forms in the one-leaf kernels table only), one init "
                  "case per schedule, no forms table (tests/test_hlo_cost.py asserts it). Without --quick: every "
                  "variant, 41 repetitions."
                  if quick else ""),
        )
    if mode == "tiny":  # tests only: checks the outputs, not the figures
        return Config(
            "tiny", trees=(flat(4096),), reps=3, warmup=1,
            target_s=0.0, copy_elems=4096, mlp_dims=(16, 32, 4), mlp_batch=8,
            init_tree=flat(1024), init_repeats=1, init_knots=10, forms=False, subset=True,
            note="tiny: a smoke run for the test suite; its figures mean nothing.",
        )
    raise ValueError(f"mode={mode!r}; pass 'quick', 'full' or 'tiny'.")
