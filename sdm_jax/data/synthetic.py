"""Offline synthetic Bias in Bios corpus in the ``LabHC/bias_in_bios`` schema.

``python -m sdm_jax.data.synthetic --out DIR --seed S [--train N --dev N --test N]`` writes
``train.parquet``, ``dev.parquet`` and ``test.parquet`` with columns ``hard_text`` (str),
``profession`` (int 0-27, order of :data:`~sdm_jax.data.bios_tables.PROFESSIONS`) and
``gender`` (int, 0 male, 1 female), plus ``metadata.json`` (generator version, seed, sizes,
configured and generated per-profession female shares). The same seed gives the same bytes.

Each bio has 2-5 sentences drawn from the job's own sentences, from sentences shared with
related jobs and from generic ones (:mod:`~sdm_jax.data.phrases`). Gender shows through the
first name (hundreds of real names per gender, :mod:`~sdm_jax.data.names`), often repeated in
later sentences, pronouns (removed by scrubbing), kinship sentences and sentences around one of
many rare gendered nouns; bios without any of these carry no gender cue once pronouns are
scrubbed. Every cue has its rate in :class:`SyntheticSpec`, so each cue's contribution can be
measured by switching it off (``benchmarks/corpus_signal.py --ablate``). Profession counts and
the number of women per profession follow :mod:`~sdm_jax.data.bios_tables` exactly
(largest-remainder rounding) in every split.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sdm_jax.data.bios_tables import FEMALE_SHARES, GENDERS, PROFESSION_SHARES, PROFESSIONS
from sdm_jax.data.errors import DataError
from sdm_jax.data.names import FEMALE_NAMES, MALE_NAMES, SURNAMES
from sdm_jax.data.phrases import (
    CITIES,
    GENDERED_WORD_SENTENCES,
    GENDERED_WORDS,
    GENERIC_SENTENCES,
    GROUP_SENTENCES,
    KINSHIP_SENTENCES,
    PROFESSION_SENTENCES,
    SCHOOLS,
)

# Bump when the output for a given seed changes; it is part of the cache key.
GENERATOR_VERSION = "2"
SYNTHETIC_SPLITS = ("train", "dev", "test")

# Where each sentence comes from: the job's own bank, a bank shared with related jobs, or the
# generic bank. Bios with no job-specific sentence are what keeps profession accuracy below 100%.
SPECIFIC_SENTENCE_RATE = 0.4
GROUP_SENTENCE_RATE = 0.35

_PRONOUNS = {
    "male": {"s": "he", "o": "him", "p": "his"},
    "female": {"s": "she", "o": "her", "p": "her"},
}
_FIRST_NAMES = {"male": MALE_NAMES, "female": FEMALE_NAMES}


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    seed: the only source of randomness; same spec -> same bytes.
    train, dev, test: number of bios per split.
    name_rate: share of bios that mention the person's first name (the main gender cue).
    name_repeat_rate: probability that a later sentence of a named bio uses the first name
    rather than a pronoun.
    kinship_rate: share of bios with a kinship sentence (husband, mother, son, ...).
    gendered_word_rate: share of bios with a sentence around one rare gendered noun.
    """

    seed: int = 0
    train: int = 20_000
    dev: int = 3_000
    test: int = 6_000
    name_rate: float = 0.9
    name_repeat_rate: float = 0.6
    kinship_rate: float = 0.06
    gendered_word_rate: float = 0.5

    def sizes(self) -> dict[str, int]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


def allocate(total: int, shares: list[float]) -> list[int]:
    """Split ``total`` into integer counts proportional to ``shares`` (largest remainder)."""
    weights = np.asarray(shares, dtype=np.float64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    # Ties broken by position so the result never depends on sort stability.
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def split_labels(size: int, rng: random.Random) -> list[tuple[int, int]]:
    """Shuffled (profession, gender) pairs following the two tables exactly."""
    per_profession = allocate(size, [PROFESSION_SHARES[p] for p in PROFESSIONS])
    labels = []
    for index, (name, count) in enumerate(zip(PROFESSIONS, per_profession, strict=True)):
        women = int(round(FEMALE_SHARES[name] * count))
        labels += [(index, 1)] * women + [(index, 0)] * (count - women)
    rng.shuffle(labels)
    return labels


def _pick_new(rng: random.Random, bank: tuple[str, ...], used: set[str]) -> str:
    for _ in range(4):
        template = rng.choice(bank)
        if template not in used:
            break
    used.add(template)
    return template


def _templates(rng: random.Random, profession: str, gender: str, spec: SyntheticSpec) -> list:
    groups, specific = PROFESSION_SENTENCES[profession]
    with_kinship = rng.random() < spec.kinship_rate
    with_word = rng.random() < spec.gendered_word_rate
    count = max(rng.randint(2, 5) - with_kinship - with_word, 1)
    used: set[str] = set()
    templates = []
    for _ in range(count):
        draw = rng.random()
        if draw < SPECIFIC_SENTENCE_RATE:
            bank = specific
        elif draw < SPECIFIC_SENTENCE_RATE + GROUP_SENTENCE_RATE:
            bank = GROUP_SENTENCES[rng.choice(groups)]
        else:
            bank = GENERIC_SENTENCES
        templates.append(_pick_new(rng, bank, used))
    if with_kinship:
        templates.insert(rng.randint(1, len(templates)), rng.choice(KINSHIP_SENTENCES[gender]))
    if with_word:
        frame = rng.choice(GENDERED_WORD_SENTENCES)
        word = rng.choice(GENDERED_WORDS[gender])
        templates.insert(rng.randint(1, len(templates)), frame.replace("{word}", word))
    return templates


def make_bio(rng: random.Random, profession: str, gender: str, spec: SyntheticSpec) -> str:
    pronoun = _PRONOUNS[gender]
    named = rng.random() < spec.name_rate
    first = rng.choice(_FIRST_NAMES[gender])
    full = f"{first} {rng.choice(SURNAMES)}" if rng.random() < 0.6 else first
    sentences = []
    for position, template in enumerate(_templates(rng, profession, gender, spec)):
        if named and (position == 0 or rng.random() < spec.name_repeat_rate):
            subject = full if position == 0 else first
        else:
            subject = pronoun["s"].capitalize()
        sentences.append(
            template.format(
                S=subject,
                P=pronoun["p"].capitalize(),
                city=rng.choice(CITIES),
                school=rng.choice(SCHOOLS),
                years=rng.randint(3, 30),
                **pronoun,
            )
        )
    return " ".join(sentences)


def generate_split(spec: SyntheticSpec, split: str) -> pa.Table:
    size = spec.sizes()[split]
    rng = random.Random(spec.seed * 1_000 + SYNTHETIC_SPLITS.index(split))
    labels = split_labels(size, rng)
    texts = [make_bio(rng, PROFESSIONS[p], GENDERS[g], spec) for p, g in labels]
    return pa.table(
        {
            "hard_text": pa.array(texts, pa.string()),
            "profession": pa.array([p for p, _ in labels], pa.int64()),
            "gender": pa.array([g for _, g in labels], pa.int64()),
        }
    )


def _metadata(spec: SyntheticSpec, tables: dict[str, pa.Table]) -> dict:
    professions = np.concatenate([t.column("profession").to_numpy() for t in tables.values()])
    genders = np.concatenate([t.column("gender").to_numpy() for t in tables.values()])
    generated = {}
    for index, name in enumerate(PROFESSIONS):
        mask = professions == index
        generated[name] = round(float(genders[mask].mean()), 4) if mask.any() else None
    return {
        "generator_version": GENERATOR_VERSION,
        "spec": asdict(spec),
        "sizes": spec.sizes(),
        "schema": {"hard_text": "string", "profession": PROFESSIONS, "gender": GENDERS},
        "profession_shares_configured": dict(PROFESSION_SHARES),
        "female_shares_configured": dict(FEMALE_SHARES),
        "female_shares_generated": generated,
    }


def generate_synthetic(out_dir: str | os.PathLike, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write the three parquet files and ``metadata.json`` into ``out_dir``; returns it."""
    for split, size in spec.sizes().items():
        if size <= 0:
            raise DataError(f"synthetic corpus: split {split} size must be positive, got {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {split: generate_split(spec, split) for split in SYNTHETIC_SPLITS}
    for split, table in tables.items():
        pq.write_table(table, out / f"{split}.parquet")
    metadata = json.dumps(_metadata(spec, tables), indent=1, sort_keys=True)
    (out / "metadata.json").write_text(metadata + "\n")
    return out


def synthetic_dir(cache_dir: str | os.PathLike, spec: SyntheticSpec) -> Path:
    """The cache folder for ``spec``: generated on first use, then reused."""
    key = "-".join(
        [f"v{GENERATOR_VERSION}", f"seed{spec.seed}", f"{spec.train}-{spec.dev}-{spec.test}"]
        + [f"name{spec.name_rate:g}", f"repeat{spec.name_repeat_rate:g}",
           f"kin{spec.kinship_rate:g}", f"word{spec.gendered_word_rate:g}"]
    )
    target = Path(cache_dir) / f"synthetic-{key}"
    if (target / "metadata.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Generate beside the target and rename, so a crash or a concurrent run never leaves a
    # half-written folder behind under the final name.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        generate_synthetic(staging, spec)
        os.replace(staging, target)
    except OSError:
        if not (target / "metadata.json").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    defaults = SyntheticSpec()
    for split in SYNTHETIC_SPLITS:
        parser.add_argument(f"--{split}", type=int, default=getattr(defaults, split))
    args = parser.parse_args(argv)
    spec = SyntheticSpec(seed=args.seed, train=args.train, dev=args.dev, test=args.test)
    print(generate_synthetic(args.out, spec))


if __name__ == "__main__":
    main()
