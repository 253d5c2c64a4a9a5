"""BitFit and LoRA attacks: the adapter functions, and the runner and search using them."""

import dataclasses

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from sdm_jax.attacks.problem import AttackProblem, AttackTarget
from sdm_jax.attacks.runner import RunnerConfig, run_attacks
from sdm_jax.attacks.search import SearchConfig, SearchSpace, search_cell
from sdm_jax.attacks.settings import AttackSetting, validate_settings
from sdm_jax.data.toy import ToySpec, make_toy_task
from sdm_jax.models.adapters import (
    Adaptation,
    adaptation_for,
    adapted_paths,
    apply_adapter,
    init_adapter,
)
from sdm_jax.models.bert import BertConfig, bert_backbone

CONFIG = RunnerConfig(
    eval_every=20, eval_batch_size=128, max_steps=60, max_batch_size=16, max_examples=300,
    vectorise_backbone="always",  # the vectorised path under test, on any backend
)


@pytest.fixture(scope="module")
def tiny_bert():
    config = BertConfig(vocab_size=60, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
    backbone = bert_backbone(config)
    return backbone, backbone.init(jax.random.key(3))


@pytest.fixture(scope="module")
def toy(toy_attack):
    return toy_attack


def _flat(params):
    return {path: np.asarray(leaf) for path, leaf in flatten_dict(params, sep="/").items()}


def test_lora_targets_name_the_attention_and_feed_forward_matrices(tiny_bert):
    backbone, params = tiny_bert
    attention = adaptation_for(backbone, "lora", 4, "attention")
    both = adaptation_for(backbone, "lora", 4, "attention+ffn")
    assert len(adapted_paths(attention, params)) == 4 * 2
    assert len(adapted_paths(both, params)) == 6 * 2
    assert all(path.endswith("kernel") and "/layer/" in path
               for path in adapted_paths(both, params))
    assert "encoder/layer/1/attention/self/value/kernel" in adapted_paths(attention, params)
    assert "encoder/layer/0/intermediate/dense/kernel" not in adapted_paths(attention, params)


def test_lora_starts_as_the_base_model_and_changes_only_its_targets(tiny_bert):
    backbone, params = tiny_bert
    adaptation = adaptation_for(backbone, "lora", 3, "ffn")
    adapter = init_adapter(adaptation, params, jax.random.key(0))
    assert all(pair["a"].shape[1] == 3 and pair["b"].shape[0] == 3 for pair in adapter.values())
    base = _flat(params)
    start = _flat(apply_adapter(adaptation, adapter, params, 2.0))
    assert all(np.array_equal(start[path], base[path]) for path in base)
    moved = jax.tree.map(lambda leaf: leaf + 0.1, adapter)
    after = _flat(apply_adapter(adaptation, moved, params, 2.0))
    changed = {path for path in base if not np.array_equal(after[path], base[path])}
    assert changed == set(adapter)
    path = next(iter(adapter))
    expected = base[path] + 2.0 * np.asarray(moved[path]["a"] @ moved[path]["b"])
    np.testing.assert_allclose(after[path], expected, rtol=1e-6)


def test_bitfit_trains_the_bias_vectors_only(tiny_bert):
    backbone, params = tiny_bert
    adaptation = adaptation_for(backbone, "bitfit", 8, "attention")
    adapter = init_adapter(adaptation, params, jax.random.key(0))
    assert adapter and all(path.endswith("/bias") for path in adapter)
    assert any("LayerNorm" in path for path in adapter)
    moved = jax.tree.map(lambda leaf: leaf + 1.0, adapter)
    base, after = _flat(params), _flat(apply_adapter(adaptation, moved, params, 0.0))
    changed = {path for path in base if not np.array_equal(after[path], base[path])}
    assert changed == set(adapter)


def test_peft_runs_vectorised_equal_one_by_one_and_start_from_the_base_model(toy):
    target, problem = toy
    common = {"lr": 1e-2, "steps": 60, "batch_size": 16, "seed": 4}
    settings = [
        AttackSetting(**common, adapter="lora", lora_rank=4, lora_alpha=8.0, lora_targets="dense"),
        AttackSetting(**common, adapter="lora", lora_rank=4, lora_alpha=32.0,
                      lora_targets="dense"),
        AttackSetting(**common, adapter="lora", lora_rank=2, lora_targets="dense"),
        AttackSetting(**common, adapter="bitfit"),
        AttackSetting(**common),
        AttackSetting(**common, frozen_base=True),
    ]
    together = run_attacks(target, problem, settings, CONFIG)
    alone = [run_attacks(target, problem, [s], CONFIG)[0] for s in settings]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.val_curve, b.val_curve, atol=1e-5)
        np.testing.assert_allclose(list(a.test.values()), list(b.test.values()), atol=1e-5)
    # Same seed, same fresh head, unchanged base at step 0: one starting accuracy for all.
    assert len({round(r.val_curve[0], 6) for r in together}) == 1
    assert len({tuple(np.round(r.val_curve, 4)) for r in together}) == len(settings)


def test_lora_learns_the_toy_task_and_bitfit_beats_the_probe(toy):
    target, problem = toy
    common = {"lr": 3e-2, "steps": 60, "batch_size": 16}
    settings = [
        AttackSetting(**common, adapter="lora", lora_rank=4, lora_alpha=16.0,
                      lora_targets="dense"),
        AttackSetting(**common, adapter="bitfit"),
        AttackSetting(**common, frozen_base=True),
    ]
    lora, bitfit, probe = run_attacks(target, problem, settings, CONFIG)
    assert lora.test["accuracy"] > 0.75
    assert lora.val_curve[-1] > lora.val_curve[0] + 0.1
    # A random MLP's features barely separate the classes; moving its biases must still help.
    assert bitfit.test["roc_auc"] > probe.test["roc_auc"] + 0.05


def test_lora_on_a_text_backbone_shares_the_call_with_active_row_runs(tiny_bert):
    from tests.test_attacks_runner import _text_split

    backbone, params = tiny_bert
    target = AttackTarget("tiny-bert", backbone, params)
    problem = AttackProblem("bad", 40, _text_split(80, 3, vocab=30),
                            _text_split(120, 4, vocab=60), _text_split(120, 5, vocab=60))
    settings = [
        AttackSetting(lr=3e-2, steps=40, batch_size=8, adapter="lora", lora_rank=2,
                      lora_targets="attention+ffn"),
        AttackSetting(lr=3e-2, steps=40, batch_size=8, seed=1, data_seed=1),
    ]
    together = run_attacks(target, problem, settings, CONFIG)
    alone = [run_attacks(target, problem, [s], CONFIG)[0] for s in settings]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.val_curve, b.val_curve, atol=1e-5)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"adapter": "lora", "lora_targets": "ffn"}, "LoRA target group 'ffn'"),
        ({"adapter": "prefix"}, "unknown adapter 'prefix'"),
        ({"adapter": "bitfit", "frozen_base": True}, "cannot also train a bitfit"),
        ({"adapter": "lora", "lora_rank": 0}, "lora_rank and lora_alpha must be positive"),
    ],
)
def test_bad_adapter_settings_fail_in_one_line(toy, setting, message):
    target, problem = toy
    with pytest.raises(ValueError, match=message) as caught:
        run_attacks(target, problem, [AttackSetting(steps=20, **setting)], CONFIG)
    assert "\n" not in str(caught.value)


def test_bitfit_on_a_backbone_without_biases_says_so(toy):
    target, problem = toy
    params = {name: {"kernel": layer["kernel"]} for name, layer in target.params.items()}
    no_bias = dataclasses.replace(
        target, params=params,
        backbone=dataclasses.replace(target.backbone, features=_biasless_features),
    )
    with pytest.raises(ValueError, match="finds no weight to adapt"):
        run_attacks(no_bias, problem, [AttackSetting(steps=20, adapter="bitfit")], CONFIG)


def _biasless_features(params, batch):
    hidden = batch["x"]
    for name in sorted(params):
        hidden = jax.nn.relu(hidden @ params[name]["kernel"])
    return hidden


def test_search_over_peft_modes_samples_lora_choices_only_for_lora(toy):
    target, problem = toy
    space = SearchSpace(lr_range=(1e-3, 1e-1), steps_range=(40, 60, 20), batch_sizes=(16,),
                        modes=("lora", "bitfit"), lora_ranks=(2, 4), lora_alphas=(4.0,),
                        lora_targets=("dense",))
    config = SearchConfig(method="random", max_trials=6, patience=6, trials_per_batch=6,
                          num_seeds=2, space=space, runner=CONFIG)
    cell = search_cell(target, dataclasses.replace(problem, n=100), config)
    modes = {trial.setting.mode for trial in cell.trials}
    assert modes == {"lora", "bitfit"}
    for trial in cell.trials:
        if trial.setting.mode == "lora":
            assert trial.setting.lora_rank in (2, 4) and trial.setting.lora_alpha == 4.0
        else:
            assert trial.setting.lora_rank == AttackSetting().lora_rank
    assert cell.chosen.mode in modes and len(cell.seeds) == 2


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (SearchSpace(modes=("full", "prompt")), "unknown attack mode 'prompt'"),
        (SearchSpace(modes=("lora",), lora_ranks=()), "no LoRA rank"),
        (SearchSpace(modes=("lora",), lora_alphas=(0.0,)), "must be positive"),
    ],
)
def test_bad_search_spaces_fail_in_one_line(space, message):
    with pytest.raises(ValueError, match=message):
        space.validate()


def test_lora_scale_is_alpha_over_rank_and_zero_otherwise():
    (lora, full) = validate_settings([AttackSetting(adapter="lora", lora_rank=4, lora_alpha=16.0),
                                      AttackSetting(lora_rank=4, lora_alpha=16.0)])
    assert lora.lora_scale == 4.0 and full.lora_scale == 0.0
    assert (lora.mode, full.mode) == ("lora", "full")
    assert Adaptation().kind == "none"


def test_a_grid_names_a_lora_target_the_model_lacks_before_any_compute(toy, monkeypatch):
    from sdm_jax.attacks import grid

    target, _ = toy
    splits = make_toy_task(ToySpec(n_train=10, n_val=50, n_test=50))
    config = SearchConfig(method="random", max_trials=2, patience=2, trials_per_batch=2,
                          num_seeds=1, space=SearchSpace(modes=("full", "lora")), runner=CONFIG)
    monkeypatch.setattr(grid, "search_cell", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(ValueError, match="LoRA target group 'attention' is not one of"):
        grid.evaluate_grid([target], splits, ns=(10,), config=config, progress=False)
