"""What a training run trains on: ``prepare_task`` has the config's model kind build the
backbone and the numpy splits (:mod:`sdm_jax.app.model_kinds`), and checks them before any
compute."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdm_jax.app.model_kinds import PreparedTask, kind_of
from sdm_jax.config import Config
from sdm_jax.data import DataError, split_length


def prepare_task(config: Config) -> PreparedTask:
    """Backbone, initial parameters and checked numpy splits for ``config``."""
    task = kind_of(config).prepare(config)
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


def describe(task: PreparedTask) -> dict[str, Any]:
    return {
        "model": task.backbone.name,
        "splits": {name: split_length(arrays) for name, arrays in task.splits.items()},
        "num_good": task.num_good,
        "num_bad": task.num_bad,
    }
