"""Device mesh, shardings and multi-host start-up for the outer step.

The attackers of a meta-batch are independent, so they are split over a one-axis mesh
(``data``): their batches are sharded on the meta-batch dimension, the parameters and the train
state replicated, and the gradient average over attackers becomes one all-reduce.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
DISTRIBUTED_ENV = "SDM_JAX_DISTRIBUTED"


def maybe_initialize_distributed(enabled: bool | None = None) -> bool:
    """Call ``jax.distributed.initialize()`` (cluster settings from the environment, as JAX
    reads them) when ``enabled`` is true, or when it is ``None`` and the environment variable
    ``SDM_JAX_DISTRIBUTED`` is ``1``/``true``. Returns whether it initialised."""
    if enabled is None:
        enabled = os.environ.get(DISTRIBUTED_ENV, "").strip().lower() in ("1", "true", "yes")
    if enabled:
        jax.distributed.initialize()
    return enabled


def make_mesh(devices=None) -> Mesh:
    """A one-axis ``data`` mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("cannot build a mesh over zero devices")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (meta-batch) dimension split over the ``data`` axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def meta_batch_shardings(mesh: Mesh, shared_outer_batch: bool) -> dict[str, NamedSharding]:
    """Sharding prefix of a meta-batch ``{"inner": ..., "outer": ...}``."""
    outer = replicated(mesh) if shared_outer_batch else data_sharded(mesh)
    return {"inner": data_sharded(mesh), "outer": outer}


def put_meta_batch(meta_batch: dict, mesh: Mesh, shared_outer_batch: bool) -> dict:
    """Host numpy meta-batch -> global device arrays with the step's shardings.

    Every process passes the whole meta-batch (each draws the same one from the same seed) and
    each of its devices takes its rows of the attacker axis, so one host or many, the program
    sees the same global batch.
    """
    shardings = meta_batch_shardings(mesh, shared_outer_batch)
    return {
        part: jax.tree.map(
            lambda x, s=shardings[part]: jax.make_array_from_callback(
                x.shape, s, lambda index, x=x: x[index]),
            arrays,
        )
        for part, arrays in meta_batch.items()
    }
