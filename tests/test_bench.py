"""The benchmark CLI end to end on a micro shape (plumbing and report fields, not speed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from sdm_jax.bench.flops import forward_flops, model_config, outer_step_flops
from sdm_jax.models import bert_backbone, init_bert_params
from sdm_jax.models.heads import head_logits, init_head

POSITIVE_FIELDS = (
    "compile_s", "lower_s", "step_s", "outer_steps_per_s", "inner_steps_per_s", "tokens_per_s",
    "flops_per_step", "achieved_flops", "peak_rss_mb", "baseline_rss_mb",
    "unique_tokens_per_step",
)


def test_cli_writes_positive_finite_figures(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    # Unoptimised CPU code generation: this test checks the plumbing, and compiles 3x faster.
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    command = [
        sys.executable, "-m", "sdm_jax.bench", "--model", "test-micro", "--seq-len", "8",
        "--batch", "2", "--inner-steps", "1", "--remat", "none", "--min-steps", "1",
        "--min-seconds", "0", "--warmup-steps", "0", "--skip-peak", "--settle-seconds", "0",
        "--json", str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| jax | 1 | remat=none 2nd-order |" in done.stdout

    summary = json.loads(out.read_text())
    assert summary["model"] == "test-micro"
    (result,) = summary["results"]
    assert "error" not in result, result
    assert result["workload"]["inner_steps"] == 1
    for field in POSITIVE_FIELDS:
        value = result[field]
        assert math.isfinite(value) and value > 0, f"{field} = {value}"
    assert math.isfinite(result["loss"])
    assert result["active_rows_missing"] == 0


@pytest.mark.parametrize("pooling", ["pooler", "mean"])
def test_forward_flop_count_agrees_with_xla_cost_analysis(pooling):
    """The analytic count covers the matmuls and attention; XLA's own count of the compiled
    forward adds the elementwise work (softmax, GELU, layer norm: ~8% here) and nothing else."""
    config = model_config("bert-tiny")
    backbone = bert_backbone(config, pooling=pooling)
    params = init_bert_params(config, jax.random.key(0))
    head = init_head(jax.random.key(1), backbone.feature_dim, 30)
    shape = (16, 128)
    batch = {"input_ids": jnp.ones(shape, jnp.int32), "attention_mask": jnp.ones(shape, jnp.int32),
             "token_type_ids": jnp.zeros(shape, jnp.int32)}
    forward = jax.jit(lambda p, h, b: head_logits(h, backbone.features(p, b)))
    cost = forward.lower(params, head, batch).compile().cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    ours = forward_flops(config, 16, 128, 30, cls_only_last_layer=pooling == "pooler")
    assert 0.85 * xla <= ours <= xla


def test_outer_step_flops_scale_with_k_and_order():
    config = model_config("bert-tiny")
    forward = forward_flops(config, batch=16, seq_len=128, num_outputs=30)
    second = outer_step_flops(config, 16, 128, inner_steps=16, meta_batch=1, first_order=False)
    first = outer_step_flops(config, 16, 128, inner_steps=16, meta_batch=1, first_order=True)
    assert second.forward_equivalents == 5 * (4 * 16 + 3 + 1)
    assert first.forward_equivalents == (4 * 16 + 4) + 2 * (2 * 16 + 6 + 2)
    assert second.total == pytest.approx(forward * second.forward_equivalents)


def test_unknown_shape_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown model shape 'bert-huge'"):
        model_config("bert-huge")


def test_compare_torch_cli_reports_each_objective(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "compare.json"
    command = [
        sys.executable, "-m", "sdm_jax.bench", "--compare-torch", "--model", "test-micro",
        "--seq-len", "8", "--batch", "2", "--inner-steps", "1", "--remat", "none",
        "--objectives", "paper", "fixed_lr", "--pairs", "1", "--min-steps", "1",
        "--min-seconds", "0", "--warmup-steps", "0", "--settle-seconds", "0", "--json", str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summaries = json.loads(out.read_text())["compare"]
    assert [s["workload"]["objective"] for s in summaries] == ["paper", "fixed_lr"]
    for summary in summaries:
        assert len(summary["pairs"]) == 1 and summary["jax_step_s"] > 0
        assert summary["ratio"] is not None or summary["withheld"]
    assert "| paper | 1 |" in done.stdout and "| fixed_lr | 1 |" in done.stdout


def test_op_classes_by_hlo_name():
    from sdm_jax.bench.profile import op_class

    assert op_class("ynn_fusion.12") == "dot"
    assert op_class("copy_bitcast_fusion.199") == "copy/transpose"
    assert op_class("dynamic-update-slice_fusion.3") == "dynamic-update-slice"
    assert op_class("multiply_add_fusion.141") == "elementwise/other"
    assert op_class("ThunkExecutor::Execute") is None


def test_profile_of_a_micro_step_accounts_for_its_ops():
    from sdm_jax.bench.profile import markdown, profile_step
    from sdm_jax.bench.workload import Workload

    result = profile_step(Workload(model="test-micro", seq_len=8, batch=2, inner_steps=2))
    assert result["op_s"] > 0 and result["threads"] >= 1
    assert result["classes"]["dot"] > 0
    assert sum(result["classes"].values()) == pytest.approx(result["op_s"])
    assert "cores busy" in markdown(result)
