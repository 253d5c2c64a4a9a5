"""The shrunken toy run the training tests share: seconds per run, every code path exercised."""

from __future__ import annotations

from sdm_jax.config import load_config

SMALL = [
    "model.kind=mlp", "model.mlp_width=16", "model.mlp_depth=2",
    "toy.dim=6", "toy.n_train=256", "toy.n_val=48", "toy.n_test=32",
    "mlac.inner_steps=2", "mlac.batch_size_choices=[4, 8]", "mlac.linear_mi_iterations=5",
    "mlac.outer_lr=1e-2",
    "train.batch_size=16", "train.outer_steps=6", "train.eval_every=3", "train.eval_batches=2",
    "train.checkpoint_every=2", "train.log_every=1", "train.keep_checkpoints=1",
]

# The same run on 4 devices, one attacker each: one process or a 2-process cluster.
MULTIHOST_OVERRIDES = ("parallel.data_devices=4", "mlac.meta_batch_size=4")


def small_config(*extra: str):
    """The small toy config with ``extra`` dotted overrides applied after it."""
    return load_config(None, SMALL + list(extra))
