"""What a finished run leaves for other tools: the trained model as a Hugging Face folder (or
the toy MLP's safetensors), its heads, labels, config and model card."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from sdm_jax.app.model_kinds import PreparedTask, save_tree_safetensors
from sdm_jax.atomic import write_json_atomic, write_text_atomic
from sdm_jax.config import Config, config_to_yaml
from sdm_jax.models.backbone import Params


def export_model(
    directory: Path, task: PreparedTask, params: Params, config: Config, step: int
) -> Path:
    """Write the model (of training step ``step``) into the existing ``directory``: the
    backbone as its kind writes it (text models: a Hugging Face folder with a model card, the
    family's sequence classifier under pooler pooling; the toy MLP: ``params.safetensors``),
    plus ``heads.safetensors`` (``good.weight`` ``[n_good, H]``, ``bad.weight`` ``[n_bad, H]``,
    the torch ``Linear`` layout, bias-free), ``labels.json`` and ``train_config.yaml``."""
    kernel = np.asarray(jax.device_get(params["head"]["kernel"]), np.float32)
    heads = {"good.weight": kernel[:, : task.num_good].T, "bad.weight": kernel[:, task.num_good:].T}
    task.kind.write_export(directory, task, params["backbone"], config, step,
                           heads["good.weight"])
    save_tree_safetensors(directory / "heads.safetensors", heads)
    write_json_atomic(directory / "labels.json",
                      {"good": list(task.good_names), "bad": list(task.bad_names)})
    write_text_atomic(directory / "train_config.yaml", config_to_yaml(config))
    return directory
