"""The MNIST-1D models in pure JAX: a small 1-D CNN (im2col convolution, with or
without batch norm) and a ReLU MLP. Parameters are plain dicts; kernels are
2-D (``[k * c_in, c_out]``), so ``decaytx.masks.ndim_at_least(2)`` decays the
kernels and leaves biases and batch-norm scales alone.

Under ``vmap`` over runs an im2col convolution (a gather and one matmul) is
several times faster on XLA:CPU than ``lax.conv_general_dilated``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
BN_EPS = 1e-5


def _dense_np(rng: np.random.Generator, n_in: int, n_out: int, gain: float = 2.0) -> dict[str, np.ndarray]:
    """He-normal kernel (gain 2 for ReLU), zero bias."""
    w = rng.standard_normal((n_in, n_out)) * math.sqrt(gain / n_in)
    return {"w": w.astype(np.float32), "b": np.zeros((n_out,), np.float32)}


def conv1d(x: jax.Array, w: jax.Array, k: int, stride: int) -> jax.Array:
    """'same'-padded strided 1-D convolution as im2col: x [B, L, C_in], w [k*C_in, C_out].

    The k patch columns are strided static slices, concatenated: their gradient
    is a pad and an add, where a gather's would be a scatter (slow on XLA:CPU).
    """
    length = x.shape[1]
    pad = k // 2
    xp = jnp.pad(x, ((0, 0), (pad, pad), (0, 0)))
    n_out = (length + 2 * pad - k) // stride + 1
    cols = [jax.lax.slice_in_dim(xp, j, j + stride * (n_out - 1) + 1, stride, axis=1) for j in range(k)]
    return jnp.concatenate(cols, axis=-1) @ w  # [B, L_out, k*C_in] @ [k*C_in, C_out]


@dataclasses.dataclass(frozen=True)
class CNN:
    """conv(k=5, s=2) -> [BN] -> ReLU -> conv(k=3, s=2) -> [BN] -> ReLU -> flatten -> linear.

    With batch norm, training uses the minibatch statistics; evaluation uses
    the statistics of the final weights on the training inputs (exact
    population statistics, no running averages), passed as ``stats``.
    """

    channels: int = 16
    batch_norm: bool = True
    length: int = 40
    classes: int = 10
    convs: tuple[tuple[int, int], ...] = ((5, 2), (3, 2))  # (kernel, stride)

    def init_np(self, rng: np.random.Generator) -> PyTree:
        p: dict[str, Any] = {}
        c_in, length = 1, self.length
        for i, (k, s) in enumerate(self.convs):
            layer = _dense_np(rng, k * c_in, self.channels)
            if self.batch_norm:
                layer = {"w": layer["w"], "scale": np.ones(self.channels, np.float32),
                         "shift": np.zeros(self.channels, np.float32)}
            p[f"conv{i}"] = layer
            c_in, length = self.channels, (length + 2 * (k // 2) - k) // s + 1
        p["head"] = _dense_np(rng, c_in * length, self.classes, gain=1.0)
        return p

    def apply(self, params: PyTree, x: jax.Array, stats: list | None = None) -> tuple[jax.Array, list]:
        h = x[:, :, None]
        used = []
        for i, (k, s) in enumerate(self.convs):
            layer = params[f"conv{i}"]
            h = conv1d(h, layer["w"], k, s)
            if self.batch_norm:
                if stats is None:
                    mean, var = h.mean(axis=(0, 1)), h.var(axis=(0, 1))
                else:
                    mean, var = stats[i]
                used.append((mean, var))
                h = (h - mean) * jax.lax.rsqrt(var + BN_EPS) * layer["scale"] + layer["shift"]
            else:
                h = h + layer["b"]
            h = jax.nn.relu(h)
        h = h.reshape(h.shape[0], -1)
        return h @ params["head"]["w"] + params["head"]["b"], used


@dataclasses.dataclass(frozen=True)
class MLP:
    """ReLU MLP without normalisation, e.g. sizes (40, 128, 128, 10)."""

    sizes: tuple[int, ...] = (40, 128, 128, 10)

    def init_np(self, rng: np.random.Generator) -> PyTree:
        n = len(self.sizes) - 1
        return {f"layer{i}": _dense_np(rng, a, b, gain=2.0 if i < n - 1 else 1.0)
                for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:]))}

    def apply(self, params: PyTree, x: jax.Array, stats: list | None = None) -> tuple[jax.Array, list]:
        n = len(self.sizes) - 1
        h = x
        for i in range(n):
            h = h @ params[f"layer{i}"]["w"] + params[f"layer{i}"]["b"]
            if i < n - 1:
                h = jax.nn.relu(h)
        return h, []


Model = CNN | MLP
