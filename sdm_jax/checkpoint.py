"""Run checkpoints (orbax) and atomically written result files.

A checkpoint holds the whole train state pytree, the samplers' positions and a metadata JSON
(config fingerprint and values, step, validation loss, best so far). Saves are atomic: orbax
writes into a temporary folder and renames it, so a run killed mid-save leaves the previous
checkpoint intact. Kept: the latest ``keep`` checkpoints plus the one the caller names best.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from sdm_jax.atomic import write_text_atomic

CHECKPOINT_FORMAT = 1


class RestoreError(ValueError):
    """A checkpoint that cannot be resumed: corrupt, or written by a different config."""


class UnreadableCheckpoint(RestoreError):
    """A checkpoint whose files cannot be read: corrupt, or cut short by a crash."""


def validation_rank(val_loss: float, step: int) -> tuple[float, int]:
    """The order "best" means everywhere: lower loss first, then the earlier step.

    The training loop and the checkpoint manager's retention both rank by this, so the step the
    loop calls best is the one retention keeps, ties included.
    """
    return float(val_loss), int(step)


# --------------------------------------------------------------------------- result files


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """One JSON object per line; a line is written in one call, so a kill loses at most it."""
    with open(path, "a") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file, ignoring a torn last line left by a kill."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_jsonl(path: str | Path, last_step: int) -> None:
    """Drop records logged after ``last_step`` (they are recomputed when a run resumes)."""
    records = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    if Path(path).exists():
        write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


# --------------------------------------------------------------------------- checkpoints


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0].split(". ")[0] if text else ""
    return f"{type(error).__name__}: {first}".strip().rstrip(":")


class _PreserveBest:
    """Retention's half of "best": keep the step the training loop named best.

    The loop is the one source of truth (it ranks by :func:`validation_rank` and stores its
    best step in every checkpoint's metadata). Orbax's own BestN ranks by metrics it does not
    write to disk, so after a restart it saw none and deleted the best checkpoint.
    """

    def __init__(self):
        self.step: int | None = None

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        return [info.step == self.step for info in checkpoints]


class RunCheckpoints:
    """The checkpoints of one run under ``directory``.

    ``fingerprint`` and ``config_items`` (flat ``{"section.key": value}``) describe the config
    that writes them; :meth:`restore` refuses checkpoints written by another one.
    """

    def __init__(
        self,
        directory: str | Path,
        keep: int,
        fingerprint: str,
        config_items: Mapping[str, Any],
        resumable_keys: Iterable[str] = (),
    ):
        self.directory = Path(directory).absolute()
        self.fingerprint = fingerprint
        self.config_items = dict(config_items)
        self.resumable_keys = frozenset(resumable_keys)
        self._best = _PreserveBest()
        policy = preservation_policy.AnyPreservationPolicy([
            preservation_policy.LatestN(n=keep), self._best,
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
            create=True,
        )
        # Handlers named up front, so a fresh manager can read metadata before any restore.
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "samplers": ocp.JsonCheckpointHandler(),
            "metadata": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The kept step with the lowest validation loss (None if none was validated)."""
        losses = {step: self.read_metadata(step)["val_loss"] for step in self.all_steps()}
        scored = [validation_rank(loss, step) for step, loss in losses.items() if loss is not None]
        return min(scored)[1] if scored else None

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        samplers: Mapping[str, Mapping[str, int]],
        val_loss: float | None = None,
        best_step: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Save ``state`` (any pytree of arrays) at ``step``, its validation loss ``val_loss``.

        ``best_step``: the run's best step so far; its checkpoint is kept beside the latest
        ``keep`` (the caller ranks, with :func:`validation_rank`).
        """
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "step": int(step),
            "fingerprint": self.fingerprint,
            "config": self.config_items,
            "val_loss": val_loss,
            "best_step": best_step,
            **(extra or {}),
        }
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            samplers=ocp.args.JsonSave(dict(samplers)),
            metadata=ocp.args.JsonSave(metadata),
        )
        self._best.step = best_step
        self.manager.save(int(step), args=args, force=True)
        self.manager.wait_until_finished()

    def read_metadata(self, step: int) -> dict[str, Any]:
        where = self.directory / str(step)
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())
            )
        except Exception as error:  # orbax raises many types; all mean "unreadable"
            raise UnreadableCheckpoint(
                f"{where}: checkpoint metadata is unreadable (corrupt or incomplete; "
                f"{_first_line(error)})"
            ) from None
        metadata = restored["metadata"]
        if not isinstance(metadata, dict) or metadata.get("format") != CHECKPOINT_FORMAT:
            raise RestoreError(f"{where}: not a checkpoint of this trainer (format mismatch)")
        return metadata

    def check_compatible(self, metadata: Mapping[str, Any], step: int) -> None:
        if metadata.get("fingerprint") == self.fingerprint:
            return
        saved = metadata.get("config", {})
        keys = sorted(
            k for k in set(saved) | set(self.config_items)
            if k not in self.resumable_keys and saved.get(k) != self.config_items.get(k)
        )
        changes = ", ".join(
            f"{k}: {saved.get(k)!r} -> {self.config_items.get(k)!r}" for k in keys[:3]
        )
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        raise RestoreError(
            f"{self.directory / str(step)}: written by a different config ({changes or 'unknown'}"
            f"{more}); use another run directory or the same settings"
        )

    def restore(self, target_state: Any, step: int | None = None) -> tuple[Any, dict, dict]:
        """(state, samplers, metadata) of ``step`` (default: the latest).

        ``target_state`` is a state of the expected structure (e.g. freshly initialised); its
        shapes, dtypes and shardings decide how the arrays are read, so a checkpoint of another
        architecture fails here with one line instead of surfacing later.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise RestoreError(f"{self.directory}: no checkpoint to restore")
        metadata = self.read_metadata(step)
        self.check_compatible(metadata, step)
        where = self.directory / str(step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
        try:
            saved = self.manager.item_metadata(step)["state"]
            if saved is None:
                raise FileNotFoundError("no state item")
        except Exception as error:  # orbax raises many types; all mean "unreadable"
            raise UnreadableCheckpoint(
                f"{where}: checkpoint is unreadable (corrupt or incomplete; {_first_line(error)})"
            ) from None
        mismatch = _shape_mismatch(_saved_shapes(saved), _target_shapes(abstract))
        if mismatch:
            raise RestoreError(f"{where}: does not fit this model's state ({mismatch})")
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            samplers=ocp.args.JsonRestore(),
        )
        try:
            restored = self.manager.restore(step, args=args)
        except Exception as error:  # tensorstore reports bad bytes with many types
            raise UnreadableCheckpoint(
                f"{where}: checkpoint is unreadable (corrupt or incomplete; {_first_line(error)})"
            ) from None
        return restored["state"], dict(restored["samplers"]), metadata

    def set_aside(self, step: int) -> Path:
        """Rename an unreadable checkpoint to ``STEP.unreadable`` (kept for inspection, out of
        the manager's sight), so the run continues from an earlier one and may save ``step``
        again."""
        target = self.directory / f"{step}.unreadable"
        if target.exists():
            shutil.rmtree(target)
        (self.directory / str(step)).rename(target)
        self.manager.reload()
        return target

    def close(self) -> None:
        self.manager.close()


def _key_name(entry: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def _target_shapes(abstract: Any) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(abstract)[0]
    return {".".join(_key_name(k) for k in path): tuple(leaf.shape) for path, leaf in flat}


def _saved_shapes(tree_metadata: Any) -> dict[str, tuple[int, ...]]:
    tree = getattr(tree_metadata, "tree", tree_metadata)
    leaves = jax.tree.leaves(tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "name"))
    return {leaf.name: tuple(leaf.shape) for leaf in leaves}


def _shape_mismatch(saved: Mapping[str, tuple], expected: Mapping[str, tuple]) -> str:
    """A short description of the first difference, or "" when the two states match."""
    missing = sorted(set(expected) - set(saved))
    if missing:
        return f"{missing[0]} is not in the checkpoint"
    extra = sorted(set(saved) - set(expected))
    if extra:
        return f"the checkpoint has {extra[0]}, this model does not"
    for name in sorted(expected):
        if saved[name] != expected[name]:
            return f"{name} has shape {saved[name]} in the checkpoint, {expected[name]} here"
    return ""
