"""The desired-label attacker: what the desired task alone gives away about the harmful one."""

from __future__ import annotations

import numpy as np
import pytest

from sdm_jax.attacks import AttackInputError, SearchConfig
from sdm_jax.attacks.leakage import (
    balanced_within,
    ceiling_scores,
    desired_label_accuracy,
    leakage_markdown,
    leakage_rows,
    majority_table,
)
from sdm_jax.attacks.search import final_data_seeds
from sdm_jax.data.sampler import random_subset


def test_majority_per_class_with_ties_and_unseen_classes_falling_back_to_the_overall_majority():
    desired = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    harmful = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1])
    # class 0: 2 vs 1 -> 1; class 1: tie -> overall majority 0 (5 of 9); class 2: 0; 3 unseen -> 0.
    assert majority_table(desired, harmful, num_desired=4).tolist() == [1, 0, 0, 0]


def test_a_harmful_label_fixed_by_the_desired_one_is_fully_given_away():
    desired = np.arange(40) % 4
    data = {"good": desired, "bad": (desired >= 2).astype(int)}
    assert desired_label_accuracy(data, data, "bad", "good") == 1.0


def test_an_independent_harmful_label_gives_only_its_majority_share():
    desired = np.repeat(np.arange(4), 10)
    harmful = np.tile(np.array([0] * 7 + [1] * 3), 4)
    data = {"good": desired, "bad": harmful}
    assert desired_label_accuracy(data, data, "bad", "good") == pytest.approx(0.7)


def _splits(seed: int = 0, size: int = 400) -> dict:
    rng = np.random.default_rng(seed)
    def split():
        good = rng.integers(0, 5, size)
        bad = np.where(rng.random(size) < 0.8, good % 2, 1 - good % 2)
        return {"good": good, "bad": bad}
    return {"val1": split(), "val2": split(), "test": split()}


def test_rows_use_the_final_runs_example_draws():
    splits, config = _splits(), SearchConfig(num_seeds=3, seed=4)
    rows = leakage_rows(splits, (20, 50), config)
    assert [row["n"] for row in rows] == [20, 50, "all"]
    expected = [desired_label_accuracy(random_subset(splits["val1"], 20, s), splits["test"],
                                       "bad", "good") for s in final_data_seeds(config)]
    assert rows[0]["accuracy_mean"] == pytest.approx(np.mean(expected))
    assert rows[0]["accuracy_std"] == pytest.approx(np.std(expected))
    # Plenty of examples recover the planted rule: 80% of labels follow the desired class.
    assert rows[-1]["accuracy_mean"] == pytest.approx(0.8, abs=0.06)
    shared = leakage_rows(splits, (20,), SearchConfig(num_seeds=3, resample_examples=False))
    assert shared[0]["accuracy_std"] == 0.0


def test_missing_labels_fail_in_one_line():
    splits = _splits()
    del splits["test"]["good"]
    with pytest.raises(AttackInputError, match="split 'test' has no labels for task 'good'"):
        leakage_rows(splits, (20,), SearchConfig())


def test_ceiling_is_the_blocking_score_of_the_attackers_accuracy():
    summary = [
        {"model_id": "pretrained", "task": "bad", "n": 20, "test_accuracy_mean": 0.9},
        {"model_id": "random", "task": "bad", "n": 20, "test_accuracy_mean": 0.5},
        {"model_id": "pretrained", "task": "bad", "n": 50, "test_accuracy_mean": 0.6},
        {"model_id": "random", "task": "bad", "n": 50, "test_accuracy_mean": 0.6},
    ]
    rows = [{"n": 20, "accuracy_mean": 0.6, "accuracy_std": 0.0},
            {"n": 50, "accuracy_mean": 0.6, "accuracy_std": 0.0},
            {"n": "all", "accuracy_mean": 0.62, "accuracy_std": 0.0}]
    scores = ceiling_scores(rows, summary, "bad", "pretrained", "random")
    assert scores == {20: pytest.approx(0.75), 50: None}
    text = leakage_markdown(rows, summary)
    assert "| blocking score of that accuracy (ceiling) | 0.750 | — | — |" in text
    assert "all of val1" in text


def test_a_test_split_balanced_within_the_desired_class_gives_the_desired_label_no_power():
    splits = _splits(size=600)
    balanced = balanced_within(splits["test"], "good", "bad")
    assert set(balanced) == {"good", "bad"} and 0 < len(balanced["bad"]) < 600
    for group in np.unique(balanced["good"]):
        labels = balanced["bad"][balanced["good"] == group]
        assert (labels == 0).sum() == (labels == 1).sum()
    skewed = desired_label_accuracy(splits["val1"], splits["test"], "bad", "good")
    assert skewed > 0.7
    assert desired_label_accuracy(splits["val1"], balanced, "bad", "good") == 0.5


def test_balancing_a_split_where_no_class_has_both_labels_fails_in_one_line():
    arrays = {"good": np.array([0, 0, 1]), "bad": np.array([1, 1, 0])}
    with pytest.raises(AttackInputError, match="would be empty"):
        balanced_within(arrays, "good", "bad")
