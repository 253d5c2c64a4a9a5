"""sdm-jax: self-destructing (task-blocked) models trained with MLAC in JAX."""

import os

# transformers advises installing PyTorch on import; sdm-jax only uses its tokenizers.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# isort: split

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
