"""The MLAC outer step: meta-gradient of a meta-batch of simulated attackers, and both updates.

One jitted function maps ``(TrainState, meta_batch) -> (TrainState, metrics)``. A meta-batch is

    {"inner": {key: [M, K, B, ...]},   # each attacker's K inner batches (with "weight")
     "outer": {key: [B_out, ...]}}     # or [M, B_out, ...] when settings.shared_outer_batch=False

with the backbone's input keys plus ``good``, ``bad`` and ``weight``. The model minimises the
signed blocking objective (:mod:`sdm_jax.blocking.objective`); the attacker's meta-parameters
(inner lr, head init) minimise the adapted gender CE (``term/bad_adapted``): the min-max.
That second gradient costs one more backward pass through the unroll, skipped when the
attacker has no meta-parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from sdm_jax import parallel
from sdm_jax.blocking.attacker import learned_inner_lr
from sdm_jax.blocking.objective import base_terms, one_attacker, signed_total
from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.fine_tune import global_norm
from sdm_jax.models.backbone import Backbone, Batch, Params
from sdm_jax.models.heads import init_head

MetaBatch = dict[str, Batch]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TrainState:
    """Everything an outer step reads and writes; a pytree, donated to the step.

    ``rng`` is a raw ``uint32[2]`` key; step ``s`` draws from ``fold_in(rng, s)``, so a resumed
    run repeats an uninterrupted one. ``original_backbone`` is the frozen copy the ``mlm``
    distillation term compares against (an empty dict when ``l_mlm == 0``).
    """

    step: jax.Array
    params: Params
    opt_state: optax.OptState
    meta_params: Params
    meta_opt_state: optax.OptState
    rng: jax.Array
    original_backbone: Params


def outer_optimizer(settings: MLACSettings) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(settings.outer_grad_clip), optax.adam(settings.outer_lr)
    )


def meta_optimizer(settings: MLACSettings) -> optax.GradientTransformation:
    """Adam on the attacker's meta-parameters after a joint clip; a log-space lr has its own
    Adam lr (``log_lr_meta_lr``), everything else ``meta_lr``."""
    def labels(meta_params):
        return {name: "log_lr" if name == "log_lr" else "meta" for name in meta_params}

    per_group = optax.multi_transform(
        {"meta": optax.adam(settings.meta_lr), "log_lr": optax.adam(settings.log_lr_meta_lr)},
        labels,
    )
    return optax.chain(optax.clip_by_global_norm(settings.meta_grad_clip), per_group)


def init_meta_params(key: jax.Array, feature_dim: int, num_bad: int, settings: MLACSettings):
    meta: dict = {}
    if settings.learn_inner_lr and settings.inner_lr_space == "raw":
        meta["inner_lr"] = jnp.asarray(settings.inner_lr_init, jnp.float32)
    elif settings.learn_inner_lr:
        meta["log_lr"] = jnp.asarray(math.log(settings.inner_lr_init), jnp.float32)
    if settings.learn_head_init:
        meta["head_init"] = init_head(key, feature_dim, num_bad)
    return meta


def init_train_state(
    backbone: Backbone,
    backbone_params: Params,
    num_good: int,
    num_bad: int,
    settings: MLACSettings,
    seed: int,
    head: Params | None = None,
) -> TrainState:
    """Initial state: the given backbone, a fresh ``n_good + n_bad`` head unless ``head`` is
    given, fresh optimizer states and meta-parameters, all derived from ``seed``."""
    if num_good <= 0 or num_bad <= 0:
        raise ValueError(f"num_good and num_bad must be positive, got {num_good}, {num_bad}")
    rng = jax.random.PRNGKey(seed)
    head_key, meta_key, step_rng = jax.random.split(rng, 3)
    if head is None:
        head = init_head(head_key, backbone.feature_dim, num_good + num_bad)
    params = {"backbone": backbone_params, "head": head}
    meta_params = init_meta_params(meta_key, backbone.feature_dim, num_bad, settings)
    original = jax.tree.map(jnp.copy, backbone_params) if settings.enabled("mlm") else {}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=outer_optimizer(settings).init(params),
        meta_params=meta_params,
        meta_opt_state=meta_optimizer(settings).init(meta_params),
        rng=step_rng,
        original_backbone=original,
    )


def check_meta_batch(meta_batch: MetaBatch, settings: MLACSettings) -> None:
    """Fail with one line naming the array whose leading shape is wrong (runs while tracing)."""
    if set(meta_batch) != {"inner", "outer"}:
        raise ValueError(f"meta batch needs keys 'inner' and 'outer', got {sorted(meta_batch)}")
    expected = {"inner": (settings.meta_batch_size, settings.inner_steps)}
    expected["outer"] = () if settings.shared_outer_batch else (settings.meta_batch_size,)
    for part, lead in expected.items():
        for key in ("good", "bad", "weight"):
            if key not in meta_batch[part]:
                raise ValueError(f"meta batch '{part}' lacks the array '{key}'")
        for key, value in meta_batch[part].items():
            if tuple(value.shape[: len(lead)]) != lead or value.ndim < len(lead) + 1:
                raise ValueError(
                    f"meta batch '{part}/{key}' has shape {tuple(value.shape)}, expected leading "
                    f"dims {lead} followed by the batch"
                )


def attacker_mapper(settings: MLACSettings, sharded: bool) -> Callable:
    """``map_attackers(attack, keys, inner, outer)``: every attacker of the meta-batch, vmapped
    or one after the other (``settings.attacker_batching``; sharded attackers are vmapped)."""
    mode = settings.attacker_batching
    if mode == "auto":
        on_cpu = jax.default_backend() == "cpu"
        mode = "sequential" if on_cpu and not sharded else "vectorised"
    if mode == "sequential" and sharded:
        raise ValueError("mlac.attacker_batching sequential cannot shard attackers over a device "
                         "mesh; use vectorised or auto")
    outer_axis = None if settings.shared_outer_batch else 0

    def vectorised(attack, keys, inner, outer):
        return jax.vmap(attack, in_axes=(0, 0, outer_axis))(keys, inner, outer)

    def sequential(attack, keys, inner, outer):
        if settings.shared_outer_batch:
            return jax.lax.map(lambda xs: attack(*xs, outer), (keys, inner))
        return jax.lax.map(lambda xs: attack(*xs), (keys, inner, outer))

    return sequential if mode == "sequential" else vectorised


def make_meta_objective(
    backbone: Backbone,
    settings: MLACSettings,
    num_good: int,
    num_bad: int,
    attacker_sharding: NamedSharding | None = None,
) -> Callable:
    """``objective(params, meta_params, original_backbone, meta_batch, key)`` ->
    ``((model_loss, attacker_loss), metrics)``: the pure function the step differentiates."""

    def objective(params, meta_params, original_backbone, meta_batch, key):
        inner, outer = meta_batch["inner"], meta_batch["outer"]
        base_batch = outer
        if not settings.shared_outer_batch:
            base_batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), outer)
        terms, metrics = base_terms(
            backbone, params, original_backbone, base_batch, settings, num_good
        )

        keys = jax.random.split(key, settings.meta_batch_size)
        map_attackers = attacker_mapper(settings, sharded=attacker_sharding is not None)
        if attacker_sharding is not None:
            keys = jax.lax.with_sharding_constraint(keys, attacker_sharding)

        def attack(attacker_key, inner_batches, outer_batch):
            return one_attacker(
                backbone, params, meta_params, attacker_key, inner_batches, outer_batch,
                settings, num_good, num_bad,
            )

        adapted, attacker_metrics = map_attackers(attack, keys, inner, outer)
        missing_rows = attacker_metrics.pop("active_rows_missing")
        terms.update(jax.tree.map(jnp.mean, adapted))
        metrics.update(jax.tree.map(jnp.mean, attacker_metrics))
        metrics["active_rows_missing"] = jnp.sum(missing_rows)
        model_loss = signed_total(terms, settings)
        attacker_loss = terms["bad_adapted"]
        metrics.update({f"term/{name}": value for name, value in terms.items()})
        metrics["loss/total"] = model_loss
        metrics["loss/attacker"] = attacker_loss
        return (model_loss, attacker_loss), metrics

    return objective


def make_meta_gradient(
    backbone: Backbone,
    settings: MLACSettings,
    num_good: int,
    num_bad: int,
    attacker_sharding: NamedSharding | None = None,
) -> Callable:
    """``meta_gradient(params, meta_params, original_backbone, meta_batch, key)`` ->
    ``(grads, meta_grads, metrics)``: the model's gradient of the blocking loss and the
    meta-parameters' gradient of the attacker loss, from one forward pass."""
    objective = make_meta_objective(backbone, settings, num_good, num_bad, attacker_sharding)

    def meta_gradient(params, meta_params, original_backbone, meta_batch, key):
        def losses(params, meta_params):
            return objective(params, meta_params, original_backbone, meta_batch, key)

        if settings.forward_mode_meta_gradient:
            return _forward_mode_meta_gradient(losses, params, meta_params)
        (model_loss, attacker_loss), pullback, metrics = jax.vjp(
            losses, params, meta_params, has_aux=True
        )
        one, zero = jnp.ones_like(model_loss), jnp.zeros_like(attacker_loss)
        grads, _ = pullback((one, zero))
        meta_grads = meta_params
        if settings.has_meta_params:
            _, meta_grads = pullback((jnp.zeros_like(model_loss), jnp.ones_like(attacker_loss)))
        return grads, meta_grads, metrics

    return meta_gradient


def _forward_mode_meta_gradient(losses: Callable, params: Params, meta_params: Params):
    """The model's gradient in reverse mode and the scalar meta-parameter's in forward mode,
    its tangent carried beside the primal: one reverse pass through the unrolled attacker
    instead of two. Exact, as the reverse form is."""
    (leaf,), treedef = jax.tree.flatten(meta_params)

    def model_loss(params):
        def of_meta(value):
            return losses(params, jax.tree.unflatten(treedef, [value]))

        (loss_pair, metrics), (tangents, _) = jax.jvp(of_meta, (leaf,), (jnp.ones_like(leaf),))
        attacker_grad = jax.lax.stop_gradient(tangents[1])
        return loss_pair[0], (metrics, attacker_grad)

    grads, (metrics, attacker_grad) = jax.grad(model_loss, has_aux=True)(params)
    return grads, jax.tree.unflatten(treedef, [attacker_grad.astype(leaf.dtype)]), metrics


def _project_meta_params(meta_params: Params, settings: MLACSettings) -> Params:
    """Clamp the learned inner lr into ``[inner_lr_min, inner_lr_max]`` (in its own space)."""
    low, high = settings.inner_lr_min, settings.inner_lr_max
    if "inner_lr" in meta_params:
        return {**meta_params, "inner_lr": jnp.clip(meta_params["inner_lr"], low, high)}
    if "log_lr" in meta_params:
        bounds = math.log(low), math.log(high)
        return {**meta_params, "log_lr": jnp.clip(meta_params["log_lr"], *bounds)}
    return meta_params


class OuterStep:
    """The jitted MLAC outer step: ``new_state, metrics = step(state, meta_batch)``.

    ``state`` is donated: do not reuse it after the call. ``trace_count`` counts how many times
    the step was traced (compiled); it stays at 1 while the shapes of the inputs do not change,
    so a trainer can log "no recompilation after the first step". ``lower(state, meta_batch)``
    exposes the ahead-of-time lowering, e.g. to time compilation.
    """

    def __init__(
        self,
        backbone: Backbone,
        settings: MLACSettings,
        num_good: int,
        num_bad: int,
        mesh: Mesh | None = None,
    ):
        self.trace_count = 0
        attacker_sharding = None
        jit_kwargs: dict = {"donate_argnums": 0}
        if mesh is not None:
            data_size = mesh.shape[parallel.DATA_AXIS]
            if settings.meta_batch_size % data_size:
                raise ValueError(
                    f"meta_batch_size {settings.meta_batch_size} is not divisible by the "
                    f"{data_size} devices of the mesh's '{parallel.DATA_AXIS}' axis"
                )
            attacker_sharding = parallel.data_sharded(mesh)
            replicated = parallel.replicated(mesh)
            batch_shardings = parallel.meta_batch_shardings(mesh, settings.shared_outer_batch)
            jit_kwargs["in_shardings"] = (replicated, batch_shardings)
            jit_kwargs["out_shardings"] = (replicated, replicated)
        meta_gradient = make_meta_gradient(
            backbone, settings, num_good, num_bad, attacker_sharding
        )
        model_optimizer, adversary_optimizer = outer_optimizer(settings), meta_optimizer(settings)

        def step(state: TrainState, meta_batch: MetaBatch):
            self.trace_count += 1
            check_meta_batch(meta_batch, settings)
            key = jax.random.fold_in(state.rng, state.step)
            grads, meta_grads, metrics = meta_gradient(
                state.params, state.meta_params, state.original_backbone, meta_batch, key
            )
            updates, opt_state = model_optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            meta_updates, meta_opt_state = adversary_optimizer.update(
                meta_grads, state.meta_opt_state, state.meta_params
            )
            meta_params = _project_meta_params(
                optax.apply_updates(state.meta_params, meta_updates), settings
            )
            metrics["grad_norm"] = global_norm(grads)
            if settings.has_meta_params:
                metrics["meta_grad_norm"] = global_norm(meta_grads)
            if settings.learn_inner_lr:
                metrics["meta/inner_lr"] = learned_inner_lr(meta_params)
            new_state = TrainState(
                step=state.step + 1,
                params=params,
                opt_state=opt_state,
                meta_params=meta_params,
                meta_opt_state=meta_opt_state,
                rng=state.rng,
                original_backbone=state.original_backbone,
            )
            return new_state, metrics

        self._jitted = jax.jit(step, **jit_kwargs)

    def __call__(self, state: TrainState, meta_batch: MetaBatch) -> tuple[TrainState, dict]:
        return self._jitted(state, meta_batch)

    def lower(self, state: TrainState, meta_batch: MetaBatch):
        return self._jitted.lower(state, meta_batch)


def make_outer_step(
    backbone: Backbone,
    settings: MLACSettings,
    num_good: int,
    num_bad: int,
    mesh: Mesh | None = None,
) -> OuterStep:
    """Build the jitted outer step (see :class:`OuterStep`); with ``mesh`` the attackers and
    their batches are sharded on its ``data`` axis and the state is replicated."""
    if settings.active_rows and backbone.embedding_path is None:
        raise ValueError(f"active_rows needs a backbone with an embedding_path; {backbone.name} "
                         "has none")
    return OuterStep(backbone, settings, num_good, num_bad, mesh)
