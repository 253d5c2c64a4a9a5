"""The reference's toy task: Gaussian inputs with two linear concepts.

Inputs are standard normal in ``dim`` dimensions; the good and the bad label are the signs of
two fixed random linear separators without bias. It runs the whole blocking pipeline in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOY_SPLITS = ("train", "val1", "val2", "test")


@dataclass(frozen=True)
class ToySpec:
    dim: int = 25
    n_train: int = 20_000
    n_val: int = 2_000
    n_test: int = 4_000
    seed: int = 0


def toy_separators(spec: ToySpec) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng((spec.seed, 17))
    good, bad = rng.standard_normal((2, spec.dim))
    return good.astype(np.float32), bad.astype(np.float32)


def make_toy_task(spec: ToySpec = ToySpec()) -> dict[str, dict[str, np.ndarray]]:
    """Splits ``train``/``val1``/``val2``/``test``, each ``{"x", "good", "bad"}``."""
    if spec.dim <= 0 or min(spec.n_train, spec.n_val, spec.n_test) <= 0:
        raise ValueError(f"toy task sizes must be positive: {spec}")
    good_w, bad_w = toy_separators(spec)
    sizes = dict(zip(TOY_SPLITS, (spec.n_train, spec.n_val, spec.n_val, spec.n_test), strict=True))
    splits = {}
    for index, (name, size) in enumerate(sizes.items()):
        x = np.random.default_rng((spec.seed, index)).standard_normal((size, spec.dim))
        x = x.astype(np.float32)
        splits[name] = {
            "x": x,
            "good": (x @ good_w > 0).astype(np.int32),
            "bad": (x @ bad_w > 0).astype(np.int32),
        }
    return splits


TOY_LABEL_NAMES = {"good": ("negative", "positive"), "bad": ("negative", "positive")}
