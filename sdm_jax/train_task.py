"""What a training run trains on: the model, the checked data, its batches and its export.

``prepare_task`` builds the backbone (the toy MLP or a BERT encoder) and the numpy splits, and
checks them before any compute. ``MetaBatchSource`` draws one outer step's meta-batch from
resumable samplers. ``export_model`` writes the trained model in a form other tools read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdm_jax.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.config import Config, config_to_yaml
from sdm_jax.data import (
    BatchSampler,
    DataError,
    load_task,
    make_toy_task,
    split_length,
    take,
    tokenize_task,
)
from sdm_jax.data.sources import DEFAULT_CACHE
from sdm_jax.data.toy import TOY_LABEL_NAMES
from sdm_jax.fine_tune import cross_entropy, direction, take_step
from sdm_jax.model_card import CARD, model_card
from sdm_jax.models import (
    Encoder,
    SequenceClassifier,
    head_logits,
    init_head,
    load_encoder,
    mlp_backbone,
    split_logits,
    write_pretrained,
)
from sdm_jax.models.backbone import Backbone, Params
from sdm_jax.models.hf_io import flatten, unflatten

Arrays = dict[str, np.ndarray]
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


def pretrain_on_both_tasks(
    backbone: Backbone, params: Params, train: Arrays, names, config: Config
) -> tuple[Params, Params]:
    """Adam on the sum of both tasks' cross-entropies: the toy's stand-in for pretraining.
    Returns the backbone parameters and the ``n_good + n_bad`` head."""
    num_good, num_bad = len(names[0]), len(names[1])
    key = jax.random.PRNGKey(config.train.seed)
    model = {"backbone": params, "head": init_head(jax.random.fold_in(key, 1),
                                                   backbone.feature_dim, num_good + num_bad)}
    transform = direction("adam")
    sampler = BatchSampler(train, config.train.batch_size, seed=config.train.seed + 7)
    batches = sampler.next_stacked(config.model.pretrain_steps)

    def loss(model, batch):
        logits = head_logits(model["head"], backbone.features(model["backbone"], batch))
        good, bad = split_logits(logits, num_good)
        weight = jnp.ones(batch["good"].shape, jnp.float32)
        return sum(cross_entropy(z, batch[k], weight)
                   for z, k in ((good, "good"), (bad, "bad"))), None

    def step(carry, batch):
        model, opt_state, _ = take_step(loss, transform, *carry, batch, config.model.pretrain_lr)
        return (model, opt_state), None

    (model, _), _ = jax.jit(lambda m, b: jax.lax.scan(step, (m, transform.init(m)), b))(
        model, batches)
    return model["backbone"], model["head"]


# --------------------------------------------------------------------------- batches


class MetaBatchSource:
    """Resumable draws of ``{"inner": [M, K, B_in, ...], "outer": [B_out, ...]}``.

    The outer sampler yields the outer batch (one shared, or one per attacker); the inner
    sampler yields every attacker's K batches; each attacker draws one size from the settings'
    ``batch_size_choices`` and keeps it for all K (as the reference does), inside the fixed
    shape of their maximum.
    """

    def __init__(self, arrays: Arrays, settings: MLACSettings, batch_size: int, seed: int):
        self.settings = settings
        self.outer = BatchSampler(arrays, batch_size, seed=2 * seed)
        choices = tuple(settings.batch_size_choices)
        self.inner = BatchSampler(arrays, max(choices), seed=2 * seed + 1,
                                  batch_size_choices=choices)
        self._template = take(arrays, np.zeros(max(choices), np.int64))

    def next(self) -> dict[str, Arrays]:
        attackers, steps = self.settings.meta_batch_size, self.settings.inner_steps
        if self.settings.shared_outer_batch:
            outer = self.outer.next()
        else:
            outer = self.outer.next_stacked(attackers)
        if steps:
            per_attacker = [self.inner.next_stacked(steps) for _ in range(attackers)]
            inner = {k: np.stack([b[k] for b in per_attacker]) for k in per_attacker[0]}
        else:
            # K = 0 (adversarial censoring): no inner batches, but the same array names.
            template = {**self._template, "weight": np.zeros(len(self._template["good"]),
                                                             np.float32)}
            inner = {k: np.zeros((attackers, 0) + v.shape, v.dtype) for k, v in template.items()}
        return {"inner": inner, "outer": outer}

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {"outer": self.outer.state_dict(), "inner": self.inner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, int]]) -> None:
        self.outer.load_state_dict(state["outer"])
        self.inner.load_state_dict(state["inner"])


def validation_meta_batches(
    arrays: Arrays, settings: MLACSettings, batch_size: int, count: int, seed: int
) -> list[dict[str, Arrays]]:
    """``count`` fixed meta-batches: outer batches walk the split in order (rows past its end
    get weight 0), inner batches come from a sampler with a fixed seed."""
    size = split_length(arrays)
    source = MetaBatchSource(arrays, settings, batch_size, seed)
    batches = []
    for index in range(min(count, -(-size // batch_size))):
        rows = np.arange(index * batch_size, (index + 1) * batch_size)
        outer = take(arrays, rows % size)
        outer["weight"] = (rows < size).astype(np.float32)
        if not settings.shared_outer_batch:
            outer = {k: np.broadcast_to(v, (settings.meta_batch_size,) + v.shape).copy()
                     for k, v in outer.items()}
        batches.append({"inner": source.next()["inner"], "outer": outer})
    return batches


# --------------------------------------------------------------------------- export


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
    ``labels.json`` and a model card (``README.md``). With pooler pooling the folder is a
    ``BertForSequenceClassification`` whose classifier is the desired-task head, so
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
        card = model_card(config, task.good_names, task.bad_names, step)
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


def describe(task: PreparedTask) -> dict[str, Any]:
    return {
        "model": task.backbone.name,
        "splits": {name: split_length(arrays) for name, arrays in task.splits.items()},
        "num_good": task.num_good,
        "num_bad": task.num_bad,
    }
