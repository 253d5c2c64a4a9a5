"""The toy task's stand-in for pretraining: fit the MLP to both tasks before blocking it, so
the toy, like a real encoder, starts out knowing the harmful task."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sdm_jax.config import Config
from sdm_jax.data import BatchSampler
from sdm_jax.data.sampler import Arrays
from sdm_jax.fine_tune import cross_entropy, direction, take_step
from sdm_jax.models import head_logits, init_head, split_logits
from sdm_jax.models.backbone import Backbone, Params


def pretrain_on_both_tasks(
    backbone: Backbone, params: Params, train: Arrays, names, config: Config
) -> tuple[Params, Params]:
    """Adam on the sum of both tasks' cross-entropies: the toy's stand-in for pretraining.
    Returns the backbone parameters and the ``n_good + n_bad`` head."""
    num_good, num_bad = len(names[0]), len(names[1])
    key = jax.random.PRNGKey(config.train.seed)
    model = {"backbone": params, "head": init_head(jax.random.fold_in(key, 1),
                                                   backbone.feature_dim, num_good + num_bad)}
    transform = direction("adam")
    sampler = BatchSampler(train, config.train.batch_size, seed=config.train.seed + 7)
    batches = sampler.next_stacked(config.model.pretrain_steps)

    def loss(model, batch):
        logits = head_logits(model["head"], backbone.features(model["backbone"], batch))
        good, bad = split_logits(logits, num_good)
        weight = jnp.ones(batch["good"].shape, jnp.float32)
        return sum(cross_entropy(z, batch[k], weight)
                   for z, k in ((good, "good"), (bad, "bad"))), None

    def step(carry, batch):
        model, opt_state, _ = take_step(loss, transform, *carry, batch, config.model.pretrain_lr)
        return (model, opt_state), None

    (model, _), _ = jax.jit(lambda m, b: jax.lax.scan(step, (m, transform.init(m)), b))(
        model, batches)
    return model["backbone"], model["head"]
