"""Deterministic samplers that yield fixed-shape numpy batches.

A split is a dict of numpy arrays sharing their leading dimension ("arrays"). Every batch has
the same shape: a smaller batch size is expressed by zeroing the per-example ``weight`` of the
unused rows, so jitted consumers never see a new shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Arrays = Mapping[str, np.ndarray]


def split_length(arrays: Arrays) -> int:
    lengths = {name: len(value) for name, value in arrays.items()}
    if not lengths:
        raise ValueError("empty split: no arrays given")
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arrays of one split differ in length: {lengths}")
    return next(iter(lengths.values()))


def take(arrays: Arrays, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {name: value[indices] for name, value in arrays.items()}


def random_subset(arrays: Arrays, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` examples drawn without replacement, the same for the same seed."""
    size = split_length(arrays)
    if n > size:
        raise ValueError(f"asked for {n} examples but the split has only {size}")
    if n <= 0:
        raise ValueError(f"number of examples must be positive, got {n}")
    indices = np.random.default_rng(seed).permutation(size)[:n]
    return take(arrays, np.sort(indices))


@dataclass
class BatchSampler:
    """Epoch-wise shuffled batches; the position is a small dict a checkpoint can save.

    ``batch_size`` is the fixed shape. When ``batch_size_choices`` is given, an effective size
    is drawn from it (the reference's variable inner batch sizes) and a batch carries
    ``weight = 1`` on that many rows and ``0`` on the rest. :meth:`next` draws a size per
    batch; :meth:`next_stacked` draws one size for its whole stack, as the reference draws one
    batch size per simulated attacker and keeps it for all of that attacker's inner steps.
    Either way the size comes from ``(seed, draws)``, so a restored state repeats the stream.
    """

    arrays: Arrays
    batch_size: int
    seed: int
    batch_size_choices: Sequence[int] | None = None
    epoch: int = 0
    cursor: int = 0
    draws: int = 0
    _order: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.size = split_length(self.arrays)
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.batch_size_choices:
            too_big = [b for b in self.batch_size_choices if b > self.batch_size or b <= 0]
            if too_big:
                raise ValueError(
                    f"batch_size_choices {too_big} must lie in 1..batch_size={self.batch_size}"
                )
        self._order = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng((self.seed, epoch)).permutation(self.size)

    def _effective_size(self) -> int:
        if not self.batch_size_choices:
            return self.batch_size
        rng = np.random.default_rng((self.seed, 1_000_003, self.draws))
        return int(rng.choice(np.asarray(self.batch_size_choices)))

    def _next_indices(self, count: int) -> np.ndarray:
        picked = []
        while count > 0:
            if self.cursor >= self.size:
                self.epoch += 1
                self.cursor = 0
                self._order = self._permutation(self.epoch)
            chunk = self._order[self.cursor : self.cursor + count]
            picked.append(chunk)
            self.cursor += len(chunk)
            count -= len(chunk)
        return np.concatenate(picked)

    def _batch(self, effective: int) -> dict[str, np.ndarray]:
        batch = take(self.arrays, self._next_indices(self.batch_size))
        weight = np.zeros(self.batch_size, np.float32)
        weight[:effective] = 1.0
        batch["weight"] = weight * batch.get("weight", 1.0)
        self.draws += 1
        return batch

    def next(self) -> dict[str, np.ndarray]:
        """One batch, with its own effective size."""
        return self._batch(self._effective_size())

    def next_stacked(self, count: int) -> dict[str, np.ndarray]:
        """``count`` batches stacked on a new leading axis (one per inner step of one
        attacker), all with the same effective size: the size :meth:`next` would have drawn
        for the first of them. The rows are the ones ``count`` calls of :meth:`next` give."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        effective = self._effective_size()
        batches = [self._batch(effective) for _ in range(count)]
        return {name: np.stack([b[name] for b in batches]) for name in batches[0]}

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "cursor": self.cursor, "draws": self.draws}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state has seed {state['seed']}, this sampler {self.seed}")
        self.epoch, self.cursor, self.draws = (int(state[k]) for k in ("epoch", "cursor", "draws"))
        self._order = self._permutation(self.epoch)
