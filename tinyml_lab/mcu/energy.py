"""Energy per inference and battery life under a duty cycle.

* energy of one inference: ``E = P_active t`` (mW x s = mJ);
* over one hour with ``n`` inferences and sleep in between:
  ``E_h = n E + (3600 s - n t) P_sleep``;
* average power ``P = E_h / 3600 s``;
* battery energy ``C V`` (mAh x V = mWh, x 3600 = mJ), so the battery lasts
  ``C V 3600 / E_h`` hours.
"""

from __future__ import annotations

import math

from ..errors import TinyMLError

SECONDS_PER_HOUR = 3600.0


class DutyCycleError(TinyMLError, ValueError):
    """The duty cycle asks for more inference time than an hour has, or a figure is not positive."""


def energy_mj(active_power_mw: float, latency_ms: float) -> float:
    """``E = P t``: milliwatts times milliseconds / 1000 = millijoules."""
    _positive(active_power_mw=active_power_mw, latency_ms=latency_ms)
    return active_power_mw * latency_ms / 1000.0


def energy_per_hour_mj(energy_per_inference_mj: float, latency_ms: float, inferences_per_hour: float,
                       sleep_power_mw: float) -> float:
    """``E_h = n E + (3600 - n t) P_sleep`` in mJ."""
    _positive(energy_per_inference_mj=energy_per_inference_mj, latency_ms=latency_ms,
              sleep_power_mw=sleep_power_mw, inferences_per_hour=inferences_per_hour, allow_zero=True)
    busy_s = inferences_per_hour * latency_ms / 1000.0
    if busy_s > SECONDS_PER_HOUR:
        raise DutyCycleError(
            f"{inferences_per_hour:g} inferences of {latency_ms:g} ms take {busy_s:,.0f} s, more than an hour; "
            f"at most {SECONDS_PER_HOUR * 1000.0 / latency_ms:,.0f} inferences per hour fit"
        )
    return inferences_per_hour * energy_per_inference_mj + (SECONDS_PER_HOUR - busy_s) * sleep_power_mw


def average_power_mw(energy_per_inference_mj: float, latency_ms: float, inferences_per_hour: float,
                     sleep_power_mw: float) -> float:
    """``P = E_h / 3600 s`` in mW."""
    return energy_per_hour_mj(energy_per_inference_mj, latency_ms, inferences_per_hour,
                              sleep_power_mw) / SECONDS_PER_HOUR


def battery_life_hours(energy_per_inference_mj: float, latency_ms: float, inferences_per_hour: float,
                       sleep_power_mw: float, battery_mah: float = 220.0, battery_v: float = 3.0) -> float:
    """Hours a battery of ``battery_mah`` at ``battery_v`` lasts: ``C V 3600 / E_h``.

    The default is a CR2032 coin cell (about 220 mAh at 3 V). Conversion
    losses and self-discharge are left out.
    """
    _positive(battery_mah=battery_mah, battery_v=battery_v)
    e_h = energy_per_hour_mj(energy_per_inference_mj, latency_ms, inferences_per_hour, sleep_power_mw)
    if e_h == 0:
        return math.inf
    return battery_mah * battery_v * SECONDS_PER_HOUR / e_h


def _positive(allow_zero: bool = False, **values: float) -> None:
    for name, v in values.items():
        ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
        if not ok:
            raise DutyCycleError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {v!r}")


__all__ = ["energy_mj", "energy_per_hour_mj", "average_power_mw", "battery_life_hours", "DutyCycleError",
           "SECONDS_PER_HOUR"]
