"""Run many attack settings against one model: group, chunk, compile once, collect results.

Runs are grouped by optimizer family and by path: full fine-tuning runs go through the backbone;
frozen-base runs (with ``probe_features``) train the head on features computed once; BitFit and
LoRA runs (one group per LoRA rank and target set) train an adapter over the frozen backbone.
Each group is cut into chunks of at most ``max_parallel`` runs; a short chunk is padded to the
next power of two so a handful of compiled programs serve every chunk size. Runs that train
through the backbone (full fine-tuning, BitFit, LoRA) go one at a time on a CPU, where
vectorising them was measured slower (``vectorise_backbone``); probes are vectorised
everywhere. Full fine-tuning of a text backbone trains only the word-table rows of the tokens in
the attacker's examples (``active_rows``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from sdm_jax.attacks.compression import check_compression, compress
from sdm_jax.attacks.metrics import DEFAULT_TARGETS, classification_metrics, examples_to_target
from sdm_jax.attacks.problem import Arrays, AttackProblem, AttackTarget, validate_problem
from sdm_jax.attacks.program import (
    LABEL,
    PROBE_INPUT,
    ProgramSpec,
    backbone_logits,
    compiled_program,
    probe_logits,
)
from sdm_jax.attacks.settings import AttackSetting, validate_settings
from sdm_jax.data.sampler import random_subset
from sdm_jax.models.active_rows import (
    TOKEN_KEY,
    active_rows_features,
    compact_embedding,
    get_path,
    host_active_ids,
)
from sdm_jax.models.adapters import Adaptation, adaptation_for, check_adaptation

VECTORISE_CHOICES = ("auto", "always", "never")
# Active-row tables are padded to a multiple of this, so similar attacker sets share a program.
ACTIVE_ROWS_MULTIPLE = 256


@dataclass(frozen=True)
class RunnerConfig:
    """How runs are executed (not what they are).

    ``eval_every``: steps between validation checks (the reference's 50). ``max_parallel``: runs
    per compiled program; lower it when memory is short. ``eval_batch_size``: rows per
    evaluation chunk. ``max_steps``/``max_batch_size``: the program's length and fixed batch
    shape; default to the longest/largest setting given, and a search fixes them to its space so
    every batch of trials reuses one compiled program. ``probe_features``: run frozen-base
    settings on precomputed features (set False to run them through the full program with the
    backbone's updates masked). ``max_examples``: attacker examples per run the program has room
    for (default ``n``); a grid over several ``n`` sets it to the largest so that one compiled
    program serves them all. ``ma_window``/``targets``: the examples-to-target statistic.
    ``vectorise_backbone``: whether runs that train through the backbone share one vmapped
    program (``always``), go one at a time (``never``), or ``auto``: vectorised except on a
    CPU backend (32 BERT-tiny runs, ``python -m sdm_jax.bench --attack-modes full frozen lora``
    on the 2-core CPU: vectorised 0.91–0.93× of one by one for full fine-tuning and 0.97–1.02×
    for LoRA, while probes ran 19× faster vectorised).
    """

    eval_every: int = 50
    max_parallel: int = 32
    eval_batch_size: int = 256
    max_steps: int | None = None
    max_batch_size: int | None = None
    probe_features: bool = True
    max_examples: int | None = None
    ma_window: int = 10
    targets: tuple[float, ...] = DEFAULT_TARGETS
    active_rows: bool = True
    vectorise_backbone: str = "auto"

    def __post_init__(self) -> None:
        if self.vectorise_backbone not in VECTORISE_CHOICES:
            raise ValueError(f"vectorise_backbone must be one of {VECTORISE_CHOICES}, got "
                             f"{self.vectorise_backbone!r}")
        sizes = {"eval_every": self.eval_every, "max_parallel": self.max_parallel,
                 "eval_batch_size": self.eval_batch_size, "ma_window": self.ma_window}
        not_positive = [f"{name}={value}" for name, value in sizes.items() if value <= 0]
        if not_positive:
            raise ValueError(f"runner sizes must be positive, got {', '.join(not_positive)}")


@dataclass(frozen=True)
class RunResult:
    """One attack run. Metrics are dicts over ``METRIC_NAMES``; ``val`` and ``test`` are taken at
    ``best_step``, the step whose validation accuracy was highest (earliest on ties, step 0
    included). ``val_curve`` is the validation accuracy at ``eval_steps`` within the run's budget.
    ``examples_to_target`` maps "0.5"... to examples seen (``None``: never reached). An undefined
    metric (ROC-AUC of a multi-class task) is ``None``. ``retained`` (when the problem retains
    a desired task): that task's accuracy through the model's own head on the model as released,
    before any compression or fine-tuning (``initial_val``), and at ``best_step`` (``val``,
    ``test``).
    """

    setting: AttackSetting
    best_step: int
    val: dict[str, float | None]
    test: dict[str, float | None] | None
    eval_steps: list[int]
    val_curve: list[float]
    examples_to_target: dict[str, int | None] = field(default_factory=dict)
    retained: dict[str, float] | None = None

    def to_dict(self) -> dict:
        return {
            "setting": self.setting.to_dict(),
            "best_step": self.best_step,
            "val": self.val,
            "test": self.test,
            "eval_steps": self.eval_steps,
            "val_curve": self.val_curve,
            "examples_to_target": self.examples_to_target,
            "retained": self.retained,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        return cls(**{**data, "setting": AttackSetting(**data["setting"])})


def _pad_to_chunks(arrays: Arrays, chunk: int) -> dict[str, np.ndarray]:
    size = len(next(iter(arrays.values())))
    padded = math.ceil(size / chunk) * chunk
    order = np.concatenate([np.arange(size), np.zeros(padded - size, np.int64)])
    return {
        key: value[order].reshape(padded // chunk, chunk, *value.shape[1:])
        for key, value in arrays.items()
    }


def _runs_per_call(config: RunnerConfig, path: str) -> int:
    """How many runs of a ``path`` group share one program call (see ``vectorise_backbone``)."""
    choice = config.vectorise_backbone
    if choice == "auto":
        choice = "never" if jax.default_backend() == "cpu" else "always"
    return config.max_parallel if path == "probe" or choice == "always" else 1


def _padded_runs(count: int, max_parallel: int) -> int:
    return min(max_parallel, 1 << max(count - 1, 0).bit_length())


@functools.lru_cache(maxsize=16)
def _jitted_features(features_fn: Callable) -> Callable:
    return jax.jit(features_fn)


def compute_features(target: AttackTarget, arrays: Arrays, chunk_size: int) -> np.ndarray:
    """The backbone's ``[N, H]`` features of a split, in fixed-shape chunks (one compile)."""
    inputs = {key: np.asarray(arrays[key]) for key in target.backbone.input_keys}
    size = len(next(iter(inputs.values())))
    chunks = _pad_to_chunks(inputs, min(chunk_size, size))
    features_fn = _jitted_features(target.backbone.features)
    per_chunk = [
        np.asarray(features_fn(target.params, {key: value[i] for key, value in chunks.items()}))
        for i in range(len(next(iter(chunks.values()))))
    ]
    return np.concatenate(per_chunk)[:size]


def _model_inputs(target: AttackTarget, arrays: Arrays, probe: bool, chunk: int) -> dict:
    if probe:
        return {PROBE_INPUT: compute_features(target, arrays, chunk)}
    return {key: np.asarray(arrays[key]) for key in target.backbone.input_keys}


def _eval_split(target, arrays, task, probe, chunk) -> tuple[dict, np.ndarray]:
    labels = np.asarray(arrays[task], np.int32)
    chunk = min(chunk, len(labels))
    return _pad_to_chunks(_model_inputs(target, arrays, probe, chunk), chunk), labels


def _example_order(seed: int, n: int, length: int) -> np.ndarray:
    """Positions ``0..n-1`` epoch after epoch, each epoch freshly shuffled (as ``BatchSampler``)."""
    rng = np.random.default_rng((seed, 1))
    epochs = -(-length // n)
    return np.concatenate([rng.permutation(n) for _ in range(epochs)])[:length]


def _attacker_pools(problem, settings) -> list[np.ndarray]:
    """Each run's ``n`` attacker examples, as row numbers of the attacker's split."""
    index = {"row": np.arange(len(problem.train[problem.task]))}
    return [random_subset(index, problem.n, s.data_seed)["row"] for s in settings]


def _attacker_rows(problem, settings, capacity: int, length: int):
    """The rows of the attacker's split to ship for a chunk of runs, and each run's stream of
    row positions. The row count depends only on ``capacity`` (padded with row 0) so the program
    does not recompile when the runs' examples overlap more or less, or ``n`` changes."""
    size = len(problem.train[problem.task])
    pools = _attacker_pools(problem, settings)
    union = np.unique(np.concatenate(pools))
    rows = np.concatenate([union, np.zeros(min(size, capacity) - len(union), np.int64)])
    orders = [
        np.searchsorted(union, pool)[_example_order(s.seed, problem.n, length)]
        for pool, s in zip(pools, settings, strict=True)
    ]
    return rows, np.stack(orders).astype(np.int32)


def attacker_token_ids(problem, settings, vocab_size: int, pad_id: int) -> np.ndarray:
    """Sorted ids of the tokens in any run's attacker examples plus ``0..pad_id``, padded to a
    multiple of ``ACTIVE_ROWS_MULTIPLE`` (at most ``vocab_size``) with copies of the largest."""
    rows = np.unique(np.concatenate(_attacker_pools(problem, settings)))
    tokens = np.asarray(problem.train[TOKEN_KEY])[rows]
    return host_active_ids(tokens, ACTIVE_ROWS_MULTIPLE, vocab_size, pad_id)


def _program_model(target, problem, backbone_runs, path: str, active_rows: bool) -> tuple:
    """``(logits_fn, backbone_params, frozen_rows)`` for the program of a group of runs taking
    ``path``: ``probe``, ``adapter`` (BitFit, LoRA: the full frozen backbone) or ``backbone``."""
    if path == "probe":
        return probe_logits, {}, {}
    if path == "adapter" or not active_rows:
        return backbone_logits(target.backbone.features), target.params, {}
    path = target.backbone.embedding_path
    table = get_path(target.params, path)
    pad_id = target.backbone.pad_token_id
    ids = attacker_token_ids(problem, backbone_runs, table.shape[0], pad_id)
    compact = compact_embedding(target.params, path, ids)
    features = active_rows_features(target.backbone.features, path, pad_id)
    return backbone_logits(features), compact, {"table": table, "ids": jnp.asarray(ids)}


def _hparams(settings: Sequence[AttackSetting], orders: np.ndarray) -> dict[str, np.ndarray]:
    def column(values, dtype):
        return np.asarray(values, dtype)

    return {
        "lr": column([s.lr for s in settings], np.float32),
        "steps": column([s.steps for s in settings], np.int32),
        "batch_size": column([s.batch_size for s in settings], np.int32),
        "schedule": column([s.schedule_code for s in settings], np.int32),
        "warmup_steps": column([s.warmup_steps for s in settings], np.int32),
        "weight_decay": column([s.effective_weight_decay for s in settings], np.float32),
        "momentum": column([s.effective_momentum for s in settings], np.float32),
        "frozen": column([s.frozen_base for s in settings], np.float32),
        "lora_scale": column([s.lora_scale for s in settings], np.float32),
        "seed": column([s.seed for s in settings], np.int32),
        "order": orders,
    }


def _collect(setting, outputs, j, labels, num_classes, config, released) -> RunResult:
    curve = outputs["val_curve"][j]
    every = config.eval_every
    eval_steps = [0] + [min(k * every, setting.steps) for k in range(1, len(curve))]
    in_budget = [k for k in range(len(curve)) if k == 0 or (k - 1) * every < setting.steps]
    best_index = int(outputs["best_index"][j])
    train_accuracy = outputs["train_accuracy"][j][: setting.steps]
    test = None
    if "test_logits" in outputs:
        test = classification_metrics(labels["test"], outputs["test_logits"][j], num_classes)
    retained = None
    if "retain_val_logits" in outputs:
        def hit_rate(name, split):
            predicted = np.argmax(outputs[name][j], axis=-1)
            return float(np.mean(predicted == labels[f"retain_{split}"]))

        retained = {"initial_val": released,
                    "val": hit_rate("retain_val_logits", "val")}
        if "retain_test_logits" in outputs:
            retained["test"] = hit_rate("retain_test_logits", "test")
    return RunResult(
        setting=setting,
        best_step=eval_steps[best_index],
        val=classification_metrics(labels["val"], outputs["val_logits"][j], num_classes),
        test=test,
        eval_steps=[eval_steps[k] for k in in_budget],
        val_curve=[float(curve[k]) for k in in_budget],
        examples_to_target=examples_to_target(
            train_accuracy,
            np.full(setting.steps, setting.batch_size),
            config.targets,
            config.ma_window,
        ),
        retained=retained,
    )


def run_attacks(
    target: AttackTarget,
    problem: AttackProblem,
    settings: Sequence[AttackSetting],
    config: RunnerConfig = RunnerConfig(),
    on_runs_done: Callable[[int], None] | None = None,
) -> list[RunResult]:
    """Run every setting against ``target`` on ``problem``; results in the order of ``settings``.

    Deterministic: a run's numbers depend on its setting (seeds included), not on which other
    runs share its program (up to float reassociation inside batched kernels).
    ``on_runs_done(k)`` is called after each chunk with the number of real runs it finished.
    """
    num_classes = validate_problem(target, problem)
    settings = validate_settings(settings)
    max_steps = config.max_steps or max(s.steps for s in settings)
    max_batch = config.max_batch_size or max(s.batch_size for s in settings)
    max_examples = max(config.max_examples or problem.n, problem.n)
    too_long = [s for s in settings if s.steps > max_steps or s.batch_size > max_batch]
    if too_long:
        raise ValueError(
            f"setting {too_long[0]} exceeds the program's max_steps={max_steps} "
            f"or max_batch_size={max_batch}"
        )
    shape = _ProgramShape(num_classes, max_steps, max_batch, max_examples)
    # Every adaptation resolved and checked before any compute.
    for adaptation in {_adaptation(target, s) for s in settings}:
        check_adaptation(adaptation, target.params, target.backbone.name)
    by_compression: dict[str, list[int]] = {}
    for index, setting in enumerate(settings):
        by_compression.setdefault(setting.compression, []).append(index)
    for compression in by_compression:
        check_compression(target.backbone, target.params, compression)
    released = _released_retention(target, problem, config) if problem.retains(target) else None
    results: list[RunResult | None] = [None] * len(settings)
    for compression, indices in by_compression.items():
        chosen = [settings[i] for i in indices]
        attacked = replace(target, params=compress(target.backbone, target.params, compression))
        outcome = _run_on(attacked, problem, chosen, config, shape, on_runs_done, released)
        for index, result in zip(indices, outcome, strict=True):
            results[index] = result
    return results


def _adaptation(target: AttackTarget, setting: AttackSetting) -> Adaptation:
    return adaptation_for(target.backbone, setting.adapter, setting.lora_rank,
                          setting.lora_targets)


def _released_retention(target, problem, config) -> float:
    """The retained task's validation accuracy of the model as released (own head, untouched)."""
    features = compute_features(target, problem.val, config.eval_batch_size)
    predicted = np.argmax(features @ np.asarray(target.retain_head["kernel"]), axis=-1)
    return float(np.mean(predicted == np.asarray(problem.val[problem.retain_task])))


@dataclass(frozen=True)
class _ProgramShape:
    num_classes: int
    max_steps: int
    max_batch: int
    max_examples: int


def _run_on(target, problem, settings, config, shape: _ProgramShape, on_runs_done, released):
    """:func:`run_attacks` for settings that all attack ``target`` as it is; ``released`` is
    the retained task's accuracy before any compression (``None`` without retention)."""
    num_classes, max_steps = shape.num_classes, shape.max_steps
    max_batch, max_examples = shape.max_batch, shape.max_examples
    groups: dict[tuple[str, bool, Adaptation], list[int]] = {}
    for index, setting in enumerate(settings):
        probe = setting.frozen_base and config.probe_features
        groups.setdefault((setting.family, probe, _adaptation(target, setting)), []).append(index)
    # One active set for every run that trains the word table: one compact table, one program.
    active_rows = config.active_rows and target.backbone.embedding_path is not None
    backbone_runs = [
        s for s in settings if not (s.frozen_base and config.probe_features) and s.adapter == "none"
    ]

    retain_classes, retain_labels = 0, {}
    if problem.retains(target):
        retain_classes = int(np.shape(target.retain_head["kernel"])[-1])
        retain_labels = {f"retain_{name}": np.asarray(arrays[problem.retain_task], np.int32)
                         for name, arrays in (("val", problem.val), ("test", problem.test))
                         if arrays is not None}

    results: list[RunResult | None] = [None] * len(settings)
    eval_cache: dict[bool, tuple] = {}
    model_cache: dict[str, tuple] = {}
    for (family, probe, adaptation), indices in groups.items():
        if probe not in eval_cache:
            eval_cache[probe] = tuple(
                _eval_split(target, arrays, problem.task, probe, config.eval_batch_size)
                if arrays is not None
                else None
                for arrays in (problem.val, problem.test)
            )
        val, test = eval_cache[probe]
        path = "probe" if probe else "backbone" if adaptation.kind == "none" else "adapter"
        if path not in model_cache:
            model_cache[path] = _program_model(target, problem, backbone_runs, path, active_rows)
        logits_fn, backbone_params, frozen_rows = model_cache[path]
        spec = ProgramSpec(
            family=family,
            num_blocks=math.ceil(max_steps / config.eval_every),
            eval_every=config.eval_every,
            max_batch=max_batch,
            num_classes=num_classes,
            feature_dim=target.backbone.feature_dim,
            with_test=test is not None,
            active_rows=active_rows and path == "backbone",
            adaptation=adaptation,
            retain_classes=retain_classes,
        )
        program = compiled_program(spec, logits_fn)
        retain_head = target.retain_head if retain_classes else {}
        parallel = _runs_per_call(config, path)
        for start in range(0, len(indices), parallel):
            chunk = indices[start : start + parallel]
            width = _padded_runs(len(chunk), parallel)
            chunk_settings = [settings[i] for i in chunk]
            padded = chunk_settings + [chunk_settings[0]] * (width - len(chunk))
            rows, orders = _attacker_rows(
                problem, padded, max_examples * width, spec.total_steps * max_batch
            )
            train_rows = {key: np.asarray(value)[rows] for key, value in problem.train.items()}
            train = _model_inputs(target, train_rows, probe, config.eval_batch_size)
            train[LABEL] = np.asarray(train_rows[problem.task], np.int32)
            outputs = program(
                jax.tree.map(jnp.asarray, _hparams(padded, orders)),
                backbone_params,
                train,
                val,
                test,
                frozen_rows,
                retain_head,
            )
            outputs = jax.device_get(outputs)
            labels = {"val": val[1], "test": None if test is None else test[1], **retain_labels}
            for j, index in enumerate(chunk):
                results[index] = _collect(settings[index], outputs, j, labels, num_classes, config,
                                          released)
            if on_runs_done is not None:
                on_runs_done(len(chunk))
    return results
