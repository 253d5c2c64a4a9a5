"""What a training run trains on: ``prepare_task`` builds the backbone (the toy MLP or a BERT
encoder) and the numpy splits, and checks them before any compute."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdm_jax.app.toy_pretraining import pretrain_on_both_tasks
from sdm_jax.config import Config
from sdm_jax.data import (
    DataError,
    load_task,
    make_toy_task,
    split_length,
    tokenize_task,
)
from sdm_jax.data.sampler import Arrays
from sdm_jax.data.sources import DEFAULT_CACHE
from sdm_jax.data.toy import TOY_LABEL_NAMES
from sdm_jax.models import (
    Encoder,
    load_encoder,
    mlp_backbone,
)
from sdm_jax.models.backbone import Backbone, Params

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclass(frozen=True)
class PreparedTask:
    """The model to block and its data. ``encoder`` is set for text models (for the export)."""

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


def prepare_task(config: Config) -> PreparedTask:
    """Backbone, initial parameters and checked numpy splits for ``config``."""
    if config.model.kind == "mlp":
        splits = make_toy_task(config.toy)
        backbone = mlp_backbone(config.toy.dim, config.model.mlp_width, config.model.mlp_depth)
        params = backbone.init(jax.random.PRNGKey(config.train.seed))
        names = TOY_LABEL_NAMES["good"], TOY_LABEL_NAMES["bad"]
        head = None
        if config.model.pretrain_steps:
            params, head = pretrain_on_both_tasks(backbone, params, splits["train"], names, config)
        task = PreparedTask(backbone, params, splits, *names, head=head)
    else:
        encoder = load_encoder(config.model.name, dtype=DTYPES[config.model.dtype],
                               num_layers=config.model.num_layers)
        text = load_task(config.data)
        cache = Path(config.data.cache_dir).expanduser() if config.data.cache_dir else DEFAULT_CACHE
        splits = tokenize_task(text, encoder.tokenizer, config.model.max_length, cache / "tokens")
        task = PreparedTask(encoder.backbone_with(config.model.pooling), encoder.params, splits,
                            text.good_names,
                            text.bad_names, encoder)
    check_task(task)
    check_batch_sizes(task, config)
    return task


def check_batch_sizes(task: PreparedTask, config: Config) -> None:
    """Batches no larger than the splits they are drawn from (else sampling wraps silently)."""
    sizes = {"train.batch_size": config.train.batch_size,
             "mlac.batch_size_choices": max(config.mlac.batch_size_choices)}
    for name in ("train", "val1"):
        examples = split_length(task.splits[name])
        for key, size in sizes.items():
            if size > examples:
                raise DataError(f"{key}: a batch of {size} is larger than split {name!r} "
                                f"({examples} examples); use at most {examples}")


def check_task(task: PreparedTask) -> None:
    """One DataError per problem, before anything is compiled."""
    for name in ("train", "val1"):
        if name not in task.splits:
            raise DataError(f"split {name!r} is missing (have {sorted(task.splits)})")
    for name, arrays in task.splits.items():
        size = split_length(arrays)
        if size == 0:
            raise DataError(f"split {name!r} is empty")
        for key in (*task.backbone.input_keys, "good", "bad"):
            if key not in arrays:
                raise DataError(f"split {name!r} lacks the array {key!r}")
        for key, count in (("good", task.num_good), ("bad", task.num_bad)):
            labels = arrays[key]
            bad_rows = np.flatnonzero((labels < 0) | (labels >= count))
            if bad_rows.size:
                row = int(bad_rows[0])
                raise DataError(f"split {name!r} row {row}: {key} label {int(labels[row])} "
                                f"outside 0..{count - 1}")
        if "x" in arrays and not np.all(np.isfinite(arrays["x"])):
            row = int(np.flatnonzero(~np.all(np.isfinite(arrays["x"]), axis=1))[0])
            raise DataError(f"split {name!r} row {row}: non-finite input")
        if task.encoder is not None:
            vocab = task.encoder.config.vocab_size
            if int(arrays["input_ids"].max()) >= vocab:
                raise DataError(f"split {name!r}: token id {int(arrays['input_ids'].max())} "
                                f"outside the model's vocabulary of {vocab}")


def describe(task: PreparedTask) -> dict[str, Any]:
    return {
        "model": task.backbone.name,
        "splits": {name: split_length(arrays) for name, arrays in task.splits.items()},
        "num_good": task.num_good,
        "num_bad": task.num_bad,
    }
