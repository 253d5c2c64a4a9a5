"""XLA:CPU options that make MLAC's programs faster, added to ``XLA_FLAGS`` on import.

XLA reads ``XLA_FLAGS`` when JAX first creates its backend, so importing :mod:`sdm_jax` before
any computation is enough. By default jaxlib 0.10 hands matmuls *and* reductions to YNNPACK;
keeping YNNPACK to matmuls (reductions in XLA's own loops) made the K=16 meta-gradient step
1.16–1.2× faster on a 2-core CPU (``benchmarks/RESULTS.md``), with the same float32 math.

The flag is experimental, and XLA aborts on a flag it does not know, so it is only added for
the jaxlib versions it was measured on. It is left out when ``XLA_FLAGS`` already sets it, or
when ``SDM_JAX_XLA_DEFAULTS=0``. Accelerator backends ignore ``xla_cpu_*`` flags.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping

YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
CPU_FLAGS = (f"--{YNN_FUSION_OPTION}=dot",)
TESTED_JAXLIB = ("0.10.",)
OPT_OUT = "SDM_JAX_XLA_DEFAULTS"


def _jaxlib_version() -> str:
    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return ""


def apply(environ: MutableMapping[str, str] = os.environ, jaxlib_version: str | None = None
          ) -> bool:
    """Append :data:`CPU_FLAGS` to ``environ["XLA_FLAGS"]``; returns whether it did."""
    version = _jaxlib_version() if jaxlib_version is None else jaxlib_version
    flags = environ.get("XLA_FLAGS", "")
    if (environ.get(OPT_OUT) == "0" or YNN_FUSION_OPTION in flags
            or not version.startswith(TESTED_JAXLIB)):
        return False
    environ["XLA_FLAGS"] = " ".join([flags, *CPU_FLAGS]).strip()
    return True
