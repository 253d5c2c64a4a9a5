"""Compress, then fine-tune: the weight transforms of the compression attacks.

An attacker who receives a blocked model may quantise or prune it before fine-tuning, which
moves every weight matrix at once and can undo what blocking relied on. Each transform here maps
the backbone's parameter pytree to the dequantised (or pruned) float pytree the attacker then
fine-tunes like any other model; pruned weights are free to grow back. Only the matrices of the
backbone's named linear layers (every group in
:attr:`~sdm_jax.models.backbone.Backbone.adapter_targets`) are compressed, as weight-only
quantisers do: embeddings, biases and LayerNorm stay as they are.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict

from sdm_jax.models.adapters import matching_matrices
from sdm_jax.models.backbone import Backbone, Params

# Bits of symmetric weight-only quantisation, per output channel.
QUANTISE_BITS = {"int8": 8, "int4": 4}
PRUNE_FRACTION = {"prune50": 0.5}
COMPRESSIONS = ("none", *QUANTISE_BITS, *PRUNE_FRACTION)


def quantise(matrix: jnp.ndarray, bits: int) -> jnp.ndarray:
    """Round-to-nearest symmetric quantisation of each output column, returned dequantised."""
    levels = 2 ** (bits - 1) - 1
    scale = jnp.max(jnp.abs(matrix), axis=0, keepdims=True) / levels
    scale = jnp.where(scale > 0, scale, 1.0)
    return jnp.clip(jnp.round(matrix / scale), -levels, levels) * scale


def prune(matrix: jnp.ndarray, fraction: float) -> jnp.ndarray:
    """Zero the ``fraction`` of the matrix's entries with the smallest magnitude."""
    count = int(fraction * matrix.size)
    if count == 0:
        return matrix
    threshold = jnp.sort(jnp.abs(matrix).ravel())[count - 1]
    return jnp.where(jnp.abs(matrix) > threshold, matrix, 0.0)


def compressed_paths(backbone: Backbone, params: Params) -> list[str]:
    """The ``/``-joined paths of the matrices a compression attack transforms."""
    return matching_matrices(params, tuple(pattern for _, pattern in backbone.adapter_targets))


def check_compression(backbone: Backbone, params: Params, compression: str) -> None:
    """Fail in one line, without computing anything, when ``compression`` cannot apply."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; choose from {COMPRESSIONS}")
    if compression != "none" and not compressed_paths(backbone, params):
        raise ValueError(f"the {compression} attack finds no weight matrix in {backbone.name}")


def compress(backbone: Backbone, params: Params, compression: str) -> Params:
    """``params`` with the backbone's linear-layer matrices quantised or pruned."""
    check_compression(backbone, params, compression)
    if compression == "none":
        return params
    paths = compressed_paths(backbone, params)
    flat = dict(flatten_dict(params, sep="/"))
    for path in paths:
        if compression in QUANTISE_BITS:
            flat[path] = quantise(flat[path], QUANTISE_BITS[compression])
        else:
            flat[path] = prune(flat[path], PRUNE_FRACTION[compression])
    return unflatten_dict(flat, sep="/")
