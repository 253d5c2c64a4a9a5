"""The kinds of model a run blocks, each one object: a text encoder (of any family
:mod:`sdm_jax.models` reads) on the text task, or the toy MLP on the Gaussian task.

A kind builds the model and the data a run trains on, writes its trained backbone into an
export, reads a model to attack back, and checks a location before anything is loaded. The rest
of the application asks ``kind_of(config)`` and never which kind it has.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from sdm_jax.app.toy_pretraining import pretrain_on_both_tasks
from sdm_jax.atomic import write_bytes_atomic, write_text_atomic
from sdm_jax.attacks import AttackTarget
from sdm_jax.config import Config
from sdm_jax.data import DataError, load_task, make_toy_task, tokenize_task
from sdm_jax.data.sampler import Arrays
from sdm_jax.data.sources import DEFAULT_CACHE
from sdm_jax.data.toy import TOY_LABEL_NAMES
from sdm_jax.model_card import CARD, model_card
from sdm_jax.models import (
    CheckpointError,
    Encoder,
    SequenceClassifier,
    check_model_location,
    flatten,
    load_encoder,
    mlp_backbone,
    unflatten,
    write_pretrained,
)
from sdm_jax.models.backbone import Backbone, Params

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TOY_PARAMS, TOY_SHAPE = "params.safetensors", "model.json"


@dataclass(frozen=True)
class PreparedTask:
    """The model to block and its data, and the kind that built them (which also exports and
    reads back models like it). ``encoder`` is set for text models (for the export)."""

    kind: ModelKind
    backbone: Backbone
    backbone_params: Params
    splits: Mapping[str, Arrays]
    good_names: tuple[str, ...]
    bad_names: tuple[str, ...]
    encoder: Encoder | None = None
    head: Params | None = None

    @property
    def num_good(self) -> int:
        return len(self.good_names)

    @property
    def num_bad(self) -> int:
        return len(self.bad_names)


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


class ModelKind(Protocol):
    def prepare(self, config: Config) -> PreparedTask:
        """The model to block, its starting parameters and the data, unchecked."""

    def write_export(self, directory: Path, task: PreparedTask, backbone_params: Params,
                     config: Config, step: int, good_head: np.ndarray) -> None:
        """The trained backbone (and what serves it) into the existing ``directory``."""

    def read_export(self, model_id: str, location: str, directory: Path | None,
                    task: PreparedTask, pooling: str) -> AttackTarget:
        """A model to attack from an export folder (``directory``) or another location."""

    def check_location(self, location: str, directory: Path | None) -> None:
        """One-line :class:`CheckpointError` if ``location`` cannot be read as this kind."""


class TextKind:
    """A text encoder on the text task of the ``data:`` section."""

    def prepare(self, config: Config) -> PreparedTask:
        encoder = load_encoder(config.model.name, dtype=DTYPES[config.model.dtype],
                               num_layers=config.model.num_layers)
        text = load_task(config.data)
        cache = Path(config.data.cache_dir).expanduser() if config.data.cache_dir else DEFAULT_CACHE
        splits = tokenize_task(text, encoder.tokenizer, config.model.max_length, cache / "tokens")
        vocab = encoder.config.vocab_size
        for name, arrays in splits.items():
            largest = int(arrays["input_ids"].max(initial=0))
            if largest >= vocab:
                raise DataError(f"split {name!r}: token id {largest} outside the model's "
                                f"vocabulary of {vocab}")
        return PreparedTask(self, encoder.backbone_with(config.model.pooling), encoder.params,
                            splits, text.good_names, text.bad_names, encoder)

    def write_export(self, directory, task, backbone_params, config, step, good_head):
        """A Hugging Face folder; with pooler pooling the family's sequence classifier whose
        classifier is the desired-task head, so ``transformers.pipeline`` serves it."""
        classifier = None
        if config.model.pooling == "pooler":
            classifier = SequenceClassifier(good_head, tuple(task.good_names))
        write_pretrained(directory, backbone_params, task.encoder.config,
                         task.encoder.tokenizer, classifier)
        family = task.encoder.family
        card = model_card(config, task.good_names, task.bad_names, step,
                          (family.base_class, family.classifier_class))
        write_text_atomic(directory / CARD, card)

    def read_export(self, model_id, location, directory, task, pooling):
        encoder = load_encoder(directory if directory is not None else location,
                               dtype=task.encoder.dtype)
        if encoder.config.vocab_size != task.encoder.config.vocab_size:
            raise CheckpointError(
                f"{location}: vocabulary of {encoder.config.vocab_size} tokens does not match "
                f"the run's tokenizer ({task.encoder.config.vocab_size}); attack it with its "
                "own run"
            )
        # Every text model is read the way the run's heads were trained to read it.
        return AttackTarget(model_id, encoder.backbone_with(pooling), encoder.params)

    def check_location(self, location, directory):
        check_model_location(directory if directory is not None else location)


class ToyKind:
    """The toy task's ReLU MLP on the Gaussian task of the ``toy:`` section, optionally
    pretrained on both tasks first (so that, like a pretrained encoder, it knows the bad one)."""

    def prepare(self, config: Config) -> PreparedTask:
        splits = make_toy_task(config.toy)
        backbone = mlp_backbone(config.toy.dim, config.model.mlp_width, config.model.mlp_depth)
        params = backbone.init(jax.random.PRNGKey(config.train.seed))
        names = TOY_LABEL_NAMES["good"], TOY_LABEL_NAMES["bad"]
        head = None
        if config.model.pretrain_steps:
            params, head = pretrain_on_both_tasks(backbone, params, splits["train"], names, config)
        return PreparedTask(self, backbone, params, splits, *names, head=head)

    def write_export(self, directory, task, backbone_params, config, step, good_head):
        """``params.safetensors`` with dotted names and the MLP's shape in ``model.json``."""
        save_tree_safetensors(directory / TOY_PARAMS, backbone_params)
        shape = {"kind": "mlp", "input_dim": config.toy.dim, "width": config.model.mlp_width,
                 "depth": config.model.mlp_depth}
        write_text_atomic(directory / TOY_SHAPE, json.dumps(shape, indent=2) + "\n")

    def read_export(self, model_id, location, directory, task, pooling):
        if directory is None or not (directory / TOY_SHAPE).is_file():
            raise CheckpointError(f"{location}: not a toy MLP export (no {TOY_SHAPE})")
        shape = json.loads((directory / TOY_SHAPE).read_text())
        params = load_tree_safetensors(directory / TOY_PARAMS)
        backbone = mlp_backbone(shape["input_dim"], shape["width"], shape["depth"])
        if backbone.feature_dim != task.backbone.feature_dim:
            raise CheckpointError(f"{location}: MLP width {shape['width']} does not match the "
                                  f"run's {task.backbone.feature_dim}")
        return AttackTarget(model_id, backbone, jax.tree_util.tree_map(np.asarray, params))

    def check_location(self, location, directory):
        if not Path(location).expanduser().exists():
            raise CheckpointError(f"{location}: no such file or directory")
        if directory is None or not (directory / TOY_SHAPE).is_file():
            raise CheckpointError(f"{location}: not a toy MLP run or export (no {TOY_SHAPE})")


KINDS: dict[str, ModelKind] = {"bert": TextKind(), "mlp": ToyKind()}


def kind_of(config: Config) -> ModelKind:
    return KINDS[config.model.kind]
