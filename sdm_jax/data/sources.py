"""Load Bias in Bios (hub, original pickle, synthetic) or any local labelled text into one form.

Every source becomes a :class:`TaskData`: splits ``train``, ``val1``, ``val2``, ``test``, each a
``datasets.Dataset`` with columns ``text`` (str), ``good`` and ``bad`` (int32 label indices into
``good_names``/``bad_names``). Checks run on the raw rows before anything else, and bad input
raises :class:`~sdm_jax.data.errors.DataError` in one line naming the file, column and row
(rows count from 0 in file order). Pronoun scrubbing (:mod:`~sdm_jax.data.scrub`, mode
``scrub``) is applied here, once, for every source; the fingerprint hashes the scrubbed texts,
so token caches built from the other mode's texts are never reused.

Splits. Sources with train/dev/test files keep train and test and halve dev into val1/val2
(seed-``seed`` permutation, first half val1). A single file or ``BIOS.pkl`` is split like the
reference: seed-``seed`` shuffle, 85% train, 5% validation halved into val1/val2, 10% test.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sdm_jax.data.bios_tables import GENDERS, PROFESSIONS
from sdm_jax.data.errors import DataError
from sdm_jax.data.scrub import SCRUB_MODES, scrub_pronouns
from sdm_jax.data.synthetic import SyntheticSpec, synthetic_dir

SPLITS = ("train", "val1", "val2", "test")
SOURCES = ("synthetic", "hub", "bios_pkl", "local")
HUB_NAME = "LabHC/bias_in_bios"
DEFAULT_CACHE = Path(os.environ.get("SDM_JAX_CACHE", Path.home() / ".cache" / "sdm_jax"))

# (text, good label, bad label) column names when the spec leaves them unset.
_DEFAULT_COLUMNS = {
    "synthetic": ("hard_text", "profession", "gender"),
    "hub": ("hard_text", "profession", "gender"),
    "local": ("hard_text", "profession", "gender"),
    "bios_pkl": ("raw", "title", "gender"),
}
_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_TRAIN_SHARE, _VAL_SHARE = 0.85, 0.05
_OUTPUT_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "good": datasets.Value("int32"),
     "bad": datasets.Value("int32")}
)  # fmt: skip


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how to read it (the ``data:`` section of a config).

    source: ``synthetic`` (generated offline, the default), ``hub`` (``hub_name`` through
        ``datasets.load_dataset``), ``bios_pkl`` (the original ``BIOS.pkl`` crawl at ``path``;
        a pickle, so only load files you trust) or ``local`` (your own files).
    path: ``bios_pkl``: the pickle. ``local``: one jsonl/json/csv/parquet file, split 85/5/10.
        ``synthetic``: cache folder for generated corpora (default ``$SDM_JAX_CACHE`` or
        ``~/.cache/sdm_jax``).
    train_file, dev_file, test_file: ``local`` only, instead of ``path``: one file per split;
        dev is halved into val1/val2.
    hub_name, hub_revision: dataset name (or a local folder in its layout) and git revision.
    cache_dir: ``datasets`` cache folder (``None``: the ``datasets`` default).
    text_column, good_label_column, bad_label_column: column names; ``None`` picks the
        source's own (``hard_text``/``profession``/``gender``; ``raw``/``title``/``gender``
        for ``bios_pkl``).
    good_names, bad_names: label names. Integer labels index these tuples; string labels are
        matched to them (exactly, then ignoring case). Default: the 28 professions, and
        ``("male", "female")`` (``BIOS.pkl``'s ``M``/``F`` are read as these).
    scrub_pronouns: replace gendered pronouns with "they"-forms (the reference's setting);
        ``False`` leaves the texts as they are.
    scrub: how, when ``scrub_pronouns`` is on: ``reference`` (the reference's whitespace-token
        rule, the default) or ``thorough`` (every whole-word pronoun, any case and
        punctuation, also hers/himself/herself); see :mod:`~sdm_jax.data.scrub`.
    seed: seed of the split shuffle and of the dev halving (the reference uses 0).
    train_examples, eval_examples: keep only this many examples of train, and of each of
        val1/val2/test (seeded draw, for quick runs); more than a split holds is an error.
    synthetic_seed, synthetic_train, synthetic_dev, synthetic_test: the generated corpus.
    """

    source: str = "synthetic"
    path: str | None = None
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    hub_name: str = HUB_NAME
    hub_revision: str | None = None
    cache_dir: str | None = None
    text_column: str | None = None
    good_label_column: str | None = None
    bad_label_column: str | None = None
    good_names: tuple[str, ...] = PROFESSIONS
    bad_names: tuple[str, ...] = GENDERS
    scrub_pronouns: bool = True
    scrub: Literal["reference", "thorough"] = "reference"
    seed: int = 0
    train_examples: int | None = None
    eval_examples: int | None = None
    synthetic_seed: int = 0
    synthetic_train: int = SyntheticSpec.train
    synthetic_dev: int = SyntheticSpec.dev
    synthetic_test: int = SyntheticSpec.test

    def columns(self) -> tuple[str, str, str]:
        text, good, bad = _DEFAULT_COLUMNS[self.source]
        return (
            self.text_column or text,
            self.good_label_column or good,
            self.bad_label_column or bad,
        )


@dataclass(frozen=True)
class TaskData:
    """Labelled text in one form; ``fingerprint`` hashes the content, names and splits."""

    splits: Mapping[str, datasets.Dataset]
    good_names: tuple[str, ...]
    bad_names: tuple[str, ...]
    source: str
    fingerprint: str = field(default="")


@dataclass(frozen=True)
class _RawPart:
    """Rows of one file (or hub split) before checking; ``split`` is train/dev/test or all."""

    origin: str
    split: str
    column_names: tuple[str, ...]
    column: Callable[[str], list]


@dataclass(frozen=True)
class _Encoded:
    origin: str
    texts: list[str]
    good: np.ndarray
    bad: np.ndarray


def _dataset_part(origin: str, split: str, dataset: datasets.Dataset) -> _RawPart:
    # Decoded values, not the raw Arrow storage: a json column of mixed types is stored as
    # JSON text and only decoding shows that a row holds a number instead of a string.
    return _RawPart(origin, split, tuple(dataset.column_names), lambda n: dataset[n][:])


def _read_file(path: str | os.PathLike, split: str, cache_dir: str | None) -> _RawPart:
    path = Path(path)
    builder = _FILE_FORMATS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{path}: unsupported file type (use one of {', '.join(_FILE_FORMATS)})")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if _has_no_rows(path, builder):
        raise DataError(f"{path}: split {split!r} is empty (the file has no rows)")
    try:
        dataset = datasets.load_dataset(
            builder, data_files={"train": str(path)}, split="train", cache_dir=cache_dir
        )
    except Exception as error:  # the builders raise many types; all mean "cannot parse"
        raise DataError(f"{path}: cannot read as {builder}: {_first_line(error)}") from error
    return _dataset_part(str(path), split, dataset)


def _has_no_rows(path: Path, builder: str) -> bool:
    """True for a file without data rows (the ``datasets`` builders fail on some of these)."""
    if builder == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows == 0
        except (OSError, pa.ArrowException):
            return False  # unreadable: reported by the loader with its own message
    needed = 2 if builder == "csv" else 1  # a csv header is not a row
    with path.open("rb") as handle:
        filled = (line for line in handle if line.strip())
        return sum(1 for _, _ in zip(range(needed), filled, strict=False)) < needed


def _first_line(error: BaseException) -> str:
    """The first line of the innermost cause, which is where the builders say what went wrong."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _read_hub(spec: DataSpec) -> list[_RawPart]:
    try:
        loaded = datasets.load_dataset(
            spec.hub_name, revision=spec.hub_revision, cache_dir=spec.cache_dir
        )
    except Exception as error:  # offline, missing, or unreadable: one clear line either way
        raise DataError(
            f"cannot load hub dataset {spec.hub_name!r} ({_first_line(error)}); it is neither "
            "cached nor reachable: run once with network access, or use data source 'synthetic'"
        ) from error
    names = {"train": "train", "dev": "dev", "validation": "dev", "test": "test"}
    parts = {names[s]: d for s, d in loaded.items() if s in names}
    missing = sorted({"train", "dev", "test"} - set(parts))
    if missing:
        raise DataError(f"hub dataset {spec.hub_name!r}: missing split(s) {', '.join(missing)}")
    return [_dataset_part(f"{spec.hub_name}[{s}]", s, d) for s, d in parts.items()]


def _read_bios_pkl(spec: DataSpec) -> list[_RawPart]:
    if spec.path is None:
        raise DataError("data source 'bios_pkl' needs path (the BIOS.pkl file)")
    path = Path(spec.path)
    try:
        with path.open("rb") as handle:
            rows = pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        raise DataError(f"{path}: cannot read pickle: {_first_line(error)}") from error
    if hasattr(rows, "to_dict"):  # a pandas DataFrame
        rows = rows.to_dict("records")
    if not isinstance(rows, list) or (rows and not isinstance(rows[0], Mapping)):
        raise DataError(f"{path}: expected a list of dict rows or a DataFrame")
    names = tuple(rows[0]) if rows else ()
    return [_RawPart(str(path), "all", names, lambda n: [row.get(n) for row in rows])]


def _local_files(spec: DataSpec) -> dict[str, str]:
    per_split = {"train": spec.train_file, "dev": spec.dev_file, "test": spec.test_file}
    given = {split: file for split, file in per_split.items() if file}
    if spec.path and given:
        raise DataError("local data: give either path (one file) or train/dev/test files")
    if spec.path:
        return {"all": spec.path}
    if len(given) != 3:
        missing = ", ".join(f"{s}_file" for s in per_split if s not in given)
        raise DataError(f"local data: missing {missing} (or give path for one file)")
    return given


def _read_parts(spec: DataSpec) -> tuple[str, list[_RawPart]]:
    if spec.source == "hub":
        return f"hub:{spec.hub_name}", _read_hub(spec)
    if spec.source == "bios_pkl":
        return f"bios_pkl:{spec.path}", _read_bios_pkl(spec)
    if spec.source == "synthetic":
        folder = synthetic_dir(spec.path or DEFAULT_CACHE, _synthetic_spec(spec))
        files = {split: str(folder / f"{split}.parquet") for split in ("train", "dev", "test")}
        label = f"synthetic:{folder}"
    else:
        files = _local_files(spec)
        label = f"local:{','.join(files.values())}"
    return label, [_read_file(file, split, spec.cache_dir) for split, file in files.items()]


def _synthetic_spec(spec: DataSpec) -> SyntheticSpec:
    return SyntheticSpec(
        seed=spec.synthetic_seed,
        train=spec.synthetic_train,
        dev=spec.synthetic_dev,
        test=spec.synthetic_test,
    )


def _check_texts(origin: str, column: str, values: list) -> list[str]:
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise DataError(
                f"{origin}: column {column!r}, row {row}: text must be a string, "
                f"got {type(value).__name__} {_short(value)}"
            )
    return values


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _encode_labels(
    origin: str, column: str, values: list, names: Sequence[str], aliases: Mapping[str, int]
) -> np.ndarray:
    lookup = {name: index for index, name in enumerate(names)}
    folded = {name.lower(): index for index, name in enumerate(names)} | dict(aliases)
    codes = np.empty(len(values), np.int32)
    for row, value in enumerate(values):
        if isinstance(value, str):
            code = lookup.get(value, folded.get(value.lower()))
            if code is None:
                raise DataError(
                    f"{origin}: column {column!r}, row {row}: unknown label {_short(value)} "
                    f"(known: {', '.join(names)})"
                )
        elif (
            isinstance(value, int | float | np.integer)
            and not isinstance(value, bool)
            and (float(value).is_integer() and 0 <= value < len(names))
        ):
            code = int(value)
        else:
            raise DataError(
                f"{origin}: column {column!r}, row {row}: label {_short(value)} is not a name "
                f"or an integer in 0..{len(names) - 1}"
            )
        codes[row] = code
    return codes


def _encode(part: _RawPart, spec: DataSpec) -> _Encoded:
    text_column, good_column, bad_column = spec.columns()
    for column in (text_column, good_column, bad_column):
        if column not in part.column_names:
            raise DataError(
                f"{part.origin}: missing column {column!r} "
                f"(columns: {', '.join(part.column_names) or 'none'})"
            )
    texts = _check_texts(part.origin, text_column, part.column(text_column))
    # BIOS.pkl spells gender M/F.
    bad_aliases = {"m": 0, "f": 1} if spec.source == "bios_pkl" else {}
    good = _encode_labels(part.origin, good_column, part.column(good_column), spec.good_names, {})
    bad = _encode_labels(
        part.origin, bad_column, part.column(bad_column), spec.bad_names, bad_aliases
    )
    if spec.scrub_pronouns:
        texts = [scrub_pronouns(text, spec.scrub) for text in texts]
    return _Encoded(part.origin, texts, good, bad)


def _take(data: _Encoded, indices: np.ndarray) -> _Encoded:
    return _Encoded(
        data.origin, [data.texts[i] for i in indices], data.good[indices], data.bad[indices]
    )


def _halve(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(size)
    return np.sort(order[: size // 2]), np.sort(order[size // 2 :])


def split_sizes(size: int) -> tuple[int, int, int]:
    """(train, validation, test) sizes of the reference's 85/5/10 split of ``size`` rows."""
    test = int(round(size * (1 - _TRAIN_SHARE - _VAL_SHARE)))
    validation = int(round(size * _VAL_SHARE))
    return size - validation - test, validation, test


def _assemble(parts: list[_Encoded], kinds: list[str], seed: int) -> dict[str, _Encoded]:
    by_kind = dict(zip(kinds, parts, strict=True))
    if "all" in by_kind:
        data = by_kind["all"]
        order = np.random.default_rng(seed).permutation(len(data.texts))
        n_train, n_val, _ = split_sizes(len(order))
        train, dev, test = np.split(order, [n_train, n_train + n_val])
        by_kind = {"train": _take(data, np.sort(train)), "dev": _take(data, np.sort(dev)),
                   "test": _take(data, np.sort(test))}  # fmt: skip
    val1, val2 = _halve(len(by_kind["dev"].texts), seed)
    return {
        "train": by_kind["train"],
        "val1": _take(by_kind["dev"], val1),
        "val2": _take(by_kind["dev"], val2),
        "test": by_kind["test"],
    }


def _limit(splits: dict[str, _Encoded], spec: DataSpec) -> dict[str, _Encoded]:
    limits = {"train": spec.train_examples} | dict.fromkeys(SPLITS[1:], spec.eval_examples)
    limited = {}
    for index, (name, data) in enumerate(splits.items()):
        wanted = limits[name]
        if wanted is None:
            limited[name] = data
            continue
        option = "train_examples" if name == "train" else "eval_examples"
        if not 0 < wanted <= len(data.texts):
            raise DataError(
                f"{data.origin}: {option}={wanted} but split {name!r} has "
                f"{len(data.texts)} examples"
            )
        picked = np.random.default_rng((spec.seed, index)).choice(
            len(data.texts), wanted, replace=False
        )
        limited[name] = _take(data, np.sort(picked))
    return limited


def fingerprint(splits: Mapping[str, _Encoded], good_names, bad_names) -> str:
    digest = hashlib.sha256()
    digest.update(repr((tuple(good_names), tuple(bad_names))).encode())
    for name, data in splits.items():
        digest.update(f"|{name}|{len(data.texts)}|".encode())
        for text in data.texts:
            encoded = text.encode()
            digest.update(len(encoded).to_bytes(8, "little") + encoded)
        digest.update(data.good.tobytes() + data.bad.tobytes())
    return digest.hexdigest()[:32]


def load_task(spec: DataSpec = DataSpec()) -> TaskData:
    """Read, check, scrub and split the data that ``spec`` names."""
    if spec.source not in SOURCES:
        raise DataError(f"unknown data source {spec.source!r} (use one of {', '.join(SOURCES)})")
    if spec.scrub not in SCRUB_MODES:
        raise DataError(f"unknown scrub mode {spec.scrub!r} (use one of {', '.join(SCRUB_MODES)})")
    for names, option in ((spec.good_names, "good_names"), (spec.bad_names, "bad_names")):
        if len(names) < 2 or len(set(names)) != len(names):
            raise DataError(f"{option} must hold at least two distinct names, got {names}")
    source, parts = _read_parts(spec)
    encoded = [_encode(part, spec) for part in parts]
    splits = _assemble(encoded, [part.split for part in parts], spec.seed)
    for name, data in splits.items():
        if not data.texts:
            raise DataError(f"{data.origin}: split {name!r} is empty")
    splits = _limit(splits, spec)
    return TaskData(
        splits={
            name: datasets.Dataset.from_dict(
                {"text": data.texts, "good": data.good, "bad": data.bad},
                features=_OUTPUT_FEATURES,
            )
            for name, data in splits.items()
        },
        good_names=tuple(spec.good_names),
        bad_names=tuple(spec.bad_names),
        source=source,
        fingerprint=fingerprint(splits, spec.good_names, spec.bad_names),
    )
