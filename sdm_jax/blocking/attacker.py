"""The simulated attacker: K optimizer steps on a task, unrolled with ``lax.scan``.

``run_attacker`` is a pure function of the starting parameters ``{"backbone", "head"}``, one
attacker's random draw and its stacked inner batches ``[K, B, ...]``. It returns the logits on the
outer batch before and after every step, so every blocking objective can be written on them and
differentiated end to end (or first-order, see ``MLACSettings.first_order``).

Step ``t`` sees parameters ``phi_t``: the outer logits of set ``t`` are taken at ``phi_t``; then
noise is added (optional), the task gradient on inner batch ``t`` is masked (frozen base), its
global norm recorded, it is clipped, and the drawn optimizer's update (masked again) gives
``phi_{t+1}``. Logit set ``K`` and the final gradient norm are taken at ``phi_K`` after the scan.

With ``lora`` among ``MLACSettings.inner_attacks``, ``phi`` also holds LoRA adapters
(:mod:`sdm_jax.models.adapters`; ``B`` starts at zero, so every attacker starts from the
model itself) and the forward pass runs the backbone with them applied. The draw's masks say
what steps: the backbone for ``full``, the adapters for ``lora``, neither for ``head``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sdm_jax.blocking.optimizers import inner_direction
from sdm_jax.blocking.second_order import forward_over_reverse_value_and_grad
from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.fine_tune import cross_entropy, global_norm, mask_parts, take_step
from sdm_jax.models import active_rows
from sdm_jax.models.adapters import Adaptation, adaptation_for, apply_adapter, init_adapter
from sdm_jax.models.backbone import Backbone, Batch, Params
from sdm_jax.models.heads import head_logits, init_head


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class AttackerDraw:
    """One attacker's random configuration (arrays, so a meta-batch of them can be vmapped).

    ``train_backbone`` is 1.0 for full fine-tuning and 0.0 otherwise; ``train_lora`` is 1.0 for
    a LoRA attacker, whose adapters start from ``lora_key`` (unused without ``lora``).
    """

    learning_rate: jax.Array
    optimizer_index: jax.Array
    train_backbone: jax.Array
    noise_key: jax.Array
    train_lora: jax.Array | float = 0.0
    lora_key: jax.Array | None = None


class AttackerResult(NamedTuple):
    outer_logits: jax.Array  # [K+1, B, C]: before the first step and after each step
    inner_grad_norms: jax.Array  # [K]: pre-clip norm of each (masked) inner gradient
    inner_losses: jax.Array  # [K]: task loss on each inner batch
    final_grad_norm: jax.Array  # norm of the outer-batch gradient at phi_K (0 if not asked)
    final_features: jax.Array  # [B, H]: features of phi_K on the outer batch
    active_rows_missing: jax.Array  # ids that did not fit the active-row table (0 = exact)


def learned_inner_lr(meta_params: Params) -> jax.Array:
    """The meta-learned inner lr, stored raw (``inner_lr``) or as ``log_lr``."""
    if "inner_lr" in meta_params:
        return meta_params["inner_lr"]
    return jnp.exp(meta_params["log_lr"])


def draw_attacker(key: jax.Array, meta_params: Params, settings: MLACSettings) -> AttackerDraw:
    """Learning rate (meta-learned or log-uniform), optimizer kind, what it trains, keys."""
    lr_key, kind_key, frozen_key, noise_key = jax.random.split(key, 4)
    if settings.learn_inner_lr:
        learning_rate = learned_inner_lr(meta_params)
    else:
        low, high = math.log(settings.inner_lr_sample_min), math.log(settings.inner_lr_sample_max)
        learning_rate = jnp.exp(jax.random.uniform(lr_key, (), minval=low, maxval=high))
    kind = jax.random.randint(kind_key, (), 0, len(settings.inner_optimizers))
    frozen = jax.random.uniform(frozen_key, ()) < settings.frozen_base_prob
    attack_key, lora_key = jax.random.split(jax.random.fold_in(key, 1))
    attacks = settings.inner_attacks
    attack_index = jax.random.randint(attack_key, (), 0, len(attacks))
    is_full = jnp.asarray([a == "full" for a in attacks])[attack_index] & ~frozen
    is_lora = jnp.asarray([a == "lora" for a in attacks])[attack_index] & ~frozen
    return AttackerDraw(
        learning_rate=learning_rate,
        optimizer_index=kind,
        train_backbone=is_full.astype(learning_rate.dtype),
        noise_key=noise_key,
        train_lora=is_lora.astype(learning_rate.dtype),
        lora_key=lora_key,
    )


def attacker_head(
    key: jax.Array, meta_params: Params, feature_dim: int, num_outputs: int,
    settings: MLACSettings, dtype,
) -> Params:
    """The attacker's starting head: meta-learned init or fresh (``torch.nn.Linear``-style)."""
    if settings.learn_head_init:
        return meta_params["head_init"]
    fresh = init_head(key, feature_dim, num_outputs)
    return jax.tree.map(lambda leaf: leaf.astype(dtype), fresh)


def forward(backbone: Backbone, params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    features = backbone.features(params["backbone"], batch)
    return head_logits(params["head"], features), features


def lora_adaptation(backbone: Backbone, settings: MLACSettings) -> Adaptation | None:
    """The simulated LoRA attackers' adapters, or ``None`` when no attacker can draw ``lora``."""
    if "lora" not in settings.inner_attacks:
        return None
    return adaptation_for(backbone, "lora", settings.inner_lora_rank, settings.inner_lora_targets)


def _with_adapters(params: Params, adaptation: Adaptation | None, scale: float) -> Params:
    """``{"backbone", "head"}`` with any LoRA adapters folded into the backbone."""
    if adaptation is None:
        return params
    backbone = apply_adapter(adaptation, params["lora"], params["backbone"], scale)
    return {"backbone": backbone, "head": params["head"]}


def _trained_parts(draw: AttackerDraw) -> dict:
    """What this attacker trains, as :func:`sdm_jax.fine_tune.take_step`'s 0/1 factors (the
    head always)."""
    return {"backbone": draw.train_backbone, "lora": draw.train_lora}


def _add_noise(params: Params, key: jax.Array, std: float) -> Params:
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        leaf + std * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


def sqrt_chunks(length: int) -> tuple[int, int]:
    """``(chunks, steps_per_chunk)`` with ``steps_per_chunk`` the largest divisor of ``length``
    not above ⌈√length⌉ (a prime ``length`` degenerates to per-step chunks)."""
    ceiling = math.isqrt(length - 1) + 1 if length > 1 else 1
    per_chunk = max(d for d in range(1, ceiling + 1) if length % d == 0)
    return length // per_chunk, per_chunk


def unroll(body, carry, xs, length: int, remat: str):
    """``lax.scan(body, carry, xs)`` under a rematerialisation policy; compile time is flat in
    ``length`` for every policy."""
    if remat == "none" or length == 0:
        return jax.lax.scan(body, carry, xs, length=length)
    if remat == "full":
        return jax.lax.scan(jax.checkpoint(body, prevent_cse=False), carry, xs, length=length)
    if remat == "dots":
        policy = jax.checkpoint_policies.dots_saveable
        step = jax.checkpoint(body, prevent_cse=False, policy=policy)
        return jax.lax.scan(step, carry, xs, length=length)
    if remat == "sqrt":
        chunks, per_chunk = sqrt_chunks(length)
        chunked_xs = jax.tree.map(lambda x: x.reshape((chunks, per_chunk) + x.shape[1:]), xs)

        def chunk(carry, chunk_xs):
            return jax.lax.scan(body, carry, chunk_xs, length=per_chunk)

        carry, ys = jax.lax.scan(
            jax.checkpoint(chunk, prevent_cse=False), carry, chunked_xs, length=chunks
        )
        return carry, jax.tree.map(lambda y: y.reshape((length,) + y.shape[2:]), ys)
    raise ValueError(f"unknown remat policy {remat!r}")


def run_attacker(
    backbone: Backbone,
    params: Params,
    draw: AttackerDraw,
    inner_batches: Batch,
    outer_batch: Batch,
    settings: MLACSettings,
    *,
    label_key: str,
    trained_outputs: tuple[int, int],
    final_grad_norm: bool,
) -> AttackerResult:
    """Adapt ``params`` ({"backbone", "head"}) for ``settings.inner_steps`` steps.

    ``trained_outputs = (start, stop)`` are the head outputs whose CE against ``label_key`` the
    attacker minimises; ``outer_logits`` hold all head outputs. ``final_grad_norm`` asks for the
    norm of the outer-batch task gradient at the adapted parameters (costs one more backward).
    """
    steps = settings.inner_steps
    start, stop = trained_outputs
    missing = jnp.zeros((), jnp.int32)
    if settings.active_rows:
        path = backbone.embedding_path
        ids = [inner_batches[active_rows.TOKEN_KEY], outer_batch[active_rows.TOKEN_KEY]]
        active, missing = active_rows.active_token_ids(ids, settings.active_rows,
                                                       backbone.pad_token_id)
        inner_batches = active_rows.remap_tokens(inner_batches, active)
        outer_batch = active_rows.remap_tokens(outer_batch, active)
        compact = active_rows.compact_embedding(params["backbone"], path, active)
        params = {**params, "backbone": compact}

    adaptation = lora_adaptation(backbone, settings)
    lora_scale = settings.inner_lora_alpha / settings.inner_lora_rank
    if adaptation is not None:
        adapters = init_adapter(adaptation, params["backbone"], draw.lora_key)
        if not adapters:
            raise ValueError(f"mlac.inner_attacks has lora, but {backbone.name} has no "
                             f"{settings.inner_lora_targets!r} matrix to adapt")
        params = {**params, "lora": adapters}

    def model(phi: Params, batch: Batch):
        return forward(backbone, _with_adapters(phi, adaptation, lora_scale), batch)

    def task_loss(phi: Params, batch: Batch):
        logits, features = model(phi, batch)
        loss = cross_entropy(logits[..., start:stop], batch[label_key], batch["weight"])
        return loss, (logits, features)

    value_and_grad = None
    if settings.forward_over_reverse:
        value_and_grad = forward_over_reverse_value_and_grad(task_loss)
    optimizer = inner_direction(draw.optimizer_index, settings)
    trained = _trained_parts(draw)
    noise_keys = jax.random.split(draw.noise_key, steps)

    def inner_step(carry, xs):
        phi, opt_state = carry
        batch, noise_key = xs
        outer_logits, _ = model(phi, outer_batch)
        if settings.param_noise_std > 0:
            model_part = {"backbone": phi["backbone"], "head": phi["head"]}
            phi = {**phi, **_add_noise(model_part, noise_key, settings.param_noise_std)}
        phi, opt_state, outcome = take_step(
            task_loss, optimizer, phi, opt_state, batch, draw.learning_rate, trained=trained,
            max_grad_norm=settings.inner_grad_clip, first_order=settings.first_order,
            value_and_grad=value_and_grad,
        )
        return (phi, opt_state), (outer_logits, outcome.grad_norm, outcome.loss)

    carry = (params, optimizer.init(params))
    (adapted, _), (logits, norms, losses) = unroll(
        inner_step, carry, (inner_batches, noise_keys), steps, settings.remat
    )

    if final_grad_norm:
        (_, (final_logits, final_features)), grads = jax.value_and_grad(task_loss, has_aux=True)(
            adapted, outer_batch
        )
        final_norm = global_norm(mask_parts(grads, trained))
    else:
        final_logits, final_features = model(adapted, outer_batch)
        final_norm = jnp.zeros((), final_logits.dtype)
    return AttackerResult(
        outer_logits=jnp.concatenate([logits, final_logits[None]], axis=0),
        inner_grad_norms=norms,
        inner_losses=losses,
        final_grad_norm=final_norm,
        final_features=final_features,
        active_rows_missing=missing,
    )
