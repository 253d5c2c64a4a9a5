"""Train only the word-embedding rows an attacker's batches touch.

A row whose token never occurs in the inner batches gets a zero gradient at every inner step;
with zero moments Adam, SGD, momentum and RMSprop leave it where it is, and even where it would
move (AdamW's decay, parameter noise) nothing the attacker computes ever reads it. So the unrolled
loop can run on a compact table of the rows that occur in the inner batches and the outer batch,
with token ids remapped into it, and every logit, gradient norm and meta-gradient is unchanged.
The compact table is ``table[active_ids]``: its gradient scatter-adds back into the full table.
The simulated attacker of training picks its rows inside the compiled step
(:func:`active_token_ids`); the evaluation attacks pick theirs on the host from the attacker's
examples (:func:`host_active_ids`) and read the rows outside the table from the full one
(:func:`active_rows_features`). Both keep the same sorted, padded layout.

``active_ids`` is ``jnp.unique`` padded to a static size with copies of the largest id, so it stays
sorted and remapping is a ``searchsorted``; padding rows are never read. The ids ``0..pad_id``
are always kept, so the padding id maps to itself: encoders treat it as padding by value (its
row gets no gradient; RoBERTa also counts positions past it), and a different token must never
take its place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sdm_jax.models.backbone import Params

TOKEN_KEY = "input_ids"


def get_path(tree: Params, path: Sequence[str]):
    for key in path:
        tree = tree[key]
    return tree


def replace_path(tree: Params, path: Sequence[str], value) -> Params:
    if not path:
        return value
    head, *rest = path
    return {**tree, head: replace_path(tree[head], rest, value)}


def active_token_ids(token_ids: Sequence[jax.Array], size: int, pad_id: int = 0
                     ) -> tuple[jax.Array, jax.Array]:
    """Sorted unique ids of all ``token_ids`` arrays and ``0..pad_id``, padded to ``size``, and
    how many token occurrences did not fit (0 when ``size`` suffices)."""
    flat = jnp.concatenate([ids.reshape(-1) for ids in token_ids])
    with_pad = jnp.concatenate([jnp.arange(pad_id + 1, dtype=flat.dtype), flat])
    active = jnp.unique(with_pad, size=size, fill_value=jnp.max(with_pad))
    missing = jnp.sum(active[jnp.searchsorted(active, flat)] != flat)
    return active, missing


def host_active_ids(token_ids: np.ndarray, multiple: int, vocab_size: int, pad_id: int = 0
                    ) -> np.ndarray:
    """:func:`active_token_ids` on the host for known tokens: the sorted unique ids and the
    padding id, padded with copies of the largest to a multiple of ``multiple`` (at most
    ``vocab_size``), so nearby vocabularies share one compiled shape."""
    ids = np.union1d(np.asarray(token_ids).reshape(-1), np.arange(pad_id + 1)).astype(np.int32)
    size = min(-(-len(ids) // multiple) * multiple, vocab_size)
    return np.concatenate([ids, np.full(size - len(ids), ids[-1], np.int32)])


def remap_tokens(batch: dict, active: jax.Array) -> dict:
    return {**batch, TOKEN_KEY: jnp.searchsorted(active, batch[TOKEN_KEY]).astype(jnp.int32)}


def compact_embedding(backbone_params: Params, path: Sequence[str], active: jax.Array) -> Params:
    table = get_path(backbone_params, path)
    return replace_path(backbone_params, path, jnp.take(table, active, axis=0))


@functools.lru_cache(maxsize=16)
def active_rows_features(features_fn: Callable, embedding_path: tuple[str, ...],
                         pad_id: int = 0) -> Callable:
    """``features_fn`` over ``{"compact": ..., "rest": ...}`` for batches of vocabulary ids.

    ``compact`` is the backbone's params with the word table at ``embedding_path`` cut to the
    active rows (the trained part); ``rest`` holds ``table`` (the full ``[vocab, H]`` table),
    ``ids`` (the sorted active ids, id 0 first, padded with copies of the largest) and ``scale``
    (how much every row outside ``ids`` has shrunk so far; 1 without weight decay). Each token's
    vector is its compact row when its id is active, else its scaled full row; the backbone then
    reads them from a per-token table whose rows ``0..pad_id`` are the compact ones, so the
    padding id still means padding.
    Cached, so repeated calls hand ``compiled_program`` the same function.
    """

    def features(params, batch):
        compact_params, rest = params["compact"], params["rest"]
        compact = get_path(compact_params, embedding_path)
        ids = batch[TOKEN_KEY]
        position = jnp.minimum(jnp.searchsorted(rest["ids"], ids), rest["ids"].shape[0] - 1)
        active = (rest["ids"][position] == ids)[..., None]
        untouched = rest["scale"] * jnp.take(rest["table"], ids, axis=0)
        words = jnp.where(active, jnp.take(compact, position, axis=0), untouched)
        per_token = jnp.concatenate([compact[: pad_id + 1], words.reshape(-1, compact.shape[-1])])
        token_index = pad_id + 1 + jnp.arange(ids.size, dtype=ids.dtype).reshape(ids.shape)
        token_ids = jnp.where(ids == pad_id, pad_id, token_index)
        backbone_params = replace_path(compact_params, embedding_path, per_token)
        return features_fn(backbone_params, {**batch, TOKEN_KEY: token_ids})

    return features
