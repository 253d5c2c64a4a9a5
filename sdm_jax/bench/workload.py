"""The measured program: the library's MLAC outer step on random weights and token batches.

The step is ``sdm_jax.blocking.make_outer_step`` exactly as training runs it: a meta-batch of
simulated attackers (``run_attacker``: ``lax.scan`` under the chosen remat policy), the paper's
default objective ``good_base - linear_mi + bad_adapted_grad`` (optionally ``- bad_adapted``),
the model's meta-gradient and the learned inner learning rate's gradient (a second pullback of
the same forward pass), both Adam updates, state donated. ``sdm_jax/bench/torch_reference.py``
computes the same thing in PyTorch.

Token ids follow a Zipf law over the vocabulary (rank r has probability ∝ 1/r^1.1, ranks mapped
to ids from 1000 up, so no id is padding or a special token), which gives batches the few
thousand distinct tokens real text has rather than the near-full vocabulary uniform draws touch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from sdm_jax import parallel
from sdm_jax.bench.flops import NUM_BAD, NUM_GOOD, model_config
from sdm_jax.blocking import MLACSettings, TrainState, init_train_state, make_outer_step
from sdm_jax.blocking import attacker as attacker_module
from sdm_jax.models import BertConfig, bert_backbone, init_bert_params

ZIPF_EXPONENT = 1.1
OBJECTIVES = ("paper", "fixed_lr")
FIRST_WORD_ID = 1000


@dataclass(frozen=True)
class Workload:
    """One benchmark configuration (everything that changes the compiled program)."""

    model: str = "bert-tiny"
    seq_len: int = 128
    batch: int = 16
    inner_steps: int = 16
    meta_batch: int = 1
    remat: str = "none"
    first_order: bool = False
    unrolled: bool = False
    active_rows: int = 0
    devices: int = 1
    bad_adapted: bool = False
    objective: str = "paper"
    meta_gradient_mode: str = "auto"
    second_order: str = "auto"
    attacker_batching: str = "auto"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")

    def settings(self) -> MLACSettings:
        """``paper``: the reference's objective with the learned inner lr (its gradient by
        ``meta_gradient_mode``);
        ``fixed_lr``: ``good_base - bad_adapted + bad_adapted_grad`` at a constant lr."""
        fixed = self.objective == "fixed_lr"
        lr = MLACSettings.inner_lr_init
        return MLACSettings(
            inner_steps=self.inner_steps,
            batch_size_choices=(self.batch,),
            remat=self.remat,
            first_order=self.first_order,
            active_rows=self.active_rows,
            meta_batch_size=self.meta_batch,
            learn_inner_lr=not fixed,
            inner_lr_sample_min=lr if fixed else MLACSettings.inner_lr_sample_min,
            inner_lr_sample_max=lr if fixed else MLACSettings.inner_lr_sample_max,
            l_linear_mi=0.0 if fixed else MLACSettings.l_linear_mi,
            l_bad_adapted=1.0 if self.bad_adapted or fixed else 0.0,
            meta_gradient_mode=self.meta_gradient_mode,
            second_order=self.second_order,
            attacker_batching=self.attacker_batching,
        )

    @property
    def config(self) -> BertConfig:
        return model_config(self.model)


def zipf_token_ids(rng: np.random.Generator, shape: tuple[int, ...], vocab: int) -> np.ndarray:
    first = min(FIRST_WORD_ID, vocab // 2)  # tiny test vocabularies keep half their rows
    ranks = np.arange(1, vocab - first + 1, dtype=np.float64)
    probs = ranks**-ZIPF_EXPONENT
    ids = rng.choice(len(ranks), size=shape, p=probs / probs.sum()) + first
    return ids.astype(np.int32)


def make_meta_batch(workload: Workload, seed: int) -> dict:
    """``{"inner": [M, K, B, ...], "outer": [B, ...]}`` numpy arrays (one shared outer batch)."""
    rng = np.random.default_rng(seed)
    cfg = workload.config
    steps = max(workload.inner_steps, 1)

    def batch(leading: tuple[int, ...]) -> dict:
        shape = (*leading, workload.batch, workload.seq_len)
        ids = zipf_token_ids(rng, shape, cfg.vocab_size)
        return {
            "input_ids": ids,
            "attention_mask": np.ones(shape, np.int32),
            "token_type_ids": np.zeros(shape, np.int32),
            "good": rng.integers(0, NUM_GOOD, shape[:-1]).astype(np.int32),
            "bad": rng.integers(0, NUM_BAD, shape[:-1]).astype(np.int32),
            "weight": np.ones(shape[:-1], np.float32),
        }

    inner = batch((workload.meta_batch, steps))
    if workload.inner_steps == 0:
        inner = {k: v[:, :0] for k, v in inner.items()}
    return {"inner": inner, "outer": batch(())}


def initial_state(workload: Workload, seed: int) -> TrainState:
    config = workload.config
    backbone_params = init_bert_params(config, jax.random.key(seed))
    return init_train_state(bert_backbone(config), backbone_params, NUM_GOOD, NUM_BAD,
                            workload.settings(), seed)


def build_outer_step(workload: Workload):
    """The library's jitted outer step, with a ``data`` mesh over ``workload.devices``."""
    mesh = None
    if workload.devices > 1:
        devices = jax.devices()
        if workload.devices > len(devices):
            raise ValueError(f"workload asks for {workload.devices} devices, "
                             f"{len(devices)} visible")
        mesh = parallel.make_mesh(devices[: workload.devices])
    step = make_outer_step(bert_backbone(workload.config), workload.settings(), NUM_GOOD,
                           NUM_BAD, mesh)
    return step, mesh


def _python_unroll(body, carry, xs, length: int, remat: str):
    """A Python loop in place of ``lax.scan``: the program grows with K (compile time too).
    No rematerialisation: the variant measures what scan buys, not a remat policy."""
    del remat
    outputs = []
    for index in range(length):
        carry, out = body(carry, jax.tree.map(lambda x, i=index: x[i], xs))
        outputs.append(out)
    return carry, jax.tree.map(lambda *ys: jnp.stack(ys), *outputs)


@contextlib.contextmanager
def inner_loop_style(unrolled: bool) -> Iterator[None]:
    """Trace the inner loop Python-unrolled (bench-only variant) instead of with ``lax.scan``.

    ``run_attacker`` looks its ``unroll`` helper up at call time, so swapping the module
    attribute while tracing changes the program without touching the library.
    """
    if not unrolled:
        yield
        return
    original = attacker_module.unroll
    attacker_module.unroll = _python_unroll
    try:
        yield
    finally:
        attacker_module.unroll = original
