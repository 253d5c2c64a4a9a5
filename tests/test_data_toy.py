"""The toy task: two linear concepts over Gaussian inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sdm_jax.data import ToySpec, make_toy_task
from sdm_jax.data.toy import TOY_SPLITS, toy_separators

SPEC = ToySpec(dim=25, n_train=2_000, n_val=300, n_test=500, seed=0)


def test_shapes_and_dtypes():
    splits = make_toy_task(SPEC)
    assert tuple(splits) == TOY_SPLITS
    sizes = {"train": 2_000, "val1": 300, "val2": 300, "test": 500}
    for name, split in splits.items():
        assert split["x"].shape == (sizes[name], 25) and split["x"].dtype == np.float32
        assert split["good"].shape == split["bad"].shape == (sizes[name],)
        assert split["good"].dtype == split["bad"].dtype == np.int32


def test_both_labels_roughly_balanced_and_not_the_same_concept():
    train = make_toy_task(SPEC)["train"]
    for label in ("good", "bad"):
        assert set(np.unique(train[label])) == {0, 1}
        assert 0.4 <= train[label].mean() <= 0.6
    agreement = np.mean(train["good"] == train["bad"])
    assert 0.05 < agreement < 0.95


def test_labels_are_the_separators_signs():
    split = make_toy_task(SPEC)["val1"]
    good, bad = toy_separators(SPEC)
    np.testing.assert_array_equal(split["good"], (split["x"] @ good > 0).astype(np.int32))
    np.testing.assert_array_equal(split["bad"], (split["x"] @ bad > 0).astype(np.int32))


def test_same_seed_same_data_other_seed_other_data():
    first, second = make_toy_task(SPEC), make_toy_task(SPEC)
    for name in TOY_SPLITS:
        for key in ("x", "good", "bad"):
            np.testing.assert_array_equal(first[name][key], second[name][key])
    other = make_toy_task(ToySpec(dim=25, n_train=2_000, n_val=300, n_test=500, seed=1))
    assert not np.allclose(first["train"]["x"], other["train"]["x"])
    assert not np.allclose(first["val1"]["x"], first["val2"]["x"])


@pytest.mark.parametrize("bad", [ToySpec(dim=0), ToySpec(n_val=0), ToySpec(n_train=-1)])
def test_non_positive_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="must be positive"):
        make_toy_task(bad)
