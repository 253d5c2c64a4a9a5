"""Attack a blocked model and its baselines on the data it was trained with, and report.

The blocked run's own config names the data, the tokenisation and the architecture, so every
model is attacked on exactly the splits the run held out. Models come from run directories,
export directories (Hugging Face folders or the toy MLP's ``params.safetensors``), hub ids, or
the built-in baselines ``pretrained`` (the model the run started from) and ``random`` (the same
architecture freshly initialised).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from sdm_jax.app.model_kinds import PreparedTask, kind_of
from sdm_jax.app.task import prepare_task
from sdm_jax.atomic import write_text_atomic
from sdm_jax.attacks import (
    AttackTarget,
    CellResult,
    SearchConfig,
    compute_features,
    evaluate_grid,
    write_report,
)
from sdm_jax.attacks.leakage import balanced_within, leakage_markdown, leakage_rows
from sdm_jax.attacks.report import repeat_rows, repeats_markdown, summary_rows
from sdm_jax.config import Config, load_config
from sdm_jax.fine_tune import accuracy
from sdm_jax.model_card import CARD, with_report
from sdm_jax.models import (
    CheckpointError,
    head_logits,
    split_logits,
)
from sdm_jax.models.backbone import Params

BASELINES = ("pretrained", "random")
RUN_CONFIG = "config.yaml"
EXPORT_CONFIG = "train_config.yaml"
FEATURE_CHUNK = 256


@dataclass(frozen=True)
class EvalPlan:
    """What to attack and how.

    ``run_dir``: the blocked run (its ``export/`` is the model ``blocked``). ``models``: more
    models by id -> run directory, export directory, ``RUN_DIR@STEP`` (checkpoint STEP of a
    run), local Hugging Face folder or hub id.
    ``baselines``: any of ``pretrained`` and ``random``. ``tasks``: ``bad`` (harmful) and/or
    ``good`` (desired). ``ns``: attacker example counts. ``search``: the attack search and
    seeds. ``out_dir``: where the report goes (default ``<run_dir>/eval``). ``balance_test``:
    report on the test examples that leave equally many of each harmful label in every desired
    class, so the desired label alone predicts the harmful one no better than chance.
    """

    run_dir: Path
    models: Mapping[str, str] = field(default_factory=dict)
    baselines: tuple[str, ...] = BASELINES
    tasks: tuple[str, ...] = ("bad", "good")
    ns: tuple[int, ...] = (20, 50, 100, 200)
    search: SearchConfig = field(default_factory=SearchConfig)
    out_dir: Path | None = None
    progress: bool = True
    balance_test: bool = False

    @property
    def output(self) -> Path:
        return self.out_dir if self.out_dir is not None else self.run_dir / "eval"


def run_config(run_dir: Path) -> Config:
    """The resolved config a run (or its export) was trained with."""
    for candidate in (run_dir / RUN_CONFIG, run_dir / EXPORT_CONFIG):
        if candidate.is_file():
            return load_config(candidate)
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir}: no such run directory")
    raise CheckpointError(f"{run_dir}: not a training run (no {RUN_CONFIG} or {EXPORT_CONFIG})")


def run_batch_sizes(run_dir: Path) -> tuple[int, ...]:
    """The simulated attackers' batch sizes of a run: the attack search's default, as the
    reference searches the same sizes it trained against."""
    return tuple(run_config(Path(run_dir)).mlac.batch_size_choices)


def export_dir(path: Path) -> Path:
    """A run directory's ``export/``, or the path itself when it already is a model folder."""
    return path / "export" if (path / "export").is_dir() else path


def _own_head(directory: Path) -> Params | None:
    from safetensors.numpy import load_file

    file = directory / "heads.safetensors"
    if not file.is_file():
        return None
    heads = load_file(str(file))
    return {"kernel": np.concatenate([heads["good.weight"], heads["bad.weight"]]).T}


def checkpoint_location(location: str) -> tuple[Path, int] | None:
    """``RUN_DIR@STEP`` names checkpoint STEP of a training run (e.g. to compare outer steps
    without retraining); anything else is ``None``."""
    path, sep, step = location.rpartition("@")
    run_dir = Path(path).expanduser()
    if sep and step.isdigit() and (run_dir / RUN_CONFIG).is_file():
        return run_dir, int(step)
    return None


def _kept_steps(run_dir: Path) -> list[int]:
    directory = run_dir / "checkpoints"
    entries = directory.iterdir() if directory.is_dir() else ()
    return sorted(int(entry.name) for entry in entries if entry.name.isdigit())


def check_checkpoint(location: str, run_dir: Path, step: int, config: Config) -> None:
    """Fail in one line on a ``RUN_DIR@STEP`` whose step is not kept or whose model differs
    from the evaluated run's (its weights would not fit that run's architecture)."""
    kept = _kept_steps(run_dir)
    if step not in kept:
        listed = ", ".join(map(str, kept)) or "none"
        raise CheckpointError(f"{location}: no checkpoint at step {step} (kept: {listed}; "
                              "train.keep_checkpoints sets how many a run keeps)")
    if run_config(run_dir).model != config.model:
        raise CheckpointError(f"{location}: trained with another model: section than the "
                              "evaluated run; attack it with its own run")


def load_checkpoint_model(model_id: str, run_dir: Path, step: int, task: PreparedTask
                          ) -> tuple[AttackTarget, Params]:
    """An attack target and own head from checkpoint ``step`` of the run in ``run_dir``."""
    from sdm_jax.app.training import load_run_state

    params = load_run_state(run_config(run_dir), run_dir, step, task).params
    backbone = jax.tree_util.tree_map(np.asarray, params["backbone"])
    head = {"kernel": np.asarray(params["head"]["kernel"])}
    return AttackTarget(model_id, task.backbone, backbone), head


def load_model(
    model_id: str, location: str, task: PreparedTask, pooling: str = "pooler"
) -> tuple[AttackTarget, Params]:
    """An attack target for ``location`` and its own classification head (or ``None``);
    text models are read with ``pooling``, as the run being evaluated was trained."""
    checkpoint = checkpoint_location(location)
    if checkpoint is not None:
        return load_checkpoint_model(model_id, *checkpoint, task)
    path = Path(location).expanduser()
    directory = export_dir(path) if path.is_dir() else None
    target = task.kind.read_export(model_id, location, directory, task, pooling)
    return target, _own_head(directory) if directory is not None else None


def check_location(location: str, config: Config) -> None:
    """Fail in one line on a model that cannot be found, before data or models are loaded."""
    checkpoint = checkpoint_location(location)
    if checkpoint is not None:
        return check_checkpoint(location, *checkpoint, config)
    path = Path(location).expanduser()
    if (path / RUN_CONFIG).is_file() and not (path / "export").is_dir():
        raise CheckpointError(f"{location}: this run has not finished (no export yet); finish "
                              f"it with: python train.py --run-dir {location}")
    kind_of(config).check_location(location, export_dir(path) if path.is_dir() else None)


def baseline_target(name: str, task: PreparedTask, seed: int) -> AttackTarget:
    if name == "pretrained":
        return AttackTarget(name, task.backbone, task.backbone_params)
    if name == "random":
        return AttackTarget(name, task.backbone, task.backbone.init(jax.random.PRNGKey(seed)))
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


def own_head_accuracy(target: AttackTarget, head: Params, task: PreparedTask,
                      arrays: Mapping[str, np.ndarray]) -> dict:
    """Accuracy of a model's own heads on both tasks on ``arrays``, without any fine-tuning."""
    features = compute_features(target, arrays, chunk_size=FEATURE_CHUNK)
    logits = np.asarray(head_logits(head, features))
    good, bad = split_logits(logits, task.num_good)
    return {"good": float(accuracy(good, arrays["good"])),
            "bad": float(accuracy(bad, arrays["bad"]))}


def retention_markdown(rows: Mapping[str, Mapping[str, float]], split: str) -> str:
    lines = ["", f"## Own heads, no fine-tuning ({split} accuracy)", "",
             "| model | desired (good) | harmful (bad) |", "|---|---|---|"]
    lines += [f"| {model} | {row['good']:.3f} | {row['bad']:.3f} |" for model, row in rows.items()]
    return "\n".join(lines) + "\n"


def check_plan(plan: EvalPlan) -> None:
    unknown = [name for name in plan.baselines if name not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {BASELINES}")
    clashes = sorted(set(plan.models) & {"blocked", *plan.baselines})
    if clashes:
        raise ValueError(f"model id {clashes[0]!r} is taken by a built-in model; rename it")
    if not plan.ns or min(plan.ns) <= 0:
        raise ValueError(f"attacker example counts must be positive, got {list(plan.ns)}")
    wrong = [t for t in plan.tasks if t not in ("bad", "good")]
    if wrong or not plan.tasks:
        raise ValueError(f"tasks must be 'bad' and/or 'good', got {list(plan.tasks)}")
    plan.search.validate()


def evaluate(plan: EvalPlan) -> tuple[dict[str, Path], list[CellResult]]:
    """Validate everything, attack every model, and write the report files."""
    check_plan(plan)
    config = run_config(plan.run_dir)
    for location in (str(export_dir(plan.run_dir)), *plan.models.values()):
        check_location(location, config)
    task = prepare_task(config)
    blocked = export_dir(plan.run_dir)
    pooling = config.model.pooling
    targets_with_heads = [load_model("blocked", str(blocked), task, pooling)]
    targets_with_heads += [load_model(model_id, location, task, pooling)
                           for model_id, location in plan.models.items()]
    # A model with its own heads is also scored on how much desired task an attack leaves.
    targets = [
        target if head is None else dataclasses.replace(
            target, retain_head={"kernel": np.asarray(head["kernel"])[:, : task.num_good]})
        for target, head in targets_with_heads
    ]
    targets += [baseline_target(name, task, config.train.seed) for name in plan.baselines]
    splits, balanced = dict(task.splits), ""
    if plan.balance_test:
        splits["test"] = balanced_within(task.splits["test"], "good", "bad")
        balanced = (f"Test split balanced within each desired class: {len(splits['test']['bad'])} "
                    f"of {len(task.splits['test']['bad'])} test examples kept.")
    # A balanced test split changes every seeded figure, so its cells are cached apart.
    cache = plan.output / ("cache_balanced_test" if plan.balance_test else "cache")
    cells = evaluate_grid(targets, splits, tasks=plan.tasks, ns=plan.ns, config=plan.search,
                          cache_dir=cache, progress=plan.progress, retain_task="good")
    retention = {target.model_id: own_head_accuracy(target, head, task, splits["test"])
                 for target, head in targets_with_heads if head is not None}
    leakage = leakage_rows(splits, plan.ns, plan.search) if "bad" in plan.tasks else []
    extra = leakage_markdown(leakage, summary_rows(cells), balanced=balanced) if leakage else ""
    split_name = "balanced test" if plan.balance_test else "test"
    extra += retention_markdown(retention, split_name) if retention else ""
    paths = write_report(plan.output, cells, extra_markdown=extra)
    if leakage:
        paths["leakage.json"] = write_text_atomic(plan.output / "leakage.json",
                                                  json.dumps(leakage, indent=1) + "\n")
    if retention:
        paths["retention.json"] = write_text_atomic(plan.output / "retention.json",
                                                    json.dumps(retention, indent=1) + "\n")
    card = blocked / CARD
    if card.is_file():
        report = paths["report.md"].read_text()
        write_text_atomic(card, with_report(card.read_text(), report, str(plan.output)))
    return paths, cells


def repeat_plan(plan: EvalPlan, repeat: int) -> EvalPlan:
    """Repeat ``repeat`` of ``plan``: its own report folder, and search and attacker seeds that
    start past the previous repeat's final seeds, so no two repeats share a seed."""
    seed = plan.search.seed + repeat * plan.search.num_seeds
    return dataclasses.replace(plan, search=dataclasses.replace(plan.search, seed=seed),
                               out_dir=plan.output / f"repeat_{repeat}")


def evaluate_repeats(plan: EvalPlan, repeats: int) -> dict[str, Path]:
    """Run the whole evaluation ``repeats`` times (each resumable from its own cache) and write
    their spread to ``repeats.md`` and ``repeats.json`` beside the repeats' folders."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    summaries = []
    for repeat in range(repeats):
        _, cells = evaluate(repeat_plan(plan, repeat))
        summaries.append(summary_rows(cells))
    rows = repeat_rows(summaries)
    return {
        "repeats.json": write_text_atomic(plan.output / "repeats.json",
                                          json.dumps(rows, indent=1) + "\n"),
        "repeats.md": write_text_atomic(plan.output / "repeats.md", repeats_markdown(rows)),
    }


def parse_models(pairs: Sequence[str]) -> dict[str, str]:
    """``id=location`` pairs from the command line."""
    models = {}
    for pair in pairs:
        model_id, sep, location = pair.partition("=")
        if not sep or not model_id or not location:
            raise ValueError(f"--model expects id=path_or_hub_id, got {pair!r}")
        if model_id in models:
            raise ValueError(f"--model id {model_id!r} given twice")
        models[model_id] = location
    return models
