"""The export serves the desired task in plain ``transformers`` and carries a model card."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from sdm_jax.app.evaluation import EvalPlan, evaluate, load_model
from sdm_jax.app.export import export_model
from sdm_jax.app.task import prepare_task
from sdm_jax.app.training import train_and_evaluate
from sdm_jax.attacks import RunnerConfig, SearchConfig, SearchSpace
from sdm_jax.config import load_config
from sdm_jax.model_card import CARD, NOT_EVALUATED, REPORT_HEADING, with_report
from sdm_jax.models import head_logits, load_encoder

TINY_BERT = Path(__file__).parent / "fixtures" / "tiny_bert"
TEXT_RUN = [
    f"model.name={TINY_BERT}", "model.max_length=16", "data.synthetic_train=160",
    "data.synthetic_dev=80", "data.synthetic_test=40", "mlac.inner_steps=1",
    "mlac.batch_size_choices=[4]", "mlac.linear_mi_iterations=3", "train.outer_steps=2",
    "train.batch_size=8", "train.eval_every=2", "train.eval_batches=1",
    "train.checkpoint_every=2", "train.log_every=1",
]
PROBE_SEARCH = SearchConfig(
    method="random", max_trials=1, patience=1, trials_per_batch=1, num_seeds=1,
    space=SearchSpace(steps_range=(10, 10, 10), batch_sizes=(4,), modes=("frozen",)),
    runner=RunnerConfig(eval_every=10),
)


@pytest.fixture(scope="module")
def pooler_run(tmp_path_factory):
    config = load_config(None, [*TEXT_RUN, "model.pooling=pooler"])
    run = tmp_path_factory.mktemp("export") / "pooler"
    train_and_evaluate(config, run, progress=False)
    return run, config


def _our_desired_logits(run: Path, config, texts: list[str]) -> np.ndarray:
    task = prepare_task(config)
    target, head = load_model("blocked", str(run / "export"), task, config.model.pooling)
    tokens = task.encoder.tokenizer(texts, padding="max_length", truncation=True,
                                    max_length=config.model.max_length, return_tensors="np")
    batch = {key: np.asarray(tokens[key]) for key in ("input_ids", "attention_mask",
                                                      "token_type_ids")}
    features = target.backbone.features(target.params, batch)
    return np.asarray(head_logits(head, features))[:, : task.num_good]


def test_pooler_export_is_a_sequence_classifier_our_loader_still_reads(pooler_run):
    run, config = pooler_run
    export = run / "export"
    hf = json.loads((export / "config.json").read_text())
    labels = json.loads((export / "labels.json").read_text())["good"]
    assert hf["architectures"] == ["BertForSequenceClassification"]
    assert [hf["id2label"][str(i)] for i in range(len(labels))] == labels
    encoder = load_encoder(export)
    source = load_encoder(TINY_BERT)
    assert jax.tree.structure(encoder.params) == jax.tree.structure(source.params)


def test_pipeline_serves_the_desired_head_as_trained(pooler_run):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    run, config = pooler_run
    export = str(run / "export")
    texts = ["she is a nurse at the hospital", "he teaches law", "a surgeon"]
    ours = _our_desired_logits(run, config, texts)
    tokenizer = AutoTokenizer.from_pretrained(export)
    model = AutoModelForSequenceClassification.from_pretrained(export).eval()
    batch = tokenizer(texts, padding="max_length", truncation=True,
                      max_length=config.model.max_length, return_tensors="pt")
    with torch.no_grad():
        theirs = model(**batch).logits.numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    classify = pipeline("text-classification", model=export, tokenizer=export)
    predicted = [row["label"] for row in classify(texts)]
    assert predicted == [model.config.id2label[i] for i in ours.argmax(axis=1)]


def test_mean_pooled_export_stays_a_bert_model_whose_card_says_how_to_pool(pooler_run, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    trained, _ = pooler_run
    config = load_config(None, [*TEXT_RUN, "model.pooling=mean"])
    task = prepare_task(config)
    target, head = load_model("blocked", str(trained / "export"), task, "mean")
    run = tmp_path / "mean"
    export = run / "export"
    export.mkdir(parents=True)
    export_model(export, task, {"backbone": target.params, "head": head}, config, step=2)
    assert json.loads((export / "config.json").read_text())["architectures"] == ["BertModel"]
    card = (export / CARD).read_text()
    assert "mean of the last hidden state" in card and "heads.safetensors" in card
    texts = ["she is a nurse", "he teaches law at the university"]
    tokenizer = AutoTokenizer.from_pretrained(str(export))
    encoder = AutoModel.from_pretrained(str(export)).eval()
    head = load_file(str(export / "heads.safetensors"))["good.weight"]
    batch = tokenizer(texts, padding="max_length", truncation=True,
                      max_length=config.model.max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    logits = ((hidden * mask).sum(1) / mask.sum(1)) @ head.T
    np.testing.assert_allclose(logits.numpy(), _our_desired_logits(run, config, texts),
                               atol=1e-4)


def test_the_card_describes_the_run_and_evaluation_fills_its_report(pooler_run, tmp_path):
    run, config = pooler_run
    card = (run / "export" / CARD).read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification")
    assert f"`{TINY_BERT}`" in card and "each taking 1 optimizer step(s) (adam)" in card
    assert "exported at step 2" in card and NOT_EVALUATED in card
    plan = EvalPlan(run_dir=run, tasks=("bad",), ns=(8,), search=PROBE_SEARCH,
                    out_dir=tmp_path / "eval", progress=False)
    paths, _ = evaluate(plan)
    after = (run / "export" / CARD).read_text()
    assert after.startswith(card.split(REPORT_HEADING)[0]) and NOT_EVALUATED not in after
    assert f"`{tmp_path / 'eval'}`" in after and "### Harmful task (bad)" in after
    assert "| blocked |" in after


def test_with_report_replaces_the_section_once():
    card = f"# x\n\n{REPORT_HEADING}\n\n{NOT_EVALUATED}\n"
    once = with_report(card, "# Attack evaluation\n\n| a |", "out")
    twice = with_report(once, "# Attack evaluation\n\n| b |", "out2")
    assert twice.count(REPORT_HEADING) == 1 and "| b |" in twice and "| a |" not in twice
    assert "### Attack evaluation" in twice
