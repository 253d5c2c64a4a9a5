"""Classification metrics and the examples-to-target statistic, in numpy on the host.

The compiled attack program only tracks validation accuracy (cheap to compile inside its scan)
and returns the logits at the best step; everything else is computed here from those logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Written out rather than computed with arange so the keys print as 0.5, 0.6, ... exactly.
DEFAULT_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
METRIC_NAMES = ("accuracy", "balanced_accuracy", "roc_auc")


def balanced_accuracy(labels, predictions, num_classes: int) -> float:
    """Mean per-class recall over the classes present in ``labels`` (sklearn's definition)."""
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    classes = np.arange(num_classes)[:, None]
    in_class = labels[None, :] == classes
    support = in_class.sum(axis=1)
    hits = (in_class & (predictions[None, :] == classes)).sum(axis=1)
    recall = hits / np.maximum(support, 1)
    present = support > 0
    return float(np.sum(np.where(present, recall, 0.0)) / max(present.sum(), 1))


def roc_auc(labels, scores) -> float:
    """Binary ROC-AUC by the rank-sum (Mann-Whitney) formula; tied scores share their mean rank.

    NaN when only one class is present, as the AUC is undefined there.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, np.float64)
    sorted_scores = np.sort(scores)
    below = np.searchsorted(sorted_scores, scores, side="left")
    not_above = np.searchsorted(sorted_scores, scores, side="right")
    ranks = (below + not_above + 1) / 2.0  # 1-based mean rank of each tie group
    positive = labels == 1
    num_pos = float(positive.sum())
    num_neg = labels.shape[0] - num_pos
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    rank_sum = float(np.sum(ranks[positive]))
    return (rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg)


def classification_metrics(labels, logits, num_classes: int) -> dict[str, float | None]:
    """Accuracy, balanced accuracy and ROC-AUC (of the logit margin; binary tasks only, else
    ``None``) of ``[N, num_classes]`` logits."""
    logits = np.asarray(logits, np.float64)
    predictions = np.argmax(logits, axis=-1)
    auc = roc_auc(labels, logits[:, 1] - logits[:, 0]) if num_classes == 2 else float("nan")
    values = (
        float(np.mean(predictions == np.asarray(labels))),
        balanced_accuracy(labels, predictions, num_classes),
        auc,
    )
    return {
        name: value if np.isfinite(value) else None
        for name, value in zip(METRIC_NAMES, values, strict=True)
    }


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    if window <= 0:
        raise ValueError(f"moving-average window must be positive, got {window}")
    values = np.asarray(values, np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def examples_to_target(
    train_accuracy: np.ndarray,
    examples_per_step: np.ndarray,
    targets: Sequence[float] = DEFAULT_TARGETS,
    window: int = 10,
) -> dict[str, int | None]:
    """Training examples seen until the moving-average training accuracy first reaches a target.

    ``train_accuracy[t]`` is the accuracy on step ``t``'s batch before its update and
    ``examples_per_step[t]`` that batch's effective size; the count includes the crossing step.
    A target never reached maps to ``None``. Keys are the targets formatted as ``"0.5"``.
    """
    moving = trailing_mean(train_accuracy, window)
    seen = np.cumsum(np.asarray(examples_per_step, np.int64))
    result: dict[str, int | None] = {}
    for target in targets:
        # A tiny slack so that an average of exact 1.0s counts as reaching 1.0 despite rounding.
        crossed = np.flatnonzero(moving >= target - 1e-9)
        result[f"{target:g}"] = int(seen[crossed[0]]) if crossed.size else None
    return result
