"""The MLAC meta-gradient written the idiomatic PyTorch way, as the benchmark's reference.

Needs the ``torch`` extra (``pip install -e '.[torch]'``). It computes what
``sdm_jax.bench.workload`` computes: a Hugging Face ``BertModel`` with random weights of the same
shape (dropout off, eager attention: PyTorch's fused CPU attention kernels have no double
backward), a fresh ``n_bad``-output attacker head, K steps of Adam at the inner rate written
in-graph (``eps_root`` inside the square root, as optax's) with the inner gradient clipped to
global norm 100 and kept differentiable with ``torch.autograd.grad(create_graph=True)``,
parameters threaded through ``torch.func.functional_call``. Two objectives:

- ``paper`` (default): ``good_base - linear_mi + bad_adapted_grad`` (optionally
  ``- bad_adapted``) with the learned raw inner lr: the objective's gradient for the model and
  the adapted gender CE's gradient for the lr (two backward passes over one graph, as the
  library's two pullbacks), then Adam on each (the model's clipped to norm 10, the lr's clipped
  to 10 and clamped into its range, as the reference's ``train.py``);
- ``fixed_lr``: ``good_base - bad_adapted + bad_adapted_grad`` at a constant inner lr: one
  backward pass, Adam on the model.

The bounded linear read-out ``W*`` of each logit set is solved without gradient (FISTA, the same
iterations as ``sdm_jax.blocking.losses``) and held constant, which is exact by Danskin's theorem.

Run alone: ``python -m sdm_jax.bench.torch_reference --inner-steps 16 --json out.json`` (as a
module: run as a script, its folder would shadow the standard ``profile`` module).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call
from transformers import BertConfig as HFBertConfig
from transformers import BertModel

from sdm_jax.bench.flops import NUM_BAD, NUM_GOOD, model_config, outer_step_flops
from sdm_jax.bench.workload import OBJECTIVES, Workload, make_meta_batch
from sdm_jax.models import BertConfig

DEFAULTS = Workload().settings()
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
NORM_TINY = 1e-12


def hf_bert(config: BertConfig, dtype: torch.dtype, seed: int = 0) -> BertModel:
    """A ``BertModel`` of the same shape with random weights, no dropout, eager attention."""
    torch.manual_seed(seed)
    hf_config = HFBertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, layer_norm_eps=config.layer_norm_eps,
        pad_token_id=config.pad_token_id, hidden_act=config.hidden_act,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    return BertModel(hf_config).to(dtype).eval()


def to_torch_batch(batch: dict, device: torch.device | str = "cpu") -> dict:
    return {key: (torch.from_numpy(np.asarray(value)).long() if value.dtype.kind == "i"
                  else torch.from_numpy(np.asarray(value))).to(device)
            for key, value in batch.items()}


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    per_example = F.cross_entropy(logits, labels, reduction="none")
    weight = weight.to(logits.dtype)
    return (per_example * weight).sum() / weight.sum().clamp_min(1e-9)


def solve_linear_readout(logits, labels, weight, iterations: int = DEFAULTS.linear_mi_iterations):
    """``argmin over W in [-1,1]^{C×C} of CE(logits @ W)`` by FISTA, without gradient."""
    with torch.no_grad():
        classes = logits.shape[-1]
        weight = weight.to(logits.dtype)
        total = weight.sum().clamp_min(1e-9)
        onehot = F.one_hot(labels, classes).to(logits.dtype)
        lipschitz = 0.5 * (logits.square().sum(-1) * weight).sum() / total + 1e-6
        step = 1.0 / lipschitz
        w = previous = torch.eye(classes, dtype=logits.dtype, device=logits.device)
        t = torch.ones((), dtype=logits.dtype, device=logits.device)
        for _ in range(iterations):
            t_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
            probe = w + ((t - 1.0) / t_next) * (w - previous)
            residual = (torch.softmax(logits @ probe, -1) - onehot) * (weight / total)[:, None]
            previous, w = w, (probe - step * (logits.T @ residual)).clamp(-1.0, 1.0)
            t = t_next
        return w


def meta_loss(model, params, head, attacker_head, inner_lr, inner, outer, inner_steps: int,
              bad_adapted: bool = False, linear_mi: bool = True,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(model_loss, attacker_loss)`` of one attacker: the signed blocking objective and the
    adapted gender CE averaged over the K+1 logit sets. Differentiable in ``params``, ``head``,
    ``inner_lr`` and ``attacker_head`` (when it requires grad: a learned head init).

    ``inner`` holds ``[K, B, ...]`` tensors; ``outer`` one ``[B, ...]`` batch.
    """

    def features(weights, batch):
        return functional_call(model, weights, (), {
            "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "token_type_ids": batch["token_type_ids"],
        }).pooler_output

    def bad_loss(weights, kernel, batch):
        return weighted_ce(features(weights, batch) @ kernel, batch["bad"], batch["weight"])

    def grad_norm(grads):
        return torch.sqrt(sum(g.square().sum() for g in grads) + NORM_TINY)

    learning_rate = inner_lr
    names = list(params)
    if not attacker_head.requires_grad:  # a fresh head: a leaf of the inner loop
        attacker_head = attacker_head.detach().requires_grad_(True)
    phi = [params[name] for name in names] + [attacker_head]
    first_moment = [torch.zeros_like(p) for p in phi]
    second_moment = [torch.zeros_like(p) for p in phi]
    logit_sets, norms = [], []
    for step in range(inner_steps):
        weights, kernel = dict(zip(names, phi[:-1], strict=True)), phi[-1]
        logit_sets.append(features(weights, outer) @ kernel)
        batch = {key: value[step] for key, value in inner.items()}
        grads = torch.autograd.grad(bad_loss(weights, kernel, batch), phi, create_graph=True)
        norm = grad_norm(grads)
        norms.append(norm)
        scale = torch.clamp(DEFAULTS.inner_grad_clip / norm, max=1.0)
        count = step + 1
        updated = []
        for index, (p, g) in enumerate(zip(phi, grads, strict=True)):
            g = g * scale
            first_moment[index] = ADAM_B1 * first_moment[index] + (1 - ADAM_B1) * g
            second_moment[index] = ADAM_B2 * second_moment[index] + (1 - ADAM_B2) * g * g
            m_hat = first_moment[index] / (1 - ADAM_B1**count)
            v_hat = second_moment[index] / (1 - ADAM_B2**count)
            root = torch.sqrt(v_hat + DEFAULTS.adam_eps_root)
            updated.append(p - learning_rate * m_hat / (root + ADAM_EPS))
        phi = updated

    weights, kernel = dict(zip(names, phi[:-1], strict=True)), phi[-1]
    final_logits = features(weights, outer) @ kernel
    logit_sets.append(final_logits)
    final_loss = weighted_ce(final_logits, outer["bad"], outer["weight"])
    norms.append(grad_norm(torch.autograd.grad(final_loss, phi, create_graph=True)))

    labels, weight = outer["bad"], outer["weight"]
    adapted = torch.stack([weighted_ce(z, labels, weight) for z in logit_sets]).mean()
    good_logits = (features(params, outer) @ head)[:, :NUM_GOOD]
    total = weighted_ce(good_logits, outer["good"], weight) + torch.stack(norms).mean()
    if linear_mi:
        readout = [weighted_ce(z @ solve_linear_readout(z.detach(), labels, weight), labels,
                               weight) for z in logit_sets]
        total = total - torch.stack(readout).mean()
    if bad_adapted:
        total = total - adapted
    return total, adapted


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(workload: Workload, min_steps: int, min_seconds: float, warmup_steps: int = 1,
              seed: int = 0, device: str = "cpu") -> dict:
    """Time the PyTorch outer step (meta-gradient, clip, Adam) on the benchmark's batches, on
    ``device`` (``cpu`` or ``cuda``; a GPU step is timed after synchronising)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked, but this torch build sees no CUDA device")
    config = workload.config
    model = hf_bert(config, torch.float32, seed).to(device)
    params = {name: p.detach().clone().requires_grad_(True)
              for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(config.hidden_size)

    def fresh_head(outputs):
        draw = (torch.rand(config.hidden_size, outputs, generator=generator) * 2 - 1) * bound
        return draw.to(device)

    head = fresh_head(NUM_GOOD + NUM_BAD).requires_grad_(True)
    meta_batch = make_meta_batch(workload, seed)
    inner = to_torch_batch({key: value[0] for key, value in meta_batch["inner"].items()}, device)
    outer = to_torch_batch(meta_batch["outer"], device)
    settings = workload.settings()
    learned = settings.learn_inner_lr
    inner_lr = torch.tensor(DEFAULTS.inner_lr_init, requires_grad=learned, device=device)
    trained = [*params.values(), head]
    optimizer = torch.optim.Adam(trained, lr=DEFAULTS.outer_lr)
    meta_optimizer = torch.optim.Adam([inner_lr], lr=DEFAULTS.meta_lr) if learned else None

    def step():
        model_loss, attacker_loss = meta_loss(
            model, params, head, fresh_head(NUM_BAD), inner_lr, inner, outer,
            workload.inner_steps, settings.enabled("bad_adapted"), settings.enabled("linear_mi"),
        )
        grads = torch.autograd.grad(model_loss, trained, retain_graph=learned)
        for p, g in zip(trained, grads, strict=True):
            p.grad = g
        torch.nn.utils.clip_grad_norm_(trained, DEFAULTS.outer_grad_clip)
        optimizer.step()
        if learned:
            (inner_lr.grad,) = torch.autograd.grad(attacker_loss, [inner_lr])
            torch.nn.utils.clip_grad_norm_([inner_lr], DEFAULTS.meta_grad_clip)
            meta_optimizer.step()
            with torch.no_grad():
                inner_lr.clamp_(DEFAULTS.inner_lr_min, DEFAULTS.inner_lr_max)
        return float(model_loss.detach())

    for _ in range(warmup_steps):
        step()
    times, cpu_times = [], []
    while len(times) < min_steps or sum(times) < min_seconds:
        begin, begin_cpu = time.perf_counter(), time.process_time()
        loss = step()
        _synchronize(device)
        times.append(time.perf_counter() - begin)
        cpu_times.append(time.process_time() - begin_cpu)
    step_time = statistics.median(times)
    flops = outer_step_flops(config, workload.batch, workload.seq_len, workload.inner_steps, 1,
                             first_order=False, pullbacks=2 if learned else 1)
    tokens = (workload.inner_steps + 1) * workload.batch * workload.seq_len
    return {
        "impl": "torch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "step_s": step_time,
        "step_s_all": times,
        "step_cpu_s": statistics.median(cpu_times),
        "outer_steps_per_s": 1.0 / step_time,
        "inner_steps_per_s": workload.inner_steps / step_time,
        "tokens_per_s": tokens / step_time,
        "flops_per_step": flops.total,
        "achieved_flops": flops.total / step_time,
        "peak_rss_mb": peak_rss_mb(),
        "device": str(device),
        "peak_device_mb": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda" else None,
        "compile_s": None,
        "loss": loss,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-tiny")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--inner-steps", type=int, default=16)
    parser.add_argument("--bad-adapted", action="store_true", help="add the bad_adapted term")
    parser.add_argument("--objective", default="paper", choices=OBJECTIVES,
                        help="paper: learned lr, linear_mi; fixed_lr: constant lr, bad_adapted")
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", type=Path, required=True, help="write the result here")
    args = parser.parse_args(argv)
    model_config(args.model)  # fail early with the list of shapes
    workload = Workload(model=args.model, seq_len=args.seq_len, batch=args.batch,
                        inner_steps=args.inner_steps, bad_adapted=args.bad_adapted,
                        objective=args.objective)
    result = benchmark(workload, args.min_steps, args.min_seconds, args.warmup_steps,
                       device=args.device)
    args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
