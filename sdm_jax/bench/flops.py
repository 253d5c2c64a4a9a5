"""Model shapes the benchmark knows and an analytic FLOP count of one MLAC outer step.

Counts are *model* FLOPs (multiply-add = 2 FLOPs) of matmuls and attention only: layer norms,
softmax, GELU, the embedding gather, the optimizer arithmetic and the tiny linear read-out solver
are left out (each is O(tokens·hidden), under 2% of the total at these shapes), and work that
rematerialisation repeats is not counted, so the figure is comparable across checkpoint policies.

One forward pass over ``batch`` sequences of ``seq_len`` tokens::

    F = layers · (2·tokens·(4·H² + 2·H·I) + 4·batch·seq_len²·H) + 2·batch·H² + 2·batch·H·C

(Q, K, V and output projections, the two FFN matrices; scores and context of attention; pooler;
head). With pooler pooling the last layer runs for ``[CLS]`` alone (:func:`sdm_jax.models.
bert_apply`'s ``cls_only``): every token's K and V projections, but the query, attention, output
and FFN of one row per sequence. A backward pass costs ≈ 2F (gradients for inputs and weights).

The meta-gradient. Per attacker, the primal computation of the outer loss is, per inner step,
one outer-batch forward (F) plus one inner forward and backward (3F); after the last step one
forward and backward on the outer batch for the gradient-norm term (3F); plus one forward of the
unadapted model for ``good_base`` (F)::

    primal P = M·(4K + 3)·F + F

One reverse pass (a pullback) costs about 2P in second order: it runs back through every
forward and through every inner backward pass (the second-order part). In first order the inner
backward passes are constants, so per attacker only the K outer forwards (2F each) and the final
forward+backward (6F) are reversed: ``R = M·(2K + 6)·F + 2F``. When the attacker has
meta-parameters (the default learned inner lr) the step takes two derivative passes: the
model's gradient (a pullback) and the meta-parameters' (a second pullback, or, for the lr alone,
its forward-mode tangent beside the primal: each matmul's tangent is two matmuls, so about as
many FLOPs as a pullback, though it stores no residuals). So::

    second order, learned lr: P + 2·2P = 5P        first order, learned lr: P + 2R

With ``second_order: forward_over_reverse`` each pullback also recomputes every inner gradient
(3F per inner step) before its forward-mode tangent; like any rematerialisation that is left out.
"2× the primal per reverse pass" is the usual estimate; differentiating a backward pass costs
between 2× and 3× that pass, so achieved FLOP/s may be off by up to ~15% either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdm_jax.models import BertConfig

NUM_GOOD = 28  # profession classes of Bias in Bios
NUM_BAD = 2  # gender classes

MODEL_SHAPES = {
    "bert-tiny": BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=2,
                            intermediate_size=512),
    "minilm": BertConfig(num_hidden_layers=6, hidden_size=384, num_attention_heads=12,
                         intermediate_size=1536),
    "bert-base": BertConfig(),
    # A shape small enough for the test suite: the benchmark's plumbing, not its numbers.
    "test-micro": BertConfig(vocab_size=512, num_hidden_layers=1, hidden_size=16,
                             num_attention_heads=2, intermediate_size=32,
                             max_position_embeddings=64),
}


def model_config(name: str) -> BertConfig:
    if name not in MODEL_SHAPES:
        raise ValueError(f"unknown model shape {name!r}; choose one of {sorted(MODEL_SHAPES)}")
    return MODEL_SHAPES[name]


def forward_flops(config: BertConfig, batch: int, seq_len: int, num_outputs: int,
                  cls_only_last_layer: bool = True) -> float:
    """Matmul and attention FLOPs of one forward pass (pooler and head included)."""
    hidden, inner = config.hidden_size, config.intermediate_size

    def layer(query_rows: int) -> int:
        keys_values = 2 * batch * seq_len * 2 * hidden * hidden
        rows = batch * query_rows
        queries = 2 * rows * (2 * hidden * hidden + 2 * hidden * inner)
        return keys_values + queries + 4 * rows * seq_len * hidden

    last = layer(1 if cls_only_last_layer else seq_len)
    head = 2 * batch * hidden * hidden + 2 * batch * hidden * num_outputs
    return float((config.num_hidden_layers - 1) * layer(seq_len) + last + head)


@dataclass(frozen=True)
class StepFlops:
    forward: float  # one forward pass over one batch
    forward_equivalents: float  # outer-step cost in units of ``forward``
    total: float  # model FLOPs of one outer step


def outer_step_flops(
    config: BertConfig, batch: int, seq_len: int, inner_steps: int, meta_batch: int,
    first_order: bool, pullbacks: int = 2,
) -> StepFlops:
    forward = forward_flops(config, batch, seq_len, NUM_GOOD + NUM_BAD)
    primal = meta_batch * (4 * inner_steps + 3) + 1
    if first_order:
        reverse = meta_batch * (2 * inner_steps + 6) + 2
    else:
        reverse = 2 * primal
    equivalents = float(primal + pullbacks * reverse)
    return StepFlops(forward=forward, forward_equivalents=equivalents, total=forward * equivalents)
