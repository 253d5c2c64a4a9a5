"""How busy the machine is: load average, CPU steal, CPU pressure, and other processes' CPU.

A timing comparison is only meaningful on a quiet machine: PyTorch's OpenMP threads degrade far
worse than XLA's thread pool when other processes compete for the cores, so a loaded machine
makes a JAX/PyTorch ratio say more about the load than about the code. :func:`snapshot` reads
the kernel's counters; :func:`busy_reasons` compares two snapshots taken around a measurement
and names every sign that something else was running.

Linux only for steal and pressure (``/proc/stat``, ``/proc/pressure/cpu``); elsewhere those
fields are ``None`` and only the load average is checked.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Other processes may use this share of the machine's cores while we time, at most.
MAX_FOREIGN_CPU_SHARE = 0.10
MAX_STEAL_SHARE = 0.05
MAX_PRESSURE_AVG10 = 25.0  # percent of time some runnable task waited for a core
SETTLE_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Snapshot:
    """Counters at one instant. ``busy_s``/``steal_s``: CPU seconds of the whole machine since
    boot (all cores); ``own_s``: CPU seconds of this process and its finished children."""

    wall: float
    load1: float
    load5: float
    busy_s: float | None
    steal_s: float | None
    own_s: float
    pressure_avg10: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _proc_stat_seconds() -> tuple[float | None, float | None]:
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None, None
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq) / ticks, steal / ticks


def _pressure_avg10() -> float | None:
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(part.split("=") for part in some.split()[1:])
    return float(fields["avg10"])


def _own_cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def snapshot() -> Snapshot:
    busy, steal = _proc_stat_seconds()
    load1, load5, _ = os.getloadavg()
    return Snapshot(wall=time.monotonic(), load1=load1, load5=load5, busy_s=busy,
                    steal_s=steal, own_s=_own_cpu_seconds(), pressure_avg10=_pressure_avg10())


def wait_until_quiet(cores: int, timeout_s: float = SETTLE_TIMEOUT_S, poll_s: float = 2.0,
                     load=lambda: os.getloadavg()[0], sleep=time.sleep) -> float:
    """Wait until the 1-minute load is at most ``cores`` or ``timeout_s`` passed; returns the
    seconds waited. The previous run of the same command leaves the load average near the core
    count for a while after it exits, so without this a quiet machine reads as busy."""
    waited = 0.0
    while load() > cores and waited < timeout_s:
        sleep(poll_s)
        waited += poll_s
    return waited


def foreign_cpu_share(before: Snapshot, after: Snapshot, cores: int) -> float | None:
    """Share of the machine's core-seconds between the snapshots used by processes other than
    this one and its children (which must have finished, so their time is counted)."""
    if before.busy_s is None or after.busy_s is None:
        return None
    elapsed = max(after.wall - before.wall, 1e-9)
    foreign = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(foreign, 0.0) / (elapsed * cores)


def busy_reasons(before: Snapshot, after: Snapshot, cores: int | None = None) -> list[str]:
    """Why a measurement between ``before`` and ``after`` cannot be trusted (empty: quiet).

    ``before`` must be taken when nothing of ours is running, so its load average is the
    machine's own; during the measurement our own processes raise the load, so the test there
    is other processes' CPU time, steal and pressure instead.
    """
    cores = cores or os.cpu_count() or 1
    reasons = []
    if before.load1 > cores:
        reasons.append(f"1-minute load {before.load1:.2f} above the {cores} cores before timing")
    if before.pressure_avg10 is not None and before.pressure_avg10 > MAX_PRESSURE_AVG10:
        reasons.append(f"CPU pressure (PSI some avg10) {before.pressure_avg10:.0f}% before "
                       f"timing (limit {MAX_PRESSURE_AVG10:.0f}%)")
    share = foreign_cpu_share(before, after, cores)
    if share is not None and share > MAX_FOREIGN_CPU_SHARE:
        reasons.append(f"other processes used {100 * share:.0f}% of the CPU while timing "
                       f"(limit {100 * MAX_FOREIGN_CPU_SHARE:.0f}%)")
    if before.steal_s is not None and after.steal_s is not None:
        steal = (after.steal_s - before.steal_s) / (max(after.wall - before.wall, 1e-9) * cores)
        if steal > MAX_STEAL_SHARE:
            reasons.append(f"CPU steal {100 * steal:.0f}% while timing "
                           f"(limit {100 * MAX_STEAL_SHARE:.0f}%)")
    return reasons
