"""Checkpoint round trip, retention, refusal of foreign or corrupt checkpoints, result files."""

from pathlib import Path

import jax
import numpy as np
import pytest

from sdm_jax.atomic import write_json_atomic
from sdm_jax.blocking import MLACSettings, init_train_state
from sdm_jax.checkpoint import (
    RestoreError,
    RunCheckpoints,
    append_jsonl,
    read_jsonl,
    truncate_jsonl,
)
from sdm_jax.models import mlp_backbone

SAMPLERS = {"outer": {"seed": 0, "epoch": 1, "cursor": 7, "draws": 9}}


def _state(width: int = 8):
    backbone = mlp_backbone(input_dim=5, width=width, depth=2)
    settings = MLACSettings(inner_steps=1, learn_head_init=True)
    return init_train_state(backbone, backbone.init(jax.random.PRNGKey(1)), 2, 2, settings, 3)


def _manager(directory: Path, fingerprint: str = "f1", items=None, keep: int = 2):
    return RunCheckpoints(directory, keep, fingerprint, items or {"model.mlp_width": 8})


def _equal(a, b) -> bool:
    same = jax.tree.map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a, b)
    return all(jax.tree.leaves(same))


def test_round_trip_and_retention(tmp_path: Path):
    state = _state()
    manager = _manager(tmp_path / "ckpt")
    for step, val_loss in [(1, 3.0), (2, None), (3, 1.0), (4, None), (5, 2.0), (6, None)]:
        manager.save(step, state, SAMPLERS, val_loss, best_step=1 if step < 3 else 3,
                     extra={"best_val_loss": 1.0})
    # latest two (5, 6) plus the one named best (3)
    assert manager.all_steps() == [3, 5, 6]
    assert manager.best_step() == 3
    restored, samplers, metadata = manager.restore(state)
    assert type(restored) is type(state)
    assert _equal(restored, state)
    assert samplers == SAMPLERS
    assert metadata["step"] == 6 and metadata["best_val_loss"] == 1.0
    manager.close()


def test_refuses_other_config_and_other_shapes(tmp_path: Path):
    manager = _manager(tmp_path / "ckpt")
    manager.save(4, _state(), SAMPLERS)
    manager.close()
    other = _manager(tmp_path / "ckpt", "f2", {"model.mlp_width": 16})
    with pytest.raises(RestoreError, match=r"different config \(model.mlp_width: 8 -> 16\)"):
        other.restore(_state(16))
    other.close()
    # Same fingerprint but a different architecture: the arrays themselves do not fit.
    same = _manager(tmp_path / "ckpt")
    fit_error = r"does not fit this model.s state \(.* has shape \(8, 2\) in the checkpoint, \(16"
    with pytest.raises(RestoreError, match=fit_error) as raised:
        same.restore(_state(16))
    assert "\n" not in str(raised.value)
    same.close()


def test_corrupt_checkpoint_is_one_clear_error(tmp_path: Path):
    manager = _manager(tmp_path / "ckpt")
    manager.save(2, _state(), SAMPLERS)
    for chunk in (tmp_path / "ckpt" / "2" / "state").rglob("d/*"):
        if chunk.is_file():
            chunk.write_bytes(b"not an array")
    with pytest.raises(RestoreError, match="unreadable") as raised:
        manager.restore(_state())
    assert "\n" not in str(raised.value)
    (tmp_path / "ckpt" / "2" / "metadata" / "metadata").write_text("{broken")
    with pytest.raises(RestoreError, match="metadata is unreadable"):
        manager.restore(_state())
    manager.close()


def test_result_files(tmp_path: Path):
    target = write_json_atomic(tmp_path / "out" / "summary.json", {"b": 1})
    assert target.read_text() == '{\n  "b": 1\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]
    log = tmp_path / "metrics.jsonl"
    for step in (1, 2, 3):
        append_jsonl(log, {"step": step})
    with open(log, "a") as file:
        file.write('{"step": 4, "lo')  # a line torn by a kill
    assert [r["step"] for r in read_jsonl(log)] == [1, 2, 3]
    truncate_jsonl(log, 2)
    assert [r["step"] for r in read_jsonl(log)] == [1, 2]
