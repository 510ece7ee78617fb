"""Drift detectors: false-alarm rate with no shift, and how long each takes to see a sudden or a
gradual shift.

    python benchmarks/drift.py                   # two tables (about a minute)
    python benchmarks/drift.py --json            # the same data as JSON
    python benchmarks/drift.py --sequences 20    # fewer seeded sequences, faster, rougher

Tables:

1. **windows**: KS (Bonferroni and Benjamini-Hochberg), PSI, MMD, chi-square and BBSE. For each of
   ``--sequences`` seeded sequences the detector is fitted on a reference sample, then tests
   10 windows without shift (false alarms: share of those windows flagged), then windows after a
   *sudden* shift (full size from the first window) and, in a second run, after a *gradual* one
   (growing linearly to full size over 10 windows), each until the first detection or 20 windows.
   Delay: windows from the start of the shift to the first detection (0: the first shifted window
   is flagged), mean over the sequences that detected it, and the share detected.
2. **streams**: Page-Hinkley and ADWIN on 0/1 error streams of 5,000 elements. Stationary at an error
   rate of 0.1 (false alarms per 10,000 elements), and from element 2,000 either a sudden jump to
   0.3 or a linear rise to 0.3 over 1,000 elements. Delay: elements from the start of the change to
   the first detection at or after it, mean over the streams where it was detected. ADWIN checks
   for a cut every 32 elements (its ``clock``), which adds up to 31 elements to its delay.

Shifts (numeric detectors: 10 standard normal features, reference 1,000, window 200):
0.25 standard deviations in the mean of feature 0. Chi-square: 3 features over 4 categories with
probabilities 0.4, 0.3, 0.2, 0.1; feature 1 moves to 0.325, 0.3, 0.2, 0.175 (reference 1,000, window
200). BBSE: a 4-class classifier with 70-80% per-class recall; label prior uniform, moving to 0.35
for class 0 and 0.65/3 for the others (held-out reference 1,000, window 200).

The script sets the BLAS thread counts to 1 (unless set) before numpy is imported; ``ms/test``
is the mean time of one window test (one update for the streaming detectors, in microseconds).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

from tinyml_lab.mlops.drift import (ADWIN, BBSEDrift, ChiSquareDrift, KSDrift, MMDDrift, PageHinkley,  # noqa: E402
                                    PSIDrift)
from tinyml_lab.report import format_table  # noqa: E402

N_REF, N_WIN, N_FEATURES, SHIFT = 1000, 200, 10, 0.25
BEFORE, MAX_AFTER, RAMP = 10, 20, 10
CAT_P = np.array([0.4, 0.3, 0.2, 0.1])
CAT_SHIFTED = np.array([0.325, 0.3, 0.2, 0.175])
CONFUSION = np.array([[0.80, 0.10, 0.05, 0.10], [0.10, 0.70, 0.10, 0.10],
                      [0.05, 0.10, 0.80, 0.10], [0.05, 0.10, 0.05, 0.70]])  # columns: P(y_hat | y)
PRIOR = np.full(4, 0.25)
PRIOR_SHIFTED = np.array([0.35, 0.65 / 3, 0.65 / 3, 0.65 / 3])


# ----------------------------------------------------------------------------------------------
# data: a reference, and windows at a given fraction (0..1) of the full shift


def numeric_reference(rng):
    return rng.normal(size=(N_REF, N_FEATURES))


def numeric_window(rng, frac):
    w = rng.normal(size=(N_WIN, N_FEATURES))
    w[:, 0] += frac * SHIFT
    return w


def categorical_reference(rng):
    return rng.choice(4, size=(N_REF, 3), p=CAT_P)


def categorical_window(rng, frac):
    w = rng.choice(4, size=(N_WIN, 3), p=CAT_P)
    w[:, 1] = rng.choice(4, size=N_WIN, p=(1 - frac) * CAT_P + frac * CAT_SHIFTED)
    return w


def predictions(rng, n, prior):
    y = rng.choice(4, size=n, p=prior)
    y_hat = np.minimum((rng.random(n)[None, :] > np.cumsum(CONFUSION[:, y], axis=0)).sum(axis=0), 3)
    return y, y_hat


def label_reference(rng):
    return predictions(rng, N_REF, PRIOR)[::-1]  # (y_hat, y) for fit(y_pred, y_true)


def label_window(rng, frac):
    return predictions(rng, N_WIN, (1 - frac) * PRIOR + frac * PRIOR_SHIFTED)[1]


WINDOW_DETECTORS: list[tuple[str, str, Callable, Callable, Callable]] = [
    ("KS", "bonferroni, alpha 0.05", lambda: KSDrift(0.05, "bonferroni"), numeric_reference, numeric_window),
    ("KS", "fdr, alpha 0.05", lambda: KSDrift(0.05, "fdr"), numeric_reference, numeric_window),
    ("PSI", "threshold 0.2, 10 bins", lambda: PSIDrift(0.2), numeric_reference, numeric_window),
    ("MMD", "alpha 0.05, 200 perm., ref. 300", lambda: MMDDrift(0.05, n_permutations=200, max_reference=300),
     numeric_reference, numeric_window),
    ("chi-square", "bonferroni, alpha 0.05", lambda: ChiSquareDrift(0.05), categorical_reference, categorical_window),
    ("BBSE", "alpha 0.05", lambda: BBSEDrift(0.05), label_reference, label_window),
]


def _fit(make, reference):
    return make().fit(*reference) if isinstance(reference, tuple) else make().fit(reference)


def _delay(det, window, rng, ramp: int) -> tuple[int | None, int]:
    """Windows from the start of the shift to the first detection (None if none in MAX_AFTER)."""
    for i in range(MAX_AFTER):
        frac = min(1.0, (i + 1) / ramp)
        if det.test(window(rng, frac)).drift:
            return i, i + 1
    return None, MAX_AFTER


def detection_stats(delays: dict[str, list]) -> dict[str, float | None]:
    """Per kind of shift: the share of sequences where it was detected and the mean delay of those."""
    row: dict[str, float | None] = {}
    for kind, ds in delays.items():
        hit = [d for d in ds if d is not None]
        row[f"{kind}_detected"] = len(hit) / len(ds)
        row[f"{kind}_mean_delay"] = float(np.mean(hit)) if hit else None
    return row


def window_table(sequences: int, seed: int) -> list[dict]:
    rows = []
    for name, setting, make, reference, window in WINDOW_DETECTORS:
        alarms = tests = 0
        elapsed = 0.0
        delays: dict[str, list] = {"sudden": [], "gradual": []}
        for s in range(sequences):
            for kind, ramp in (("sudden", 1), ("gradual", RAMP)):
                rng = np.random.default_rng([seed, s, ramp])
                det = _fit(make, reference(rng))
                t0 = time.perf_counter()
                if kind == "sudden":  # the no-shift windows, once per sequence
                    alarms += sum(det.test(window(rng, 0.0)).drift for _ in range(BEFORE))
                    tests += BEFORE
                d, n = _delay(det, window, rng, ramp)
                elapsed += time.perf_counter() - t0
                tests += n
                delays[kind].append(d)
        row = {"detector": name, "setting": setting, "false_alarm_rate": alarms / (BEFORE * sequences),
               "ms_per_test": 1e3 * elapsed / tests}
        row.update(detection_stats(delays))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# streams

STREAM_N, CHANGE, P0, P1, STREAM_RAMP = 5000, 2000, 0.1, 0.3, 1000

STREAM_DETECTORS: list[tuple[str, str, Callable]] = [
    ("Page-Hinkley", "delta 0.005, lambda 50", lambda: PageHinkley()),
    ("Page-Hinkley", "delta 0.05, lambda 20", lambda: PageHinkley(delta=0.05, threshold=20)),
    ("Page-Hinkley", "delta 0.005, lambda 10", lambda: PageHinkley(threshold=10)),
    ("ADWIN", "delta 0.002, Bernstein cut", lambda: ADWIN(0.002)),
    ("ADWIN", "delta 0.002, Hoeffding cut", lambda: ADWIN(0.002, bound="hoeffding")),
    ("ADWIN", "delta 0.3, Bernstein cut", lambda: ADWIN(0.3)),
]


def error_stream(rng, kind: str) -> np.ndarray:
    p = np.full(STREAM_N, P0)
    if kind == "sudden":
        p[CHANGE:] = P1
    elif kind == "gradual":
        p[CHANGE:] = P0 + (P1 - P0) * np.minimum(1.0, np.arange(1, STREAM_N - CHANGE + 1) / STREAM_RAMP)
    return (rng.random(STREAM_N) < p).astype(float)


def stream_table(sequences: int, seed: int) -> list[dict]:
    rows = []
    for name, setting, make in STREAM_DETECTORS:
        alarms = elements = 0
        elapsed = 0.0
        delays: dict[str, list] = {"sudden": [], "gradual": []}
        for s in range(sequences):
            for kind in ("none", "sudden", "gradual"):
                x = error_stream(np.random.default_rng([seed, s, len(kind)]), kind)
                t0 = time.perf_counter()
                hits = make().test(x).details["detections"]
                elapsed += time.perf_counter() - t0
                if kind == "none":
                    alarms += len(hits)
                    elements += STREAM_N
                else:
                    alarms += sum(1 for h in hits if h < CHANGE)
                    elements += CHANGE
                    after = [h - CHANGE for h in hits if h >= CHANGE]
                    delays[kind].append(after[0] if after else None)
        row = {"detector": name, "setting": setting, "false_alarms_per_10k": 1e4 * alarms / elements,
               "us_per_update": 1e6 * elapsed / (3 * sequences * STREAM_N)}
        row.update(detection_stats(delays))
        rows.append(row)
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sequences", type=int, default=50, help="seeded sequences per detector (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.sequences < 1:
        p.error("--sequences must be at least 1")
    windows = window_table(args.sequences, args.seed)
    streams = stream_table(args.sequences, args.seed)
    if args.json:
        print(json.dumps({"sequences": args.sequences, "seed": args.seed, "windows": windows, "streams": streams},
                         indent=2))
        return
    print(f"Window detectors ({args.sequences} sequences; delays in windows of {N_WIN})\n")
    print(format_table(
        ["detector", "setting", "false alarms", "sudden found", "sudden delay", "gradual found", "gradual delay",
         "ms/test"],
        [[r["detector"], r["setting"], f"{r['false_alarm_rate']:.3f}", f"{r['sudden_detected']:.2f}",
          _fmt(r["sudden_mean_delay"], ".1f"), f"{r['gradual_detected']:.2f}", _fmt(r["gradual_mean_delay"], ".1f"),
          f"{r['ms_per_test']:.2f}"] for r in windows], align="llrrrrrr"))
    print(f"\nStreaming detectors ({args.sequences} streams of each kind; delays in elements)\n")
    print(format_table(
        ["detector", "setting", "false alarms /10k", "sudden found", "sudden delay", "gradual found",
         "gradual delay", "us/update"],
        [[r["detector"], r["setting"], f"{r['false_alarms_per_10k']:.2f}", f"{r['sudden_detected']:.2f}",
          _fmt(r["sudden_mean_delay"], ".0f"), f"{r['gradual_detected']:.2f}", _fmt(r["gradual_mean_delay"], ".0f"),
          f"{r['us_per_update']:.1f}"] for r in streams], align="llrrrrrr"))


if __name__ == "__main__":
    main()
