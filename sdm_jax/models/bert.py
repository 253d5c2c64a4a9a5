"""A Flax BERT encoder whose parameter tree mirrors Hugging Face's names; it also runs the
other families of :mod:`sdm_jax.models.families` (RoBERTa), which share BERT's layers.

The module tree uses the same names as Hugging Face's Flax BERT (``embeddings/word_embeddings/
embedding``, ``encoder/layer/0/attention/self/query/kernel``, ...), so checkpoint conversion is a
name rewrite plus a transpose. Outside this file a BERT is a pure function of its parameters:
see :func:`bert_apply` and :func:`bert_backbone`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdm_jax.models.backbone import Backbone, Batch, Params
from sdm_jax.models.families import family_of

WORD_EMBEDDING_PATH = ("embeddings", "word_embeddings", "embedding")
# LoRA target groups, named as in the PEFT literature: the attention projections, and the
# feed-forward pair of each layer.
ADAPTER_TARGETS = (
    ("attention", r"^encoder/layer/\d+/attention/(self/(query|key|value)|output/dense)/kernel$"),
    ("ffn", r"^encoder/layer/\d+/(intermediate|output)/dense/kernel$"),
)
TEXT_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class BertConfig:
    """The architecture fields of a Hugging Face ``BertConfig`` (or ``RobertaConfig``: the
    ``model_type`` names the family) this encoder honours."""

    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    hidden_act: str = "gelu"

    def __post_init__(self) -> None:
        family_of(self.model_type)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"unsupported hidden_act {self.hidden_act!r}; supported: {sorted(ACTIVATIONS)}"
            )

    @classmethod
    def from_hf_dict(cls, raw: Mapping[str, Any]) -> BertConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def to_hf_dict(self) -> dict[str, Any]:
        return {
            "architectures": [family_of(self.model_type).base_class],
            "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            **dataclasses.asdict(self),
        }

    def truncated(self, num_layers: int | None) -> BertConfig:
        if num_layers is None:
            return self
        if not 1 <= num_layers <= self.num_hidden_layers:
            raise ValueError(
                f"num_layers must lie in 1..{self.num_hidden_layers}, got {num_layers}"
            )
        return dataclasses.replace(self, num_hidden_layers=num_layers)


ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}


class _Embeddings(nn.Module):
    """Adds position and token-type embeddings to looked-up word vectors, then LayerNorm.

    The word table itself lives outside the module (see :func:`lookup_words`), so callers may
    pass a compact table holding only the rows a batch uses.
    """

    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, words, positions, token_type_ids):
        cfg = self.config
        init = nn.initializers.normal(cfg.initializer_range)
        hidden = (
            words
            + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, embedding_init=init,
                       name="position_embeddings")(positions)
            + nn.Embed(cfg.type_vocab_size, cfg.hidden_size, embedding_init=init,
                       name="token_type_embeddings")(token_type_ids)
        )
        hidden = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="LayerNorm")(hidden)
        return hidden.astype(self.dtype)


def lookup_words(table: jax.Array, input_ids: jax.Array, pad_token_id: int) -> jax.Array:
    """Word vectors for ``input_ids``; the padding row gets no gradient, as in Hugging Face
    (``padding_idx``), so training gradients match the reference and not just outputs."""
    words = jnp.take(table, input_ids, axis=0)
    is_pad = (input_ids == pad_token_id)[..., None]
    return jnp.where(is_pad, jax.lax.stop_gradient(words), words)


def _dense(config: BertConfig, features: int, dtype: Any, name: str) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, name=name,
                    kernel_init=nn.initializers.normal(config.initializer_range))


class _SelfAttention(nn.Module):
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, queries, hidden, attention_bias):
        """``queries`` are the rows that attend (all of ``hidden``, or a prefix of its rows)."""
        cfg = self.config
        heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // heads

        def project(name, rows):
            out = _dense(cfg, cfg.hidden_size, self.dtype, name)(rows)
            return out.reshape(*out.shape[:-1], heads, head_dim)

        query = project("query", queries)
        key, value = project("key", hidden), project("value", hidden)
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key) / jnp.sqrt(head_dim).astype(self.dtype)
        weights = jax.nn.softmax(scores.astype(jnp.float32) + attention_bias, axis=-1)
        context = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), value)
        return context.reshape(*context.shape[:-2], cfg.hidden_size)


class _Intermediate(nn.Module):
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden):
        cfg = self.config
        projected = _dense(cfg, cfg.intermediate_size, self.dtype, "dense")(hidden)
        return ACTIVATIONS[cfg.hidden_act](projected)


class _Layer(nn.Module):
    """One post-LN transformer layer; ``query_rows`` keeps only the first rows of its output
    (every row still serves as key and value), which is exact for what those rows compute."""

    config: BertConfig
    dtype: Any
    query_rows: int | None = None

    @nn.compact
    def __call__(self, hidden, attention_bias):
        cfg = self.config
        queries = hidden if self.query_rows is None else hidden[:, : self.query_rows]
        context = _AttentionBlock(cfg, self.dtype, name="attention")(
            queries, hidden, attention_bias
        )
        intermediate = _Intermediate(cfg, self.dtype, name="intermediate")(context)
        return _OutputBlock(cfg, self.dtype, name="output")(intermediate, context)


class _AttentionBlock(nn.Module):
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, queries, hidden, attention_bias):
        cfg = self.config
        context = _SelfAttention(cfg, self.dtype, name="self")(queries, hidden, attention_bias)
        return _OutputBlock(cfg, self.dtype, name="output")(context, queries)


class _OutputBlock(nn.Module):
    """Dense projection, residual connection, then LayerNorm (BERT is post-LN)."""

    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden, residual):
        cfg = self.config
        projected = _dense(cfg, cfg.hidden_size, self.dtype, "dense")(hidden)
        normed = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="LayerNorm")(
            (projected + residual).astype(jnp.float32)
        )
        return normed.astype(self.dtype)


class _LayerStack(nn.Module):
    """Holds the transformer layers under the names ``0``, ``1``, ... as Hugging Face does.

    ``last_query_rows`` limits the last layer's output to the first rows (1 = ``[CLS]``).
    """

    config: BertConfig
    dtype: Any
    last_query_rows: int | None = None

    @nn.compact
    def __call__(self, hidden, attention_bias):
        last = self.config.num_hidden_layers - 1
        for index in range(self.config.num_hidden_layers):
            rows = self.last_query_rows if index == last else None
            hidden = _Layer(self.config, self.dtype, query_rows=rows, name=str(index))(
                hidden, attention_bias
            )
        return hidden


class _Encoder(nn.Module):
    config: BertConfig
    dtype: Any
    last_query_rows: int | None = None

    @nn.compact
    def __call__(self, hidden, attention_bias):
        stack = _LayerStack(self.config, self.dtype, self.last_query_rows, name="layer")
        return stack(hidden, attention_bias)


class _Pooler(nn.Module):
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden):
        dense = _dense(self.config, self.config.hidden_size, self.dtype, "dense")
        return jnp.tanh(dense(hidden[:, 0]))


class BertModule(nn.Module):
    """Post-LN transformer layers and the tanh pooler over ``[CLS]``, from word vectors.

    Its parameters are those of a Hugging Face ``BertModel`` less the word table, which
    :func:`bert_apply` looks up first and keeps at ``embeddings/word_embeddings/embedding``.
    ``cls_only`` computes the last layer for ``[CLS]`` alone: the pooler is unchanged and the
    returned hidden state is ``[B, 1, H]``.
    """

    config: BertConfig
    dtype: Any = jnp.float32
    cls_only: bool = False

    @nn.compact
    def __call__(self, words, positions, attention_mask, token_type_ids):
        mask = attention_mask.astype(bool)[:, None, None, :]
        attention_bias = jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)
        hidden = _Embeddings(self.config, self.dtype, name="embeddings")(
            words, positions, token_type_ids
        )
        last_rows = 1 if self.cls_only else None
        hidden = _Encoder(self.config, self.dtype, last_rows, name="encoder")(
            hidden, attention_bias
        )
        pooled = _Pooler(self.config, self.dtype, name="pooler")(hidden)
        return hidden, pooled


def _split_word_table(params: Params) -> tuple[jax.Array, Params]:
    embeddings = dict(params["embeddings"])
    table = embeddings.pop("word_embeddings")["embedding"]
    return table, {**params, "embeddings": embeddings}


def bert_apply(
    params: Params,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    token_type_ids: jax.Array | None = None,
    *,
    config: BertConfig,
    dtype: Any = jnp.float32,
    cls_only: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Last hidden state ``[B, L, H]`` and pooler output ``[B, H]``; pure in ``params``.

    The word table may hold fewer rows than the vocabulary when ``input_ids`` index into it
    (the inner loop's active-rows mode); the padding id must then still map to itself.
    ``cls_only`` skips the last layer's work for every row but ``[CLS]`` (the hidden state is
    then ``[B, 1, H]``): the pooler output is the same, for about half a layer's cost.
    """
    if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    table, rest = _split_word_table(params)
    words = lookup_words(table, input_ids, config.pad_token_id).astype(dtype)
    positions = family_of(config.model_type).positions(input_ids, config.pad_token_id)
    return BertModule(config, dtype, cls_only).apply({"params": rest}, words, positions,
                                                     attention_mask, token_type_ids)


def init_bert_params(config: BertConfig, key: jax.Array) -> Params:
    """BERT's own initialisation: normal(initializer_range) weights, zero biases, unit LayerNorm."""
    table_key, module_key = jax.random.split(key)
    words = jnp.zeros((1, 1, config.hidden_size), jnp.float32)
    types = jnp.zeros((1, 1), jnp.int32)
    params = BertModule(config).init(module_key, words, types, jnp.ones_like(types),
                                     types)["params"]
    table = config.initializer_range * jax.random.normal(
        table_key, (config.vocab_size, config.hidden_size), jnp.float32
    )
    embeddings = {**params["embeddings"], "word_embeddings": {"embedding": table}}
    return {**params, "embeddings": embeddings}


POOLINGS = ("pooler", "mean")


def _mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    mask = attention_mask.astype(jnp.float32)[..., None]
    return jnp.sum(hidden.astype(jnp.float32) * mask, axis=-2) / jnp.maximum(
        jnp.sum(mask, axis=-2), 1.0
    )


@functools.cache
def bert_backbone(config: BertConfig, dtype: Any = jnp.float32,
                  pooling: str = "pooler") -> Backbone:
    """BERT as a :class:`Backbone` with float32 features.

    Cached: every model of one architecture gets the same feature function, so jitted
    programs keyed on it (outer steps, attacks) compile once, not once per loaded model.

    ``pooling="pooler"`` (the reference's choice) uses the tanh pooler over ``[CLS]`` and so
    computes the last layer for ``[CLS]`` alone;
    ``"mean"`` averages the last hidden state over real tokens, which is how sentence
    encoders such as all-MiniLM-L6-v2 were trained (their ``[CLS]`` and pooler carry little).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")

    def features(params: Params, batch: Batch) -> jax.Array:
        hidden, pooled = bert_apply(params, batch["input_ids"], batch["attention_mask"],
                                    batch.get("token_type_ids"), config=config, dtype=dtype,
                                    cls_only=pooling == "pooler")
        if pooling == "mean":
            return _mean_pool(hidden, batch["attention_mask"])
        return pooled.astype(jnp.float32)

    return Backbone(
        name=f"{config.model_type}-L{config.num_hidden_layers}-H{config.hidden_size}-{pooling}",
        features=features,
        init=functools.partial(init_bert_params, config),
        feature_dim=config.hidden_size,
        input_keys=TEXT_INPUT_KEYS,
        embedding_path=WORD_EMBEDDING_PATH,
        pad_token_id=config.pad_token_id,
        adapter_targets=ADAPTER_TARGETS,
    )
