"""What a finished run leaves for other tools: the trained model as a Hugging Face folder (or
the toy MLP's safetensors), its heads, labels, config and model card."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from sdm_jax.app.task import PreparedTask
from sdm_jax.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from sdm_jax.config import Config, config_to_yaml
from sdm_jax.model_card import CARD, model_card
from sdm_jax.models import SequenceClassifier, flatten, unflatten, write_pretrained
from sdm_jax.models.backbone import Params


def save_tree_safetensors(path: Path, tree: Params) -> None:
    """A parameter tree as safetensors with dotted names (``layer_0.kernel``)."""
    from safetensors.numpy import save

    tensors = {".".join(name): np.ascontiguousarray(value)
               for name, value in flatten(jax.device_get(tree)).items()}
    write_bytes_atomic(path, save(tensors, metadata={"format": "np"}))


def load_tree_safetensors(path: Path) -> Params:
    """The inverse of :func:`save_tree_safetensors`."""
    from safetensors.numpy import load_file

    return unflatten({tuple(name.split(".")): value
                      for name, value in load_file(str(path)).items()})


def export_model(
    directory: Path, task: PreparedTask, params: Params, config: Config, step: int
) -> Path:
    """Write the model (of training step ``step``) into the existing ``directory``.

    Text models: a Hugging Face BERT folder plus ``heads.safetensors`` (``good.weight``
    ``[n_good, H]``, ``bad.weight`` ``[n_bad, H]``, the torch ``Linear`` layout, bias-free),
    ``labels.json`` and a model card (``README.md``). With pooler pooling the folder is the
    family's ``...ForSequenceClassification`` whose classifier is the desired-task head, so
    ``transformers.pipeline("text-classification", model=directory)`` serves it.
    The toy MLP: ``params.safetensors`` with dotted names."""
    kernel = np.asarray(jax.device_get(params["head"]["kernel"]), np.float32)
    heads = {"good.weight": kernel[:, : task.num_good].T, "bad.weight": kernel[:, task.num_good:].T}
    if task.encoder is not None:
        classifier = None
        if config.model.pooling == "pooler":
            classifier = SequenceClassifier(heads["good.weight"], tuple(task.good_names))
        write_pretrained(directory, params["backbone"], task.encoder.config,
                         task.encoder.tokenizer, classifier)
        family = task.encoder.family
        card = model_card(config, task.good_names, task.bad_names, step,
                          (family.base_class, family.classifier_class))
        write_text_atomic(directory / CARD, card)
    else:
        save_tree_safetensors(directory / "params.safetensors", params["backbone"])
        model = {"kind": "mlp", "input_dim": config.toy.dim, "width": config.model.mlp_width,
                 "depth": config.model.mlp_depth}
        write_text_atomic(directory / "model.json", json.dumps(model, indent=2) + "\n")
    save_tree_safetensors(directory / "heads.safetensors", heads)
    write_json_atomic(directory / "labels.json",
                      {"good": list(task.good_names), "bad": list(task.bad_names)})
    write_text_atomic(directory / "train_config.yaml", config_to_yaml(config))
    return directory
