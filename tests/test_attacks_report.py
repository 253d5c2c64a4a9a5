"""Report rows, tables and files; the grid's resumable cell cache; grid-level input checks."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from sdm_jax.attacks import grid as grid_module
from sdm_jax.attacks.grid import evaluate_grid
from sdm_jax.attacks.problem import AttackInputError, AttackTarget
from sdm_jax.attacks.report import (
    attack_label,
    blocking_scores,
    family_rows,
    markdown_report,
    repeat_rows,
    repeats_markdown,
    run_rows,
    summary_rows,
    trials_to_break,
)
from sdm_jax.attacks.report_io import trials_figure, write_report
from sdm_jax.attacks.runner import RunnerConfig, RunResult
from sdm_jax.attacks.search import CellResult, SearchConfig, SearchSpace
from sdm_jax.attacks.settings import AttackSetting
from sdm_jax.data.toy import ToySpec, make_toy_task
from sdm_jax.models.heads import mlp_backbone


def _run(accuracy, seed=0):
    metrics = {"accuracy": accuracy, "balanced_accuracy": accuracy, "roc_auc": None}
    return RunResult(
        setting=AttackSetting(seed=seed),
        best_step=50,
        val=metrics,
        test=metrics,
        eval_steps=[0, 50],
        val_curve=[0.5, accuracy],
        examples_to_target={"0.5": 16, "1": None},
    )


def _cell(model, task, n, accuracies):
    seeds = [_run(a, i) for i, a in enumerate(accuracies)]
    return CellResult(model, task, n, [_run(0.7)], AttackSetting(), seeds, "patience")


def test_summary_blocking_score_and_markdown_by_hand():
    cells = [
        _cell("pretrained", "bad", 20, [0.9, 0.9]),
        _cell("random", "bad", 20, [0.6, 0.6]),
        _cell("blocked", "bad", 20, [0.6, 0.8]),
        _cell("blocked", "good", 20, [0.8, 0.8]),
    ]
    summary = summary_rows(cells)
    blocked = summary[2]
    assert blocked["test_accuracy_mean"] == pytest.approx(0.7)
    assert blocked["test_accuracy_std"] == pytest.approx(0.1)
    assert blocked["test_accuracy_worst"] == pytest.approx(0.8)
    assert blocked["test_roc_auc_mean"] is None
    # (0.9 - 0.7) / (0.9 - 0.6)
    assert blocking_scores(summary, "bad", "pretrained", "random") == {
        "blocked": {20: pytest.approx(2 / 3)}
    }
    report = markdown_report(summary)
    assert "| blocked | 0.700 ± 0.100 (0.800) |" in report
    assert "| blocked | 0.667 |" in report
    assert "## Desired task (good)" in report and "| blocked | 0.800 ± 0.000 (0.800) |" in report
    assert "| blocked | full, adam lr 1.0e-03, 500 steps, batch 16 |" in report
    rows = run_rows(cells)
    assert len(rows) == 4 * 3 and rows[1]["phase"] == "seed" and rows[0]["phase"] == "trial"
    assert rows[1]["test_accuracy"] == 0.9 and rows[1]["examples_to_0.5"] == 16


def test_write_report_files(tmp_path):
    cells = [_cell("pretrained", "bad", 20, [0.9, 0.8]), _cell("pretrained", "bad", 50, [0.95])]
    paths = write_report(tmp_path / "out", cells)
    document = json.loads(paths["results.json"].read_text())
    assert len(document["cells"]) == 2 and document["summary"][1]["n"] == 50
    assert CellResult.from_dict(document["cells"][0]) == cells[0]
    assert len(paths["results.csv"].read_text().splitlines()) == 1 + 3 + 2
    assert "n=20 | n=50" in paths["report.md"].read_text()
    assert paths["blocking.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["trials_to_break.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert document["families"][0] == {"model_id": "pretrained", "task": "bad", "n": 20,
                                       "family": "full", "num_trials": 1,
                                       "best_val_accuracy": 0.7, "chosen": True,
                                       "test_accuracy_mean": pytest.approx(0.85),
                                       "test_accuracy_std": pytest.approx(0.05),
                                       "test_accuracy_worst": 0.9}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(paths)  # no temp files


GRID_CONFIG = SearchConfig(
    method="random",
    max_trials=4,
    trials_per_batch=4,
    num_seeds=4,
    space=SearchSpace(steps_range=(40, 60, 20), batch_sizes=(16,), modes=("full",)),
    runner=RunnerConfig(eval_every=20, eval_batch_size=128, max_examples=300),
)


@pytest.fixture(scope="module")
def grid_inputs():
    splits = make_toy_task(ToySpec(n_train=10, n_val=300, n_test=300))
    backbone = mlp_backbone()
    targets = [
        AttackTarget(f"mlp-{seed}", backbone, backbone.init(jax.random.key(seed)))
        for seed in (0, 1)
    ]
    return targets, splits


def test_interrupted_grid_resumes_from_the_cache(grid_inputs, tmp_path, monkeypatch):
    targets, splits = grid_inputs
    real_search = grid_module.search_cell
    searched = []

    def interrupted_after_one(*args, **kwargs):
        if searched:
            raise KeyboardInterrupt
        searched.append(args[0].model_id)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(grid_module, "search_cell", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        evaluate_grid(targets, splits, ("bad",), (40,), GRID_CONFIG, tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.json"))) == 1

    def counting(*args, **kwargs):
        searched.append(args[0].model_id)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(grid_module, "search_cell", counting)
    resumed = evaluate_grid(targets, splits, ("bad",), (40,), GRID_CONFIG, tmp_path, progress=False)
    assert searched == ["mlp-0", "mlp-1"]  # the first cell came from the cache
    fresh = evaluate_grid(targets, splits, ("bad",), (40,), GRID_CONFIG, None, progress=False)
    assert [c.to_dict() for c in resumed] == [c.to_dict() for c in fresh]
    assert np.isfinite(summary_rows(resumed)[0]["test_accuracy_mean"])


@pytest.mark.parametrize(
    ("tasks", "ns", "splits_change", "message"),
    [
        (("bad",), (5000,), {}, "n=5000 attacker examples"),
        (("gender",), (20,), {}, "no labels for task 'gender'"),
        (("bad",), (20,), {"val2": {"x": np.zeros((0, 25)), "bad": np.zeros(0)}}, "empty"),
        (("bad",), (20,), {"test": None}, "no split 'test'"),
    ],
)
def test_grid_rejects_bad_input_before_compute(
    grid_inputs, monkeypatch, tasks, ns, splits_change, message
):
    targets, splits = grid_inputs
    splits = {**splits, **splits_change}
    splits = {name: arrays for name, arrays in splits.items() if arrays is not None}
    monkeypatch.setattr(grid_module, "search_cell", None)  # any search would crash
    with pytest.raises(AttackInputError, match=message) as caught:
        evaluate_grid(targets, splits, tasks, ns, GRID_CONFIG, progress=False)
    assert "\n" not in str(caught.value)


def test_examples_to_target_averages_with_the_budget_for_unreached_targets():
    from dataclasses import replace

    from sdm_jax.attacks.report import mean_examples_to_target

    reached = _run(0.9)
    never = replace(_run(0.9), examples_to_target={"0.5": 48, "1": None})
    budget = AttackSetting().steps * AttackSetting().batch_size
    means = mean_examples_to_target([reached, never])
    assert means == {"0.5": 32.0, "1": float(budget)}
    row = summary_rows([CellResult("m", "bad", 20, [reached], AttackSetting(),
                                   [reached, never], "patience")])[0]
    assert row["examples_to_0.5_mean"] == 32.0 and row["examples_to_1_mean"] == budget


def test_repeat_rows_spread_and_blocking_score():
    def summary(blocked, pretrained, random):
        return [{"model_id": m, "task": "bad", "n": 20, "test_accuracy_mean": a,
                 "test_accuracy_worst": a + 0.01}
                for m, a in (("blocked", blocked), ("pretrained", pretrained), ("random", random))]

    rows = repeat_rows([summary(0.6, 0.8, 0.5), summary(0.7, 0.8, 0.5)])
    blocked = next(row for row in rows if row["model_id"] == "blocked")
    assert blocked["accuracy_mean"] == pytest.approx(0.65)
    assert blocked["accuracy_std"] == pytest.approx(0.05)
    assert blocked["blocking_score_mean"] == pytest.approx(0.5)
    assert blocked["blocking_score_std"] == pytest.approx(1 / 6)
    assert "0.500 ± 0.167" in repeats_markdown(rows)
    with pytest.raises(ValueError, match="no evaluation repeats"):
        repeat_rows([])


def test_attack_label_names_what_the_chosen_attack_trains():
    lora = AttackSetting(lr=3e-4, steps=200, batch_size=8, adapter="lora", lora_rank=16,
                         lora_alpha=32.0, lora_targets="attention+ffn")
    assert attack_label(lora.to_dict()) == (
        "lora r16 α32 attention+ffn, adam lr 3.0e-04, 200 steps, batch 8"
    )
    assert attack_label(AttackSetting(frozen_base=True).to_dict()).startswith("frozen, adam")
    assert attack_label(AttackSetting(adapter="bitfit").to_dict()).startswith("bitfit, adam")
    int4 = AttackSetting(adapter="lora", compression="int4").to_dict()
    assert attack_label(int4).startswith("int4 then lora r8")


def _searched_cell(model, accuracies_by_family):
    """A cell whose trials (in order) are (family setting, val accuracy) pairs."""
    settings = {"full": AttackSetting(), "frozen": AttackSetting(frozen_base=True),
                "int4+lora": AttackSetting(adapter="lora", compression="int4")}
    trials = []
    for family, accuracy in accuracies_by_family:
        run = _run(accuracy)
        trials.append(dataclasses.replace(run, setting=settings[family],
                                          val={**run.val, "accuracy": accuracy}))
    return CellResult(model, "bad", 100, trials, settings["frozen"], [_run(0.6)], "patience")


def test_families_trials_to_break_and_examples_tables():
    cell = _searched_cell("blocked", [("full", 0.6), ("frozen", 0.7), ("int4+lora", 0.65),
                                      ("full", 0.75), ("frozen", 0.5)])
    assert trials_to_break(cell) == [0.6, 0.7, 0.7, 0.75, 0.75]
    rows = {row["family"]: row for row in family_rows([cell])}
    assert {f: (r["num_trials"], r["best_val_accuracy"], r["chosen"]) for f, r in rows.items()} == {
        "full": (2, 0.75, False), "frozen": (2, 0.7, True), "int4+lora": (1, 0.65, False)}
    assert AttackSetting(adapter="bitfit", compression="prune50").attack_family == "prune50+bitfit"
    report = markdown_report(summary_rows([cell]), families=family_rows([cell]))
    assert "| blocked | frozen | 0.700 (2, chosen); test 0.600 ± 0.000 (0.600) |" in report
    assert "| blocked | full | 0.750 (2) |" in report
    # _run reaches 0.5 after 16 examples; the other targets are never reached: budget 500 x 16.
    assert "| blocked | 0.5 | 16 |" in report and "| blocked | 1 | 8000 |" in report


def test_trials_figure_draws_baselines_as_reference_lines():
    cells = [_searched_cell(model, [("full", a), ("full", a + 0.1)])
             for model, a in (("blocked", 0.5), ("pretrained", 0.8), ("random", 0.55))]
    axes = trials_figure(cells, "bad", "pretrained", "random").axes
    assert len(axes) == 1 and axes[0].get_xlabel() == "search trials"
    labels = axes[0].get_legend_handles_labels()[1]
    assert labels == ["blocked", "pretrained (best found)", "random (best found)"]
    assert [line.get_ydata()[0] for line in axes[0].get_lines()[1:]] == pytest.approx([0.9, 0.65])


def test_seeded_families_show_their_test_figures():
    cell = _searched_cell("blocked", [("full", 0.6), ("frozen", 0.7)])
    cell = dataclasses.replace(cell, family_seeds={"full": [_run(0.55), _run(0.65)]})
    rows = {row["family"]: row for row in family_rows([cell])}
    assert rows["full"]["test_accuracy_mean"] == pytest.approx(0.6)
    assert rows["frozen"]["test_accuracy_mean"] == pytest.approx(0.6)  # the chosen's seeds
    report = markdown_report(summary_rows([cell]), families=family_rows([cell]))
    assert "| blocked | full | 0.600 (1); test 0.600 ± 0.050 (0.650) |" in report
