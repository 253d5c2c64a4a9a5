"""Encoder families: the Hugging Face architectures that share BERT's layers, and how each
differs from BERT in its checkpoints and its embeddings.

Everything family-specific lives in one :class:`EncoderFamily` entry of :data:`FAMILIES`,
keyed by ``config.json``'s ``model_type``: the class names an export declares, the prefix a
task model puts before the encoder's keys, the checkpoint keys that are not encoder
parameters, the keys a checkpoint may lack, and how position ids follow from the token ids.
Code outside ``models/`` never asks which family a model is. Adding a family whose layers are
BERT's is one entry here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp


def sequential_positions(input_ids: jax.Array, pad_token_id: int) -> jax.Array:
    """BERT: position ``i`` for the ``i``-th token, padding included."""
    del pad_token_id
    return jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)


def positions_after_padding_id(input_ids: jax.Array, pad_token_id: int) -> jax.Array:
    """RoBERTa: real tokens count up from ``pad_token_id + 1``; padding sits at
    ``pad_token_id``, whose position row is the padding row."""
    real = (input_ids != pad_token_id).astype(jnp.int32)
    return jnp.cumsum(real, axis=-1) * real + pad_token_id


@dataclass(frozen=True)
class EncoderFamily:
    """How one architecture's checkpoints and embeddings differ from the others'.

    - ``base_class``: the ``transformers`` class of an encoder export (``architectures``).
    - ``classifier_class``: the class of an export with a linear classification head over the
      pooled ``[CLS]``. ``classifier_output`` is that head's checkpoint prefix;
      ``classifier_pooler`` is where such an export keeps the pooler's dense layer (``None``:
      inside the encoder, as ``pooler.dense``).
    - ``prefix``: what a task model (``...ForSequenceClassification``, ``...ForMaskedLM``)
      puts before the encoder's keys.
    - ``skipped_keys``: checkpoint keys that are not encoder parameters, dropped on purpose.
    - ``optional_keys``: encoder keys a checkpoint may lack (RoBERTa's masked-LM checkpoints
      carry no pooler); they are taken from the family's own initialisation, as
      ``transformers`` does.
    - ``positions(input_ids, pad_token_id)``: the position id of every token.
    """

    model_type: str
    base_class: str
    classifier_class: str
    classifier_output: str
    classifier_pooler: str | None
    prefix: str
    skipped_keys: re.Pattern
    optional_keys: re.Pattern | None
    positions: Callable[[jax.Array, int], jax.Array]


BERT = EncoderFamily(
    model_type="bert",
    base_class="BertModel",
    classifier_class="BertForSequenceClassification",
    classifier_output="classifier.",
    classifier_pooler=None,
    prefix="bert.",
    skipped_keys=re.compile(r"^(cls\.|classifier\.|embeddings\.position_ids$)"),
    optional_keys=None,
    positions=sequential_positions,
)

# RoBERTa's classifier applies dense + tanh to <s>, then a linear layer: the pooler and the
# head under the classifier's names, with no pooler inside the encoder.
ROBERTA = EncoderFamily(
    model_type="roberta",
    base_class="RobertaModel",
    classifier_class="RobertaForSequenceClassification",
    classifier_output="classifier.out_proj.",
    classifier_pooler="classifier.dense.",
    prefix="roberta.",
    skipped_keys=re.compile(r"^(lm_head\.|classifier\.out_proj\.|embeddings\.position_ids$)"),
    optional_keys=re.compile(r"^pooler\."),
    positions=positions_after_padding_id,
)

FAMILIES: dict[str, EncoderFamily] = {family.model_type: family for family in (BERT, ROBERTA)}


def family_of(model_type: str) -> EncoderFamily:
    """The family of a ``config.json`` ``model_type``; one line naming the supported ones."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ValueError(f"model_type {model_type!r} is not supported; sdm-jax loads "
                         f"{', '.join(sorted(FAMILIES))} encoders") from None
