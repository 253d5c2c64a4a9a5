"""Tokenisation: contract arrays, fixed length, and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from sdm_jax.data import (
    DEFAULT_MAX_LENGTH,
    DataError,
    DataSpec,
    load_task,
    suggest_max_length,
    token_lengths,
    tokenize_task,
    tokenizer_identity,
)
from sdm_jax.models.encoder import embedded_model_dir


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(embedded_model_dir()))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tokens")
    spec = DataSpec(path=str(cache), cache_dir=str(cache / "hf"), synthetic_train=600,
                    synthetic_dev=40, synthetic_test=60)  # fmt: skip
    return load_task(spec)


def test_contract_arrays(task, tokenizer):
    arrays = tokenize_task(task, tokenizer, max_length=32)
    assert set(arrays) == {"train", "val1", "val2", "test"}
    train = arrays["train"]
    assert set(train) == {"input_ids", "attention_mask", "token_type_ids", "good", "bad"}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert train[key].shape == (600, 32) and train[key].dtype == np.int32
    assert train["good"].dtype == np.int32 and train["bad"].shape == (600,)
    np.testing.assert_array_equal(train["good"], np.asarray(task.splits["train"]["good"]))
    assert (train["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    lengths = train["attention_mask"].sum(axis=1)
    # Long bios are cut to 32 and end with [SEP]; padding is 0 with a 0 mask.
    assert lengths.max() == 32 and lengths.min() < 32
    full = train["input_ids"][lengths == 32]
    assert (full[:, -1] == tokenizer.sep_token_id).all()
    short = np.argmin(lengths)
    assert (train["input_ids"][short, lengths[short] :] == tokenizer.pad_token_id).all()


def test_default_length_covers_95_percent_of_the_synthetic_corpus(task, tokenizer):
    lengths = token_lengths(task.splits["train"]["text"], tokenizer)
    assert suggest_max_length(lengths) == DEFAULT_MAX_LENGTH
    assert np.mean(lengths <= DEFAULT_MAX_LENGTH) >= 0.95
    assert suggest_max_length(np.array([10, 130, 140]), percentile=50) == 192


def test_cache_hit_skips_tokenisation(task, tokenizer, tmp_path, monkeypatch):
    first = tokenize_task(task, tokenizer, max_length=24, cache_dir=tmp_path)
    files = sorted(tmp_path.glob("tokens-*.npz"))
    assert len(files) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("tokenizer called despite a cache hit")

    monkeypatch.setattr(type(tokenizer), "__call__", refuse)
    second = tokenize_task(task, tokenizer, max_length=24, cache_dir=tmp_path)
    for split in first:
        for key in first[split]:
            np.testing.assert_array_equal(first[split][key], second[split][key])
            assert second[split][key].dtype == np.int32
    with pytest.raises(AssertionError, match="despite a cache hit"):
        tokenize_task(task, tokenizer, max_length=25, cache_dir=tmp_path)


def test_cache_key_follows_data_length_and_tokenizer(task, tokenizer, tmp_path):
    tokenize_task(task, tokenizer, max_length=16, cache_dir=tmp_path)
    tokenize_task(task, tokenizer, max_length=20, cache_dir=tmp_path)
    other = load_task(
        DataSpec(
            path=str(tmp_path / "other"),
            cache_dir=str(tmp_path / "hf"),
            synthetic_seed=1,
            synthetic_train=50,
            synthetic_dev=20,
            synthetic_test=20,
        )  # fmt: skip
    )
    tokenize_task(other, tokenizer, max_length=16, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("tokens-*.npz"))) == 3
    identity = tokenizer_identity(tokenizer)
    assert identity.startswith(tokenizer.name_or_path + "#")


def test_bad_arguments(task, tokenizer, tmp_path):
    with pytest.raises(DataError, match="max_length must be at least 2"):
        tokenize_task(task, tokenizer, max_length=1)
    broken = tmp_path / "broken"
    tokenize_task(task, tokenizer, max_length=12, cache_dir=broken)
    next(broken.glob("tokens-*.npz")).write_bytes(b"not an npz")
    with pytest.raises(DataError, match="unreadable token cache"):
        tokenize_task(task, tokenizer, max_length=12, cache_dir=broken)


def test_identity_ignores_call_settings_but_not_the_vocabulary(tokenizer):
    before = tokenizer_identity(tokenizer)
    tokenizer(["a b c"], padding="max_length", truncation=True, max_length=7)
    assert tokenizer_identity(tokenizer) == before
    other = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    other.add_tokens(["zzqqxx"])
    assert tokenizer_identity(other) != before
