"""The synthetic Bias in Bios corpus: schema, determinism, and how hard its two tasks are."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from sdm_jax.data import (
    FEMALE_SHARES,
    PROFESSION_SHARES,
    PROFESSIONS,
    DataError,
    DataSpec,
    SyntheticSpec,
    generate_synthetic,
    load_task,
)
from sdm_jax.data.names import FEMALE_NAMES, MALE_NAMES
from sdm_jax.data.synthetic import allocate, main

# Big enough for stable accuracies, small enough to fit the test budget on two slow cores.
KINSHIP = {"husband", "wife", "mother", "father", "son", "daughter", "sons", "daughters"}
SIZES = {"synthetic_train": 8_000, "synthetic_dev": 600, "synthetic_test": 2_000}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synthetic")
    spec = DataSpec(path=str(cache), cache_dir=str(cache / "hf"), **SIZES)
    task = load_task(spec)
    train, test = task.splits["train"], task.splits["test"]
    vectorizer = CountVectorizer(binary=True)
    return {
        "task": task,
        "train_x": vectorizer.fit_transform(train["text"]),
        "test_x": vectorizer.transform(test["text"]),
        "train": {key: np.asarray(train[key]) for key in ("good", "bad")},
        "test": {key: np.asarray(test[key]) for key in ("good", "bad")},
    }


def _accuracy(corpus, label: str, rows=None) -> float:
    features, targets = corpus["train_x"], corpus["train"][label]
    if rows is not None:
        features, targets = features[rows], targets[rows]
    model = LogisticRegression(max_iter=300, tol=1e-3).fit(features, targets)
    return float(model.score(corpus["test_x"], corpus["test"][label]))


def test_profession_is_learnable_but_not_trivial(corpus):
    accuracy = _accuracy(corpus, "good")
    print(f"profession full-train accuracy {accuracy:.4f}")
    assert 0.75 <= accuracy <= 0.97


def test_scrubbed_gender_needs_prior_knowledge(corpus):
    full = _accuracy(corpus, "bad")
    size = len(corpus["train"]["bad"])
    few = [
        _accuracy(corpus, "bad", np.random.default_rng(seed).choice(size, 100, replace=False))
        for seed in range(5)
    ]
    print(f"gender full-train accuracy {full:.4f}, 100-example accuracy {np.mean(few):.4f}")
    assert full >= 0.80
    assert np.mean(few) <= 0.65


def test_gender_shares_follow_the_table(corpus):
    task = corpus["task"]
    good = np.concatenate([np.asarray(task.splits[s]["good"]) for s in task.splits])
    bad = np.concatenate([np.asarray(task.splits[s]["bad"]) for s in task.splits])
    deviations = {}
    for index, name in enumerate(PROFESSIONS):
        mask = good == index
        if mask.sum() >= 50:
            deviations[name] = abs(bad[mask].mean() - FEMALE_SHARES[name])
    print(f"max female-share deviation {max(deviations.values()):.4f} over {len(deviations)}")
    assert len(deviations) >= 20
    assert max(deviations.values()) <= 0.05


def test_profession_frequencies_are_unbalanced_like_the_real_ones(corpus):
    good = corpus["train"]["good"]
    shares = np.bincount(good, minlength=len(PROFESSIONS)) / len(good)
    share = dict(zip(PROFESSIONS, shares, strict=True))
    assert 0.27 <= share["professor"] <= 0.33
    assert 0.08 <= share["physician"] <= 0.12
    for rare in ("rapper", "dj", "personal_trainer", "interior_designer"):
        assert 0 < share[rare] < 0.004


def test_same_seed_same_bytes_other_seed_other_text(tmp_path):
    spec = SyntheticSpec(seed=3, train=300, dev=60, test=90)
    first, second = (
        generate_synthetic(tmp_path / "a", spec),
        generate_synthetic(tmp_path / "b", spec),
    )
    other = generate_synthetic(tmp_path / "c", SyntheticSpec(seed=4, train=300, dev=60, test=90))
    for name in ("train.parquet", "dev.parquet", "test.parquet", "metadata.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "train.parquet").read_bytes() != (other / "train.parquet").read_bytes()


def test_files_follow_the_hub_schema_and_metadata(tmp_path):
    out = generate_synthetic(tmp_path, SyntheticSpec(seed=1, train=500, dev=50, test=80))
    table = pq.read_table(out / "train.parquet")
    assert table.column_names == ["hard_text", "profession", "gender"]
    assert table.num_rows == 500
    assert set(table.column("gender").to_pylist()) == {0, 1}
    assert 0 <= min(table.column("profession").to_pylist())
    assert max(table.column("profession").to_pylist()) <= 27
    sentences = [text.count(". ") + 1 for text in table.column("hard_text").to_pylist()]
    assert 2 <= min(sentences) and max(sentences) <= 5
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["spec"]["seed"] == 1
    assert metadata["sizes"] == {"train": 500, "dev": 50, "test": 80}
    assert metadata["generator_version"]
    assert set(metadata["female_shares_generated"]) == set(PROFESSIONS)


def test_command_line_writes_the_corpus(tmp_path):
    main(["--out", str(tmp_path), "--seed", "2", "--train", "120", "--dev", "30", "--test", "40"])
    assert pq.read_table(tmp_path / "dev.parquet").num_rows == 30
    assert json.loads((tmp_path / "metadata.json").read_text())["spec"]["seed"] == 2


def test_name_lists_and_tables():
    assert len(FEMALE_NAMES) >= 300 and len(MALE_NAMES) >= 300
    assert not set(FEMALE_NAMES) & set(MALE_NAMES)
    assert len(PROFESSIONS) == 28 and set(PROFESSION_SHARES) == set(PROFESSIONS)


def test_bios_carry_names_pronouns_and_sometimes_kinship(tmp_path):
    out = generate_synthetic(tmp_path, SyntheticSpec(seed=0, train=2000, dev=10, test=10))
    table = pq.read_table(out / "train.parquet").to_pydict()
    names = set(FEMALE_NAMES) | set(MALE_NAMES)
    words = [set(text.replace(".", " ").replace(",", " ").split()) for text in table["hard_text"]]
    named = np.mean([bool(w & names) for w in words])
    kin = np.mean([bool(w & KINSHIP) for w in words])
    pronouns = np.mean([bool(w & {"he", "she", "He", "She", "his", "her", "His", "Her"})
                        for w in words])  # fmt: skip
    no_cue = np.mean([not (w & names) and not (w & KINSHIP) for w in words])
    assert 0.7 <= named <= 0.9
    assert 0.02 <= kin <= 0.12
    assert no_cue >= 0.1
    assert pronouns >= 0.8


def test_allocation_is_exact_and_sizes_must_be_positive(tmp_path):
    assert allocate(10, [1.0, 1.0, 1.0]) == [4, 3, 3]
    assert sum(allocate(997, list(PROFESSION_SHARES.values()))) == 997
    with pytest.raises(DataError, match="split dev size must be positive"):
        generate_synthetic(tmp_path, SyntheticSpec(dev=0))
