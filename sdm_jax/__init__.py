"""sdm-jax: self-destructing (task-blocked) models trained with MLAC in JAX."""

from sdm_jax.models import (
    Backbone,
    BertConfig,
    CheckpointError,
    Encoder,
    load_encoder,
    random_encoder,
    save_pretrained,
)

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "BertConfig",
    "CheckpointError",
    "Encoder",
    "load_encoder",
    "random_encoder",
    "save_pretrained",
]
