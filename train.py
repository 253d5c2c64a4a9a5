"""Train a self-destructing model with MLAC.

    python train.py --config configs/toy.yaml [section.key=value ...] [--run-dir DIR]

Overrides use dotted keys with YAML values, e.g. ``mlac.inner_steps=4 train.outer_steps=100
mlac.batch_size_choices=[8,16]``. Re-running the same command on the same run directory
resumes from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys

from sdm_jax.checkpoint import RestoreError
from sdm_jax.config import ConfigError, load_config
from sdm_jax.data import DataError
from sdm_jax.host_memory import use_huge_page_malloc
from sdm_jax.models import CheckpointError


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes config.yaml, metrics.jsonl, checkpoints/, summary.json and export/ "
               "into the run directory.",
    )
    parser.add_argument("--config", help="YAML config; it states only what differs from the "
                                         "defaults (omit for the defaults)")
    parser.add_argument("--run-dir", help="where results go (default: train.run_dir)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--tune-finetuned", type=int, metavar="TRIALS",
                        help="instead of MLAC, train the 'finetuned' baseline: a TPE search of "
                             "TRIALS desired-task fine-tunes (K=0, no blocking terms) over the "
                             "outer lr, steps and batch size, scored by validation loss; the "
                             "best is copied to the run directory")
    parser.add_argument("--tune-lr-range", type=_floats, default=(1e-5, 1e-3),
                        metavar="LOW,HIGH", help="finetune outer lrs searched (log-uniform)")
    parser.add_argument("--tune-steps", type=_ints, default=(100, 1000, 100),
                        metavar="FIRST,LAST,STRIDE", help="finetune outer step counts searched")
    parser.add_argument("--tune-batch-sizes", type=_ints, default=(8, 16, 32),
                        help="finetune outer batch sizes searched")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, values parsed as YAML scalars")
    # Intermixed: overrides may come before, between or after the options.
    args = parser.parse_intermixed_args(argv)

    try:
        overrides = list(args.overrides)
        if args.run_dir:
            overrides.append(f"train.run_dir={args.run_dir}")
        config = load_config(args.config, overrides)
        # Imported here so --help and config errors answer without loading JAX.
        import jax

        from sdm_jax.app.training import TrainingError, train_and_evaluate
        from sdm_jax.data.sources import DEFAULT_CACHE
        from sdm_jax.parallel import maybe_initialize_distributed

        # Multi-host (TPU pods, GPU clusters): join the cluster before any device is touched.
        maybe_initialize_distributed()

        # A resumed run compiles the same outer step again: keep compiled programs on disk
        # (minutes for a BERT meta-gradient on a CPU) unless the user chose a cache already.
        if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
            jax.config.update("jax_compilation_cache_dir", str(DEFAULT_CACHE / "jax"))

        progress = False if args.no_progress else None
        if args.tune_finetuned is not None:
            return _tune(args, config, progress)
        summary = train_and_evaluate(config, progress=progress)
    except (ConfigError, DataError, RestoreError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    run_dir = summary["run_dir"]
    if summary["stopped_early"]:
        print(f"stopped after step {summary['final_step']} of {summary['outer_steps']}; "
              f"checkpoint in {run_dir}/checkpoints (re-run the command to continue)")
        return 0
    print(f"trained {summary['final_step']} outer steps; best validation loss "
          f"{summary['best_val_loss']:.4f} at step {summary['best_step']}")
    print(f"results: {run_dir} (metrics.jsonl, summary.json, checkpoints/)")
    print(f"exported model: {summary['export_dir']}")
    return 0


def _tune(args: argparse.Namespace, config, progress: bool | None) -> int:
    from sdm_jax.app.tune_finetuned import FinetuneSpace, tune_finetuned

    if len(args.tune_steps) != 3 or len(args.tune_lr_range) != 2:
        raise ConfigError("--tune-steps takes FIRST,LAST,STRIDE and --tune-lr-range LOW,HIGH")
    space = FinetuneSpace(lr_range=args.tune_lr_range, steps_range=args.tune_steps,
                          batch_sizes=args.tune_batch_sizes)
    result = tune_finetuned(config, config.train.run_dir, args.tune_finetuned, space,
                            seed=config.train.seed, progress=progress)
    best = result["best"]
    print(f"best of {len(result['trials'])} finetune trials: {best['params']} "
          f"(validation loss {best['best_val_loss']:.4f}); copied to {config.train.run_dir}")
    return 0


if __name__ == "__main__":
    use_huge_page_malloc()
    sys.exit(main())
