"""Typed, validated run configuration: YAML files plus ``key=value`` overrides.

A config file states only what differs from the defaults below (the reference method's
settings live in :class:`~sdm_jax.blocking.settings.MLACSettings`, mapped one field to one key
under ``mlac:``). Every problem is reported as one line naming the dotted key, e.g.
``mlac.inner_steps: must be >= 0, got -1`` or ``unknown key train.lr (did you mean ...?)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.data.sources import SOURCES, DataSpec
from sdm_jax.data.toy import ToySpec


class ConfigError(ValueError):
    """A bad config file, override or value, in one line naming the key."""


@dataclass(frozen=True)
class ModelConfig:
    """The network being blocked.

    - ``kind``: ``bert`` (a text encoder loaded with ``load_encoder``, of any family it reads:
      BERT or RoBERTa, trained on the text task of the ``data:`` section) or ``mlp`` (the toy
      task's ReLU network, trained on the Gaussian task of the ``toy:`` section).
    - ``name``: for ``bert``, a local directory, a hub id, or the embedded alias ``minilm``.
    - ``num_layers``: keep only the first N transformer layers (``null`` keeps all).
    - ``dtype``: compute dtype; parameters stay float32.
    - ``max_length``: tokens per text (padding and truncation to one static shape).
    - ``pooling``: the features the heads read: ``pooler`` (tanh dense over ``[CLS]``, the
      reference's choice) or ``mean`` (mean of the last hidden state over real tokens; use it
      for sentence encoders such as MiniLM, whose ``[CLS]`` carries little).
    - ``mlp_width``, ``mlp_depth``: the toy MLP's shape.
    - ``pretrain_steps``, ``pretrain_lr``: toy MLP only: first train it on both tasks (Adam,
      batches of ``train.batch_size``) so that, like a pretrained encoder, the model to block
      starts out knowing the bad task. 0 starts MLAC from a random MLP.
    """

    kind: Literal["bert", "mlp"] = "bert"
    name: str = "minilm"
    num_layers: int | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    max_length: int = 128
    pooling: Literal["pooler", "mean"] = "pooler"
    mlp_width: int = 50
    mlp_depth: int = 4
    pretrain_steps: int = 0
    pretrain_lr: float = 1e-3


VALIDATION_MODES = ("fixed", "fresh")
# train.export values, with what each exports (the model card quotes it).
EXPORTS = {"best": "the best validation loss kept", "last": "the run's last step"}
LOGGERS = ("jsonl", "tensorboard", "wandb")


@dataclass(frozen=True)
class TrainConfig:
    """The outer loop.

    - ``outer_steps``: total MLAC outer steps. ``batch_size``: outer batch (examples per step).
    - ``eval_every``: validate every N steps (and at the end); ``eval_batches``: number of
      validation meta-batches of ``batch_size``. ``validation``: ``fixed`` draws them (with
      their inner batches and attacker keys) once, so every validation sees the same ones;
      ``fresh`` draws new random ones from val1 at each validation, with fresh inner batches
      and heads, as the reference does (50 of them there: ``eval_batches: 50``).
    - ``checkpoint_every``: save every N steps (and at the end); ``keep_checkpoints``: latest N
      kept, plus the best by validation loss.
    - ``export``: the step ``export/`` holds when the run ends: ``best`` (lowest validation
      loss) or ``last`` (the final step, e.g. when the validation loss is too noisy to choose
      by).
    - ``log_every``: write a ``metrics.jsonl`` line (and check for non-finite values) every N
      steps.
    - ``stop_after``: end the process after this step as if it had been killed (resume tests,
      time-boxed jobs); ``null`` runs to ``outer_steps``.
    - ``seed``: model init, attacker draws and sampler order.
    - ``run_dir``: where checkpoints, metrics and the export go.
    - ``logger``: ``jsonl`` (``metrics.jsonl`` only), ``tensorboard`` (also event files in
      ``RUN/tensorboard``, needs the ``tensorboard`` extra) or ``wandb`` (also a Weights &
      Biases run in project ``wandb_project``, needs the ``wandb`` extra); same metric names.
    """

    outer_steps: int = 50_000
    batch_size: int = 20
    eval_every: int = 2_500
    eval_batches: int = 8
    validation: str = "fixed"
    checkpoint_every: int = 2_500
    keep_checkpoints: int = 2
    export: str = "best"
    log_every: int = 10
    stop_after: int | None = None
    seed: int = 0
    run_dir: str = "runs/default"
    logger: str = "jsonl"
    wandb_project: str = "sdm-jax"


@dataclass(frozen=True)
class ParallelConfig:
    """Devices. ``data_devices``: devices on the ``data`` mesh axis (0 = all visible)."""

    data_devices: int = 0


@dataclass(frozen=True)
class Config:
    """A whole run. ``data`` maps onto the data layer's :class:`DataSpec`, ``toy`` onto
    :class:`ToySpec` and ``mlac`` onto :class:`MLACSettings`, one field to one key."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataSpec = field(default_factory=DataSpec)
    toy: ToySpec = field(default_factory=ToySpec)
    mlac: MLACSettings = field(default_factory=MLACSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}

# Keys that may change between a run and its resumption without changing what it computes.
RESUMABLE_KEYS = frozenset({
    "train.outer_steps", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.export", "train.log_every", "train.stop_after", "train.run_dir", "data.cache_dir",
    "train.logger", "train.wandb_project",
})
# Sections a model kind does not read: their values cannot change what a run computes.
UNUSED_SECTIONS = {"mlp": ("data",), "bert": ("toy",)}


# --------------------------------------------------------------------------- value coercion


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def coerce_value(key: str, annotation: Any, value: Any) -> Any:
    """``value`` as the annotated type, or a ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce_value(key, inner, value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(args)}, got {_describe(value)}")
        return value
    if origin is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        return tuple(coerce_value(f"{key}[{i}]", args[0], item) for i, item in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_describe(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
        return value
    if annotation is float:
        # PyYAML reads exponents without a dot (1e-5) as strings; accept them as numbers.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"{key}: unsupported config annotation {annotation!r}")


def _all_keys() -> list[str]:
    return [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


# Names users bring from the reference implementation.
REFERENCE_NAMES = {"max_adapt_steps": "mlac.inner_steps", "learning_rate": "mlac.outer_lr"}


def _unknown(key: str) -> ConfigError:
    """The error for an unknown key, suggesting the closest known key(s)."""
    if "." not in key:
        close = difflib.get_close_matches(key, list(SECTIONS), n=1, cutoff=0.6)
    else:
        section, leaf = key.split(".", 1)
        if section not in SECTIONS:
            section = next(iter(difflib.get_close_matches(section, list(SECTIONS), n=1)), section)
        candidates = _all_keys()
        # A key whose name contains the word ("train.lr" -> outer_lr), same section first.
        sharing = sorted(
            (c for c in candidates if leaf in c.rsplit(".", 1)[1].split("_")),
            key=lambda c: (not c.startswith(section + "."),
                           -difflib.SequenceMatcher(None, leaf, c.rsplit(".", 1)[1]).ratio()),
        )
        close = ([REFERENCE_NAMES[leaf]] if leaf in REFERENCE_NAMES else
                 sharing[:2]
                 or difflib.get_close_matches(f"{section}.{leaf}", candidates, n=1, cutoff=0.75))
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return ConfigError(f"unknown key {key}{hint}")


# --------------------------------------------------------------------------- section checks


def _section_problems(name: str, section: Any) -> list[tuple[str, str]]:
    """(field, message) pairs for values the type alone does not rule out."""
    problems = []

    def need(condition: bool, key: str, message: str) -> None:
        if not condition:
            problems.append((key, f"{message}, got {_describe(getattr(section, key))}"))

    if name == "model":
        need(section.num_layers is None or section.num_layers > 0, "num_layers", "must be > 0")
        need(section.max_length >= 8, "max_length", "must be >= 8")
        need(section.mlp_width > 0, "mlp_width", "must be > 0")
        need(section.mlp_depth > 0, "mlp_depth", "must be > 0")
        need(section.pretrain_steps >= 0, "pretrain_steps", "must be >= 0")
        need(section.pretrain_lr > 0, "pretrain_lr", "must be > 0")
    elif name == "data":
        need(section.source in SOURCES, "source", f"must be one of {', '.join(SOURCES)}")
        need(section.source != "bios_pkl" or section.path is not None,
             "path", "is required when data.source is bios_pkl")
        for key in ("train_examples", "eval_examples"):
            need(getattr(section, key) is None or getattr(section, key) > 0, key, "must be > 0")
        for key in ("synthetic_train", "synthetic_dev", "synthetic_test"):
            need(getattr(section, key) > 0, key, "must be > 0")
    elif name == "toy":
        for key in ("dim", "n_train", "n_val", "n_test"):
            need(getattr(section, key) > 0, key, "must be > 0")
    elif name == "train":
        for key in ("outer_steps", "batch_size", "eval_every", "eval_batches",
                    "checkpoint_every", "keep_checkpoints", "log_every"):
            need(getattr(section, key) > 0, key, "must be > 0")
        need(section.stop_after is None or section.stop_after > 0, "stop_after", "must be > 0")
        need(section.validation in VALIDATION_MODES, "validation",
             f"must be one of {', '.join(VALIDATION_MODES)}")
        need(section.export in EXPORTS, "export", f"must be one of {', '.join(EXPORTS)}")
        need(section.seed >= 0, "seed", "must be >= 0")
        need(section.logger in LOGGERS, "logger",
             f"must be one of {', '.join(LOGGERS)}")
    elif name == "parallel":
        need(section.data_devices >= 0, "data_devices", "must be >= 0 (0 = all devices)")
    return problems


def _build_mlac(values: dict[str, Any]) -> MLACSettings:
    """MLACSettings validates itself; its message is re-keyed to the field it names."""
    try:
        return MLACSettings(**values)
    except ValueError as error:
        message = str(error).removeprefix("invalid MLACSettings: ")
        names = sorted((f.name for f in dataclasses.fields(MLACSettings)), key=len, reverse=True)
        match = re.search(r"\b(" + "|".join(names) + r")\b", message)
        if match is None:
            raise ConfigError(f"mlac: {message}") from None
        key = match.group(1)
        rest = message.removeprefix(key).strip() if message.startswith(key) else message
        raise ConfigError(f"mlac.{key}: {rest}") from None


def _build_section(name: str, values: Mapping[str, Any]) -> Any:
    cls = SECTIONS[name]
    if not isinstance(values, Mapping):
        raise ConfigError(f"{name}: expected a mapping of keys, got {_describe(values)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    coerced = {}
    for key, value in values.items():
        if key not in known:
            raise _unknown(f"{name}.{key}")
        coerced[key] = coerce_value(f"{name}.{key}", hints[key], value)
    if cls is MLACSettings:
        return _build_mlac(coerced)
    section = cls(**coerced)
    problems = _section_problems(name, section)
    if problems:
        key, message = problems[0]
        raise ConfigError(f"{name}.{key}: {message}")
    return section


def _cross_checks(config: Config) -> None:
    model, mlac, train = config.model, config.mlac, config.train
    if max(mlac.batch_size_choices) > 4096:
        raise ConfigError(f"mlac.batch_size_choices: sizes must be <= 4096, got "
                          f"{mlac.batch_size_choices}")
    if model.pretrain_steps and model.kind != "mlp":
        raise ConfigError("model.pretrain_steps: only the toy MLP is pretrained here; "
                          "a bert model is loaded pretrained")
    if mlac.active_rows and model.kind != "bert":
        raise ConfigError("mlac.active_rows: needs a text model (model.kind bert), got mlp")
    weights = {f.name: getattr(mlac, f.name) for f in dataclasses.fields(mlac)
               if f.name.startswith("l_")}
    if not any(weights.values()):
        raise ConfigError("mlac: every loss weight (mlac.l_*) is 0, so training would change "
                          "nothing; set at least one, e.g. mlac.l_good_base=1")
    if train.stop_after is not None and train.stop_after > train.outer_steps:
        raise ConfigError(f"train.stop_after: must be <= train.outer_steps "
                          f"({train.outer_steps}), got {train.stop_after}")


# --------------------------------------------------------------------------- public API


def build_config(tree: Mapping[str, Any]) -> Config:
    """A validated :class:`Config` from nested ``{section: {key: value}}`` (defaults elsewhere)."""
    if not isinstance(tree, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {_describe(tree)}")
    sections = {}
    for name, values in tree.items():
        if name not in SECTIONS:
            raise _unknown(str(name))
        sections[name] = _build_section(name, {} if values is None else values)
    config = Config(**sections)
    _cross_checks(config)
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"mlac.inner_steps=4"`` -> (["mlac", "inner_steps"], 4); values are YAML scalars."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.outer_steps=100")
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {text!r}: key must be section.name, e.g. mlac.inner_steps")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {key}: cannot parse value {raw!r} as YAML") from None
    return parts, value


def apply_overrides(tree: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    merged = {name: dict(values) if isinstance(values, Mapping) else values
              for name, values in tree.items()}
    for text in overrides:
        (section, key), value = parse_override(text)
        if section not in SECTIONS:
            raise _unknown(f"{section}.{key}")
        values = merged.setdefault(section, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section}: expected a mapping of keys, got {_describe(values)}")
        values[key] = value
    return merged


BASE_KEY = "base"


def _read_one_yaml(path: Path) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML") from None
    if tree is None:
        raise ConfigError(f"{path}: the config file is empty; to run on the defaults, leave "
                          "out --config")
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return dict(tree)


def _merge_sections(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child``'s keys over ``base``'s, section by section."""
    merged = {name: dict(values) if isinstance(values, Mapping) else values
              for name, values in base.items()}
    for name, values in child.items():
        if isinstance(values, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **values}
        else:
            merged[name] = values
    return merged


def read_yaml(path: str | Path, _including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's sections, with ``base: OTHER.yaml`` (a path relative to this file)
    read first and overridden key by key, so a baseline config states only how it differs."""
    path = Path(path)
    tree = _read_one_yaml(path)
    base = tree.pop(BASE_KEY, None)
    if base is None:
        return tree
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: {BASE_KEY} must name another config file, got "
                          f"{_describe(base)}")
    base_path = (path.parent / base).resolve()
    if base_path in _including or base_path == path.resolve():
        raise ConfigError(f"{path}: {BASE_KEY} {base!r} includes itself in a cycle")
    return _merge_sections(read_yaml(base_path, (*_including, path.resolve())), tree)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides, validated."""
    tree = read_yaml(path) if path is not None else {}
    return build_config(apply_overrides(tree, overrides))


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain YAML/JSON-friendly values (tuples become lists)."""

    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    return {
        name: {f.name: plain(getattr(getattr(config, name), f.name))
               for f in dataclasses.fields(getattr(config, name))}
        for name in SECTIONS
    }


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def flat_items(config: Config) -> dict[str, Any]:
    tree = config_to_dict(config)
    return {f"{section}.{key}": value
            for section, values in tree.items() for key, value in values.items()}


def config_fingerprint(config: Config) -> str:
    """A hash of everything that decides what a run computes (not its bookkeeping)."""
    relevant = {k: v for k, v in flat_items(config).items() if k not in ignored_keys(config)}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def ignored_keys(config: Config) -> frozenset[str]:
    """Keys that do not change what this run computes: bookkeeping and unused sections."""
    unused = UNUSED_SECTIONS[config.model.kind]
    return RESUMABLE_KEYS | {k for k in flat_items(config) if k.split(".")[0] in unused}


def changed_keys(saved: Mapping[str, Any], config: Config) -> list[str]:
    """Keys whose values differ from a saved flat config, ignoring bookkeeping keys."""
    current = flat_items(config)
    keys = (set(saved) | set(current)) - ignored_keys(config)
    return sorted(k for k in keys if saved.get(k) != current.get(k))
