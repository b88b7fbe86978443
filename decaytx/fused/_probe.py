"""Is XLA:CPU multi-output fusion on in this process?

The fused steps choose their formulation at trace time: the sibling form
only where multi-output fusion merges it into one kernel per leaf.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"
_FLAG_NAME = "xla_cpu_use_multi_output_fusion"


@functools.cache
def _probe(backend: str) -> bool:
    # Two outputs that read the same input: one kernel with multi-output
    # fusion, two without.
    compiled = jax.jit(lambda x: (x * 2.0, x * 3.0 + 1.0), backend=backend).lower(
        jax.ShapeDtypeStruct((64,), jnp.float32)
    ).compile()
    text = compiled.as_text() or ""
    entry = text[text.find("\nENTRY"):]
    return entry.count(" fusion(") == 1


def multi_output_fusion_active() -> bool:
    """Whether XLA:CPU's multi-output fusion is active in this process.

    True when the default backend is CPU, ``XLA_FLAGS`` carries
    ``xla_cpu_use_multi_output_fusion`` and a probe compilation (two outputs
    of one input, cached per process) compiles to one kernel: the flags are
    read when the backend starts, so setting them later has no effect and the
    probe says so.

    Returns:
      ``True`` if the fused formulation compiles to one kernel per leaf here.

    Examples:
      >>> import decaytx
      >>> isinstance(decaytx.multi_output_fusion_active(), bool)
      True
    """
    if jax.default_backend() != "cpu":
        return False
    if _FLAG_NAME not in os.environ.get("XLA_FLAGS", ""):
        return False
    return _probe("cpu")
