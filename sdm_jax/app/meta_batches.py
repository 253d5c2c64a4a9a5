"""One outer step's meta-batch: the outer batch and every simulated attacker's K inner batches,
drawn from resumable samplers, plus the fixed meta-batches validation reuses."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.data import BatchSampler, split_length, take
from sdm_jax.data.sampler import Arrays


class MetaBatchSource:
    """Resumable draws of ``{"inner": [M, K, B_in, ...], "outer": [B_out, ...]}``.

    The outer sampler yields the outer batch (one shared, or one per attacker); the inner
    sampler yields every attacker's K batches; each attacker draws one size from the settings'
    ``batch_size_choices`` and keeps it for all K (as the reference does), inside the fixed
    shape of their maximum.
    """

    def __init__(self, arrays: Arrays, settings: MLACSettings, batch_size: int, seed: int):
        self.settings = settings
        self.outer = BatchSampler(arrays, batch_size, seed=2 * seed)
        choices = tuple(settings.batch_size_choices)
        self.inner = BatchSampler(arrays, max(choices), seed=2 * seed + 1,
                                  batch_size_choices=choices)
        self._template = take(arrays, np.zeros(max(choices), np.int64))

    def next(self) -> dict[str, Arrays]:
        attackers, steps = self.settings.meta_batch_size, self.settings.inner_steps
        if self.settings.shared_outer_batch:
            outer = self.outer.next()
        else:
            outer = self.outer.next_stacked(attackers)
        if steps:
            per_attacker = [self.inner.next_stacked(steps) for _ in range(attackers)]
            inner = {k: np.stack([b[k] for b in per_attacker]) for k in per_attacker[0]}
        else:
            # K = 0 (adversarial censoring): no inner batches, but the same array names.
            template = {**self._template, "weight": np.zeros(len(self._template["good"]),
                                                             np.float32)}
            inner = {k: np.zeros((attackers, 0) + v.shape, v.dtype) for k, v in template.items()}
        return {"inner": inner, "outer": outer}

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {"outer": self.outer.state_dict(), "inner": self.inner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, int]]) -> None:
        self.outer.load_state_dict(state["outer"])
        self.inner.load_state_dict(state["inner"])


def validation_meta_batches(
    arrays: Arrays, settings: MLACSettings, batch_size: int, count: int, seed: int
) -> list[dict[str, Arrays]]:
    """``count`` fixed meta-batches: outer batches walk the split in order (rows past its end
    get weight 0), inner batches come from a sampler with a fixed seed."""
    size = split_length(arrays)
    source = MetaBatchSource(arrays, settings, batch_size, seed)
    batches = []
    for index in range(min(count, -(-size // batch_size))):
        rows = np.arange(index * batch_size, (index + 1) * batch_size)
        outer = take(arrays, rows % size)
        outer["weight"] = (rows < size).astype(np.float32)
        if not settings.shared_outer_batch:
            outer = {k: np.broadcast_to(v, (settings.meta_batch_size,) + v.shape).copy()
                     for k, v in outer.items()}
        batches.append({"inner": source.next()["inner"], "outer": outer})
    return batches
