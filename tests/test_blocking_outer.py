"""The outer step: state updates, recompilation, objective wiring and the exact meta-gradient."""

import math
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sdm_jax.blocking import (
    AttackerDraw,
    MLACSettings,
    init_train_state,
    make_meta_gradient,
    make_meta_objective,
    make_outer_step,
    run_attacker,
)
from sdm_jax.blocking.attacker import learned_inner_lr
from sdm_jax.blocking.losses import inverse_cross_entropy, linear_mi
from sdm_jax.blocking.outer import (
    _project_meta_params,
    check_meta_batch,
    init_meta_params,
    meta_optimizer,
)
from sdm_jax.fine_tune import cross_entropy, global_norm
from sdm_jax.models.backbone import Backbone
from sdm_jax.models.heads import mlp_backbone

NUM_GOOD, NUM_BAD = 3, 2
MLP = mlp_backbone(input_dim=5, width=6, depth=2)


def tanh_backbone(input_dim=5, width=4) -> Backbone:
    """Smooth everywhere, so central differences are exact to float64 precision."""

    def init(key):
        first, second = jax.random.split(key)
        return {"w1": 0.7 * jax.random.normal(first, (input_dim, width)),
                "w2": 0.7 * jax.random.normal(second, (width, width))}

    def features(params, batch):
        return jnp.tanh(jnp.tanh(batch["x"] @ params["w1"]) @ params["w2"])

    return Backbone("tanh", features, init, width, ("x",), adapter_targets=(("dense", r"w\d$"),))


def batch(seed, lead, size=6, dtype=np.float32):
    rng = np.random.default_rng(seed)
    weight = np.ones(lead + (size,), dtype)
    weight[..., -1] = 0.0
    return {"x": rng.normal(size=lead + (size, 5)).astype(dtype),
            "good": rng.integers(0, NUM_GOOD, lead + (size,)).astype(np.int32),
            "bad": rng.integers(0, NUM_BAD, lead + (size,)).astype(np.int32),
            "weight": weight}


def meta_batch(settings, seed=0, dtype=np.float32):
    lead = (settings.meta_batch_size, settings.inner_steps)
    outer_lead = () if settings.shared_outer_batch else (settings.meta_batch_size,)
    return {"inner": batch(seed, lead, dtype=dtype),
            "outer": batch(seed + 1, outer_lead, dtype=dtype)}


STEP_SETTINGS = MLACSettings(inner_steps=2, meta_batch_size=2, learn_head_init=True,
                             outer_lr=1e-2, meta_lr=1e-2)


@pytest.fixture(scope="module")
def three_steps():
    state = init_train_state(MLP, MLP.init(jax.random.PRNGKey(0)), NUM_GOOD, NUM_BAD,
                             STEP_SETTINGS, seed=0)
    first_params = jax.tree.map(np.asarray, state.params)
    first_meta = jax.tree.map(np.asarray, state.meta_params)
    step = make_outer_step(MLP, STEP_SETTINGS, NUM_GOOD, NUM_BAD)
    history = []
    for i in range(3):
        state, metrics = step(state, meta_batch(STEP_SETTINGS, seed=i))
        history.append(jax.device_get(metrics))
    return step, state, history, first_params, first_meta


def test_outer_step_compiles_once_and_advances_the_state(three_steps):
    step, state, history, first_params, first_meta = three_steps
    assert step.trace_count == 1
    assert int(state.step) == 3
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), first_params, state.params)
    assert all(jax.tree.leaves(moved))
    new_head = state.meta_params["head_init"]["kernel"]
    assert not np.allclose(first_meta["head_init"]["kernel"], new_head)
    assert float(state.meta_params["inner_lr"]) != pytest.approx(first_meta["inner_lr"])
    for metrics in history:
        assert all(np.isfinite(v) for v in metrics.values())
        assert 1e-6 <= metrics["meta/inner_lr"] <= 1e-2


def test_logged_total_is_the_signed_weighted_sum_of_logged_terms(three_steps):
    metrics = three_steps[2][-1]
    s = STEP_SETTINGS
    expected = (s.l_good_base * metrics["term/good_base"]
                - s.l_linear_mi * metrics["term/linear_mi"]
                + s.l_bad_adapted_grad * metrics["term/bad_adapted_grad"])
    assert metrics["loss/total"] == pytest.approx(expected, rel=1e-5)
    assert metrics["loss/attacker"] == pytest.approx(metrics["term/bad_adapted"])


def test_same_seed_same_numbers(three_steps):
    state = init_train_state(MLP, MLP.init(jax.random.PRNGKey(0)), NUM_GOOD, NUM_BAD,
                             STEP_SETTINGS, seed=0)
    _, metrics = three_steps[0](state, meta_batch(STEP_SETTINGS, seed=0))
    assert float(metrics["loss/total"]) == three_steps[2][0]["loss/total"]


def test_meta_lr_is_projected_into_its_range():
    settings = MLACSettings()
    high = _project_meta_params({"inner_lr": jnp.asarray(0.5)}, settings)["inner_lr"]
    low = _project_meta_params({"inner_lr": jnp.asarray(-1.0)}, settings)["inner_lr"]
    assert float(high) == pytest.approx(1e-2, rel=1e-6)
    assert float(low) == pytest.approx(1e-6, rel=1e-6)
    log_space = replace(settings, inner_lr_space="log")
    high = _project_meta_params({"log_lr": jnp.asarray(0.0)}, log_space)["log_lr"]
    low = _project_meta_params({"log_lr": jnp.asarray(-30.0)}, log_space)["log_lr"]
    assert float(jnp.exp(high)) == pytest.approx(1e-2, rel=1e-5)
    assert float(jnp.exp(low)) == pytest.approx(1e-6, rel=1e-5)


def _reference_raw_lr_trajectory(gradients, settings):
    """The reference's rule written out: Adam (torch defaults) on the raw lr with its gradient
    clipped to norm ``meta_grad_clip``, then clamped into ``[inner_lr_min, inner_lr_max]``."""
    lr, m, v, out = settings.inner_lr_init, 0.0, 0.0, []
    for t, g in enumerate(gradients, start=1):
        g = g * min(1.0, settings.meta_grad_clip / abs(g))
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        step = settings.meta_lr * (m / (1 - 0.9**t)) / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
        lr = min(max(lr - step, settings.inner_lr_min), settings.inner_lr_max)
        out.append(lr)
    return np.array(out)


def _learned_lr_trajectory(gradients, settings):
    meta = init_meta_params(jax.random.PRNGKey(0), 4, NUM_BAD, settings)
    optimizer = meta_optimizer(settings)
    opt_state, out = optimizer.init(meta), []
    for g in gradients:
        grads = jax.tree.map(lambda x, g=g: jnp.full_like(x, g), meta)
        updates, opt_state = optimizer.update(grads, opt_state, meta)
        meta = _project_meta_params(optax.apply_updates(meta, updates), settings)
        out.append(float(learned_inner_lr(meta)))
    return np.array(out)


def test_learned_inner_lr_moves_as_the_reference_raw_rule():
    settings = MLACSettings()
    # The attacker loss falls as the lr grows for 150 steps, then rises for 50 (a sign flip).
    gradients = [-0.7] * 150 + [2e4] * 50
    ours = _learned_lr_trajectory(gradients, settings)
    np.testing.assert_allclose(ours, _reference_raw_lr_trajectory(gradients, settings),
                               rtol=1e-4, atol=1e-7)  # float32 round-off
    assert ours[0] == pytest.approx(3e-4 + 1e-4, rel=1e-4)  # an Adam step moves it by ~meta_lr
    assert ours[90] < 9.5e-3 and ours[98] == pytest.approx(1e-2, rel=1e-6)  # ceiling in ~97 steps
    assert ours[-1] < ours[149]  # and it comes back down once the sign flips


def test_log_space_lr_climbs_about_as_fast_with_its_own_meta_lr():
    log_space = replace(MLACSettings(), inner_lr_space="log")
    climb = _learned_lr_trajectory([-0.7] * 200, log_space)
    assert 80 <= int(np.argmax(climb >= 1e-2 * (1 - 1e-5))) <= 150
    too_slow = _learned_lr_trajectory([-0.7] * 200, replace(log_space, log_lr_meta_lr=1e-4))
    assert too_slow[-1] < 3e-4 * 1.03  # the old log-space setting barely moved the attacker


def test_meta_batch_with_wrong_leading_shape_is_rejected():
    settings = MLACSettings(inner_steps=3, meta_batch_size=2)
    bad = meta_batch(replace(settings, inner_steps=2))
    with pytest.raises(ValueError, match="inner/x"):
        check_meta_batch(bad, settings)


ALL_TERM_WEIGHTS = dict(l_good_base=1.1, l_bad_base=0.3, l_bad_adapted=0.7, l_linear_mi=1.3,
                        l_bad_adapted_grad=0.9, l_mlm=2.0, l_good_adapted=0.4,
                        l_good_adapted_bad=0.6, l_entropy=0.8, l_kl_uniform=0.2,
                        l_inverse_ce=0.5, entropy_late_power=1.0)
MAXIMISED = {"bad_base", "bad_adapted", "linear_mi", "good_adapted_bad", "entropy"}


def _direct_terms(settings, params, meta_params, original, mb):
    """Each term computed from scratch, attacker by attacker (learned head and lr make the
    attacker's start independent of the random keys)."""
    inner = jax.tree.map(lambda x: x[0], mb["inner"])
    outer = mb["outer"]
    y_good, y_bad, w = outer["good"], outer["bad"], outer["weight"]
    feats = MLP.features(params["backbone"], outer)
    logits = feats @ params["head"]["kernel"]
    draw = AttackerDraw(learned_inner_lr(meta_params), jnp.asarray(0), jnp.asarray(1.0),
                        jax.random.PRNGKey(0))
    bad = run_attacker(MLP, {"backbone": params["backbone"], "head": meta_params["head_init"]},
                       draw, inner, outer, settings, label_key="bad", trained_outputs=(0, NUM_BAD),
                       final_grad_norm=True)
    good = run_attacker(MLP, params, draw, inner, outer, settings, label_key="good",
                        trained_outputs=(0, NUM_GOOD), final_grad_norm=False)
    z = np.asarray(bad.outer_logits, np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    wn = np.asarray(w) / np.sum(w)
    per_set_entropy = (-(p * np.log(p)).sum(-1) * wn).sum(-1)
    late = np.arange(1, len(z) + 1) / np.arange(1, len(z) + 1).sum()
    kl = ((np.log(1 / NUM_BAD) - np.log(p)).mean(-1) * wn).sum(-1)
    original_feats = MLP.features(original, outer)
    return {
        "good_base": cross_entropy(logits[:, :NUM_GOOD], y_good, w),
        "bad_base": cross_entropy(logits[:, NUM_GOOD:], y_bad, w),
        "mlm": jnp.sum(jnp.mean((feats - original_feats) ** 2, -1) * w) / jnp.sum(w),
        "bad_adapted": jnp.mean(cross_entropy(bad.outer_logits, y_bad, w)),
        "linear_mi": np.mean([linear_mi(zt, y_bad, w, settings.linear_mi_iterations)[0]
                              for zt in bad.outer_logits]),
        "bad_adapted_grad": np.mean(list(bad.inner_grad_norms) + [bad.final_grad_norm]),
        "entropy": (late * per_set_entropy).sum(),
        "kl_uniform": kl.mean(),
        "inverse_ce": jnp.mean(inverse_cross_entropy(bad.outer_logits, y_bad, w)),
        "good_adapted": jnp.mean(cross_entropy(good.outer_logits[..., :NUM_GOOD], y_good, w)),
        "good_adapted_bad": cross_entropy(good.outer_logits[-1, :, NUM_GOOD:], y_bad, w),
    }


@pytest.mark.slow
@pytest.mark.parametrize("steps", [0, 2])
def test_every_term_matches_a_direct_computation(steps):
    """K=0 is adversarial censoring: the attacker's logits are its head on the base features."""
    settings = MLACSettings(inner_steps=steps, learn_head_init=True, **ALL_TERM_WEIGHTS)
    state = init_train_state(MLP, MLP.init(jax.random.PRNGKey(1)), NUM_GOOD, NUM_BAD, settings, 0)
    original = jax.tree.map(lambda x: x + 0.05, state.original_backbone)
    mb = meta_batch(settings, seed=3)
    objective = jax.jit(make_meta_objective(MLP, settings, NUM_GOOD, NUM_BAD))
    (total, attacker_loss), metrics = objective(state.params, state.meta_params, original, mb,
                                                jax.random.PRNGKey(5))
    direct = _direct_terms(settings, state.params, state.meta_params, original, mb)
    for name, value in direct.items():
        assert float(metrics[f"term/{name}"]) == pytest.approx(float(value), rel=1e-4), name
    expected_total = sum((-1 if name in MAXIMISED else 1) * settings.weight(name) * float(value)
                         for name, value in direct.items())
    assert float(total) == pytest.approx(expected_total, rel=1e-4)
    assert float(attacker_loss) == pytest.approx(float(direct["bad_adapted"]), rel=1e-5)
    if steps == 0:
        head = state.meta_params["head_init"]["kernel"]
        base = MLP.features(state.params["backbone"], mb["outer"]) @ head
        assert float(direct["bad_adapted"]) == pytest.approx(
            float(cross_entropy(base, mb["outer"]["bad"], mb["outer"]["weight"])), rel=1e-6)


FD_SETTINGS = MLACSettings(
    inner_steps=3, meta_batch_size=2, inner_optimizers=("adam", "sgd"), frozen_base_prob=0.5,
    inner_grad_clip=0.5, l_bad_adapted=0.5, l_mlm=0.5, l_linear_mi=1.0, l_bad_adapted_grad=1.0,
    linear_mi_iterations=2000, learn_head_init=True, inner_lr_init=5e-3,
)


# Simulated LoRA attackers (rank 2 on both matrices): the meta-gradient flows through B, A @ B.
LORA_FD_SETTINGS = replace(FD_SETTINGS, inner_attacks=("lora",), frozen_base_prob=0.0,
                           inner_lora_rank=2, inner_lora_targets="dense")


# The learned inner lr alone (no head init): its gradient may come by forward mode.
FORWARD_FD_SETTINGS = replace(FD_SETTINGS, learn_head_init=False, meta_gradient_mode="forward")


# JAX's reverse-over-reverse second-order terms (the default is forward-over-reverse here).
REVERSE_FD_SETTINGS = replace(FD_SETTINGS, second_order="reverse")


@pytest.mark.slow
@pytest.mark.parametrize("settings", [FD_SETTINGS, LORA_FD_SETTINGS, FORWARD_FD_SETTINGS,
                                      REVERSE_FD_SETTINGS],
                         ids=["full", "lora", "forward_lr", "reverse_second_order"])
def test_meta_gradient_matches_central_differences_in_float64(settings):
    """Second-order meta-gradient of the model loss (params) and of the attacker loss (log lr,
    head init) along random directions, against central differences of the same objective."""
    backbone = tanh_backbone()
    with jax.enable_x64(True):
        state = init_train_state(backbone, backbone.init(jax.random.PRNGKey(2)), NUM_GOOD,
                                 NUM_BAD, settings, seed=0)
        to64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        params, meta = to64(state.params), to64(state.meta_params)
        original = jax.tree.map(lambda x: x + 0.1, params["backbone"])
        mb = meta_batch(settings, seed=7, dtype=np.float64)
        key = jax.random.PRNGKey(11)
        meta_gradient = jax.jit(make_meta_gradient(backbone, settings, NUM_GOOD, NUM_BAD))
        grads, meta_grads, _ = meta_gradient(params, meta, original, mb, key)

        def losses(p, m):  # the same compiled program reports both losses in its metrics
            metrics = meta_gradient(p, m, original, mb, key)[2]
            return metrics["loss/total"], metrics["loss/attacker"]

        def direction(tree, seed):
            leaves, treedef = jax.tree.flatten(tree)
            keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
            return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, jnp.float64)
                                                for k, x in zip(keys, leaves, strict=True)])

        def central(fn, tree, v, eps=1e-6):
            plus = jax.tree.map(lambda x, d: x + eps * d, tree, v)
            minus = jax.tree.map(lambda x, d: x - eps * d, tree, v)
            return (fn(plus) - fn(minus)) / (2 * eps)

        v = direction(params, 1)
        numeric = central(lambda p: losses(p, meta)[0], params, v)
        analytic = sum(jnp.vdot(g, d) for g, d in
                       zip(jax.tree.leaves(grads), jax.tree.leaves(v), strict=True))
        assert abs(float(analytic - numeric)) <= 1e-4 * abs(float(numeric))

        u = direction(meta, 2)
        numeric = central(lambda m: losses(params, m)[1], meta, u)
        analytic = sum(jnp.vdot(g, d) for g, d in
                       zip(jax.tree.leaves(meta_grads), jax.tree.leaves(u), strict=True))
        assert abs(float(analytic - numeric)) <= 1e-4 * abs(float(numeric))
        assert float(global_norm(meta_grads)) > 0
        assert math.isfinite(float(global_norm(grads)))


def test_forward_and_reverse_lr_gradients_agree_and_forward_refuses_a_head_init():
    settings = MLACSettings(inner_steps=3, meta_batch_size=2, inner_lr_init=5e-3)
    state = init_train_state(MLP, MLP.init(jax.random.PRNGKey(2)), NUM_GOOD, NUM_BAD, settings,
                             seed=0)
    mb, key = meta_batch(settings, seed=7), jax.random.PRNGKey(11)
    results = {}
    for mode in ("forward", "reverse"):
        chosen = replace(settings, meta_gradient_mode=mode)
        gradient = jax.jit(make_meta_gradient(MLP, chosen, NUM_GOOD, NUM_BAD))
        results[mode] = gradient(state.params, state.meta_params, {}, mb, key)
    (grads_f, meta_f, metrics_f), (grads_r, meta_r, metrics_r) = results.values()
    assert float(jnp.abs(meta_r["inner_lr"])) > 0
    np.testing.assert_allclose(meta_f["inner_lr"], meta_r["inner_lr"], rtol=1e-4)
    for forward, reverse in zip(jax.tree.leaves(grads_f), jax.tree.leaves(grads_r), strict=True):
        np.testing.assert_allclose(forward, reverse, rtol=1e-4, atol=1e-7)
    assert float(metrics_f["loss/total"]) == float(metrics_r["loss/total"])
    assert settings.forward_mode_meta_gradient
    assert not replace(settings, learn_head_init=True).forward_mode_meta_gradient
    with pytest.raises(ValueError, match="meta_gradient_mode forward"):
        replace(settings, meta_gradient_mode="forward", learn_head_init=True)


def test_forward_over_reverse_and_reverse_second_order_agree_in_float64():
    """Same meta-gradients to round-off, through every path an inner gradient can take: a
    drawn optimizer family (Adam or SGD), frozen or full attackers, clipping, parameter noise
    and the gradient-norm term."""
    backbone = tanh_backbone()
    settings = MLACSettings(inner_steps=3, meta_batch_size=4, inner_lr_init=5e-3,
                            inner_optimizers=("adam", "sgd_momentum"), frozen_base_prob=0.5,
                            param_noise_std=0.01, inner_grad_clip=0.5, l_bad_adapted=1.0,
                            learn_head_init=True)
    assert settings.forward_over_reverse
    with jax.enable_x64(True):
        state = init_train_state(backbone, backbone.init(jax.random.PRNGKey(4)), NUM_GOOD,
                                 NUM_BAD, settings, seed=0)
        to64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        params, meta = to64(state.params), to64(state.meta_params)
        mb, key = meta_batch(settings, seed=3, dtype=np.float64), jax.random.PRNGKey(5)
        results = {}
        for mode in ("forward_over_reverse", "reverse"):
            chosen = replace(settings, second_order=mode)
            gradient = jax.jit(make_meta_gradient(backbone, chosen, NUM_GOOD, NUM_BAD))
            results[mode] = gradient(params, meta, {}, mb, key)
    (grads_f, meta_f, metrics_f), (grads_r, meta_r, metrics_r) = results.values()
    assert float(metrics_f["inner/frozen_fraction"]) not in (0.0, 1.0)
    assert float(global_norm(meta_r)) > 0
    for forward, reverse in zip(jax.tree.leaves((grads_f, meta_f)),
                                jax.tree.leaves((grads_r, meta_r)), strict=True):
        np.testing.assert_allclose(forward, reverse, rtol=1e-9, atol=1e-12)
    assert float(metrics_f["loss/total"]) == float(metrics_r["loss/total"])


def test_second_order_auto_yields_to_the_forward_lr_tangent_and_bad_pairs_are_refused():
    paper = MLACSettings()
    assert paper.forward_mode_meta_gradient and not paper.forward_over_reverse
    fixed = MLACSettings(learn_inner_lr=False)
    assert fixed.forward_over_reverse and not fixed.forward_mode_meta_gradient
    assert replace(paper, learn_head_init=True).forward_over_reverse
    assert not replace(fixed, first_order=True).forward_over_reverse
    assert not replace(fixed, second_order="reverse").forward_over_reverse
    chosen = replace(paper, second_order="forward_over_reverse")
    assert chosen.forward_over_reverse and not chosen.forward_mode_meta_gradient
    with pytest.raises(ValueError, match="cannot carry meta_gradient_mode forward"):
        replace(paper, second_order="forward_over_reverse", meta_gradient_mode="forward")
    with pytest.raises(ValueError, match="second_order must be one of"):
        replace(paper, second_order="mixed")


@pytest.mark.parametrize("shared_outer_batch", [True, False])
def test_sequential_and_vectorised_attackers_give_the_same_meta_gradient(shared_outer_batch):
    settings = MLACSettings(inner_steps=2, meta_batch_size=3, inner_lr_init=5e-3,
                            shared_outer_batch=shared_outer_batch, l_bad_adapted=1.0)
    state = init_train_state(MLP, MLP.init(jax.random.PRNGKey(3)), NUM_GOOD, NUM_BAD, settings,
                             seed=0)
    mb, key = meta_batch(settings, seed=5), jax.random.PRNGKey(13)
    results = []
    for batching in ("sequential", "vectorised"):
        chosen = replace(settings, attacker_batching=batching)
        gradient = jax.jit(make_meta_gradient(MLP, chosen, NUM_GOOD, NUM_BAD))
        results.append(gradient(state.params, state.meta_params, {}, mb, key))
    (grads_s, meta_s, metrics_s), (grads_v, meta_v, metrics_v) = results
    assert float(jnp.abs(meta_s["inner_lr"])) > 0
    for sequential, vectorised in zip(jax.tree.leaves((grads_s, meta_s, metrics_s)),
                                      jax.tree.leaves((grads_v, meta_v, metrics_v)), strict=True):
        np.testing.assert_allclose(sequential, vectorised, rtol=1e-5, atol=1e-7)


def test_sequential_attackers_refuse_a_device_mesh_and_auto_picks_per_backend():
    from sdm_jax.blocking.outer import attacker_mapper

    sequential = replace(STEP_SETTINGS, attacker_batching="sequential")
    with pytest.raises(ValueError, match="attacker_batching sequential cannot shard"):
        attacker_mapper(sequential, sharded=True)
    auto = attacker_mapper(STEP_SETTINGS, sharded=False)
    assert auto.__name__ == ("sequential" if jax.default_backend() == "cpu" else "vectorised")
    assert attacker_mapper(STEP_SETTINGS, sharded=True).__name__ == "vectorised"
    with pytest.raises(ValueError, match="attacker_batching must be one of"):
        replace(STEP_SETTINGS, attacker_batching="parallel")
