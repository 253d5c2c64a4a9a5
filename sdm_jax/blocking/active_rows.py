"""Adapt only the word-embedding rows an attacker's batches touch.

A row whose token never occurs in the inner batches gets a zero gradient at every inner step;
with zero moments Adam, SGD, momentum and RMSprop leave it where it is, and even where it would
move (AdamW's decay, parameter noise) nothing the attacker computes ever reads it. So the unrolled
loop can run on a compact table of the rows that occur in the inner batches and the outer batch,
with token ids remapped into it, and every logit, gradient norm and meta-gradient is unchanged.
The compact table is ``table[active_ids]``: its gradient scatter-adds back into the full table.

``active_ids`` is ``jnp.unique`` padded to a static size with copies of the largest id, so it stays
sorted and remapping is a ``searchsorted``; padding rows are never read. Id 0 is always kept, so
it stays id 0 after remapping: BERT treats id 0 as padding by value (its row gets no gradient),
and a different token must never take its place.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from sdm_jax.models.backbone import Params

TOKEN_KEY = "input_ids"
PAD_ID = 0


def get_path(tree: Params, path: Sequence[str]):
    for key in path:
        tree = tree[key]
    return tree


def replace_path(tree: Params, path: Sequence[str], value) -> Params:
    if not path:
        return value
    head, *rest = path
    return {**tree, head: replace_path(tree[head], rest, value)}


def active_token_ids(token_ids: Sequence[jax.Array], size: int) -> tuple[jax.Array, jax.Array]:
    """Sorted unique ids of all ``token_ids`` arrays and the padding id, padded to ``size``, and
    how many token occurrences did not fit (0 when ``size`` suffices)."""
    flat = jnp.concatenate([ids.reshape(-1) for ids in token_ids])
    with_pad = jnp.concatenate([jnp.full((1,), PAD_ID, flat.dtype), flat])
    active = jnp.unique(with_pad, size=size, fill_value=jnp.max(with_pad))
    missing = jnp.sum(active[jnp.searchsorted(active, flat)] != flat)
    return active, missing


def remap_tokens(batch: dict, active: jax.Array) -> dict:
    return {**batch, TOKEN_KEY: jnp.searchsorted(active, batch[TOKEN_KEY]).astype(jnp.int32)}


def compact_embedding(backbone_params: Params, path: Sequence[str], active: jax.Array) -> Params:
    table = get_path(backbone_params, path)
    return replace_path(backbone_params, path, jnp.take(table, active, axis=0))
