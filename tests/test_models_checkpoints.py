"""Hugging Face checkpoint import/export: formats, strictness, hub resolution, round trips."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization
from safetensors.numpy import load_file, save_file

from sdm_jax.models import CheckpointError, load_encoder, save_pretrained
from sdm_jax.models.families import BERT

TINY_DIR = Path(__file__).parent / "fixtures" / "tiny_bert"
EXPECTED = dict(np.load(Path(__file__).parent / "fixtures" / "tiny_bert_expected.npz"))


def _leaves_equal(left, right) -> bool:
    flat_left, tree_left = jax.tree_util.tree_flatten(left)
    flat_right, tree_right = jax.tree_util.tree_flatten(right)
    return tree_left == tree_right and all(
        np.array_equal(a, b) for a, b in zip(flat_left, flat_right, strict=True)
    )


def _copy_with_tensors(tmp_path: Path, tensors: dict[str, np.ndarray]) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(TINY_DIR, target)
    (target / "model.safetensors").unlink()
    save_file(tensors, str(target / "model.safetensors"))
    return target


@pytest.fixture(scope="module")
def tiny():
    return load_encoder(TINY_DIR)


@pytest.fixture()
def tiny_tensors():
    return load_file(str(TINY_DIR / "model.safetensors"))


def test_save_then_load_gives_identical_params(tiny, tmp_path):
    out = save_pretrained(tmp_path / "export", tiny.params, tiny.config, tiny.tokenizer)
    again = load_encoder(out)
    assert _leaves_equal(tiny.params, again.params)
    assert again.config == tiny.config
    assert again.tokenizer("a nurse")["input_ids"] == tiny.tokenizer("a nurse")["input_ids"]


def test_export_uses_hugging_face_names_and_shapes(tiny, tiny_tensors, tmp_path):
    out = save_pretrained(tmp_path / "export", tiny.params, tiny.config, tiny.tokenizer)
    exported = load_file(str(out / "model.safetensors"))
    source = {k: v.shape for k, v in tiny_tensors.items() if not BERT.skipped_keys.match(k)}
    assert {k: v.shape for k, v in exported.items()} == source
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]


def test_export_replaces_an_existing_directory_whole(tiny, tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    save_pretrained(target, tiny.params, tiny.config)
    assert not (target / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]


def test_transformers_loads_the_export(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import BertModel

    out = save_pretrained(tmp_path / "export", tiny.params, tiny.config, tiny.tokenizer)
    model = BertModel.from_pretrained(str(out)).eval()
    inputs = {k: torch.from_numpy(EXPECTED[k]).long()
              for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        pooled = model(**inputs).pooler_output.numpy()
    np.testing.assert_allclose(pooled, EXPECTED["pooler_output"], atol=1e-4)


def test_flax_msgpack_checkpoint(tiny, tmp_path):
    for wrapped in (False, True):
        target = tmp_path / f"flax_{wrapped}"
        shutil.copytree(TINY_DIR, target)
        (target / "model.safetensors").unlink()
        tree = jax.device_get(tiny.params)
        tree = {"bert": tree} if wrapped else tree
        (target / "flax_model.msgpack").write_bytes(serialization.msgpack_serialize(tree))
        assert _leaves_equal(load_encoder(target).params, tiny.params)


def test_prefixed_checkpoint_with_pretraining_heads(tiny, tiny_tensors, tmp_path):
    tensors = {f"bert.{k}": v for k, v in tiny_tensors.items()}
    tensors["cls.predictions.bias"] = np.zeros(7, np.float32)
    tensors["bert.embeddings.position_ids"] = np.arange(64, dtype=np.int64)[None]
    assert _leaves_equal(load_encoder(_copy_with_tensors(tmp_path, tensors)).params, tiny.params)


def test_pytorch_bin_without_torch_fails_clearly(tmp_path, monkeypatch):
    target = tmp_path / "bin"
    shutil.copytree(TINY_DIR, target)
    (target / "model.safetensors").rename(target / "pytorch_model.bin")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(CheckpointError, match="needs PyTorch"):
        load_encoder(target)


def test_missing_key_is_named(tiny_tensors, tmp_path):
    del tiny_tensors["pooler.dense.weight"]
    with pytest.raises(CheckpointError, match="missing 1 key.*pooler.dense.weight"):
        load_encoder(_copy_with_tensors(tmp_path, tiny_tensors))


def test_unexpected_key_is_named(tiny_tensors, tmp_path):
    tiny_tensors["decoder.weight"] = np.zeros((2, 32), np.float32)
    with pytest.raises(CheckpointError, match="unexpected key 'decoder.weight'"):
        load_encoder(_copy_with_tensors(tmp_path, tiny_tensors))


def test_shape_mismatch_is_named(tiny_tensors, tmp_path):
    tiny_tensors["embeddings.token_type_embeddings.weight"] = np.zeros((3, 32), np.float32)
    with pytest.raises(CheckpointError, match="token_type_embeddings.weight' has shape"):
        load_encoder(_copy_with_tensors(tmp_path, tiny_tensors))


def test_other_architecture_is_refused(tmp_path):
    target = tmp_path / "gpt"
    shutil.copytree(TINY_DIR, target)
    config = json.loads((target / "config.json").read_text())
    config.update(model_type="gpt2", architectures=["GPT2Model"])
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError,
                       match="'gpt2'.*is not supported; sdm-jax loads bert, roberta encoders"):
        load_encoder(target)


def test_corrupt_weights_and_missing_files(tmp_path):
    target = tmp_path / "corrupt"
    shutil.copytree(TINY_DIR, target)
    (target / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_encoder(target)
    (target / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        load_encoder(target)
    (target / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_encoder(target)
    with pytest.raises(CheckpointError, match="no such model directory"):
        load_encoder(tmp_path / "does" / "not" / "exist")


def test_hub_id_offline_miss_says_how_to_get_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="hf download someone/absent-bert"):
        load_encoder("someone/absent-bert")


def test_hub_id_offline_cache_hit_loads(tiny, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-bert"
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    shutil.copytree(TINY_DIR, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    assert _leaves_equal(load_encoder("someone/tiny-bert").params, tiny.params)
