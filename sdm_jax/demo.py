"""``make demo``: block the embedded MiniLM on the synthetic corpus, then attack it.

A demo-scale run of the whole pipeline on a CPU: train the blocked model and two trained
baselines (adversarial censoring with K=0, and plain fine-tuning on the desired task), then
attack them all, with the pretrained and randomly initialised encoders, and print the report.
Sizes are cut down to fit a 2-core machine; the numbers show the mechanics, not the paper's
results (``make paper`` documents the full protocol). Finished runs and evaluation cells are
reused, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sdm_jax.app.evaluation import EvalPlan, evaluate
from sdm_jax.attacks import RunnerConfig, SearchConfig, SearchSpace
from sdm_jax.config import config_to_yaml, load_config
from sdm_jax.configs import packaged_config
from sdm_jax.host_memory import use_huge_page_malloc

CONFIG = packaged_config("bios_minilm.yaml")
# The trained baselines: configs extending the blocked run's (base: bios_minilm.yaml).
BASELINE_CONFIGS = {
    "ac": packaged_config("bios_minilm_ac.yaml"),
    "finetuned": packaged_config("bios_minilm_finetuned.yaml"),
}
PROBE_NS = (20, 50, 100, 200)
# Linear-probe attacks (frozen base): features are computed once per model, so the whole grid
# fits a CPU in minutes.
PROBE_SEARCH = SearchConfig(
    method="tpe", max_trials=8, patience=8, trials_per_batch=8, num_seeds=5,
    space=SearchSpace(steps_range=(100, 300, 100), batch_sizes=(8, 16), modes=("frozen",)),
    runner=RunnerConfig(eval_every=50),
)
# Full fine-tuning (fresh head, Adam, searched lr and batch) costs ~15 s per attack run on a
# 2-core CPU at this scale, so it runs at n=100 only, on the harmful task, with a small budget.
FULL_NS = (100,)
FULL_MODELS = ("blocked", "ac", "pretrained", "random")
FULL_SEARCH = SearchConfig(
    method="tpe", max_trials=4, patience=4, trials_per_batch=4, num_seeds=3,
    space=SearchSpace(lr_range=(1e-5, 1e-3), steps_range=(100, 100, 100), batch_sizes=(8, 16),
                      modes=("full",)),
    runner=RunnerConfig(eval_every=25),
)


def _train(name: str, config_file: Path, out: Path, progress: bool) -> Path:
    from sdm_jax.app.training import train_and_evaluate

    run_dir = out / name
    config = load_config(config_file)
    saved_config = run_dir / "config.yaml"
    if saved_config.is_file() and saved_config.read_text() != config_to_yaml(config):
        raise SystemExit(f"error: {run_dir} was trained with another config; remove {out} "
                         "to train the demo again")
    summary_file = run_dir / "summary.json"
    if summary_file.is_file() and not json.loads(summary_file.read_text())["stopped_early"]:
        print(f"[{name}] reusing the finished run in {run_dir}")
        return run_dir
    print(f"[{name}] training (configs/{config_file.name})")
    started = time.perf_counter()
    summary = train_and_evaluate(config, run_dir, progress=progress)
    print(f"[{name}] {summary['final_step']} outer steps in {time.perf_counter() - started:.0f} s"
          f" ({summary.get('steps_per_s', float('nan')):.2f} steps/s after compiling)")
    return run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="where the runs and the report go")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    progress = False if args.no_progress else None
    started = time.perf_counter()
    config = load_config(CONFIG)
    print(f"sdm-jax demo, DEMO SCALE: {config.model.num_layers}-layer MiniLM, "
          f"{config.model.max_length} tokens, K={config.mlac.inner_steps}, "
          f"{config.train.outer_steps} outer steps; linear probes ({PROBE_SEARCH.max_trials} "
          f"trials, {PROBE_SEARCH.num_seeds} seeds per cell) and full fine-tuning at n=100 "
          f"({FULL_SEARCH.max_trials} trials, {FULL_SEARCH.num_seeds} seeds). "
          "It shows the pipeline, not the paper's numbers (README: 'Paper-scale runs').")
    blocked = _train("blocked", CONFIG, args.out, progress)
    baselines = {name: str(_train(name, config_file, args.out, progress))
                 for name, config_file in BASELINE_CONFIGS.items()}
    print(f"[eval] linear probes on blocked, {', '.join(baselines)}, pretrained and random "
          f"with n in {PROBE_NS}")
    probes, _ = evaluate(EvalPlan(run_dir=blocked, models=baselines, ns=PROBE_NS,
                                  search=PROBE_SEARCH, out_dir=args.out / "eval",
                                  progress=progress is None))
    print(f"[eval] full fine-tuning of {', '.join(FULL_MODELS)} on the harmful task, "
          f"n in {FULL_NS}")
    full_models = {name: path for name, path in baselines.items() if name in FULL_MODELS}
    full, _ = evaluate(EvalPlan(run_dir=blocked, models=full_models, tasks=("bad",), ns=FULL_NS,
                                search=FULL_SEARCH, out_dir=args.out / "eval_full",
                                progress=progress is None))
    print()
    print(probes["report.md"].read_text())
    print("# Full fine-tuning\n")
    print(full["report.md"].read_text())
    print(f"plots: {probes['blocking.png']}, {full['blocking.png']}")
    print(f"all results: {args.out} (demo wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    use_huge_page_malloc()
    main()
