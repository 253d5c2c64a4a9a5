"""The second encoder family, RoBERTa: parity with ``transformers``, checkpoints in and out,
active rows at padding id 1, and a run trained, attacked and exported end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sdm_jax.app.evaluation import EvalPlan, evaluate, load_model
from sdm_jax.app.task import prepare_task
from sdm_jax.app.training import train_and_evaluate
from sdm_jax.attacks import RunnerConfig, SearchConfig, SearchSpace
from sdm_jax.blocking import AttackerDraw, MLACSettings, run_attacker
from sdm_jax.config import load_config
from sdm_jax.models import head_logits, init_head, load_encoder, random_encoder, save_pretrained
from sdm_jax.models.families import positions_after_padding_id

FIXTURES = Path(__file__).parent / "fixtures"
TINY_ROBERTA = FIXTURES / "tiny_roberta"
EXPECTED = dict(np.load(FIXTURES / "tiny_roberta_expected.npz"))
PARITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny():
    return load_encoder(TINY_ROBERTA)


def _outputs(encoder, ids=EXPECTED["input_ids"], mask=EXPECTED["attention_mask"]):
    hidden, pooled = jax.jit(encoder.apply)(encoder.params, ids, mask, np.zeros_like(ids))
    return np.asarray(hidden), np.asarray(pooled)


def test_tiny_roberta_matches_pytorch(tiny):
    assert tiny.config.model_type == "roberta" and tiny.config.pad_token_id == 1
    hidden, pooled = _outputs(tiny)
    real = EXPECTED["attention_mask"][..., None].astype(bool)
    assert np.max(np.where(real, np.abs(hidden - EXPECTED["last_hidden_state"]), 0)) <= (
        PARITY_TOLERANCE)
    assert np.max(np.abs(pooled - EXPECTED["pooler_output"])) <= PARITY_TOLERANCE


def test_positions_count_real_tokens_from_past_the_padding_id():
    ids = jnp.array([[0, 7, 9, 2, 1, 1]])
    np.testing.assert_array_equal(positions_after_padding_id(ids, 1), [[2, 3, 4, 5, 1, 1]])


def test_export_round_trips_as_a_roberta_model(tiny, tmp_path):
    out = save_pretrained(tmp_path / "export", tiny.params, tiny.config, tiny.tokenizer)
    hf = json.loads((out / "config.json").read_text())
    assert hf["architectures"] == ["RobertaModel"] and hf["model_type"] == "roberta"
    assert set(load_file(str(out / "model.safetensors"))) == set(
        load_file(str(TINY_ROBERTA / "model.safetensors")))
    again = load_encoder(out)
    assert again.config == tiny.config
    for got, want in zip(jax.tree.leaves(again.params), jax.tree.leaves(tiny.params),
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_masked_lm_checkpoint_without_pooler_loads(tiny, tmp_path):
    target = tmp_path / "mlm"
    shutil.copytree(TINY_ROBERTA, target)
    tensors = {f"roberta.{name}": value
               for name, value in load_file(str(TINY_ROBERTA / "model.safetensors")).items()
               if not name.startswith("pooler.")}
    tensors["lm_head.bias"] = np.zeros(300, np.float32)
    save_file(tensors, str(target / "model.safetensors"))
    loaded = load_encoder(target)
    hidden, _ = _outputs(loaded)
    real = EXPECTED["attention_mask"][..., None].astype(bool)
    assert np.max(np.where(real, np.abs(hidden - EXPECTED["last_hidden_state"]), 0)) <= (
        PARITY_TOLERANCE)
    assert loaded.params["pooler"]["dense"]["kernel"].shape == (32, 32)


def test_transformers_reads_the_export(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import RobertaModel

    out = save_pretrained(tmp_path / "export", tiny.params, tiny.config, tiny.tokenizer)
    model = RobertaModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        pooled = model(input_ids=torch.from_numpy(EXPECTED["input_ids"]).long(),
                       attention_mask=torch.from_numpy(EXPECTED["attention_mask"]).long())
    np.testing.assert_allclose(pooled.pooler_output.numpy(), EXPECTED["pooler_output"],
                               atol=PARITY_TOLERANCE)


def test_attacker_with_active_rows_equals_the_dense_table_at_padding_id_one(tiny):
    backbone = tiny.backbone_with("mean")
    ids = EXPECTED["input_ids"]
    batch = {"input_ids": ids, "attention_mask": EXPECTED["attention_mask"],
             "token_type_ids": np.zeros_like(ids), "bad": np.array([0, 1, 0, 1], np.int32),
             "weight": np.ones(4, np.float32)}
    inner = jax.tree.map(lambda x: np.stack([x, x[::-1]]), batch)
    params = {"backbone": tiny.params, "head": init_head(jax.random.key(1), 32, 2)}
    draw = AttackerDraw(learning_rate=jnp.asarray(1e-2), optimizer_index=jnp.asarray(0),
                        train_backbone=jnp.asarray(1.0), noise_key=jax.random.key(2))

    def adapted_logits(rows):
        settings = MLACSettings(inner_steps=2, active_rows=rows)
        return run_attacker(backbone, params, draw, inner, batch, settings, label_key="bad",
                            trained_outputs=(0, 2), final_grad_norm=False).outer_logits

    dense, compact = adapted_logits(0), adapted_logits(128)
    assert float(jnp.abs(dense[-1] - dense[0]).max()) > 1e-3  # the attacker moved the model
    np.testing.assert_allclose(compact, dense, rtol=1e-5, atol=1e-6)


TEXT_RUN = [
    f"model.name={TINY_ROBERTA}", "model.max_length=16", "model.pooling=pooler",
    "data.synthetic_train=160", "data.synthetic_dev=80", "data.synthetic_test=40",
    "mlac.inner_steps=1", "mlac.batch_size_choices=[4]", "mlac.linear_mi_iterations=3",
    "mlac.active_rows=256", "train.outer_steps=2", "train.batch_size=8", "train.eval_every=2",
    "train.eval_batches=1", "train.checkpoint_every=2", "train.log_every=1",
]


@pytest.fixture(scope="module")
def roberta_run(tmp_path_factory):
    config = load_config(None, TEXT_RUN)
    run = tmp_path_factory.mktemp("roberta") / "run"
    train_and_evaluate(config, run, progress=False)
    return run, config


def test_a_roberta_run_trains_exports_a_classifier_and_is_attacked(roberta_run, tmp_path):
    run, config = roberta_run
    export = run / "export"
    hf = json.loads((export / "config.json").read_text())
    assert hf["architectures"] == ["RobertaForSequenceClassification"]
    task = prepare_task(config)
    target, head = load_model("blocked", str(export), task, config.model.pooling)
    trained = jax.tree.leaves(target.params)
    assert any(not np.array_equal(a, b)
               for a, b in zip(trained, jax.tree.leaves(task.backbone_params), strict=True))
    search = SearchConfig(
        method="random", max_trials=1, patience=1, trials_per_batch=1, num_seeds=1,
        space=SearchSpace(steps_range=(10, 10, 10), batch_sizes=(4,), modes=("full",)),
        runner=RunnerConfig(eval_every=10),
    )
    plan = EvalPlan(run_dir=run, tasks=("bad",), ns=(20,), search=search,
                    baselines=("random",), out_dir=tmp_path / "eval", progress=False)
    paths, cells = evaluate(plan)
    assert {cell.model_id for cell in cells} == {"blocked", "random"}
    for cell in cells:
        assert cell.chosen.mode == "full"
        assert 0.0 <= cell.seeds[0].test["accuracy"] <= 1.0
    assert all(Path(path).exists() for path in paths.values())
    assert head["kernel"].shape[0] == 32


def test_pipeline_serves_the_roberta_classifier_as_trained(roberta_run):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run, config = roberta_run
    export = str(run / "export")
    texts = ["she is a nurse at the hospital", "he teaches law", "a surgeon"]
    task = prepare_task(config)
    target, head = load_model("blocked", export, task, config.model.pooling)
    tokens = task.encoder.tokenizer(texts, padding="max_length", truncation=True,
                                    max_length=config.model.max_length, return_tensors="np")
    batch = {"input_ids": np.asarray(tokens["input_ids"]),
             "attention_mask": np.asarray(tokens["attention_mask"])}
    ours = np.asarray(head_logits(head, target.backbone.features(target.params, batch)))
    model = AutoModelForSequenceClassification.from_pretrained(export).eval()
    tokenizer = AutoTokenizer.from_pretrained(export)
    inputs = tokenizer(texts, padding="max_length", truncation=True,
                       max_length=config.model.max_length, return_tensors="pt")
    with torch.no_grad():
        theirs = model(**inputs).logits.numpy()
    np.testing.assert_allclose(theirs, ours[:, : task.num_good], atol=1e-4)


def test_random_roberta_keeps_its_padding_row_and_family():
    config = load_encoder(TINY_ROBERTA).config
    encoder = random_encoder(config, seed=0)
    assert encoder.backbone.pad_token_id == 1
    assert encoder.backbone.name.startswith("roberta-")


def test_the_model_card_names_the_roberta_classes(roberta_run):
    run, _ = roberta_run
    card = (run / "export" / "README.md").read_text()
    assert "`RobertaForSequenceClassification`" in card and "Bert" not in card
