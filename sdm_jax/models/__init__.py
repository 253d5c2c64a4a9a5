"""Models as pure functions of parameter pytrees: BERT, heads, the toy MLP, HF checkpoints."""

from sdm_jax.models.backbone import Backbone
from sdm_jax.models.bert import BertConfig, bert_apply, bert_backbone, init_bert_params
from sdm_jax.models.encoder import (
    Encoder,
    SequenceClassifier,
    check_model_location,
    embedded_model_dir,
    load_encoder,
    random_encoder,
    save_pretrained,
    write_pretrained,
)
from sdm_jax.models.heads import head_logits, init_head, mlp_backbone, split_logits
from sdm_jax.models.hf_io import CheckpointError, flatten, unflatten

__all__ = [
    "Backbone",
    "BertConfig",
    "CheckpointError",
    "Encoder",
    "SequenceClassifier",
    "bert_apply",
    "bert_backbone",
    "check_model_location",
    "embedded_model_dir",
    "flatten",
    "head_logits",
    "init_bert_params",
    "init_head",
    "load_encoder",
    "mlp_backbone",
    "random_encoder",
    "save_pretrained",
    "split_logits",
    "unflatten",
    "write_pretrained",
]
