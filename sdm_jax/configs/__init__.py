"""The project's run configurations, shipped inside the package so an installed sdm-jax (not only
a checkout) finds what the demo and the benchmark need; the checkout's top-level ``configs/``
is this folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def packaged_config(name: str) -> Path:
    """Path of the packaged config ``name`` (e.g. ``"bios_minilm.yaml"``)."""
    path = Path(str(resources.files(__name__).joinpath(name)))
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no packaged config {name!r}; available: {available}")
    return path
