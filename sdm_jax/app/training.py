"""The MLAC training loop: ``train_and_evaluate(config, run_dir) -> summary``.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per
logged step and per validation), ``checkpoints/`` (orbax), ``summary.json`` and ``export/``.
Re-running the same command on the same directory resumes from the latest checkpoint and ends
with the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from sdm_jax import parallel
from sdm_jax.app.export import export_model
from sdm_jax.app.meta_batches import MetaBatchSource, validation_meta_batches
from sdm_jax.app.task import PreparedTask, describe, prepare_task
from sdm_jax.atomic import replace_directory, write_json_atomic, write_text_atomic
from sdm_jax.blocking import init_train_state, make_meta_objective, make_outer_step
from sdm_jax.checkpoint import (
    RunCheckpoints,
    UnreadableCheckpoint,
    append_jsonl,
    truncate_jsonl,
    validation_rank,
)
from sdm_jax.config import (
    Config,
    ConfigError,
    config_fingerprint,
    config_to_yaml,
    flat_items,
    ignored_keys,
)
from sdm_jax.metric_loggers import MetricSink, open_sink
from sdm_jax.run_lock import hold_run_lock

# Validation keys live far from the training steps' fold_in(rng, step) stream.
VALIDATION_KEY_OFFSET = 2**31


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the last checkpoint."""


def _mesh(config: Config):
    devices = jax.devices()
    wanted = config.parallel.data_devices or len(devices)
    if wanted > len(devices):
        raise ConfigError(f"parallel.data_devices: {wanted} requested, {len(devices)} visible "
                          f"({devices[0].platform}); use at most {len(devices)}")
    return parallel.make_mesh(devices[:wanted]) if wanted > 1 else None


def _host_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(dict(metrics)).items() if np.ndim(v) == 0}


def _first_non_finite(values: Mapping[str, float]) -> str | None:
    for name in ("loss/total", "grad_norm", "meta_grad_norm"):
        if name in values and not math.isfinite(values[name]):
            return name
    return None


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


class _Validator:
    """The outer loss (and every metric) on validation meta-batches: the same fixed ones every
    time, or (``train.validation: fresh``) new random ones per validation step, derived from
    the seed and the step so a resumed run validates on the same draws."""

    def __init__(self, task: PreparedTask, config: Config):
        objective = make_meta_objective(task.backbone, config.mlac, task.num_good, task.num_bad)
        self.config, self.val1 = config, task.splits["val1"]
        self.fresh = config.train.validation == "fresh"
        if not self.fresh:
            self.batches, self.keys = self._draw(0)

        def metrics_of(params, meta_params, original, meta_batch, key):
            _, metrics = objective(params, meta_params, original, meta_batch, key)
            return metrics

        self._metrics = jax.jit(metrics_of)

    def _draw(self, step: int) -> tuple[list, list]:
        train, mlac = self.config.train, self.config.mlac
        base = jax.random.PRNGKey(train.seed)
        if self.fresh:
            source = MetaBatchSource(self.val1, mlac, train.batch_size,
                                     seed=train.seed + VALIDATION_KEY_OFFSET + step)
            batches = [source.next() for _ in range(train.eval_batches)]
            base = jax.random.fold_in(base, step)
        else:
            batches = validation_meta_batches(self.val1, mlac, train.batch_size,
                                              train.eval_batches, train.seed)
        keys = [jax.random.fold_in(base, VALIDATION_KEY_OFFSET + i) for i in range(len(batches))]
        return batches, keys

    def __call__(self, state) -> dict[str, float]:
        batches, keys = self._draw(int(state.step)) if self.fresh else (self.batches, self.keys)
        runs = [
            self._metrics(state.params, state.meta_params, state.original_backbone, batch, key)
            for batch, key in zip(batches, keys, strict=True)
        ]
        # Every validation batch but maybe the last is full, so a plain mean is close enough
        # to the example-weighted one and keeps the metric definitions in one place.
        values = [_host_scalars(run) for run in runs]
        return {k: float(np.mean([v[k] for v in values])) for k in values[0]}


class _RunFiles:
    """The run directory's result files. Only process 0 writes them; checkpoints are orbax's,
    written by every process together."""

    def __init__(self, run_dir: Path, sink: MetricSink | None = None):
        self.run_dir, self.metrics = run_dir, run_dir / "metrics.jsonl"
        self.writer = jax.process_index() == 0
        self.sink = sink

    def write_config(self, config: Config) -> None:
        if self.writer:
            write_text_atomic(self.run_dir / "config.yaml", config_to_yaml(config))

    def truncate_metrics(self, last_step: int) -> None:
        if self.writer:
            truncate_jsonl(self.metrics, last_step)

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        if self.writer:
            append_jsonl(self.metrics, record)
            if self.sink is not None:
                self.sink.write(record)

    def export(self, task: PreparedTask, params, config: Config, step: int) -> Path:
        target = self.run_dir / "export"
        if self.writer:
            replace_directory(
                target, lambda staging: export_model(staging, task, params, config, step)
            )
        return target

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        if self.writer:
            write_json_atomic(self.run_dir / "summary.json", summary)


def _print(message: str, bar: tqdm | None) -> None:
    if jax.process_index() != 0:
        return
    if bar is not None and not bar.disable:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


def _kept_checkpoint(checkpoints: RunCheckpoints) -> str:
    last = checkpoints.latest_step()
    return (f"last good checkpoint: step {last} in {checkpoints.directory}" if last
            else "no checkpoint was written yet")


def _kept_best(checkpoints: RunCheckpoints, metadata: dict) -> tuple[float, int | None]:
    """(loss, step) of the best validation so far, as the latest checkpoint's metadata says.

    Runs written by releases whose retention ranked apart from the loop could lose that
    checkpoint; they continue from (and export) the best one that survived.
    """
    best_step = metadata.get("best_step")
    if best_step is None:
        return math.inf, None
    if best_step not in checkpoints.all_steps():
        lost, best_step = best_step, checkpoints.best_step()
        _print(f"note: the best checkpoint (step {lost}) was not kept; continuing from the "
               f"best kept one (step {best_step})", None)
        if best_step is None:
            return math.inf, None
        return checkpoints.read_metadata(best_step)["val_loss"], best_step
    return metadata["best_val_loss"], best_step


_TRAINING_FIGURES = ("last_train_metrics", "first_step_s", "steps_per_s", "final_validation")


def _training_figures(summary_path: Path) -> dict[str, Any]:
    """What the run that trained measured, for a re-run with no step left to take (which
    measures nothing): the earlier summary's figures, or none if it is missing or unreadable."""
    try:
        earlier = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict):
        return {}
    return {key: earlier[key] for key in _TRAINING_FIGURES if key in earlier}


def _latest_readable(checkpoints: RunCheckpoints, read) -> tuple[int, Any] | None:
    """``(step, read(step))`` for the newest step ``read`` can read; newer unreadable
    checkpoints (a disk error, a crash mid-write) are set aside as ``STEP.unreadable`` with a
    note, so the run goes on from the last good one. With several processes the error
    stands: one process cannot rename files the others are reading."""
    while (step := checkpoints.latest_step()) is not None:
        try:
            return step, read(step)
        except UnreadableCheckpoint as error:
            if jax.process_count() > 1:
                raise
            moved = checkpoints.set_aside(step)
            _print(f"note: {error}; moved it to {moved.name} and going on from the checkpoint "
                   "before it", None)
    return None


def run_checkpoints(config: Config, run_dir: str | Path) -> RunCheckpoints:
    """The checkpoints of the run in ``run_dir``, refusing those of an incompatible config."""
    return RunCheckpoints(Path(run_dir) / "checkpoints", config.train.keep_checkpoints,
                          config_fingerprint(config), flat_items(config), ignored_keys(config))


def train_and_evaluate(
    config: Config, run_dir: str | Path | None = None, *, progress: bool | None = None
) -> dict[str, Any]:
    """Train (or resume) the run in ``run_dir`` (default ``config.train.run_dir``).

    Returns the summary also written to ``summary.json``. ``progress``: show a tqdm bar
    (default: only on a terminal). Raises :class:`TrainingError` on a non-finite loss or
    gradient, after logging it; the last good checkpoint stays in place.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir if run_dir is not None else config.train.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} is a file; name a directory (new or a run's)")
    mesh = _mesh(config)
    task = prepare_task(config)  # data and model checked before any compute
    run_dir.mkdir(parents=True, exist_ok=True)
    # One lock per run, taken by the process that writes the run's files.
    lock = hold_run_lock(run_dir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:
        checkpoints = run_checkpoints(config, run_dir)
        try:
            newest = _latest_readable(checkpoints, checkpoints.read_metadata)
            if newest is not None:
                # Refuse another config before touching the run's files: its config.yaml must
                # keep describing the checkpoints it holds.
                checkpoints.check_compatible(newest[1], newest[0])
            # Metrics go to the extra logger from process 0 only, as metrics.jsonl does.
            logger = config.train.logger if jax.process_index() == 0 else "jsonl"
            sink = open_sink(logger, run_dir, config.train.wandb_project,
                             dataclasses.asdict(config))
        except BaseException:
            checkpoints.close()
            raise
        try:
            return _train_and_evaluate(config, task, mesh, run_dir, progress, started,
                                       checkpoints, sink)
        finally:
            checkpoints.close()  # again on success: closing twice is harmless
            if sink is not None:
                sink.close()


@dataclasses.dataclass
class LoopState:
    """What the loop tracks besides the train state. ``best_step``/``best_loss`` are the one
    record of the best validation: every checkpoint's metadata carries them, so a resumed run
    continues from them and the export reads them."""

    start: int = 0
    resumed_from: int | None = None
    best_loss: float = math.inf
    best_step: int | None = None
    last_validation: dict = dataclasses.field(default_factory=dict)
    last_train_metrics: dict = dataclasses.field(default_factory=dict)

    def consider(self, val_loss: float, step: int) -> None:
        """Make ``step`` the best if it ranks first (lower loss, then the earlier step)."""
        if self.best_step is None or (validation_rank(val_loss, step)
                                      < validation_rank(self.best_loss, self.best_step)):
            self.best_loss, self.best_step = val_loss, step

    @property
    def best_val_loss(self) -> float | None:
        return self.best_loss if self.best_step else None


class _StepTimer:
    """Compile time (the first step) and the mean step time of each logged interval."""

    def __init__(self):
        self.compile_s: float | None = None
        self.seconds, self.steps = 0.0, 0
        self._start, self._pending = time.perf_counter(), 0

    def stepped(self, metrics) -> None:
        self._pending += 1
        if self.compile_s is None:
            jax.block_until_ready(metrics)
            self.compile_s = time.perf_counter() - self._start
            self._start, self._pending = time.perf_counter(), 0

    def lap(self) -> float:
        """Mean seconds per step since the last lap; the interval counts towards the total."""
        elapsed = time.perf_counter() - self._start
        per_step = elapsed / max(self._pending, 1)
        self.seconds, self.steps = self.seconds + elapsed, self.steps + self._pending
        self._start, self._pending = time.perf_counter(), 0
        return per_step

    def figures(self) -> dict[str, float | None]:
        figures: dict[str, float | None] = {"first_step_s": self.compile_s}
        if self.steps:
            figures["steps_per_s"] = self.steps / max(self.seconds, 1e-9)
        return figures


class _Guard:
    """Stops the run with a :class:`TrainingError` naming the last good checkpoint when its
    numbers can no longer be trusted: active rows overflowed, or a loss, gradient, parameter
    or validation loss is not finite."""

    def __init__(self, checkpoints: RunCheckpoints, settings, start: int):
        self.checkpoints, self.active_rows = checkpoints, settings.active_rows
        # Summed on the device every step, read with the other metrics: an overflow between two
        # logged steps must not pass unnoticed.
        self.rows_missing, self.last_checked = jnp.zeros((), jnp.int32), start

    def stepped(self, metrics) -> None:
        self.rows_missing = self.rows_missing + metrics["active_rows_missing"]

    def _stop(self, message: str) -> TrainingError:
        return TrainingError(f"{message}, {_kept_checkpoint(self.checkpoints)}")

    def check_logged(self, step: int, values: Mapping[str, float], state, saving: bool) -> None:
        if int(self.rows_missing):
            raise self._stop(
                f"mlac.active_rows: {self.active_rows} rows are too few for the batches of "
                f"steps {self.last_checked + 1}-{step} ({int(self.rows_missing)} token "
                "occurrences did not fit, so those steps were inexact); raise it and re-run")
        self.last_checked = step
        broken = _first_non_finite(values)
        if broken is None and saving and not bool(_all_finite(state.params)):
            broken = "params"
        if broken is not None:
            raise self._stop(f"non-finite {broken} at step {step} ({values.get(broken)}); "
                             "training stopped")

    def check_validation(self, step: int, val: Mapping[str, float]) -> None:
        if not math.isfinite(val["loss/total"]):
            raise self._stop(f"non-finite validation loss at step {step} ({val['loss/total']});"
                             " training stopped")


def _restore(checkpoints: RunCheckpoints, state, source: MetaBatchSource, files: _RunFiles,
             run_dir: Path):
    """The state to start from and the loop's record: the newest readable checkpoint's, or a
    fresh start."""
    loop = LoopState()
    restored = _latest_readable(checkpoints, lambda step: checkpoints.restore(state, step))
    if restored is None:
        return state, loop
    state, samplers, metadata = restored[1]
    source.load_state_dict(samplers)
    loop.start = loop.resumed_from = int(metadata["step"])
    loop.best_loss, loop.best_step = _kept_best(checkpoints, metadata)
    files.truncate_metrics(loop.start)
    _print(f"resuming {run_dir} from step {loop.start} (best validation loss "
           f"{loop.best_loss:.4g} at step {loop.best_step})", None)
    return state, loop


def _train_and_evaluate(config: Config, task: PreparedTask, mesh, run_dir: Path,
                        progress: bool | None, started: float, checkpoints,
                        sink: MetricSink | None) -> dict[str, Any]:
    files = _RunFiles(run_dir, sink)
    files.write_config(config)
    settings, train = config.mlac, config.train

    step_fn = make_outer_step(task.backbone, settings, task.num_good, task.num_bad, mesh)
    state = init_train_state(task.backbone, task.backbone_params, task.num_good, task.num_bad,
                             settings, train.seed, head=task.head)
    if mesh is not None:
        # Replicated over the mesh from the start (restores keep it), as the step returns it:
        # one compilation, and on many hosts one global state.
        state = jax.device_put(state, parallel.replicated(mesh))
    source = MetaBatchSource(task.splits["train"], settings, train.batch_size, train.seed)
    validate = _Validator(task, config)
    state, loop = _restore(checkpoints, state, source, files, run_dir)

    hidden = None if progress is None else not progress
    bar = tqdm(total=train.outer_steps, initial=loop.start,
               disable=hidden if files.writer else True, dynamic_ncols=True, desc="outer steps")
    timer, guard = _StepTimer(), _Guard(checkpoints, settings, loop.start)
    try:
        state = _run_steps(config, state, loop, step_fn, source, validate, files, checkpoints,
                           mesh, bar, timer, guard)
    finally:
        bar.close()
    return _finish(config, task, state, loop, step_fn, timer, files, checkpoints, run_dir,
                   started)


def _run_steps(config: Config, state, loop: LoopState, step_fn, source, validate, files,
               checkpoints, mesh, bar, timer: _StepTimer, guard: _Guard):
    settings, train = config.mlac, config.train
    warned, end = False, train.stop_after or train.outer_steps
    for step in range(loop.start + 1, end + 1):
        meta_batch = source.next()
        if mesh is not None:
            meta_batch = parallel.put_meta_batch(meta_batch, mesh, settings.shared_outer_batch)
        state, metrics = step_fn(state, meta_batch)
        guard.stepped(metrics)
        timer.stepped(metrics)
        bar.update(1)
        if step_fn.trace_count > 1 and not warned:
            warned = True
            _print(f"warning: the outer step was compiled {step_fn.trace_count} times "
                   "(input shapes changed after the first step)", bar)

        validating = step % train.eval_every == 0 or step == train.outer_steps
        saving = validating or step % train.checkpoint_every == 0 or step == end
        if not (saving or step % train.log_every == 0):
            continue
        values = loop.last_train_metrics = _host_scalars(metrics)
        record = {"step": step, "kind": "train", **values, "step_time_s": timer.lap(),
                  "compilations": step_fn.trace_count}
        if step == loop.start + 1:
            record["first_step_s"] = timer.compile_s
        files.append_metrics(record)
        guard.check_logged(step, values, state, saving)
        bar.set_postfix(loss=f"{values['loss/total']:.4f}",
                        good_acc=f"{values.get('acc/good_base', float('nan')):.3f}", refresh=False)
        if validating:
            val = loop.last_validation = validate(state)
            files.append_metrics({"step": step, "kind": "validation",
                                  **{f"val/{k}": v for k, v in val.items()}})
            guard.check_validation(step, val)
            loop.consider(val["loss/total"], step)
            _print(f"step {step}: validation loss {val['loss/total']:.4f}, good accuracy "
                   f"{val.get('acc/good_base', float('nan')):.4f} (best {loop.best_loss:.4f} "
                   f"at step {loop.best_step})", bar)
        if saving:
            checkpoints.save(step, state, source.state_dict(),
                             loop.last_validation["loss/total"] if validating else None,
                             loop.best_step, extra={"best_val_loss": loop.best_val_loss})
    return state


def _finish(config: Config, task: PreparedTask, state, loop: LoopState, step_fn,
            timer: _StepTimer, files: _RunFiles, checkpoints, run_dir: Path,
            started: float) -> dict[str, Any]:
    """Export the best checkpoint of a finished run and write its summary."""
    final_step = int(jax.device_get(state.step))
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "task": describe(task),
        "final_step": final_step,
        "outer_steps": config.train.outer_steps,
        "resumed_from": loop.resumed_from,
        "stopped_early": final_step < config.train.outer_steps,
        "best_val_loss": loop.best_val_loss,
        "best_step": loop.best_step,
        "last_train_metrics": loop.last_train_metrics,
        "compilations": step_fn.trace_count,
        **timer.figures(),
        "wall_s": time.perf_counter() - started,
    }
    if not summary["stopped_early"]:
        export_step = _export_step(config.train.export, loop.best_step, final_step)
        exported = state
        if export_step != final_step:
            exported, _, _ = checkpoints.restore(state, export_step)
        summary["export_step"] = export_step
        summary["export_dir"] = str(files.export(task, exported.params, config, export_step))
        summary["final_validation"] = loop.last_validation
    if loop.start == final_step:
        summary.update(_training_figures(run_dir / "summary.json"))
    checkpoints.close()  # every checkpoint on disk before the summary says the run is done
    files.write_summary(summary)
    return summary


def _export_step(export: str, best_step: int | None, final_step: int) -> int:
    """The step a finished run exports under ``train.export``; a run never validated has no
    best step, so it exports its last."""
    if export == "last" or best_step is None:
        return final_step
    return best_step


def load_run_state(config: Config, run_dir: str | Path, step: int | None = None,
                   task: PreparedTask | None = None):
    """The train state of a run's checkpoint (default: the latest), e.g. to compare runs;
    ``task``: the run's prepared task, when the caller has it already."""
    task = task if task is not None else prepare_task(config)
    target = init_train_state(task.backbone, task.backbone_params, task.num_good,
                              task.num_bad, config.mlac, config.train.seed, head=task.head)
    checkpoints = run_checkpoints(config, run_dir)
    try:
        state, _, _ = checkpoints.restore(target, step)
    finally:
        checkpoints.close()
    return state
