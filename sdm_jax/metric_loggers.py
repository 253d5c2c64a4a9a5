"""Where training metrics go besides ``metrics.jsonl`` (always written): TensorBoard event
files or a Weights & Biases run, chosen by ``train.logger``. Each backend is imported only when
asked for, so neither is a dependency of the library."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from sdm_jax.config import ConfigError

TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_id.txt"
# Record keys that are not metrics.
_NOT_METRICS = ("step", "kind")


class MetricSink(Protocol):
    def write(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's numeric metrics under their ``metrics.jsonl`` names."""
    return {key: float(value) for key, value in record.items()
            if key not in _NOT_METRICS and isinstance(value, int | float)
            and not isinstance(value, bool)}


def _missing(kind: str, module: str, extra: str) -> ConfigError:
    return ConfigError(f"train.logger: {kind} needs the {module} package; install it with "
                       f"pip install 'sdm-jax[{extra}]' (or use train.logger=jsonl)")


class TensorBoardSink:
    """Event files in ``RUN/tensorboard`` (``tensorboard --logdir RUN/tensorboard``)."""

    def __init__(self, run_dir: Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboardX", "tensorboard") from None
        self.writer = SummaryWriter(logdir=str(run_dir / TENSORBOARD_DIR))

    def write(self, record: Mapping[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """One W&B run per run directory: its id is kept in ``RUN/wandb_id.txt``, so a resumed run
    logs into the same W&B run."""

    def __init__(self, run_dir: Path, project: str, config: Mapping[str, Any]):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb", "wandb") from None
        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        self.run = wandb.init(project=project, id=run_id, resume="allow", name=run_dir.name,
                              dir=str(run_dir), config=dict(config))
        if not id_file.is_file():
            id_file.write_text(run_id + "\n")

    def write(self, record: Mapping[str, Any]) -> None:
        self.run.log(scalars(record), step=record["step"])

    def close(self) -> None:
        self.run.finish()


def open_sink(kind: str, run_dir: Path, project: str,
              config: Mapping[str, Any]) -> MetricSink | None:
    """The extra sink ``train.logger`` asks for, or ``None`` for ``jsonl`` alone."""
    if kind == "tensorboard":
        return TensorBoardSink(run_dir)
    if kind == "wandb":
        return WandbSink(run_dir, project, config)
    return None
