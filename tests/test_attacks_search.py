"""Hyperparameter search on the toy task: sensible choices, determinism, stopping rules."""

import jax
import numpy as np
import pytest

from sdm_jax.attacks.problem import AttackProblem, AttackTarget
from sdm_jax.attacks.runner import RunnerConfig
from sdm_jax.attacks.search import SearchConfig, SearchSpace, search_cell
from sdm_jax.data.toy import ToySpec, make_toy_task
from sdm_jax.models.heads import mlp_backbone

SPACE = SearchSpace(
    lr_range=(1e-5, 1e-1), steps_range=(40, 60, 20), batch_sizes=(16,), modes=("full",)
)
CONFIG = SearchConfig(
    max_trials=12,
    patience=12,
    trials_per_batch=4,
    num_seeds=4,
    space=SPACE,
    runner=RunnerConfig(eval_every=20, eval_batch_size=128, max_examples=300),
)


@pytest.fixture(scope="module")
def cell_inputs():
    splits = make_toy_task(ToySpec(n_train=10, n_val=300, n_test=300))
    backbone = mlp_backbone()
    target = AttackTarget("random-mlp", backbone, backbone.init(jax.random.key(0)))
    problem = AttackProblem("bad", 40, splits["val1"], splits["val2"], splits["test"])
    return target, problem


def test_tpe_search_picks_a_learning_rate_that_learns_and_is_deterministic(cell_inputs):
    target, problem = cell_inputs
    cell = search_cell(target, problem, CONFIG)
    assert len(cell.trials) == 12 and cell.stopped_because == "max trials"
    assert all(trial.test is None for trial in cell.trials)  # selection never sees test
    tiny = [t.val["accuracy"] for t in cell.trials if t.setting.lr < 1e-4]
    best = max(t.val["accuracy"] for t in cell.trials)
    assert cell.chosen.lr > 1e-3
    assert tiny, "no trial sampled a learning rate below 1e-4: the comparison is vacuous"
    assert best > max(tiny) + 0.1
    assert [s.setting.seed for s in cell.seeds] == [0, 1, 2, 3]  # the search seed first
    assert all(s.setting.lr == cell.chosen.lr and s.test is not None for s in cell.seeds)
    assert len({s.setting.data_seed for s in cell.seeds}) == 4  # each seed its own examples
    again = search_cell(target, problem, CONFIG)
    assert again.to_dict() == cell.to_dict()


def test_search_stops_at_target_accuracy_and_random_search_runs(cell_inputs):
    target, problem = cell_inputs
    config = SearchConfig(**{**vars(CONFIG), "method": "random", "target_accuracy": 0.5})
    cell = search_cell(target, problem, config)
    assert cell.stopped_because == "target accuracy"
    assert len(cell.trials) == config.trials_per_batch
    lrs = np.array([t.setting.lr for t in cell.trials])
    assert np.all((lrs >= 1e-5) & (lrs <= 1e-1))


def test_fingerprint_ignores_execution_knobs_only():
    faster = SearchConfig(runner=RunnerConfig(max_parallel=4, eval_batch_size=64))
    assert faster.fingerprint() == SearchConfig().fingerprint()
    assert SearchConfig(num_seeds=3).fingerprint() != SearchConfig().fingerprint()


def test_bad_search_config_fails_with_one_line(cell_inputs):
    target, problem = cell_inputs
    with pytest.raises(ValueError, match="unknown search method 'grid'"):
        search_cell(target, problem, SearchConfig(method="grid"))
    with pytest.raises(ValueError, match="lr_range"):
        search_cell(target, problem, SearchConfig(space=SearchSpace(lr_range=(1e-2, 1e-3))))


def test_final_seeds_include_the_search_seed():
    from sdm_jax.attacks.search import seed_settings
    from sdm_jax.attacks.settings import AttackSetting

    seeds = seed_settings(AttackSetting(lr=3e-3), SearchConfig(seed=0, num_seeds=15))
    assert [s.seed for s in seeds] == list(range(15))
    assert all(s.lr == 3e-3 and s.data_seed == s.seed for s in seeds)  # seed 0: its examples
