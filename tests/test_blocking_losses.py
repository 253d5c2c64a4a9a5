"""Loss terms against hand computations; the linear read-out against a brute-force solver."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from sdm_jax.blocking.losses import (
    entropy,
    inverse_cross_entropy,
    kl_to_uniform,
    linear_mi,
    solve_linear_readout,
)
from sdm_jax.blocking.objective import late_step_weights, signed_total
from sdm_jax.blocking.settings import ALL_TERMS, MAXIMISED_TERMS, MLACSettings
from sdm_jax.fine_tune import cross_entropy

LOGITS = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-3.0, 1.0, 0.0]])
LABELS = jnp.array([0, 2, 1])
WEIGHT = jnp.array([1.0, 1.0, 0.0])  # the last row is padding


def _probs(logits):
    e = np.exp(np.asarray(logits, np.float64))
    return e / e.sum(-1, keepdims=True)


def test_cross_entropy_is_weighted_mean_ignoring_padding():
    p = _probs(LOGITS)
    expected = -(np.log(p[0, 0]) + np.log(p[1, 2])) / 2
    assert float(cross_entropy(LOGITS, LABELS, WEIGHT)) == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_over_stacked_logit_sets():
    stacked = jnp.stack([LOGITS, 2 * LOGITS])
    values = cross_entropy(stacked, LABELS, WEIGHT)
    assert values.shape == (2,)
    assert float(values[1]) == pytest.approx(float(cross_entropy(2 * LOGITS, LABELS, WEIGHT)))


def test_entropy_matches_hand_value_and_peaks_at_uniform():
    p = _probs(LOGITS)
    expected = -(p[:2] * np.log(p[:2])).sum(-1).mean()
    assert float(entropy(LOGITS, WEIGHT)) == pytest.approx(expected, rel=1e-6)
    assert float(entropy(jnp.zeros((3, 3)), WEIGHT)) == pytest.approx(math.log(3), rel=1e-6)


def test_kl_to_uniform_is_zero_at_uniform_and_matches_hand_value():
    assert float(kl_to_uniform(jnp.zeros((3, 3)), WEIGHT)) == pytest.approx(0.0, abs=1e-6)
    p = _probs(LOGITS)
    expected = (np.log(1 / 3) - np.log(p[:2])).mean(-1).mean()
    assert float(kl_to_uniform(LOGITS, WEIGHT)) == pytest.approx(expected, rel=1e-6)


def test_inverse_cross_entropy_is_minus_log_of_one_minus_p_true():
    p = _probs(LOGITS)
    expected = -(np.log(1 - p[0, 0]) + np.log(1 - p[1, 2])) / 2
    assert float(inverse_cross_entropy(LOGITS, LABELS, WEIGHT)) == pytest.approx(expected, 1e-6)


def _brute_force_readout(logits, labels, weight):
    z, y, w = (np.asarray(a, np.float64) for a in (logits, labels, weight))
    c = z.shape[1]

    def value(flat):
        scores = z @ flat.reshape(c, c)
        scores -= scores.max(1, keepdims=True)
        log_p = scores - np.log(np.exp(scores).sum(1, keepdims=True))
        return -(w * log_p[np.arange(len(y)), y.astype(int)]).sum() / w.sum()

    result = minimize(value, np.eye(c).ravel(), bounds=[(-1, 1)] * (c * c), method="L-BFGS-B",
                      options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 5000})
    return result.fun


@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_linear_readout_reaches_the_brute_force_minimum(scale):
    key = jax.random.PRNGKey(3)
    logits = scale * jax.random.normal(key, (24, 2))
    labels = (jax.random.uniform(jax.random.PRNGKey(4), (24,)) < 0.5).astype(jnp.int32)
    weight = jnp.ones(24).at[-4:].set(0.0)
    value, _ = linear_mi(logits, labels, weight, iterations=300)
    assert float(value) == pytest.approx(_brute_force_readout(logits, labels, weight), abs=2e-4)


def test_linear_readout_stays_in_the_box():
    logits = 10.0 * jax.random.normal(jax.random.PRNGKey(0), (16, 3))
    labels = jnp.argmax(logits, -1)  # perfectly separable: the optimum pushes to the box edge
    w = solve_linear_readout(logits, labels, jnp.ones(16), iterations=200)
    assert float(jnp.max(jnp.abs(w))) <= 1.0
    assert float(jnp.max(jnp.abs(w))) == pytest.approx(1.0)


def test_linear_mi_gradient_is_the_danskin_gradient_of_the_minimum():
    """Central differences of the minimum value (re-solved at each point) in float64."""
    with jax.enable_x64(True):
        logits = jax.random.normal(jax.random.PRNGKey(1), (12, 2), jnp.float64)
        labels = jnp.array([0, 1] * 6)
        weight = jnp.ones(12, jnp.float64)

        def value(z):
            return linear_mi(z, labels, weight, iterations=3000)[0]

        grad = jax.grad(value)(logits)
        direction = jax.random.normal(jax.random.PRNGKey(2), logits.shape, jnp.float64)
        eps = 1e-5
        numeric = (value(logits + eps * direction) - value(logits - eps * direction)) / (2 * eps)
        analytic = jnp.vdot(grad, direction)
        assert float(analytic) == pytest.approx(float(numeric), rel=1e-4)


def test_signed_total_negates_exactly_the_maximised_terms():
    weights = {f"l_{name}": float(i + 2) for i, name in enumerate(ALL_TERMS)}
    settings = MLACSettings(**weights)
    for i, name in enumerate(ALL_TERMS):
        terms = {other: jnp.asarray(0.0) for other in ALL_TERMS}
        terms[name] = jnp.asarray(1.5)
        sign = -1.0 if name in MAXIMISED_TERMS else 1.0
        assert float(signed_total(terms, settings)) == pytest.approx(sign * (i + 2) * 1.5), name


def test_signed_total_skips_disabled_terms():
    settings = MLACSettings(l_good_base=1.0, l_linear_mi=0.0, l_bad_adapted_grad=0.0)
    terms = {"good_base": jnp.asarray(2.0), "linear_mi": jnp.asarray(5.0)}
    assert float(signed_total(terms, settings)) == pytest.approx(2.0)


def test_late_step_weights_normalise_and_favour_late_sets():
    flat = late_step_weights(4, 0.0)
    late = late_step_weights(4, 2.0)
    np.testing.assert_allclose(flat, 0.25)
    np.testing.assert_allclose(late, np.array([1, 4, 9, 16]) / 30, rtol=1e-6)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("inner_steps", -1, "inner_steps"),
        ("inner_optimizers", ("adam", "lion"), "inner_optimizers"),
        ("adam_eps_root", 0.0, "adam_eps_root"),
        ("remat", "some", "remat"),
        ("frozen_base_prob", 1.5, "frozen_base_prob"),
        ("l_linear_mi", -1.0, "l_linear_mi"),
        ("inner_lr_init", 1.0, "inner_lr_init"),
    ],
)
def test_settings_reject_bad_values_with_one_line(field, value, needle):
    with pytest.raises(ValueError, match=needle) as info:
        MLACSettings(**{field: value})
    assert "\n" not in str(info.value)
