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


def _active(weights: np.ndarray) -> list[int]:
    """Weight-1 rows per batch of a stack, checking the weight is a 1s-then-0s mask."""
    sizes = []
    for weight in weights:
        active = int(weight.sum())
        assert (weight[:active] == 1).all() and (weight[active:] == 0).all()
        sizes.append(active)
    return sizes


def test_one_stack_shares_one_effective_size_and_stacks_vary():
    sampler = BatchSampler(_arrays(50), batch_size=8, seed=1, batch_size_choices=(2, 5, 8))
    per_stack = []
    for _ in range(30):
        sizes = _active(sampler.next_stacked(4)["weight"])
        assert len(set(sizes)) == 1, sizes
        per_stack.append(sizes[0])
    assert set(per_stack) == {2, 5, 8}
    assert sampler.draws == 30 * 4


def test_a_stack_takes_the_size_next_would_draw_first():
    def make():
        return BatchSampler(_arrays(50), batch_size=8, seed=3, batch_size_choices=(2, 5, 8))

    single, stacked = make(), make()
    for _ in range(10):
        first = int(single.next()["weight"].sum())
        _stream(single, 2)
        assert _active(stacked.next_stacked(3)["weight"]) == [first] * 3


@pytest.mark.parametrize("stacks", [0, 1, 4, 9])
def test_state_round_trip_resumes_the_exact_stacks(stacks):
    def make():
        return BatchSampler(_arrays(10), batch_size=4, seed=2, batch_size_choices=(1, 2, 3, 4))

    original = make()
    for _ in range(stacks):
        original.next_stacked(3)
    original.next()  # a single batch in between keeps the stream aligned as well
    resumed = make()
    resumed.load_state_dict(original.state_dict())
    _assert_same([original.next_stacked(3) for _ in range(6)],
                 [resumed.next_stacked(3) for _ in range(6)])  # fmt: skip


def test_next_stacked_needs_a_positive_count():
    with pytest.raises(ValueError, match="count must be positive"):
        BatchSampler(_arrays(), 2, seed=0).next_stacked(0)


def test_meta_batches_draw_one_inner_size_per_attacker():
    from sdm_jax.app.meta_batches import MetaBatchSource
    from sdm_jax.blocking.settings import MLACSettings

    settings = MLACSettings(meta_batch_size=3, inner_steps=4, batch_size_choices=(2, 4, 6))
    source = MetaBatchSource(_arrays(40), settings, batch_size=5, seed=0)
    seen = set()
    for _ in range(12):
        inner = source.next()["inner"]
        assert inner["weight"].shape == (3, 4, 6) and inner["x"].shape == (3, 4, 6, 3)
        for attacker in inner["weight"]:
            sizes = _active(attacker)
            assert len(set(sizes)) == 1, sizes
            seen.add(sizes[0])
    assert seen == {2, 4, 6}
    state = source.state_dict()
    again = MetaBatchSource(_arrays(40), settings, batch_size=5, seed=0)
    again.load_state_dict(state)
    _assert_same([source.next()["inner"] for _ in range(3)],
                 [again.next()["inner"] for _ in range(3)])  # fmt: skip


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
