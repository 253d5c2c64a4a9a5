"""The attacker's optimizers: optax transformations with a differentiable learning rate.

An attacker draws one optimizer kind from ``MLACSettings.inner_optimizers``. The state carried
through the inner ``scan`` must have one structure for every attacker, so it is the *tuple* of
the states of all enabled kinds; one step updates only the drawn kind's state, chosen with
``lax.switch``. With one kind enabled (the default) there is no switch at all. Under ``vmap``
over attackers a batched switch runs every branch and selects, so each enabled kind costs its
elementwise update (small beside the forward/backward passes) and its state's memory.

The learning rate enters through ``optax.inject_hyperparams``: it is an array in the state, so
gradients reach it through the scan carry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sdm_jax.blocking.settings import MLACSettings


def build_inner_optimizer(kind: str, learning_rate: jax.Array, settings: MLACSettings):
    if kind == "adam":
        return optax.inject_hyperparams(optax.adam)(
            learning_rate=learning_rate, eps_root=settings.adam_eps_root
        )
    if kind == "adamw":
        return optax.inject_hyperparams(optax.adamw)(
            learning_rate=learning_rate,
            eps_root=settings.adam_eps_root,
            weight_decay=settings.inner_weight_decay,
        )
    if kind == "sgd":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate)
    if kind == "momentum":
        return optax.inject_hyperparams(optax.sgd)(
            learning_rate=learning_rate, momentum=settings.inner_momentum
        )
    if kind == "rmsprop":
        # eps inside the square root keeps second-order gradients finite at a zero moment.
        return optax.inject_hyperparams(optax.rmsprop)(
            learning_rate=learning_rate, decay=settings.rmsprop_decay, eps=1e-8
        )
    raise ValueError(f"unknown inner optimizer {kind!r}")


class InnerOptimizer:
    """All enabled kinds at one learning rate; ``kind_index`` picks the one that steps."""

    def __init__(self, learning_rate: jax.Array, kind_index: jax.Array, settings: MLACSettings):
        self.kinds = settings.inner_optimizers
        self.members = [build_inner_optimizer(k, learning_rate, settings) for k in self.kinds]
        self.kind_index = kind_index

    def init(self, params):
        return tuple(member.init(params) for member in self.members)

    def update(self, grads, states, params):
        if len(self.members) == 1:
            updates, state = self.members[0].update(grads, states[0], params)
            return updates, (state,)

        def branch(i):
            def run(operands):
                grads, states, params = operands
                updates, state = self.members[i].update(grads, states[i], params)
                return updates, states[:i] + (state,) + states[i + 1 :]

            return run

        branches = [branch(i) for i in range(len(self.members))]
        return jax.lax.switch(self.kind_index, branches, (grads, states, params))


def clip_by_global_norm(grads, norm: jax.Array, max_norm: float):
    """Scale ``grads`` down to ``max_norm`` when their ``norm`` exceeds it (differentiably)."""
    scale = jnp.minimum(1.0, max_norm / norm)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
