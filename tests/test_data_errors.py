"""Bad input fails before any compute, with one DataError line naming file, column and row."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sdm_jax.data import DataError, DataSpec, load_task


def _write(path, texts, professions, genders) -> str:
    table = pa.table({"hard_text": texts, "profession": professions, "gender": genders})
    pq.write_table(table, path)
    return str(path)


def _good_file(path, count: int = 30) -> str:
    return _write(path, [f"text {i}" for i in range(count)], [i % 28 for i in range(count)],
                  [i % 2 for i in range(count)])  # fmt: skip


def _load_single(tmp_path, path, **options):
    return load_task(DataSpec(source="local", path=str(path), cache_dir=str(tmp_path / "hf"),
                              **options))  # fmt: skip


def _one_line(caught) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_column(tmp_path):
    path = _good_file(tmp_path / "data.parquet")
    with pytest.raises(DataError) as caught:
        _load_single(tmp_path, path, text_column="bio")
    message = _one_line(caught)
    assert path in message and "missing column 'bio'" in message and "hard_text" in message


def test_non_string_text(tmp_path):
    path = _write(tmp_path / "data.parquet", ["a", "b", None, "d"], [0, 1, 2, 3], [0, 1, 0, 1])
    with pytest.raises(DataError) as caught:
        _load_single(tmp_path, path)
    message = _one_line(caught)
    assert path in message and "'hard_text'" in message and "row 2" in message


def test_label_out_of_range(tmp_path):
    path = _write(tmp_path / "data.parquet", ["a", "b", "c"], [0, 28, 1], [0, 1, 0])
    with pytest.raises(DataError) as caught:
        _load_single(tmp_path, path)
    message = _one_line(caught)
    assert path in message and "'profession'" in message and "row 1" in message
    assert "0..27" in message


def test_unknown_label_name(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("hard_text,profession,gender\na,nurse,female\nb,astronaut,male\n")
    with pytest.raises(DataError) as caught:
        _load_single(tmp_path, path)
    message = _one_line(caught)
    assert str(path) in message and "row 1" in message and "'astronaut'" in message


def test_bad_gender_code_in_bios_pkl(tmp_path):
    rows = [{"raw": "x", "title": "nurse", "gender": "F"}, {"raw": "y", "title": "poet",
            "gender": "X"}]  # fmt: skip
    path = tmp_path / "BIOS.pkl"
    path.write_bytes(pickle.dumps(rows))
    with pytest.raises(DataError) as caught:
        load_task(DataSpec(source="bios_pkl", path=str(path)))
    message = _one_line(caught)
    assert str(path) in message and "'gender'" in message and "row 1" in message


def test_empty_split(tmp_path):
    files = {f"{s}_file": _good_file(tmp_path / f"{s}.parquet") for s in ("train", "dev")}
    files["test_file"] = _write(tmp_path / "test.parquet", pa.array([], pa.string()),
                                pa.array([], pa.int64()), pa.array([], pa.int64()))  # fmt: skip
    with pytest.raises(DataError) as caught:
        load_task(DataSpec(source="local", cache_dir=str(tmp_path / "hf"), **files))
    message = _one_line(caught)
    assert files["test_file"] in message and "split 'test' is empty" in message


def test_single_file_too_small_for_validation(tmp_path):
    path = _good_file(tmp_path / "data.parquet", count=8)
    with pytest.raises(DataError, match="split 'val1' is empty"):
        _load_single(tmp_path, path)


def test_more_examples_than_the_split_holds(tmp_path):
    path = _good_file(tmp_path / "data.parquet", count=100)
    with pytest.raises(DataError) as caught:
        _load_single(tmp_path, path, train_examples=86)
    message = _one_line(caught)
    assert path in message and "train_examples=86" in message and "has 85 examples" in message


def test_unreadable_missing_and_unsupported_files(tmp_path):
    corrupt = tmp_path / "data.parquet"
    corrupt.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="cannot read as parquet") as caught:
        _load_single(tmp_path, corrupt)
    assert str(corrupt) in _one_line(caught)
    with pytest.raises(DataError, match="file not found"):
        _load_single(tmp_path, tmp_path / "absent.jsonl")
    with pytest.raises(DataError, match="unsupported file type"):
        _load_single(tmp_path, tmp_path / "data.xlsx")
    with pytest.raises(DataError, match="cannot read pickle"):
        load_task(DataSpec(source="bios_pkl", path=str(corrupt)))


def test_bad_specs(tmp_path):
    with pytest.raises(DataError, match="unknown data source 'web'"):
        load_task(DataSpec(source="web"))
    with pytest.raises(DataError, match="bad_names must hold at least two distinct names"):
        load_task(DataSpec(bad_names=("x", "x")))
    with pytest.raises(DataError, match="missing dev_file, test_file"):
        load_task(DataSpec(source="local", train_file="a.csv"))
    with pytest.raises(DataError, match="needs path"):
        load_task(DataSpec(source="bios_pkl"))
    with pytest.raises(DataError, match="either path"):
        load_task(DataSpec(source="local", path="a.csv", train_file="b.csv"))


def test_header_only_csv_is_an_empty_split(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("hard_text,profession,gender\n\n")
    with pytest.raises(DataError) as caught:
        _load_single(tmp_path, path)
    assert str(path) in _one_line(caught) and "is empty" in str(caught.value)


def test_number_among_jsonl_texts(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [f'{{"hard_text": {text}, "profession": 1, "gender": 0}}' for text in ('"a"', "5")]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as caught:
        _load_single(tmp_path, path)
    message = _one_line(caught)
    assert str(path) in message and "row 1" in message and "got int" in message
