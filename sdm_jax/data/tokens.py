"""Turn a :class:`~sdm_jax.data.sources.TaskData` into fixed-shape token arrays, cached on disk.

Every split becomes the contract's arrays: ``input_ids``, ``attention_mask``,
``token_type_ids`` (int32 ``[N, max_length]``, padded to ``max_length`` and truncated) and
``good``, ``bad`` (int32 ``[N]``). Results are stored as ``tokens-<key>.npz`` in ``cache_dir``;
the key hashes the data fingerprint, the tokenizer's name and its full definition (vocabulary,
normaliser, special tokens) and ``max_length``, so a hit skips tokenisation entirely and any
change to one of them misses.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdm_jax.atomic import write_bytes_atomic
from sdm_jax.data.errors import DataError
from sdm_jax.data.sources import TaskData

# Token lengths of the default synthetic corpus (20k train bios, MiniLM/BERT uncased
# WordPiece, with [CLS] and [SEP]): mean 37, median 37, 90th percentile 53, 95th 56, 99th 61,
# max 71. The 95th percentile rounded up to a multiple of 64 gives 64. Real Bias in Bios bios
# are longer: measure yours with ``token_lengths`` / ``suggest_max_length``.
DEFAULT_MAX_LENGTH = 64
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")
_BATCH = 1024


def tokenizer_identity(tokenizer) -> str:
    """``name_or_path`` plus a hash of everything that decides the tokenizer's output."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Padding and truncation are call settings the tokenizer keeps from its last call.
        state = {k: v for k, v in json.loads(backend.to_str()).items()
                 if k not in ("padding", "truncation")}  # fmt: skip
        definition = json.dumps(state, sort_keys=True)
    else:
        definition = json.dumps(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256(definition.encode()).hexdigest()[:16]
    return f"{tokenizer.name_or_path}#{digest}"


def cache_key(task: TaskData, tokenizer, max_length: int) -> str:
    identity = f"{task.fingerprint}|{tokenizer_identity(tokenizer)}|{max_length}"
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def token_lengths(texts: Sequence[str], tokenizer) -> np.ndarray:
    """Untruncated token count of each text, special tokens included."""
    lengths = []
    for start in range(0, len(texts), _BATCH):
        encoded = tokenizer(list(texts[start : start + _BATCH]), add_special_tokens=True)
        lengths += [len(ids) for ids in encoded["input_ids"]]
    return np.asarray(lengths, np.int64)


def suggest_max_length(lengths: np.ndarray, percentile: float = 95, multiple: int = 64) -> int:
    """The ``percentile`` of ``lengths`` rounded up to a multiple of ``multiple``."""
    value = float(np.percentile(lengths, percentile))
    return max(multiple, int(np.ceil(value / multiple)) * multiple)


def encode_texts(texts: Sequence[str], tokenizer, max_length: int) -> dict[str, np.ndarray]:
    """Batched tokenisation to int32 arrays ``[N, max_length]`` (zeros for token types the
    tokenizer does not produce)."""
    chunks: dict[str, list[np.ndarray]] = {key: [] for key in TOKEN_KEYS}
    for start in range(0, len(texts), _BATCH):
        encoded = tokenizer(
            list(texts[start : start + _BATCH]),
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        ids = np.asarray(encoded["input_ids"], np.int32)
        chunks["input_ids"].append(ids)
        chunks["attention_mask"].append(np.asarray(encoded["attention_mask"], np.int32))
        types = encoded.get("token_type_ids")
        chunks["token_type_ids"].append(
            np.zeros_like(ids) if types is None else np.asarray(types, np.int32)
        )
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


def _tokenize_splits(task: TaskData, tokenizer, max_length: int) -> dict[str, dict]:
    arrays = {}
    for name, split in task.splits.items():
        arrays[name] = encode_texts(split["text"], tokenizer, max_length)
        arrays[name]["good"] = np.asarray(split["good"], np.int32)
        arrays[name]["bad"] = np.asarray(split["bad"], np.int32)
    return arrays


def _save(path: Path, arrays: dict[str, dict[str, np.ndarray]]) -> None:
    flat = {
        f"{split}.{key}": value for split, group in arrays.items() for key, value in group.items()
    }
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    write_bytes_atomic(path, buffer.getvalue())


def _load(path: Path) -> dict[str, dict[str, np.ndarray]]:
    try:
        with np.load(path) as stored:
            arrays: dict[str, dict[str, np.ndarray]] = {}
            for name in stored.files:
                split, key = name.split(".", 1)
                arrays.setdefault(split, {})[key] = stored[name]
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable token cache ({error}); delete it") from error
    return arrays


def tokenize_task(
    task: TaskData,
    tokenizer,
    max_length: int = DEFAULT_MAX_LENGTH,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Split name -> contract arrays; read from / written to ``cache_dir`` when given."""
    if max_length < 2:
        raise DataError(f"max_length must be at least 2 (for [CLS] and [SEP]), got {max_length}")
    if not task.fingerprint:
        raise DataError("task has no fingerprint; build it with load_task")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"tokens-{cache_key(task, tokenizer, max_length)}.npz"
        if path.exists():
            return _load(path)
    arrays = _tokenize_splits(task, tokenizer, max_length)
    if path is not None:
        _save(path, arrays)
    return arrays
