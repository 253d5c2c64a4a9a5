"""Compression attacks: the weight transforms, and the runner running compressed models."""

import dataclasses

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from sdm_jax.attacks.compression import compress, compressed_paths, prune, quantise
from sdm_jax.attacks.report import family_rows
from sdm_jax.attacks.runner import RunnerConfig, run_attacks
from sdm_jax.attacks.search import CellResult, SearchConfig, SearchSpace, search_cell
from sdm_jax.attacks.settings import AttackSetting
from sdm_jax.models.bert import BertConfig, bert_backbone

CONFIG = RunnerConfig(
    eval_every=20, eval_batch_size=128, max_steps=40, max_batch_size=16, max_examples=300,
    vectorise_backbone="always",  # the vectorised path under test, on any backend
)


@pytest.fixture(scope="module")
def toy(toy_attack):
    return toy_attack


@pytest.mark.parametrize("bits", [8, 4])
def test_quantise_keeps_each_column_on_its_grid_within_half_a_step(bits):
    matrix = jax.random.normal(jax.random.key(0), (64, 6))
    quantised = np.asarray(quantise(matrix, bits))
    levels = 2 ** (bits - 1) - 1
    step = np.abs(np.asarray(matrix)).max(axis=0) / levels
    assert np.all(np.abs(quantised - np.asarray(matrix)) <= step / 2 + 1e-6)
    for column in range(matrix.shape[1]):
        grid = quantised[:, column] / step[column]
        np.testing.assert_allclose(grid, np.round(grid), atol=1e-4)
        assert len(np.unique(np.round(grid))) <= 2 * levels + 1
    assert not np.array_equal(quantised, np.asarray(matrix))


def test_quantise_leaves_an_all_zero_column_at_zero():
    matrix = np.zeros((4, 2), np.float32)
    matrix[:, 1] = [1.0, -2.0, 0.5, 0.0]
    quantised = np.asarray(quantise(matrix, 4))
    assert np.all(quantised[:, 0] == 0) and np.isfinite(quantised).all()


def test_prune_zeroes_the_smallest_half_by_magnitude():
    matrix = np.array([[0.1, -3.0], [2.0, -0.2], [0.05, 1.0], [-4.0, 0.3]], np.float32)
    pruned = np.asarray(prune(matrix, 0.5))
    np.testing.assert_array_equal(pruned, [[0, -3.0], [2.0, 0], [0, 1.0], [-4.0, 0]])


def test_compress_touches_the_linear_layers_of_a_bert_only():
    config = BertConfig(vocab_size=60, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
    backbone = bert_backbone(config)
    params = backbone.init(jax.random.key(1))
    paths = compressed_paths(backbone, params)
    assert len(paths) == 6 * 2 and all("/layer/" in p and p.endswith("kernel") for p in paths)
    before = flatten_dict(params, sep="/")
    for compression in ("int8", "int4", "prune50"):
        after = flatten_dict(compress(backbone, params, compression), sep="/")
        changed = {p for p in before if not np.array_equal(before[p], after[p])}
        assert changed == set(paths), compression
    assert compress(backbone, params, "none") is params


def test_compressed_runs_share_a_call_and_equal_one_by_one(toy):
    target, problem = toy
    common = {"lr": 1e-2, "steps": 40, "batch_size": 16, "seed": 2}
    settings = [AttackSetting(**common, compression=c) for c in ("none", "int4", "prune50")]
    settings.append(AttackSetting(**common, compression="int4", adapter="lora",
                                  lora_targets="dense"))
    together = run_attacks(target, problem, settings, CONFIG)
    alone = [run_attacks(target, problem, [s], CONFIG)[0] for s in settings]
    for a, b in zip(together, alone, strict=True):
        assert a.setting == b.setting
        np.testing.assert_allclose(a.val_curve, b.val_curve, atol=1e-5)
    # The same fresh head sees different features once the weights are compressed.
    starts = [r.val_curve[0] for r in together]
    assert starts[1] == starts[3] and len({starts[0], starts[1], starts[2]}) > 1


def test_an_unknown_compression_fails_in_one_line(toy):
    target, problem = toy
    with pytest.raises(ValueError, match="unknown compression 'int2'") as caught:
        run_attacks(target, problem, [AttackSetting(steps=20, compression="int2")], CONFIG)
    assert "\n" not in str(caught.value)


def test_a_backbone_without_linear_layers_cannot_be_compressed(toy):
    target, problem = toy
    nothing = dataclasses.replace(
        target, backbone=dataclasses.replace(target.backbone, adapter_targets=())
    )
    with pytest.raises(ValueError, match="finds no weight matrix"):
        run_attacks(nothing, problem, [AttackSetting(steps=20, compression="int8")], CONFIG)


def test_search_samples_compressions(toy):
    target, problem = toy
    space = SearchSpace(lr_range=(1e-3, 1e-1), steps_range=(20, 40, 20), batch_sizes=(16,),
                        modes=("full",), compressions=("none", "int8", "prune50"))
    config = SearchConfig(method="random", max_trials=8, patience=8, trials_per_batch=8,
                          num_seeds=1, space=space, runner=CONFIG)
    cell = search_cell(target, dataclasses.replace(problem, n=100), config)
    assert {t.setting.compression for t in cell.trials} == {"none", "int8", "prune50"}
    with pytest.raises(ValueError, match="unknown compression"):
        SearchSpace(compressions=("int3",)).validate()


def test_seeding_every_family_gives_each_its_test_figures(toy):
    target, problem = toy
    space = SearchSpace(lr_range=(1e-2, 1e-1), steps_range=(20, 40, 20), batch_sizes=(16,),
                        modes=("full", "frozen"), compressions=("none", "int4"))
    config = SearchConfig(method="random", max_trials=8, patience=8, trials_per_batch=8,
                          num_seeds=2, space=space, runner=CONFIG, seed_every_family=True)
    cell = search_cell(target, dataclasses.replace(problem, n=100), config)
    searched = {trial.setting.attack_family for trial in cell.trials}
    assert set(cell.family_seeds) == searched - {cell.chosen.attack_family}
    for family, runs in cell.family_seeds.items():
        best = max((t for t in cell.trials if t.setting.attack_family == family),
                   key=lambda t: t.val["accuracy"])
        assert [r.setting.seed for r in runs] == [0, 1]
        assert all(dataclasses.replace(r.setting, seed=0, data_seed=0) == best.setting
                   for r in runs)
    assert CellResult.from_dict(cell.to_dict()) == cell
    rows = family_rows([cell])
    assert all("test_accuracy_mean" in row for row in rows)
    plain = search_cell(target, dataclasses.replace(problem, n=100),
                        dataclasses.replace(config, seed_every_family=False))
    assert plain.family_seeds == {}
    assert [r.setting for r in plain.seeds] == [r.setting for r in cell.seeds]
    assert [r.test["accuracy"] for r in plain.seeds] == pytest.approx(
        [r.test["accuracy"] for r in cell.seeds], abs=1e-6)
