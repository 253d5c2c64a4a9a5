"""The file edge of the report: atomic writes of ``results.json``, ``results.csv``,
``report.md``, ``blocking.png`` and ``trials_to_break.png``."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sdm_jax.atomic import write_bytes_atomic, write_text_atomic
from sdm_jax.attacks.report import (
    csv_text,
    family_rows,
    markdown_report,
    run_rows,
    summary_rows,
    trials_to_break,
)
from sdm_jax.attacks.search import CellResult


def blocking_figure(summary: Sequence[dict], harmful_task: str, desired_task: str) -> Figure:
    """Test accuracy against n per model with std error bars; harmful task left, desired right.

    Built on a bare ``Figure`` with the Agg canvas, so no global pyplot backend is touched.
    """
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    for position, task in enumerate((harmful_task, desired_task)):
        axes = figure.add_subplot(1, 2, position + 1)
        models: dict[str, list[dict]] = {}
        for row in summary:
            if row["task"] == task:
                models.setdefault(row["model_id"], []).append(row)
        for model, rows in models.items():
            rows = sorted(rows, key=lambda r: r["n"])
            axes.errorbar(
                [r["n"] for r in rows],
                [r["test_accuracy_mean"] for r in rows],
                yerr=[r["test_accuracy_std"] for r in rows],
                marker="o",
                capsize=3,
                label=model,
            )
        axes.set_xscale("log")
        axes.set_xlabel("attacker examples n")
        axes.set_ylabel("test accuracy after attack")
        axes.set_title(f"{'harmful' if position == 0 else 'desired'} task: {task}")
        if models:
            axes.legend()
        else:
            axes.text(0.5, 0.5, "not evaluated", ha="center", transform=axes.transAxes)
    figure.tight_layout()
    return figure


def trials_figure(
    cells: Sequence[CellResult], harmful_task: str, pretrained_id: str, random_id: str
) -> Figure:
    """Per n, the harmful task's best validation accuracy so far against search trials, one line
    per model; the pretrained and random encoders' final best are dashed reference lines."""
    harmful = [cell for cell in cells if cell.task == harmful_task]
    ns = sorted({cell.n for cell in harmful}) or [None]
    figure = Figure(figsize=(4.5 * len(ns), 4))
    FigureCanvasAgg(figure)
    for position, n in enumerate(ns):
        axes = figure.add_subplot(1, len(ns), position + 1)
        for cell in (c for c in harmful if c.n == n):
            curve = trials_to_break(cell)
            if cell.model_id in (pretrained_id, random_id):
                style = "--" if cell.model_id == pretrained_id else ":"
                axes.axhline(curve[-1], linestyle=style, color="grey",
                             label=f"{cell.model_id} (best found)")
            else:
                axes.plot(range(1, len(curve) + 1), curve, marker=".", label=cell.model_id)
        axes.set_xlabel("search trials")
        axes.set_ylabel("best harmful-task val accuracy so far")
        axes.set_title(f"{harmful_task}, n={n}" if n is not None else "no harmful cells")
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _png(figure: Figure) -> bytes:
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    return image.getvalue()


def write_report(
    out_dir: str | os.PathLike,
    cells: Sequence[CellResult],
    harmful_task: str = "bad",
    desired_task: str = "good",
    pretrained_id: str = "pretrained",
    random_id: str = "random",
    extra_markdown: str = "",
) -> dict[str, Path]:
    """Write the five report files into ``out_dir``; return their paths by name.
    ``extra_markdown`` is appended to ``report.md`` (e.g. the models' own-head accuracy)."""
    out_dir = Path(out_dir)
    summary = summary_rows(cells)
    families = family_rows(cells)
    names = ("results.json", "results.csv", "report.md", "blocking.png", "trials_to_break.png")
    paths = {name: out_dir / name for name in names}
    document = {"summary": summary, "families": families,
                "cells": [cell.to_dict() for cell in cells]}
    write_text_atomic(paths["results.json"], json.dumps(document, indent=1) + "\n")
    write_text_atomic(paths["results.csv"], csv_text(run_rows(cells)))
    write_text_atomic(
        paths["report.md"],
        markdown_report(summary, harmful_task, desired_task, pretrained_id, random_id, families)
        + extra_markdown,
    )
    write_bytes_atomic(paths["blocking.png"],
                       _png(blocking_figure(summary, harmful_task, desired_task)))
    write_bytes_atomic(paths["trials_to_break.png"],
                       _png(trials_figure(cells, harmful_task, pretrained_id, random_id)))
    return paths
