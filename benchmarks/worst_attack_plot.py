"""Plot the harmful-task accuracy each model concedes to the worst of several attack evaluations.

    python benchmarks/worst_attack_plot.py runs/showcase4/probe/results.json \
        runs/showcase4/full_baselines/results.json --out benchmarks/showcase_blocking.png

Every ``results.json`` is one ``eval.py`` report (e.g. linear probes, full fine-tuning). For each
model and n the left panel takes the evaluation with the highest mean test accuracy (the
defender's worst case) and draws it with that evaluation's seed std; the right panel is the
lowest blocking score (pretrained − model) / (pretrained − random), each evaluation's score taken
against its own pretrained and random figures, so the two panels may take a point from different
evaluations. A model or baseline missing from an evaluation is left out of that evaluation's
score; the printed table names the evaluation behind each accuracy and each score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sdm_jax.app.evaluation import BASELINES
from sdm_jax.attacks.report import blocking_scores, markdown_table


def summaries(paths: list[Path], task: str) -> dict[str, list[dict]]:
    """Each evaluation's summary rows of ``task``, by the evaluation's folder name."""
    rows = {path.parent.name: [row for row in json.loads(path.read_text())["summary"]
                               if row["task"] == task] for path in paths}
    if not any(rows.values()):
        raise SystemExit(f"error: no {task!r} cells in {', '.join(map(str, paths))}")
    return rows


def worst_attacks(evaluations: dict[str, list[dict]]) -> dict[tuple[str, int], dict]:
    """(model, n) -> the summary row of the attack with the highest mean test accuracy."""
    worst: dict[tuple[str, int], dict] = {}
    for source, rows in evaluations.items():
        for row in rows:
            key = (row["model_id"], row["n"])
            if key not in worst or row["test_accuracy_mean"] > worst[key]["test_accuracy_mean"]:
                worst[key] = {**row, "source": source}
    return worst


def worst_scores(evaluations: dict[str, list[dict]],
                 task: str) -> dict[tuple[str, int], tuple[float, str]]:
    """(model, n) -> (the lowest blocking score, its evaluation) over the evaluations that
    attacked the model and both baselines at that n, each score against that evaluation's own
    baselines."""
    scores: dict[tuple[str, int], tuple[float, str]] = {}
    for source, rows in evaluations.items():
        for model, by_n in blocking_scores(rows, task, *BASELINES).items():
            for n, score in by_n.items():
                lowest = scores.get((model, n))
                if score is not None and (lowest is None or score < lowest[0]):
                    scores[(model, n)] = (score, source)
    return scores


def figure(worst: dict, scores: dict, task: str, models: list[str]) -> Figure:
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    accuracy_axes, score_axes = fig.subplots(1, 2)
    all_ns = sorted({n for _, n in worst})
    for model in models:
        ns = sorted(n for m, n in worst if m == model)
        rows = [worst[(model, n)] for n in ns]
        accuracy_axes.errorbar(ns, [r["test_accuracy_mean"] for r in rows],
                               yerr=[r["test_accuracy_std"] for r in rows], marker="o",
                               capsize=3, label=model)
        scored = [n for n in ns if (model, n) in scores]
        if scored:
            score_axes.plot(scored, [scores[(model, n)][0] for n in scored], marker="o",
                            label=model)
    accuracy_axes.set(xscale="log", xlabel="attacker examples n",
                      ylabel="test accuracy, worst attack", title=f"harmful task: {task}")
    score_axes.axhline(0.8, color="grey", linestyle="--", linewidth=1)
    score_axes.set(xscale="log", xlabel="attacker examples n",
                   ylabel="blocking score, worst attack",
                   title="1 = random encoder, 0 = pretrained")
    for axes in (accuracy_axes, score_axes):
        axes.set_xticks(all_ns, [str(n) for n in all_ns])
        axes.minorticks_off()
        axes.legend(fontsize="small")
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="eval.py results.json files")
    parser.add_argument("--task", default="bad", help="the harmful task's name")
    parser.add_argument("--models", help="comma-separated models to draw (default: all)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    evaluations = summaries(args.results, args.task)
    worst, scores = worst_attacks(evaluations), worst_scores(evaluations, args.task)
    found = sorted({model for model, _ in worst}, key=lambda m: (m in BASELINES, m))
    models = found if args.models is None else args.models.split(",")
    unknown = sorted(set(models) - set(found))
    if unknown:
        raise SystemExit(f"error: no {args.task!r} cells for {', '.join(unknown)}; "
                         f"the results have {', '.join(found)}")
    body = []
    for (model, n), row in sorted(worst.items()):
        if model not in models:
            continue
        score, score_source = scores.get((model, n), (None, "—"))
        body.append([model, str(n),
                     f"{row['test_accuracy_mean']:.3f} ± {row['test_accuracy_std']:.3f}",
                     row["source"], "—" if score is None else f"{score:.3f}", score_source])
    print("\n".join(markdown_table(
        ["model", "n", "worst attack", "from", "lowest blocking score", "from"], body)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure(worst, scores, args.task, models).savefig(args.out, format="png", dpi=100)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
