"""32 fine-tuning attack runs vectorised vs one by one, with the attacks package's own timer.

The runs differ in learning rate (8 values, log-spaced 1e-4..1e-2) and seed (4); the model is
the benchmark's BERT shape with random weights, the data synthetic Zipf token batches with random
binary labels (the speed of the program does not depend on what it learns).
"""

from __future__ import annotations

import jax
import numpy as np

from sdm_jax.attacks import (
    AttackProblem,
    AttackSetting,
    AttackTarget,
    RunnerConfig,
    time_vectorised_vs_sequential,
)
from sdm_jax.bench.workload import zipf_token_ids
from sdm_jax.models import bert_backbone, init_bert_params


def _split(config, size: int, seq_len: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    shape = (size, seq_len)
    return {
        "input_ids": zipf_token_ids(rng, shape, config.vocab_size),
        "attention_mask": np.ones(shape, np.int32),
        "token_type_ids": np.zeros(shape, np.int32),
        "bad": rng.integers(0, 2, size).astype(np.int32),
    }


def attack_sweep(model_config, seq_len: int, steps: int, examples: int = 100,
                 eval_size: int = 128, mode: str = "full") -> dict:
    """``mode``: what the runs train: ``full`` (the whole model), ``frozen`` (a linear probe)
    or ``lora`` (adapters on the attention matrices)."""
    backbone = bert_backbone(model_config)
    target = AttackTarget("bench-random", backbone, init_bert_params(model_config,
                                                                     jax.random.key(0)))
    problem = AttackProblem("bad", examples, _split(model_config, examples, seq_len, 0),
                            _split(model_config, eval_size, seq_len, 1))
    settings = [AttackSetting(lr=float(lr), steps=steps, batch_size=16, seed=seed,
                              frozen_base=mode == "frozen",
                              adapter="lora" if mode == "lora" else "none")
                for lr in np.logspace(-4, -2, 8) for seed in range(4)]
    config = RunnerConfig(eval_every=max(steps // 2, 1), eval_batch_size=eval_size)
    return time_vectorised_vs_sequential(target, problem, settings, config)
