"""Time the same attack runs vectorised (one program) against one by one (a program per run).

For the benchmark and the closing notes: both paths do the same total work and produce the same
results; each is timed after a warm-up call that compiles its programs, and the warm-up time is
reported too since compilation is part of what vectorising saves.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from sdm_jax.attacks.problem import AttackProblem, AttackTarget
from sdm_jax.attacks.runner import RunnerConfig, RunResult, run_attacks
from sdm_jax.attacks.settings import AttackSetting


def _timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def _largest_gap(first: Sequence[RunResult], second: Sequence[RunResult]) -> float:
    curves = [
        (np.asarray(a.val_curve), np.asarray(b.val_curve))
        for a, b in zip(first, second, strict=True)
    ]
    return float(max(np.max(np.abs(a - b)) for a, b in curves))


def time_vectorised_vs_sequential(
    target: AttackTarget,
    problem: AttackProblem,
    settings: Sequence[AttackSetting],
    config: RunnerConfig | None = None,
) -> dict[str, float | int]:
    """Seconds for all ``settings`` in one vectorised call and one run at a time.

    Returns ``runs``, ``vectorised_s``, ``sequential_s``, ``speedup`` (sequential/vectorised),
    the first-call times including compilation, and ``max_curve_difference`` between the two
    paths' validation curves (a check that they did the same work).
    """
    settings = list(settings)
    fixed = dataclasses.replace(
        config if config is not None else RunnerConfig(),
        max_steps=max(s.steps for s in settings),
        max_batch_size=max(s.batch_size for s in settings),
        vectorise_backbone="always",
    )
    vectorised = dataclasses.replace(fixed, max_parallel=len(settings))
    one_by_one = dataclasses.replace(fixed, max_parallel=1)
    # One setting of each program kind compiles everything the sequential pass needs.
    kinds = {(s.family, s.mode, s.lora_rank, s.lora_targets): s for s in settings}

    vectorised_first_s, _ = _timed(lambda: run_attacks(target, problem, settings, vectorised))
    vectorised_s, batched = _timed(lambda: run_attacks(target, problem, settings, vectorised))
    sequential_first_s, _ = _timed(
        lambda: run_attacks(target, problem, list(kinds.values()), one_by_one)
    )
    sequential_s, single = _timed(
        lambda: [run_attacks(target, problem, [s], one_by_one)[0] for s in settings]
    )
    return {
        "runs": len(settings),
        "vectorised_s": vectorised_s,
        "sequential_s": sequential_s,
        "speedup": sequential_s / vectorised_s,
        "vectorised_first_call_s": vectorised_first_s,
        "sequential_first_call_s": sequential_first_s,
        "max_curve_difference": _largest_gap(batched, single),
    }
