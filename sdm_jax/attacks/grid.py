"""Evaluate a grid of cells (model × task × n) with a resumable cache and one progress bar.

Every cell is validated before the first compute, so a bad n or task fails in a second, not
after an hour. Each finished cell is written to the cache at once; a rerun with the same search
config loads finished cells and computes only the rest.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

from tqdm.auto import tqdm

from sdm_jax.attacks.cache import CellCache, content_digest
from sdm_jax.attacks.compression import check_compression
from sdm_jax.attacks.problem import (
    Arrays,
    AttackInputError,
    AttackProblem,
    AttackTarget,
    validate_problem,
)
from sdm_jax.attacks.search import CellResult, SearchConfig, search_cell
from sdm_jax.models.adapters import adaptation_for, check_adaptation

# The reference's protocol: the attacker's examples come from val1, settings and steps are
# chosen on val2, numbers are reported on test.
ATTACKER_SPLIT, SELECTION_SPLIT, REPORT_SPLIT = "val1", "val2", "test"


def build_problems(
    splits: Mapping[str, Arrays],
    tasks: Sequence[str],
    ns: Sequence[int],
    retain_task: str | None = None,
) -> list[AttackProblem]:
    roles = (ATTACKER_SPLIT, SELECTION_SPLIT, REPORT_SPLIT)
    missing = [name for name in roles if name not in splits]
    if missing:
        raise AttackInputError(f"data has no split {missing[0]!r} (splits: {sorted(splits)})")
    return [
        AttackProblem(
            task=task,
            n=n,
            train=splits[ATTACKER_SPLIT],
            val=splits[SELECTION_SPLIT],
            test=splits[REPORT_SPLIT],
            retain_task=retain_task,
        )
        for task in tasks
        for n in ns
    ]


def check_attack_space(target: AttackTarget, space) -> None:
    """Fail in one line, before any compute, when a searched PEFT mode or compression has
    nothing to work on in ``target``'s backbone."""
    name = target.backbone.name
    for mode in space.modes:
        if mode == "bitfit":
            check_adaptation(adaptation_for(target.backbone, "bitfit", 1, ""), target.params, name)
        if mode == "lora":
            for group in space.lora_targets:
                adaptation = adaptation_for(target.backbone, "lora", 1, group)
                check_adaptation(adaptation, target.params, name)
    for compression in space.compressions:
        check_compression(target.backbone, target.params, compression)


def evaluate_grid(
    targets: Sequence[AttackTarget],
    splits: Mapping[str, Arrays],
    tasks: Sequence[str] = ("bad",),
    ns: Sequence[int] = (20, 50, 100, 200),
    config: SearchConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    retain_task: str | None = None,
) -> list[CellResult]:
    """Search and seed every (target, task, n) cell; results in target, task, n order.

    ``config`` defaults to ``SearchConfig()``; ``progress=False`` silences the bar. With
    ``retain_task``, runs on the other tasks against targets with a ``retain_head`` also measure
    that task's accuracy after the attack.
    """
    config = config if config is not None else SearchConfig()
    config.validate()
    config_fingerprint = config.fingerprint()
    ids = [target.model_id for target in targets]
    if len(set(ids)) != len(ids):
        raise AttackInputError(f"model ids must be unique, got {ids}")
    problems = build_problems(splits, tasks, ns, retain_task)
    for target in targets:
        check_attack_space(target, config.space)
        for problem in problems:
            validate_problem(target, problem)

    cache = CellCache(cache_dir) if cache_dir is not None else None
    # Weights and data are part of the key: a retrained model keeps its id, not its cells.
    data_digest = content_digest(splits) if cache is not None else ""
    # Room for the largest n in every program, so all n share compiled programs.
    runner = dataclasses.replace(config.runner, max_examples=max(ns))
    config = dataclasses.replace(config, runner=runner)
    space = config.space
    seeded_families = len(space.modes) * len(space.compressions) if config.seed_every_family else 1
    budget = config.max_trials + config.num_seeds * seeded_families
    cells: list[CellResult] = []
    with tqdm(total=budget * len(targets) * len(problems), unit="run", disable=not progress) as bar:
        for target in targets:
            weights_digest = (content_digest((target.params, target.retain_head))
                              if cache is not None else "")
            fingerprint = f"{config_fingerprint}-{weights_digest[:8]}{data_digest[:8]}"
            for problem in problems:
                # A cell that measured the retained task is not the cell that did not.
                retained = "+retain" if problem.retains(target) else ""
                key = (target.model_id, problem.task, problem.n, fingerprint + retained)
                cell = cache.load(*key) if cache is not None else None
                cell_was_cached = cell is not None
                if cell is None:
                    cell = search_cell(target, problem, config, bar.update)
                    if cache is not None:
                        cache.store(cell, fingerprint + retained)
                done = len(cell.trials) + len(cell.seeds) + sum(
                    len(runs) for runs in cell.family_seeds.values())
                if cell_was_cached:
                    bar.update(done)
                # A search that stopped early (or tried fewer families) leaves budget unused.
                bar.total -= budget - done
                bar.refresh()
                cells.append(cell)
    return cells
