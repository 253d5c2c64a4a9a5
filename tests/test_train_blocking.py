"""Blocking works on the toy task: an attacker with 100 examples fine-tunes the blocked MLP on
the bad task no better than a random MLP, while the good task stays accurate.

The test trains shrunken runs (a blocked one and a good-task-only one) and attacks both plus a
random MLP with the vectorised fine-tuning attacks. ``toy_blocking_figures`` also measures the
full ``configs/toy.yaml`` runs:
``python -c "import sys; sys.path.insert(0, 'tests'); import test_train_blocking as t;
print(t.toy_blocking_figures('runs/toy', 'runs/toy_unblocked'))"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from sdm_jax.app.task import prepare_task
from sdm_jax.app.training import load_run_state, train_and_evaluate
from sdm_jax.attacks import AttackProblem, AttackSetting, AttackTarget, RunnerConfig, run_attacks
from sdm_jax.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
# The good-task-only baseline: no attacker terms, no inner loop.
UNBLOCKED = ["mlac.inner_steps=0", "mlac.l_linear_mi=0", "mlac.l_bad_adapted_grad=0",
             "mlac.learn_inner_lr=false"]
ATTACK_LRS = (1e-3, 3e-3, 1e-2)
ATTACK_SEEDS = (0, 1, 2)
# Shrunk to stay near a minute: less data and pretraining, K=4, a larger outer lr, 500 steps.
FAST = ["toy.n_train=3000", "toy.n_val=400", "toy.n_test=1000", "model.pretrain_steps=600",
        "mlac.inner_steps=4", "mlac.outer_lr=3e-3", "train.outer_steps=500",
        "train.eval_every=250", "train.checkpoint_every=250", "train.log_every=50"]


def attacker_accuracy(task, backbone_params, steps: int, n: int = 100,
                      lrs=ATTACK_LRS, seeds=ATTACK_SEEDS) -> float:
    """Test accuracy on the bad task of the strongest of a few full fine-tuning attacks (Adam,
    fresh head, ``n`` examples from val1): lr chosen by mean val2 accuracy over seeds."""
    target = AttackTarget(f"toy-{id(backbone_params)}", task.backbone, backbone_params)
    problem = AttackProblem("bad", n, task.splits["val1"], task.splits["val2"],
                            task.splits["test"])
    settings = [AttackSetting(lr=lr, steps=steps, batch_size=50, seed=s, data_seed=s)
                for lr in lrs for s in seeds]
    results = run_attacks(target, problem, settings, RunnerConfig(eval_every=50))
    by_lr: dict[float, list] = {}
    for result in results:
        by_lr.setdefault(result.setting.lr, []).append(result)
    best = max(by_lr.values(), key=lambda rs: np.mean([r.val["accuracy"] for r in rs]))
    return float(np.mean([r.test["accuracy"] for r in best]))


def good_accuracy(task, params) -> float:
    test = task.splits["test"]
    features = task.backbone.features(params["backbone"], {"x": test["x"]})
    logits = np.asarray(features @ params["head"]["kernel"])[:, : task.num_good]
    return float(np.mean(np.argmax(logits, -1) == test["good"]))


def _best_params(config: Config, run_dir: Path):
    summary = json.loads((run_dir / "summary.json").read_text())
    return load_run_state(config, run_dir, summary["export_step"]).params


def toy_blocking_figures(blocked_dir, unblocked_dir, steps: int = 300,
                         **attack) -> dict[str, float]:
    blocked_dir, unblocked_dir = Path(blocked_dir), Path(unblocked_dir)
    config = load_config(blocked_dir / "config.yaml")
    task = prepare_task(config)
    blocked = _best_params(config, blocked_dir)
    unblocked = _best_params(load_config(unblocked_dir / "config.yaml"), unblocked_dir)
    random_backbone = task.backbone.init(jax.random.PRNGKey(12345))
    return {
        "attacker_acc_blocked": attacker_accuracy(task, blocked["backbone"], steps, **attack),
        "attacker_acc_random": attacker_accuracy(task, random_backbone, steps, **attack),
        "attacker_acc_unblocked": attacker_accuracy(task, unblocked["backbone"], steps,
                                                    **attack),
        "good_acc_blocked": good_accuracy(task, blocked),
        "good_acc_unblocked": good_accuracy(task, unblocked),
    }


@pytest.mark.slow
def test_toy_blocking(tmp_path: Path):
    blocked = load_config(ROOT / "configs" / "toy.yaml", FAST)
    unblocked = load_config(ROOT / "configs" / "toy.yaml", FAST + UNBLOCKED)
    train_and_evaluate(blocked, tmp_path / "blocked", progress=False)
    train_and_evaluate(unblocked, tmp_path / "unblocked", progress=False)
    figures = toy_blocking_figures(tmp_path / "blocked", tmp_path / "unblocked", steps=200,
                                   lrs=(3e-3, 1e-2), seeds=(0, 1))
    assert figures["attacker_acc_blocked"] <= figures["attacker_acc_random"] + 0.05, figures
    # The attack can tell models apart: the unblocked model still gives the bad task away.
    assert figures["attacker_acc_unblocked"] > figures["attacker_acc_random"] + 0.05, figures
    assert figures["good_acc_blocked"] >= 0.95 * figures["good_acc_unblocked"], figures
