"""eval.py end to end on a shrunken toy run: report files, cache reuse, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image
import pytest

import eval as eval_cli
from sdm_jax.app.evaluation import (
    EvalPlan,
    evaluate,
    evaluate_repeats,
    parse_models,
    repeat_plan,
    run_batch_sizes,
)
from sdm_jax.app.training import train_and_evaluate
from sdm_jax.attacks import RunnerConfig, SearchConfig, SearchSpace
from sdm_jax.config import load_config

SMALL = [
    "model.kind=mlp", "model.mlp_width=16", "model.mlp_depth=2", "model.pretrain_steps=50",
    "toy.dim=6", "toy.n_train=256", "toy.n_val=64", "toy.n_test=64",
    "mlac.inner_steps=2", "mlac.batch_size_choices=[4, 8]", "mlac.linear_mi_iterations=5",
    "train.batch_size=16", "train.outer_steps=2", "train.eval_every=2", "train.eval_batches=1",
    "train.checkpoint_every=2", "train.log_every=1",
]
TINY_SEARCH = SearchConfig(
    method="random", max_trials=2, patience=2, trials_per_batch=2, num_seeds=2,
    space=SearchSpace(steps_range=(20, 40, 20), batch_sizes=(4, 8), modes=("full",)),
    runner=RunnerConfig(eval_every=10),
)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("toy_run")
    train_and_evaluate(load_config(None, SMALL), run_dir, progress=False)
    return run_dir


def _plan(run_dir: Path, out: Path, **changes) -> EvalPlan:
    values = dict(run_dir=run_dir, ns=(10, 20), search=TINY_SEARCH, out_dir=out,
                  progress=False)
    values.update(changes)
    return EvalPlan(**values)


def test_report_covers_every_model_task_and_n(toy_run, tmp_path):
    other = tmp_path / "copy_of_export"
    shutil.copytree(toy_run / "export", other)
    paths, cells = evaluate(_plan(toy_run, tmp_path / "eval", models={"copy": str(other)}))
    assert {(c.model_id, c.task, c.n) for c in cells} == {
        (model, task, n) for model in ("blocked", "copy", "pretrained", "random")
        for task in ("bad", "good") for n in (10, 20)
    }
    accuracies = {(c.model_id, c.task, c.n): [run.test["accuracy"] for run in c.seeds]
                  for c in cells}
    assert all(len(seeds) == 2 for seeds in accuracies.values())
    # The copy holds the blocked model's weights: every searched and seeded number repeats.
    for (model, task, n), seeds in accuracies.items():
        if model == "copy":
            assert seeds == accuracies[("blocked", task, n)]
    report = paths["report.md"].read_text()
    assert "| blocked |" in report and "Blocking score" in report and "Own heads" in report
    assert "What the desired task gives away" in report
    leakage = json.loads(paths["leakage.json"].read_text())
    assert [row["n"] for row in leakage] == [10, 20, "all"]
    assert all(0 <= row["accuracy_mean"] <= 1 for row in leakage)
    retention = json.loads(paths["retention.json"].read_text())
    assert set(retention) == {"blocked", "copy"}
    assert retention["blocked"] == retention["copy"]
    # Models with their own heads are also scored on the desired task the attack leaves.
    measured = {c.model_id for c in cells if c.task == "bad" and c.seeds[0].retained is not None}
    assert measured == {"blocked", "copy"}
    assert not any(c.seeds[0].retained for c in cells if c.task == "good")
    assert "bounded worst case" in report and "| blocked | " in report
    assert paths["blocking.png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    height, width = matplotlib.image.imread(paths["blocking.png"]).shape[:2]
    assert height > 100 and width > 100


def test_rerun_reuses_finished_cells(toy_run, tmp_path):
    plan = _plan(toy_run, tmp_path / "eval", baselines=(), tasks=("bad",), ns=(10,))
    _, first = evaluate(plan)
    cached = next((tmp_path / "eval" / "cache").iterdir())
    cached_bytes = cached.read_bytes()
    _, second = evaluate(plan)
    assert cached.read_bytes() == cached_bytes
    assert [c.to_dict() for c in first] == [c.to_dict() for c in second]


def test_a_retrained_model_under_the_same_id_is_attacked_again(toy_run, tmp_path):
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "copy_of_export"
    shutil.copytree(toy_run / "export", other)
    plan = _plan(toy_run, tmp_path / "eval", models={"copy": str(other)}, baselines=(),
                 tasks=("bad",), ns=(10,))
    _, first = evaluate(plan)
    weights = other / "params.safetensors"
    save_file({name: value * 0.5 for name, value in load_file(str(weights)).items()},
              str(weights))
    _, second = evaluate(plan)
    runs = {cell.model_id: [run.test for run in cell.seeds] for cell in first}
    rerun = {cell.model_id: [run.test for run in cell.seeds] for cell in second}
    assert rerun["blocked"] == runs["blocked"]
    assert rerun["copy"] != runs["copy"]
    cached = sorted(path.name.split("__")[0] for path in (tmp_path / "eval" / "cache").iterdir())
    assert cached == ["blocked", "copy", "copy"]


def test_a_kept_checkpoint_is_attacked_as_its_step_s_model(toy_run, tmp_path):
    summary = json.loads((toy_run / "summary.json").read_text())
    step = summary["export_step"]
    plan = _plan(toy_run, tmp_path / "eval", models={"at_step": f"{toy_run}@{step}"},
                 baselines=(), tasks=("bad",), ns=(10,))
    paths, cells = evaluate(plan)
    seeds = {cell.model_id: [run.test for run in cell.seeds] for cell in cells}
    # The export is that checkpoint, so the attacks repeat exactly; its own head is read too.
    assert seeds["at_step"] == seeds["blocked"]
    retention = json.loads(paths["retention.json"].read_text())
    assert retention["at_step"] == pytest.approx(retention["blocked"])


@pytest.mark.parametrize("step", [7, 0])
def test_a_checkpoint_that_is_not_kept_is_named_with_the_kept_ones(toy_run, tmp_path, step):
    kept = sorted(int(p.name) for p in (toy_run / "checkpoints").iterdir() if p.name.isdigit())
    with pytest.raises(ValueError) as raised:
        evaluate(_plan(toy_run, tmp_path / "eval", models={"old": f"{toy_run}@{step}"}))
    assert str(raised.value) == (
        f"{toy_run}@{step}: no checkpoint at step {step} (kept: {', '.join(map(str, kept))}; "
        "train.keep_checkpoints sets how many a run keeps)")


def test_a_checkpoint_of_another_architecture_is_refused_in_one_line(toy_run, tmp_path):
    wider = tmp_path / "wider"
    train_and_evaluate(load_config(None, [*SMALL, "model.mlp_width=24"]), wider, progress=False)
    with pytest.raises(ValueError) as raised:
        evaluate(_plan(toy_run, tmp_path / "eval", models={"wide": f"{wider}@2"}))
    assert str(raised.value) == (f"{wider}@2: trained with another model: section than the "
                                 "evaluated run; attack it with its own run")


def test_a_corrupt_cached_cell_is_set_aside_and_computed_again(toy_run, tmp_path, capsys):
    plan = _plan(toy_run, tmp_path / "eval", baselines=(), tasks=("bad",), ns=(10,))
    _, first = evaluate(plan)
    cached = next((tmp_path / "eval" / "cache").iterdir())
    good_bytes = cached.read_bytes()
    cached.write_text('{"model_id": "blocked", "ta')  # torn, e.g. by a full disk
    capsys.readouterr()
    _, second = evaluate(plan)
    assert (f"note: cell cache file {cached} is unreadable (" in capsys.readouterr().err)
    assert cached.read_bytes() == good_bytes
    assert cached.with_name(cached.name + ".unreadable").read_text() == \
        '{"model_id": "blocked", "ta'
    assert [c.to_dict() for c in first] == [c.to_dict() for c in second]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"models": {"ghost": "/no/such/model"}}, "/no/such/model: no such file or directory"),
        ({"ns": (10, 100_000)}, "100000"),
        ({"tasks": ("bad", "colour")}, "tasks must be"),
        ({"baselines": ("pretrained", "oracle")}, "unknown baseline 'oracle'"),
        ({"models": {"random": "/x"}}, "taken by a built-in model"),
    ],
)
def test_bad_input_fails_in_one_line(toy_run, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message) as raised:
        evaluate(_plan(toy_run, tmp_path / "eval", **changes))
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "eval" / "report.md").exists()


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ValueError, match="not a training run"):
        evaluate(_plan(tmp_path, tmp_path / "eval"))


def test_missing_and_unfinished_runs_are_named(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert eval_cli.main(["--run-dir", str(missing), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: no such run directory"
    unfinished = tmp_path / "unfinished"
    train_and_evaluate(load_config(None, [*SMALL, "train.outer_steps=4", "train.stop_after=2"]),
                       unfinished, progress=False)
    capsys.readouterr()
    assert eval_cli.main(["--run-dir", str(unfinished), "--ns", "20", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {unfinished}: this run has not finished (no export yet); finish it with: "
        f"python train.py --run-dir {unfinished}")


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert eval_cli.main(["--run-dir", str(tmp_path), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(ValueError, match="id=path_or_hub_id"):
        parse_models(["just-a-path"])


def test_cli_rejects_an_unknown_attack_mode(tmp_path, capsys):
    assert eval_cli.main(["--run-dir", str(tmp_path), "--attack-modes", "full,prompt",
                          "--batch-sizes", "8"]) == 2
    assert "unknown attack mode 'prompt'" in capsys.readouterr().err


def test_repeats_use_disjoint_seeds_and_report_their_spread(toy_run, tmp_path):
    plan = _plan(toy_run, tmp_path / "eval", tasks=("bad",), ns=(10,))
    assert [repeat_plan(plan, r).search.seed for r in range(3)] == [0, 2, 4]
    paths = evaluate_repeats(plan, 2)
    rows = json.loads(paths["repeats.json"].read_text())
    per_repeat = [json.loads((tmp_path / "eval" / f"repeat_{r}" / "results.json").read_text())
                  for r in range(2)]
    blocked = next(row for row in rows if row["model_id"] == "blocked")
    means = [next(s["test_accuracy_mean"] for s in doc["summary"] if s["model_id"] == "blocked")
             for doc in per_repeat]
    assert blocked["repeats"] == 2
    assert blocked["accuracy_min"] == min(means) and blocked["accuracy_max"] == max(means)
    assert "blocking_score_mean" in blocked
    assert "| blocked |" in paths["repeats.md"].read_text()


def test_a_balanced_test_split_is_reported_and_cached_apart(toy_run, tmp_path):
    out = tmp_path / "eval"
    paths, cells = evaluate(_plan(toy_run, out, baselines=("random",), tasks=("bad",), ns=(10,),
                                  balance_test=True))
    report = paths["report.md"].read_text()
    assert "Test split balanced within each desired class:" in report
    assert "Own heads, no fine-tuning (balanced test accuracy)" in report
    whole = json.loads(paths["leakage.json"].read_text())[-1]
    assert whole["n"] == "all" and whole["accuracy_mean"] == 0.5
    assert (out / "cache_balanced_test").is_dir() and not (out / "cache").exists()
    _, unbalanced = evaluate(_plan(toy_run, out, baselines=("random",), tasks=("bad",),
                                   ns=(10,)))
    assert [c.seeds[0].test for c in cells] != [c.seeds[0].test for c in unbalanced]


def test_cli_rejects_zero_repeats(toy_run, tmp_path, capsys):
    assert eval_cli.main(["--run-dir", str(toy_run), "--repeats", "0",
                          "--out", str(tmp_path / "eval")]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_attack_batch_sizes_default_to_the_runs_own(toy_run):
    assert run_batch_sizes(toy_run) == (4, 8)
    assert eval_cli.build_parser().parse_args(["--run-dir", "x"]).batch_sizes is None


def test_cli_rejects_an_unknown_schedule_in_one_line(toy_run, tmp_path, capsys):
    assert eval_cli.main(["--run-dir", str(toy_run), "--schedules", "constant,stepwise",
                          "--out", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err.strip()
    assert "unknown schedule 'stepwise'" in error and "\n" not in error
    assert not (tmp_path / "eval").exists()


def test_cli_rejects_a_non_positive_eval_interval_in_one_line(toy_run, tmp_path, capsys):
    assert eval_cli.main(["--run-dir", str(toy_run), "--eval-every", "0",
                          "--out", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err.strip()
    assert "eval_every=0" in error and "\n" not in error
    assert not (tmp_path / "eval").exists()


def test_the_demo_searches_are_command_lines():
    """README reruns the demo's attack searches with plain flags; they must hash to the demo's
    searches so its cached cells are reused."""
    from sdm_jax.app.eval_config import load_eval_settings
    from sdm_jax.demo import FULL_SEARCH, PROBE_SEARCH

    def search_of(flags):
        given = eval_cli.given_on_command_line(eval_cli.build_parser(), flags)
        return load_eval_settings(None, given).search_config()

    full = search_of(["--trials", "4", "--patience", "4", "--trials-per-batch", "4",
                      "--seeds", "3", "--lr-range", "1e-5,1e-3", "--steps", "100,100,100",
                      "--batch-sizes", "8,16", "--attack-modes", "full", "--eval-every", "25"])
    assert full.fingerprint() == FULL_SEARCH.fingerprint()
    probe = search_of(["--trials", "8", "--patience", "8", "--seeds", "5",
                       "--steps", "100,300,100", "--batch-sizes", "8,16",
                       "--attack-modes", "frozen"])
    assert probe.fingerprint() == PROBE_SEARCH.fingerprint()
    assert search_of(["--eval-every", "25"]).runner.eval_every == 25


def test_cli_defaults_are_the_eval_settings_defaults():
    from sdm_jax.app.eval_config import EvalSettings

    parser = eval_cli.build_parser()
    defaults = vars(parser.parse_args([]))
    settings = EvalSettings()
    for name, value in defaults.items():
        if name in eval_cli.NOT_SETTINGS:
            continue
        key = eval_cli.FLAG_KEYS.get(name, name)
        if key == "models":  # --model ID=LOCATION pairs collect in a list
            value = dict(pair.split("=", 1) for pair in value)
        assert value == getattr(settings, key), key


def test_an_evaluation_config_reproduces_itself_and_flags_override_it(toy_run, tmp_path):
    first_out = tmp_path / "first"
    config = tmp_path / "eval.yaml"
    config.write_text(f"eval:\n  run_dir: {toy_run}\n  tasks: [bad]\n  ns: [10]\n"
                      "  search: random\n  trials: 2\n  patience: 2\n  trials_per_batch: 2\n"
                      "  seeds: 2\n  steps: [20, 40, 20]\n  attack_modes: [full]\n"
                      f"  baselines: [random]\n  out: {first_out}\n")
    assert eval_cli.main(["--config", str(config), "--seeds", "1", "--no-progress"]) == 0
    resolved = first_out / "eval_config.yaml"
    text = resolved.read_text()
    assert "seeds: 1" in text and "batch_sizes:\n  - 4\n  - 8" in text
    first = json.loads((first_out / "results.json").read_text())
    again_out = tmp_path / "again"
    assert eval_cli.main(["--config", str(resolved), "--out", str(again_out),
                          "--no-progress"]) == 0
    again = json.loads((again_out / "results.json").read_text())
    assert again["summary"] == first["summary"]


def test_a_bad_evaluation_config_fails_in_one_line(toy_run, tmp_path, capsys):
    config = tmp_path / "eval.yaml"
    config.write_text(f"eval:\n  run_dir: {toy_run}\n  trails: 3\n")
    assert eval_cli.main(["--config", str(config)]) == 2
    assert "unknown key eval.trails (did you mean eval.trials?)" in capsys.readouterr().err
    config.write_text("eval:\n  seeds: many\n")
    assert eval_cli.main(["--config", str(config)]) == 2
    assert "eval.seeds: expected an integer" in capsys.readouterr().err
    config.write_text("eval:\n  seeds: 2\n")
    assert eval_cli.main(["--config", str(config)]) == 2
    assert "no run to evaluate" in capsys.readouterr().err
    config.write_text("train:\n  seed: 2\n")
    assert eval_cli.main(["--config", str(config)]) == 2
    assert "an evaluation config has one section, eval:" in capsys.readouterr().err
