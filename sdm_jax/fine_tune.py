"""How an attacker fine-tunes: one optimizer table and one optimizer step, shared by the
simulated attacker of training (:mod:`sdm_jax.blocking.attacker`) and the evaluation attacks
(:mod:`sdm_jax.attacks.program`), so the two cannot drift apart.

Each optimizer name maps to a *family* (the shape of its state) and the decoupled weight decay
and momentum it uses by default. Names of one family differ only in those two numbers, which
may be traced: Adam and AdamW (SGD with and without momentum) share one compiled program and
one optimizer state. A family's transform is the update *direction* without a learning rate;
:func:`take_step` scales it by ``-lr``, so the lr can be a traced, scheduled or meta-learned
(differentiated) scalar. Adding an optimizer is one entry in :data:`OPTIMIZERS` (and, for a new
family, one branch in :func:`direction`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

TINY = 1e-12


@dataclass(frozen=True)
class OptimizerDefaults:
    family: str
    weight_decay: float = 0.0
    momentum: float = 0.0


OPTIMIZERS: dict[str, OptimizerDefaults] = {
    "adam": OptimizerDefaults("adam"),
    "adamw": OptimizerDefaults("adam", weight_decay=0.01),
    "sgd": OptimizerDefaults("sgd"),
    "sgd_momentum": OptimizerDefaults("sgd", momentum=0.9),
    "rmsprop": OptimizerDefaults("rmsprop"),
}
FAMILIES = ("adam", "sgd", "rmsprop")
EPS = 1e-8
# A tiny eps under Adam's square root keeps second-order gradients finite where a second moment
# is exactly zero; 1e-20 changes no first-order step measurably.
ADAM_EPS_ROOT = 1e-20
# torch.optim.RMSprop's alpha, so attacks match the PyTorch recipes users compare against.
RMSPROP_DECAY = 0.99


def _is_static_zero(value) -> bool:
    return isinstance(value, int | float) and value == 0


def direction(
    family: str,
    *,
    momentum=0.0,
    weight_decay=0.0,
    adam_eps_root: float = ADAM_EPS_ROOT,
    rmsprop_decay: float = RMSPROP_DECAY,
) -> optax.GradientTransformation:
    """The family's update direction (``lr`` not applied); ``momentum`` and ``weight_decay`` may
    be traced. ``trace(decay=0)`` is plain SGD exactly and decaying by 0 changes nothing, so one
    program serves a whole family; a Python 0 skips the work altogether."""
    if family == "adam":
        base = optax.scale_by_adam(eps=EPS, eps_root=adam_eps_root)
    elif family == "sgd":
        base = optax.identity() if _is_static_zero(momentum) else optax.trace(decay=momentum)
    elif family == "rmsprop":
        # eps inside the square root (optax's choice) keeps second-order gradients finite.
        base = optax.scale_by_rms(decay=rmsprop_decay, eps=EPS)
    else:
        raise ValueError(f"unknown optimizer family {family!r}; choose from {FAMILIES}")
    if _is_static_zero(weight_decay):
        return base
    return optax.chain(base, optax.add_decayed_weights(weight_decay))


def weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    """Mean of ``values [..., B]`` over the last axis with per-example ``weight [B]`` (0 on
    padding rows), guarded against an all-padding batch."""
    weight = weight.astype(values.dtype)
    return jnp.sum(values * weight, axis=-1) / jnp.maximum(jnp.sum(weight), 1e-9)


def cross_entropy(logits: jax.Array, labels: jax.Array, weight: jax.Array) -> jax.Array:
    """Weighted softmax cross-entropy; ``logits [..., B, C]``, ``labels [B]`` -> ``[...]``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(
        log_probs, jnp.broadcast_to(labels[:, None], log_probs.shape[:-1] + (1,)), axis=-1
    )[..., 0]
    return weighted_mean(-picked, weight)


def accuracy(logits: jax.Array, labels: jax.Array, weight: jax.Array | None = None) -> jax.Array:
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    if weight is None:
        return jnp.mean(correct, axis=-1)
    return weighted_mean(correct, weight)


def global_norm(tree) -> jax.Array:
    """L2 norm over all leaves, smooth at zero so its gradient never divides by zero."""
    squares = sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree))
    return jnp.sqrt(squares + TINY)


def clip_by_global_norm(grads, norm: jax.Array, max_norm: float):
    """Scale ``grads`` down to ``max_norm`` when their ``norm`` exceeds it (differentiably)."""
    scale = jnp.minimum(1.0, max_norm / norm)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)


def mask_parts(tree: Mapping[str, Any], trained: Mapping[str, jax.Array]) -> dict:
    """Multiply each top-level part of ``tree`` named in ``trained`` by its 0/1 factor."""
    masked = dict(tree)
    for part, factor in trained.items():
        if part in tree:
            factor = jnp.asarray(factor)
            masked[part] = jax.tree.map(lambda x, f=factor: x * f.astype(x.dtype), tree[part])
    return masked


class StepOutcome(NamedTuple):
    loss: jax.Array
    aux: Any
    grad_norm: jax.Array  # global norm of the masked gradient, before clipping


def take_step(
    loss_fn: Callable,
    transform: optax.GradientTransformation,
    params,
    opt_state,
    batch,
    learning_rate: jax.Array,
    *,
    trained: Mapping[str, jax.Array] | None = None,
    max_grad_norm: float | None = None,
    first_order: bool = False,
    value_and_grad: Callable | None = None,
):
    """One optimizer step on ``batch``: ``params - learning_rate * direction(grad)``.

    ``loss_fn(params, batch) -> (loss, aux)``. ``trained`` maps top-level parts of ``params`` to
    0/1 factors (traced): a part at 0 gets neither gradient nor update. ``max_grad_norm`` clips
    the masked gradient's global norm. With ``first_order`` the step is a constant for the
    meta-gradient except for its direct factor ``learning_rate``. ``value_and_grad`` replaces
    ``jax.value_and_grad(loss_fn, has_aux=True)`` (same signature and result), e.g. by one that
    differentiates the gradient differently. Returns ``(new_params, new_opt_state, StepOutcome)``.
    """
    trained = trained or {}
    value_and_grad = value_and_grad or jax.value_and_grad(loss_fn, has_aux=True)
    (loss, aux), grads = value_and_grad(params, batch)
    grads = mask_parts(grads, trained)
    norm = global_norm(grads)
    if max_grad_norm is not None:
        grads = clip_by_global_norm(grads, norm, max_grad_norm)
    if first_order:
        grads, opt_state = jax.lax.stop_gradient((grads, opt_state))
    step_direction, opt_state = transform.update(grads, opt_state, params)
    if first_order:
        step_direction = jax.lax.stop_gradient(step_direction)
    scale = -jnp.asarray(learning_rate)
    updates = jax.tree.map(lambda u: u * scale.astype(u.dtype), step_direction)
    updates = mask_parts(updates, trained)
    return optax.apply_updates(params, updates), opt_state, StepOutcome(loss, aux, norm)
