"""Hugging Face encoder checkpoints in and out: name map, format readers, strict merge.

The name map (Hugging Face PyTorch names <-> our Flax paths) is kept apart from the one
transform it needs (Linear weights are stored transposed). Loading is strict: every checkpoint
key is used or deliberately skipped, and every parameter we need must be present (or, for the
few keys a family's checkpoints may lack, taken from its initialisation). What differs between
families (prefixes, skipped keys, the classifier's names) comes from
:mod:`sdm_jax.models.families`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import jax
import numpy as np

from sdm_jax.models.bert import BertConfig, init_bert_params
from sdm_jax.models.families import FAMILIES, EncoderFamily, family_of

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
FLAX_MSGPACK = "flax_model.msgpack"
PYTORCH_BIN = "pytorch_model.bin"
FORMATS = (SAFETENSORS, SAFETENSORS_INDEX, FLAX_MSGPACK, PYTORCH_BIN)

LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.")

Path_ = tuple[str, ...]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as the encoder we were asked for."""


def hf_name_to_path(name: str) -> tuple[Path_, bool]:
    """``encoder.layer.0.attention.self.query.weight`` -> Flax path, and whether to transpose."""
    *modules, leaf = name.split(".")
    parent = modules[-1] if modules else ""
    if leaf == "bias":
        return (*modules, "bias"), False
    if leaf != "weight":
        raise CheckpointError(f"unexpected checkpoint key {name!r}")
    if parent == "LayerNorm":
        return (*modules, "scale"), False
    if parent.endswith("_embeddings"):
        return (*modules, "embedding"), False
    return (*modules, "kernel"), True


def path_to_hf_name(path: Path_) -> tuple[str, bool]:
    """The inverse of :func:`hf_name_to_path`."""
    *modules, leaf = path
    transpose = leaf == "kernel"
    hf_leaf = "bias" if leaf == "bias" else "weight"
    return ".".join((*modules, hf_leaf)), transpose


def flatten(tree: Mapping) -> dict[Path_, np.ndarray]:
    flat = {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        flat[tuple(str(k.key) for k in key_path)] = leaf
    return flat


def unflatten(flat: Mapping[Path_, np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def read_config(directory: Path) -> BertConfig:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{directory}: no config.json (not a Hugging Face model directory)")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_file}: not valid JSON ({error})") from None
    model_type = raw.get("model_type")
    if model_type not in FAMILIES:
        raise CheckpointError(
            f"{directory}: architecture {model_type!r} ({raw.get('architectures')}) is not "
            f"supported; sdm-jax loads {', '.join(sorted(FAMILIES))} encoders"
        )
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"{directory}: position_embedding_type {raw['position_embedding_type']!r} "
            "is not supported (absolute only)"
        )
    return BertConfig.from_hf_dict(raw)


def _read_safetensors(files: Iterable[Path]) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    tensors: dict[str, np.ndarray] = {}
    for file in files:
        try:
            tensors.update(load_file(str(file)))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{file}: unreadable safetensors file ({error})") from None
    return tensors


def _read_torch_bin(file: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{file}: reading pytorch_model.bin needs PyTorch (pip install 'sdm-jax[torch]'), "
            "or convert the checkpoint to safetensors"
        ) from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many unrelated types for a corrupt file
        raise CheckpointError(f"{file}: unreadable PyTorch checkpoint ({error})") from None
    return {name: tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
            for name, tensor in state.items()}


def _read_flax_msgpack(file: Path, family: EncoderFamily) -> dict[str, np.ndarray]:
    from flax import serialization

    try:
        tree = serialization.msgpack_restore(file.read_bytes())
    except Exception as error:  # msgpack raises several unrelated types for a corrupt file
        raise CheckpointError(f"{file}: unreadable Flax msgpack checkpoint ({error})") from None
    model_key = family.prefix.rstrip(".")
    if model_key in tree and isinstance(tree[model_key], Mapping):
        tree = tree[model_key]
    named = {}
    for path, value in flatten(tree).items():
        name, transpose = path_to_hf_name(path)
        named[name] = np.asarray(value).T if transpose else np.asarray(value)
    return named


def read_hf_tensors(directory: Path, family: EncoderFamily
                    ) -> tuple[dict[str, np.ndarray], Path]:
    """All tensors of the checkpoint under Hugging Face PyTorch names, and the file read."""
    if (directory / SAFETENSORS).is_file():
        return _read_safetensors([directory / SAFETENSORS]), directory / SAFETENSORS
    if (directory / SAFETENSORS_INDEX).is_file():
        index = json.loads((directory / SAFETENSORS_INDEX).read_text())
        shards = sorted({directory / shard for shard in index["weight_map"].values()})
        return _read_safetensors(shards), directory / SAFETENSORS_INDEX
    if (directory / FLAX_MSGPACK).is_file():
        return _read_flax_msgpack(directory / FLAX_MSGPACK, family), directory / FLAX_MSGPACK
    if (directory / PYTORCH_BIN).is_file():
        return _read_torch_bin(directory / PYTORCH_BIN), directory / PYTORCH_BIN
    raise CheckpointError(f"{directory}: no weights file found (looked for {', '.join(FORMATS)})")


def _encoder_names(tensors: Mapping[str, np.ndarray], family: EncoderFamily
                   ) -> dict[str, np.ndarray]:
    """Checkpoint names relative to the encoder: the task model's prefix dropped, and a
    classifier export's pooler put back under ``pooler.dense``."""
    prefix, pooler = family.prefix, family.classifier_pooler
    renamed = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            name = name[len(prefix):]
        elif pooler and name.startswith(pooler):
            name = "pooler.dense." + name[len(pooler):]
        renamed[name] = value
    return renamed


def _kept(name: str, num_layers: int, family: EncoderFamily) -> bool:
    if family.skipped_keys.match(name):
        return False
    layer = LAYER_KEY.match(name)
    return layer is None or int(layer.group(1)) < num_layers


def tensors_to_params(
    tensors: Mapping[str, np.ndarray], config: BertConfig, source: str
) -> dict:
    """Strictly merge named tensors into our parameter tree for ``config``."""
    family = family_of(config.model_type)
    init = functools.partial(init_bert_params, config)
    expected = flatten(jax.eval_shape(init, jax.random.key(0)))
    flat: dict[Path_, np.ndarray] = {}
    for name, value in _encoder_names(tensors, family).items():
        if not _kept(name, config.num_hidden_layers, family):
            continue
        path, transpose = hf_name_to_path(name)
        if path not in expected:
            raise CheckpointError(
                f"{source}: unexpected key {name!r} (not a {family.base_class} parameter)"
            )
        array = np.asarray(value, dtype=np.float32)
        array = array.T if transpose else array
        if array.shape != expected[path].shape:
            raise CheckpointError(
                f"{source}: key {name!r} has shape {array.shape}, "
                f"the config expects {expected[path].shape}"
            )
        flat[path] = array
    missing = set(expected) - set(flat)
    optional = {p for p in missing
                if family.optional_keys and family.optional_keys.match(path_to_hf_name(p)[0])}
    if missing - optional:
        names = ", ".join(path_to_hf_name(p)[0] for p in sorted(missing - optional)[:3])
        raise CheckpointError(f"{source}: missing {len(missing - optional)} key(s), e.g. {names}")
    if optional:
        initial = flatten(init(jax.random.key(0)))
        flat.update({path: np.asarray(initial[path]) for path in optional})
    return unflatten(flat)


def classifier_tensors(
    params: Mapping, weight: np.ndarray, config: BertConfig
) -> dict[str, np.ndarray]:
    """A ``...ForSequenceClassification`` state of ``config``'s family: the encoder under its
    prefix and a linear classifier ``weight`` ``[num_labels, hidden]`` with a zero bias over
    the pooler output (RoBERTa's classifier holds the pooler's dense layer itself)."""
    family = family_of(config.model_type)
    encoder = params_to_tensors(params)
    if family.classifier_pooler:
        for leaf in ("weight", "bias"):
            encoder[family.classifier_pooler + leaf] = encoder.pop(f"pooler.dense.{leaf}")
    tensors = {name if name.startswith("classifier.") else family.prefix + name: value
               for name, value in encoder.items()}
    tensors[family.classifier_output + "weight"] = np.ascontiguousarray(weight, np.float32)
    tensors[family.classifier_output + "bias"] = np.zeros(weight.shape[0], np.float32)
    return tensors


def params_to_tensors(params: Mapping) -> dict[str, np.ndarray]:
    """Our parameter tree as Hugging Face PyTorch-named float32 arrays."""
    tensors = {}
    for path, value in flatten(params).items():
        name, transpose = path_to_hf_name(path)
        array = np.asarray(value, dtype=np.float32)
        tensors[name] = np.ascontiguousarray(array.T if transpose else array)
    return tensors
