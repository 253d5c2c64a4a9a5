"""An evaluation as a config: the ``eval:`` section of a YAML file, ``eval.py``'s flags over it,
and the resolved copy written beside ``results.json`` so a report can be reproduced from its
own folder (``python eval.py --config OUT/eval_config.yaml``).

Every key is one ``eval.py`` flag (``--trials-per-batch`` is ``trials_per_batch``), except
``models``, a mapping of model id to location where the command line repeats ``--model
ID=LOCATION``. Lists are YAML lists; ``steps`` is ``[first, last, stride]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdm_jax.attacks import RunnerConfig, SearchConfig, SearchSpace
from sdm_jax.config import ConfigError, coerce_value, read_yaml

SECTION = "eval"
RESOLVED_FILE = "eval_config.yaml"


@dataclass(frozen=True)
class EvalSettings:
    """What ``eval.py`` attacks and how (see ``python eval.py --help`` for each key)."""

    run_dir: str | None = None
    models: dict[str, str] = field(default_factory=dict)
    baselines: tuple[str, ...] = ("pretrained", "random")
    tasks: tuple[str, ...] = ("bad", "good")
    ns: tuple[int, ...] = (20, 50, 100, 200)
    search: str = "tpe"
    trials: int = 50
    patience: int = 15
    trials_per_batch: int = 8
    seeds: int = 15
    steps: tuple[int, ...] = (100, 1000, 100)
    lr_range: tuple[float, ...] = (1e-5, 1e-2)
    batch_sizes: tuple[int, ...] | None = None
    attack_modes: tuple[str, ...] = ("full", "frozen")
    lora_ranks: tuple[int, ...] = (4, 16)
    lora_alphas: tuple[float, ...] = (8.0, 16.0, 32.0)
    lora_targets: tuple[str, ...] = ("attention", "attention+ffn")
    compressions: tuple[str, ...] = ("none",)
    seed_every_family: bool = False
    optimizers: tuple[str, ...] = ("adam",)
    schedules: tuple[str, ...] = ("constant",)
    eval_every: int = 50
    max_parallel: int = 32
    vectorise_backbone: str = "auto"
    seed: int = 0
    repeats: int = 1
    balance_test: bool = False
    out: str | None = None

    def search_config(self) -> SearchConfig:
        if len(self.steps) != 3:
            raise ValueError(f"steps expects first, last, stride; got {list(self.steps)}")
        if len(self.lr_range) != 2:
            raise ValueError(f"lr_range expects low, high; got {list(self.lr_range)}")
        space = SearchSpace(lr_range=self.lr_range, steps_range=self.steps,
                            batch_sizes=self.batch_sizes, modes=self.attack_modes,
                            optimizers=self.optimizers, schedules=self.schedules,
                            lora_ranks=self.lora_ranks, lora_alphas=self.lora_alphas,
                            lora_targets=self.lora_targets, compressions=self.compressions)
        return SearchConfig(method=self.search, max_trials=self.trials, patience=self.patience,
                            trials_per_batch=self.trials_per_batch, num_seeds=self.seeds,
                            seed_every_family=self.seed_every_family, seed=self.seed,
                            space=space,
                            runner=RunnerConfig(eval_every=self.eval_every,
                                                max_parallel=self.max_parallel,
                                                vectorise_backbone=self.vectorise_backbone))


KEYS = tuple(f.name for f in dataclasses.fields(EvalSettings))


def _models(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in value.items()):
        raise ConfigError(f"{SECTION}.models: expected a mapping of model id to location, got "
                          f"{value!r}")
    return dict(value)


def settings_from(values: Mapping[str, Any]) -> EvalSettings:
    """:class:`EvalSettings` from plain values, each checked against its type."""
    hints = typing.get_type_hints(EvalSettings)
    checked = {}
    for key, value in values.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {SECTION}.{close[0]}?)" if close else ""
            raise ConfigError(f"unknown key {SECTION}.{key}{hint}")
        if key == "models":
            checked[key] = _models(value)
        elif key in ("run_dir", "out") and isinstance(value, Path):
            checked[key] = str(value)
        else:
            checked[key] = coerce_value(f"{SECTION}.{key}", hints[key], value)
    return EvalSettings(**checked)


def load_eval_settings(path: str | Path | None, given: Mapping[str, Any]) -> EvalSettings:
    """The file's ``eval:`` section (if any), then the values ``given`` on the command line."""
    values: dict[str, Any] = {}
    if path is not None:
        tree = read_yaml(path)
        unexpected = sorted(set(tree) - {SECTION})
        if unexpected:
            raise ConfigError(f"{path}: an evaluation config has one section, {SECTION}:, "
                              f"not {', '.join(unexpected)}")
        section = tree.get(SECTION) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{path}: {SECTION}: must be a mapping of keys")
        values.update(section)
    values.update(given)
    return settings_from(values)


def to_yaml(settings: EvalSettings) -> str:
    """The resolved settings as a config file ``eval.py --config`` reads back."""
    plain = {key: list(value) if isinstance(value, tuple) else value
             for key, value in dataclasses.asdict(settings).items()}
    return yaml.safe_dump({SECTION: plain}, sort_keys=False)
