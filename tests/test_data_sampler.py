"""BatchSampler and random_subset: fixed shapes, masks, determinism, resumable state."""

from __future__ import annotations

import numpy as np
import pytest

from sdm_jax.data import BatchSampler, random_subset, split_length, take


def _arrays(size: int = 10) -> dict[str, np.ndarray]:
    return {
        "x": np.arange(size * 3, dtype=np.float32).reshape(size, 3),
        "good": np.arange(size, dtype=np.int32),
        "bad": (np.arange(size) % 2).astype(np.int32),
    }


def _stream(sampler: BatchSampler, count: int) -> list[dict[str, np.ndarray]]:
    return [sampler.next() for _ in range(count)]


def _assert_same(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_every_batch_has_the_same_shape_across_epochs():
    sampler = BatchSampler(_arrays(10), batch_size=4, seed=0)
    for batch in _stream(sampler, 7):
        assert batch["x"].shape == (4, 3) and batch["good"].shape == (4,)
        assert batch["weight"].dtype == np.float32 and (batch["weight"] == 1).all()
    assert sampler.epoch == 2


def test_each_epoch_visits_every_example_once():
    sampler = BatchSampler(_arrays(12), batch_size=4, seed=3)
    seen = np.concatenate([b["good"] for b in _stream(sampler, 3)])
    assert sorted(seen.tolist()) == list(range(12))
    again = np.concatenate([b["good"] for b in _stream(sampler, 3)])
    assert sorted(again.tolist()) == list(range(12))
    assert seen.tolist() != again.tolist()


def test_batch_size_choices_become_weight_masks():
    sampler = BatchSampler(_arrays(50), batch_size=8, seed=1, batch_size_choices=(2, 5, 8))
    sizes = set()
    for batch in _stream(sampler, 40):
        weight = batch["weight"]
        assert weight.shape == (8,)
        active = int(weight.sum())
        assert active in (2, 5, 8)
        assert (weight[:active] == 1).all() and (weight[active:] == 0).all()
        sizes.add(active)
    assert sizes == {2, 5, 8}


def test_existing_weights_are_kept():
    arrays = _arrays(6) | {"weight": np.array([1, 0, 1, 0, 1, 0], np.float32)}
    batch = BatchSampler(arrays, batch_size=6, seed=0).next()
    np.testing.assert_array_equal(batch["weight"], (batch["good"] % 2 == 0).astype(np.float32))


def test_same_seed_same_stream_other_seed_other_stream():
    def make(seed):
        return BatchSampler(_arrays(20), 4, seed, batch_size_choices=(1, 4))

    _assert_same(_stream(make(7), 9), _stream(make(7), 9))
    first = np.concatenate([b["good"] for b in _stream(make(7), 5)])
    other = np.concatenate([b["good"] for b in _stream(make(8), 5)])
    assert first.tolist() != other.tolist()


@pytest.mark.parametrize("steps", [0, 3, 5, 11])
def test_state_round_trip_resumes_the_exact_stream(steps):
    original = BatchSampler(_arrays(10), batch_size=4, seed=2, batch_size_choices=(2, 3, 4))
    _stream(original, steps)
    state = original.state_dict()
    assert state == {k: int(v) for k, v in state.items()}  # plain ints, checkpoint-friendly
    resumed = BatchSampler(_arrays(10), batch_size=4, seed=2, batch_size_choices=(2, 3, 4))
    resumed.load_state_dict(state)
    _assert_same(_stream(original, 8), _stream(resumed, 8))


def test_state_from_another_seed_is_refused():
    state = BatchSampler(_arrays(), 2, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        BatchSampler(_arrays(), 2, seed=2).load_state_dict(state)


def test_next_stacked_adds_a_leading_axis():
    sampler = BatchSampler(_arrays(10), batch_size=3, seed=0, batch_size_choices=(1, 3))
    stacked = sampler.next_stacked(5)
    assert stacked["x"].shape == (5, 3, 3) and stacked["weight"].shape == (5, 3)
    reference = BatchSampler(_arrays(10), batch_size=3, seed=0, batch_size_choices=(1, 3))
    for step, batch in enumerate(_stream(reference, 5)):
        np.testing.assert_array_equal(stacked["good"][step], batch["good"])


def test_bad_sampler_settings():
    with pytest.raises(ValueError, match="batch_size must be positive"):
        BatchSampler(_arrays(), 0, seed=0)
    with pytest.raises(ValueError, match="batch_size_choices"):
        BatchSampler(_arrays(), 4, seed=0, batch_size_choices=(2, 5))
    with pytest.raises(ValueError, match="differ in length"):
        BatchSampler({"a": np.zeros(3), "b": np.zeros(4)}, 2, seed=0)
    with pytest.raises(ValueError, match="empty split"):
        split_length({})


def test_random_subset_is_seeded_sorted_and_without_repeats():
    arrays = _arrays(30)
    subset = random_subset(arrays, 12, seed=4)
    assert subset["x"].shape == (12, 3)
    picked = subset["good"]
    assert len(set(picked.tolist())) == 12 and (np.diff(picked) > 0).all()
    np.testing.assert_array_equal(subset["x"], take(arrays, picked)["x"])
    np.testing.assert_array_equal(random_subset(arrays, 12, seed=4)["good"], picked)
    assert random_subset(arrays, 12, seed=5)["good"].tolist() != picked.tolist()
    assert random_subset(arrays, 30, seed=0)["good"].tolist() == list(range(30))


def test_random_subset_errors():
    with pytest.raises(ValueError, match="asked for 31 examples but the split has only 30"):
        random_subset(_arrays(30), 31, seed=0)
    with pytest.raises(ValueError, match="must be positive"):
        random_subset(_arrays(30), 0, seed=0)
