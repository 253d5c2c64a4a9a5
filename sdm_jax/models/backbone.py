"""The one shape every model takes above ``models/``: a pure feature function over a pytree.

``blocking/`` and ``attacks/`` see a :class:`Backbone` and plain parameter pytrees only; no Flax
object crosses this line. A classifier's parameters are ``{"backbone": ..., "head": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax

Params = Any
Batch = Mapping[str, jax.Array]


@dataclass(frozen=True)
class Backbone:
    """A feature extractor as pure functions.

    ``features(params, batch)`` returns ``[batch, feature_dim]`` (the pooler output for BERT).
    ``init(key)`` draws fresh parameters with the architecture's own initialisation: the random
    baseline. ``embedding_path`` names the word-embedding table inside the params (``None`` when
    the model has none), so the inner loop can adapt only the rows its batches touch;
    ``pad_token_id`` is the id that table treats as padding.
    ``adapter_targets`` names groups of weight matrices a LoRA attack may adapt: pairs of a
    group name and a regular expression matched against ``/``-joined parameter paths.
    """

    name: str
    features: Callable[[Params, Batch], jax.Array]
    init: Callable[[jax.Array], Params]
    feature_dim: int
    input_keys: tuple[str, ...]
    embedding_path: tuple[str, ...] | None = None
    pad_token_id: int = 0
    adapter_targets: tuple[tuple[str, str], ...] = (("dense", r"kernel$"),)
