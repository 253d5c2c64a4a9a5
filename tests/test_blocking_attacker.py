"""The simulated attacker against a plain Python-unrolled reference, and its options."""

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sdm_jax.blocking.attacker import AttackerDraw, draw_attacker, run_attacker, sqrt_chunks
from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.fine_tune import OPTIMIZERS, cross_entropy
from sdm_jax.models.active_rows import active_token_ids
from sdm_jax.models.adapters import Adaptation, apply_adapter, init_adapter
from sdm_jax.models.backbone import Backbone
from sdm_jax.models.heads import init_head, mlp_backbone

MLP = mlp_backbone(input_dim=5, width=6, depth=2)
EMBEDDING_PATH = ("embeddings", "word_embeddings", "embedding")
# One setting shared by most tests so they share compiled programs; the clip acts at every step.
BASE = MLACSettings(inner_steps=4, inner_grad_clip=0.05)


def text_backbone(vocab: int = 40, hidden: int = 6) -> Backbone:
    """Embedding lookup, masked mean pool, tanh dense layer: the active-rows test model."""

    def init(key):
        table_key, dense_key = jax.random.split(key)
        return {
            "embeddings": {"word_embeddings": {
                "embedding": jax.random.normal(table_key, (vocab, hidden))}},
            "dense": {"kernel": 0.5 * jax.random.normal(dense_key, (hidden, hidden))},
        }

    def features(params, batch):
        table = params["embeddings"]["word_embeddings"]["embedding"]
        mask = batch["attention_mask"][..., None].astype(table.dtype)
        pooled = jnp.sum(table[batch["input_ids"]] * mask, 1) / jnp.maximum(jnp.sum(mask, 1), 1)
        return jnp.tanh(pooled @ params["dense"]["kernel"])

    return Backbone("tinytext", features, init, hidden, ("input_ids", "attention_mask"),
                    EMBEDDING_PATH)


def mlp_batch(seed, lead, size=6):
    rng = np.random.default_rng(seed)
    weight = np.ones(lead + (size,), np.float32)
    weight[..., -2:] = 0.0  # the effective batch is smaller than the fixed shape
    return {"x": jnp.asarray(rng.normal(size=lead + (size, 5)), jnp.float32),
            "bad": jnp.asarray(rng.integers(0, 2, lead + (size,)), jnp.int32),
            "good": jnp.asarray(rng.integers(0, 3, lead + (size,)), jnp.int32),
            "weight": jnp.asarray(weight)}


def text_batch(seed, lead, size=4, length=5, vocab_used=25):
    rng = np.random.default_rng(seed)
    mask = np.ones(lead + (size, length), np.int32)
    mask[..., -1] = 0
    return {"input_ids": jnp.asarray(rng.integers(0, vocab_used, lead + (size, length)), jnp.int32),
            "attention_mask": jnp.asarray(mask),
            "bad": jnp.asarray(rng.integers(0, 2, lead + (size,)), jnp.int32),
            "weight": jnp.ones(lead + (size,), jnp.float32)}


def start_params(backbone, seed=0, num_outputs=2):
    key = jax.random.PRNGKey(seed)
    return {"backbone": backbone.init(key),
            "head": init_head(jax.random.fold_in(key, 1), backbone.feature_dim, num_outputs)}


def make_draw(lr=0.01, kind=0, train_backbone=1.0):
    return AttackerDraw(learning_rate=jnp.asarray(lr, jnp.float32),
                        optimizer_index=jnp.asarray(kind, jnp.int32),
                        train_backbone=jnp.asarray(train_backbone, jnp.float32),
                        noise_key=jax.random.PRNGKey(7))


def attack(settings, params, draw, inner, outer, backbone=MLP, final=True):
    return run_attacker(backbone, params, draw, inner, outer, settings, label_key="bad",
                        trained_outputs=(0, 2), final_grad_norm=final)


attack_jit = jax.jit(attack, static_argnames=("settings", "backbone", "final"))


def logits_of(backbone, params, batch):
    return backbone.features(params["backbone"], batch) @ params["head"]["kernel"]


@partial(jax.jit, static_argnames=("backbone", "steps", "clip", "kind"))
def python_unrolled(backbone, params, lr, inner, outer, steps, clip, kind="adam"):
    """The textbook loop: optax clip + optimizer, one step per inner batch."""
    optimizer = {
        "sgd": lambda: optax.sgd(lr),
        "sgd_momentum": lambda: optax.sgd(lr, momentum=0.9),
        "adam": lambda: optax.adam(lr, eps_root=1e-20),
        "adamw": lambda: optax.adamw(lr, eps_root=1e-20, weight_decay=0.01),
        "rmsprop": lambda: optax.rmsprop(lr, decay=0.99, eps=1e-8),
    }[kind]()
    chain = optax.chain(optax.clip_by_global_norm(clip), optimizer)
    state = chain.init(params)

    def loss(p, batch):
        return cross_entropy(logits_of(backbone, p, batch), batch["bad"], batch["weight"])

    logits, norms, trajectory = [], [], []
    for t in range(steps):
        trajectory.append(params)
        logits.append(logits_of(backbone, params, outer))
        batch = jax.tree.map(lambda x, t=t: x[t], inner)
        grads = jax.grad(loss)(params, batch)
        norms.append(optax.tree.norm(grads))
        updates, state = chain.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    trajectory.append(params)
    logits.append(logits_of(backbone, params, outer))
    return jnp.stack(logits), jnp.stack(norms), trajectory


def test_scan_equals_python_unrolled_loop_with_clipping_active():
    params, inner, outer = start_params(MLP), mlp_batch(1, (4,)), mlp_batch(2, ())
    result = attack_jit(BASE, params, make_draw(lr=0.05), inner, outer)
    logits, norms, _ = python_unrolled(MLP, params, 0.05, inner, outer, 4, clip=0.05)
    assert float(jnp.min(norms)) > 0.05  # the clip really acts at every step
    np.testing.assert_allclose(result.outer_logits, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.inner_grad_norms, norms, rtol=1e-5)


def test_sampled_optimizer_kinds_match_their_optax_optimizers():
    settings = MLACSettings(inner_steps=2, inner_optimizers=tuple(OPTIMIZERS))
    params, inner, outer = start_params(MLP), mlp_batch(3, (2,)), mlp_batch(4, ())
    for index, kind in enumerate(settings.inner_optimizers):
        result = attack_jit(settings, params, make_draw(lr=0.1, kind=index), inner, outer)
        expected, _, _ = python_unrolled(MLP, params, 0.1, inner, outer, 2, 100.0, kind)
        # RMSprop's first step moves each weight by ~lr/sqrt(1 - decay), so float32 rounding of
        # the logits is ~1e-6 absolute there.
        np.testing.assert_allclose(result.outer_logits, expected, rtol=1e-5, atol=1e-5,
                                   err_msg=kind)


def test_zero_steps_gives_the_starting_model_logits():
    settings = MLACSettings(inner_steps=0)
    params, outer = start_params(MLP), mlp_batch(2, ())
    inner = mlp_batch(1, (0,))
    result = attack(settings, params, make_draw(), inner, outer)
    assert result.outer_logits.shape == (1, 6, 2)
    assert result.inner_grad_norms.shape == (0,)
    np.testing.assert_allclose(result.outer_logits[0], logits_of(MLP, params, outer), rtol=1e-6)


def test_frozen_base_trains_only_the_head():
    params, inner, outer = start_params(MLP), mlp_batch(1, (4,)), mlp_batch(2, ())
    frozen = attack_jit(BASE, params, make_draw(train_backbone=0.0), inner, outer)
    base_features = MLP.features(params["backbone"], outer)
    np.testing.assert_allclose(frozen.final_features, base_features, rtol=1e-6)
    assert not np.allclose(frozen.outer_logits[-1], frozen.outer_logits[0])
    full = attack_jit(BASE, params, make_draw(train_backbone=1.0), inner, outer)
    assert not np.allclose(full.final_features, base_features)


def test_parameter_noise_perturbs_each_step_deterministically():
    params, inner, outer = start_params(MLP), mlp_batch(1, (4,)), mlp_batch(2, ())
    quiet = attack_jit(BASE, params, make_draw(), inner, outer)
    noisy_settings = replace(BASE, param_noise_std=0.05)
    noisy = attack_jit(noisy_settings, params, make_draw(), inner, outer)
    again = attack_jit(noisy_settings, params, make_draw(), inner, outer)
    np.testing.assert_allclose(noisy.outer_logits[0], quiet.outer_logits[0])
    assert not np.allclose(noisy.outer_logits[-1], quiet.outer_logits[-1], atol=1e-4)
    np.testing.assert_array_equal(noisy.outer_logits, again.outer_logits)


def _adapted_loss(settings, backbone_params, head, lr, inner, outer):
    params = {"backbone": backbone_params, "head": head}
    result = attack(settings, params, make_draw(lr=lr), inner, outer, final=False)
    return jnp.mean(cross_entropy(result.outer_logits, outer["bad"], outer["weight"]))


adapted_grads = jax.jit(jax.grad(_adapted_loss, argnums=(1, 2, 3)), static_argnums=0)


@pytest.mark.parametrize("remat", ["full", "dots", "sqrt"])
def test_checkpoint_policies_give_identical_meta_gradients(remat):
    params, inner, outer = start_params(MLP), mlp_batch(1, (4,)), mlp_batch(2, ())
    args = (params["backbone"], params["head"], 0.05, inner, outer)
    reference = adapted_grads(BASE, *args)
    checkpointed = adapted_grads(replace(BASE, remat=remat), *args)
    for got, want in zip(jax.tree.leaves(checkpointed), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_sqrt_chunks_factor_the_step_count():
    assert sqrt_chunks(16) == (4, 4)
    assert sqrt_chunks(12) == (3, 4)
    assert sqrt_chunks(7) == (7, 1)
    assert sqrt_chunks(1) == (1, 1)


@pytest.mark.parametrize("remat", ["none", "sqrt"])
def test_traced_program_does_not_grow_with_steps(remat):
    params = start_params(MLP)

    def count_equations(steps):
        settings = MLACSettings(inner_steps=steps, remat=remat)
        jaxpr = jax.make_jaxpr(
            lambda p: jax.grad(_adapted_loss, argnums=(1, 2))(
                settings, p["backbone"], p["head"], 0.01, mlp_batch(1, (steps,)), mlp_batch(2, ())
            )
        )(params)
        return len(jaxpr.jaxpr.eqns)

    assert count_equations(4) == count_equations(16)


def test_first_order_gradient_is_the_sum_of_gradients_at_the_adapted_points():
    """First order: d phi_t / d theta = I, so the gradient of mean_t CE(phi_t) on the backbone
    is mean_t of the CE gradients taken at each adapted point phi_t."""
    params, inner, outer = start_params(MLP), mlp_batch(1, (4,)), mlp_batch(2, ())
    args = (params["backbone"], params["head"], 0.05, inner, outer)
    grads = adapted_grads(replace(BASE, first_order=True), *args)[0]
    _, _, trajectory = python_unrolled(MLP, params, 0.05, inner, outer, 4, clip=0.05)

    def outer_ce(backbone_params, head):
        logits = logits_of(MLP, {"backbone": backbone_params, "head": head}, outer)
        return cross_entropy(logits, outer["bad"], outer["weight"])

    per_point = [jax.grad(outer_ce)(p["backbone"], p["head"]) for p in trajectory]
    expected = jax.tree.map(lambda *g: sum(g) / len(g), *per_point)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    second_order = adapted_grads(BASE, *args)[0]
    assert not np.allclose(jax.tree.leaves(second_order)[0], jax.tree.leaves(grads)[0])


def test_active_rows_equal_the_dense_embedding_table():
    """AdamW: exact moments on untouched rows and a decay that no computation reads there."""
    optimizer = "adamw"
    backbone = text_backbone()
    settings = MLACSettings(inner_steps=2, inner_optimizers=(optimizer,))
    compact = MLACSettings(inner_steps=2, inner_optimizers=(optimizer,), active_rows=32)
    params, inner, outer = start_params(backbone), text_batch(1, (2,)), text_batch(2, ())

    def adapted(settings, params):
        result = attack(settings, params, make_draw(lr=0.05), inner, outer, backbone=backbone)
        loss = jnp.mean(cross_entropy(result.outer_logits, outer["bad"], outer["weight"]))
        return loss + result.final_grad_norm, result

    value_and_grad = jax.jit(jax.value_and_grad(adapted, 1, has_aux=True), static_argnums=0)
    (dense_loss, dense), dense_grads = value_and_grad(settings, params)
    (rows_loss, rows), rows_grads = value_and_grad(compact, params)
    assert float(rows_loss) == pytest.approx(float(dense_loss), rel=1e-5)
    assert int(rows.active_rows_missing) == 0
    np.testing.assert_allclose(rows.outer_logits, dense.outer_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows.inner_grad_norms, dense.inner_grad_norms, rtol=1e-5)
    np.testing.assert_allclose(rows.final_grad_norm, dense.final_grad_norm, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(rows_grads), jax.tree.leaves(dense_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    table_grad = rows_grads["backbone"]["embeddings"]["word_embeddings"]["embedding"]
    assert float(jnp.abs(table_grad[30:]).max()) == 0.0  # ids >= 25 never occur


def test_active_token_ids_are_sorted_padded_and_count_what_does_not_fit():
    ids = [jnp.array([[5, 3], [3, 9]]), jnp.array([9, 1])]
    active, missing = active_token_ids(ids, 6)
    np.testing.assert_array_equal(active, [0, 1, 3, 5, 9, 9])  # the padding id 0 always stays
    assert int(missing) == 0
    _, missing = active_token_ids(ids, 4)
    assert int(missing) == 2  # both occurrences of id 9 fall outside a 4-row table
    active, _ = active_token_ids([jnp.array([5, 3, 2])], 6, pad_id=2)
    np.testing.assert_array_equal(active, [0, 1, 2, 3, 5, 5])  # ids up to the padding id stay


def test_attacker_draws_follow_their_distributions():
    settings = MLACSettings(learn_inner_lr=False, frozen_base_prob=0.3,
                            inner_optimizers=("adam", "sgd", "rmsprop"))
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draws = jax.jit(jax.vmap(lambda k: draw_attacker(k, {}, settings)))(keys)
    lr = np.asarray(draws.learning_rate)
    assert lr.min() >= 1e-4 * 0.999 and lr.max() <= 1e-2 * 1.001
    assert np.mean(np.log10(lr)) == pytest.approx(-3.0, abs=0.05)  # log-uniform midpoint
    assert 1.0 - np.mean(draws.train_backbone) == pytest.approx(0.3, abs=0.03)
    assert set(np.unique(draws.optimizer_index)) == {0, 1, 2}
    learned = MLACSettings()
    draw = draw_attacker(keys[0], {"inner_lr": jnp.float32(2e-3)}, learned)
    assert float(draw.learning_rate) == pytest.approx(2e-3, rel=1e-6)
    assert float(draw.train_backbone) == 1.0
    in_log_space = replace(learned, inner_lr_space="log")
    draw = draw_attacker(keys[0], {"log_lr": jnp.log(jnp.float32(2e-3))}, in_log_space)
    assert float(draw.learning_rate) == pytest.approx(2e-3, rel=1e-5)


LORA = replace(BASE, inner_attacks=("full", "lora"), inner_lora_rank=2, inner_lora_alpha=4.0,
               inner_lora_targets="dense")


def lora_draw(lr=0.05, train_lora=1.0):
    return replace(make_draw(lr=lr, train_backbone=1.0 - train_lora),
                   train_lora=jnp.asarray(train_lora, jnp.float32),
                   lora_key=jax.random.PRNGKey(5))


def test_a_lora_attacker_steps_its_adapters_as_a_textbook_loop_and_leaves_the_base():
    params, inner, outer = start_params(MLP), mlp_batch(1, (4,)), mlp_batch(2, ())
    result = attack_jit(LORA, params, lora_draw(), inner, outer)
    adaptation = Adaptation("lora", 2, (r"kernel$",))
    trained = {"head": params["head"],
               "lora": init_adapter(adaptation, params["backbone"], jax.random.PRNGKey(5))}
    chain = optax.chain(optax.clip_by_global_norm(0.05), optax.adam(0.05, eps_root=1e-20))
    state = chain.init(trained)

    def model_logits(p, batch):
        backbone = apply_adapter(adaptation, p["lora"], params["backbone"], 2.0)
        return logits_of(MLP, {"backbone": backbone, "head": p["head"]}, batch)

    def loss(p, batch):
        return cross_entropy(model_logits(p, batch), batch["bad"], batch["weight"])

    expected = []
    for t in range(4):
        expected.append(model_logits(trained, outer))
        grads = jax.grad(loss)(trained, jax.tree.map(lambda x, t=t: x[t], inner))
        updates, state = chain.update(grads, state, trained)
        trained = optax.apply_updates(trained, updates)
    expected.append(model_logits(trained, outer))
    np.testing.assert_allclose(result.outer_logits, jnp.stack(expected), rtol=1e-5, atol=1e-6)
    full = attack_jit(LORA, params, lora_draw(train_lora=0.0), inner, outer)
    plain = attack_jit(BASE, params, make_draw(lr=0.05), inner, outer)
    # Untrained adapters (B = 0) leave a full fine-tuning attacker exactly as it was.
    np.testing.assert_allclose(full.outer_logits, plain.outer_logits, rtol=1e-6, atol=1e-7)


def test_attack_kinds_are_drawn_uniformly_and_frozen_base_overrides_them():
    settings = replace(LORA, inner_attacks=("full", "head", "lora"), frozen_base_prob=0.5,
                       learn_inner_lr=False)
    keys = jax.random.split(jax.random.PRNGKey(1), 6000)
    draws = jax.jit(jax.vmap(lambda k: draw_attacker(k, {}, settings)))(keys)
    full, lora = np.asarray(draws.train_backbone), np.asarray(draws.train_lora)
    assert not np.any((full == 1) & (lora == 1))
    assert np.mean(full) == pytest.approx(1 / 6, abs=0.02)
    assert np.mean(lora) == pytest.approx(1 / 6, abs=0.02)


def test_lora_without_a_matching_matrix_is_named():
    settings = replace(LORA, inner_lora_targets="dense")
    backbone = replace(MLP, adapter_targets=(("dense", r"^nothing$"),))
    params, inner, outer = start_params(MLP), mlp_batch(1, (4,)), mlp_batch(2, ())
    with pytest.raises(ValueError, match="has no 'dense' matrix to adapt"):
        attack(settings, params, lora_draw(), inner, outer, backbone=backbone)
