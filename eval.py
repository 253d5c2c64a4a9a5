"""Attack a blocked model and its baselines with fine-tuning attacks, and write a report.

    python eval.py --run-dir runs/bios_minilm [--model ac=runs/bios_minilm_ac ...]
    python eval.py --config runs/bios_minilm/eval/eval_config.yaml   # repeat an evaluation

For every model, task and number of attacker examples n, a hyperparameter search (TPE or random)
picks the attack on the validation split; the chosen attack is then rerun with fresh seeds and
reported on the untouched test split as mean ± std and worst case. Results go to
``<run-dir>/eval`` (results.json, results.csv, report.md, blocking.png, and eval_config.yaml:
every setting, resolved, for ``--config``); finished cells are cached there, so an interrupted
evaluation picks up where it stopped. ``--config FILE`` reads the settings from the file's
``eval:`` section (keys named like the flags, ``models:`` a mapping of id to location); flags
given on the command line override it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML file whose eval: section holds these settings (flags given "
                             "here override it); every report folder has one, eval_config.yaml")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="the blocked model's training run (its export/ is 'blocked')")
    parser.add_argument("--model", action="append", default=[], metavar="ID=LOCATION",
                        help="another model: a run directory, export, HF folder or hub id, "
                             "or RUN_DIR@STEP for a kept checkpoint of a run (repeatable), "
                             "e.g. ac=runs/bios_minilm_ac or s50=runs/bios_minilm@50")
    parser.add_argument("--baselines", type=_names, default=("pretrained", "random"),
                        help="built-in baselines, comma-separated ('' for none)")
    parser.add_argument("--tasks", type=_names, default=("bad", "good"),
                        help="tasks to attack: bad (harmful) and/or good (desired)")
    parser.add_argument("--ns", type=_ints, default=(20, 50, 100, 200),
                        help="numbers of attacker examples, comma-separated")
    parser.add_argument("--search", choices=("tpe", "random"), default="tpe")
    parser.add_argument("--trials", type=int, default=50, help="most search trials per cell")
    parser.add_argument("--patience", type=int, default=15,
                        help="stop a search after this many trials without improvement")
    parser.add_argument("--trials-per-batch", type=int, default=8,
                        help="trials asked of the search at once (one vectorised program "
                             "where --vectorise-backbone vectorises them)")
    parser.add_argument("--seeds", type=int, default=15,
                        help="seeds of the chosen attack reported on test")
    parser.add_argument("--steps", type=_ints, default=(100, 1000, 100),
                        metavar="FIRST,LAST,STRIDE", help="attack step counts searched")
    parser.add_argument("--lr-range", type=lambda t: tuple(float(x) for x in t.split(",")),
                        default=(1e-5, 1e-2), metavar="LOW,HIGH",
                        help="attack learning rates searched (log-uniform)")
    parser.add_argument("--batch-sizes", type=_ints, default=None,
                        help="attack batch sizes searched (default: the run's own "
                             "mlac.batch_size_choices, as the reference searches)")
    parser.add_argument("--attack-modes", type=_names, default=("full", "frozen"),
                        help="attacks searched: full (fine-tune everything), frozen (linear "
                             "probe on the frozen encoder), bitfit (biases only), lora "
                             "(low-rank adapters; see --lora-*)")
    parser.add_argument("--lora-ranks", type=_ints, default=(4, 16),
                        help="LoRA ranks searched when --attack-modes has lora")
    parser.add_argument("--lora-alphas", type=lambda t: tuple(float(x) for x in t.split(",")),
                        default=(8.0, 16.0, 32.0),
                        help="LoRA alphas searched (the update is scaled by alpha / rank)")
    parser.add_argument("--lora-targets", type=_names, default=("attention", "attention+ffn"),
                        help="LoRA target sets searched: attention, ffn, or both joined "
                             "with '+'")
    parser.add_argument("--compressions", type=_names, default=("none",),
                        help="compress the model before the attack, searched: none, int8, int4 "
                             "(weight-only quantisation) and/or prune50 (magnitude pruning)")
    parser.add_argument("--seed-every-family", action="store_true",
                        help="rerun the best setting of every attack family searched with the "
                             "seeds, so report.md has test figures per family (more runs)")
    parser.add_argument("--optimizers", type=_names, default=("adam",),
                        help="attack optimizers searched: adam, adamw, sgd, sgd_momentum, "
                             "rmsprop")
    parser.add_argument("--schedules", type=_names, default=("constant",),
                        help="learning-rate schedules searched: constant (the reference's), "
                             "linear and/or cosine (decay to 0 at the run's last step)")
    parser.add_argument("--eval-every", type=int, default=50,
                        help="attack steps between validation checks; each attack reports the "
                             "test accuracy at its best check (the reference checks every 50)")
    parser.add_argument("--max-parallel", type=int, default=32,
                        help="attack runs per compiled program (lower it if memory is short)")
    parser.add_argument("--vectorise-backbone", choices=("auto", "always", "never"),
                        default="auto",
                        help="run full/PEFT attacks vectorised (always), one at a time (never) "
                             "or auto: one at a time on a CPU, where vectorising does not pay; "
                             "probes are always vectorised")
    parser.add_argument("--seed", type=int, default=0, help="search and attacker seed")
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeat the whole evaluation with this many seed sets (the paper "
                             "used 6); each goes to OUT/repeat_R and their spread to "
                             "OUT/repeats.md")
    parser.add_argument("--balance-test", action="store_true",
                        help="report on the test examples that leave equally many of each "
                             "harmful label in every desired class, so knowing the desired "
                             "label (profession) alone gives no harmful accuracy above chance")
    parser.add_argument("--out", type=Path, help="report directory (default: RUN_DIR/eval)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


# Flags whose names differ from their eval: keys, and the ones that are not settings.
FLAG_KEYS = {"model": "models"}
NOT_SETTINGS = ("config", "no_progress")


def given_on_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> dict:
    """The settings the user typed, by ``eval:`` key (defaults left out, so a config file's
    values stand unless a flag overrides them)."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    typed = vars(probe.parse_args(argv))
    return {FLAG_KEYS.get(name, name): value for name, value in typed.items()
            if name not in NOT_SETTINGS}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported after parsing so --help answers without loading JAX.
    from sdm_jax.app.eval_config import RESOLVED_FILE, load_eval_settings, to_yaml
    from sdm_jax.app.evaluation import (
        EvalPlan,
        evaluate,
        evaluate_repeats,
        parse_models,
        run_batch_sizes,
    )
    from sdm_jax.atomic import write_text_atomic

    try:
        given = given_on_command_line(parser, argv)
        if "models" in given:
            given["models"] = parse_models(given["models"])
        settings = load_eval_settings(args.config, given)
        if settings.run_dir is None:
            raise ValueError("no run to evaluate: pass --run-dir (or run_dir in the config)")
        run_dir = Path(settings.run_dir)
        if settings.batch_sizes is None:
            settings = dataclasses.replace(settings, batch_sizes=run_batch_sizes(run_dir))
        plan = EvalPlan(run_dir=run_dir, models=settings.models,
                        baselines=settings.baselines, tasks=settings.tasks, ns=settings.ns,
                        search=settings.search_config(),
                        out_dir=None if settings.out is None else Path(settings.out),
                        progress=not args.no_progress, balance_test=settings.balance_test)
        if settings.repeats != 1:
            paths = evaluate_repeats(plan, settings.repeats)
            report = paths["repeats.md"]
        else:
            paths, _ = evaluate(plan)
            report = paths["report.md"]
        write_text_atomic(plan.output / RESOLVED_FILE, to_yaml(settings))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.read_text())
    print("results: " + ", ".join(str(path) for path in [*paths.values(),
                                                          plan.output / RESOLVED_FILE]))
    return 0


if __name__ == "__main__":
    from sdm_jax.host_memory import use_huge_page_malloc

    use_huge_page_malloc()
    sys.exit(main())
