"""Back large host allocations with transparent huge pages (Linux, glibc ≥ 2.35).

XLA's CPU client allocates each execution's temporary buffer (1.7 GB for the K=16 benchmark
step) with ``posix_memalign`` from a worker thread; glibc serves a block that large with a fresh
``mmap`` and unmaps it when the step ends, so every outer step touches its whole working set for
the first time again: about 412,000 page faults and 0.8 s of kernel time per step. With glibc's
``glibc.malloc.hugetlb=1`` tunable those blocks are advised as huge pages and fault in 2 MiB at a
time (the K=16 step 1.3-1.5x faster on a 2-core CPU, same peak memory; README "Performance").
Tunables are read when the process starts, so the command-line entry points re-execute
themselves once with it set. ``SDM_JAX_HUGE_PAGES=0`` turns this off.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

TUNABLES_VAR = "GLIBC_TUNABLES"
HUGE_PAGE_TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT_VAR = "SDM_JAX_HUGE_PAGES"
FIRST_GLIBC_WITH_TUNABLE = (2, 35)


def glibc_version() -> tuple[int, ...] | None:
    """``(major, minor)`` of the C library this Python runs on, or ``None`` if it is not glibc."""
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return None
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def huge_page_environment(environ: Mapping[str, str],
                          libc: tuple[int, ...] | None) -> dict[str, str] | None:
    """The environment to re-execute under, or ``None`` when there is nothing to change: not
    glibc or too old, opted out, or the tunable already set (by us or by the user)."""
    if libc is None or libc < FIRST_GLIBC_WITH_TUNABLE:
        return None
    if environ.get(OPT_OUT_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    tunables = environ.get(TUNABLES_VAR, "")
    if HUGE_PAGE_TUNABLE in tunables:
        return None
    setting = f"{HUGE_PAGE_TUNABLE}=1"
    return {**environ, TUNABLES_VAR: f"{tunables}:{setting}" if tunables else setting}


def use_huge_page_malloc() -> None:
    """Re-execute this command with huge-page ``malloc`` unless it already runs with it.

    Call it first thing in a command-line entry point, never from library code or tests: it
    replaces the running process."""
    if not sys.platform.startswith("linux"):
        return
    environ = huge_page_environment(os.environ, glibc_version())
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
