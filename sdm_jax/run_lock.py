"""One writer per run directory.

Two trainings in one run directory would resume from each other's half-written checkpoints.
The lock is an exclusive ``flock`` on ``<run_dir>/.lock``: the kernel drops it when its owner
exits, however it exits (kill -9 included), so a stale lock never blocks a re-run. The file
also names the owner (pid, host, start time) for the refusal message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from sdm_jax.checkpoint import RestoreError

LOCK_NAME = ".lock"


class RunInUseError(RestoreError):
    """Another live process holds the run directory."""


def _owner_text(lock_path: Path) -> str:
    try:
        owner = json.loads(lock_path.read_text())
        return f"pid {owner['pid']} on {owner['host']} (since {owner['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def hold_run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block; refuse with one line if someone else holds it."""
    lock_path = Path(run_dir) / LOCK_NAME
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(
                f"{run_dir}: in use by {_owner_text(lock_path)}; wait for it to finish or use "
                "another run directory"
            ) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(owner).encode(), 0)
        yield
    finally:
        os.close(descriptor)
