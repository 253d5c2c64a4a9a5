"""Loaders: hub (local folder and stand-in), BIOS.pkl, local files, splits, scrubbing."""

from __future__ import annotations

import json
import pickle

import datasets
import numpy as np
import pandas as pd
import pytest

from sdm_jax.data import DataError, DataSpec, SyntheticSpec, generate_synthetic, load_task
from sdm_jax.data import sources as sources_module
from sdm_jax.data.sources import split_sizes


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """A folder in the LabHC/bias_in_bios layout (train/dev/test parquet)."""
    out = tmp_path_factory.mktemp("hub")
    return generate_synthetic(out, SyntheticSpec(seed=5, train=200, dev=41, test=60))


def _texts(dataset) -> list[str]:
    return list(dataset["text"])


def test_hub_layout_loads_with_dev_halved(hub_folder, tmp_path):
    spec = DataSpec(source="hub", hub_name=str(hub_folder), cache_dir=str(tmp_path))
    task = load_task(spec)
    sizes = {name: len(split) for name, split in task.splits.items()}
    assert sizes == {"train": 200, "val1": 20, "val2": 21, "test": 60}
    assert not set(_texts(task.splits["val1"])) & set(_texts(task.splits["val2"]))
    assert task.splits["train"].features["good"].dtype == "int32"
    assert task.good_names[21] == "professor" and task.bad_names == ("male", "female")
    assert task.source == f"hub:{hub_folder}"
    again = load_task(spec)
    assert again.fingerprint == task.fingerprint
    assert _texts(again.splits["val1"]) == _texts(task.splits["val1"])


def test_hub_and_local_files_give_the_same_content(hub_folder, tmp_path):
    files = {f"{s}_file": str(hub_folder / f"{s}.parquet") for s in ("train", "dev", "test")}
    local = load_task(DataSpec(source="local", cache_dir=str(tmp_path), **files))
    hub = load_task(DataSpec(source="hub", hub_name=str(hub_folder), cache_dir=str(tmp_path)))
    assert local.fingerprint == hub.fingerprint


def test_hub_calls_load_dataset_with_the_real_name(monkeypatch, hub_folder):
    calls = []
    table = datasets.load_dataset(str(hub_folder))

    def fake_load_dataset(name, revision=None, cache_dir=None):
        calls.append((name, revision))
        return datasets.DatasetDict(
            {"train": table["train"], "dev": table["validation"], "test": table["test"]}
        )

    monkeypatch.setattr(sources_module.datasets, "load_dataset", fake_load_dataset)
    task = load_task(DataSpec(source="hub", hub_revision="main"))
    assert calls == [("LabHC/bias_in_bios", "main")]
    assert len(task.splits["val1"]) + len(task.splits["val2"]) == 41


def test_offline_hub_miss_fails_in_one_line(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="LabHC/bias_in_bios") as caught:
        load_task(DataSpec(source="hub", cache_dir=str(tmp_path)))
    assert "\n" not in str(caught.value) and "synthetic" in str(caught.value)


def _bios_rows(count: int) -> list[dict]:
    titles = ["nurse", "professor", "software_engineer", "yoga_teacher"]
    return [
        {
            "raw": f"Bio {i}: She is a {titles[i % 4]}. Her work and his HIM himself.",
            "title": titles[i % 4],
            "gender": "F" if i % 3 else "M",
            "start_pos": 7,
            "name": ("Ann", "", "Lee"),
        }
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("as_frame", "scrub", "scrubbed"),
    [
        (False, None, "Bio 1: They is a professor. Their work and their HIM himself."),
        (True, None, "Bio 1: They is a professor. Their work and their HIM himself."),
        (False, "thorough", "Bio 1: They is a professor. Their work and their THEIR themself."),
    ],
)
def test_bios_pkl_is_split_85_5_10_and_scrubbed(tmp_path, as_frame, scrub, scrubbed):
    rows = _bios_rows(200)
    with (tmp_path / "BIOS.pkl").open("wb") as handle:
        pickle.dump(pd.DataFrame(rows) if as_frame else rows, handle)
    mode = {} if scrub is None else {"scrub": scrub}  # None: the default, reference
    spec = DataSpec(source="bios_pkl", path=str(tmp_path / "BIOS.pkl"), **mode)
    task = load_task(spec)
    assert {k: len(v) for k, v in task.splits.items()} == {
        "train": 170, "val1": 5, "val2": 5, "test": 20}  # fmt: skip
    every = sum((_texts(split) for split in task.splits.values()), [])
    assert len(set(every)) == 200
    first = next(t for t in every if t.startswith("Bio 1:"))
    assert first == scrubbed
    row = task.splits["train"][0]
    index = int(row["text"].split(":")[0].split()[1])
    assert task.good_names[row["good"]] == rows[index]["title"]
    assert row["bad"] == (1 if rows[index]["gender"] == "F" else 0)
    assert load_task(spec).fingerprint == task.fingerprint


def test_scrub_modes_give_different_fingerprints_where_texts_differ(tmp_path):
    """The token cache key hashes the fingerprint, so one mode's tokens are never reused for
    the other's texts; identical texts share a fingerprint (and a cache entry) by design."""
    path = tmp_path / "BIOS.pkl"
    with path.open("wb") as handle:
        pickle.dump(_bios_rows(40), handle)
    prints = {mode: load_task(DataSpec(source="bios_pkl", path=str(path), scrub=mode)).fingerprint
              for mode in ("reference", "thorough")}  # fmt: skip
    off = load_task(DataSpec(source="bios_pkl", path=str(path), scrub_pronouns=False))
    assert len({*prints.values(), off.fingerprint}) == 3
    with path.open("wb") as handle:
        pickle.dump([row | {"raw": row["raw"].replace(" HIM himself.", " too.")}
                     for row in _bios_rows(40)], handle)  # fmt: skip
    same = {load_task(DataSpec(source="bios_pkl", path=str(path), scrub=mode)).fingerprint
            for mode in ("reference", "thorough")}  # fmt: skip
    assert len(same) == 1


def test_unknown_scrub_mode_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"unknown scrub mode 'full' \(use one of reference, "):
        load_task(DataSpec(path=str(tmp_path), scrub="full"))


def test_split_sizes_match_the_reference_shares():
    assert split_sizes(1000) == (850, 50, 100)
    assert sum(split_sizes(397_907)) == 397_907


def test_local_single_file_with_column_mapping_and_label_names(tmp_path):
    path = tmp_path / "reviews.jsonl"
    with path.open("w") as handle:
        for i in range(100):
            row = {"body": f"Review {i} he liked it", "stars": ["neg", "POS"][i % 2], "lang": i % 3}
            handle.write(json.dumps(row) + "\n")
    spec = DataSpec(
        source="local", path=str(path), cache_dir=str(tmp_path / "hf"), text_column="body",
        good_label_column="stars", bad_label_column="lang", good_names=("neg", "pos"),
        bad_names=("en", "fr", "de"), scrub_pronouns=False,
    )  # fmt: skip
    task = load_task(spec)
    assert {k: len(v) for k, v in task.splits.items()} == {
        "train": 85, "val1": 2, "val2": 3, "test": 10}  # fmt: skip
    for split in task.splits.values():
        for row in split:
            index = int(row["text"].split()[1])
            assert row["good"] == index % 2 and row["bad"] == index % 3
            assert row["text"].endswith("he liked it")
    assert task.bad_names == ("en", "fr", "de")


def test_local_csv_per_split_and_example_caps(tmp_path):
    for split, count in (("train", 40), ("dev", 12), ("test", 15)):
        frame = pd.DataFrame({"hard_text": [f"{split} {i} She sings" for i in range(count)],
                              "profession": [i % 28 for i in range(count)],
                              "gender": [i % 2 for i in range(count)]})  # fmt: skip
        frame.to_csv(tmp_path / f"{split}.csv", index=False)
    files = {f"{s}_file": str(tmp_path / f"{s}.csv") for s in ("train", "dev", "test")}
    spec = DataSpec(source="local", cache_dir=str(tmp_path / "hf"), train_examples=10,
                    eval_examples=4, **files)  # fmt: skip
    task = load_task(spec)
    assert {k: len(v) for k, v in task.splits.items()} == {
        "train": 10, "val1": 4, "val2": 4, "test": 4}  # fmt: skip
    assert all(t.endswith("They sings") for t in _texts(task.splits["train"]))
    assert load_task(spec).fingerprint == task.fingerprint


def test_synthetic_source_generates_once_into_its_cache(tmp_path):
    spec = DataSpec(path=str(tmp_path), cache_dir=str(tmp_path / "hf"), synthetic_train=120,
                    synthetic_dev=20, synthetic_test=30)  # fmt: skip
    task = load_task(spec)
    folders = [p for p in tmp_path.iterdir() if p.name.startswith("synthetic-")]
    assert len(folders) == 1
    stamp = (folders[0] / "train.parquet").stat().st_mtime_ns
    assert load_task(spec).fingerprint == task.fingerprint
    assert (folders[0] / "train.parquet").stat().st_mtime_ns == stamp
    labels = np.asarray(task.splits["train"]["good"])
    assert labels.min() >= 0 and labels.max() < 28
    assert task.source == f"synthetic:{folders[0]}"
