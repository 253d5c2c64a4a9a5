"""Hyperparameter search for one attack cell (model, task, n), then the chosen setting's seeds.

The search asks Optuna (TPE, or random sampling) for a batch of trials, runs them vectorised,
and tells the results back. A trial's value is its best validation accuracy; the test split is
never used for a choice. The stopping rules are checked after each batch, trial by trial in the
order asked: stop at ``target_accuracy``, or after ``patience`` trials without improvement, or at
``max_trials``. The chosen setting is then run with ``num_seeds`` fresh seeds and scored on test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna

from sdm_jax.attacks.problem import AttackProblem, AttackTarget, validate_problem
from sdm_jax.attacks.runner import RunnerConfig, RunResult, run_attacks
from sdm_jax.attacks.settings import ATTACK_MODES, AttackSetting, validate_settings

SEARCH_METHODS = ("tpe", "random")
# Runner fields that only shape how runs are executed, not what they compute.
_EXECUTION_ONLY = ("max_parallel", "eval_batch_size", "max_examples", "vectorise_backbone")


@dataclass(frozen=True)
class SearchSpace:
    """The reference's space by default: lr log-uniform, steps 100..1000 by 100, batch from a
    set, frozen base or full fine-tuning, Adam with a constant learning rate.

    ``modes`` are :data:`~sdm_jax.attacks.settings.ATTACK_MODES`; a trial that picks ``lora``
    also picks its rank, alpha and target groups (``+``-joined backbone group names) from
    ``lora_ranks``, ``lora_alphas`` and ``lora_targets``; other trials do not sample them.
    Every trial picks one of ``compressions`` (``none``: the model as released)."""

    lr_range: tuple[float, float] = (1e-5, 1e-2)
    steps_range: tuple[int, int, int] = (100, 1000, 100)
    batch_sizes: tuple[int, ...] = (8, 16, 32)
    modes: tuple[str, ...] = ("full", "frozen")
    optimizers: tuple[str, ...] = ("adam",)
    schedules: tuple[str, ...] = ("constant",)
    lora_ranks: tuple[int, ...] = (4, 16)
    lora_alphas: tuple[float, ...] = (8.0, 16.0, 32.0)
    lora_targets: tuple[str, ...] = ("attention", "attention+ffn")
    compressions: tuple[str, ...] = ("none",)

    def validate(self) -> None:
        low, high = self.lr_range
        first, last, stride = self.steps_range
        if not 0 < low <= high:
            raise ValueError(f"search lr_range must satisfy 0 < low <= high, got {self.lr_range}")
        if not 0 < first <= last or stride <= 0:
            raise ValueError(f"search steps_range (first, last, stride) is bad: {self.steps_range}")
        choices = (self.batch_sizes, self.modes, self.optimizers, self.schedules,
                   self.compressions)
        if not all(choices):
            raise ValueError("search space has an empty choice list")
        unknown = [mode for mode in self.modes if mode not in ATTACK_MODES]
        if unknown:
            raise ValueError(f"unknown attack mode {unknown[0]!r}; choose from {ATTACK_MODES}")
        lora_choices = self.lora_ranks and self.lora_alphas and self.lora_targets
        if "lora" in self.modes and not lora_choices:
            raise ValueError("search space has lora among its modes but no LoRA rank, alpha or "
                             "target choices")
        validate_settings(
            AttackSetting(lr=low, steps=first, batch_size=b, optimizer=o, schedule=s,
                          compression=c)
            for b in self.batch_sizes
            for c in self.compressions
            for o in self.optimizers
            for s in self.schedules
        )
        if "lora" in self.modes:
            validate_settings(
                AttackSetting(adapter="lora", lora_rank=rank, lora_alpha=alpha)
                for rank in self.lora_ranks
                for alpha in self.lora_alphas
            )


@dataclass(frozen=True)
class SearchConfig:
    """``trials_per_batch`` trials are asked at once and run in one vectorised call.
    ``resample_examples``: each final seed also draws its own ``n`` attacker examples (otherwise
    all seeds share the search's examples, drawn with ``seed``). ``seed_every_family``: also
    rerun the best setting of every other attack family searched with the seeds, so each family
    gets test figures (``CellResult.family_seeds``)."""

    method: str = "tpe"
    max_trials: int = 50
    patience: int = 15
    target_accuracy: float = 0.99
    trials_per_batch: int = 8
    num_seeds: int = 15
    seed: int = 0
    resample_examples: bool = True
    seed_every_family: bool = False
    space: SearchSpace = field(default_factory=SearchSpace)
    runner: RunnerConfig = field(default_factory=RunnerConfig)

    def validate(self) -> None:
        if self.method not in SEARCH_METHODS:
            raise ValueError(f"unknown search method {self.method!r}; choose {SEARCH_METHODS}")
        if min(self.max_trials, self.patience, self.trials_per_batch, self.num_seeds) <= 0:
            raise ValueError(
                "max_trials, patience, trials_per_batch and num_seeds must be positive"
            )
        self.space.validate()

    def fingerprint(self) -> str:
        """A hash of everything that changes results (execution-only knobs left out)."""
        described = dataclasses.asdict(self)
        for name in _EXECUTION_ONLY:
            described["runner"].pop(name)
        text = json.dumps(described, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CellResult:
    """A searched cell: every trial (validation only), the chosen setting, and its seeds (with
    test metrics at each seed's best validation step); ``family_seeds`` the same for the best
    setting of each other attack family, when every family was seeded."""

    model_id: str
    task: str
    n: int
    trials: list[RunResult]
    chosen: AttackSetting
    seeds: list[RunResult]
    stopped_because: str
    family_seeds: dict[str, list[RunResult]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model_id": self.model_id,
            "task": self.task,
            "n": self.n,
            "trials": [r.to_dict() for r in self.trials],
            "chosen": self.chosen.to_dict(),
            "seeds": [r.to_dict() for r in self.seeds],
            "stopped_because": self.stopped_because,
            "family_seeds": {family: [r.to_dict() for r in runs]
                             for family, runs in self.family_seeds.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> CellResult:
        return cls(
            model_id=data["model_id"],
            task=data["task"],
            n=int(data["n"]),
            trials=[RunResult.from_dict(r) for r in data["trials"]],
            chosen=AttackSetting(**data["chosen"]),
            seeds=[RunResult.from_dict(r) for r in data["seeds"]],
            stopped_because=data["stopped_because"],
            family_seeds={family: [RunResult.from_dict(r) for r in runs]
                          for family, runs in data.get("family_seeds", {}).items()},
        )


def _sampler(config: SearchConfig) -> optuna.samplers.BaseSampler:
    if config.method == "random":
        return optuna.samplers.RandomSampler(seed=config.seed)
    # constant_liar keeps the trials of one batch apart while their values are pending.
    return optuna.samplers.TPESampler(seed=config.seed, constant_liar=True)


def _suggest(trial: optuna.Trial, space: SearchSpace, seed: int) -> AttackSetting:
    first, last, stride = space.steps_range
    lr = trial.suggest_float("lr", *space.lr_range, log=True)
    steps = trial.suggest_int("steps", first, last, step=stride)
    batch_size = trial.suggest_categorical("batch_size", list(space.batch_sizes))
    mode = trial.suggest_categorical("mode", list(space.modes))
    optimizer = trial.suggest_categorical("optimizer", list(space.optimizers))
    schedule = trial.suggest_categorical("schedule", list(space.schedules))
    compression = trial.suggest_categorical("compression", list(space.compressions))
    lora = {}
    if mode == "lora":
        lora = {
            "lora_rank": trial.suggest_categorical("lora_rank", list(space.lora_ranks)),
            "lora_alpha": trial.suggest_categorical("lora_alpha", list(space.lora_alphas)),
            "lora_targets": trial.suggest_categorical("lora_targets", list(space.lora_targets)),
        }
    return AttackSetting(
        lr=lr,
        steps=steps,
        batch_size=batch_size,
        frozen_base=mode == "frozen",
        adapter=mode if mode in ("bitfit", "lora") else "none",
        optimizer=optimizer,
        schedule=schedule,
        compression=compression,
        seed=seed,
        data_seed=seed,
        **lora,
    )


def final_seeds(config: SearchConfig) -> list[int]:
    """The final runs' seeds, the search's own first (0-14 for the defaults, as the reference
    reruns its chosen setting)."""
    return [config.seed + i for i in range(config.num_seeds)]


def final_data_seeds(config: SearchConfig) -> list[int]:
    """Which ``n`` attacker examples each final run draws (its ``data_seed``)."""
    return [s if config.resample_examples else config.seed for s in final_seeds(config)]


def seed_settings(chosen: AttackSetting, config: SearchConfig) -> list[AttackSetting]:
    """The chosen setting with each of the final seeds and its examples."""
    return [
        dataclasses.replace(chosen, seed=s, data_seed=d)
        for s, d in zip(final_seeds(config), final_data_seeds(config), strict=True)
    ]


def search_cell(
    target: AttackTarget,
    problem: AttackProblem,
    config: SearchConfig = SearchConfig(),
    on_runs_done: Callable[[int], None] | None = None,
) -> CellResult:
    """Search attack hyperparameters on ``problem.val``, then run the chosen setting's seeds and
    score them on ``problem.test`` (required)."""
    config.validate()
    validate_problem(target, problem)
    if problem.test is None:
        raise ValueError("search_cell needs a test split to report the chosen setting on")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=_sampler(config))
    space = config.space
    runner = dataclasses.replace(
        config.runner, max_steps=space.steps_range[1], max_batch_size=max(space.batch_sizes)
    )
    selection_problem = dataclasses.replace(problem, test=None)

    trials: list[RunResult] = []
    best_accuracy, since_best, stopped_because = -1.0, 0, "max trials"
    while len(trials) < config.max_trials and stopped_because == "max trials":
        count = min(config.trials_per_batch, config.max_trials - len(trials))
        asked = [study.ask() for _ in range(count)]
        settings = [_suggest(trial, space, config.seed) for trial in asked]
        results = run_attacks(target, selection_problem, settings, runner, on_runs_done)
        for trial, result in zip(asked, results, strict=True):
            study.tell(trial, result.val["accuracy"])
        trials.extend(results)
        for result in results:
            accuracy = result.val["accuracy"]
            since_best = 0 if accuracy > best_accuracy else since_best + 1
            best_accuracy = max(best_accuracy, accuracy)
        if best_accuracy >= config.target_accuracy:
            stopped_because = "target accuracy"
        elif since_best >= config.patience:
            stopped_because = "patience"

    # The earliest trial among the best wins ties, so the choice does not depend on Optuna.
    chosen = max(trials, key=lambda r: r.val["accuracy"]).setting
    family_seeds = {}
    if config.seed_every_family:
        best: dict[str, AttackSetting] = {}
        for run in sorted(trials, key=lambda r: -r.val["accuracy"]):
            best.setdefault(run.setting.attack_family, run.setting)
        others = [s for family, s in best.items() if family != chosen.attack_family]
        if others:
            others_runner = dataclasses.replace(
                runner, max_steps=max(s.steps for s in others),
                max_batch_size=max(s.batch_size for s in others),
            )
            runs = run_attacks(target, problem,
                               [r for s in others for r in seed_settings(s, config)],
                               others_runner, on_runs_done)
            family_seeds = {s.attack_family: runs[i * config.num_seeds:(i + 1) * config.num_seeds]
                            for i, s in enumerate(others)}
    final_runner = dataclasses.replace(
        runner, max_steps=chosen.steps, max_batch_size=chosen.batch_size
    )
    seeds = run_attacks(target, problem, seed_settings(chosen, config), final_runner, on_runs_done)
    return CellResult(
        model_id=target.model_id,
        task=problem.task,
        n=problem.n,
        trials=trials,
        chosen=chosen,
        seeds=seeds,
        stopped_because=stopped_because,
        family_seeds=family_seeds,
    )
