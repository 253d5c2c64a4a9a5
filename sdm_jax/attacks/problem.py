"""What is attacked (:class:`AttackTarget`) and with which data (:class:`AttackProblem`), plus
the checks that turn bad input into one clear error line before any compute."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sdm_jax.models.backbone import Backbone, Params

Arrays = Mapping[str, np.ndarray]


class AttackInputError(ValueError):
    """Bad attack input (data, task, sizes); the message is one line naming the problem."""


@dataclass(frozen=True, eq=False)
class AttackTarget:
    """A model under attack.

    ``model_id`` names it in reports and cache keys (a key also holds a digest of ``params``).
    ``params`` are the backbone's parameters. Every attack starts from a fresh random head
    (``init_head``, drawn from the run's seed) with one output per class, as the reference's
    attacker does. ``retain_head`` is the model's own desired-task
    head (``{"kernel": [H, n_good]}``): with a problem's ``retain_task``, every run also reports
    how well the attacked backbone still serves that task through it.
    """

    model_id: str
    backbone: Backbone
    params: Params
    retain_head: Params | None = None


@dataclass(frozen=True, eq=False)
class AttackProblem:
    """The task and the splits of one attack cell.

    The attacker's ``n`` examples are drawn from ``train`` (the reference uses val1); settings
    and the best evaluation step are selected on ``val``; ``test`` is only reported, never used
    for a choice (``None`` during a search). ``num_classes`` is inferred from the labels of all
    splits when not given. ``retain_task`` names the desired task whose accuracy an attack on
    ``task`` should not destroy (measured when the target has a ``retain_head``).
    """

    task: str
    n: int
    train: Arrays
    val: Arrays
    test: Arrays | None = None
    num_classes: int | None = None
    retain_task: str | None = None

    def retains(self, target: AttackTarget) -> bool:
        """Whether runs of this problem on ``target`` measure the desired task too."""
        return (self.retain_task is not None and self.retain_task != self.task
                and target.retain_head is not None)

    def splits(self) -> dict[str, Arrays]:
        named = {"train": self.train, "val": self.val}
        if self.test is not None:
            named["test"] = self.test
        return named


def _split_size(name: str, arrays: Arrays) -> int:
    lengths = {key: len(value) for key, value in arrays.items()}
    if not lengths or max(lengths.values()) == 0:
        raise AttackInputError(f"split {name!r} is empty")
    if len(set(lengths.values())) != 1:
        raise AttackInputError(f"split {name!r} has arrays of different lengths: {lengths}")
    return next(iter(lengths.values()))


def validate_problem(target: AttackTarget, problem: AttackProblem) -> int:
    """Check the problem against the model; return the number of classes of the task."""
    splits = problem.splits()
    sizes = {name: _split_size(name, arrays) for name, arrays in splits.items()}
    for name, arrays in splits.items():
        if problem.task not in arrays:
            raise AttackInputError(
                f"split {name!r} has no labels for task {problem.task!r} (keys: {sorted(arrays)})"
            )
        missing = [key for key in target.backbone.input_keys if key not in arrays]
        if missing:
            raise AttackInputError(
                f"split {name!r} lacks input {missing} needed by backbone {target.backbone.name!r}"
            )
    if not 0 < problem.n <= sizes["train"]:
        raise AttackInputError(
            f"n={problem.n} attacker examples asked for, but the attacker's split has "
            f"{sizes['train']} (need 1 <= n <= {sizes['train']})"
        )
    labels = {name: np.asarray(arrays[problem.task]) for name, arrays in splits.items()}
    smallest = min(int(values.min()) for values in labels.values())
    largest = max(int(values.max()) for values in labels.values())
    num_classes = problem.num_classes if problem.num_classes is not None else max(largest + 1, 2)
    if smallest < 0 or largest >= num_classes:
        raise AttackInputError(
            f"labels of task {problem.task!r} span [{smallest}, {largest}], "
            f"outside [0, {num_classes})"
        )
    if problem.retains(target):
        for name in ("val", "test"):
            arrays = splits.get(name)
            if arrays is not None and problem.retain_task not in arrays:
                raise AttackInputError(f"split {name!r} has no labels for the retained task "
                                       f"{problem.retain_task!r} (keys: {sorted(arrays)})")
    return num_classes
