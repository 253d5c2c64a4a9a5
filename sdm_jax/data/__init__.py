"""Data: Bias in Bios and local loaders, the synthetic corpus, tokenisation, samplers, toy task."""

from sdm_jax.data.bios_tables import FEMALE_SHARES, GENDERS, PROFESSION_SHARES, PROFESSIONS
from sdm_jax.data.errors import DataError
from sdm_jax.data.sampler import BatchSampler, random_subset, split_length, take
from sdm_jax.data.scrub import SCRUB_MODES, scrub_pronouns
from sdm_jax.data.sources import SPLITS, DataSpec, TaskData, load_task, split_sizes
from sdm_jax.data.synthetic import SyntheticSpec, generate_synthetic, synthetic_dir
from sdm_jax.data.tokens import (
    DEFAULT_MAX_LENGTH,
    suggest_max_length,
    token_lengths,
    tokenize_task,
    tokenizer_identity,
)
from sdm_jax.data.toy import ToySpec, make_toy_task

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "FEMALE_SHARES",
    "GENDERS",
    "PROFESSIONS",
    "PROFESSION_SHARES",
    "SCRUB_MODES",
    "SPLITS",
    "BatchSampler",
    "DataError",
    "DataSpec",
    "SyntheticSpec",
    "TaskData",
    "ToySpec",
    "generate_synthetic",
    "load_task",
    "make_toy_task",
    "random_subset",
    "scrub_pronouns",
    "split_length",
    "split_sizes",
    "suggest_max_length",
    "synthetic_dir",
    "take",
    "token_lengths",
    "tokenize_task",
    "tokenizer_identity",
]
