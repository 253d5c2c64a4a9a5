"""The fault catalogue: bad inputs and accidents a user meets, each with its exact message and
a check that nothing already on disk was lost (README, "What happens when…")."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sdm_jax import train_loop
from sdm_jax.checkpoint import RunCheckpoints
from sdm_jax.config import load_config
from sdm_jax.train_loop import TrainingError, train_and_evaluate

SMALL = [
    "model.kind=mlp", "model.mlp_width=16", "model.mlp_depth=2",
    "toy.dim=6", "toy.n_train=256", "toy.n_val=48", "toy.n_test=32",
    "mlac.inner_steps=2", "mlac.batch_size_choices=[4, 8]", "mlac.linear_mi_iterations=5",
    "mlac.outer_lr=1e-2",
    "train.batch_size=16", "train.outer_steps=6", "train.eval_every=2", "train.eval_batches=2",
    "train.checkpoint_every=2", "train.log_every=1", "train.keep_checkpoints=1",
]


def _config(*extra: str):
    return load_config(None, SMALL + list(extra))


def _kept_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _validation_losses(monkeypatch, losses_by_step: dict[int, float]) -> None:
    """Validation reports ``losses_by_step[step]`` as its total loss (other metrics real)."""
    real_call = train_loop._Validator.__call__

    def scripted(self, state):
        return {**real_call(self, state), "loss/total": losses_by_step[int(state.step)]}

    monkeypatch.setattr(train_loop._Validator, "__call__", scripted)


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
