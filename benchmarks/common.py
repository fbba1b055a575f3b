"""What the benchmarks share: the data folder, this checkout's package, and best-of-N timing.

The benchmarks time the code of the checkout they sit in (not an installed copy), on the
competition data beside the repository when it is there, else on the bundled sample.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = ROOT.parent / "shared" / "fkp-data"
FKP = [sys.executable, "-m", "competition"]  # `fkp` of this checkout, in a process of its own
NOISE_NOTE = (
    "best of {n} runs each; wall seconds are noisy on a shared machine, CPU seconds (this process) "
    "much less so: ratios are given for both"
)


def default_data_dir() -> Path:
    """../shared/fkp-data relative to the repository when it holds the competition files, else the sample."""
    from competition.data import bundled_sample

    return SHARED_DATA if (SHARED_DATA / "training.zip").exists() else bundled_sample()


def _cpuinfo(key: str) -> str | None:
    """The first /proc/cpuinfo line of ``key``'s value (Linux), or None."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == key), None)


def cpu_model() -> str:
    """The CPU's model name, which every timed figure names."""
    return _cpuinfo("model name") or "unknown CPU"


def cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds, best run
    cpu: float  # seconds of this process's CPU (all its threads), best run
    wall_median: float

    def ratio(self, other: Timing) -> tuple[float, float]:
        """How many times faster self is than other: (by wall, by CPU)."""
        return other.wall / self.wall, other.cpu / self.cpu


def measure(
    run: Callable[[], object], repeat: int, setup: Callable[[], object] = lambda: None
) -> tuple[Timing, object]:
    """Best-of-``repeat`` wall and CPU time of ``run()`` (``setup()`` before each, untimed); the last result."""
    walls, cpus = [], []
    result = None
    for _ in range(repeat):
        setup()
        cpu, wall = time.process_time(), time.perf_counter()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(min(walls), min(cpus), statistics.median(walls)), result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "SHORT"


def plain_model(settings, mean, spread):
    """A specialist's network compiled for plain `model.fit` (Adam, plain MSE): the benchmarks' ceiling, without
    fkp's masked loss, metric or callbacks; ``mean`` and ``spread`` from ``models.target_statistics``."""
    import keras

    from competition.models import build_model

    model = build_model(settings.model, mean, spread, settings.train.learning_rate)
    model.compile(optimizer=keras.optimizers.Adam(settings.train.learning_rate), loss="mse")
    return model


def flops_per_face(model) -> tuple[int, int]:
    """Forward and backward FLOPs of one face through a Keras model's Conv2D and Dense layers.

    Counted from the layer shapes: 2 per multiply-add of every Conv2D and Dense
    layer forward; backward, the weight gradient costs as much again for every layer and the input
    gradient for every layer but the first (its input, the face, needs none). Batch norm,
    activations and pooling (a few FLOPs per activation, well under 1% here) are not counted.
    """
    import keras
    import numpy as np

    forward = backward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, filters = layer.output.shape[1:]
            flops = 2 * height * width * filters * int(np.prod(layer.kernel_size)) * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            flops = 2 * layer.input.shape[-1] * layer.units
        else:
            continue
        backward += flops if forward == 0 else 2 * flops
        forward += flops
    return forward, backward
