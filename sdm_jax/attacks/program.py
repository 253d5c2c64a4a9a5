"""The compiled attack program: many fine-tuning runs of one shape in one XLA program.

Layout: ``vmap`` over runs; per run, ``lax.scan`` over evaluation blocks, each block a
``lax.scan`` over ``eval_every`` training steps followed by an evaluation on the validation split
(so evaluation never sits under a ``cond`` that ``vmap`` would turn into "always run both").
Runs differ in traced values only (learning rate, step budget, batch size, schedule, warmup,
weight decay, momentum, frozen base, seed, attacker examples); a run whose budget is shorter than
the program stops changing after its last step, and its later evaluations are masked out.

The program never sees a Flax object: the model is ``logits(backbone_params, head, inputs)``.
For a linear probe the caller passes precomputed features and an empty backbone, so the same
code trains the head alone at a fraction of the cost. A BitFit or LoRA program trains the
adapter pytree of :mod:`sdm_jax.models.adapters` in the backbone's place and runs the model
with the adapter applied to the frozen ``backbone_params``.

Active rows (``ProgramSpec.active_rows``): a text backbone's word table is trained as a compact
table of the rows the attacker's examples use, and evaluation reads the rows outside it from the
full table (:func:`sdm_jax.models.active_rows.active_rows_features`). A row no training batch
touches has a zero gradient at every step, so Adam, RMSprop and SGD (with momentum) never move
it; decoupled weight decay shrinks it by ``1 - lr_t * weight_decay`` per step, a factor the
program tracks per run. So the results equal the dense program's (up to float rounding) while
the optimizer and the table gradient work on a few thousand rows instead of the whole
vocabulary.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from sdm_jax.attacks.settings import schedule_factor
from sdm_jax.fine_tune import accuracy, cross_entropy, direction, take_step
from sdm_jax.models.adapters import Adaptation, apply_adapter, init_adapter
from sdm_jax.models.heads import head_logits, init_head

PROBE_INPUT = "features"
LABEL = "label"  # the task's labels in the attacker's rows, whatever the task is called


@dataclass(frozen=True)
class ProgramSpec:
    """Everything static about a compiled attack program (one compile per distinct spec)."""

    family: str
    num_blocks: int
    eval_every: int
    max_batch: int
    num_classes: int
    feature_dim: int
    with_test: bool
    active_rows: bool = False
    adaptation: Adaptation = Adaptation()
    retain_classes: int = 0

    @property
    def total_steps(self) -> int:
        return self.num_blocks * self.eval_every


def _heads_logits(head, features):
    """One head's logits, or a tuple of heads' logits over the same features."""
    if isinstance(head, tuple):
        return tuple(head_logits(h, features) for h in head)
    return head_logits(head, features)


def probe_logits(backbone_params, head, inputs):
    del backbone_params  # the probe's backbone is frozen into the precomputed features
    return _heads_logits(head, inputs[PROBE_INPUT])


@functools.lru_cache(maxsize=16)
def backbone_logits(features_fn: Callable) -> Callable:
    """Cached per feature function, so repeated calls find the same compiled program. ``head``
    may be a tuple of heads, read from one forward pass."""

    def logits(backbone_params, head, inputs):
        return _heads_logits(head, features_fn(backbone_params, inputs))

    return logits


def _single_run(spec: ProgramSpec, logits_fn: Callable):
    """One run as a pure function; the caller ``vmap``s it over runs."""
    adaptation = spec.adaptation
    peft = adaptation.kind != "none"

    def run(hparams, backbone_params, train, val, test, frozen_rows, retain_head):
        def model_logits(params, untouched_scale, inputs, head):
            backbone = params["backbone"]
            if peft:
                backbone = apply_adapter(
                    adaptation, backbone, backbone_params, hparams["lora_scale"]
                )
            if spec.active_rows:
                backbone = {"compact": backbone, "rest": {**frozen_rows, "scale": untouched_scale}}
            return logits_fn(backbone, head, inputs)

        def task_logits(params, untouched_scale, inputs):
            return model_logits(params, untouched_scale, inputs, params["head"])

        def evaluation_logits(params, untouched_scale, inputs):
            """Task logits and, with a retain head, its logits from the same forward pass."""
            if not spec.retain_classes:
                return task_logits(params, untouched_scale, inputs), None
            heads = (params["head"], retain_head)
            logits, retained = model_logits(params, untouched_scale, inputs, heads)
            return logits, retained

        def predict(params, untouched_scale, split):
            chunks, labels = split
            logits, retained = jax.lax.map(
                lambda chunk: evaluation_logits(params, untouched_scale, chunk), chunks
            )
            logits = logits.reshape(-1, spec.num_classes)[: labels.shape[0]]
            if retained is not None:
                retained = retained.reshape(-1, spec.retain_classes)[: labels.shape[0]]
            return logits, retained

        run_key = jax.random.key(hparams["seed"])
        head = init_head(run_key, spec.feature_dim, spec.num_classes)
        trained = backbone_params
        if peft:
            trained = init_adapter(adaptation, backbone_params, jax.random.fold_in(run_key, 1))
        params = {"backbone": trained, "head": head}
        transform = direction(
            spec.family, momentum=hparams["momentum"], weight_decay=hparams["weight_decay"]
        )
        trained_parts = {"backbone": 1.0 - hparams["frozen"]}
        rows = jnp.arange(spec.max_batch)
        weight = (rows < hparams["batch_size"]).astype(jnp.float32)

        def train_step(carry, step):
            params, opt_state, untouched_scale = carry
            order = hparams["order"]
            example = order[jnp.minimum(step * hparams["batch_size"] + rows, order.shape[0] - 1)]
            batch = jax.tree.map(lambda column: column[example], train)
            labels = batch.pop(LABEL)

            def loss_fn(params, batch):
                logits = task_logits(params, untouched_scale, batch)
                return cross_entropy(logits, labels, weight), logits

            learning_rate = hparams["lr"] * schedule_factor(
                step, hparams["steps"], hparams["warmup_steps"], hparams["schedule"]
            )
            new_params, new_opt_state, outcome = take_step(
                loss_fn, transform, params, opt_state, batch, learning_rate, trained=trained_parts
            )
            # A row with zero gradient and zero moments moves by its weight decay alone.
            decay = 1.0 - learning_rate * trained_parts["backbone"] * hparams["weight_decay"]
            new = (new_params, new_opt_state, untouched_scale * decay)
            active = step < hparams["steps"]
            carry = jax.tree.map(lambda n, o: jnp.where(active, n, o), new, carry)
            return carry, accuracy(outcome.aux, labels, weight)

        def block(carry, index):
            state, best = carry
            steps = index * spec.eval_every + jnp.arange(spec.eval_every)
            state, train_accuracy = jax.lax.scan(train_step, state, steps)
            logits, retained = predict(state[0], state[2], val)
            val_accuracy = accuracy(logits, val[1])
            # The first evaluation at or after the run's budget sees its final weights; later
            # ones repeat it and are not candidates.
            in_budget = index * spec.eval_every < hparams["steps"]
            improved = in_budget & (val_accuracy > best["accuracy"])
            candidate = {"accuracy": val_accuracy, "index": index + 1, "val_logits": logits}
            if retained is not None:
                candidate["retain_val_logits"] = retained
            if spec.with_test:  # keep the best weights only when a test split will score them
                candidate["weights"] = (state[0], state[2])
            best = jax.tree.map(lambda n, o: jnp.where(improved, n, o), candidate, best)
            return (state, best), (val_accuracy, train_accuracy)

        initial_scale = jnp.ones((), jnp.float32)
        initial_logits, initial_retained = predict(params, initial_scale, val)
        initial_accuracy = accuracy(initial_logits, val[1])
        best = {
            "accuracy": initial_accuracy,
            "index": jnp.int32(0),
            "val_logits": initial_logits,
        }
        if initial_retained is not None:
            best["retain_val_logits"] = initial_retained
        if spec.with_test:
            best["weights"] = (params, initial_scale)
        state = (params, transform.init(params), initial_scale)
        (_, best), (curve, train_accuracy) = jax.lax.scan(
            block, (state, best), jnp.arange(spec.num_blocks)
        )
        outputs = {
            "val_curve": jnp.concatenate([initial_accuracy[None], curve]),
            "best_index": best["index"],
            "val_logits": best["val_logits"],
            "train_accuracy": train_accuracy.reshape(-1),
        }
        if initial_retained is not None:
            outputs["retain_val_logits"] = best["retain_val_logits"]
        if spec.with_test:
            outputs["test_logits"], retained = predict(*best["weights"], test)
            if retained is not None:
                outputs["retain_test_logits"] = retained
        return outputs

    return run


@functools.lru_cache(maxsize=64)
def compiled_program(spec: ProgramSpec, logits_fn: Callable) -> Callable:
    """``program(hparams, backbone_params, train, val, test, frozen_rows, retain_head)``,
    vmapped over ``hparams``.

    ``hparams`` holds ``[runs]`` arrays; ``order`` (``[runs, total_steps * max_batch]``) is each
    run's stream of rows of ``train``, consumed ``batch_size`` at a time. The rest is shared.
    ``val``/``test`` are ``(chunks, labels)``: inputs reshaped ``[chunks, chunk_size, ...]`` and
    the ``[N]`` labels of the unpadded split. Returns per run the validation accuracy at each
    evaluation (``val_curve``, step 0 first), ``best_index`` into it, the validation logits there
    (``val_logits``), the test logits of the weights there (``test_logits``, with a test split)
    and the training-batch accuracy of every step (``train_accuracy``).

    With ``spec.active_rows``, ``backbone_params`` hold the compact word table, ``logits_fn``
    reads ``{"compact": ..., "rest": ...}`` (see
    :func:`sdm_jax.models.active_rows.active_rows_features`) and
    ``frozen_rows`` is ``{"table": full table, "ids": active ids}``; otherwise it is ``{}``.

    With ``spec.retain_classes``, ``retain_head`` is the model's own desired-task head: the
    program also returns its logits on the validation split at the best step
    (``retain_val_logits``) and on the test split there (``retain_test_logits``), read from the
    same forward passes as the task's logits.
    """
    in_axes = (0, None, None, None, None, None, None)
    batched = jax.vmap(_single_run(spec, logits_fn), in_axes=in_axes)
    return jax.jit(batched)
