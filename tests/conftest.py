"""Suite-wide settings."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture(autouse=True, scope="session")
def _compilation_cache(tmp_path_factory):
    """Many tests compile the same programs (a toy outer step, a tiny BERT) again; a persistent
    compilation cache for the session turns every compile after the first into a disk read."""
    options = {
        "jax_compilation_cache_dir": str(tmp_path_factory.getbasetemp() / "jax-cache"),
        "jax_persistent_cache_min_compile_time_secs": 0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    saved = {name: getattr(jax.config, name) for name in options}
    for name, value in options.items():
        jax.config.update(name, value)
    yield
    for name, value in saved.items():
        jax.config.update(name, value)


@pytest.fixture(scope="module")
def toy_attack():
    """A random toy MLP and the harmful task of the toy data, with the attacker holding 300."""
    from sdm_jax.attacks.problem import AttackProblem, AttackTarget
    from sdm_jax.data.toy import ToySpec, make_toy_task
    from sdm_jax.models.heads import mlp_backbone

    splits = make_toy_task(ToySpec(n_train=10, n_val=300, n_test=300))
    backbone = mlp_backbone()
    target = AttackTarget("random-mlp", backbone, backbone.init(jax.random.key(0)))
    return target, AttackProblem("bad", 300, splits["val1"], splits["val2"], splits["test"])
