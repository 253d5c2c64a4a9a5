"""Fine-tuning attacks for evaluating blocked models: the reference's search-then-seeds protocol
(README "Evaluating: fine-tuning attacks").

Typical use::

    target = AttackTarget("blocked", backbone, backbone_params)
    cells = evaluate_grid([target, ...], splits, tasks=("bad", "good"), ns=(20, 50, 100, 200),
                          config=SearchConfig(), cache_dir="runs/eval/cache")
    write_report("runs/eval", cells)

Lower layers: :func:`run_attacks` runs a list of :class:`AttackSetting` vectorised against one
model; :func:`search_cell` searches one (model, task, n) cell and runs the chosen setting's seeds.
"""

from sdm_jax.attacks.cache import CellCache
from sdm_jax.attacks.grid import build_problems, evaluate_grid
from sdm_jax.attacks.metrics import (
    DEFAULT_TARGETS,
    METRIC_NAMES,
    balanced_accuracy,
    classification_metrics,
    examples_to_target,
    roc_auc,
)
from sdm_jax.attacks.problem import AttackInputError, AttackProblem, AttackTarget
from sdm_jax.attacks.report import (
    blocking_scores,
    csv_text,
    markdown_report,
    run_rows,
    summary_rows,
)
from sdm_jax.attacks.report_io import blocking_figure, write_report
from sdm_jax.attacks.runner import RunnerConfig, RunResult, compute_features, run_attacks
from sdm_jax.attacks.search import CellResult, SearchConfig, SearchSpace, search_cell
from sdm_jax.attacks.settings import SCHEDULES, AttackSetting
from sdm_jax.attacks.timing import time_vectorised_vs_sequential

__all__ = [
    "DEFAULT_TARGETS",
    "METRIC_NAMES",
    "SCHEDULES",
    "AttackInputError",
    "AttackProblem",
    "AttackSetting",
    "AttackTarget",
    "CellCache",
    "CellResult",
    "RunResult",
    "RunnerConfig",
    "SearchConfig",
    "SearchSpace",
    "balanced_accuracy",
    "blocking_figure",
    "blocking_scores",
    "build_problems",
    "classification_metrics",
    "compute_features",
    "csv_text",
    "evaluate_grid",
    "examples_to_target",
    "markdown_report",
    "roc_auc",
    "run_attacks",
    "run_rows",
    "search_cell",
    "summary_rows",
    "time_vectorised_vs_sequential",
    "write_report",
]
