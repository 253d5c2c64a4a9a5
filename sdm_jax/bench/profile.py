"""``python -m sdm_jax.bench.profile``: where one outer step's time goes, by kind of XLA op.

Compiles the benchmark's outer step for one workload, runs it once untimed, then traces one
step with ``jax.profiler`` and sums the duration of every XLA op executed on the host's
compute threads into classes: matmuls (``dot``, including XNNPACK/YNNPACK fusions), layout
copies and transposes, the scan's stacking of per-step values (``dynamic-update-slice``) and
reading them back (``dynamic-slice``), scatters, gathers, reductions, sorts, and everything
else (elementwise fusions). ``cores busy`` is the summed op time over the step's wall time.

Example::

    python -m sdm_jax.bench.profile --inner-steps 16 --remat none --top 10
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import jax

from sdm_jax.bench.workload import (
    OBJECTIVES,
    Workload,
    build_outer_step,
    initial_state,
    make_meta_batch,
)
from sdm_jax.blocking.settings import SECOND_ORDER_MODES
from sdm_jax.host_memory import use_huge_page_malloc

# Profiler events that wrap ops rather than being ops themselves.
_WRAPPERS = ("ThunkExecutor", "SlinkyThreadPool", "Execute")
_CLASSES = (
    ("dot", ("ynn_fusion", "xnn_fusion", "dot", "convolution")),
    ("scatter", ("scatter",)),
    ("dynamic-update-slice", ("dynamic-update-slice", "dynamic_update_slice")),
    ("dynamic-slice", ("dynamic-slice", "dynamic_slice")),
    ("copy/transpose", ("copy", "transpose")),
    ("gather", ("gather",)),
    ("reduce", ("reduce",)),
    ("sort", ("sort",)),
)


def op_class(name: str) -> str | None:
    """The class of a profiled op by its HLO name (``None`` for wrapper events)."""
    if any(wrapper in name for wrapper in _WRAPPERS):
        return None
    base = re.sub(r"\.\d+$", "", name)
    for label, markers in _CLASSES:
        if any(marker in base for marker in markers):
            return label
    return "elementwise/other"


def breakdown(profile: jax.profiler.ProfileData, wall_s: float, top: int = 0) -> dict:
    """Seconds per op class on the XLA compute threads, cores busy, and the ``top`` ops."""
    per_class: collections.Counter = collections.Counter()
    per_op: collections.Counter = collections.Counter()
    threads = set()
    for plane in profile.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_XLA") or "PjRt" in line.name:
                continue
            for event in line.events:
                label = op_class(event.name)
                if label is not None:
                    per_class[label] += event.duration_ns / 1e9
                    per_op[event.name] += event.duration_ns / 1e9
                    threads.add(line.name)
    total = sum(per_class.values())
    return {
        "wall_s": wall_s,
        "op_s": total,
        "threads": len(threads),
        "cores_busy": total / wall_s if wall_s else None,
        "classes": dict(per_class.most_common()),
        "top_ops": per_op.most_common(top),
    }


def profile_step(workload: Workload, top: int = 0) -> dict:
    state = initial_state(workload, 0)
    meta_batch = jax.device_put(make_meta_batch(workload, 0))
    step, _ = build_outer_step(workload)
    compiled = step.lower(state, meta_batch).compile()
    state, metrics = compiled(state, meta_batch)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        begin = time.perf_counter()
        state, metrics = compiled(state, meta_batch)
        jax.block_until_ready(metrics)
        wall = time.perf_counter() - begin
        jax.profiler.stop_trace()
        (trace,) = Path(trace_dir).rglob("*.xplane.pb")
        profile = jax.profiler.ProfileData.from_file(str(trace))
    return {"workload": asdict(workload), **breakdown(profile, wall, top)}


def markdown(result: dict) -> str:
    total = result["op_s"] or 1.0
    lines = [f"wall {result['wall_s']:.2f} s, op time {result['op_s']:.2f} s on "
             f"{result['threads']} threads: {result['cores_busy']:.2f} cores busy", "",
             "| op class | s | share |", "|---|---|---|"]
    lines += [f"| {name} | {seconds:.2f} | {100 * seconds / total:.1f}% |"
              for name, seconds in result["classes"].items()]
    if result["top_ops"]:
        lines += ["", "| op | s |", "|---|---|"]
        lines += [f"| `{name}` | {seconds:.3f} |" for name, seconds in result["top_ops"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sdm_jax.bench.profile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-tiny")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--inner-steps", type=int, default=16)
    parser.add_argument("--remat", default="none", choices=["none", "full", "dots", "sqrt"])
    parser.add_argument("--active-rows", type=int, default=0)
    parser.add_argument("--objective", default="paper", choices=OBJECTIVES)
    parser.add_argument("--second-order", default="auto",
                        choices=SECOND_ORDER_MODES,
                        help="see mlac.second_order")
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest ops")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    workload = Workload(model=args.model, seq_len=args.seq_len, batch=args.batch,
                        inner_steps=args.inner_steps, remat=args.remat,
                        active_rows=args.active_rows, objective=args.objective,
                        second_order=args.second_order)
    result = profile_step(workload, args.top)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    use_huge_page_malloc()
    main()
