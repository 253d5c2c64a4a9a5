"""Measure one workload in the current process: compile time, step time, memory, throughput.

Run each workload in a fresh process (the CLI does) so peak RSS and device memory stats belong
to that workload alone.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np

from sdm_jax import parallel
from sdm_jax.bench.flops import outer_step_flops
from sdm_jax.bench.workload import (
    Workload,
    build_outer_step,
    initial_state,
    inner_loop_style,
    make_meta_batch,
)


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def device_peak_mb() -> float | None:
    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def matmul_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """Best observed float32 FLOP/s of a ``size``² matmul: the machine's practical peak."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size), jnp.float32)
    b = jax.random.normal(key_b, (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def measure(workload: Workload, min_steps: int = 3, min_seconds: float = 2.0,
            warmup_steps: int = 1, seed: int = 0) -> dict:
    """Compile, run ``warmup_steps`` untimed steps, then time outer steps until both
    ``min_steps`` and ``min_seconds`` are reached."""
    config = workload.config
    state = initial_state(workload, seed)
    meta_batch_np = make_meta_batch(workload, seed)
    step, mesh = build_outer_step(workload)
    if mesh is None:
        meta_batch = jax.device_put(meta_batch_np)
    else:
        state = jax.device_put(state, parallel.replicated(mesh))
        meta_batch = parallel.put_meta_batch(meta_batch_np, mesh, shared_outer_batch=True)
    baseline_rss = rss_mb()

    with inner_loop_style(workload.unrolled):
        start, start_cpu = time.perf_counter(), time.process_time()
        lowered = step.lower(state, meta_batch)
        lowered_at = time.perf_counter()
        compiled = lowered.compile()
        compiled_at, compiled_cpu = time.perf_counter(), time.process_time()

    for _ in range(warmup_steps):
        state, metrics = compiled(state, meta_batch)
        jax.block_until_ready(metrics)
    times, cpu_times = [], []
    while len(times) < min_steps or sum(times) < min_seconds:
        begin, begin_cpu = time.perf_counter(), time.process_time()
        state, metrics = compiled(state, meta_batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - begin)
        cpu_times.append(time.process_time() - begin_cpu)

    step_time = statistics.median(times)
    flops = outer_step_flops(config, workload.batch, workload.seq_len, workload.inner_steps,
                             workload.meta_batch, workload.first_order,
                             pullbacks=2 if workload.settings().has_meta_params else 1)
    inner_tokens = workload.meta_batch * workload.inner_steps * workload.batch * workload.seq_len
    tokens = inner_tokens + workload.batch * workload.seq_len
    unique = len(np.unique(np.concatenate([np.ravel(meta_batch_np["inner"]["input_ids"]),
                                           np.ravel(meta_batch_np["outer"]["input_ids"])])))
    return {
        "workload": asdict(workload),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "lower_s": lowered_at - start,
        "compile_s": compiled_at - start,
        "step_s": step_time,
        "step_s_all": times,
        # CPU seconds (all threads): less sensitive than wall time to other processes' load.
        "compile_cpu_s": compiled_cpu - start_cpu,
        "step_cpu_s": statistics.median(cpu_times),
        "outer_steps_per_s": 1.0 / step_time,
        "inner_steps_per_s": workload.meta_batch * workload.inner_steps / step_time,
        "tokens_per_s": tokens / step_time,
        "flops_per_step": flops.total,
        "forward_equivalents": flops.forward_equivalents,
        "achieved_flops": flops.total / step_time,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": rss_mb(),
        "device_peak_mb": device_peak_mb(),
        "unique_tokens_per_step": unique,
        "active_rows_missing": int(metrics["active_rows_missing"]),
        "loss": float(metrics["loss/total"]),
    }
