"""The simulated attacker's optimizer: the kinds of :data:`sdm_jax.fine_tune.OPTIMIZERS` an
attacker may draw, as one transform whose state has the same structure for every attacker.

That state is the tuple of the states of the enabled *families* (Adam and AdamW share one; so
do SGD and SGD with momentum); one step updates only the drawn family's state, chosen with
``lax.switch``, with the drawn kind's weight decay and momentum as traced scalars. With one
family enabled (the default, or Adam with AdamW) there is no switch at all. Under ``vmap`` over
attackers a batched switch runs every branch and selects, so each enabled family costs its
elementwise update (small beside the forward/backward passes) and its state's memory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.fine_tune import OPTIMIZERS, direction


def kind_hyperparameters(kind: str, settings: MLACSettings) -> tuple[str, float, float]:
    """``(family, momentum, weight_decay)`` of an optimizer kind under ``settings``: the kinds
    that decay or use momentum by default take ``inner_weight_decay`` / ``inner_momentum``."""
    defaults = OPTIMIZERS[kind]
    momentum = settings.inner_momentum if defaults.momentum else 0.0
    weight_decay = settings.inner_weight_decay if defaults.weight_decay else 0.0
    return defaults.family, momentum, weight_decay


def _family_transform(family, momentum, weight_decay, settings: MLACSettings):
    return direction(family, momentum=momentum, weight_decay=weight_decay,
                     adam_eps_root=settings.adam_eps_root, rmsprop_decay=settings.rmsprop_decay)


def inner_direction(kind_index: jax.Array, settings: MLACSettings) -> optax.GradientTransformation:
    """The direction of the kind ``settings.inner_optimizers[kind_index]`` (traced index)."""
    kinds = [kind_hyperparameters(kind, settings) for kind in settings.inner_optimizers]
    families = list(dict.fromkeys(family for family, _, _ in kinds))
    if len(kinds) == 1:  # Python numbers: a zero momentum or decay costs nothing
        _, momentum, weight_decay = kinds[0]
    else:
        momentum = jnp.asarray([m for _, m, _ in kinds], jnp.float32)[kind_index]
        weight_decay = jnp.asarray([w for _, _, w in kinds], jnp.float32)[kind_index]
    members = [_family_transform(f, momentum, weight_decay, settings) for f in families]

    def init(params):
        return tuple(member.init(params) for member in members)

    def update(grads, states, params):
        if len(members) == 1:
            updates, state = members[0].update(grads, states[0], params)
            return updates, (state,)

        def branch(i):
            def run(operands):
                grads, states, params = operands
                updates, state = members[i].update(grads, states[i], params)
                return updates, states[:i] + (state,) + states[i + 1 :]

            return run

        family_index = jnp.asarray([families.index(f) for f, _, _ in kinds])[kind_index]
        branches = [branch(i) for i in range(len(members))]
        return jax.lax.switch(family_index, branches, (grads, states, params))

    return optax.GradientTransformation(init, update)
