"""train.logger: TensorBoard event files and a W&B run carry the metrics.jsonl numbers."""

from __future__ import annotations

import json
import struct
import sys
import types
from pathlib import Path

import pytest

from sdm_jax.app.training import train_and_evaluate
from sdm_jax.config import ConfigError
from sdm_jax.metric_loggers import TENSORBOARD_DIR, WANDB_ID_FILE, scalars
from tests.toy_runs import small_config


def _jsonl_scalars(run_dir: Path) -> dict[tuple[str, int], float]:
    values = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        values.update({(tag, record["step"]): v for tag, v in scalars(record).items()})
    return values


def _event_scalars(log_dir: Path) -> dict[tuple[str, int], float]:
    """Scalars of TFRecord event files: length, crc, Event proto, crc per record."""
    from tensorboardX.proto.event_pb2 import Event

    values = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                values[(value.tag, event.step)] = value.simple_value
    return values


def test_tensorboard_events_hold_every_logged_metric(tmp_path):
    pytest.importorskip("tensorboardX")
    train_and_evaluate(small_config("train.logger=tensorboard"), tmp_path, progress=False)
    logged, events = _jsonl_scalars(tmp_path), _event_scalars(tmp_path / TENSORBOARD_DIR)
    assert ("loss/total", 1) in logged and ("val/loss/total", 6) in logged
    assert events.keys() == logged.keys()
    assert all(events[key] == pytest.approx(value, rel=1e-6, abs=1e-30)
               for key, value in logged.items())


class _FakeWandb(types.ModuleType):
    """Records what the sink asks of ``wandb``."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logged, self.finished = [], [], 0
        self.util = types.SimpleNamespace(generate_id=lambda: "abc123")

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return types.SimpleNamespace(log=lambda metrics, step: self.logged.append((step, metrics)),
                                     finish=self._finish)

    def _finish(self):
        self.finished += 1


def test_wandb_run_gets_the_same_metrics_and_a_resumed_run_keeps_its_id(tmp_path, monkeypatch):
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    config = small_config("train.logger=wandb", "train.wandb_project=blocking")
    train_and_evaluate(small_config("train.logger=wandb", "train.wandb_project=blocking",
                                    "train.stop_after=3"), tmp_path, progress=False)
    train_and_evaluate(config, tmp_path, progress=False)
    assert [init["id"] for init in fake.inits] == ["abc123", "abc123"]
    assert fake.inits[0]["project"] == "blocking" and fake.inits[0]["resume"] == "allow"
    assert fake.inits[1]["config"]["mlac"]["inner_steps"] == 2
    assert (tmp_path / WANDB_ID_FILE).read_text() == "abc123\n" and fake.finished == 2
    from_wandb = {(tag, step): v for step, metrics in fake.logged for tag, v in metrics.items()}
    assert from_wandb.items() >= _jsonl_scalars(tmp_path).items()


def test_a_missing_logger_package_is_named_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"^train.logger: wandb needs the wandb package; "
                                          r"install it with pip install 'sdm-jax\[wandb\]'"):
        train_and_evaluate(small_config("train.logger=wandb"), tmp_path, progress=False)
    assert not (tmp_path / "metrics.jsonl").exists()
    assert not list((tmp_path / "checkpoints").glob("[0-9]*"))


def test_an_unknown_logger_is_refused():
    with pytest.raises(ConfigError, match="train.logger: must be one of jsonl, tensorboard, "
                                          "wandb, got 'mlflow'$"):
        small_config("train.logger=mlflow")
