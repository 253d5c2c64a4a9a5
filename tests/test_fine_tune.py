"""One attacker, two uses: the simulated attacker of training and the evaluation attack program
take identical steps, for every optimizer of the table."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdm_jax.attacks.program import LABEL, ProgramSpec, backbone_logits, compiled_program
from sdm_jax.blocking.attacker import AttackerDraw, run_attacker
from sdm_jax.blocking.optimizers import kind_hyperparameters
from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.fine_tune import OPTIMIZERS, direction, take_step
from sdm_jax.models.backbone import Backbone
from sdm_jax.models.heads import init_head


def _tanh_backbone(input_dim: int = 5, width: int = 8) -> Backbone:
    """One tanh layer: no unit dies under a large step, so a few steps move every prediction."""

    def init(key):
        return {"dense": {"kernel": jax.random.normal(key, (input_dim, width))}}

    def features(params, batch):
        return jnp.tanh(batch["x"] @ params["dense"]["kernel"])

    return Backbone("tanh", features, init, width, ("x",))


TANH = _tanh_backbone()
STEPS, EXAMPLES = 8, 12


def _learning_rate(name: str) -> float:
    """Large enough that the steps flip predictions: SGD's steps are as small as its
    gradients, Adam's and RMSprop's are about the lr."""
    return 1.0 if OPTIMIZERS[name].family == "sgd" else 0.05


def _data():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(EXAMPLES, 5)), jnp.float32)
    labels = (x[:, 0] > 0).astype(jnp.int32)  # learnable, so the attack changes predictions
    return x, labels


def _params():
    """The evaluation attack's starting point: its run seed 0 draws the fresh head."""
    return {"backbone": TANH.init(jax.random.key(3)),
            "head": init_head(jax.random.key(0), TANH.feature_dim, 2)}


def _simulated_final_logits(name: str, params, x, labels) -> jax.Array:
    settings = MLACSettings(inner_steps=STEPS, inner_optimizers=(name,), inner_grad_clip=1e9)
    batch = {"x": x, "bad": labels, "weight": jnp.ones(EXAMPLES, jnp.float32)}
    inner = jax.tree.map(lambda column: jnp.stack([column] * STEPS), batch)
    draw = AttackerDraw(learning_rate=jnp.float32(_learning_rate(name)),
                        optimizer_index=jnp.int32(0), train_backbone=jnp.float32(1.0),
                        noise_key=jax.random.key(0))
    result = run_attacker(TANH, params, draw, inner, batch, settings, label_key="bad",
                          trained_outputs=(0, 2), final_grad_norm=False)
    return result.outer_logits[-1]


def _evaluation_run(name: str, params, x, labels, val_labels):
    family, momentum, weight_decay = kind_hyperparameters(name, MLACSettings())
    spec = ProgramSpec(family=family, num_blocks=1, eval_every=STEPS, max_batch=EXAMPLES,
                       num_classes=2, feature_dim=TANH.feature_dim, with_test=False)
    hparams = {
        "lr": [_learning_rate(name)], "steps": [STEPS], "batch_size": [EXAMPLES], "schedule": [0],
        "warmup_steps": [0], "weight_decay": [weight_decay], "momentum": [momentum],
        "frozen": [0.0], "lora_scale": [1.0], "seed": [0],
        "order": [np.tile(np.arange(EXAMPLES), STEPS)],
    }
    hparams = {key: jnp.asarray(value) for key, value in hparams.items()}
    program = compiled_program(spec, backbone_logits(TANH.features))
    val = ({"x": x[None]}, val_labels)
    outputs = program(hparams, params["backbone"], {"x": x, LABEL: labels}, val, val, {}, {})
    return jax.tree.map(lambda leaf: leaf[0], outputs)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_simulated_and_evaluation_attackers_take_identical_steps(name):
    params, (x, labels) = _params(), _data()
    simulated = _simulated_final_logits(name, params, x, labels)
    # Validation labels the final weights get all right make the program keep its last
    # evaluation, so its logits there are the attacked model's.
    outputs = _evaluation_run(name, params, x, labels, jnp.argmax(simulated, -1))
    assert int(outputs["best_index"]) == 1, "the attack changed no prediction: a vacuous test"
    np.testing.assert_allclose(outputs["val_logits"], simulated, rtol=1e-5, atol=1e-6)


def test_both_attackers_read_the_one_optimizer_table():
    assert MLACSettings(inner_optimizers=tuple(OPTIMIZERS)).inner_optimizers == tuple(OPTIMIZERS)
    for name, defaults in OPTIMIZERS.items():
        family, momentum, weight_decay = kind_hyperparameters(name, MLACSettings())
        assert (family, momentum, weight_decay) == (
            defaults.family, defaults.momentum, defaults.weight_decay)


def test_take_step_freezes_a_masked_part_and_leaves_its_state_untouched():
    params = {"backbone": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(2)}}
    transform = direction("adam", weight_decay=0.1)

    def loss_fn(p, batch):
        return jnp.sum(p["backbone"]["w"] * batch) + jnp.sum(p["head"]["w"] ** 2), None

    new, state, outcome = take_step(loss_fn, transform, params, transform.init(params),
                                    jnp.arange(3.0), 0.1, trained={"backbone": 0.0})
    np.testing.assert_array_equal(new["backbone"]["w"], params["backbone"]["w"])
    assert float(jnp.max(jnp.abs(new["head"]["w"] - 1.0))) > 0.05
    np.testing.assert_array_equal(state[0].mu["backbone"]["w"], 0.0)
    # The norm is the masked gradient's: the head's 2 * w only.
    assert float(outcome.grad_norm) == pytest.approx(math.sqrt(8.0), rel=1e-5)
