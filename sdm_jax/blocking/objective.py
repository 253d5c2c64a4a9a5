"""The blocking objective: every term of the outer loss, and their signed, weighted sum.

Sign convention: ``total = sum(l_t * term_t, minimised t) - sum(l_t * term_t, maximised t)``
(see :mod:`sdm_jax.blocking.settings` for which is which). Metrics always carry the raw,
unsigned, unweighted term values under ``term/<name>``. A term whose weight is 0 is not computed
(decided in Python while tracing), except the cheap base and adapted cross-entropies that the
metrics and the attacker's own loss need anyway.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sdm_jax.blocking.attacker import (
    AttackerResult,
    attacker_head,
    draw_attacker,
    forward,
    run_attacker,
)
from sdm_jax.blocking.losses import entropy, inverse_cross_entropy, kl_to_uniform, linear_mi
from sdm_jax.blocking.settings import MAXIMISED_TERMS, MLACSettings
from sdm_jax.fine_tune import accuracy, cross_entropy, weighted_mean
from sdm_jax.models.backbone import Backbone, Batch, Params
from sdm_jax.models.heads import split_logits


def late_step_weights(num_sets: int, power: float) -> jax.Array:
    """Normalised weights ``(t+1)**power`` over the K+1 logit sets (TAR's late weighting)."""
    raw = jnp.arange(1, num_sets + 1, dtype=jnp.float32) ** power
    return raw / jnp.sum(raw)


def adapted_bad_terms(
    result: AttackerResult, outer_batch: Batch, settings: MLACSettings
) -> tuple[dict, dict]:
    """Terms on the gender-adapted logit sets ``[K+1, B, n_bad]``; returns (terms, metrics)."""
    logits, labels, weight = result.outer_logits, outer_batch["bad"], outer_batch["weight"]
    per_set_ce = cross_entropy(logits, labels, weight)
    terms = {"bad_adapted": jnp.mean(per_set_ce)}
    metrics = {
        "acc/bad_adapted_final": accuracy(logits[-1], labels, weight),
        "loss/bad_adapted_final": per_set_ce[-1],
        "inner/loss_first": result.inner_losses[0] if settings.inner_steps else per_set_ce[0],
        "inner/loss_last": result.inner_losses[-1] if settings.inner_steps else per_set_ce[0],
        "inner/grad_norm_mean": jnp.mean(result.inner_grad_norms)
        if settings.inner_steps else jnp.zeros(()),
    }
    if settings.enabled("linear_mi"):
        def readout(z):
            return linear_mi(z, labels, weight, settings.linear_mi_iterations)

        mi_ce, mi_acc = jax.vmap(readout)(logits)
        terms["linear_mi"] = jnp.mean(mi_ce)
        metrics["acc/linear_mi"] = jnp.mean(mi_acc)
    if settings.enabled("bad_adapted_grad"):
        norms = jnp.concatenate([result.inner_grad_norms, result.final_grad_norm[None]])
        terms["bad_adapted_grad"] = jnp.mean(norms)
    if settings.enabled("entropy"):
        step_weights = late_step_weights(logits.shape[0], settings.entropy_late_power)
        terms["entropy"] = jnp.sum(step_weights.astype(logits.dtype) * entropy(logits, weight))
    if settings.enabled("kl_uniform"):
        terms["kl_uniform"] = jnp.mean(kl_to_uniform(logits, weight))
    if settings.enabled("inverse_ce"):
        terms["inverse_ce"] = jnp.mean(inverse_cross_entropy(logits, labels, weight))
    return terms, metrics


def one_attacker(
    backbone: Backbone,
    params: Params,
    meta_params: Params,
    key: jax.Array,
    inner_batches: Batch,
    outer_batch: Batch,
    settings: MLACSettings,
    num_good: int,
    num_bad: int,
) -> tuple[dict, dict]:
    """Adapted-model terms of one simulated attacker (and of its good-task twin if asked)."""
    head_key, draw_key, good_key = jax.random.split(key, 3)
    dtype = params["head"]["kernel"].dtype
    head = attacker_head(head_key, meta_params, backbone.feature_dim, num_bad, settings, dtype)
    draw = draw_attacker(draw_key, meta_params, settings)
    result = run_attacker(
        backbone,
        {"backbone": params["backbone"], "head": head},
        draw,
        inner_batches,
        outer_batch,
        settings,
        label_key="bad",
        trained_outputs=(0, num_bad),
        final_grad_norm=settings.enabled("bad_adapted_grad"),
    )
    terms, metrics = adapted_bad_terms(result, outer_batch, settings)
    metrics["inner/lr"] = draw.learning_rate
    metrics["inner/frozen_fraction"] = 1.0 - draw.train_backbone - draw.train_lora
    metrics["inner/lora_fraction"] = jnp.asarray(draw.train_lora, dtype)
    metrics["active_rows_missing"] = result.active_rows_missing

    if settings.adapts_good_task:
        # The good-task attacker fine-tunes the whole classifier, its own head included.
        good = run_attacker(
            backbone,
            params,
            draw_attacker(good_key, meta_params, settings),
            inner_batches,
            outer_batch,
            settings,
            label_key="good",
            trained_outputs=(0, num_good),
            final_grad_norm=False,
        )
        weight = outer_batch["weight"]
        good_z, bad_z = split_logits(good.outer_logits, num_good)
        terms["good_adapted"] = jnp.mean(cross_entropy(good_z, outer_batch["good"], weight))
        terms["good_adapted_bad"] = cross_entropy(bad_z[-1], outer_batch["bad"], weight)
        metrics["acc/good_adapted_final"] = accuracy(good_z[-1], outer_batch["good"], weight)
        metrics["active_rows_missing"] = metrics["active_rows_missing"] + good.active_rows_missing
    return terms, metrics


def base_terms(
    backbone: Backbone,
    params: Params,
    original_backbone: Params,
    outer_batch: Batch,
    settings: MLACSettings,
    num_good: int,
) -> tuple[dict, dict]:
    """Terms of the unadapted model on the outer batch."""
    logits, features = forward(backbone, params, outer_batch)
    weight = outer_batch["weight"]
    good_logits, bad_logits = split_logits(logits, num_good)
    terms = {
        "good_base": cross_entropy(good_logits, outer_batch["good"], weight),
        "bad_base": cross_entropy(bad_logits, outer_batch["bad"], weight),
    }
    metrics = {
        "acc/good_base": accuracy(good_logits, outer_batch["good"], weight),
        "acc/bad_base": accuracy(bad_logits, outer_batch["bad"], weight),
    }
    if settings.enabled("mlm"):
        target = jax.lax.stop_gradient(backbone.features(original_backbone, outer_batch))
        per_example = jnp.mean(jnp.square(features - target), axis=-1)
        terms["mlm"] = weighted_mean(per_example, weight)
    return terms, metrics


def signed_total(terms: dict, settings: MLACSettings) -> jax.Array:
    """The outer loss the model minimises: maximised terms enter with a minus sign."""
    total = jnp.zeros((), jnp.result_type(*terms.values()))
    for name, value in terms.items():
        if not settings.enabled(name):
            continue
        sign = -1.0 if name in MAXIMISED_TERMS else 1.0
        total = total + sign * settings.weight(name) * value
    return total
