"""decaytx 0.2 names kept for 0.3: each warns once per call site and forwards."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

from decaytx import fused


def _alias(old: str, new: Callable[..., Any], new_name: str) -> Callable[..., Any]:
    @functools.wraps(new)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            f"decaytx.{old} is deprecated and will be removed after 0.3; use "
            f"decaytx.{new_name} (same arguments, same values).",
            DeprecationWarning,
            stacklevel=2,
        )
        return new(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"Deprecated alias of :func:`decaytx.{new_name}`."
    return alias


fused_adamw = _alias("fused_adamw", fused.adamw, "fused.adamw")
fused_adam_l2 = _alias("fused_adam_l2", fused.adam_l2, "fused.adam_l2")
fused_sgdw = _alias("fused_sgdw", fused.sgdw, "fused.sgdw")
fused_sgd_l2 = _alias("fused_sgd_l2", fused.sgd_l2, "fused.sgd_l2")
