"""The interleaved JAX/PyTorch comparison: ratio of medians, and no ratio on a busy machine."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sdm_jax.bench import compare, machine

QUIET = machine.Snapshot(wall=0.0, load1=0.3, load5=0.2, busy_s=100.0, steal_s=1.0,
                         own_s=10.0, pressure_avg10=1.0)


def _after(elapsed: float, own: float, foreign: float, steal: float = 0.0) -> machine.Snapshot:
    """Counters ``elapsed`` seconds after QUIET with our own and others' CPU seconds."""
    return replace(QUIET, wall=elapsed, busy_s=QUIET.busy_s + own + foreign,
                   own_s=QUIET.own_s + own, steal_s=QUIET.steal_s + steal)


def test_own_cpu_is_not_counted_as_load():
    after = _after(10.0, own=19.0, foreign=0.5)
    assert machine.foreign_cpu_share(QUIET, after, cores=2) == pytest.approx(0.025)
    assert machine.busy_reasons(QUIET, after, cores=2) == []


def test_each_sign_of_a_busy_machine_is_named():
    assert "other processes used 40%" in machine.busy_reasons(
        QUIET, _after(10.0, own=10.0, foreign=8.0), cores=2)[0]
    assert "1-minute load 3.50" in machine.busy_reasons(
        replace(QUIET, load1=3.5), _after(10.0, 10.0, 0.0), cores=2)[0]
    assert "CPU steal 10%" in machine.busy_reasons(
        QUIET, _after(10.0, 10.0, 0.0, steal=2.0), cores=2)[0]
    assert "CPU pressure" in machine.busy_reasons(
        replace(QUIET, pressure_avg10=60.0), _after(10.0, 10.0, 0.0), cores=2)[0]


def test_snapshot_reads_this_machine():
    now = machine.snapshot()
    assert now.load1 >= 0 and now.own_s > 0


WORKLOAD = {"objective": "paper", "inner_steps": 16, "remat": "none", "first_order": False}


def _side(step_s: float, busy=()) -> dict:
    return {"step_s": step_s, "peak_rss_mb": 100.0, "busy": list(busy)}


def test_ratio_is_of_the_medians_with_the_per_pair_range():
    rounds = [{"jax": _side(j), "torch": _side(t)} for j, t in [(2.0, 9.0), (3.0, 6.0), (4.0, 8.0)]]
    summary = compare.summarise(WORKLOAD, rounds)
    assert summary["jax_step_s"] == 3.0 and summary["torch_step_s"] == 8.0
    assert summary["ratio"] == pytest.approx(8.0 / 3.0)
    assert summary["ratio_range"] == pytest.approx([2.0, 4.5])
    assert "JAX faster" in compare.markdown([summary])


def test_busy_or_failed_runs_withhold_the_ratio():
    rounds = [{"jax": _side(2.0, busy=["load"]), "torch": _side(4.0)}] * 3
    summary = compare.summarise(WORKLOAD, rounds)
    assert summary["ratio"] is None and summary["withheld"] == ["load"]
    assert "withheld: load" in compare.markdown([summary])
    failed = compare.summarise(WORKLOAD, [{"jax": {"error": "exit 1"}, "torch": _side(4.0)}])
    assert failed["ratio"] is None and "failed: jax: exit 1" in compare.markdown([failed])


def test_rounds_interleave_jax_then_torch():
    order = []
    rounds = compare.interleave(lambda: order.append("jax") or _side(1.0),
                                lambda: order.append("torch") or _side(2.0), pairs=3, cores=2,
                                settle_s=0)
    assert order == ["jax", "torch"] * 3
    assert all("machine_before" in r["jax"] and "busy" in r["torch"] for r in rounds)


def test_each_run_waits_for_the_previous_runs_load_to_decay():
    loads, slept = iter([2.6, 2.3, 1.9, 1.5]), []
    waited = machine.wait_until_quiet(2, timeout_s=60, poll_s=5, load=lambda: next(loads),
                                      sleep=slept.append)
    assert waited == 10 and slept == [5, 5]
    assert machine.wait_until_quiet(2, timeout_s=4, poll_s=2, load=lambda: 9.0,
                                    sleep=lambda s: None) == 4
