"""The vectorised attack runner on the toy MLP and on a tiny hand-rolled text backbone."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdm_jax.attacks import program as program_module
from sdm_jax.attacks.problem import AttackInputError, AttackProblem, AttackTarget
from sdm_jax.attacks.runner import RunnerConfig, attacker_token_ids, run_attacks
from sdm_jax.attacks.settings import AttackSetting
from sdm_jax.attacks.timing import time_vectorised_vs_sequential
from sdm_jax.data.toy import ToySpec, make_toy_task
from sdm_jax.models.backbone import Backbone
from sdm_jax.models.bert import BertConfig, bert_backbone
from sdm_jax.models.heads import mlp_backbone

# One program length and batch shape for every test, so tests share compiled programs.
CONFIG = RunnerConfig(
    eval_every=20, eval_batch_size=128, max_steps=60, max_batch_size=16, max_examples=300,
    vectorise_backbone="always",  # the vectorised path under test, on any backend
)


@pytest.fixture(scope="module")
def toy():
    splits = make_toy_task(ToySpec(n_train=10, n_val=300, n_test=300))
    backbone = mlp_backbone()
    target = AttackTarget("random-mlp", backbone, backbone.init(jax.random.key(0)))
    return target, splits


def _problem(splits, n=40, task="bad", test=True):
    return AttackProblem(task, n, splits["val1"], splits["val2"], splits["test"] if test else None)


def _curves(results):
    return np.concatenate([r.val_curve for r in results])


def test_attack_on_random_mlp_learns_the_bad_task(toy):
    target, splits = toy
    setting = AttackSetting(lr=1e-2, steps=60, batch_size=16)
    (result,) = run_attacks(target, _problem(splits, n=300), [setting], CONFIG)
    assert result.test["accuracy"] > 0.8
    assert result.test["roc_auc"] > 0.85
    assert result.val["accuracy"] == pytest.approx(max(result.val_curve))
    assert result.best_step in result.eval_steps == [0, 20, 40, 60]
    assert result.examples_to_target["0.7"] is not None


def test_vectorised_runs_equal_one_by_one(toy):
    target, splits = toy
    settings = [
        AttackSetting(lr=1e-2, steps=60, batch_size=8, seed=1, data_seed=3),
        AttackSetting(lr=3e-3, steps=40, batch_size=16, optimizer="adamw", schedule="cosine"),
        AttackSetting(lr=1e-3, steps=50, batch_size=4, optimizer="adamw", seed=2, data_seed=2),
        AttackSetting(
            lr=5e-2,
            steps=50,
            batch_size=16,
            optimizer="sgd_momentum",
            schedule="linear",
            warmup_steps=10,
        ),
    ]
    problem = _problem(splits)
    together = run_attacks(target, problem, settings, CONFIG)
    alone = [run_attacks(target, problem, [s], CONFIG)[0] for s in settings]
    np.testing.assert_allclose(_curves(together), _curves(alone), atol=1e-5)
    for a, b in zip(together, alone, strict=True):
        assert a.best_step == b.best_step
        assert a.examples_to_target == b.examples_to_target
        np.testing.assert_allclose(list(a.test.values()), list(b.test.values()), atol=1e-5)
    # the settings really differ
    assert len({tuple(np.round(r.val_curve, 4)) for r in together}) == len(settings)


def test_short_budget_in_a_longer_program_equals_its_own_program(toy):
    target, splits = toy
    setting = AttackSetting(lr=1e-2, steps=30, batch_size=8, seed=5)
    own = dataclasses.replace(CONFIG, max_steps=30)
    short = run_attacks(target, _problem(splits), [setting], own)[0]
    padded = run_attacks(target, _problem(splits), [setting], CONFIG)[0]
    assert padded.eval_steps == short.eval_steps == [0, 20, 30]
    np.testing.assert_allclose(padded.val_curve, short.val_curve, atol=1e-6)
    assert padded.test == pytest.approx(short.test, abs=1e-6)


def test_linear_probe_equals_full_program_with_backbone_masked(toy):
    target, splits = toy
    settings = [
        AttackSetting(lr=3e-2, steps=40, batch_size=16, frozen_base=True, seed=s, data_seed=s)
        for s in range(3)
    ]
    problem = _problem(splits)
    probe = run_attacks(target, problem, settings, CONFIG)
    masked = run_attacks(
        target, problem, settings, dataclasses.replace(CONFIG, probe_features=False)
    )
    np.testing.assert_allclose(_curves(probe), _curves(masked), atol=1e-5)
    full = run_attacks(
        target, problem, [dataclasses.replace(settings[0], frozen_base=False)], CONFIG
    )
    assert not np.allclose(full[0].val_curve, probe[0].val_curve)


def test_same_seed_same_numbers(toy):
    target, splits = toy
    settings = [AttackSetting(lr=1e-2, steps=40, batch_size=8, seed=s) for s in (0, 0, 1)]
    first = run_attacks(target, _problem(splits), settings, CONFIG)
    second = run_attacks(target, _problem(splits), settings, CONFIG)
    assert _curves(first).tolist() == _curves(second).tolist()
    assert first[0].val_curve == first[1].val_curve != first[2].val_curve


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n": 10_000}, "n=10000 attacker examples"),
        ({"task": "gender"}, "no labels for task 'gender'"),
        ({"val": {"x": np.zeros((0, 25), np.float32), "bad": np.zeros(0, np.int32)}}, "empty"),
    ],
)
def test_bad_input_fails_before_compute(toy, monkeypatch, change, message):
    target, splits = toy
    monkeypatch.setattr(program_module, "compiled_program", None)  # any compile would crash
    problem = dataclasses.replace(_problem(splits), **change)
    with pytest.raises(AttackInputError, match=message) as caught:
        run_attacks(target, problem, [AttackSetting()], CONFIG)
    assert "\n" not in str(caught.value)


def _text_backbone(vocab=40, hidden=8):
    """Mean of word + token-type embeddings over unmasked tokens, then a tanh layer."""

    def init(key):
        word, kind, dense = jax.random.split(key, 3)
        return {
            "embeddings": {
                "word_embeddings": {"embedding": jax.random.normal(word, (vocab, hidden))},
                "token_type": jax.random.normal(kind, (2, hidden)) * 0.1,
            },
            "pooler": jax.random.normal(dense, (hidden, hidden)) / jnp.sqrt(hidden),
        }

    def features(params, batch):
        table = params["embeddings"]["word_embeddings"]["embedding"]
        tokens = (
            table[batch["input_ids"]] + params["embeddings"]["token_type"][batch["token_type_ids"]]
        )
        mask = batch["attention_mask"][..., None].astype(tokens.dtype)
        mean = (tokens * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
        return jnp.tanh(mean @ params["pooler"])

    return Backbone(
        name="tiny-text",
        features=features,
        init=init,
        feature_dim=hidden,
        input_keys=("input_ids", "attention_mask", "token_type_ids"),
        embedding_path=("embeddings", "word_embeddings", "embedding"),
    )


def _text_split(size, seed, length=12, vocab=40):
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1, vocab, (size, length)).astype(np.int32)
    lengths = rng.integers(4, length + 1, size)
    attention_mask = (np.arange(length) < lengths[:, None]).astype(np.int32)
    input_ids *= attention_mask
    bad = (attention_mask * (input_ids < 8)).sum(1) >= 2  # "a cue word appears twice"
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros_like(input_ids),
        "bad": bad.astype(np.int32),
        "good": (lengths > 8).astype(np.int32),
    }


def test_text_backbone_attacks_and_timing_helper():
    backbone = _text_backbone()
    target = AttackTarget("tiny-text", backbone, backbone.init(jax.random.key(1)))
    problem = AttackProblem(
        "bad", 60, _text_split(100, 0), _text_split(120, 1), _text_split(120, 2)
    )
    settings = [
        AttackSetting(lr=3e-2, steps=60, batch_size=8, seed=0),
        AttackSetting(lr=1e-2, steps=60, batch_size=16, seed=1, data_seed=1),
    ]
    figures = time_vectorised_vs_sequential(target, problem, settings, CONFIG)
    assert figures["runs"] == len(settings)
    assert figures["vectorised_s"] > 0 and figures["sequential_s"] > 0
    assert figures["speedup"] == pytest.approx(figures["sequential_s"] / figures["vectorised_s"])
    assert figures["max_curve_difference"] < 1e-5
    results = run_attacks(target, problem, settings, CONFIG)
    assert max(r.val["accuracy"] for r in results) > 0.65


def _tiny_bert_problem():
    """Attacker examples use ids below 30 only, validation and test the whole vocabulary of 60,
    so evaluation reads rows the active-row table leaves out."""
    return AttackProblem(
        "bad",
        40,
        _text_split(80, 3, vocab=30),
        _text_split(120, 4, vocab=60),
        _text_split(120, 5, vocab=60),
    )


def _tiny_bert_target():
    config = BertConfig(
        vocab_size=60,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    backbone = bert_backbone(config)
    return AttackTarget("tiny-bert", backbone, backbone.init(jax.random.key(3)))


def test_attacker_token_ids_cover_the_attacker_examples_only():
    problem = _tiny_bert_problem()
    settings = [AttackSetting(data_seed=s) for s in (0, 1)]
    ids = attacker_token_ids(problem, settings, vocab_size=60, pad_id=0)
    assert len(ids) == 60 and ids[0] == 0 and np.all(np.diff(ids) >= 0)
    used = set(np.unique(problem.train["input_ids"]).tolist()) | {0}
    assert set(ids.tolist()) <= used and max(ids) < 30
    with_pad_one = attacker_token_ids(problem, settings, vocab_size=60, pad_id=1)
    assert with_pad_one[0] == 0 and with_pad_one[1] == 1


@pytest.mark.parametrize(("optimizer", "weight_decay"), [("adam", None), ("adamw", 0.5)])
def test_active_rows_equal_the_dense_table(optimizer, weight_decay):
    target, problem = _tiny_bert_target(), _tiny_bert_problem()
    settings = [
        AttackSetting(
            lr=3e-2,
            steps=60 - 20 * s,
            batch_size=8,
            optimizer=optimizer,
            weight_decay=weight_decay,
            schedule=("constant", "cosine")[s],
            seed=s,
            data_seed=s,
        )
        for s in (0, 1)
    ]
    active = run_attacks(target, problem, settings, CONFIG)
    dense = run_attacks(target, problem, settings, dataclasses.replace(CONFIG, active_rows=False))
    np.testing.assert_allclose(_curves(active), _curves(dense), atol=1e-6)
    for a, b in zip(active, dense, strict=True):
        assert a.best_step == b.best_step
        assert a.val == pytest.approx(b.val, abs=1e-5)
        assert a.test == pytest.approx(b.test, abs=1e-5)
    # the attack moved the model, so the comparison says something
    assert any(r.best_step > 0 for r in active)


def test_on_cpu_backbone_runs_go_one_per_call_and_probes_share_one(toy, monkeypatch):
    from sdm_jax.attacks import runner as runner_module

    target, splits = toy
    widths = []

    def counting(spec, logits_fn):
        program = program_module.compiled_program(spec, logits_fn)

        def call(hparams, *rest):  # the runs of one call are the hparams' leading axis
            widths.append(hparams["lr"].shape[0])
            return program(hparams, *rest)

        return call

    monkeypatch.setattr(runner_module, "compiled_program", counting)
    settings = [AttackSetting(lr=lr, steps=40, batch_size=8, frozen_base=frozen)
                for lr in (1e-2, 3e-3, 1e-3) for frozen in (False, True)]
    auto = run_attacks(target, _problem(splits), settings,
                       dataclasses.replace(CONFIG, vectorise_backbone="auto"))
    assert jax.default_backend() == "cpu"
    assert sorted(widths) == [1, 1, 1, 4]  # three full runs alone, three probes padded to 4
    vectorised = run_attacks(target, _problem(splits), settings, CONFIG)
    np.testing.assert_allclose(_curves(auto), _curves(vectorised), atol=1e-5)
    with pytest.raises(ValueError, match="vectorise_backbone"):
        RunnerConfig(vectorise_backbone="sometimes")
