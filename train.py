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
from sdm_jax.models import CheckpointError


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
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, values parsed as YAML scalars")
    args = parser.parse_args(argv)

    try:
        overrides = list(args.overrides)
        if args.run_dir:
            overrides.append(f"train.run_dir={args.run_dir}")
        config = load_config(args.config, overrides)
        # Imported here so --help and config errors answer without loading JAX.
        import jax

        from sdm_jax.data.sources import DEFAULT_CACHE
        from sdm_jax.parallel import maybe_initialize_distributed
        from sdm_jax.train_loop import TrainingError, train_and_evaluate

        # Multi-host (TPU pods, GPU clusters): join the cluster before any device is touched.
        maybe_initialize_distributed()

        # A resumed run compiles the same outer step again: keep compiled programs on disk
        # (minutes for a BERT meta-gradient on a CPU) unless the user chose a cache already.
        if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
            jax.config.update("jax_compilation_cache_dir", str(DEFAULT_CACHE / "jax"))

        summary = train_and_evaluate(config, progress=False if args.no_progress else None)
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


if __name__ == "__main__":
    sys.exit(main())
