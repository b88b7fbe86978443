"""Shared fixtures for the core test suite.

Helpers are fixtures (not imports) so that test modules stay importable
whatever the test layout; each module keeps its own NumPy float64 reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
import pytest


@pytest.fixture
def x64():
    """Enables float64 for one test and restores the previous setting."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def maybe_jit(request) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Runs a test once with plain functions and once under ``jax.jit``."""
    return jax.jit if request.param else (lambda f: f)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


_FUSION = re.compile(r"^\s*(?:ROOT\s+)?%?(\S+)\s*=\s*(\S+)\s+fusion\(", re.M)


def _entry(text: str) -> str:
    """The ENTRY computation of an HLO module (fusions are called from it)."""
    start = text.find("ENTRY")
    return text[start:] if start >= 0 else text


def compiled_step(opt: optax.GradientTransformation, params: Any) -> str:
    """Compiled HLO of one optimizer step plus ``optax.apply_updates``."""
    state = opt.init(params)

    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    return jax.jit(step).lower(params, state, params).compile().as_text()


def fusions(text: str) -> list[str]:
    """The shapes of the fusions launched by the ENTRY computation."""
    return [shape for _, shape in _FUSION.findall(_entry(text))]


class Hlo:
    """HLO inspection helpers, as a fixture."""

    compiled_step = staticmethod(compiled_step)
    fusions = staticmethod(fusions)

    @staticmethod
    def lowered_ops(fn: Callable[..., Any], *args: Any) -> int:
        """Number of operations in the lowered (StableHLO) program of ``fn``."""
        text = jax.jit(fn).lower(*args).as_text()
        # One op per line "%x = dialect.op ..." (return and func headers excluded).
        return len(re.findall(r"^\s*%[^=\n]+=\s*\"?[a-z_]+\.[a-z_]+", text, re.M))


@pytest.fixture
def hlo() -> type[Hlo]:
    return Hlo
