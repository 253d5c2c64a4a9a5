"""The bias-free classification head and the toy task's MLP backbone."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from sdm_jax.models.backbone import Backbone, Batch, Params


def init_head(key: jax.Array, feature_dim: int, num_outputs: int) -> Params:
    """A bias-free linear layer initialised as ``torch.nn.Linear`` does (uniform ±1/√fan_in)."""
    bound = 1.0 / jnp.sqrt(feature_dim)
    kernel = jax.random.uniform(key, (feature_dim, num_outputs), jnp.float32, -bound, bound)
    return {"kernel": kernel}


def head_logits(head: Params, features: jax.Array) -> jax.Array:
    return features @ head["kernel"].astype(features.dtype)


def split_logits(logits: jax.Array, num_good: int) -> tuple[jax.Array, jax.Array]:
    """The first ``num_good`` outputs are the desired task, the rest the blocked one."""
    return logits[..., :num_good], logits[..., num_good:]


def _init_linear(key: jax.Array, fan_in: int, fan_out: int) -> Params:
    weight_key, bias_key = jax.random.split(key)
    bound = 1.0 / jnp.sqrt(fan_in)
    return {
        "kernel": jax.random.uniform(weight_key, (fan_in, fan_out), jnp.float32, -bound, bound),
        "bias": jax.random.uniform(bias_key, (fan_out,), jnp.float32, -bound, bound),
    }


@functools.cache
def mlp_backbone(input_dim: int = 25, width: int = 50, depth: int = 4) -> Backbone:
    """``depth`` ReLU layers of ``width`` units; the features are the last hidden layer.
    Cached for the same reason as :func:`~sdm_jax.models.bert.bert_backbone`."""

    def init(key: jax.Array) -> Params:
        keys = jax.random.split(key, depth)
        dims = [input_dim] + [width] * depth
        return {f"layer_{i}": _init_linear(keys[i], dims[i], dims[i + 1]) for i in range(depth)}

    def features(params: Params, batch: Batch) -> jax.Array:
        hidden = batch["x"]
        for i in range(depth):
            layer = params[f"layer_{i}"]
            hidden = jax.nn.relu(hidden @ layer["kernel"] + layer["bias"])
        return hidden

    return Backbone(
        name=f"mlp{depth}x{width}",
        features=features,
        init=init,
        feature_dim=width,
        input_keys=("x",),
    )
