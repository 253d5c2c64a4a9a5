"""MLAC blocking: the simulated attacker, the blocking objective and the outer step.

Typical use::

    settings = MLACSettings(inner_steps=16, meta_batch_size=4)
    state = init_train_state(backbone, backbone_params, num_good, num_bad, settings, seed=0)
    step = make_outer_step(backbone, settings, num_good, num_bad, mesh=None)
    state, metrics = step(state, {"inner": inner_batches, "outer": outer_batch})
"""

from sdm_jax.blocking.attacker import (
    AttackerDraw,
    AttackerResult,
    attacker_head,
    draw_attacker,
    run_attacker,
)
from sdm_jax.blocking.objective import signed_total
from sdm_jax.blocking.outer import (
    OuterStep,
    TrainState,
    init_train_state,
    make_meta_gradient,
    make_meta_objective,
    make_outer_step,
)
from sdm_jax.blocking.settings import (
    ALL_TERMS,
    INNER_OPTIMIZERS,
    MAXIMISED_TERMS,
    MINIMISED_TERMS,
    REMAT_POLICIES,
    MLACSettings,
)

__all__ = [
    "ALL_TERMS",
    "INNER_OPTIMIZERS",
    "MAXIMISED_TERMS",
    "MINIMISED_TERMS",
    "REMAT_POLICIES",
    "AttackerDraw",
    "AttackerResult",
    "MLACSettings",
    "OuterStep",
    "TrainState",
    "attacker_head",
    "draw_attacker",
    "init_train_state",
    "make_meta_gradient",
    "make_meta_objective",
    "make_outer_step",
    "run_attacker",
    "signed_total",
]
