"""Hypothesis strategies shared by the test suite: layer configurations and small tensors.

The ``ci`` profile (the default) keeps example counts small enough for CI;
``HYPOTHESIS_PROFILE=dev`` runs many more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile("ci", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass(frozen=True)
class WindowConfig:
    """A sliding-window layer on a batch: conv, depthwise conv or pooling."""

    batch: int
    height: int
    width: int
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right

    @property
    def out_hw(self) -> tuple[int, int]:
        t, b, l, r = self.pads
        oh = (self.height + t + b - (self.kernel[0] - 1) * self.dilation[0] - 1) // self.strides[0] + 1
        ow = (self.width + l + r - (self.kernel[1] - 1) * self.dilation[1] - 1) // self.strides[1] + 1
        return oh, ow


@st.composite
def window_configs(draw, max_hw: int = 12, max_c: int = 16, max_k: int = 5, max_batch: int = 3,
                   dilation: bool = True) -> WindowConfig:
    """A valid configuration: the padded input is at least as large as the dilated window."""
    kh, kw = draw(st.integers(1, max_k)), draw(st.integers(1, max_k))
    dh = draw(st.integers(1, 3)) if dilation else 1
    dw = draw(st.integers(1, 3)) if dilation else 1
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    h = draw(st.integers(max(1, eff_h - pads[0] - pads[1]), max(max_hw, eff_h)))
    w = draw(st.integers(max(1, eff_w - pads[2] - pads[3]), max(max_hw, eff_w)))
    return WindowConfig(
        batch=draw(st.integers(1, max_batch)), height=h, width=w,
        c_in=draw(st.integers(1, max_c)), c_out=draw(st.integers(1, max_c)),
        kernel=(kh, kw), strides=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        dilation=(dh, dw), pads=pads,  # type: ignore[arg-type]
    )


def int8_array(rng: np.random.Generator, shape: tuple[int, ...], low: int = -128, high: int = 127) -> np.ndarray:
    return rng.integers(low, high + 1, size=shape).astype(np.int8)


def float_array(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


seeds = st.integers(0, 2**32 - 1)
