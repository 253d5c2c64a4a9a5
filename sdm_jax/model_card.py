"""The model card (``README.md``) an export carries: what the model is, how it was trained, how
to run its desired task in plain ``transformers``, and its blocking report once ``eval.py`` has
measured one. Text in, text out; the callers write it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sdm_jax.config import EXPORTS, Config

CARD = "README.md"
REPORT_HEADING = "## Blocking report"
NOT_EVALUATED = (
    "Not measured yet. `python eval.py --run-dir RUN` attacks this model (the attack modes it "
    "is given, searched on validation and reported on test) and writes its report here."
)


def _usage(pooling: str, base_class: str, classifier_class: str) -> str:
    if pooling == "pooler":
        return "\n".join([
            f"The folder is a `{classifier_class}` whose classifier is the desired-task head:",
            "",
            "```python",
            "from transformers import pipeline",
            "classify = pipeline(\"text-classification\", model=\"PATH/TO/export\")",
            "classify(\"She has taught chemistry at the high school for ten years.\")",
            "```",
        ])
    return "\n".join([
        "The heads read the mean of the last hidden state over real tokens, which "
        f"`{classifier_class}` (it reads the pooled `[CLS]`) cannot express, so the folder is "
        f"a `{base_class}`; the desired-task head is `good.weight` in `heads.safetensors`:",
        "",
        "```python",
        "import torch",
        "from safetensors.torch import load_file",
        "from transformers import AutoModel, AutoTokenizer",
        "tokenizer = AutoTokenizer.from_pretrained(\"PATH/TO/export\")",
        "encoder = AutoModel.from_pretrained(\"PATH/TO/export\").eval()",
        "head = load_file(\"PATH/TO/export/heads.safetensors\")[\"good.weight\"]",
        "batch = tokenizer([\"She has taught chemistry for ten years.\"], return_tensors=\"pt\")",
        "with torch.no_grad():",
        "    hidden = encoder(**batch).last_hidden_state",
        "mask = batch[\"attention_mask\"].unsqueeze(-1).float()",
        "logits = ((hidden * mask).sum(1) / mask.sum(1)) @ head.T",
        "```",
        "",
        "`labels.json` names the outputs.",
    ])


def model_card(config: Config, good_names: Sequence[str], bad_names: Sequence[str],
               export_step: int, classes: tuple[str, str]) -> str:
    """The card of a text export written at ``export_step`` of the run ``config`` describes;
    ``classes`` are the ``transformers`` classes of the encoder and of its classifier."""
    mlac = config.mlac
    losses = ", ".join(f"{f.name[2:]} {getattr(mlac, f.name):g}"
                       for f in dataclasses.fields(mlac)
                       if f.name.startswith("l_") and getattr(mlac, f.name))
    export_rule = EXPORTS[config.train.export]
    layers = config.model.num_layers if config.model.num_layers is not None else "all"
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification" if config.model.pooling == "pooler" else
        "pipeline_tag: feature-extraction",
        "tags: [sdm-jax, self-destructing-model, mlac]",
        "---",
        "",
        f"# Task-blocked encoder from `{config.model.name}`",
        "",
        "A self-destructing (task-blocked) model trained with sdm-jax's MLAC (meta-learned "
        "adversarial censoring): it keeps serving the desired task, and an attacker who "
        "fine-tunes it for the harmful task should do no better than from random weights.",
        "",
        f"- Desired task ({len(good_names)} classes): {', '.join(good_names)}.",
        f"- Blocked task ({len(bad_names)} classes): {', '.join(bad_names)}.",
        "",
        "## Training",
        "",
        f"- Base encoder `{config.model.name}`, layers kept: {layers}, pooling "
        f"`{config.model.pooling}`, {config.model.max_length} tokens.",
        f"- Data: `{config.data.source}` source.",
        f"- MLAC: {mlac.meta_batch_size} simulated attacker(s) per outer step, each taking "
        f"{mlac.inner_steps} optimizer step(s) ({', '.join(mlac.inner_optimizers)}) on "
        f"{' or '.join(mlac.inner_attacks)}; losses: {losses}.",
        f"- {config.train.outer_steps} outer steps of batch {config.train.batch_size}, seed "
        f"{config.train.seed}; exported at step {export_step} ({export_rule}). "
        "`train_config.yaml` is the whole resolved config.",
        "",
        "## Use",
        "",
        _usage(config.model.pooling, *classes),
        "",
        REPORT_HEADING,
        "",
        NOT_EVALUATED,
        "",
    ]
    return "\n".join(lines)


def with_report(card: str, report_markdown: str, source: str) -> str:
    """``card`` with its blocking-report section replaced by ``report_markdown`` (headings
    demoted below the section's), naming the folder ``source`` that holds the evaluation."""
    head, found, _ = card.partition(REPORT_HEADING)
    if not found:
        head = card.rstrip("\n") + "\n\n"
    demoted = "\n".join("##" + line if line.startswith("#") else line
                        for line in report_markdown.strip().splitlines())
    return (f"{head}{REPORT_HEADING}\n\nFrom the evaluation in `{source}` (its `results.json` "
            f"holds every run).\n\n{demoted}\n")
