"""How much of the harmful task the desired task alone gives away.

A model that keeps the desired task still tells an attacker each example's desired label, even
if it hides everything else. Where the two labels are correlated (in Bias in Bios, profession
and gender: most nurses are women) that label alone predicts part of the harmful task, so no
model that keeps the desired task can push an attacker down to the random encoder's accuracy.

The *desired-label attacker* measures that share: from the same ``n`` attacker examples the
fine-tuning attacks draw (same split, same data seeds), it learns each desired class's majority
harmful label (the majority of all ``n`` for a class it did not see, or a tie) and predicts the
test split from the true desired labels. The blocking score of its accuracy is the score a model
reaches that keeps the desired task perfectly and leaks nothing else: a reference ceiling, not a
proof (an attacker of a real model sees a noisier desired label, and may learn more from ``n``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sdm_jax.attacks.grid import ATTACKER_SPLIT, REPORT_SPLIT
from sdm_jax.attacks.problem import AttackInputError
from sdm_jax.attacks.report import blocking_scores, markdown_table
from sdm_jax.attacks.search import SearchConfig, final_data_seeds
from sdm_jax.data.sampler import random_subset

Arrays = Mapping[str, np.ndarray]
WHOLE_SPLIT = "all"
ATTACKER_ID = "desired-label attacker"


def majority_table(desired: np.ndarray, harmful: np.ndarray, num_desired: int) -> np.ndarray:
    """The harmful label to predict for each desired class: its strict majority among the given
    examples, else the overall majority (ties to the lower label)."""
    counts = np.zeros((num_desired, int(harmful.max()) + 1), np.int64)
    np.add.at(counts, (desired, harmful), 1)
    overall = int(np.argmax(counts.sum(axis=0)))
    top = np.sort(counts, axis=1)
    decided = top[:, -1] > (top[:, -2] if counts.shape[1] > 1 else 0)
    return np.where(decided, np.argmax(counts, axis=1), overall)


def desired_label_accuracy(train: Arrays, test: Arrays, harmful: str, desired: str) -> float:
    """Test accuracy of the desired-label attacker fitted on ``train``."""
    num_desired = int(max(train[desired].max(), test[desired].max())) + 1
    table = majority_table(np.asarray(train[desired]), np.asarray(train[harmful]), num_desired)
    return float(np.mean(table[np.asarray(test[desired])] == np.asarray(test[harmful])))


def balanced_within(arrays: Arrays, by: str, label: str) -> dict[str, np.ndarray]:
    """The examples of ``arrays`` that leave, in every ``by`` class, equally many of each
    ``label`` value (the first ones in split order); there ``by`` alone predicts ``label`` no
    better than chance."""
    groups, labels = np.asarray(arrays[by]), np.asarray(arrays[label])
    keep = np.zeros(len(groups), bool)
    values = np.unique(labels)
    for group in np.unique(groups):
        members = [np.flatnonzero((groups == group) & (labels == value)) for value in values]
        size = min(len(rows) for rows in members)
        for rows in members:
            keep[rows[:size]] = True
    if not keep.any():
        raise AttackInputError(f"no {by!r} class has examples of every {label!r} label, so a "
                               f"test split balanced within {by!r} would be empty")
    return {name: np.asarray(values_)[keep] for name, values_ in arrays.items()}


def leakage_rows(
    splits: Mapping[str, Arrays],
    ns: Sequence[int],
    config: SearchConfig,
    harmful: str = "bad",
    desired: str = "good",
) -> list[dict]:
    """Per ``n``, the desired-label attacker's test accuracy over the final runs' example draws
    (mean and std), and once on the whole attacker split (``n`` = ``"all"``)."""
    for split in (ATTACKER_SPLIT, REPORT_SPLIT):
        missing = [task for task in (harmful, desired) if task not in splits.get(split, {})]
        if missing:
            raise AttackInputError(f"split {split!r} has no labels for task {missing[0]!r}")
    train = {task: np.asarray(splits[ATTACKER_SPLIT][task]) for task in (harmful, desired)}
    test = {task: np.asarray(splits[REPORT_SPLIT][task]) for task in (harmful, desired)}
    rows = []
    for n in ns:
        scores = [desired_label_accuracy(random_subset(train, n, seed), test, harmful, desired)
                  for seed in final_data_seeds(config)]
        rows.append({"n": n, "accuracy_mean": float(np.mean(scores)),
                     "accuracy_std": float(np.std(scores))})
    whole = desired_label_accuracy(train, test, harmful, desired)
    rows.append({"n": WHOLE_SPLIT, "accuracy_mean": whole, "accuracy_std": 0.0})
    return rows


def ceiling_scores(
    rows: Sequence[dict], summary: Sequence[dict], harmful: str, pretrained_id: str,
    random_id: str,
) -> dict[int, float | None]:
    """Per ``n``, the blocking score of the desired-label attacker's accuracy, scored as one more
    model of the report (``None`` where a baseline is missing or the baselines are equal)."""
    attacker = [{"model_id": ATTACKER_ID, "task": harmful, "n": row["n"],
                 "test_accuracy_mean": row["accuracy_mean"]}
                for row in rows if row["n"] != WHOLE_SPLIT]
    scores = blocking_scores([*summary, *attacker], harmful, pretrained_id, random_id)
    return scores.get(ATTACKER_ID, {})


def leakage_markdown(
    rows: Sequence[dict], summary: Sequence[dict], harmful: str = "bad",
    pretrained_id: str = "pretrained", random_id: str = "random", balanced: str = "",
) -> str:
    """The report section: the attacker's accuracy per ``n`` and the ceiling it implies;
    ``balanced`` says how the test split was balanced, if it was."""
    ceiling = ceiling_scores(rows, summary, harmful, pretrained_id, random_id)
    header = ["", *[f"n={r['n']}" if r["n"] != WHOLE_SPLIT else f"all of {ATTACKER_SPLIT}"
                    for r in rows]]
    body = [
        ["desired-label attacker, test accuracy"]
        + [f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}" for r in rows],
        ["blocking score of that accuracy (ceiling)"]
        + ["—" if ceiling.get(r["n"]) is None else f"{ceiling[r['n']]:.3f}" for r in rows],
    ]
    lines = [
        "", "## What the desired task gives away", "",
        f"An attacker who knows only each example's desired label and learns its majority "
        f"{harmful!r} label from the same n examples (same draws as the attacks' final seeds). A "
        f"model that keeps the desired task and hides everything else still concedes this "
        f"accuracy, so its blocking score is the ceiling for such a model.", "",
        *markdown_table(header, body),
    ]
    if balanced:
        lines += ["", balanced]
    return "\n".join(lines) + "\n"
