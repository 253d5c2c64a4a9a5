"""JAX against the PyTorch reference, interleaved: JAX, PyTorch, JAX, PyTorch, ...

Each run is a fresh subprocess that compiles (JAX), warms up and times a few outer steps; its
median step time is one sample. The verdict for a configuration is the ratio of the two
implementations' medians over the pairs, with the range of the per-pair ratios as its spread.
Interleaving spreads any drift of the machine over both sides; a snapshot of the machine's
load before and after each run (:mod:`sdm_jax.bench.machine`) decides whether the ratio is
printed at all: if anything else was running, the row says why and gives no ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from sdm_jax.bench import machine
from sdm_jax.bench.report import variant_name

Runner = Callable[[], dict]


def timed_run(run: Runner, cores: int, settle_s: float = machine.SETTLE_TIMEOUT_S) -> dict:
    """One child run with the machine's state around it and the reasons it may be untrusted;
    it starts once the load the previous run left has decayed (or after ``settle_s``)."""
    settled_s = machine.wait_until_quiet(cores, timeout_s=settle_s)
    before = machine.snapshot()
    result = run()
    after = machine.snapshot()
    return {**result, "machine_before": before.as_dict(), "machine_after": after.as_dict(),
            "busy": machine.busy_reasons(before, after, cores), "settled_s": settled_s}


def interleave(run_jax: Runner, run_torch: Runner, pairs: int, cores: int,
               settle_s: float = machine.SETTLE_TIMEOUT_S) -> list[dict]:
    """``pairs`` rounds of (JAX run, PyTorch run), in that order every round."""
    return [{"jax": timed_run(run_jax, cores, settle_s),
             "torch": timed_run(run_torch, cores, settle_s)}
            for _ in range(pairs)]


def summarise(workload: dict, rounds: list[dict]) -> dict:
    """Ratio of medians (PyTorch step time over JAX step time: > 1 means JAX is faster) with
    the per-pair range, or the reason there is no ratio."""
    summary: dict = {"workload": workload, "pairs": rounds, "ratio": None}
    errors = [f"{impl}: {r[impl]['error']}" for r in rounds for impl in ("jax", "torch")
              if "error" in r[impl]]
    if errors:
        summary["withheld"] = errors
        return summary
    jax_steps = [r["jax"]["step_s"] for r in rounds]
    torch_steps = [r["torch"]["step_s"] for r in rounds]
    summary.update({
        "jax_step_s": statistics.median(jax_steps),
        "torch_step_s": statistics.median(torch_steps),
        "jax_step_s_all": jax_steps,
        "torch_step_s_all": torch_steps,
        "jax_peak_mb": max(r["jax"].get("device_peak_mb") or r["jax"]["peak_rss_mb"]
                           for r in rounds),
        "torch_peak_mb": max(r["torch"]["peak_rss_mb"] for r in rounds),
        "jax_compile_s": rounds[0]["jax"].get("compile_s"),
    })
    busy = sorted({reason for r in rounds for side in r.values() for reason in side["busy"]})
    if busy:
        summary["withheld"] = busy
        return summary
    per_pair = [t / j for t, j in zip(torch_steps, jax_steps, strict=True)]
    summary["ratio"] = summary["torch_step_s"] / summary["jax_step_s"]
    summary["ratio_range"] = [min(per_pair), max(per_pair)]
    return summary


def verdict(ratio: float | None) -> str:
    if ratio is None:
        return "no ratio"
    if ratio >= 1.2:
        return "JAX faster"
    if ratio > 1 / 1.2:
        return "about equal"
    return "PyTorch faster"


def markdown(summaries: list[dict]) -> str:
    lines = ["| objective | K | JAX variant | JAX s/step | PyTorch s/step | PyTorch/JAX "
             "(range) | verdict | JAX peak MB | PyTorch peak MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        w = s["workload"]
        head = f"| {w['objective']} | {w['inner_steps']} | {variant_name(w)} |"
        if "jax_step_s" not in s:
            lines.append(f"{head} failed: {'; '.join(s['withheld'])} |")
            continue
        if s["ratio"] is None:
            ratio = "withheld: " + "; ".join(s["withheld"])
        else:
            low, high = s["ratio_range"]
            ratio = f"{s['ratio']:.2f}× ({low:.2f}–{high:.2f})"
        lines.append(f"{head} {s['jax_step_s']:.2f} | {s['torch_step_s']:.2f} | {ratio} | "
                     f"{verdict(s['ratio'])} | {s['jax_peak_mb']:,.0f} | "
                     f"{s['torch_peak_mb']:,.0f} |")
    return "\n".join(lines)
