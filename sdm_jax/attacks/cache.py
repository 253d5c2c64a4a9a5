"""A cache of finished cells as JSON files, so an interrupted evaluation resumes where it
stopped. The key is (model id, task, n, fingerprint), the fingerprint covering the search and
runner settings, the attacked weights and the data: retraining a model under the same id,
changing the corpus or any setting that alters results starts afresh."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import jax
import numpy as np

from sdm_jax.atomic import write_text_atomic
from sdm_jax.attacks.search import CellResult


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def content_digest(tree) -> str:
    """A short hash of every array in a pytree (paths, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in leaves:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


class CellCache:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def path(self, model_id: str, task: str, n: int, fingerprint: str) -> Path:
        return self.directory / f"{_safe(model_id)}__{_safe(task)}__n{n}__{fingerprint}.json"

    def load(self, model_id: str, task: str, n: int, fingerprint: str) -> CellResult | None:
        path = self.path(model_id, task, n, fingerprint)
        if not path.exists():
            return None
        try:
            cell = CellResult.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as error:
            return self._set_aside(path, f"is unreadable ({error})")
        if (cell.model_id, cell.task, cell.n) != (model_id, task, n):
            return self._set_aside(path, f"holds {cell.model_id}/{cell.task}/{cell.n}")
        return cell

    @staticmethod
    def _set_aside(path: Path, problem: str) -> None:
        """A bad cell file is kept as ``*.unreadable`` and the cell computed again."""
        moved = path.with_name(path.name + ".unreadable")
        path.replace(moved)
        print(f"note: cell cache file {path} {problem}; moved it to {moved.name} and "
              "computing the cell again", file=sys.stderr, flush=True)
        return None

    def store(self, cell: CellResult, fingerprint: str) -> Path:
        path = self.path(cell.model_id, cell.task, cell.n, fingerprint)
        write_text_atomic(path, json.dumps(cell.to_dict(), indent=1) + "\n")
        return path
