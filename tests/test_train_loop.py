"""End-to-end training on a shrunken toy config: outputs, resume equality, non-finite stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdm_jax.app import training
from sdm_jax.app.training import TrainingError, load_run_state, train_and_evaluate
from sdm_jax.checkpoint import read_jsonl
from sdm_jax.config import ConfigError, load_config
from sdm_jax.model_card import model_card
from tests.toy_runs import small_config

ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted run, shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("straight")
    return run_dir, train_and_evaluate(small_config(), run_dir, progress=False)


def test_end_to_end_outputs(straight_run):
    tmp_path, summary = straight_run
    assert summary["final_step"] == 6 and not summary["stopped_early"]
    assert summary["compilations"] == 1
    records = read_jsonl(tmp_path / "metrics.jsonl")
    validation = {r["step"]: r["val/loss/total"] for r in records if r["kind"] == "validation"}
    assert summary["best_step"] == min(validation, key=lambda step: (validation[step], step))
    assert summary["best_val_loss"] == pytest.approx(min(validation.values()))
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    for key in ("term/good_base", "term/linear_mi", "term/bad_adapted_grad", "acc/good_base",
                "grad_norm", "meta/inner_lr", "step_time_s", "compilations"):
        assert all(np.isfinite(r[key]) for r in train), key
    assert [r["step"] for r in records if r["kind"] == "validation"] == [3, 6]
    # kept: the latest checkpoint plus the best by validation loss
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == sorted({6, summary["best_step"]})
    assert load_config(tmp_path / "config.yaml") == small_config()
    export = tmp_path / "export"
    assert {p.name for p in export.iterdir()} >= {"params.safetensors", "heads.safetensors",
                                                   "labels.json", "model.json"}
    assert json.loads((export / "labels.json").read_text())["bad"] == ["negative", "positive"]
    assert json.loads((tmp_path / "summary.json").read_text())["final_step"] == 6


def test_resume_ends_where_an_uninterrupted_run_ends(straight_run, tmp_path: Path):
    stopped = train_and_evaluate(small_config("train.stop_after=3"), tmp_path / "resumed",
                                 progress=False)
    assert stopped["stopped_early"] and stopped["final_step"] == 3
    resumed = train_and_evaluate(small_config(), tmp_path / "resumed", progress=False)
    assert resumed["resumed_from"] == 3 and resumed["final_step"] == 6
    straight = load_run_state(small_config(), straight_run[0])
    again = load_run_state(small_config(), tmp_path / "resumed")
    pairs = jax.tree.leaves(jax.tree.map(lambda a, b: (np.asarray(a), np.asarray(b)),
                                         straight, again))
    for a, b in zip(pairs[::2], pairs[1::2], strict=True):
        np.testing.assert_array_equal(a, b)
    steps = [r["step"] for r in read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
             if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_a_changedsmall_config(tmp_path: Path):
    train_and_evaluate(small_config("train.stop_after=2"), tmp_path, progress=False)
    saved_config = (tmp_path / "config.yaml").read_bytes()
    with pytest.raises(ValueError, match=r"different config \(mlac.inner_steps: 2 -> 3\)"):
        train_and_evaluate(small_config("mlac.inner_steps=3"), tmp_path, progress=False)
    assert (tmp_path / "config.yaml").read_bytes() == saved_config


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, monkeypatch):
    real_make = training.make_outer_step

    class PoisonedAfterStep4:
        """The real step, but its loss turns NaN from step 5 on."""

        def __init__(self, *args):
            self.step = real_make(*args)

        @property
        def trace_count(self):
            return self.step.trace_count

        def __call__(self, state, meta_batch):
            state, metrics = self.step(state, meta_batch)
            if int(state.step) >= 5:
                metrics = {**metrics, "loss/total": metrics["loss/total"] * np.nan}
            return state, metrics

    monkeypatch.setattr(training, "make_outer_step", PoisonedAfterStep4)
    with pytest.raises(TrainingError, match="non-finite loss/total at step 5 .* last good "
                                            "checkpoint: step 4"):
        train_and_evaluate(small_config(), tmp_path, progress=False)
    kept = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert max(kept) == 4
    assert not (tmp_path / "export").exists()


def test_cli_help_and_bad_key(tmp_path: Path):
    help_text = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--run-dir" in help_text and "section.key=value" in help_text
    bad = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config",
                          str(ROOT / "configs" / "toy.yaml"), "train.lr=1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: unknown key train.lr (did you mean mlac.meta_lr or "
                                  "mlac.outer_lr?)")


def test_fresh_validation_draws_new_batches_each_time_reproducibly():
    from sdm_jax.app.task import prepare_task
    from sdm_jax.app.training import _Validator

    config = small_config("train.validation=fresh", "train.eval_batches=3")
    validator = _Validator(prepare_task(config), config)
    first, first_keys = validator._draw(3)
    again, _ = validator._draw(3)
    later, later_keys = validator._draw(6)
    assert len(first) == 3
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["outer"]["x"], b["outer"]["x"])
    assert not np.array_equal(first[0]["outer"]["x"], later[0]["outer"]["x"])
    assert not np.array_equal(first[0]["inner"]["x"], later[0]["inner"]["x"])
    assert not np.array_equal(np.asarray(first_keys[0]), np.asarray(later_keys[0]))
    fixed = _Validator(prepare_task(small_config()), small_config())
    assert fixed._draw(3)[0][0]["outer"]["x"].tolist() == fixed.batches[0]["outer"]["x"].tolist()


def test_unknown_validation_mode_is_one_line():
    with pytest.raises(ConfigError,
                       match="^train.validation: must be one of fixed, fresh, got 'sometimes'$"):
        small_config("train.validation=sometimes")


def test_unknown_export_rule_is_one_line():
    with pytest.raises(ConfigError, match="^train.export: must be one of best, last, got 'final'$"):
        small_config("train.export=final")


@pytest.mark.parametrize("rule, says", [("best", "the best validation loss kept"),
                                         ("last", "the run's last step")])
def test_the_model_card_names_the_export_rule(rule, says):
    card = model_card(small_config(f"train.export={rule}"), ["nurse", "surgeon"], ["f", "m"], 6,
                      ("BertModel", "BertForSequenceClassification"))
    assert f"exported at step 6 ({says})." in card


def test_loop_state_keeps_the_lowest_loss_and_the_earlier_step_on_ties():
    loop = training.LoopState()
    assert loop.best_val_loss is None
    for loss, step in ((0.5, 3), (0.7, 6), (0.5, 9), (0.2, 12)):
        loop.consider(loss, step)
        if step == 9:
            assert (loop.best_loss, loop.best_step) == (0.5, 3)
    assert (loop.best_val_loss, loop.best_step) == (0.2, 12)


def test_step_timer_separates_the_compiling_step_from_the_laps(monkeypatch):
    clock = iter([0.0, 5.0, 5.0, 11.0, 11.0])
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    timer = training._StepTimer()  # starts at 0
    timer.stepped({})  # the first step compiles: done at 5
    timer.stepped({})
    timer.stepped({})
    assert timer.lap() == 3.0  # two steps in 5 .. 11
    assert timer.figures() == {"first_step_s": 5.0, "steps_per_s": pytest.approx(2 / 6)}


class _NoCheckpoints:
    directory = Path("nowhere")

    def latest_step(self):
        return None


def test_guard_names_what_broke_and_when():
    settings = load_config(ROOT / "configs" / "toy.yaml").mlac
    guard = training._Guard(_NoCheckpoints(), settings, start=0)
    finite = SimpleNamespace(params={"w": jnp.ones(2)})
    guard.stepped({"active_rows_missing": jnp.int32(0)})
    guard.check_logged(2, {"loss/total": 1.0}, finite, saving=True)
    with pytest.raises(TrainingError, match=r"non-finite grad_norm at step 4 .*no checkpoint"):
        guard.check_logged(4, {"loss/total": 1.0, "grad_norm": float("nan")}, finite, False)
    broken = SimpleNamespace(params={"w": jnp.array([1.0, jnp.nan])})
    guard.check_logged(5, {"loss/total": 1.0}, broken, saving=False)  # params checked on saves
    with pytest.raises(TrainingError, match="non-finite params at step 6"):
        guard.check_logged(6, {"loss/total": 1.0}, broken, saving=True)
    with pytest.raises(TrainingError, match="non-finite validation loss at step 6"):
        guard.check_validation(6, {"loss/total": float("inf")})
    guard.stepped({"active_rows_missing": jnp.int32(3)})
    with pytest.raises(TrainingError, match=r"too few for the batches of steps 7-8 \(3 token"):
        guard.check_logged(8, {"loss/total": 1.0}, finite, saving=False)
