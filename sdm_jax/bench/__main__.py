"""``python -m sdm_jax.bench``: meta-gradient throughput, memory and compile time.

Every configuration runs in a fresh subprocess, so its peak memory (device memory stats on
GPU/TPU, ``ru_maxrss`` on CPU) and its compile time are its own, and ``--devices N`` on CPU can
simulate N devices with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``. The PyTorch
reference (:mod:`sdm_jax.bench.torch_reference`) runs as one more subprocess of the same
command.

Examples::

    python -m sdm_jax.bench                                  # BERT-tiny shape, K in 1 4 16 64
    python -m sdm_jax.bench --inner-steps 16 --remat none full sqrt --order second first
    python -m sdm_jax.bench --inner-steps 4 --unrolled-max-k 4 --devices 1 2 --meta-batch 2
    python -m sdm_jax.bench --inner-steps 16 --torch-python .venv-torch/bin/python --json b.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from sdm_jax import host_memory
from sdm_jax.atomic import write_text_atomic
from sdm_jax.bench import compare, machine
from sdm_jax.bench.flops import MODEL_SHAPES
from sdm_jax.bench.report import markdown_table
from sdm_jax.bench.workload import OBJECTIVES, Workload
from sdm_jax.blocking.settings import SECOND_ORDER_MODES

ATTACK_SWEEP_MODES = ("full", "frozen", "lora")

TORCH_MODULE = "sdm_jax.bench.torch_reference"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sdm_jax.bench",
        description="Benchmark one jitted MLAC outer step (meta-gradient through K inner steps).",
    )
    parser.add_argument("--model", default="bert-tiny", choices=sorted(MODEL_SHAPES),
                        help="BERT shape with random weights (default: bert-tiny, L2 H128 A2)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--batch", type=int, default=16, help="inner and outer batch size")
    parser.add_argument("--meta-batch", type=int, default=1,
                        help="simulated attackers per outer step (vmapped, sharded on devices)")
    parser.add_argument("--inner-steps", type=int, nargs="+", default=[1, 4, 16, 64],
                        help="values of K to sweep")
    parser.add_argument("--remat", nargs="+", default=["sqrt"],
                        choices=["none", "full", "dots", "sqrt"],
                        help="checkpoint policies to sweep (default sqrt = nested, chunks of "
                             "~sqrt(K); 'none' at K=64 needs far more memory)")
    parser.add_argument("--order", nargs="+", default=["second"], choices=["second", "first"],
                        help="meta-gradient order(s) to sweep")
    parser.add_argument("--devices", type=int, nargs="+", default=[1],
                        help="device counts to sweep (simulated on CPU)")
    parser.add_argument("--active-rows", type=int, default=0,
                        help="also run each K with only this many embedding rows adapted")
    parser.add_argument("--unrolled-max-k", type=int, default=0,
                        help="also run a Python-unrolled inner loop for K up to this (it compiles "
                             "in time growing with K; keep it small)")
    parser.add_argument("--min-steps", type=int, default=3, help="timed steps, at least")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="timed seconds, at least")
    parser.add_argument("--warmup-steps", type=int, default=1,
                        help="untimed steps after compiling (0 is fine for slow, long steps)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds before one configuration's subprocess is abandoned")
    parser.add_argument("--objectives", nargs="+", default=["paper"], choices=OBJECTIVES,
                        help="paper: learned inner lr and linear_mi; fixed_lr: constant inner "
                             "lr, good_base - bad_adapted + bad_adapted_grad")
    parser.add_argument("--meta-gradient-mode", default="auto",
                        choices=("auto", "forward", "reverse"),
                        help="how the learned inner lr's gradient is computed (paper objective): "
                             "forward mode beside the primal (auto) or a second pullback")
    parser.add_argument("--second-order", default="auto",
                        choices=SECOND_ORDER_MODES,
                        help="how each inner gradient is differentiated: Hessian-vector "
                             "products in forward mode, or reverse-over-reverse (auto: the "
                             "former unless the learned lr's forward-mode tangent is in use); see "
                             "mlac.second_order")
    parser.add_argument("--attacker-batching", default="auto",
                        choices=("auto", "vectorised", "sequential"),
                        help="attackers of a meta-batch vmapped or one after the other (auto: "
                             "sequential on CPU); see mlac.attacker_batching")
    parser.add_argument("--compare-torch", action="store_true",
                        help="time JAX and the PyTorch reference interleaved (needs the torch "
                             "extra) instead of the sweep; prints the ratio of medians")
    parser.add_argument("--pairs", type=int, default=3,
                        help="interleaved JAX/PyTorch rounds per configuration (>= 3 to quote)")
    parser.add_argument("--torch-python", default=None,
                        help="interpreter with torch installed (default: this one)")
    parser.add_argument("--torch-device", default="cpu", choices=("cpu", "cuda"),
                        help="device of the PyTorch reference (match JAX's backend)")
    parser.add_argument("--attack-steps", type=int, default=0,
                        help="also time 32 attack runs of this many steps, vectorised vs one "
                             "by one (0 = skip)")
    parser.add_argument("--attack-seq-len", type=int, default=32,
                        help="sequence length of the attack runs' data")
    parser.add_argument("--attack-modes", nargs="+", default=["full"],
                        choices=ATTACK_SWEEP_MODES,
                        help="what the timed attack runs train: full fine-tuning, a linear "
                             "probe (frozen) or LoRA adapters; one sweep per mode")
    parser.add_argument("--settle-seconds", type=float, default=machine.SETTLE_TIMEOUT_S,
                        help="before each run, wait up to this long for the 1-minute load to "
                             "fall to the core count (the previous run raises it; 0 = no wait)")
    parser.add_argument("--skip-peak", action="store_true",
                        help="do not measure the matmul peak (no %% of peak column)")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("seq_len", "batch", "meta_batch", "min_steps", "pairs"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup_steps < 0:
        parser.error("--warmup-steps must be >= 0")
    if min(args.inner_steps) < 0 or min(args.devices) <= 0:
        parser.error("--inner-steps must be >= 0 and --devices positive")
    return args


def workloads(args: argparse.Namespace) -> list[Workload]:
    runs = []
    for objective in args.objectives:
        base = Workload(model=args.model, seq_len=args.seq_len, batch=args.batch,
                        meta_batch=args.meta_batch, objective=objective,
                        meta_gradient_mode=args.meta_gradient_mode,
                        second_order=args.second_order,
                        attacker_batching=args.attacker_batching)
        runs.extend(_sweep(base, args))
    return runs


def _sweep(base: Workload, args: argparse.Namespace) -> list[Workload]:
    runs = []
    for k in args.inner_steps:
        for remat in args.remat:
            for order in args.order:
                for devices in args.devices:
                    runs.append(replace(base, inner_steps=k, remat=remat,
                                        first_order=order == "first", devices=devices))
        first = replace(base, inner_steps=k, remat=args.remat[0],
                        first_order=args.order[0] == "first")
        if args.active_rows:
            runs.append(replace(first, active_rows=args.active_rows))
        if 0 < k <= args.unrolled_max_k:
            runs.append(replace(first, unrolled=True))
    return runs


def _child_env(devices: int) -> dict:
    env = dict(os.environ)
    if devices > 1:
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    return env


def _run_json(command: list[str], env: dict, timeout: float) -> dict:
    """Run a child that writes one JSON object to the file named by its last argument."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        try:
            done = subprocess.run([*command, str(out)], env=env, timeout=timeout,
                                  capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if done.returncode != 0 or not out.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"exit {done.returncode}: {last[:200]}"}
        return json.loads(out.read_text())


def run_jax(workload: Workload, args: argparse.Namespace, env: dict | None = None) -> dict:
    spec = json.dumps({"workload": asdict(workload), "min_steps": args.min_steps,
                       "min_seconds": args.min_seconds, "warmup_steps": args.warmup_steps})
    command = [sys.executable, "-m", "sdm_jax.bench", "--child", spec, "--json"]
    env = {**_child_env(workload.devices), **(env or {})}
    result = _run_json(command, env, args.timeout)
    return {"impl": "jax", "workload": asdict(workload), **result}


def run_torch(workload: Workload, args: argparse.Namespace, torch_python: str) -> dict:
    command = [torch_python, "-m", TORCH_MODULE, "--model", workload.model,
               "--seq-len", str(workload.seq_len), "--batch", str(workload.batch),
               "--inner-steps", str(workload.inner_steps), "--objective", workload.objective,
               "--min-steps", str(args.min_steps), "--min-seconds", str(args.min_seconds),
               "--warmup-steps", str(args.warmup_steps), "--device", args.torch_device,
               "--json"]
    if workload.bad_adapted:
        command.insert(-1, "--bad-adapted")
    result = _run_json(command, dict(os.environ), args.timeout)
    return {"impl": "torch", "workload": asdict(workload), **result}


def torch_interpreter(args: argparse.Namespace) -> str:
    """``--torch-python``, or this interpreter when it can import torch; else a clear exit."""
    if args.torch_python:
        return args.torch_python
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("--compare-torch needs PyTorch: pip install -e '.[torch]' (or pass "
                         "--torch-python PATH of an interpreter that has it)")
    return sys.executable


def compare_with_torch(args: argparse.Namespace) -> list[dict]:
    """Interleaved JAX/PyTorch rounds for every objective and K; the JAX side uses the first
    ``--remat`` policy. JAX children share a compilation cache, so only the first compiles."""
    torch_python = torch_interpreter(args)
    cores = os.cpu_count() or 1
    summaries = []
    with tempfile.TemporaryDirectory() as cache:
        cache_env = {"JAX_COMPILATION_CACHE_DIR": cache,
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        for objective in args.objectives:
            for k in args.inner_steps:
                workload = Workload(model=args.model, seq_len=args.seq_len, batch=args.batch,
                                    inner_steps=k, remat=args.remat[0],
                                    active_rows=args.active_rows, objective=objective,
                                    meta_gradient_mode=args.meta_gradient_mode,
                                    second_order=args.second_order,
                                    attacker_batching=args.attacker_batching)
                rounds = compare.interleave(lambda w=workload: run_jax(w, args, cache_env),
                                            lambda w=workload: run_torch(w, args, torch_python),
                                            args.pairs, cores, args.settle_seconds)
                summaries.append(compare.summarise(asdict(workload), rounds))
                print(compare.markdown(summaries[-1:]).splitlines()[-1], flush=True)
    return summaries


def run_peak(args: argparse.Namespace) -> float | None:
    if args.skip_peak:
        return None
    spec = json.dumps({"peak": True})
    result = _run_json([sys.executable, "-m", "sdm_jax.bench", "--child", spec, "--json"],
                       dict(os.environ), args.timeout)
    return result.get("matmul_peak_flops")


def child_main(spec: dict, out: Path) -> None:
    from sdm_jax.bench.measure import matmul_peak_flops, measure

    if spec.get("peak"):
        result = {"matmul_peak_flops": matmul_peak_flops()}
    elif spec.get("attacks"):
        from sdm_jax.bench.attack_sweep import attack_sweep

        result = attack_sweep(MODEL_SHAPES[spec["model"]], spec["seq_len"], spec["steps"],
                              mode=spec["mode"])
    else:
        result = measure(Workload(**spec["workload"]), spec["min_steps"], spec["min_seconds"],
                         spec["warmup_steps"])
    out.write_text(json.dumps(result))


def glibc_tunables() -> str | None:
    return os.environ.get(host_memory.TUNABLES_VAR)


def allocator_note() -> str:
    """Every child (JAX and PyTorch alike) inherits this process's allocator settings."""
    return f"GLIBC_TUNABLES={glibc_tunables() or '(unset)'} for every run"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        if args.json is None:
            raise SystemExit("--child needs --json PATH")
        child_main(json.loads(args.child), args.json)
        return
    load = os.getloadavg()
    if args.compare_torch:
        summaries = compare_with_torch(args)
        print(f"\nmodel={args.model} seq_len={args.seq_len} batch={args.batch}; {args.pairs} "
              f"interleaved pairs; load average {load[0]:.2f} -> {os.getloadavg()[0]:.2f}; "
              f"{allocator_note()}")
        print(compare.markdown(summaries))
        if args.json:
            write_text_atomic(args.json, json.dumps({"model": args.model, "compare": summaries,
                                                     "glibc_tunables": glibc_tunables()},
                                                    indent=1))
        return
    peak = run_peak(args)
    cores = os.cpu_count() or 1
    results = []
    for workload in workloads(args):
        results.append(compare.timed_run(lambda w=workload: run_jax(w, args), cores,
                                         args.settle_seconds))
        print(markdown_table(results[-1:], peak).splitlines()[-1], flush=True)
    attacks = {}
    for mode in args.attack_modes if args.attack_steps else ():
        spec = json.dumps({"attacks": True, "model": args.model, "seq_len": args.attack_seq_len,
                           "steps": args.attack_steps, "mode": mode})
        attacks[mode] = _run_json([sys.executable, "-m", "sdm_jax.bench", "--child", spec,
                                   "--json"], dict(os.environ), args.timeout)
        print(f"32 attack runs ({mode}): {json.dumps(attacks[mode])}", flush=True)
    summary = {
        "model": args.model,
        "config": asdict(MODEL_SHAPES[args.model]),
        "matmul_peak_flops": peak,
        "load_average_start": load,
        "load_average_end": os.getloadavg(),
        "results": results,
        "attack_sweep": attacks or None,
        "glibc_tunables": glibc_tunables(),
    }
    print()
    print(f"model={args.model} seq_len={args.seq_len} batch={args.batch} "
          f"meta_batch={args.meta_batch}; matmul peak "
          f"{(peak or 0) / 1e9:.1f} GFLOP/s; load average {load[0]:.2f} -> "
          f"{summary['load_average_end'][0]:.2f}; {allocator_note()}")
    print(markdown_table(results, peak))
    busy = sorted({reason for r in results for reason in r["busy"]})
    if busy:
        print("the machine was busy during some runs, wall times are pessimistic: "
              + "; ".join(busy))
    if args.json:
        write_text_atomic(args.json, json.dumps(summary, indent=1))


if __name__ == "__main__":
    host_memory.use_huge_page_malloc()
    main()
