"""Parameter-efficient attacks as pure functions of the backbone's parameter pytree.

An attack trains either the whole backbone (``none``), its bias vectors alone (``bitfit``, Ben
Zaken et al. 2022: every ``bias`` leaf, LayerNorm biases included), or low-rank adapters beside
chosen weight matrices (``lora``, Hu et al. 2022: ``W + (alpha / rank) * A @ B`` with ``A``
drawn like a fresh dense layer and ``B`` zero, so the adapted model starts as the base model).
The base weights stay frozen in both PEFT cases: the program differentiates the adapter pytree
only, so no gradient of a frozen matrix is ever formed. Which matrices LoRA adapts is a list of
the backbone's named target groups (:attr:`~sdm_jax.models.backbone.Backbone.adapter_targets`),
so this module knows no model family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict

from sdm_jax.models.backbone import Backbone, Params

ADAPTERS = ("none", "bitfit", "lora")
TARGET_SEPARATOR = "+"


@dataclass(frozen=True)
class Adaptation:
    """What an attack program trains in the backbone: static, part of the compiled program.

    ``patterns`` are the regular expressions of the LoRA-adapted matrices' paths."""

    kind: str = "none"
    lora_rank: int = 0
    patterns: tuple[str, ...] = ()


def adaptation_for(
    backbone: Backbone, adapter: str, lora_rank: int, lora_targets: str
) -> Adaptation:
    """The static adaptation of one attack setting on ``backbone``; one line on a bad name."""
    if adapter not in ADAPTERS:
        raise ValueError(f"unknown adapter {adapter!r}; choose from {ADAPTERS}")
    if adapter != "lora":
        return Adaptation(kind=adapter)
    groups = dict(backbone.adapter_targets)
    names = lora_targets.split(TARGET_SEPARATOR)
    unknown = [name for name in names if name not in groups]
    if unknown:
        raise ValueError(
            f"LoRA target group {unknown[0]!r} is not one of {backbone.name}'s: "
            f"{sorted(groups)} (join several with {TARGET_SEPARATOR!r})"
        )
    return Adaptation(kind="lora", lora_rank=lora_rank,
                      patterns=tuple(groups[name] for name in names))


def matching_matrices(params: Params, patterns: tuple[str, ...]) -> list[str]:
    """The ``/``-joined paths of the 2-D leaves whose path matches one of ``patterns``."""
    return [
        path for path, leaf in flatten_dict(params, sep="/").items()
        if leaf.ndim == 2 and any(re.search(p, path) for p in patterns)
    ]


def adapted_paths(adaptation: Adaptation, params: Params) -> list[str]:
    """The ``/``-joined paths of the leaves a PEFT adaptation trains or adapts, in tree order."""
    if adaptation.kind == "bitfit":
        return [path for path in flatten_dict(params, sep="/")
                if path.rsplit("/", 1)[-1] == "bias"]
    if adaptation.kind == "lora":
        return matching_matrices(params, adaptation.patterns)
    raise ValueError(f"adaptation {adaptation.kind!r} trains the whole backbone, not a subset")


def check_adaptation(adaptation: Adaptation, params: Params, backbone_name: str) -> None:
    """Fail in one line when a PEFT adaptation would train nothing of this backbone."""
    if adaptation.kind != "none" and not adapted_paths(adaptation, params):
        raise ValueError(
            f"the {adaptation.kind} attack finds no weight to adapt in {backbone_name}"
        )


def init_adapter(adaptation: Adaptation, params: Params, key: jax.Array) -> Params:
    """The trained part of a PEFT attack at step 0: the biases themselves, or LoRA's ``A``/``B``."""
    flat = flatten_dict(params, sep="/")
    paths = adapted_paths(adaptation, params)
    if adaptation.kind == "bitfit":
        return {path: flat[path] for path in paths}
    adapters = {}
    for path, path_key in zip(paths, jax.random.split(key, len(paths)), strict=True):
        fan_in, fan_out = flat[path].shape
        dtype = flat[path].dtype
        bound = 1.0 / jnp.sqrt(fan_in)
        shape = (fan_in, adaptation.lora_rank)
        adapters[path] = {
            "a": jax.random.uniform(path_key, shape, dtype, -bound, bound),
            "b": jnp.zeros((adaptation.lora_rank, fan_out), dtype),
        }
    return adapters


def apply_adapter(adaptation: Adaptation, adapter: Params, params: Params, lora_scale) -> Params:
    """The backbone parameters the adapted model runs with; ``lora_scale`` is alpha / rank."""
    flat = dict(flatten_dict(params, sep="/"))
    if adaptation.kind == "bitfit":
        flat.update(adapter)
    else:
        for path, pair in adapter.items():
            flat[path] = flat[path] + lora_scale * (pair["a"] @ pair["b"]).astype(flat[path].dtype)
    return unflatten_dict(flat, sep="/")
