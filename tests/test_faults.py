"""The fault catalogue: bad inputs and accidents a user meets, each with its exact message and
a check that nothing already on disk was lost (README, "What happens when…")."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from sdm_jax.app import training
from sdm_jax.app.model_kinds import load_tree_safetensors
from sdm_jax.app.training import TrainingError, load_run_state, train_and_evaluate
from sdm_jax.atomic import replace_directory
from sdm_jax.blocking import MLACSettings
from sdm_jax.checkpoint import RunCheckpoints
from sdm_jax.config import ConfigError
from sdm_jax.data.errors import DataError
from sdm_jax.models import CheckpointError, load_encoder
from sdm_jax.run_lock import RunInUseError, hold_run_lock
from tests.toy_runs import SMALL, small_config

ROOT = Path(__file__).resolve().parents[1]

FAULT_OVERRIDES = ("train.eval_every=2",)


def _config(*extra: str):
    return small_config(*FAULT_OVERRIDES, *extra)


def _checkpoint_dirs(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    return list(folder.iterdir()) if folder.is_dir() else []


def _train_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "--no-progress", *args],
                          capture_output=True, text=True, cwd=ROOT)


def _kept_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _validation_losses(monkeypatch, losses_by_step: dict[int, float]) -> None:
    """Validation reports ``losses_by_step[step]`` as its total loss (other metrics real)."""
    real_call = training._Validator.__call__

    def scripted(self, state):
        return {**real_call(self, state), "loss/total": losses_by_step[int(state.step)]}

    monkeypatch.setattr(training._Validator, "__call__", scripted)


def test_tied_validation_losses_keep_and_export_the_first_best(tmp_path: Path, monkeypatch):
    _validation_losses(monkeypatch, {2: 0.5, 4: 0.5, 6: 0.5})
    summary = train_and_evaluate(_config(), tmp_path, progress=False)
    assert summary["best_step"] == 2 and summary["export_step"] == 2
    assert _kept_steps(tmp_path) == [2, 6]
    assert (tmp_path / "export" / "params.safetensors").exists()


def test_the_best_checkpoint_survives_a_restart(tmp_path: Path):
    state = {"w": np.zeros(3, np.float32)}
    manager = RunCheckpoints(tmp_path, 1, "f", {})
    manager.save(2, state, {}, 0.4, best_step=2)
    manager.save(4, state, {}, 0.5, best_step=2)
    manager.close()
    resumed = RunCheckpoints(tmp_path, 1, "f", {})
    resumed.save(6, state, {}, 0.6, best_step=2)
    assert resumed.all_steps() == [2, 6] and resumed.best_step() == 2
    resumed.close()


def test_resumed_run_exports_its_best_checkpoint(tmp_path: Path, monkeypatch):
    _validation_losses(monkeypatch, {2: 0.4, 4: 0.5, 6: 0.6})
    train_and_evaluate(_config("train.stop_after=4"), tmp_path, progress=False)
    summary = train_and_evaluate(_config(), tmp_path, progress=False)
    assert summary["best_step"] == 2 and summary["export_step"] == 2
    assert _kept_steps(tmp_path) == [2, 6]


def test_export_last_exports_the_final_step_even_when_resumed(tmp_path: Path, monkeypatch):
    _validation_losses(monkeypatch, {2: 0.4, 4: 0.5, 6: 0.6})
    train_and_evaluate(_config("train.stop_after=4"), tmp_path, progress=False)
    summary = train_and_evaluate(_config("train.export=last"), tmp_path, progress=False)
    assert summary["best_step"] == 2 and summary["export_step"] == 6
    exported = jax.tree_util.tree_leaves(
        load_tree_safetensors(tmp_path / "export" / "params.safetensors"))
    for step, same in ((6, True), (2, False)):
        kept = load_run_state(_config(), tmp_path, step).params["backbone"]
        leaves = jax.tree_util.tree_leaves(kept)
        equal = [np.array_equal(a, b) for a, b in zip(exported, leaves, strict=True)]
        assert all(equal) if same else not all(equal)


def test_a_run_that_lost_its_best_still_exports_the_best_kept(tmp_path: Path, monkeypatch,
                                                               capsys):
    _validation_losses(monkeypatch, {2: 0.4, 4: 0.5, 6: 0.6})
    train_and_evaluate(_config("train.stop_after=4"), tmp_path, progress=False)
    # As a run written before the shared ranking could be: its best checkpoint deleted.
    manager = RunCheckpoints(tmp_path / "checkpoints", 1, "f", {})
    manager.manager.delete(2)
    manager.close()
    summary = train_and_evaluate(_config(), tmp_path, progress=False)
    assert summary["export_step"] == 4
    note = "the best checkpoint (step 2) was not kept; continuing from the best kept one (step 4)"
    assert note in capsys.readouterr().err


@pytest.mark.parametrize("bad_loss", [math.inf, math.nan])
def test_non_finite_validation_loss_stops_before_it_is_saved(tmp_path: Path, monkeypatch,
                                                             bad_loss):
    _validation_losses(monkeypatch, {2: 0.5, 4: bad_loss, 6: 0.5})
    with pytest.raises(TrainingError, match=r"^non-finite validation loss at step 4 \((inf|nan)"
                                            r"\); training stopped, last good checkpoint: step 2"):
        train_and_evaluate(_config(), tmp_path, progress=False)
    assert _kept_steps(tmp_path) == [2]
    assert not (tmp_path / "export").exists()


def test_active_row_overflow_between_logged_steps_stops_training(tmp_path: Path, monkeypatch):
    real_make = training.make_outer_step

    def overflowing_at_step_3(*args):
        step_fn = real_make(*args)

        class Overflowing:
            def __call__(self, state, meta_batch):
                overflow = int(state.step) + 1 == 3
                state, metrics = step_fn(state, meta_batch)
                return state, {**metrics, "active_rows_missing": jax.numpy.int32(5 * overflow)}

            trace_count = property(lambda self: step_fn.trace_count)

        return Overflowing()

    monkeypatch.setattr(training, "make_outer_step", overflowing_at_step_3)
    with pytest.raises(TrainingError) as error:
        train_and_evaluate(_config("train.log_every=2"), tmp_path, progress=False)
    assert str(error.value) == (
        "mlac.active_rows: 0 rows are too few for the batches of steps 3-4 (5 token occurrences "
        "did not fit, so those steps were inexact); raise it and re-run, last good checkpoint: "
        f"step 2 in {tmp_path / 'checkpoints'}")
    assert _kept_steps(tmp_path) == [2]


def test_a_corrupt_latest_checkpoint_is_set_aside_and_the_run_goes_on(tmp_path: Path, capsys):
    straight = train_and_evaluate(_config(), tmp_path / "straight", progress=False)
    run = tmp_path / "run"
    train_and_evaluate(_config("train.keep_checkpoints=2", "train.stop_after=4"), run,
                       progress=False)
    for chunk in (run / "checkpoints" / "4" / "state").rglob("d/*"):
        chunk.write_bytes(b"not an array")
    capsys.readouterr()
    resumed = train_and_evaluate(_config("train.keep_checkpoints=2"), run, progress=False)
    note = capsys.readouterr().err.splitlines()[0]
    assert note.startswith(f"note: {run / 'checkpoints' / '4'}: checkpoint is unreadable "
                           "(corrupt or incomplete; ")
    assert note.endswith("; moved it to 4.unreadable and going on from the checkpoint before it")
    assert resumed["resumed_from"] == 2 and (run / "checkpoints" / "4.unreadable").is_dir()
    assert resumed["best_val_loss"] == straight["best_val_loss"]
    assert ((run / "export" / "params.safetensors").read_bytes()
            == (tmp_path / "straight" / "export" / "params.safetensors").read_bytes())


def test_kill_9_at_an_arbitrary_step_resumes_to_the_same_parameters(tmp_path: Path):
    longer = ("train.outer_steps=300", "train.eval_every=100", "train.checkpoint_every=10",
              "train.log_every=10")
    straight = train_and_evaluate(_config(*longer), tmp_path / "straight", progress=False)
    run = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), "--no-progress", "--run-dir", str(run),
               *SMALL, *FAULT_OVERRIDES, *longer]
    victim = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while victim.poll() is None and not any(p.name.isdigit() for p in _checkpoint_dirs(run)):
        time.sleep(0.02)
    victim.kill()
    assert victim.wait() == -9, "the run ended before it could be killed"
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    assert ((run / "export" / "params.safetensors").read_bytes()
            == (tmp_path / "straight" / "export" / "params.safetensors").read_bytes())
    assert json.loads((run / "summary.json").read_text())["best_step"] == straight["best_step"]


def test_model_without_tokenizer_files_is_refused(tmp_path: Path):
    source = Path(__file__).parent / "fixtures" / "tiny_bert"
    target = tmp_path / "weights_only"
    target.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, target / name)
    with pytest.raises(CheckpointError) as error:
        load_encoder(target)
    assert str(error.value) == (f"{target}: no tokenizer files (tokenizer.json or vocab.txt); "
                                "copy them from the model these weights came from")


def test_a_second_training_in_a_live_run_is_refused(tmp_path: Path):
    with hold_run_lock(tmp_path):
        with pytest.raises(RunInUseError) as error:
            train_and_evaluate(_config(), tmp_path, progress=False)
    assert re.fullmatch(rf"{tmp_path}: in use by pid {os.getpid()} on {socket.gethostname()} "
                        r"\(since [0-9: -]+\); wait for it to finish or use another run "
                        r"directory", str(error.value))
    assert not (tmp_path / "checkpoints").exists()


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path: Path):
    owner = subprocess.run(
        [sys.executable, "-c", "import sys; from sdm_jax.run_lock import hold_run_lock\n"
         "with hold_run_lock(sys.argv[1]): import os; os._exit(9)", str(tmp_path)],
        cwd=ROOT)
    assert owner.returncode == 9 and (tmp_path / ".lock").exists()
    summary = train_and_evaluate(_config("train.stop_after=2"), tmp_path, progress=False)
    assert summary["final_step"] == 2


def test_run_dir_that_is_a_file(tmp_path: Path):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    with pytest.raises(ConfigError, match=rf"^run directory {afile} is a file; name a directory"):
        train_and_evaluate(_config(), afile, progress=False)
    assert afile.read_text() == "keep me"


def test_more_data_devices_than_visible(tmp_path: Path):
    wanted = jax.device_count() + 3
    with pytest.raises(ConfigError) as error:
        train_and_evaluate(_config(f"parallel.data_devices={wanted}"), tmp_path, progress=False)
    assert str(error.value) == (f"parallel.data_devices: {wanted} requested, "
                                f"{jax.device_count()} visible ({jax.devices()[0].platform}); "
                                f"use at most {jax.device_count()}")


def test_batch_larger_than_the_training_split(tmp_path: Path):
    with pytest.raises(DataError) as error:
        train_and_evaluate(_config("train.batch_size=300"), tmp_path, progress=False)
    assert str(error.value) == ("train.batch_size: a batch of 300 is larger than split 'train' "
                                "(256 examples); use at most 256")


@pytest.mark.parametrize(("override", "message"), [
    ("mlac.outer_lr=.nan", "error: mlac.outer_lr: expected a finite number, got nan"),
    ("mlac.outer_lr=.inf", "error: mlac.outer_lr: expected a finite number, got inf"),
    ("train.outer_steps=0", "error: train.outer_steps: must be > 0, got 0"),
])
def test_bad_values_are_one_line_before_any_work(tmp_path: Path, override, message):
    result = _train_cli("--config", str(ROOT / "configs" / "toy.yaml"), "--run-dir",
                        str(tmp_path / "run"), override)
    assert (result.returncode, result.stderr.strip()) == (2, message)
    assert not (tmp_path / "run").exists()


def test_overrides_may_come_on_both_sides_of_the_options(tmp_path: Path):
    result = _train_cli("train.seed=3", "--config", str(ROOT / "configs" / "toy.yaml"),
                        "--run-dir", str(tmp_path / "run"), "mlac.outer_lr=.nan")
    assert (result.returncode, result.stderr.strip()) == (
        2, "error: mlac.outer_lr: expected a finite number, got nan")


def test_rerun_of_a_finished_run_keeps_its_training_figures(tmp_path: Path):
    first = train_and_evaluate(_config(), tmp_path, progress=False)
    again = train_and_evaluate(_config(), tmp_path, progress=False)
    for key in ("last_train_metrics", "first_step_s", "steps_per_s", "final_validation"):
        assert again[key] == first[key] and first[key], key
    assert json.loads((tmp_path / "summary.json").read_text())["final_validation"] == \
        first["final_validation"]


def test_export_left_half_built_by_a_kill_is_cleaned_up(tmp_path: Path):
    summary = train_and_evaluate(_config(), tmp_path, progress=False)
    exported = {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()}
    (tmp_path / ".export.partial").mkdir()
    (tmp_path / ".export.partial" / "params.safetensors").write_bytes(b"half")
    again = train_and_evaluate(_config(), tmp_path, progress=False)
    assert again["export_step"] == summary["export_step"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()} == exported
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".export")) == []


def test_directory_swap_survives_a_failed_build_and_a_kill_between_renames(tmp_path: Path):
    target = tmp_path / "export"
    replace_directory(target, lambda d: (d / "a.txt").write_text("one"))

    def fails(staging: Path):
        (staging / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_directory(target, fails)
    assert (target / "a.txt").read_text() == "one"
    target.rename(tmp_path / ".export.old")  # killed after moving the old one aside
    replace_directory(target, lambda d: (d / "a.txt").write_text("two"))
    assert (target / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_all_loss_weights_zero_is_refused():
    zero = [f"mlac.{f.name}=0" for f in dataclasses.fields(MLACSettings)
            if f.name.startswith("l_")]
    with pytest.raises(ConfigError) as error:
        _config(*zero)
    assert str(error.value) == ("mlac: every loss weight (mlac.l_*) is 0, so training would "
                                "change nothing; set at least one, e.g. mlac.l_good_base=1")


def test_empty_config_file_is_refused(tmp_path: Path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    result = _train_cli("--config", str(empty), "--run-dir", str(tmp_path / "run"))
    assert (result.returncode, result.stderr.strip()) == (
        2, f"error: {empty}: the config file is empty; to run on the defaults, leave out --config")
