"""Concrete coefficient values as the compiled program reads them.

XLA compiles each distinct fusion body once and shares it between identical
bodies (XLA:CPU emits and optimises one LLVM module per distinct body). A
concrete coefficient is a scalar constant, and XLA sinks scalar constants
into the fusion that uses them: a coefficient tree with 1,000 distinct values
gives 1,000 distinct bodies, and compile time and compile memory grow with the
count of distinct values while the program stays the same size.

Handing XLA the values in any other compile-time form does not help: it
constant-folds a slice of a constant array back into a scalar constant,
rewrites a uniform constant array as a broadcast scalar, and XLA:CPU expands
``optimization_barrier`` before constant folding. Any per-leaf
information in a fusion body (a constant, a slice index) makes it distinct;
only the fusion's operands may differ. :func:`pick` therefore gives each
value through an operand: a two-element constant array (a non-scalar
constant stays a buffer, it is not sunk into the fusion) read at an index
that is always 0 but that XLA does not evaluate at compile time. Every leaf's
fusion body is then the same, whatever the values. (A per-element gather
would also hide the value, but XLA does not duplicate a gather into the two
moment fusions of ``add_l2_grad``: one more kernel per leaf.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The benchmark's A/B switch (False: every value a scalar constant, as in 0.2).
ENABLED = True
# A name keeps its values as constants up to this many distinct values: a
# few extra fusion bodies cost little to compile, and the common param groups
# (two or three values) keep exactly the program of chained masked transforms.
MAX_CONSTANTS = 8


def spread(groups: Sequence[Mapping[str, np.ndarray | None]]) -> frozenset[str]:
    """The names that take more than :data:`MAX_CONSTANTS` distinct values.

    ``groups`` holds one mapping per group, ``name -> 0-d NumPy array or
    None`` (``None``: a concrete zero, not counted). Values are compared by
    dtype and bytes. Empty when :data:`ENABLED` is False.
    """
    seen: dict[str, set[tuple[str, bytes]]] = {}
    for grp in groups:
        for k, v in grp.items():
            if v is not None:
                seen.setdefault(k, set()).add((v.dtype.str, v.tobytes()))
    if not ENABLED:
        return frozenset()
    return frozenset(k for k, s in seen.items() if len(s) > MAX_CONSTANTS)


def pick(value: np.ndarray) -> jax.Array:
    """``value``, bit for bit, as a scalar the compiled fusion reads from an operand.

    Args:
      value: a 0-d NumPy array of a real floating dtype (the scalar the leaf
        maths takes, already in its dtype).

    Returns:
      A 0-d array of ``value``'s dtype equal to ``value``: the constant
      ``[value, nan]`` dynamic-sliced at ``min(iota(2), 0)[1] = 0``. XLA does
      not evaluate that index at compile time, so the fusion that uses the
      result takes the two-element constant as an operand (a non-scalar
      constant is not sunk into the fusion) and computes the index in its
      body, the same in every leaf's body. It reads no data (no collective on
      sharded params, no copy of a donated buffer), costs a few scalar ops
      per fusion and no kernel; a wrong index would give NaN, never another
      coefficient. Should a later XLA fold the index, the program is 0.2's
      (scalar constants): same values, one fusion body per value.
    """
    table = jnp.asarray(np.array([value, np.nan], dtype=value.dtype))
    zero = jnp.minimum(jax.lax.iota(jnp.int32, 2), 0)[1]
    return jax.lax.dynamic_slice(table, (zero,), (1,)).reshape(())
