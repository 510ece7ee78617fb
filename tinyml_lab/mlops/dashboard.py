"""A monitoring dashboard drawn from a :class:`~tinyml_lab.mlops.monitoring.MetricsStore`.

Three panels sharing the time axis: accuracy per window for every device, latency percentiles per
window over the chosen devices, and the statistic of every recorded drift check (filled markers
where drift was found). Fired alerts are dashed vertical lines across all three. The figure is
built without pyplot, so it works under any backend; save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..errors import DataError
from .monitoring import MetricsStore


def dashboard(store: MetricsStore, every_s: float | None = None, count: int | None = None,
              devices: Sequence[str] | None = None, model_version: str | None = None, start: float | None = None,
              end: float | None = None, percentiles: Sequence[float] = (50, 95, 99),
              title: str | None = None) -> Figure:
    """Accuracy, latency percentiles and drift statistics over time, with alert markers.

    Args:
        store: the metrics store.
        every_s: window width in seconds; or ``count``: predictions per window (one of the two;
            neither: 20 windows over the whole time range).
        devices: the devices to draw (default: all).
        model_version: only this model version's predictions.
        start, end: the time range (default: everything).
        percentiles: the latency percentiles to draw.
        title: the figure's title.
    Returns:
        A matplotlib Figure with three axes.
    """
    all_devices = store.devices()
    if not all_devices:
        raise DataError("the metrics store is empty; log predictions before drawing a dashboard")
    devices = list(all_devices if devices is None else devices)
    if every_s is None and count is None:
        w = store.window(model_version=model_version, start=start, end=end)
        if not len(w):
            raise DataError(f"no predictions in [{start}, {end}); widen the range")
        span = float(w.timestamp[-1] - w.timestamp[0])
        every_s = span / 20 if span > 0 else 1.0

    fig = Figure(figsize=(9.0, 7.5), layout="constrained")
    ax_acc, ax_lat, ax_drift = fig.subplots(3, 1, sharex=True)

    for dev in devices:
        s = store.series("accuracy", every_s, count, dev, model_version, start, end)
        mid = (s["start"] + s["end"]) / 2
        ax_acc.plot(mid, s["value"], marker="o", markersize=3, label=dev)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    if len(devices) <= 12:
        ax_acc.legend(loc="lower left", fontsize="small", ncol=min(len(devices), 4))
    ax_acc.set_title("accuracy per window and device (labelled predictions)")

    windows = [w for dev in devices for w in store.windows(every_s, count, dev, model_version, start, end)]
    if windows:
        # pool the chosen devices per time slot (by count: per device window, in time order)
        slots: dict[tuple[float, float], list[np.ndarray]] = {}
        for w in windows:
            slots.setdefault((w.start, w.end), []).append(w.latency_ms)
        keys = sorted(slots)
        mid = np.array([(a + b) / 2 for a, b in keys])
        lat = np.array([np.percentile(np.concatenate(slots[k]), percentiles) for k in keys])
        for j, q in enumerate(percentiles):
            ax_lat.plot(mid, lat[:, j], marker=".", label=f"p{q:g}")
        ax_lat.legend(loc="upper left", fontsize="small")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_title("latency percentiles per window" + ("" if len(devices) == len(all_devices) else
                                                         f" ({', '.join(devices)})"))

    drift = [e for e in store.events("drift", start=start, end=end)
             if e["device_id"] is None or e["device_id"] in devices]
    if drift:
        groups: dict[str, list[dict]] = {}
        for e in drift:
            key = f"{e['name']} {e['metric'] or ''}" + (f" {e['device_id']}" if e["device_id"] else "")
            groups.setdefault(key.strip(), []).append(e)
        for key, evs in groups.items():
            t = np.array([e["ts"] for e in evs])
            v = np.array([np.nan if e["value"] is None else e["value"] for e in evs])
            line = ax_drift.plot(t, v, marker="o", markerfacecolor="white", label=key)[0]
            hit = np.array([e["flagged"] for e in evs])
            if hit.any():
                ax_drift.plot(t[hit], v[hit], "o", color=line.get_color())
        ax_drift.legend(loc="upper left", fontsize="small")
    else:
        ax_drift.text(0.5, 0.5, "no drift checks recorded", transform=ax_drift.transAxes, ha="center", va="center",
                      color="0.5")
    ax_drift.set_ylabel("drift statistic")
    ax_drift.set_xlabel("time (s)")
    ax_drift.set_title("drift checks (filled: drift found); dashed lines: alerts")

    alerts = [e for e in store.events("alert", start=start, end=end)
              if e["device_id"] is None or e["device_id"] in devices]
    for e in alerts:
        for ax in (ax_acc, ax_lat, ax_drift):
            ax.axvline(e["ts"], color="tab:red", linestyle="--", linewidth=0.8, alpha=0.6)
    if alerts:
        ax_drift.plot([], [], color="tab:red", linestyle="--", linewidth=0.8, label=f"alerts ({len(alerts)})")
        ax_drift.legend(loc="upper left", fontsize="small")
    for ax in (ax_acc, ax_lat, ax_drift):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


# The package exports it under this name: ``tinyml_lab.mlops.dashboard`` is this module.
plot_dashboard = dashboard

__all__ = ["dashboard", "plot_dashboard"]
