"""The desired task under a harmful attack: measured in the attack program, and the bounded
worst case built on it."""

import dataclasses

import jax
import numpy as np
import pytest

from sdm_jax.attacks.problem import AttackInputError
from sdm_jax.attacks.report import bounded_trials, markdown_report, summary_rows
from sdm_jax.attacks.runner import RunnerConfig, RunResult, run_attacks
from sdm_jax.attacks.search import CellResult
from sdm_jax.attacks.settings import AttackSetting
from sdm_jax.models.heads import init_head

CONFIG = RunnerConfig(eval_every=20, eval_batch_size=128, max_steps=40, max_batch_size=16,
                      max_examples=300)


@pytest.fixture(scope="module")
def retaining(toy_attack):
    target, problem = toy_attack
    good_head = init_head(jax.random.key(9), target.backbone.feature_dim, 2)
    return (dataclasses.replace(target, retain_head=good_head),
            dataclasses.replace(problem, retain_task="good"))


def _own_accuracy(target, split):
    logits = np.asarray(target.backbone.features(target.params, split)) @ np.asarray(
        target.retain_head["kernel"])
    return float(np.mean(logits.argmax(-1) == split["good"]))


def test_runs_report_the_desired_task_through_the_models_own_head(retaining):
    target, problem = retaining
    settings = [AttackSetting(lr=3e-2, steps=40, batch_size=16),
                AttackSetting(lr=3e-2, steps=40, batch_size=16, frozen_base=True),
                AttackSetting(lr=3e-2, steps=40, batch_size=16, adapter="lora",
                              lora_targets="dense")]
    together = run_attacks(target, problem, settings, CONFIG)
    full, probe, lora = together
    before = _own_accuracy(target, problem.val)
    assert all(run.retained["initial_val"] == pytest.approx(before, abs=1e-6) for run in together)
    # A probe leaves the backbone as it was; fine-tuning it moves the desired task.
    assert probe.retained["val"] == pytest.approx(before, abs=1e-6)
    assert probe.retained["test"] == pytest.approx(_own_accuracy(target, problem.test), abs=1e-6)
    assert full.retained["val"] != pytest.approx(before, abs=1e-3)
    assert lora.retained["val"] != pytest.approx(before, abs=1e-3)
    alone = [run_attacks(target, problem, [s], CONFIG)[0] for s in settings]
    for a, b in zip(together, alone, strict=True):
        assert a.retained == pytest.approx(b.retained, abs=1e-6)
    assert RunResult.from_dict(full.to_dict()) == full


def test_no_retain_head_or_task_measures_nothing(retaining):
    target, problem = retaining
    plain = dataclasses.replace(target, retain_head=None)
    assert run_attacks(plain, problem, [AttackSetting(steps=20)], CONFIG)[0].retained is None
    same = dataclasses.replace(problem, retain_task="bad")
    assert run_attacks(target, same, [AttackSetting(steps=20)], CONFIG)[0].retained is None


def test_a_split_without_the_retained_labels_is_named(retaining):
    target, problem = retaining
    val = {key: value for key, value in problem.val.items() if key != "good"}
    with pytest.raises(AttackInputError, match="split 'val' has no labels for the retained task"):
        run_attacks(target, dataclasses.replace(problem, val=val), [AttackSetting()], CONFIG)


def _run(harmful, desired, before=0.9):
    metrics = {"accuracy": harmful, "balanced_accuracy": harmful, "roc_auc": None}
    return RunResult(AttackSetting(), 10, metrics, metrics, [0, 10], [0.5, harmful],
                     retained={"initial_val": before, "val": desired, "test": desired})


def test_the_bounded_worst_case_keeps_only_attacks_that_leave_the_model_useful():
    trials = [_run(0.9, 0.5), _run(0.7, 0.88), _run(0.75, 0.86), _run(0.8, 0.84)]
    cell = CellResult("blocked", "bad", 50, trials, AttackSetting(), [_run(0.6, 0.8)], "budget")
    assert bounded_trials(cell) == trials[1:3]
    row = summary_rows([cell])[0]
    assert row["bounded_best_val_accuracy"] == 0.75 and row["bounded_trials"] == 2
    assert row["desired_after_test_mean"] == 0.8
    report = markdown_report([row])
    assert "| blocked | 0.900 → 0.800; bounded 0.750 (2/4) |" in report
    broken = CellResult("blocked", "bad", 50, trials[:1], AttackSetting(), [_run(0.6, 0.8)],
                        "budget")
    assert "bounded none kept it (0/1)" in markdown_report(summary_rows([broken]))


def test_a_compressed_attack_is_measured_against_the_model_as_released(retaining):
    target, problem = retaining
    settings = [AttackSetting(steps=20, compression="int4"),
                AttackSetting(steps=20, compression="prune50", frozen_base=True)]
    released = _own_accuracy(target, problem.val)
    int4, pruned_probe = run_attacks(target, problem, settings, CONFIG)
    assert int4.retained["initial_val"] == pytest.approx(released, abs=1e-6)
    assert pruned_probe.retained["initial_val"] == pytest.approx(released, abs=1e-6)
    # The probe trains no backbone weight, so what it retains is the pruned model's own figure.
    assert pruned_probe.retained["val"] != pytest.approx(released, abs=1e-3)
