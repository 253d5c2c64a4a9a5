"""Metrics, schedules and examples-to-target against hand computations."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from sdm_jax.attacks.metrics import (
    balanced_accuracy,
    classification_metrics,
    examples_to_target,
    roc_auc,
    trailing_mean,
)
from sdm_jax.attacks.settings import (
    AttackSetting,
    schedule_factor,
    validate_settings,
)
from sdm_jax.fine_tune import accuracy, direction


def test_accuracy_and_balanced_accuracy_by_hand():
    labels = np.array([0, 0, 0, 1])
    predictions = np.array([0, 0, 1, 1])
    assert float(accuracy(np.eye(2)[predictions], labels)) == pytest.approx(0.75)
    # recall of class 0 is 2/3, of class 1 is 1/1; class 2 is absent and ignored
    assert balanced_accuracy(labels, predictions, 3) == pytest.approx((2 / 3 + 1) / 2)


def test_roc_auc_by_hand_with_ties():
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.4, 0.8])
    # pairs (pos, neg): (0.4,0.1)=1 (0.4,0.4)=0.5 (0.8,0.1)=1 (0.8,0.4)=1 -> 3.5 / 4
    assert roc_auc(labels, scores) == pytest.approx(0.875)
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_metrics_agree_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    logits = rng.integers(-3, 4, size=(300, 2)).astype(np.float32)  # small integers tie often
    metrics = classification_metrics(labels, logits, 2)
    predictions = logits.argmax(-1)
    assert metrics["accuracy"] == pytest.approx(np.mean(predictions == labels))
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(labels, predictions)
    )
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, logits[:, 1] - logits[:, 0]))
    assert classification_metrics(labels, rng.normal(size=(300, 5)), 5)["roc_auc"] is None


def test_examples_to_target_by_hand():
    assert trailing_mean(np.array([0.0, 1.0, 1.0, 0.5]), 2).tolist() == [0.0, 0.5, 1.0, 0.75]
    train_accuracy = np.array([0.25, 0.5, 0.75, 1.0, 1.0])
    reached = examples_to_target(train_accuracy, np.full(5, 4), (0.5, 0.9, 1.0), window=2)
    # moving averages: 0.25, 0.375, 0.625, 0.875, 1.0
    assert reached == {"0.5": 12, "0.9": 20, "1": 20}
    never = examples_to_target(np.zeros(3), np.full(3, 8), (0.5,), window=1)
    assert never == {"0.5": None}


def test_schedules_by_hand():
    assert float(schedule_factor(7, 10, 0, 0)) == 1.0
    assert float(schedule_factor(5, 10, 0, 1)) == pytest.approx(0.5)
    assert float(schedule_factor(5, 10, 0, 2)) == pytest.approx(0.5)
    assert float(schedule_factor(0, 10, 4, 1)) == pytest.approx(0.25)  # warmup step 1 of 4
    assert float(schedule_factor(7, 10, 4, 2)) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (AttackSetting(optimizer="lion"), "unknown optimizer"),
        (AttackSetting(schedule="step"), "unknown schedule"),
        (AttackSetting(lr=0.0), "lr must be positive"),
        (AttackSetting(steps=10, warmup_steps=10), "warmup_steps"),
    ],
)
def test_bad_settings_fail_with_one_line(setting, message):
    with pytest.raises(ValueError, match=message) as caught:
        validate_settings([setting])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("family", "momentum", "weight_decay", "reference"),
    [
        ("adam", 0.0, 0.01, optax.adamw(0.1, eps=1e-8, weight_decay=0.01)),
        ("sgd", 0.9, 0.0, optax.sgd(0.1, momentum=0.9)),
        ("sgd", 0.0, 0.0, optax.sgd(0.1)),
        ("rmsprop", 0.0, 0.0, optax.rmsprop(0.1, decay=0.99)),
    ],
)
def test_direction_times_learning_rate_matches_optax(family, momentum, weight_decay, reference):
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    ours = direction(family, momentum=momentum, weight_decay=weight_decay)
    ours_state, reference_state = ours.init(params), reference.init(params)
    for step in range(3):
        grads = {"w": jnp.array([0.5, -1.0, 0.25]) * (step + 1)}
        step, ours_state = ours.update(grads, ours_state, params)
        expected, reference_state = reference.update(grads, reference_state, params)
        np.testing.assert_allclose(-0.1 * step["w"], expected["w"], rtol=1e-6)
