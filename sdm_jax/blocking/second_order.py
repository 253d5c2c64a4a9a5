"""The inner gradient with forward-over-reverse second-order terms.

Differentiating an unrolled attacker differentiates each inner gradient ``g = ∇L(φ)`` once
more. JAX's default is reverse-over-reverse: the inner backward pass keeps its activations and
the outer backward pass runs the transpose of that backward pass. Because ``∂g/∂φ`` is the
Hessian of a scalar loss, it is symmetric, so the cotangent ``u`` that reaches ``g`` can go
back to ``φ`` as the Hessian-vector product ``H·u``, and ``H·u`` is the forward-mode tangent of
``∇L`` along ``u`` (forward-over-reverse, as in MixFlow-MG, arXiv 2505.00793). The inner step
then keeps only its inputs; the outer backward pass recomputes the gradient together with its
tangent. Same numbers up to round-off, and far less memory.

A function built here has a custom VJP, so it cannot itself be differentiated in forward mode:
programs that carry a forward-mode tangent through the attacker keep the default.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _zero_cotangent(leaf: jax.Array):
    if jnp.issubdtype(leaf.dtype, jnp.inexact):
        return jnp.zeros_like(leaf)
    return np.zeros(leaf.shape, dtype=jax.dtypes.float0)


def forward_over_reverse_value_and_grad(loss_fn: Callable) -> Callable:
    """Like ``jax.value_and_grad(loss_fn, has_aux=True)`` for ``loss_fn(params, batch) ->
    (loss, aux)``, but returns ``((loss, None), grads)`` and differentiates ``grads`` by
    Hessian-vector products in forward mode. ``batch`` gets no cotangent: it is data."""

    def loss_only(params, batch):
        return loss_fn(params, batch)[0]

    plain_value_and_grad = jax.value_and_grad(loss_only)

    @jax.custom_vjp
    def value_and_grad(params, batch):
        return plain_value_and_grad(params, batch)

    def forward(params, batch):
        loss, grads = plain_value_and_grad(params, batch)
        return (loss, grads), (params, batch, grads)

    def backward(residuals, cotangents):
        params, batch, grads = residuals
        loss_cotangent, grads_cotangent = cotangents
        gradient = jax.grad(loss_only)
        _, hessian_product = jax.jvp(lambda p: gradient(p, batch), (params,), (grads_cotangent,))
        params_cotangent = jax.tree.map(lambda h, g: h + loss_cotangent * g, hessian_product, grads)
        return params_cotangent, jax.tree.map(_zero_cotangent, batch)

    value_and_grad.defvjp(forward, backward)

    def with_aux_slot(params, batch):
        loss, grads = value_and_grad(params, batch)
        return (loss, None), grads

    return with_aux_slot
