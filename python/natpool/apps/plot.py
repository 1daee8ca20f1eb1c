"""Plot live leases and subpools over time (``--plot FILE.png`` of ``natpool demo`` and ``natpool simulate``).

``matplotlib`` is the optional extra ``natpool[plot]``, imported only when a plot is drawn, with the
non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence

from natpool.extras import require

__all__ = ["plot_timeline"]


def plot_timeline(
    path: str,
    title: str,
    times: Sequence[float],
    live: Sequence[int],
    subpools: Sequence[int],
    time_label: str = "seconds",
) -> None:
    """Draw live leases (left axis) and subpools (right axis) against time into ``path`` (PNG)."""
    require("plot")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, leases_axis = pyplot.subplots(figsize=(9, 4.5), dpi=100)
    try:
        leases_axis.plot(times, live, color="tab:blue", linewidth=1.0, label="live leases")
        leases_axis.set_xlabel(time_label)
        leases_axis.set_ylabel("live leases", color="tab:blue")
        subpools_axis = leases_axis.twinx()
        subpools_axis.step(times, subpools, where="post", color="tab:orange", linewidth=1.0, label="subpools")
        subpools_axis.set_ylabel("subpools", color="tab:orange")
        leases_axis.set_title(title)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)
