"""docs/masks.md says what masks do: when a callable mask is called, the
scan-over-layers and preset rules, and no test-only imports in its examples."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp

import decaytx

PAGE = Path(__file__).resolve().parents[1] / "docs" / "masks.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_a_callable_mask_is_called_once_at_init_not_at_each_update():
    calls = []

    def mask(params):
        calls.append(jax.tree.structure(params))
        return jax.tree.map(lambda x: x.ndim >= 2, params)

    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    opt = decaytx.adamw(1e-3, 0.1, mask=mask)
    state = opt.init(params)
    step = jax.jit(opt.update)
    for _ in range(3):
        _, state = opt.update(params, state, params)
        _, state = step(params, state, params)
    assert len(calls) == 1


def test_the_page_says_callables_are_called_at_init_and_imports_no_pytest():
    text = PAGE.read_text()
    assert "each `update`" not in text and "every update" not in text
    assert "called once, at `init`" in text
    for block in BLOCK.findall(text):
        assert not re.search(r"^\s*(import|from)\s+pytest\b", block, re.M), block


def test_the_page_documents_stacked_axes_presets_and_the_truth_value_trap():
    text = PAGE.read_text()
    assert "stacked_axes=1" in text and "scan" in text.lower()
    for name in ("nanogpt", "transformers", "timm"):
        assert f'masks.preset("{name}")' in text
    assert "`bool(mask)`" in text and "pattern that matches no path" in text
