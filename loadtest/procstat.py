"""CPU time and memory of a process and its descendants, read from Linux ``/proc``.

CPU is ``utime + stime`` (fields 14 and 15 of ``/proc/PID/stat``, in clock ticks; both the
process's own threads and nothing else: children that exited and were waited for are in
``cutime``/``cstime``, which are left out so a measurement is not inflated by helpers that ran
before it started). RSS is ``VmRSS`` of ``/proc/PID/status``.

The same figure as ``../shared/bench/sipbench.sh`` (``treecpu``), so the runner's
``cpu_us_per_call`` and the harness's can be compared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TreeSample", "children", "process_tree", "sample_tree"]

_PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class TreeSample:
    """CPU seconds (user + system) and resident memory of a process tree at one instant."""

    cpu_s: float
    rss_kib: int
    processes: int


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all threads' children, from ``/proc/PID/task/*/children``)."""
    out: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that exist now."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        if (_PROC / str(p)).exists():
            tree.append(p)
            todo.extend(children(p))
    return tree


def _cpu_ticks(pid: int) -> int:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rpartition(")")[2].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def _rss_kib(pid: int) -> int:
    try:
        with open(_PROC / str(pid) / "status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def sample_tree(pid: int) -> TreeSample:
    """CPU and RSS of ``pid`` and its descendants now (zeros if ``pid`` is gone)."""
    pids = process_tree(pid)
    ticks = sum(_cpu_ticks(p) for p in pids)
    return TreeSample(ticks / CLOCK_TICKS, sum(_rss_kib(p) for p in pids), len(pids))
