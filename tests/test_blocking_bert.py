"""The attacker on a 1-layer tiny BERT: finite meta-gradients, and active rows exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdm_jax.blocking import AttackerDraw, MLACSettings, run_attacker
from sdm_jax.fine_tune import cross_entropy
from sdm_jax.models.bert import BertConfig, bert_backbone
from sdm_jax.models.heads import init_head

CONFIG = BertConfig(vocab_size=60, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=16, max_position_embeddings=16)


def text_batch(seed, lead, size=3, length=6):
    """Ids from 1..39 only; rows 40.. are never touched."""
    rng = np.random.default_rng(seed)
    return {"input_ids": jnp.asarray(rng.integers(1, 40, lead + (size, length)), jnp.int32),
            "attention_mask": jnp.ones(lead + (size, length), jnp.int32),
            "token_type_ids": jnp.zeros(lead + (size, length), jnp.int32),
            "bad": jnp.asarray(rng.integers(0, 2, lead + (size,)), jnp.int32),
            "weight": jnp.ones(lead + (size,), jnp.float32)}


@pytest.mark.slow
def test_attacker_meta_gradient_on_tiny_bert_with_and_without_active_rows():
    backbone = bert_backbone(CONFIG)
    key = jax.random.PRNGKey(0)
    params = {"backbone": backbone.init(key),
              "head": init_head(jax.random.fold_in(key, 1), CONFIG.hidden_size, 2)}
    inner, outer = text_batch(1, (1,)), text_batch(2, ())
    draw = AttackerDraw(jnp.float32(1e-2), jnp.int32(0), jnp.float32(1.0), key)

    def adapted(settings, params):
        result = run_attacker(backbone, params, draw, inner, outer, settings, label_key="bad",
                              trained_outputs=(0, 2), final_grad_norm=True)
        loss = jnp.mean(cross_entropy(result.outer_logits, outer["bad"], outer["weight"]))
        return loss + result.final_grad_norm, result

    value_and_grad = jax.jit(jax.value_and_grad(adapted, 1, has_aux=True), static_argnums=0)
    (loss, result), grads = value_and_grad(MLACSettings(inner_steps=1), params)
    assert result.outer_logits.shape == (2, 3, 2)
    assert np.isfinite(float(loss))
    leaves = jax.tree.leaves(grads["backbone"])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert max(float(jnp.max(jnp.abs(g))) for g in leaves) > 0
    # Adam (eps_root > 0) keeps the untouched word rows' second-order gradient finite and zero.
    table = grads["backbone"]["embeddings"]["word_embeddings"]["embedding"]
    assert float(jnp.max(jnp.abs(table[40:]))) == 0.0

    (rows_loss, rows), rows_grads = value_and_grad(
        MLACSettings(inner_steps=1, active_rows=48), params
    )
    assert int(rows.active_rows_missing) == 0
    assert float(rows_loss) == pytest.approx(float(loss), rel=1e-5)
    for got, want in zip(jax.tree.leaves(rows_grads), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
