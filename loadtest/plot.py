"""The PNG of a run: calls per second, response time and the SUT's CPU over time.

Needs matplotlib (``pip install 'sipmask[loadtest]'``); drawn with the Agg backend, so no
display is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PlotUnavailable", "plot_timeline"]


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def plot_timeline(points: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Draw ``report["timeline"]`` to ``path`` (PNG). Raises :class:`PlotUnavailable` without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("matplotlib is not installed: pip install 'sipmask[loadtest]'") from exc

    t = [p["t"] for p in points]
    has_cpu = any(p.get("sut_cpu_pct") is not None for p in points)
    rows = 3 if has_cpu else 2
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(9, 2.6 * rows), dpi=100)
    try:
        ax = axes[0]
        ax.plot(t, [p["cps_attempted"] for p in points], label="attempted", color="0.6")
        ax.plot(t, [p["cps"] for p in points], label="successful", color="tab:green")
        failed = [p["failed"] for p in points]
        if any(failed):
            ax.bar(t, failed, width=0.8, label="failed (calls in period)", color="tab:red")
        ax.set_ylabel("calls / s")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
        ax.set_title(title)

        ax = axes[1]
        for key, label, color in (("p50_ms", "p50", "tab:blue"), ("p99_ms", "p99", "tab:orange")):
            pts = [(p["t"], p[key]) for p in points if p[key] is not None]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], label=label, color=color,
                        marker="." if len(pts) < 30 else None)
        ax.set_ylabel("response time (ms)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)

        if has_cpu:
            ax = axes[2]
            pts = [(p["t"], p["sut_cpu_pct"]) for p in points if p["sut_cpu_pct"] is not None]
            ax.plot([x for x, _ in pts], [y for _, y in pts], color="tab:purple")
            ax.set_ylabel("SUT CPU (% of a core)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        axes[-1].set_xlabel("seconds since the caller SIPp started")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
