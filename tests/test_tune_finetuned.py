"""The TPE-tuned 'finetuned' baseline on a shrunken toy run: trials, replay, the installed best."""

from __future__ import annotations

import json

import pytest

import train as train_cli
from sdm_jax.app.evaluation import run_config
from sdm_jax.app.tune_finetuned import FinetuneSpace, tune_finetuned
from sdm_jax.config import ConfigError, load_config

SMALL = [
    "model.kind=mlp", "model.mlp_width=16", "model.mlp_depth=2", "model.pretrain_steps=20",
    "toy.dim=6", "toy.n_train=256", "toy.n_val=64", "toy.n_test=64",
    "mlac.inner_steps=2", "mlac.batch_size_choices=[4, 8]", "train.eval_batches=1",
    "train.log_every=1",
]
SPACE = FinetuneSpace(lr_range=(1e-4, 1e-2), steps_range=(2, 6, 2), batch_sizes=(8, 16))


def test_trials_pick_the_lowest_validation_loss_and_install_it(tmp_path):
    run_dir = tmp_path / "finetuned"
    result = tune_finetuned(load_config(None, SMALL), run_dir, trials=3, space=SPACE)
    losses = [record["best_val_loss"] for record in result["trials"]]
    assert len(losses) == 3 and result["best"]["best_val_loss"] == min(losses)
    best = run_config(run_dir)
    assert best.mlac.inner_steps == 0 and best.mlac.l_linear_mi == 0
    assert best.train.outer_steps == result["best"]["params"]["outer_steps"]
    assert (run_dir / "export" / "model.json").is_file()
    assert json.loads((run_dir / "tuning.json").read_text())["best"] == result["best"]

    trial_summary = run_dir / "trials" / "trial_000" / "summary.json"
    written = trial_summary.stat().st_mtime_ns
    again = tune_finetuned(load_config(None, SMALL), run_dir, trials=3, space=SPACE)
    assert again["trials"] == result["trials"]
    assert trial_summary.stat().st_mtime_ns == written


def test_a_trial_of_another_tuning_is_refused(tmp_path):
    run_dir = tmp_path / "finetuned"
    tune_finetuned(load_config(None, SMALL), run_dir, trials=1, space=SPACE)
    with pytest.raises(ConfigError, match="trial of another tuning"):
        tune_finetuned(load_config(None, [*SMALL, "train.seed=5"]), run_dir, trials=1,
                       space=SPACE)


@pytest.mark.parametrize(("flags", "message"), [
    (["--tune-finetuned", "0"], "at least 1 trial"),
    (["--tune-finetuned", "2", "--tune-steps", "10,5,1"], "steps range"),
    (["--tune-finetuned", "2", "--tune-lr-range", "1e-3"], "--tune-lr-range LOW,HIGH"),
])
def test_cli_rejects_bad_tuning_flags(tmp_path, capsys, flags, message):
    argv = [*flags, "--run-dir", str(tmp_path / "ft"), "--no-progress", *SMALL]
    assert train_cli.main(argv) == 2
    assert message in capsys.readouterr().err
