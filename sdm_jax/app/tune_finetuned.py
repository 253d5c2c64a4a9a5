"""The ``finetuned`` baseline tuned as the reference tunes it: a TPE search over the
desired-task fine-tune's learning rate, step count and batch size, scored on val1.

Every trial is an ordinary training run of the blocked run's config with the blocking terms
switched off (K=0, no linear-MI and no gradient-norm term, so only the profession loss is
trained), in ``RUN_DIR/trials/trial_NNN``. The score is the trial's best validation loss (the
checkpoint its export holds). The search replays deterministically from the trials on disk, so
an interrupted tuning resumes. The best trial's ``config.yaml``, ``summary.json`` and ``export/``
are copied to ``RUN_DIR``, which ``eval.py --model finetuned=RUN_DIR`` then reads like any run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna

from sdm_jax.atomic import replace_directory, write_json_atomic, write_text_atomic
from sdm_jax.config import (
    Config,
    ConfigError,
    apply_overrides,
    build_config,
    config_to_dict,
    config_to_yaml,
)

FINETUNE_OVERRIDES = ("mlac.inner_steps=0", "mlac.l_linear_mi=0", "mlac.l_bad_adapted_grad=0")
TUNING_FILE = "tuning.json"


@dataclass(frozen=True)
class FinetuneSpace:
    """Log-uniform outer lr, outer steps from ``first..last`` by ``stride``, a batch size."""

    lr_range: tuple[float, float] = (1e-5, 1e-3)
    steps_range: tuple[int, int, int] = (100, 1000, 100)
    batch_sizes: tuple[int, ...] = (8, 16, 32)

    def validate(self) -> None:
        low, high = self.lr_range
        first, last, stride = self.steps_range
        if not 0 < low <= high:
            raise ConfigError(f"finetune lr range must satisfy 0 < low <= high, "
                              f"got {self.lr_range}")
        if not 0 < first <= last or stride <= 0:
            raise ConfigError(f"finetune steps range (first, last, stride) is bad: "
                              f"{self.steps_range}")
        if not self.batch_sizes or min(self.batch_sizes) <= 0:
            raise ConfigError(f"finetune batch sizes must be positive, got {self.batch_sizes}")


def trial_overrides(trial: optuna.trial.BaseTrial, space: FinetuneSpace) -> list[str]:
    first, last, stride = space.steps_range
    lr = trial.suggest_float("outer_lr", *space.lr_range, log=True)
    steps = trial.suggest_int("outer_steps", first, last, step=stride)
    batch = trial.suggest_categorical("batch_size", list(space.batch_sizes))
    return [*FINETUNE_OVERRIDES, f"mlac.outer_lr={lr!r}", f"train.outer_steps={steps}",
            f"train.batch_size={batch}", f"train.eval_every={min(steps, 100)}",
            f"train.checkpoint_every={min(steps, 100)}", "train.stop_after=null"]


def trial_config(config: Config, overrides: Sequence[str], run_dir: Path) -> Config:
    tree = apply_overrides(config_to_dict(config), [*overrides, f"train.run_dir={run_dir}"])
    return build_config(tree)


def _finished_summary(run_dir: Path, config: Config) -> dict | None:
    saved, summary = run_dir / "config.yaml", run_dir / "summary.json"
    if not summary.is_file():
        return None
    if saved.read_text() != config_to_yaml(config):
        raise ConfigError(f"{run_dir} holds a trial of another tuning; remove it or choose "
                          "another run directory")
    result = json.loads(summary.read_text())
    return None if result["stopped_early"] else result


def _install_best(run_dir: Path, best: Path) -> None:
    """Copy the best trial next to the trials; the export is swapped in by rename."""
    replace_directory(run_dir / "export",
                      lambda staging: shutil.copytree(best / "export", staging,
                                                      dirs_exist_ok=True))
    for name in ("config.yaml", "summary.json"):
        write_text_atomic(run_dir / name, (best / name).read_text())


def tune_finetuned(
    config: Config,
    run_dir: str | Path,
    trials: int,
    space: FinetuneSpace = FinetuneSpace(),
    seed: int = 0,
    progress: bool | None = None,
) -> dict:
    """Run (or resume) ``trials`` TPE trials; return and write ``RUN_DIR/tuning.json``."""
    from sdm_jax.app.training import train_and_evaluate

    if trials < 1:
        raise ConfigError(f"--tune-finetuned needs at least 1 trial, got {trials}")
    space.validate()
    run_dir = Path(run_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    records = []
    for index in range(trials):
        trial = study.ask()
        overrides = trial_overrides(trial, space)
        trial_dir = run_dir / "trials" / f"trial_{index:03d}"
        trial_cfg = trial_config(config, overrides, trial_dir)
        summary = _finished_summary(trial_dir, trial_cfg)
        if summary is None:
            print(f"[finetune trial {index + 1}/{trials}] {' '.join(overrides[3:6])}")
            summary = train_and_evaluate(trial_cfg, trial_dir, progress=progress)
        score = summary["best_val_loss"]
        study.tell(trial, score)
        records.append({"trial": index, "run_dir": str(trial_dir), "params": trial.params,
                        "best_val_loss": score, "best_step": summary["best_step"]})
    best = min(records, key=lambda record: record["best_val_loss"])
    _install_best(run_dir, Path(best["run_dir"]))
    result = {"best": best, "trials": records, "space": {
        "lr_range": list(space.lr_range), "steps_range": list(space.steps_range),
        "batch_sizes": list(space.batch_sizes)}, "seed": seed}
    write_json_atomic(run_dir / TUNING_FILE, result)
    return result
