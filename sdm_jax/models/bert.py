"""A Flax BERT encoder whose parameter tree mirrors Hugging Face's names.

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

WORD_EMBEDDING_PATH = ("embeddings", "word_embeddings", "embedding")
TEXT_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class BertConfig:
    """The architecture fields of a Hugging Face ``BertConfig`` this encoder honours."""

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
            "architectures": ["BertModel"],
            "model_type": "bert",
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
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, input_ids, token_type_ids):
        cfg = self.config
        init = nn.initializers.normal(cfg.initializer_range)
        word_table = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init,
                              name="word_embeddings")
        words = word_table(input_ids)
        # Hugging Face builds this table with padding_idx: the padding row never gets a gradient.
        is_pad = (input_ids == cfg.pad_token_id)[..., None]
        words = jnp.where(is_pad, jax.lax.stop_gradient(words), words)
        positions = jnp.arange(input_ids.shape[-1])[None, :]
        hidden = (
            words
            + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, embedding_init=init,
                       name="position_embeddings")(positions)
            + nn.Embed(cfg.type_vocab_size, cfg.hidden_size, embedding_init=init,
                       name="token_type_embeddings")(token_type_ids)
        )
        hidden = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="LayerNorm")(hidden)
        return hidden.astype(self.dtype)


def _dense(config: BertConfig, features: int, dtype: Any, name: str) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, name=name,
                    kernel_init=nn.initializers.normal(config.initializer_range))


class _SelfAttention(nn.Module):
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden, attention_bias):
        cfg = self.config
        heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // heads

        def project(name):
            out = _dense(cfg, cfg.hidden_size, self.dtype, name)(hidden)
            return out.reshape(*out.shape[:-1], heads, head_dim)

        query, key, value = project("query"), project("key"), project("value")
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
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden, attention_bias):
        cfg = self.config
        context = _AttentionBlock(cfg, self.dtype, name="attention")(hidden, attention_bias)
        intermediate = _Intermediate(cfg, self.dtype, name="intermediate")(context)
        return _OutputBlock(cfg, self.dtype, name="output")(intermediate, context)


class _AttentionBlock(nn.Module):
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden, attention_bias):
        cfg = self.config
        context = _SelfAttention(cfg, self.dtype, name="self")(hidden, attention_bias)
        return _OutputBlock(cfg, self.dtype, name="output")(context, hidden)


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
    """Holds the transformer layers under the names ``0``, ``1``, ... as Hugging Face does."""

    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden, attention_bias):
        for index in range(self.config.num_hidden_layers):
            hidden = _Layer(self.config, self.dtype, name=str(index))(hidden, attention_bias)
        return hidden


class _Encoder(nn.Module):
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden, attention_bias):
        return _LayerStack(self.config, self.dtype, name="layer")(hidden, attention_bias)


class _Pooler(nn.Module):
    config: BertConfig
    dtype: Any

    @nn.compact
    def __call__(self, hidden):
        first_token = hidden[:, 0]
        return jnp.tanh(_dense(self.config, self.config.hidden_size, self.dtype, "dense")(first_token))


class BertModule(nn.Module):
    """Embeddings, post-LN transformer layers and the tanh pooler over ``[CLS]``."""

    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids):
        mask = attention_mask.astype(bool)[:, None, None, :]
        attention_bias = jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)
        hidden = _Embeddings(self.config, self.dtype, name="embeddings")(input_ids, token_type_ids)
        hidden = _Encoder(self.config, self.dtype, name="encoder")(hidden, attention_bias)
        pooled = _Pooler(self.config, self.dtype, name="pooler")(hidden)
        return hidden, pooled


def bert_apply(
    params: Params,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    token_type_ids: jax.Array | None = None,
    *,
    config: BertConfig,
    dtype: Any = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """Last hidden state ``[B, L, H]`` and pooler output ``[B, H]``; pure in ``params``."""
    if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    return BertModule(config, dtype).apply({"params": params}, input_ids, attention_mask,
                                           token_type_ids)


def init_bert_params(config: BertConfig, key: jax.Array) -> Params:
    """BERT's own initialisation: normal(initializer_range) weights, zero biases, unit LayerNorm."""
    dummy = jnp.zeros((1, 1), jnp.int32)
    return BertModule(config).init(key, dummy, jnp.ones_like(dummy), dummy)["params"]


def bert_backbone(config: BertConfig, dtype: Any = jnp.float32) -> Backbone:
    """BERT as a :class:`Backbone` whose features are the pooler output (float32)."""

    def features(params: Params, batch: Batch) -> jax.Array:
        _, pooled = bert_apply(params, batch["input_ids"], batch["attention_mask"],
                               batch.get("token_type_ids"), config=config, dtype=dtype)
        return pooled.astype(jnp.float32)

    return Backbone(
        name=f"bert-L{config.num_hidden_layers}-H{config.hidden_size}",
        features=features,
        init=functools.partial(init_bert_params, config),
        feature_dim=config.hidden_size,
        input_keys=TEXT_INPUT_KEYS,
        embedding_path=WORD_EMBEDDING_PATH,
    )
