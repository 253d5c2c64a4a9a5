"""One process of a multi-process training on CPU (run by tests/test_multihost.py).

``python tests/multihost_worker.py PROCESS_ID PORT RUN_DIR [--die-after STEP] [overrides...]``
joins a 2-process cluster on localhost with 2 simulated CPU devices per process and trains the
small toy run on the 4 devices. ``--die-after STEP`` ends the process with ``os._exit(9)`` (no
clean-up, like ``kill -9``) once the checkpoint of STEP is on disk.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from sdm_jax import checkpoint  # noqa: E402
from sdm_jax.app.training import train_and_evaluate  # noqa: E402
from tests.toy_runs import MULTIHOST_OVERRIDES, small_config  # noqa: E402


def _die_after(step: int) -> None:
    real_save = checkpoint.RunCheckpoints.save

    def save_then_die(self, saved_step, *args, **kwargs):
        real_save(self, saved_step, *args, **kwargs)
        if saved_step == step:
            self.manager.wait_until_finished()
            os._exit(9)

    checkpoint.RunCheckpoints.save = save_then_die


def main(argv: list[str]) -> None:
    process_id, port, run_dir, *rest = argv
    if rest[:1] == ["--die-after"]:
        _die_after(int(rest[1]))
        rest = rest[2:]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=int(process_id))
    train_and_evaluate(small_config(*MULTIHOST_OVERRIDES, *rest), run_dir, progress=False)


if __name__ == "__main__":
    main(sys.argv[1:])
