"""Mesh helpers, and the sharded outer step on 4 simulated CPU devices against one device."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from sdm_jax import parallel

SHARDED_RUN = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from sdm_jax import parallel
    from sdm_jax.blocking import MLACSettings, init_train_state, make_meta_gradient, make_outer_step
    from sdm_jax.models.heads import mlp_backbone

    assert jax.device_count() == 4, jax.devices()
    backbone = mlp_backbone(input_dim=5, width=6, depth=2)
    settings = MLACSettings(inner_steps=2, meta_batch_size=4, learn_head_init=HEAD_INIT,
                            frozen_base_prob=0.5)
    rng = np.random.default_rng(0)

    def batch(lead, size=6):
        return {"x": rng.normal(size=lead + (size, 5)).astype(np.float32),
                "good": rng.integers(0, 3, lead + (size,)).astype(np.int32),
                "bad": rng.integers(0, 2, lead + (size,)).astype(np.int32),
                "weight": np.ones(lead + (size,), np.float32)}

    host_batch = {"inner": batch((4, 2)), "outer": batch(())}
    state = init_train_state(backbone, backbone.init(jax.random.PRNGKey(0)), 3, 2, settings, 0)
    args = (state.params, state.meta_params, state.original_backbone)
    key = jax.random.fold_in(state.rng, 0)  # the key the outer step draws at step 0

    one = jax.jit(make_meta_gradient(backbone, settings, 3, 2))(*args, host_batch, key)
    mesh = parallel.make_mesh()
    assert mesh.axis_names == (parallel.DATA_AXIS,) and mesh.shape[parallel.DATA_AXIS] == 4
    sharded_batch = parallel.put_meta_batch(host_batch, mesh, settings.shared_outer_batch)
    inner, outer = sharded_batch["inner"]["x"], sharded_batch["outer"]["x"]
    # The 4 attackers' batches split one per device; the shared outer batch on every device.
    assert sorted(s.data.shape[0] for s in inner.addressable_shards) == [1, 1, 1, 1]
    assert len({s.device for s in inner.addressable_shards}) == 4
    assert outer.sharding.is_fully_replicated and len(outer.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(inner), host_batch["inner"]["x"])
    sharded_fn = jax.jit(make_meta_gradient(backbone, settings, 3, 2,
                                            parallel.data_sharded(mesh)))
    four = sharded_fn(*args, sharded_batch, key)
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), one, four)

    # The sharded jitted step (replicated state, donated) against the one-device gradients.
    step_four = make_outer_step(backbone, settings, 3, 2, mesh=mesh)
    new_state, metrics = step_four(state, sharded_batch)
    assert new_state.params["head"]["kernel"].sharding.is_fully_replicated
    print("RESULT", json.dumps({
        "grad_diff": max(jax.tree.leaves(diffs[:2])),
        "metric_diff": max(jax.tree.leaves(diffs[2])),
        "loss_one": float(one[2]["loss/total"]),
        "loss_step": float(metrics["loss/total"]),
        "grad_norm_one": float(jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(one[0])))),
        "grad_norm_step": float(metrics["grad_norm"]),
        "grad_scale": max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(one[:2])),
    }))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("head_init", [True, False], ids=["reverse_mode", "forward_mode"])
def test_outer_step_on_four_simulated_devices_matches_one_device(head_init):
    """With a learned head init the meta-gradient is a second pullback; with the lr alone, its
    forward-mode tangent."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    script = f"HEAD_INIT = {head_init}\n" + SHARDED_RUN
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["grad_scale"] > 1e-3  # the compared gradients are not trivially zero
    assert result["grad_diff"] <= 1e-5
    assert result["metric_diff"] <= 1e-5
    assert result["loss_step"] == pytest.approx(result["loss_one"], abs=1e-5)
    assert result["grad_norm_step"] == pytest.approx(result["grad_norm_one"], rel=1e-5)


def test_a_mesh_needs_devices():
    with pytest.raises(ValueError, match="zero devices"):
        parallel.make_mesh([])


def test_distributed_start_only_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda: calls.append(1))
    monkeypatch.delenv(parallel.DISTRIBUTED_ENV, raising=False)
    assert parallel.maybe_initialize_distributed() is False
    monkeypatch.setenv(parallel.DISTRIBUTED_ENV, "1")
    assert parallel.maybe_initialize_distributed() is True
    assert parallel.maybe_initialize_distributed(False) is False
    assert calls == [1]
