"""The blocking objective's losses beyond the task's own cross-entropy (which lives with the
optimizer step in :mod:`sdm_jax.fine_tune`), and the bounded linear read-out (linear MI).

Every batch carries a per-example ``weight`` (0 on padding rows), so each reduction here is
``sum(w * loss) / sum(w)``, guarded against an all-padding batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sdm_jax.fine_tune import accuracy, cross_entropy, weighted_mean


def entropy(logits: jax.Array, weight: jax.Array) -> jax.Array:
    """Weighted mean prediction entropy (nats)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return weighted_mean(-jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1), weight)


def kl_to_uniform(logits: jax.Array, weight: jax.Array) -> jax.Array:
    """Weighted mean KL(uniform ‖ p): large whenever some class is nearly ruled out."""
    num_classes = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    per_example = -jnp.log(num_classes) - jnp.mean(log_probs, axis=-1)
    return weighted_mean(per_example, weight)


def inverse_cross_entropy(logits: jax.Array, labels: jax.Array, weight: jax.Array) -> jax.Array:
    """Weighted mean of −log(1 − p_true), computed from logits without cancellation."""
    is_true = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    is_true = jnp.broadcast_to(is_true, logits.shape)
    others = jax.nn.logsumexp(jnp.where(is_true, -jnp.inf, logits), axis=-1)
    per_example = jax.nn.logsumexp(logits, axis=-1) - others
    return weighted_mean(per_example, weight)


def solve_linear_readout(
    logits: jax.Array, labels: jax.Array, weight: jax.Array, iterations: int
) -> jax.Array:
    """``argmin over W in [-1,1]^{C×C} of CE(logits @ W, labels)`` by accelerated projected
    gradient descent (FISTA) with a fixed number of iterations.

    The step is ``1/L`` with ``L = mean ‖z‖²/2``, an upper bound of the gradient's Lipschitz
    constant (the softmax CE Hessian in the logits is at most ½·I). Starts from the identity.
    """
    num_classes = logits.shape[-1]
    weight = weight.astype(logits.dtype)
    sq_norms = jnp.sum(jnp.square(logits), axis=-1)
    lipschitz = 0.5 * weighted_mean(sq_norms, weight) + 1e-6
    step = 1.0 / lipschitz

    def objective(w):
        return cross_entropy(logits @ w, labels, weight)

    def body(_, carry):
        w, previous, t = carry
        t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        probe = w + ((t - 1.0) / t_next) * (w - previous)
        new_w = jnp.clip(probe - step * jax.grad(objective)(probe), -1.0, 1.0)
        return new_w, w, t_next

    identity = jnp.eye(num_classes, dtype=logits.dtype)
    one = jnp.ones((), logits.dtype)
    w, _, _ = jax.lax.fori_loop(0, iterations, body, (identity, identity, one))
    return w


def linear_mi(
    logits: jax.Array, labels: jax.Array, weight: jax.Array, iterations: int
) -> tuple[jax.Array, jax.Array]:
    """CE and accuracy of the best bounded linear read-out of ``logits [B, C]``.

    The solver runs on stopped logits and ``W*`` is a constant: by Danskin's theorem the
    gradient of the minimum with respect to the logits is the gradient at the optimum with
    ``W`` held fixed, so no derivative flows through the solver's iterations.
    """
    best = jax.lax.stop_gradient(
        solve_linear_readout(jax.lax.stop_gradient(logits), labels, weight, iterations)
    )
    readout = logits @ best
    return cross_entropy(readout, labels, weight), accuracy(readout, labels, weight)
