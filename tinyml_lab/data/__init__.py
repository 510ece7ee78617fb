"""Datasets for the labs, all generated or loaded offline.

* :func:`load_digits`: scikit-learn's bundled handwritten digits, resized to
  16x16 or 32x32, with optional domain shifts and class subsets.
* :func:`load_vibration`: a seeded synthetic machine-vibration data set, as
  log-mel feature vectors for the anomaly-detection autoencoder.

Both return a :class:`Dataset` (the vibration data a :class:`VibrationDataset`,
which adds machine ids and fault labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    """Train and test arrays plus what they mean.

    ``classes[k]`` names label ``k``; images are NHWC float32 in [0, 1].
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple
    description: str

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample (batch left out), as a graph input wants it."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(x_train {self.x_train.shape} {self.x_train.dtype}, "
            f"x_test {self.x_test.shape}, classes {self.classes}): {self.description}"
        )


from .digits import SHIFTS, apply_shift, load_digits  # noqa: E402
from .vibration import (  # noqa: E402
    FAULTS,
    VibrationDataset,
    load_vibration,
    log_mel,
    mel_filterbank,
    simulate_vibration,
    stack_frames,
)

__all__ = [
    "Dataset", "load_digits", "apply_shift", "SHIFTS",
    "VibrationDataset", "load_vibration", "simulate_vibration", "mel_filterbank", "log_mel",
    "stack_frames", "FAULTS",
]
